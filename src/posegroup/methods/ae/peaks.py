"""AE joint candidates (SPEC steps 1-3): non-maximum suppression and the top peaks of each joint
map, shared by the tuned decoder (:mod:`.decode`) and the reference decoder
(:mod:`.reference_decode`).

Symbols: K joints, H x W heatmap grid, N candidates.
"""
from __future__ import annotations

import numpy as np

__all__ = ["nms", "top_candidates", "check_kernel", "MAX_NMS_KERNEL"]


def _earlier_offsets(r: int) -> list[tuple[int, int]]:
    """Window offsets (dy, dx) that come before the centre in raster order."""
    return [(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if dy < 0 or dx < 0]


def _shift(d: int, n: int) -> tuple[slice, slice]:
    """(source, destination) slices so that dst[i] sees src[i + d] along an axis of length n."""
    if d >= 0:
        return slice(d, n), slice(0, n - d)
    return slice(0, n + d), slice(-d, n)


def nms(heatmaps: np.ndarray, kernel: int = 3, ties: str = "keep") -> np.ndarray:
    """Keep only the cells equal to the ``kernel`` x ``kernel`` max-pool of their map (SPEC step
    1; 3 in pose-ae-train, 5 in HigherHRNet/mmpose); the rest become 0.

    Args:
        heatmaps: (K, H, W).
        kernel: odd window side.
        ties: ``"keep"`` (reference, max-pool equality): every cell of a plateau of equal maxima
            is kept, so a keypoint lying exactly on a cell border yields 2 (or 4) candidates.
            ``"first"``: cells are ordered by (value, earlier in raster order); a cell is kept only
            if it beats every other cell of its window in that order, i.e. it also has to be
            strictly larger than its raster-earlier neighbours. Identical to "keep" unless two
            cells of a window are exactly equal (which real network outputs practically never
            are; perfect synthetic maps often are).
    Returns:
        (K, H, W), same dtype, zeros off the peaks.
    """
    hm, kernel = _check_nms_args(heatmaps, kernel, ties)
    if kernel == 1:
        return hm.copy()
    r = kernel // 2
    m = hm.copy()                                     # max over the row window
    for s in range(1, r + 1):
        np.maximum(m[:, :, s:], hm[:, :, :-s], out=m[:, :, s:])
        np.maximum(m[:, :, :-s], hm[:, :, s:], out=m[:, :, :-s])
    m2 = m.copy()                                     # then over the column window
    for s in range(1, r + 1):
        np.maximum(m2[:, s:, :], m[:, :-s, :], out=m2[:, s:, :])
        np.maximum(m2[:, :-s, :], m[:, s:, :], out=m2[:, :-s, :])
    keep = hm == m2
    if ties == "first":                               # strictly above every raster-earlier neighbour
        for dy, dx in _earlier_offsets(r):
            ys, yd = _shift(dy, hm.shape[1])
            xs, xd = _shift(dx, hm.shape[2])
            keep[:, yd, xd] &= hm[:, yd, xd] > hm[:, ys, xs]
    return np.where(keep, hm, np.zeros((), hm.dtype))


def _check_nms_args(heatmaps, kernel, ties) -> tuple[np.ndarray, int]:
    """Validate NMS inputs: heatmaps (K, H, W), a positive odd kernel, ties "keep" / "first"."""
    hm = np.asarray(heatmaps)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must have shape (K, H, W); got {hm.shape}")
    kernel = check_kernel(kernel, hm.shape)
    if ties not in ("keep", "first"):
        raise ValueError(f"nms_ties must be 'keep' or 'first'; got {ties!r}")
    return hm, kernel


#: Largest NMS window side accepted (the window loop is O(kernel^2)).
MAX_NMS_KERNEL = 31


def check_kernel(kernel, shape) -> int:
    """nms_kernel: an odd integer in [1, MAX_NMS_KERNEL]."""
    if isinstance(kernel, bool) or not isinstance(kernel, (int, np.integer)) or not (
            1 <= int(kernel) <= MAX_NMS_KERNEL and int(kernel) % 2 == 1):
        raise ValueError(f"nms_kernel must be an odd integer in [1, {MAX_NMS_KERNEL}]; got {kernel!r}")
    return int(kernel)


def top_candidates(heatmaps: np.ndarray, *, top_k: int = 30, nms_kernel: int = 3,
                   detection_threshold: float = 0.1, nms_ties: str = "keep"):
    """SPEC steps 1-3: NMS, the top ``top_k`` peaks of each joint map, kept if > threshold.

    heatmaps: (K, H, W). Returns ``(joint, y, x, score)``: 1-D arrays of equal length, sorted by
    joint then by score descending (at most ``top_k`` per joint). Equivalent to taking the
    top-k of each flattened NMS map and then dropping the values <= ``detection_threshold``.
    """
    hm, kernel = _check_nms_args(heatmaps, nms_kernel, nms_ties)
    k, h, w = hm.shape
    r = kernel // 2
    flat = hm.reshape(-1)
    cand = np.flatnonzero(flat > detection_threshold)  # only these can survive
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy or dx]
    if hm.dtype == np.float32 and kernel > 1 and cand.size * len(offsets) > hm.size // 2:
        # many cells above the threshold: max-pool equality by one OpenCV dilation of all maps
        # stacked with r rows of -inf between them (= each map's -inf border)
        import cv2

        canvas = np.full((k, h + r, w), -np.inf, np.float32)
        canvas[:, :h] = hm
        mx = cv2.dilate(canvas.reshape(k * (h + r), w), np.ones((kernel, kernel), np.uint8),
                        borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf).reshape(k, h + r, w)[:, :h]
        cand = cand[flat[cand] >= mx.reshape(-1)[cand]]
        offsets = _earlier_offsets(r) if nms_ties == "first" else []
    kk, rem = np.divmod(cand, h * w)
    yy, xx = np.divmod(rem, w)
    val = flat[cand]
    keep = np.ones(cand.size, dtype=bool)
    earlier = set(_earlier_offsets(r)) if nms_ties == "first" else set()
    for dy, dx in offsets:                           # window test on the few candidates (ties
                                                     # "first": raster-earlier ones strictly below)
        ny, nx = yy + dy, xx + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nv = hm[kk, np.minimum(np.maximum(ny, 0), h - 1), np.minimum(np.maximum(nx, 0), w - 1)]
        ok = nv < val if (dy, dx) in earlier else nv <= val
        keep &= ok | ~inside
    kk, yy, xx, val = kk[keep], yy[keep], xx[keep], val[keep]
    order = np.lexsort((-val, kk))                   # by joint, then score descending
    kk, yy, xx, val = kk[order], yy[order], xx[order], val[order]
    if kk.size:
        first = np.searchsorted(kk, kk, side="left")
        rank = np.arange(kk.size) - first
        keep = rank < int(top_k)
        kk, yy, xx, val = kk[keep], yy[keep], xx[keep], val[keep]
    return kk, yy, xx, val
