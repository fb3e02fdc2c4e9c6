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
   :data:`PAPER_HOUGH`. :func:`hough_scores` builds the dense (K, Hh, Wh) map; the decoder
   never does: on small maps (:data:`DENSE_HOUGH_CELLS`) it splats, blurs and max-filters only
   the box around each channel's votes (:func:`packed_peaks`), on large ones the rows and
   columns that votes can reach (:func:`sparse_peaks`); both give the peaks of
   :func:`find_peaks` on the dense map (see there).
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
        the short offset, ``refine_peaks``). Paper: 1, input resolution (``PAPER_HOUGH``, the
        earlier default, 20-40x slower). The map holds the vote mass per Hough cell, so
        ``peak_threshold`` depends on it. Measured (``posegroup benchmark decode``): perfect
        outputs of the 511 COCO val layouts (input 512, stride 4) AP 0.985 both; PoseNet
        (136 local COCO images, stride 16, its own thresholds) AP 0.279 vs 0.270.
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
        one person instead of averaging both; see :func:`offset_targets`). Perfect outputs
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

import cv2
import numpy as np

_SAMPLING = ("bilinear", "nearest")
#: candidates grown together in the first batch of the greedy loop (then x4 per batch)
_FIRST_BATCH = 32
#: largest batch (its (B, B) claim matrix is the memory bound)
_MAX_BATCH = 1024
#: Hough maps of at most this many cells (K x Hh x Wh) go through :func:`packed_peaks` (boxes
#: around the votes in one canvas), larger ones through the sparse vote list
#: (:func:`sparse_peaks`). Both give the dense map's peaks; the expected-OKS mass is the map's
#: non-zero cells (:func:`expected_oks_sparse`).
DENSE_HOUGH_CELLS = 1 << 19


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


#: offset fields of at most this many cells x channels are checked for non-finite values whole
#: (once); larger ones where they are read
_CHECK_WHOLE_FIELD = 1 << 17


class _OffsetReader:
    """Fast :func:`offset_targets` for 1-D point sets (the decoder's inner loop): the field is
    viewed once as one complex64 per cell (x + iy, so that a gather is one 1-D take) and each
    read is a handful of NumPy operations on the (n, 2) points. With ``finite`` (the decoder),
    non-finite field values read as 0, checked on the few values read rather than the field."""

    def __init__(self, field: np.ndarray, *, stride: float, grid_offset: float, sampling: str,
                 finite: bool = False):
        if sampling not in _SAMPLING:
            raise ValueError(f"sampling must be one of {_SAMPLING}, got {sampling!r}")
        c, h, w = field.shape[:3]
        self.h, self.w, self.cells = h, w, h * w
        f = np.ascontiguousarray(field, dtype=np.float64 if field.dtype == np.float64 else np.float32)
        self.flat = f.view(np.complex128 if f.dtype == np.float64 else np.complex64).reshape(c * h * w)
        self.inv = 1.0 / float(stride)
        self.stride = float(stride)
        self.go = float(grid_offset)
        self.nearest = sampling == "nearest"
        self.finite = finite
        if finite and self.flat.size <= _CHECK_WHOLE_FIELD:        # small field: checked once, here
            if not np.isfinite(self.flat).all():
                self.flat = np.nan_to_num(self.flat, nan=0.0, posinf=0.0, neginf=0.0)
            self.finite = False
        # bilinear: u is clamped just below w - 1 so that u0 + 1 stays on the grid (a weight of
        # 1e-9 moves to the last cell's neighbour); a 1-cell axis reads one cell
        self.qmax = (np.array([w - 0.5, h - 0.5]) if self.nearest else
                     np.array([w - 1 - 1e-9 if w > 1 else 0.0, h - 1 - 1e-9 if h > 1 else 0.0]))
        du, dv = int(w > 1), w * int(h > 1)
        self.corners = np.array([0, du, dv, dv + du], np.int64)[:, None]

    def __call__(self, ch: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) channels and positions -> (n, 2) targets (float64)."""
        p = np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=1)
        return self.read(np.asarray(ch, np.int64) * self.cells, p)

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        g = self.flat[idx]
        if self.finite and not np.isfinite(g).all():
            g = np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        return g.astype(np.complex128).view(np.float64).reshape(idx.shape + (2,))

    def read(self, base: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Targets (n, 2) of the points ``p`` (n, 2) (input px) in the channels whose first flat
        cell is ``base`` (n,) (= channel · H · W)."""
        q = p - self.go
        q *= self.inv
        if self.nearest:
            q += 0.5
            np.minimum(np.maximum(q, 0.0, out=q), self.qmax, out=q)
            ij = q.astype(np.int64)  # q >= 0: truncation = floor
            out = self._gather(base + ij[:, 1] * self.w + ij[:, 0])
            out += ij * self.stride + self.go
            return out
        np.minimum(np.maximum(q, 0.0, out=q), self.qmax, out=q)
        q0 = q.astype(np.int64)
        q -= q0
        g = self._gather((base + q0[:, 1] * self.w + q0[:, 0]) + self.corners)  # (4, n, 2)
        fu = q[:, 0:1]
        top = g[0] + (g[1] - g[0]) * fu
        top += ((g[2] + (g[3] - g[2]) * fu) - top) * q[:, 1:2]
        top += p
        return top


