"""PersonLab pose decoding (SPEC section 2; Papandreou et al., ECCV 2018, section 3).

Pipeline of :func:`decode_poses`:

1. **Hough voting** (:func:`hough_scores`): every output cell x_i votes for keypoint k at
   ``x_i + S_k(x_i)`` with weight ``p_k(x_i)``; votes are splatted bilinearly (B) into a map of
   ``hough_stride`` input pixels per cell, normalised by 1/(πR²). The paper upsamples the heads
   to the input resolution and lets every input pixel vote; here each output cell votes with
   weight ``stride²`` (the number of input pixels it stands for), so a perfect disk still
   totals ~1. Optional Gaussian blur (σ = 2 input px, as in the reference implementations).
2. **Candidates** (:func:`find_peaks`): local maxima under a 3×3 max filter above
   ``peak_threshold``; positions are refined by the short-range offset sampled at the peak
   (``refine_peaks``; the reference PoseNet decoder also places a keypoint at cell + short offset).
3. **Mid-range refinement** (:func:`refine_mid_offsets`, twice, paper):
   ``M_{k,l}(x) <- x' + S_l(x') - x`` with ``x' = x + M_{k,l}(x)`` (bilinear).
4. **Greedy decoding**: one priority queue of all candidates of all K types by Hough score.
   A candidate within ``nms_radius`` (r = 10 px, paper) of the same keypoint of an already
   decoded person is dropped; otherwise it seeds a person and the kinematic tree is followed
   breadth-first from the seed, along the given directed edges whose source is already placed:
   ``y_l = y_k + M_{k,l}(y_k)``. Only the directions present in ``edges`` are followed (a
   single direction works; the tree must then be reachable from the seed). Keypoints that
   cannot be reached are put at the seed with score 0.
5. **Scoring** (paper): keypoint score = expected OKS
   ``s_{j,k} = p_k(y_{j,k}) · Σ_{x∈D_R(y)} ĥ_k(x) exp(-|x - y|² / (2 λ_j² κ_k²))`` with ĥ_k the
   (unblurred) Hough map normalised within the disk, λ_j = √(area of the box around the
   person's keypoints) and κ_k = 2 σ_k (COCO's OKS constant, cocodataset.org: k_i = 2σ_i).
   Instance score = Σ of keypoint scores not within r of the same keypoint of a
   higher-scoring instance, / K (instances ranked by their mean keypoint score first).

Coordinates: cell (i, j) of every (·, H, W) map sits at input ``(j·stride + grid_offset,
i·stride + grid_offset)``; offsets are (x, y) in input pixels; a Hough cell (r, c) covers
input ``[c·hs, (c+1)·hs) × [r·hs, (r+1)·hs)``.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import cv2
import numpy as np


# ----------------------------------------------------------------------------------- sampling
def bilinear_sample(field: np.ndarray, channels: np.ndarray, x: np.ndarray, y: np.ndarray, *,
                    stride: float, grid_offset: float = 0.0) -> np.ndarray:
    """Bilinear sample of a grid field at input-pixel positions (clamped to the grid).

    Args:
        field: (C, H, W) or (C, H, W, D).
        channels: int array of channel indices, broadcastable with ``x`` and ``y``.
        x, y: input-pixel positions, any (equal, broadcastable) shape S.
        stride, grid_offset: cell (i, j) is at input (j·stride + grid_offset, i·stride + grid_offset).
    Returns: (*S) or (*S, D) float.
    """
    c, h, w = field.shape[:3]
    ch, x, y = np.broadcast_arrays(np.asarray(channels, dtype=np.int64), np.asarray(x, np.float64),
                                   np.asarray(y, np.float64))
    u = np.clip((x - grid_offset) / stride, 0.0, w - 1)
    v = np.clip((y - grid_offset) / stride, 0.0, h - 1)
    u0 = np.floor(u).astype(np.int64)
    v0 = np.floor(v).astype(np.int64)
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    fu = u - u0
    fv = v - v0
    flat = field.reshape(c * h * w, -1)
    base = ch * (h * w)
    tail = (slice(None),) + (None,)
    w00 = ((1 - fu) * (1 - fv)).reshape(-1)[tail]
    w01 = (fu * (1 - fv)).reshape(-1)[tail]
    w10 = ((1 - fu) * fv).reshape(-1)[tail]
    w11 = (fu * fv).reshape(-1)[tail]
    out = (flat[(base + v0 * w + u0).reshape(-1)] * w00 + flat[(base + v0 * w + u1).reshape(-1)] * w01
           + flat[(base + v1 * w + u0).reshape(-1)] * w10 + flat[(base + v1 * w + u1).reshape(-1)] * w11)
    return out.reshape(ch.shape + field.shape[3:])


def _cell_xy(h: int, w: int, stride: float, grid_offset: float) -> tuple[np.ndarray, np.ndarray]:
    xs = np.arange(w, dtype=np.float64) * stride + grid_offset
    ys = np.arange(h, dtype=np.float64) * stride + grid_offset
    return np.meshgrid(xs, ys)


def hough_size(grid_size: tuple[int, int], output_stride: float, grid_offset: float,
               hough_stride: float) -> tuple[int, int]:
    """(Hh, Wh) of the Hough map covering every cell position of a (H, W) grid."""
    h, w = grid_size
    ext = max(2.0 * grid_offset, 1.0)
    return (int(math.ceil(((h - 1) * output_stride + ext) / hough_stride)),
            int(math.ceil(((w - 1) * output_stride + ext) / hough_stride)))


# ------------------------------------------------------------------------------------ hough
def hough_scores(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
                 grid_offset: float = 0.0, radius: float = 32.0, hough_stride: float = 1.0,
                 hough_size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Hough score maps h_k (paper eq. 1), unblurred.

    Args:
        heatmaps: (K, H, W) probabilities p_k.
        short_offsets: (K, H, W, 2) (x, y) input pixels.
        radius: R (paper 32); the votes are normalised by 1/(πR²).
        hough_stride: input pixels per Hough cell (1 = input resolution, as in the paper).
    Returns: (K, Hh, Wh) float32.
    """
    k, h, w = heatmaps.shape
    hh, wh = hough_size_hw or hough_size((h, w), output_stride, grid_offset, hough_stride)
    px, py = _cell_xy(h, w, output_stride, grid_offset)
    weight = heatmaps.astype(np.float64) * (output_stride ** 2 / (math.pi * radius ** 2))
    sel = weight > 0
    kk = np.broadcast_to(np.arange(k)[:, None, None], sel.shape)[sel]
    wv = weight[sel]
    qx = (np.broadcast_to(px, sel.shape)[sel] + short_offsets[..., 0][sel]) / hough_stride - 0.5
    qy = (np.broadcast_to(py, sel.shape)[sel] + short_offsets[..., 1][sel]) / hough_stride - 0.5
    x0 = np.floor(qx).astype(np.int64)
    y0 = np.floor(qy).astype(np.int64)
    fx = qx - x0
    fy = qy - y0
    idx, wts = [], []
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                       (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < wh) & (yi >= 0) & (yi < hh)
        idx.append((kk[ok] * hh + yi[ok]) * wh + xi[ok])
        wts.append(wv[ok] * wt[ok])
    idx = np.concatenate(idx)
    wts = np.concatenate(wts)
    out = np.bincount(idx, weights=wts, minlength=k * hh * wh)
    return out.reshape(k, hh, wh).astype(np.float32)


