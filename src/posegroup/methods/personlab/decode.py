"""PersonLab pose decoding (SPEC section 2; Papandreou et al., ECCV 2018, section 3).

Pipeline of :func:`decode_poses`:

1. **Hough voting** (paper eq. 1): every output cell x_i votes for keypoint k at
   ``x_i + S_k(x_i)`` with weight ``p_k(x_i)``; votes are splatted bilinearly (B) into a map of
   ``hough_stride`` input pixels per cell, normalised by 1/(πR²). The paper upsamples the heads
   to the input resolution and lets every input pixel vote; here each output cell votes with
   weight ``stride²`` (the number of input pixels it stands for), so a perfect disk still
   totals ~1. Optional Gaussian blur (σ = 2 input px, as in the reference implementations).
   By default a Hough cell is an output cell (``hough_stride`` = the output stride) and only
   cells with p_k > ``vote_threshold`` (0.01) vote; the paper's input-resolution map is
   :data:`PAPER_HOUGH`. :func:`~posegroup.methods.common.hough_scores` builds the dense (K, Hh, Wh) map; the decoder
   never does: on small maps (:data:`.hough.DENSE_HOUGH_CELLS`) it splats, blurs and max-filters only
   the box around each channel's votes (:func:`.hough.packed_peaks`), on large ones the rows and
   columns that votes can reach (:func:`.hough.sparse_peaks`); both give the peaks of
   :func:`.hough.find_peaks` on the dense map (see there).
2. **Candidates**: local maxima under a 3×3 max filter above ``peak_threshold``; positions are
   moved by the short-range offset at the peak (``refine_peaks``; the reference PoseNet decoder
   also places a keypoint at cell + short offset).
3. **Mid-range refinement** (paper: twice): ``M_{k,l}(x) <- x' + S_l(x') - x`` with
   ``x' = x + M_{k,l}(x)``. ``mid_refine="field"`` refines the whole field first (paper);
   ``"point"`` applies the same update only where the decoder reads the field.
4. **Greedy decoding**: one priority queue of all candidates of all K types by Hough score.
   A candidate within ``nms_radius`` (r = 10 px, paper) of the same keypoint of an already
   decoded person is dropped; otherwise it seeds a person and the kinematic tree is followed
   breadth-first from the seed, along the given directed edges whose source is already placed:
   ``y_l = y_k + M_{k,l}(y_k)``. Only the directions present in ``edges`` are followed (a
   single direction works; the tree must then be reachable from the seed). Keypoints that
   cannot be reached are put at the seed with score 0. A person depends only on its seed, so
   the people of a batch of surviving candidates are grown together (vectorised over the
   batch, one read per tree depth); the queue walk of the batch is then solved as a fixed
   point (:func:`_greedy_keep`), exactly the one-at-a-time greedy loop.
5. **Scoring** (paper): keypoint score = expected OKS
   ``s_{j,k} = p_k(y_{j,k}) · Σ_{x∈D_R(y)} ĥ_k(x) exp(-|x - y|² / (2 λ_j² κ_k²))`` with ĥ_k the
   (unblurred) Hough map normalised within the disk, λ_j = √(area of the box around the
   person's keypoints) and κ_k = 2 σ_k (COCO's OKS constant, cocodataset.org: k_i = 2σ_i).
   Instance score = Σ of keypoint scores not within r of the same keypoint of a
   higher-scoring instance, / K (instances ranked by their mean keypoint score first).

Offset sampling (``offset_sampling``): the paper reads every field bilinearly at continuous
positions (its heads are bilinearly upsampled to the input). Where two people's disks meet,
bilinear sampling averages their vectors; ``"nearest"`` instead takes the nearest output cell
c and returns ``c + F(c)`` (the vote of that cell), which for a perfect field is exactly the
target of the person owning c. Both give ``x + F(x)`` for a smooth field.

Coordinates: cell (i, j) of every (·, H, W) map sits at input ``(j·stride + grid_offset,
i·stride + grid_offset)``; offsets are (x, y) in input pixels; a Hough cell (r, c) covers
input ``[c·hs, (c+1)·hs) × [r·hs, (r+1)·hs)``.

Options of :func:`decode_poses`, with their measured effect
------------------------------------------------------------

    hough_stride: input px per Hough cell; None (default): the output stride, i.e. one
        Hough cell per output cell (candidates are then moved to their sub-cell position by
        the short offset, ``refine_peaks``). Paper: 1, input resolution (``PAPER_HOUGH``, 20-40x
        slower). The map holds the vote mass per Hough cell, so
        ``peak_threshold`` depends on it (measured against the paper's: docs/decoders.md).
    blur_sigma: Gaussian blur of the Hough maps before peak finding, input px (reference
        implementations ~2; 0 = off).
    peak_threshold: minimum blurred Hough score of a candidate (SPEC: 0.004-0.01 in the
        reference implementations; 0.01 here).
    refine_peaks: move each candidate by the short offset at it (PoseNet reference).
    mid_refine_steps: recurrent mid-offset refinements (paper: 2).
    mid_refine: where the refinement is applied. ``"field"``: the whole mid-offset field
        before decoding (paper, O(E × H × W)); ``"point"`` (default): the same update only
        where the decoder reads the field (x' = y_k + M(y_k), then x' <- x' + S_l(x'),
        ``mid_refine_steps`` times): identical with ``offset_sampling="nearest"``, and with
        bilinear sampling the same up to the order of interpolation; O(people × edges).
        Default "point" (departure from the paper's wording, not its intent): on perfect
        outputs of the 511 COCO val layouts it scores at least as well as "field" (AP
        0.9873 vs 0.9850 at input 512 / stride 4; 0.9819 vs 0.9802 at stride 8 on the
        image) and on PoseNet (136 local COCO images, input 513: AP 0.2695 vs 0.2618), at
        ~4 ms instead of ~60 ms per image.
    offset_sampling: how the short / mid offsets are read at continuous positions:
        ``"bilinear"`` (paper: heads upsampled bilinearly; default) or ``"nearest"`` (the
        vote ``c + F(c)`` of the nearest cell c: where two people's disks meet it follows
        one person instead of averaging both; see :func:`.hough.offset_targets`). Perfect outputs
        (511 COCO val layouts, input 512, stride 4): AP 0.9873 bilinear, 0.9900 nearest
        (with ``oks_mass="votes"``); PoseNet (stride 16): 0.2695 bilinear, 0.2587 nearest.
    oks_mass: the Hough mass ĥ_k of the expected-OKS score: ``"map"`` (paper: the Hough map,
        its cell centres at ``hough_stride``) or ``"votes"`` (every vote at its exact
        position: the same mass without the ±hough_stride/2 discretisation, which matters
        when λ_j κ_k is below a pixel, e.g. a person reduced to one keypoint; cost
        O(people × votes) instead of O(people × non-zero Hough cells)). PoseNet: AP 0.2695
        "map", 0.2685 "votes".
    nms_radius: r in input px (paper: 10).
    snap_radius: if > 0, a keypoint placed by a mid-range offset snaps to the nearest
        candidate (Hough peak) of its type within this distance, input px (SPEC: optional;
        default 0 = off, as in the paper's equations). Perfect outputs: snap 8 px gives AP
        0.9874 (paper settings) / 0.9890 (exact options), i.e. no gain: where two people's
        same joints are a few px apart their Hough peaks merge and both snap to one;
        PoseNet: 0.2714 vs 0.2695.
    max_people: stop after this many people (None: no limit, as in the paper).
    score_threshold: drop people whose instance score is below this (default 0: keep all).
    vote_threshold: only cells with p_k above it vote (default 0.01; paper 0: every cell
        with p > 0). A cell below 0.01 adds < 0.01 stride²/(πR²) to the map; skipping them
        makes the voting ~15x cheaper on PoseNet's dense sigmoid maps (AP 0.2787 vs 0.2781).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from .hough import (SAMPLING, OffsetReader, bilinear_sample, finite_offsets, find_candidates, hough_size,
                    refine_mid_offsets)

#: candidates grown together in the first batch of the greedy loop (then x4 per batch)
_FIRST_BATCH = 32
#: largest batch (its (B, B) claim matrix is the memory bound)
_MAX_BATCH = 1024


# ---------------------------------------------------------------------------------- scoring
def _disk_cells(radius: float, hough_stride: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (dr, dc) whose centre can lie within ``radius`` of a point of cell (0, 0):
    its nearest centre distance is at least (|d| - 1/2) cells per axis (|d| >= 1)."""
    n = int(math.ceil(radius / hough_stride)) + 1
    d = np.arange(-n, n + 1)
    dr, dc = np.meshgrid(d, d, indexing="ij")
    near = np.maximum(np.abs(dr) - 0.5, 0) ** 2 + np.maximum(np.abs(dc) - 0.5, 0) ** 2
    keep = near * hough_stride ** 2 <= radius * radius
    return dr[keep], dc[keep]