def offset_targets(field: np.ndarray, channels: np.ndarray, x: np.ndarray, y: np.ndarray, *,
                   stride: float, grid_offset: float = 0.0, sampling: str = "bilinear") -> np.ndarray:
    """Where an offset field (C, H, W, 2) sends the points (x, y) (input px): (*S, 2).

    ``"bilinear"`` (paper): ``(x, y) + B(F)(x, y)`` (positions clamped to the grid for the
    sampling). ``"nearest"``: ``c + F(c)`` for the output cell c nearest to (x, y) (clamped to
    the grid): a single cell's vote, never an average of two people's vectors.
    """
    ch, x, y = np.broadcast_arrays(np.asarray(channels, np.int64), np.asarray(x, np.float64),
                                   np.asarray(y, np.float64))
    reader = _OffsetReader(field, stride=stride, grid_offset=grid_offset, sampling=sampling)
    return reader(ch.reshape(-1), x.reshape(-1), y.reshape(-1)).reshape(ch.shape + (2,))


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
def raw_votes(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
              grid_offset: float = 0.0, radius: float = 32.0, min_p: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Hough votes before splatting: every cell with p_k > ``min_p`` (default 0) votes for
    keypoint k at ``x + S_k(x)`` (input px) with weight ``p_k · stride² / (πR²)``. Returns
    ``(k, x, y, w)`` sorted by k."""
    kk, ii, jj = np.nonzero(heatmaps > min_p)
    wv = heatmaps[kk, ii, jj].astype(np.float64) * (output_stride ** 2 / (math.pi * radius ** 2))
    so = short_offsets[kk, ii, jj].astype(np.float64)
    return kk, jj * output_stride + grid_offset + so[:, 0], ii * output_stride + grid_offset + so[:, 1], wv


def hough_votes(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
                grid_offset: float = 0.0, radius: float = 32.0, hough_stride: float = 1.0,
                hough_size_hw: tuple[int, int] | None = None, votes: tuple | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Bilinearly splatted Hough votes as a sparse list (paper eq. 1, unblurred).

    The votes of :func:`raw_votes` (or ``votes``) are each split over the 4 Hough cells around
    them. Returns ``(k, r, c, w, (Hh, Wh))``: one entry per (vote, corner) inside the map (the
    same Hough cell may appear several times; the dense map is their sum, :func:`hough_scores`).
    """
    k, h, w = heatmaps.shape
    hh, wh = hough_size_hw or hough_size((h, w), output_stride, grid_offset, hough_stride)
    kk, vx, vy, wv = votes if votes is not None else raw_votes(
        heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset, radius=radius)
    qx = vx / hough_stride - 0.5
    qy = vy / hough_stride - 0.5
    x0 = np.floor(qx).astype(np.int64)
    y0 = np.floor(qy).astype(np.int64)
    fx = qx - x0
    fy = qy - y0
    ks, rs, cs, ws = [], [], [], []
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                       (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < wh) & (yi >= 0) & (yi < hh) & (wt > 0)
        ks.append(kk[ok])
        rs.append(yi[ok])
        cs.append(xi[ok])
        ws.append(wv[ok] * wt[ok])
    return np.concatenate(ks), np.concatenate(rs), np.concatenate(cs), np.concatenate(ws), (hh, wh)


def hough_scores(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
                 grid_offset: float = 0.0, radius: float = 32.0, hough_stride: float = 1.0,
                 hough_size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Dense Hough score maps h_k (paper eq. 1), unblurred.

    Args:
        heatmaps: (K, H, W) probabilities p_k.
        short_offsets: (K, H, W, 2) (x, y) input pixels.
        radius: R (paper 32); the votes are normalised by 1/(πR²).
        hough_stride: input pixels per Hough cell (1 = input resolution, as in the paper).
    Returns: (K, Hh, Wh) float32.
    """
    k = heatmaps.shape[0]
    kk, rr, cc, ww, (hh, wh) = hough_votes(heatmaps, short_offsets, output_stride=output_stride,
                                           grid_offset=grid_offset, radius=radius,
                                           hough_stride=hough_stride, hough_size_hw=hough_size_hw)
    out = np.bincount((kk * hh + rr) * wh + cc, weights=ww, minlength=k * hh * wh)
    return out.reshape(k, hh, wh).astype(np.float32)



def _cells_above(heatmaps: np.ndarray, min_p: float):
    """The cells of ``heatmaps`` (K, H, W) with p > ``min_p``: ``(flat, sel, k, i, j)`` -- the
    flat maps, the flat indices (V,) ascending, and each cell's channel, row and column (V,)."""
    _, h, w = heatmaps.shape
    flat = heatmaps.reshape(-1)
    sel = np.flatnonzero(flat > min_p)
    kk, rem = np.divmod(sel, h * w)
    ii, jj = np.divmod(rem, w)
    return flat, sel, kk, ii, jj


def _dense_hough(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float, grid_offset: float,
                 radius: float, hough_stride: float, size_hw: tuple[int, int], min_p: float = 0.0) -> np.ndarray:
    """:func:`hough_scores` of the cells with p_k > ``min_p`` straight into a dense (K, Hh, Wh)
    map: one bincount over the four bilinear corners of the votes on a map with a 1-cell margin
    (votes whose 2x2 footprint misses the map, or with non-finite position or weight, are
    dropped; the margin is cut off). With ``min_p`` = 0 the same map as :func:`hough_scores` up
    to float summation order."""
    hh, wh = size_hw
    k = heatmaps.shape[0]
    flat, sel, kk, ii, jj = _cells_above(heatmaps, min_p)
    so = short_offsets.reshape(-1, 2)[sel].astype(np.float64)
    qx = (jj * output_stride + grid_offset + so[:, 0]) / hough_stride - 0.5
    qy = (ii * output_stride + grid_offset + so[:, 1]) / hough_stride - 0.5
    p = flat[sel].astype(np.float64) * (output_stride ** 2 / (math.pi * radius ** 2))
    ok = (qx >= -1) & (qx < wh) & (qy >= -1) & (qy < hh) & np.isfinite(p)
    qx, qy, p, kk = qx[ok], qy[ok], p[ok], kk[ok]
    x0 = np.floor(qx)
    y0 = np.floor(qy)
    fx = qx - x0
    fy = qy - y0
    ww = wh + 2
    idx = (kk * (hh + 2) + (y0.astype(np.int64) + 1)) * ww + (x0.astype(np.int64) + 1)
    pfx = p * fx
    p0 = p - pfx                                               # p (1 - fx)
    weights = np.concatenate([p0 * (1 - fy), pfx * (1 - fy), p0 * fy, pfx * fy])
    out = np.bincount(np.concatenate([idx, idx + 1, idx + ww, idx + ww + 1]), weights=weights,
                      minlength=k * (hh + 2) * ww)
    return out.reshape(k, hh + 2, ww)[:, 1:-1, 1:-1].astype(np.float32)

def _gauss_ksize(sigma_cells: float) -> int:
    """Odd Gaussian kernel size used for the blur (OpenCV's own choice for float images,
    2·round(4σ)+1, made explicit so that the dense and the sparse paths agree)."""
    return int(2 * math.ceil(4.0 * sigma_cells) + 1) if sigma_cells > 0 else 1


def _blur_and_max(hough: np.ndarray, sigma_cells: float) -> tuple[np.ndarray, np.ndarray]:
    """Per channel Gaussian blur (σ in cells, 0 = none) and 3×3 max filter, both with a zero
    border. (K, Hh, Wh) each. The channels are stacked in one canvas with ρ (kernel radius)
    zero rows between them, so one blur serves all; the separators are zeroed again before the
    max filter (= its zero border)."""
    k, hh, wh = hough.shape
    ks = _gauss_ksize(sigma_cells)
    sep = max(ks // 2, 1)
    canvas = np.zeros((k, hh + sep, wh), np.float32)
    canvas[:, :hh] = hough
    flat = canvas.reshape(k * (hh + sep), wh)
    if sigma_cells > 0:
        flat = cv2.GaussianBlur(flat, (ks, ks), sigmaX=sigma_cells, sigmaY=sigma_cells,
                                borderType=cv2.BORDER_CONSTANT)
        flat.reshape(k, hh + sep, wh)[:, hh:] = 0.0
    mx = cv2.dilate(flat, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out = flat.reshape(k, hh + sep, wh)[:, :hh]
    return out, mx.reshape(k, hh + sep, wh)[:, :hh]

def find_peaks(hough: np.ndarray, *, hough_stride: float = 1.0, peak_threshold: float = 0.01,
               blur_sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the (blurred) dense Hough maps.

    Args:
        hough: (K, Hh, Wh) Hough scores.
        peak_threshold: minimum (blurred) Hough score (SPEC: reference implementations use
            0.004–0.01; default 0.01).
        blur_sigma: Gaussian σ in input pixels (reference implementations: ~2; 0 = off).
    Returns: ``(k, x, y, score)`` arrays (P,), x/y the Hough cell centres in input pixels,
    sorted by decreasing score (ties: channel, row, column order).
    """
    blurred, mx = _blur_and_max(hough.astype(np.float32), blur_sigma / hough_stride)
    _, hh, wh = blurred.shape
    cand = np.flatnonzero(blurred > peak_threshold)             # threshold first: few cells
    k, rem = np.divmod(cand, hh * wh)
    r, c = np.divmod(rem, wh)
    s = blurred[k, r, c]
    keep = s >= mx[k, r, c]
    k, r, c, s = k[keep], r[keep], c[keep], s[keep]
    order = np.argsort(-s, kind="stable")
    k, r, c, s = k[order], r[order], c[order], s[order]
    return k, (c + 0.5) * hough_stride, (r + 0.5) * hough_stride, s


def _vote_corners(heatmaps: np.ndarray, short_c: np.ndarray, *, output_stride: float, grid_offset: float,
                  radius: float, hough_stride: float, size_hw: tuple[int, int], min_p: float):
    """The votes of the cells with p_k > ``min_p`` (``short_c``: the short offsets as a flat
    complex64 view, x + iy; non-finite offsets read as 0). Returns the votes of :func:`raw_votes`
    ``(k, x, y, w)``, and of those whose 2x2 bilinear footprint touches the (Hh, Wh) map: channel
    (V,) (ascending), top-left corner row and column (V,) (-1 ... Hh-1 / Wh-1), the fractions
    fx, fy (V,) and the weight (V,)."""
    hh, wh = size_hw
    flat, sel, kk, ii, jj = _cells_above(heatmaps, min_p)
    so = short_c[sel]
    if not np.isfinite(so).all():
        so = np.nan_to_num(so, nan=0.0, posinf=0.0, neginf=0.0)
    vx = jj * output_stride + grid_offset + so.real
    vy = ii * output_stride + grid_offset + so.imag
    p = flat[sel].astype(np.float64) * (output_stride ** 2 / (math.pi * radius ** 2))
    votes = (kk, vx, vy, p)
    qx = vx / hough_stride - 0.5
    qy = vy / hough_stride - 0.5
    ok = (qx >= -1) & (qx < wh) & (qy >= -1) & (qy < hh)
    if not ok.all():
        qx, qy, p, kk = qx[ok], qy[ok], p[ok], kk[ok]
    x0 = np.floor(qx)
    y0 = np.floor(qy)
    return votes, kk, y0.astype(np.int64), x0.astype(np.int64), qx - x0, qy - y0, p


#: Hough maps of at most this many cells (K x Hh x Wh) are packed whole (every channel, no
#: cropping: fewer operations on maps this small).
_WHOLE_MAP_CELLS = 1 << 15


def _crops(kk: np.ndarray, r0: np.ndarray, c0: np.ndarray, num_k: int, size_hw: tuple[int, int], margin: int,
           sep: int):
    """The boxes of :func:`packed_peaks`: per channel with votes, the rows / columns of its votes'
    corners ± ``margin``, clipped to one cell beyond the (Hh, Wh) map (or, for small maps, the
    whole map plus that ring for every channel). ``kk`` (V,) ascending channels, ``r0`` / ``c0``
    (V,) the votes' top-left corners. Returns channels (B,), first map row and column (B,),
    box height and width (B,), first canvas row (B,), each vote's canvas offset (V,) and the
    canvas (height, width)."""
    hh, wh = size_hw
    if num_k * (hh + 2) * (wh + 2) <= _WHOLE_MAP_CELLS:
        chans = np.arange(num_k)
        rlo, clo = np.full(num_k, -1), np.full(num_k, -1)
        bh, bw = np.full(num_k, hh + 2), np.full(num_k, wh + 2)
        counts = None
    else:
        starts = np.flatnonzero(np.concatenate([[True], kk[1:] != kk[:-1]]))
        chans = kk[starts]
        counts = np.diff(np.append(starts, len(kk)))
        rlo = np.maximum(np.minimum.reduceat(r0, starts) - margin, -1)
        clo = np.maximum(np.minimum.reduceat(c0, starts) - margin, -1)
        bh = np.minimum(np.maximum.reduceat(r0, starts) + 1 + margin, hh) - rlo + 1
        bw = np.minimum(np.maximum.reduceat(c0, starts) + 1 + margin, wh) - clo + 1
    row0 = np.concatenate([[0], np.cumsum(bh + sep)[:-1]])
    width = int(bw.max())
    off = (row0 - rlo) * width - clo
    off_v = off[kk] if counts is None else np.repeat(off, counts)
    return chans, rlo, clo, bh, bw, row0, off_v, (int((bh + sep).sum()), width)


def _inside_map(rlo, clo, bh, bw, row0, sep, canvas_hw, size_hw) -> np.ndarray:
    """(height, width) bool: the canvas cells of :func:`packed_peaks` that are map cells (not the
    ring beyond the map, the separators or the padding right of a narrower box)."""
    height, width = canvas_hw
    hh, wh = size_hw
    band = np.repeat(np.arange(len(rlo)), bh + sep)
    map_row = np.arange(height) - row0[band]                   # row within the box
    row_ok = (map_row < bh[band]) & (map_row + rlo[band] >= 0) & (map_row + rlo[band] < hh)
    lo = -clo[band]                                            # 1 where the box starts at column -1
    hi = np.minimum(bw, wh - clo)[band]
    col = np.arange(width)[None, :]
    return row_ok[:, None] & (col >= lo[:, None]) & (col < hi[:, None])


def packed_peaks(heatmaps: np.ndarray, short_c: np.ndarray, *, output_stride: float, grid_offset: float,
                 radius: float, hough_stride: float, size_hw: tuple[int, int], min_p: float, peak_threshold: float,
                 blur_sigma: float, cells: bool = True):
    """:func:`find_peaks` of the dense Hough map of :func:`_dense_hough` (the same peaks, scores
    and order; the map's cells hold the same sums) without building it: each channel's map is
    cut to the box of its votes ± (kernel radius ρ + 1) and the boxes are stacked in one canvas
    with ρ rows between them, where the votes are splatted, blurred and max-filtered. The cells
    of the canvas that are no map cells (the ring beyond the map, separators, padding) are
    zeroed before the blur and again before the max filter (= the map's zero border; within a
    box, a cell farther than ρ from every vote is 0 as on the map). ``short_c``: flat complex64
    view of the short offsets. Returns the peaks ``(k, x, y, score)``, with ``cells`` the map's
    non-zero cells ``(k, x, y, h)`` (centres, input px; h as the float32 map; else None), and
    the raw votes ``(k, x, y, w)`` (:func:`raw_votes`)."""
    k = heatmaps.shape[0]
    sig = blur_sigma / hough_stride
    ks = _gauss_ksize(sig)
    sep = max(ks // 2, 1)
    votes, kk, r0, c0, fx, fy, p = _vote_corners(heatmaps, short_c, output_stride=output_stride,
                                                 grid_offset=grid_offset, radius=radius, hough_stride=hough_stride,
                                                 size_hw=size_hw, min_p=min_p)
    e = np.zeros(0, np.int64)
    if len(kk) == 0:
        return (e, np.zeros(0), np.zeros(0), np.zeros(0, np.float32)), (e, np.zeros(0), np.zeros(0), np.zeros(0)), votes
    chans, rlo, clo, bh, bw, row0, off_v, (height, width) = _crops(kk, r0, c0, k, size_hw, ks // 2 + 1, sep)
    i = r0 * width + c0 + off_v
    pfx = p * fx
    p0 = p - pfx                                               # p (1 - fx)
    wt = np.concatenate([p0 * (1 - fy), pfx * (1 - fy), p0 * fy, pfx * fy])   # _dense_hough's order
    canvas = np.bincount(np.concatenate([i, i + 1, i + width, i + width + 1]), weights=wt,
                         minlength=height * width).astype(np.float32).reshape(height, width)
    outside = ~_inside_map(rlo, clo, bh, bw, row0, sep, (height, width), size_hw)
    canvas[outside] = 0.0
    blurred = canvas
    if sig > 0:
        blurred = cv2.GaussianBlur(canvas, (ks, ks), sigmaX=sig, sigmaY=sig, borderType=cv2.BORDER_CONSTANT)
        blurred[outside] = 0.0
    mx = cv2.dilate(blurred, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    pr, pc = np.nonzero((blurred >= mx) & (blurred > peak_threshold))
    s = blurred[pr, pc]
    order = np.argsort(-s, kind="stable")                      # ties: channel, row, column (canvas order)
    pr, pc, s = pr[order], pc[order], s[order]
    pb = np.searchsorted(row0, pr, side="right") - 1
    peaks = (chans[pb], (pc + clo[pb] + 0.5) * hough_stride, (pr - row0[pb] + rlo[pb] + 0.5) * hough_stride, s)
    if not cells:
        return peaks, None, votes
    nz = np.flatnonzero(canvas)
    nr, nc = np.divmod(nz, width)
    nb = np.searchsorted(row0, nr, side="right") - 1
    return peaks, (chans[nb], (nc + clo[nb] + 0.5) * hough_stride, (nr - row0[nb] + rlo[nb] + 0.5) * hough_stride,
                   canvas.reshape(-1)[nz].astype(np.float64)), votes


def _active(k: np.ndarray, v: np.ndarray, num_k: int, n: int, margin: int) -> np.ndarray:
    """(num_k, n) bool: positions within ``margin`` of an entry v of channel k."""
    lo = np.clip(v - margin, 0, n)
    hi = np.clip(v + margin + 1, 0, n)
    d = (np.bincount(k * (n + 1) + lo, minlength=num_k * (n + 1))
         - np.bincount(k * (n + 1) + hi, minlength=num_k * (n + 1)))
    return np.cumsum(d.reshape(num_k, n + 1), axis=1)[:, :n] > 0


def sparse_peaks(k: np.ndarray, r: np.ndarray, c: np.ndarray, w: np.ndarray, num_k: int,
                 size_hw: tuple[int, int], *, hough_stride: float = 1.0, peak_threshold: float = 0.01,
                 blur_sigma: float = 2.0, return_cells: bool = False):
    """:func:`find_peaks` of the Hough map given as a sparse vote list (:func:`hough_votes`).

    Exact shortcut: the blurred map (kernel radius ρ) is 0 farther than ρ from every vote, so
    only the rows and the columns within ρ + 1 of a vote of the channel are kept; the kept rows
    (columns) are packed together, which brings pieces of the map that are > ρ apart next to
    each other but never within ρ of a vote of another piece, so blur and 3×3 max filter are
    unchanged on the kept cells, and every other cell is 0 (never a peak, as
    ``peak_threshold`` >= 0). The channels are stacked in one canvas with ρ + 1 empty rows
    between them. With ``return_cells`` also returns the unblurred Hough map's non-zero cells
    ``(k, x, y, h)`` (each cell once, x / y its centre in input px).
    """
    hh, wh = size_hw
    sig = blur_sigma / hough_stride
    rho = _gauss_ksize(sig) // 2
    m = rho + 1
    if len(k) == 0:
        e = np.zeros(0, np.int64)
        peaks = (e, np.zeros(0), np.zeros(0), np.zeros(0, np.float32))
        return (peaks, (e, e, e, np.zeros(0))) if return_cells else peaks
    ra = _active(k, r, num_k, hh, m)
    ca = _active(k, c, num_k, wh, m)
    nr = ra.sum(axis=1)
    nc = ca.sum(axis=1)
    rpos = np.cumsum(ra, axis=1) - 1
    cpos = np.cumsum(ca, axis=1) - 1
    band0 = np.concatenate([[0], np.cumsum(nr + m)[:-1]])
    width = int(nc.max()) + m
    height = int((nr + m).sum())
    flat = (band0[k] + rpos[k, r]) * width + cpos[k, c]
    canvas64 = np.bincount(flat, weights=w, minlength=height * width)
    canvas = canvas64.astype(np.float32).reshape(height, width)
    if sig > 0:
        ks = _gauss_ksize(sig)
        blurred = cv2.GaussianBlur(canvas, (ks, ks), sigmaX=sig, sigmaY=sig, borderType=cv2.BORDER_CONSTANT)
    else:
        blurred = canvas
    mx = cv2.dilate(blurred, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    pr, pc = np.nonzero((blurred >= mx) & (blurred > peak_threshold))
    s = blurred[pr, pc]
    pk = np.searchsorted(band0, pr, side="right") - 1
    inside = (pr - band0[pk] < nr[pk]) & (pc < nc[pk])  # not the separator / padding
    pr, pc, pk, s = pr[inside], pc[inside], pk[inside], s[inside]
    # packed -> true rows / columns
    ar_k, ar_r = np.nonzero(ra)
    ac_k, ac_c = np.nonzero(ca)
    r0 = np.concatenate([[0], np.cumsum(nr)[:-1]])
    c0 = np.concatenate([[0], np.cumsum(nc)[:-1]])
    tr = ar_r[r0[pk] + pr - band0[pk]]
    tc = ac_c[c0[pk] + pc]
    order = np.lexsort((tc, tr, pk, -s))  # = find_peaks' order (score, then channel/row/column)
    pk, tr, tc, s = pk[order], tr[order], tc[order], s[order]
    peaks = (pk, (tc + 0.5) * hough_stride, (tr + 0.5) * hough_stride, s)
    if not return_cells:
        return peaks
    first = np.empty(height * width, np.int64)
    ids = np.arange(len(flat))
    first[flat[::-1]] = ids[::-1]
    u = first[flat] == ids
    return peaks, (k[u], (c[u] + 0.5) * hough_stride, (r[u] + 0.5) * hough_stride, canvas64[flat[u]])


def refine_mid_offsets(mid_offsets: np.ndarray, short_offsets: np.ndarray,
                       edges: Sequence[tuple[int, int]], *, output_stride: float,
                       grid_offset: float = 0.0, steps: int = 2, sampling: str = "bilinear") -> np.ndarray:
    """Recurrent mid-range refinement (paper: twice): M_{k,l}(x) <- x' + S_l(x') - x with
    x' = x + M_{k,l}(x), S_l sampled bilinearly (paper) or at the nearest cell
    (:func:`offset_targets`). mid_offsets (E, H, W, 2) -> same shape."""
    e, h, w = mid_offsets.shape[:3]
    px, py = _cell_xy(h, w, output_stride, grid_offset)
    tgt = np.asarray([b for _, b in edges], dtype=np.int64)[:, None, None]
    mid = mid_offsets.astype(np.float64)
    for _ in range(steps):
        p = offset_targets(short_offsets, tgt, px[None] + mid[..., 0], py[None] + mid[..., 1],
                           stride=output_stride, grid_offset=grid_offset, sampling=sampling)
        mid = p - np.stack([px, py], axis=-1)[None]
    return mid


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
    centres; then identical to :func:`expected_oks`) or the raw votes (:func:`raw_votes`).
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
    ck, cxy, mass = _candidates(heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset,
                                radius=radius, hough_stride=hs, peak_threshold=peak_threshold,
                                blur_sigma=blur_sigma, vote_threshold=vote_threshold, oks_mass=oks_mass)
    read_short = _OffsetReader(short_offsets, sampling=offset_sampling, finite=True, **gs)
    if refine_peaks and len(ck):
        cxy = read_short(ck, cxy[:, 0], cxy[:, 1])
    # 3. mid-range refinement ("field": the whole field first; "point": inside grow)
    if mid_refine == "field" and mid_refine_steps:
        mid = refine_mid_offsets(_finite(mid_offsets), _finite(short_offsets), edges, output_stride=output_stride,
                                 grid_offset=grid_offset, steps=mid_refine_steps, sampling=offset_sampling)
    else:
        mid = mid_offsets
    grower = _Grower(ck, cxy, edges, k, _OffsetReader(mid, sampling=offset_sampling, finite=True, **gs), read_short,
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


#: The paper's Hough settings, the decoder's earlier defaults: votes of every cell with p > 0
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
                                 ("offset_sampling", offset_sampling, _SAMPLING)):
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
    # non-finite offsets read as 0 where they are read (votes, _OffsetReader(finite=True), _finite)
    return heatmaps, short_offsets, mid_offsets, edges, sig


def _finite(offsets: np.ndarray) -> np.ndarray:
    """Offsets with non-finite values set to 0 (the whole field; for the paths that read most of it)."""
    return offsets if np.isfinite(offsets).all() else np.nan_to_num(offsets, nan=0.0, posinf=0.0, neginf=0.0)


def _candidates(heatmaps, short_offsets, *, output_stride, grid_offset, radius, hough_stride, peak_threshold,
                blur_sigma, vote_threshold, oks_mass):
    """Steps 1-2: candidate types (P,), positions (P, 2) (Hough cell centres, input px) in queue
    order, and the expected-OKS mass as points ``(k, x, y, h)``: the non-zero Hough cells, or
    with ``oks_mass="votes"`` the raw votes. Small maps (:data:`DENSE_HOUGH_CELLS`) through
    :func:`packed_peaks`, large ones through :func:`sparse_peaks` (the same peaks)."""
    k, h, w = heatmaps.shape
    hsize = hough_size((h, w), output_stride, grid_offset, hough_stride)
    small = k * hsize[0] * hsize[1] <= DENSE_HOUGH_CELLS
    if small:
        short_c = np.ascontiguousarray(short_offsets).view(np.complex64).reshape(-1)
        (ck, cx, cy, _), mass, votes = packed_peaks(
            heatmaps, short_c, output_stride=output_stride, grid_offset=grid_offset, radius=radius,
            hough_stride=hough_stride, size_hw=hsize, min_p=vote_threshold, peak_threshold=peak_threshold,
            blur_sigma=blur_sigma, cells=oks_mass == "map")
    else:
        short_offsets = _finite(short_offsets)
        votes = raw_votes(heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset,
                          radius=radius, min_p=vote_threshold)
        vk, vr, vc, vw, hsize = hough_votes(heatmaps, short_offsets, output_stride=output_stride,
                                            grid_offset=grid_offset, radius=radius, hough_stride=hough_stride,
                                            votes=votes)
        (ck, cx, cy, _), mass = sparse_peaks(vk, vr, vc, vw, k, hsize, hough_stride=hough_stride,
                                             peak_threshold=peak_threshold, blur_sigma=blur_sigma,
                                             return_cells=True)
    if oks_mass == "votes":
        mass = votes
    return ck, np.stack([cx, cy], axis=1).astype(np.float64), mass


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