def _blur_and_max(hough: np.ndarray, sigma_cells: float) -> tuple[np.ndarray, np.ndarray]:
    """Per channel Gaussian blur (σ in cells, 0 = none) and 3×3 max filter. (K, Hh, Wh) each."""
    out = np.empty_like(hough)
    mx = np.empty_like(hough)
    kern = np.ones((3, 3), np.uint8)
    for c in range(hough.shape[0]):
        m = hough[c]
        if sigma_cells > 0:
            m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma_cells, sigmaY=sigma_cells,
                                 borderType=cv2.BORDER_CONSTANT)
        out[c] = m
        mx[c] = cv2.dilate(m, kern, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out, mx


def find_peaks(hough: np.ndarray, *, hough_stride: float = 1.0, peak_threshold: float = 0.01,
               blur_sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the (blurred) Hough maps.

    Args:
        hough: (K, Hh, Wh) Hough scores.
        peak_threshold: minimum (blurred) Hough score (SPEC: reference implementations use
            0.004–0.01; default 0.01).
        blur_sigma: Gaussian σ in input pixels (reference implementations: ~2; 0 = off).
    Returns: ``(k, x, y, score)`` arrays (P,), x/y the Hough cell centres in input pixels,
    sorted by decreasing score.
    """
    blurred, mx = _blur_and_max(hough, blur_sigma / hough_stride)
    peak = (blurred >= mx) & (blurred > peak_threshold)
    k, r, c = np.nonzero(peak)
    s = blurred[k, r, c]
    order = np.argsort(-s, kind="stable")
    k, r, c, s = k[order], r[order], c[order], s[order]
    return k, (c + 0.5) * hough_stride, (r + 0.5) * hough_stride, s


def refine_mid_offsets(mid_offsets: np.ndarray, short_offsets: np.ndarray,
                       edges: Sequence[tuple[int, int]], *, output_stride: float,
                       grid_offset: float = 0.0, steps: int = 2) -> np.ndarray:
    """Recurrent mid-range refinement (paper: twice): M_{k,l}(x) <- x' + S_l(x') - x with
    x' = x + M_{k,l}(x), S_l sampled bilinearly. mid_offsets (E, H, W, 2) -> same shape."""
    e, h, w = mid_offsets.shape[:3]
    px, py = _cell_xy(h, w, output_stride, grid_offset)
    tgt = np.asarray([b for _, b in edges], dtype=np.int64)[:, None, None]
    mid = mid_offsets.astype(np.float64)
    for _ in range(steps):
        x2 = px[None] + mid[..., 0]
        y2 = py[None] + mid[..., 1]
        s = bilinear_sample(short_offsets, tgt, x2, y2, stride=output_stride, grid_offset=grid_offset)
        mid = np.stack([x2 + s[..., 0] - px[None], y2 + s[..., 1] - py[None]], axis=-1)
    return mid


# ---------------------------------------------------------------------------------- scoring
def _disk_cells(radius: float, hough_stride: float) -> tuple[np.ndarray, np.ndarray]:
    n = int(math.ceil(radius / hough_stride)) + 1
    d = np.arange(-n, n + 1)
    dr, dc = np.meshgrid(d, d, indexing="ij")
    return dr.reshape(-1), dc.reshape(-1)


def expected_oks(poses_xy: np.ndarray, hough: np.ndarray, presence: np.ndarray, kappas: np.ndarray, *,
                 radius: float = 32.0, hough_stride: float = 1.0, chunk: int = 16) -> np.ndarray:
    """Expected-OKS keypoint scores (paper section 3.1).

    Args:
        poses_xy: (N, K, 2) keypoint positions (input px).
        hough: (K, Hh, Wh) unblurred Hough maps h_k.
        presence: (N, K) p_k(y_{j,k}).
        kappas: (K,) κ_k (= 2 σ_k for COCO's OKS).
    Returns: (N, K) s_{j,k} = p_k(y) Σ_{x∈D_R(y)} ĥ_k(x) exp(-|x-y|²/(2 λ² κ_k²)).
    """
    n, k = poses_xy.shape[:2]
    if n == 0:
        return np.zeros((0, k))
    _, hh, wh = hough.shape
    lo = poses_xy.min(axis=1)
    hi = poses_xy.max(axis=1)
    lam2 = np.maximum(np.prod(hi - lo, axis=1), 1.0)  # λ² = box area (floored at 1 px²)
    dr, dc = _disk_cells(radius, hough_stride)
    out = np.zeros((n, k))
    kidx = np.arange(k)[None, :, None]
    for s0 in range(0, n, chunk):
        xy = poses_xy[s0:s0 + chunk]
        r0 = np.floor(xy[..., 1] / hough_stride).astype(np.int64)[..., None]
        c0 = np.floor(xy[..., 0] / hough_stride).astype(np.int64)[..., None]
        rr = r0 + dr
        cc = c0 + dc
        cx = (cc + 0.5) * hough_stride
        cy = (rr + 0.5) * hough_stride
        d2 = (cx - xy[..., 0:1]) ** 2 + (cy - xy[..., 1:2]) ** 2
        ok = (rr >= 0) & (rr < hh) & (cc >= 0) & (cc < wh) & (d2 <= radius * radius)
        hv = np.where(ok, hough[kidx, np.clip(rr, 0, hh - 1), np.clip(cc, 0, wh - 1)], 0.0)
        g = np.exp(-d2 / (2.0 * lam2[s0:s0 + chunk, None, None] * (kappas[None, :, None] ** 2)))
        tot = hv.sum(axis=-1)
        frac = np.where(tot > 0, (hv * g).sum(axis=-1) / np.where(tot > 0, tot, 1.0), 0.0)
        out[s0:s0 + chunk] = presence[s0:s0 + chunk] * frac
    return out


def instance_scores(poses_xy: np.ndarray, keypoint_scores: np.ndarray, *, nms_radius: float = 10.0
                    ) -> np.ndarray:
    """Paper: Σ of keypoint scores not within r of the same keypoint of a higher-scoring
    instance (ranked by mean keypoint score), / K. (N, K, 2), (N, K) -> (N,)."""
    n, k = keypoint_scores.shape
    if n == 0:
        return np.zeros(0)
    order = np.argsort(-keypoint_scores.mean(axis=1), kind="stable")
    xy = poses_xy[order]
    d2 = ((xy[:, None] - xy[None]) ** 2).sum(-1)  # (N, N, K)
    higher = np.tril(np.ones((n, n), bool), -1)  # higher[j, i]: i ranked before j
    claimed = ((d2 <= nms_radius ** 2) & higher[..., None]).any(axis=1)
    sc = np.where(claimed, 0.0, keypoint_scores[order]).sum(axis=1) / k
    out = np.empty(n)
    out[order] = sc
    return out


# ----------------------------------------------------------------------------------- decode
def _adjacency(edges: Sequence[tuple[int, int]], k: int) -> list[list[tuple[int, int]]]:
    adj: list[list[tuple[int, int]]] = [[] for _ in range(k)]
    for e, (a, b) in enumerate(edges):
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"edge ({a}, {b}) out of range for {k} keypoints")
        adj[a].append((e, b))
    return adj