def _box_area(poses_xy: np.ndarray) -> np.ndarray:
    """λ² = area of the box around each person's keypoints, floored at 1 px²."""
    return np.maximum(np.prod(poses_xy.max(axis=1) - poses_xy.min(axis=1), axis=1), 1.0)


def expected_oks(poses_xy: np.ndarray, hough: np.ndarray, presence: np.ndarray, kappas: np.ndarray, *,
                 radius: float = 32.0, hough_stride: float = 1.0, chunk: int = 16) -> np.ndarray:
    """Expected-OKS keypoint scores (paper section 3.1) from a dense Hough map.

    Args:
        poses_xy: (N, K, 2) keypoint positions (input px).
        hough: (K, Hh, Wh) unblurred Hough maps h_k.
        presence: (N, K) p_k(y_{j,k}).
        kappas: (K,) κ_k (= 2 σ_k for COCO's OKS).
    Returns: (N, K) s_{j,k} = p_k(y) Σ_{x∈D_R(y)} ĥ_k(x) exp(-|x-y|²/(2 λ² κ_k²)), x the Hough
    cell centres within R of y.
    """
    n, k = poses_xy.shape[:2]
    if n == 0:
        return np.zeros((0, k))
    _, hh, wh = hough.shape
    lam2 = _box_area(poses_xy)
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


