"""PersonLab instance segmentation from the semantic segmentation and long-range offsets
(SPEC section 2; paper section 4).

Symbols:
    K        keypoints of the keypoint set
    (H, W)   the output grid; cell (i, j) sits at input (j s + o, i s + o), s = ``output_stride``,
             o = ``grid_offset``
    x, x_i   a position (pixel i) in input px
    p_S(x)   person (semantic) segmentation probability, (H, W)
    L_k(x)   long-range offset of keypoint k at x, (K, H, W, 2) x, y input px
    S_k(x)   short-range offset, (K, H, W, 2)
    N        decoded people; y_{j,k} keypoint k of person j, (N, K, 3) x, y, score p_k(y_{j,k})
    λ_j      √(area of the box around person j's keypoints)
    D_{i,j}  embedding distance of pixel i to person j (below)

1. Long-range refinement (paper): twice by themselves, ``L_k(x) <- x' + L_k(x') - x``, then twice
   by the short-range offsets, ``L_k(x) <- x' + S_k(x') - x``, with ``x' = x + L_k(x)`` (bilinear).
2. Embedding ``G_k(x) = x + L_k(x)``.
3. ``D_{i,j} = Σ_k p_k(y_{j,k}) |G_k(x_i) - y_{j,k}| / λ_j / Σ_k p_k(y_{j,k})``, λ_j = √(area of the
   box around instance j's keypoints).
4. Pixel i goes to the instance with the smallest D_{i,j} if ``p_S(x_i) >= 0.5`` and
   ``D_{i,j} <= t = 0.25`` (paper).
Computed on the output grid; with ``output_size`` the per-instance distances and p_S are
resampled bilinearly to every input pixel (continuous convention) before steps 4.
"""
from __future__ import annotations

import cv2
import numpy as np

from .hough import bilinear_sample, cell_xy


def refine_long_offsets(long_offsets: np.ndarray, short_offsets: np.ndarray | None, *,
                        output_stride: float, grid_offset: float = 0.0, self_steps: int = 2,
                        short_steps: int = 2) -> np.ndarray:
    """Refine (K, H, W, 2) long-range offsets (paper: 2 self steps, then 2 short-offset steps)."""
    k, h, w = long_offsets.shape[:3]
    px, py = cell_xy(h, w, output_stride, grid_offset)
    ch = np.arange(k)[:, None, None]
    lo = long_offsets.astype(np.float64)
    plan = ["self"] * self_steps + (["short"] * short_steps if short_offsets is not None else [])
    for which in plan:
        x2 = px[None] + lo[..., 0]
        y2 = py[None] + lo[..., 1]
        src = lo if which == "self" else short_offsets
        s = bilinear_sample(src, ch, x2, y2, stride=output_stride, grid_offset=grid_offset)
        lo = np.stack([x2 + s[..., 0] - px[None], y2 + s[..., 1] - py[None]], axis=-1)
    return lo


def embedding_distances(long_offsets: np.ndarray, poses: np.ndarray, *, output_stride: float,
                        grid_offset: float = 0.0, keypoint_probs: np.ndarray | None = None
                        ) -> np.ndarray:
    """D (N, H, W): D_{i,j} of every cell i to every instance j.

    long_offsets: (K, H, W, 2) (already refined); poses: (N, K, >=2) x, y (input px);
    keypoint_probs: (N, K) p_k(y_{j,k}), default ``poses[..., 2]``.
    """
    k, h, w = long_offsets.shape[:3]
    n = poses.shape[0]
    px, py = cell_xy(h, w, output_stride, grid_offset)
    g = long_offsets + np.stack([px, py], axis=-1)[None]  # (K, H, W, 2)
    probs = poses[..., 2] if keypoint_probs is None else np.asarray(keypoint_probs)
    probs = np.asarray(probs, dtype=np.float64)
    xy = np.asarray(poses[..., :2], dtype=np.float64)
    lam = np.sqrt(np.maximum(np.prod(xy.max(axis=1) - xy.min(axis=1), axis=1), 1.0))  # (N,)
    out = np.empty((n, h, w))
    for j in range(n):
        d = np.sqrt(((g - xy[j][:, None, None, :]) ** 2).sum(-1))  # (K, H, W)
        out[j] = np.tensordot(probs[j], d, axes=1) / max(probs[j].sum(), 1e-12) / lam[j]
    return out


def _to_input(m: np.ndarray, output_size: tuple[int, int], stride: float, grid_offset: float) -> np.ndarray:
    """Bilinear resample of a (H, W) grid map to every input pixel centre."""
    h_in, w_in = output_size
    mat = np.array([[1.0 / stride, 0, (0.5 - grid_offset) / stride],
                    [0, 1.0 / stride, (0.5 - grid_offset) / stride]])
    return cv2.warpAffine(m.astype(np.float32), mat, (w_in, h_in),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def segment(segmentation: np.ndarray, long_offsets: np.ndarray, short_offsets: np.ndarray | None,
            poses: np.ndarray, *, output_stride: float, grid_offset: float = 0.0,
            keypoint_probs: np.ndarray | None = None, seg_threshold: float = 0.5,
            distance_threshold: float = 0.25, self_refine_steps: int = 2, short_refine_steps: int = 2,
            output_size: tuple[int, int] | None = None) -> np.ndarray:
    """Instance masks of the decoded people.

    Args:
        segmentation: (H, W) person probability p_S.
        long_offsets: (K, H, W, 2) long-range offsets (x, y) in input px.
        short_offsets: (K, H, W, 2) short-range offsets or None (skips the short refinement).
        poses: (N, K, 3) decoded people, x, y, score in input px.
        keypoint_probs: (N, K) p_k(y_{j,k}); default the pose keypoint scores.
        seg_threshold: p_S threshold (paper 0.5); distance_threshold: t (paper 0.25).
        self_refine_steps / short_refine_steps: long-offset refinements (paper: 2 and 2).
        output_size: (H_in, W_in) to return masks at input resolution; None = grid resolution.
    Returns: (N, H, W) or (N, H_in, W_in) bool masks (disjoint).
    """
    k, h, w = long_offsets.shape[:3]
    poses = np.asarray(poses, dtype=np.float64)
    n = poses.shape[0]
    shape = (h, w) if output_size is None else tuple(output_size)
    if n == 0:
        return np.zeros((0,) + shape, bool)
    lo = refine_long_offsets(long_offsets, short_offsets, output_stride=output_stride,
                             grid_offset=grid_offset, self_steps=self_refine_steps,
                             short_steps=short_refine_steps)
    dist = embedding_distances(lo, poses, output_stride=output_stride, grid_offset=grid_offset,
                               keypoint_probs=keypoint_probs)
    seg = np.asarray(segmentation, dtype=np.float64)
    if output_size is not None:
        dist = np.stack([_to_input(d, shape, output_stride, grid_offset) for d in dist])
        seg = _to_input(seg, shape, output_stride, grid_offset)
    best = np.argmin(dist, axis=0)
    dmin = np.take_along_axis(dist, best[None], axis=0)[0]
    fg = (seg >= seg_threshold) & (dmin <= distance_threshold)
    return (best[None] == np.arange(n)[:, None, None]) & fg[None]