def decode_poses(heatmaps: np.ndarray, short_offsets: np.ndarray, mid_offsets: np.ndarray, *,
                 edges: Sequence[tuple[int, int]], output_stride: float, grid_offset: float = 0.0,
                 radius: float = 32.0, sigmas: Sequence[float] | None = None,
                 hough_stride: float = 1.0, blur_sigma: float = 2.0, peak_threshold: float = 0.01,
                 refine_peaks: bool = True, mid_refine_steps: int = 2, mid_refine: str = "field",
                 nms_radius: float = 10.0,
                 snap_radius: float = 0.0, max_people: int | None = None,
                 score_threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy PersonLab decoding of one image (see the module docstring for each step).

    Args:
        heatmaps: (K, H, W) keypoint probabilities p_k.
        short_offsets: (K, H, W, 2) short-range offsets, (x, y) input pixels.
        mid_offsets: (E, H, W, 2) mid-range offsets, (x, y) input pixels, E = len(edges).
        edges: directed (source, target) keypoint pairs in the order of ``mid_offsets``.
        output_stride: input pixels per cell; ``grid_offset``: input position of cell (0, 0).
        radius: disk radius R in input px (paper: 32): Hough normalisation and scoring disk.
        sigmas: (K,) OKS sigmas (κ_k = 2 σ_k); None = 0.05 for every keypoint (the project's
            default for unknown keypoint sets; pass ``keypoint_set.sigmas``).
        hough_stride: input px per Hough cell (paper: 1, input resolution).
        blur_sigma: Gaussian blur of the Hough maps before peak finding, input px (reference
            implementations ~2; 0 = off).
        peak_threshold: minimum blurred Hough score of a candidate (SPEC: 0.004-0.01 in the
            reference implementations; 0.01 here).
        refine_peaks: move each candidate by the short offset sampled at it (PoseNet reference).
        mid_refine_steps: recurrent mid-offset refinements (paper: 2).
        mid_refine: "field" refines the whole mid-offset field before decoding (paper);
            "point" applies the same update only where the decoder samples the field
            (x' = y_k + M(y_k), then y_l = x' + S_l(x'), repeated): same result up to the order of
            interpolation, cost O(people × edges) instead of O(E × H × W).
        nms_radius: r in input px (paper: 10).
        snap_radius: if > 0, a keypoint placed by a mid-range offset snaps to the nearest
            candidate of its type within this distance (paper: optional; default off).
        max_people: stop after this many people (None: no limit, as in the paper).
        score_threshold: drop people whose instance score is below this (default 0: keep all).
    Returns:
        poses (N, K, 3) float32 x, y, expected-OKS keypoint score (input px), and scores (N,)
        float32 instance scores, sorted by decreasing score.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    short_offsets = np.asarray(short_offsets, dtype=np.float32)
    mid_offsets = np.asarray(mid_offsets, dtype=np.float32)
    k, h, w = heatmaps.shape
    edges = [(int(a), int(b)) for a, b in edges]
    if short_offsets.shape != (k, h, w, 2):
        raise ValueError(f"short_offsets must be {(k, h, w, 2)}, got {short_offsets.shape}")
    if mid_offsets.shape != (len(edges), h, w, 2):
        raise ValueError(f"mid_offsets must be {(len(edges), h, w, 2)} for {len(edges)} edges, "
                         f"got {mid_offsets.shape}")
    adj = _adjacency(edges, k)
    sig = np.full(k, 0.05) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (k,):
        raise ValueError(f"{sig.shape[0]} sigmas for {k} keypoints")
    gs = dict(stride=output_stride, grid_offset=grid_offset)

    hough = hough_scores(heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset,
                         radius=radius, hough_stride=hough_stride)
    ck, cx, cy, cs = find_peaks(hough, hough_stride=hough_stride, peak_threshold=peak_threshold,
                                blur_sigma=blur_sigma)
    if refine_peaks and len(ck):
        so = bilinear_sample(short_offsets, ck, cx, cy, **gs)
        cx, cy = cx + so[:, 0], cy + so[:, 1]
    if mid_refine not in ("field", "point"):
        raise ValueError(f"mid_refine must be 'field' or 'point', got {mid_refine!r}")
    point_steps = mid_refine_steps if mid_refine == "point" else 0
    if mid_refine == "field" and mid_refine_steps:
        mid = refine_mid_offsets(mid_offsets, short_offsets, edges, output_stride=output_stride,
                                 grid_offset=grid_offset, steps=mid_refine_steps)
    else:
        mid = mid_offsets
    cand_by_type = [np.stack([cx[ck == t], cy[ck == t]], axis=1) for t in range(k)] if snap_radius > 0 else None

    limit = len(ck) if max_people is None else min(max_people, len(ck))
    decoded = np.zeros((max(limit, 1), k, 2))
    n = 0
    reached: list[np.ndarray] = []
    r2 = nms_radius ** 2
    for t, x, y in zip(ck.tolist(), cx.tolist(), cy.tolist()):
        if n >= limit:
            break
        if n and (((decoded[:n, t, 0] - x) ** 2 + (decoded[:n, t, 1] - y) ** 2) <= r2).any():
            continue
        pos = np.full((k, 2), np.nan)
        pos[t] = (x, y)
        queue = deque([t])
        while queue:
            a = queue.popleft()
            for e, b in adj[a]:
                if not np.isnan(pos[b, 0]):
                    continue
                m = bilinear_sample(mid, e, pos[a, 0], pos[a, 1], **gs)
                p = pos[a] + m
                for _ in range(point_steps):
                    p = p + bilinear_sample(short_offsets, b, p[0], p[1], **gs)
                if cand_by_type is not None and len(cand_by_type[b]):
                    d2 = ((cand_by_type[b] - p) ** 2).sum(axis=1)
                    i = int(np.argmin(d2))
                    if d2[i] <= snap_radius ** 2:
                        p = cand_by_type[b][i]
                pos[b] = p
                queue.append(b)
        unplaced = np.isnan(pos[:, 0])
        pos[unplaced] = (x, y)
        decoded[n] = pos
        reached.append(~unplaced)  # unreachable keypoints score 0
        n += 1
    if n == 0:
        return np.zeros((0, k, 3), np.float32), np.zeros(0, np.float32)
    xy = decoded[:n]
    reached_arr = np.stack(reached)
    presence = bilinear_sample(heatmaps, np.arange(k)[None], xy[..., 0], xy[..., 1], **gs)
    kp_scores = expected_oks(xy, hough, presence, 2.0 * sig, radius=radius, hough_stride=hough_stride)
    kp_scores = np.where(reached_arr, kp_scores, 0.0)
    inst = instance_scores(xy, kp_scores, nms_radius=nms_radius)
    order = np.argsort(-inst, kind="stable")
    keep = order[inst[order] >= score_threshold] if score_threshold > 0 else order
    poses = np.concatenate([xy[keep], kp_scores[keep, :, None]], axis=-1).astype(np.float32)
    return poses, inst[keep].astype(np.float32)