def expected_oks_sparse(poses_xy: np.ndarray, points: tuple, presence: np.ndarray, kappas: np.ndarray, *,
                        radius: float = 32.0, max_pairs: int = 1 << 21) -> np.ndarray:
    """:func:`expected_oks` with the Hough mass given as weighted points ``(k, x, y, h)``
    (input px): the non-zero Hough cells (``sparse_peaks(..., return_cells=True)``, at their
    centres; then identical to :func:`expected_oks`) or the raw votes (:func:`~posegroup.methods.common.raw_votes`).
    Cost O(N × points) instead of O(N × K × disk area)."""
    n, k = poses_xy.shape[:2]
    if n == 0:
        return np.zeros((0, k))
    ck, cx, cy, ch = points
    if len(ck) == 0:
        return np.zeros((n, k))
    lam2 = _box_area(poses_xy)
    inv2k2 = 1.0 / (2.0 * np.asarray(kappas, np.float64)[ck] ** 2)
    num = np.zeros(n * k)
    den = np.zeros(n * k)
    step = max(1, max_pairs // len(ck))
    px, py = poses_xy[..., 0], poses_xy[..., 1]
    for s0 in range(0, n, step):
        d2 = (cx - px[s0:s0 + step][:, ck]) ** 2                  # (n', U)
        d2 += (cy - py[s0:s0 + step][:, ck]) ** 2
        j, u = np.nonzero(d2 <= radius * radius)                   # the pairs within the disk only
        hv = ch[u]
        g = np.exp(-d2[j, u] * inv2k2[u] / lam2[s0 + j])
        idx = (s0 + j) * k + ck[u]
        num += np.bincount(idx, weights=hv * g, minlength=n * k)
        den += np.bincount(idx, weights=hv, minlength=n * k)
    num, den = num.reshape(n, k), den.reshape(n, k)
    return presence * np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def instance_scores(poses_xy: np.ndarray, keypoint_scores: np.ndarray, *, nms_radius: float = 10.0
                    ) -> np.ndarray:
    """Paper: Σ of keypoint scores not within r of the same keypoint of a higher-scoring
    instance (ranked by mean keypoint score), / K. (N, K, 2), (N, K) -> (N,)."""
    n, k = keypoint_scores.shape
    if n == 0:
        return np.zeros(0)
    order = np.argsort(-keypoint_scores.mean(axis=1), kind="stable")
    xy = poses_xy[order]
    claimed = np.zeros((n, k), bool)
    step = max(1, (1 << 20) // (n * k))                           # rows j per chunk
    for s in range(0, n, step):
        d2 = ((xy[s:s + step, None] - xy[None]) ** 2).sum(-1)     # (j, i, K)
        higher = np.arange(n)[None, :] < np.arange(s, min(n, s + step))[:, None]   # i ranked before j
        claimed[s:s + step] = ((d2 <= nms_radius ** 2) & higher[..., None]).any(axis=1)
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


@functools.lru_cache(maxsize=64)
def _tree_plans(edges: tuple[tuple[int, int], ...], k: int) -> np.ndarray:
    """(K, K-1, 3) int: for a seed of type t, the breadth-first steps (edge, source, target)
    that place the other keypoints (-1 rows once nothing more is reachable)."""
    adj = _adjacency(edges, k)
    plans = np.full((k, max(k - 1, 1), 3), -1, np.int64)
    for t in range(k):
        placed = {t}
        queue = [t]
        s = 0
        while queue:
            a = queue.pop(0)
            for e, b in adj[a]:
                if b not in placed:
                    placed.add(b)
                    plans[t, s] = (e, a, b)
                    s += 1
                    queue.append(b)
    return plans


@functools.lru_cache(maxsize=64)
def _plan_levels(edges: tuple[tuple[int, int], ...], k: int) -> np.ndarray:
    """(K, K-1) int: the tree depth (1, 2, ...) of each step's target in :func:`_tree_plans`
    (0 for the -1 rows). Steps of one depth only read positions placed at smaller depths, so
    they are taken together."""
    plans = _tree_plans(edges, k)
    levels = np.zeros(plans.shape[:2], np.int64)
    for t in range(k):
        depth = {t: 0}
        for s, (e, a, b) in enumerate(plans[t]):
            if e >= 0:
                depth[int(b)] = depth[int(a)] + 1
                levels[t, s] = depth[int(b)]
    return levels


def _greedy_keep(poses: np.ndarray, types: np.ndarray, xy: np.ndarray, r2: float) -> np.ndarray:
    """The queue walk of a batch, vectorised: candidate c (in queue order) seeds a person unless
    it lies within r (``r2`` = r²) of the same keypoint of a person seeded by an earlier kept
    candidate. ``poses`` (B, K, 2) the people each candidate would seed, ``types`` (B,),
    ``xy`` (B, 2). Solved as the fixed point of keep[c] = no kept i < c claims c (reached after
    at most the longest chain of claims; each round is one (B, B) step)."""
    b = len(types)
    d2 = ((poses[:, types, :] - xy[None, :, :]) ** 2).sum(-1)       # (seed i, candidate c)
    claims = (d2 <= r2) & np.tri(b, b, -1, dtype=bool).T           # i < c only
    keep = np.ones(b, dtype=bool)
    for _ in range(32):
        new = ~(claims & keep[:, None]).any(axis=0)
        if np.array_equal(new, keep):
            return keep
        keep = new
    for c in range(b):                                              # long claim chains: in order
        keep[c] = not (claims[:c, c] & keep[:c]).any()
    return keep


def decode_poses(heatmaps: np.ndarray, short_offsets: np.ndarray, mid_offsets: np.ndarray, *,
                 edges: Sequence[tuple[int, int]], output_stride: float, grid_offset: float = 0.0,
                 radius: float = 32.0, sigmas: Sequence[float] | None = None,
                 hough_stride: float | None = None, blur_sigma: float = 2.0, peak_threshold: float = 0.01,
                 refine_peaks: bool = True, mid_refine_steps: int = 2, mid_refine: str = "point",
                 offset_sampling: str = "bilinear", oks_mass: str = "map", nms_radius: float = 10.0,
                 snap_radius: float = 0.0, max_people: int | None = None,
                 score_threshold: float = 0.0, vote_threshold: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
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
        hough_stride: input px per Hough cell; None (default): the output stride.
        blur_sigma: Gaussian blur of the Hough maps before peak finding, input px (0 = off).
        peak_threshold: minimum blurred Hough score of a candidate.
        refine_peaks: move each candidate by the short offset at it (PoseNet reference).
        mid_refine_steps: recurrent mid-offset refinements (paper: 2).
        mid_refine: ``"point"`` (default) or ``"field"`` (paper): where the refinement applies.
        offset_sampling: ``"bilinear"`` (paper, default) or ``"nearest"``.
        oks_mass: ``"map"`` (paper, default) or ``"votes"``: the Hough mass of the expected OKS.
        nms_radius: r in input px (paper: 10).
        snap_radius: > 0: a keypoint placed by a mid-range offset snaps to the nearest candidate
            of its type within this distance, input px (default 0 = off).
        max_people: stop after this many people (None: no limit, as in the paper).
        score_threshold: drop people whose instance score is below this (default 0: keep all).
        vote_threshold: only cells with p_k above it vote (default 0.01; paper 0).
        Every option's reasons and measured effect: "Options of decode_poses" in the module
        docstring.
    Returns:
        poses (N, K, 3) float32 x, y, expected-OKS keypoint score (input px), and scores (N,)
        float32 instance scores, sorted by decreasing score.
    """
    heatmaps, short_offsets, mid_offsets, edges, sig = _check_decode_args(
        heatmaps, short_offsets, mid_offsets, edges, sigmas, dict(
            output_stride=output_stride, radius=radius, hough_stride=hough_stride, blur_sigma=blur_sigma,
            peak_threshold=peak_threshold, mid_refine_steps=mid_refine_steps, nms_radius=nms_radius,
            snap_radius=snap_radius, max_people=max_people, score_threshold=score_threshold,
            vote_threshold=vote_threshold, grid_offset=grid_offset),
        mid_refine=mid_refine, oks_mass=oks_mass, offset_sampling=offset_sampling)
    k = heatmaps.shape[0]
    if heatmaps.size == 0:
        return np.zeros((0, k, 3), np.float32), np.zeros(0, np.float32)
    hs = float(output_stride) if hough_stride is None else float(hough_stride)
    gs = dict(stride=output_stride, grid_offset=grid_offset)
    # 1-2. Hough votes -> candidates (dense maps when small, else the sparse vote list; same peaks)
    ck, cxy, mass = find_candidates(heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset,
                                    radius=radius, hough_stride=hs, peak_threshold=peak_threshold,
                                    blur_sigma=blur_sigma, vote_threshold=vote_threshold, oks_mass=oks_mass)
    read_short = OffsetReader(short_offsets, sampling=offset_sampling, finite=True, **gs)
    if refine_peaks and len(ck):
        cxy = read_short(ck, cxy[:, 0], cxy[:, 1])
    # 3. mid-range refinement ("field": the whole field first; "point": inside grow)
    if mid_refine == "field" and mid_refine_steps:
        mid = refine_mid_offsets(finite_offsets(mid_offsets), finite_offsets(short_offsets), edges,
                                 output_stride=output_stride, grid_offset=grid_offset, steps=mid_refine_steps,
                                 sampling=offset_sampling)
    else:
        mid = mid_offsets
    grower = _Grower(ck, cxy, edges, k, OffsetReader(mid, sampling=offset_sampling, finite=True, **gs), read_short,
                     mid_refine_steps if mid_refine == "point" else 0, snap_radius)
    # 4. greedy decoding over the priority queue, in growing batches
    xy, reached = _greedy_decode(ck, cxy, grower, max_people, nms_radius ** 2)
    if len(xy) == 0:
        return np.zeros((0, k, 3), np.float32), np.zeros(0, np.float32)
    # 5. scoring
    return _score_people(heatmaps, xy, reached, mass, 2.0 * sig, gs, radius=radius, hough_stride=hs,
                         nms_radius=nms_radius, score_threshold=score_threshold)


def _score_people(heatmaps: np.ndarray, xy: np.ndarray, reached: np.ndarray, mass, kappa: np.ndarray, gs: dict, *,
                  radius: float, hough_stride: float, nms_radius: float,
                  score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 5 of :func:`decode_poses`: expected-OKS keypoint scores (0 where not ``reached``),
    instance scores, people sorted by decreasing score above ``score_threshold``.
    ``heatmaps`` (K, H, W); ``xy`` (N, K, 2) input px; ``reached`` (N, K) bool; ``mass`` the
    dense Hough map (K, Hh, Wh) or the sparse votes; ``kappa`` (K,) = 2 σ_k; ``gs`` the grid
    (stride, grid_offset). Returns poses (N', K, 3) float32 and scores (N',) float32."""
    k = heatmaps.shape[0]
    presence = bilinear_sample(heatmaps, np.arange(k)[None], xy[..., 0], xy[..., 1], **gs)
    if isinstance(mass, np.ndarray):
        kp_scores = expected_oks(xy, mass, presence, kappa, radius=radius, hough_stride=hough_stride)
    else:
        kp_scores = expected_oks_sparse(xy, mass, presence, kappa, radius=radius)
    kp_scores = np.where(reached, kp_scores, 0.0)
    inst = instance_scores(xy, kp_scores, nms_radius=nms_radius)
    order = np.argsort(-inst, kind="stable")
    keep = order[inst[order] >= score_threshold] if score_threshold > 0 else order
    poses = np.concatenate([xy[keep], kp_scores[keep, :, None]], axis=-1).astype(np.float32)
    return poses, inst[keep].astype(np.float32)


#: The paper's Hough settings: votes of every cell with p > 0
#: into a map at input resolution (peaks then found on the sparse vote list). About 20-40x
#: slower than the defaults (``posegroup benchmark decode`` measures both).
PAPER_HOUGH = {"hough_stride": 1.0, "vote_threshold": 0.0}
#: Largest Hough map side accepted (cells); a smaller ``hough_stride`` is an error.
MAX_HOUGH_SIDE = 1 << 14


def _check_decode_args(heatmaps, short_offsets, mid_offsets, edges, sigmas, knobs, *, mid_refine, oks_mass,
                       offset_sampling):
    """Shapes, choices and numeric knobs of :func:`decode_poses` (ValueError naming the knob);
    non-finite map values are neutralised (heatmap NaN / -inf -> 0, +inf -> 1; offsets -> 0)."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    short_offsets = np.asarray(short_offsets, dtype=np.float32)
    mid_offsets = np.asarray(mid_offsets, dtype=np.float32)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must have shape (K, H, W), got {heatmaps.shape}")
    k, h, w = heatmaps.shape
    edges = tuple((int(a), int(b)) for a, b in edges)
    if short_offsets.shape != (k, h, w, 2):
        raise ValueError(f"short_offsets must be {(k, h, w, 2)}, got {short_offsets.shape}")
    if mid_offsets.shape != (len(edges), h, w, 2):
        raise ValueError(f"mid_offsets must be {(len(edges), h, w, 2)} for {len(edges)} edges, "
                         f"got {mid_offsets.shape}")
    for name, value, choices in (("mid_refine", mid_refine, ("field", "point")),
                                 ("oks_mass", oks_mass, ("map", "votes")),
                                 ("offset_sampling", offset_sampling, SAMPLING)):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    positive = ("output_stride", "radius", "hough_stride")
    for name, v in knobs.items():
        if v is None and name in ("hough_stride", "max_people"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        if (name in positive and v <= 0) or (name != "grid_offset" and v < 0):
            raise ValueError(f"{name} must be {'> 0' if name in positive else '>= 0'}, got {v!r}")
    if knobs["vote_threshold"] >= 1:
        raise ValueError(f"vote_threshold must be in [0, 1), got {knobs['vote_threshold']!r}")
    if knobs["max_people"] is not None and int(knobs["max_people"]) < 1:
        raise ValueError(f"max_people must be >= 1 or None, got {knobs['max_people']!r}")
    if int(knobs["mid_refine_steps"]) != knobs["mid_refine_steps"] or knobs["mid_refine_steps"] > 16:
        raise ValueError(f"mid_refine_steps must be an integer in [0, 16], got {knobs['mid_refine_steps']!r}")
    hs = knobs["hough_stride"] or knobs["output_stride"]
    if max(hough_size((h, w), knobs["output_stride"], knobs["grid_offset"], hs)) > MAX_HOUGH_SIDE:
        raise ValueError(f"hough_stride {hs!r} makes a Hough map side above {MAX_HOUGH_SIDE} cells")
    sig = np.full(k, 0.05) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (k,):
        raise ValueError(f"{sig.shape[0] if sig.ndim else 1} sigmas for {k} keypoints")
    if not np.isfinite(heatmaps).all():
        heatmaps = np.nan_to_num(heatmaps, nan=0.0, posinf=1.0, neginf=0.0)
    # non-finite offsets read as 0 where they are read (votes, OffsetReader(finite=True), finite_offsets)
    return heatmaps, short_offsets, mid_offsets, edges, sig


class _Grower:
    """People seeded by candidates, grown along the tree (vectorised over the seeds, one read
    per tree depth): ``grow(idx)`` -> positions (C, K, 2) and reached (C, K)."""

    def __init__(self, ck, cxy, edges, k, read_mid, read_short, point_steps, snap_radius):
        self.ck, self.cxy, self.k = ck, cxy, k
        self.plans, self.levels = _tree_plans(edges, k), _plan_levels(edges, k)
        self.read_mid, self.read_short, self.point_steps = read_mid, read_short, point_steps
        self.snap_radius, self.snap_table = snap_radius, None
        if snap_radius > 0 and len(ck):
            counts = np.bincount(ck, minlength=k)
            self.snap_table = np.full((k, int(counts.max()), 2), np.inf)
            order = np.argsort(ck, kind="stable")
            rank = np.arange(len(ck)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[ck[order]]
            self.snap_table[ck[order], rank] = cxy[order]

    def __call__(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, ck, cxy = len(idx), self.ck, self.cxy
        pos = np.full((c, self.k, 2), np.nan)
        pos[np.arange(c), ck[idx]] = cxy[idx]
        level = self.levels[ck[idx]]
        rows, steps = np.nonzero(level)
        order = np.argsort(level[rows, steps], kind="stable")
        rows, steps = rows[order], steps[order]
        ends = np.cumsum(np.bincount(level[rows, steps]))
        plan = self.plans[ck[idx][rows], steps]                     # (S, 3) edge, source, target
        cells_mid, cells_short = self.read_mid.cells, self.read_short.cells
        for depth in range(1, len(ends)):
            sl = slice(ends[depth - 1], ends[depth])
            r, (e, a, b) = rows[sl], plan[sl].T
            p = self.read_mid.read(e * cells_mid, pos[r, a])
            base_b = b * cells_short
            for _ in range(self.point_steps):
                p = self.read_short.read(base_b, p)
            if self.snap_table is not None:
                d2 = ((self.snap_table[b] - p[:, None]) ** 2).sum(-1)  # (C', M)
                j = np.argmin(d2, axis=1)
                near = d2[np.arange(len(r)), j] <= self.snap_radius ** 2
                p = np.where(near[:, None], self.snap_table[b, j], p)
            pos[r, b] = p
        reached = ~np.isnan(pos[..., 0])
        return np.where(reached[..., None], pos, cxy[idx][:, None]), reached


def _greedy_decode(ck, cxy, grow, max_people, r2):
    """Step 4: walk the queue in batches (``_FIRST_BATCH``, then x4 up to ``_MAX_BATCH``);
    candidates claimed by a decoded person are dropped before growing. Returns the people's
    positions (N, K, 2) and reached flags (N, K)."""
    p_num, k = len(ck), grow.k
    limit = p_num if max_people is None else min(int(max_people), p_num)
    decoded = np.zeros((limit, k, 2))
    reached_all = np.zeros((limit, k), bool)
    n = 0
    start, batch = 0, _FIRST_BATCH
    while start < p_num and n < limit:
        idx = np.arange(start, min(p_num, start + batch))
        start += len(idx)
        batch = min(batch * 4, _MAX_BATCH)
        if n:  # drop the candidates already claimed by a decoded person
            idx = idx[~_claimed(decoded[:n], ck[idx], cxy[idx], r2)]
        if not len(idx):
            continue
        poses_b, reached_b = grow(idx)
        kept = np.flatnonzero(_greedy_keep(poses_b, ck[idx], cxy[idx], r2))[:limit - n]
        decoded[n:n + len(kept)] = poses_b[kept]
        reached_all[n:n + len(kept)] = reached_b[kept]
        n += len(kept)
    return decoded[:n], reached_all[:n]


def _claimed(people, types, xy, r2, chunk: int = 1 << 20) -> np.ndarray:
    """(C,) bool: candidate within sqrt(r2) of the same keypoint of one of ``people`` (N, K, 2)."""
    out = np.zeros(len(types), bool)
    step = max(1, chunk // max(len(people), 1))
    for s in range(0, len(types), step):
        d2 = ((people[:, types[s:s + step]] - xy[None, s:s + step]) ** 2).sum(-1)
        out[s:s + step] = (d2 <= r2).any(axis=0)
    return out
