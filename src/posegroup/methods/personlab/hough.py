"""PersonLab's Hough voting and peak finding (steps 1-2 of :func:`.decode.decode_poses`; the
pipeline, the coordinates and every option: the docstring of :mod:`.decode`), and the reading
of offset fields at continuous positions (bilinear or nearest cell) that voting, mid-range
refinement (step 3) and greedy decoding share.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..common import hough_size, hough_votes, raw_votes

SAMPLING = ("bilinear", "nearest")
#: Hough maps of at most this many cells (K x Hh x Wh) go through :func:`packed_peaks` (boxes
#: around the votes in one canvas), larger ones through the sparse vote list
#: (:func:`sparse_peaks`). Both give the dense map's peaks; the expected-OKS mass is the map's
#: non-zero cells (:func:`.decode.expected_oks_sparse`).
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


class OffsetReader:
    """Fast :func:`offset_targets` for 1-D point sets (the decoder's inner loop): the field is
    viewed once as one complex64 per cell (x + iy, so that a gather is one 1-D take) and each
    read is a handful of NumPy operations on the (n, 2) points. With ``finite`` (the decoder),
    non-finite field values read as 0, checked on the few values read rather than the field."""

    def __init__(self, field: np.ndarray, *, stride: float, grid_offset: float, sampling: str,
                 finite: bool = False):
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
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
    reader = OffsetReader(field, stride=stride, grid_offset=grid_offset, sampling=sampling)
    return reader(ch.reshape(-1), x.reshape(-1), y.reshape(-1)).reshape(ch.shape + (2,))


def cell_xy(h: int, w: int, stride: float, grid_offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Input positions (x, y), each (h, w), of the cells of an (h, w) grid: cell (i, j) sits at
    ``(j·stride + grid_offset, i·stride + grid_offset)``."""
    xs = np.arange(w, dtype=np.float64) * stride + grid_offset
    ys = np.arange(h, dtype=np.float64) * stride + grid_offset
    return np.meshgrid(xs, ys)


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
    px, py = cell_xy(h, w, output_stride, grid_offset)
    tgt = np.asarray([b for _, b in edges], dtype=np.int64)[:, None, None]
    mid = mid_offsets.astype(np.float64)
    for _ in range(steps):
        p = offset_targets(short_offsets, tgt, px[None] + mid[..., 0], py[None] + mid[..., 1],
                           stride=output_stride, grid_offset=grid_offset, sampling=sampling)
        mid = p - np.stack([px, py], axis=-1)[None]
    return mid


def finite_offsets(offsets: np.ndarray) -> np.ndarray:
    """Offsets with non-finite values set to 0 (the whole field; for the paths that read most of it)."""
    return offsets if np.isfinite(offsets).all() else np.nan_to_num(offsets, nan=0.0, posinf=0.0, neginf=0.0)


def find_candidates(heatmaps, short_offsets, *, output_stride, grid_offset, radius, hough_stride, peak_threshold,
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
        short_offsets = finite_offsets(short_offsets)
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
