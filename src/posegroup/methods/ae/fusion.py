"""Test-time fusion of Associative Embedding predictions (SPEC section 1, "Decoding", steps
9-10): flipped predictions mapped back, flip / multi-scale maps resampled onto one grid,
heatmaps averaged and tags concatenated.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..common import check_output_size

__all__ = ["flip_back", "fuse"]


def flip_back(heatmaps, tags, flip_index):
    """Undo a horizontal flip of the input (SPEC step 9): mirror the W axis and permute the
    joint channels by ``flip_index`` (left/right swap, e.g. ``KeypointSet.flip_index``).

    In the continuous convention output cell j of a flipped image is cell W - 1 - j of the
    original, so the mirrored map is aligned exactly (for input widths divisible by the stride).

    Args:
        heatmaps: (K, H, W) predicted on the flipped image.
        tags: (K, H, W, D) or (K, H, W) predicted on the flipped image.
        flip_index: (K,) permutation: original channel c = flipped channel flip_index[c].
    Returns:
        (heatmaps, tags) in the original image's frame, same shapes.
    """
    hm = np.asarray(heatmaps)
    tg = np.asarray(tags)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must have shape (K, H, W); got {hm.shape}")
    if tg.ndim not in (3, 4) or tg.shape[:3] != hm.shape:
        raise ValueError(f"tags must have shape (K, H, W[, D]) matching heatmaps {hm.shape}; got {tg.shape}")
    fi = np.asarray(flip_index, dtype=np.int64)
    k = hm.shape[0]
    if fi.shape != (k,) or sorted(fi.tolist()) != list(range(k)):
        raise ValueError(f"flip_index must be a permutation of range({k}); got {fi.tolist()}")
    return hm[fi, :, ::-1].copy(), tg[fi, :, ::-1].copy()


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W) bilinear, cv2 (half-pixel centres: dst (x + 0.5) * s - 0.5, i.e.
    the continuous convention when both grids cover the same input extent)."""
    import cv2

    c, h, w = maps.shape
    H, W = size
    if (h, w) == (H, W):
        return maps.astype(np.float32, copy=True)
    hwc = np.ascontiguousarray(maps.transpose(1, 2, 0), dtype=np.float32)
    out = np.empty((H, W, c), dtype=np.float32)
    for s in range(0, c, 512):                        # cv2 handles at most 512 channels
        r = cv2.resize(hwc[:, :, s:s + 512], (W, H), interpolation=cv2.INTER_LINEAR)
        out[:, :, s:s + 512] = r.reshape(H, W, -1)
    return out.transpose(2, 0, 1)


def fuse(heatmaps_list, tags_list, output_size, *, tag_indices: "Sequence[int] | None" = None):
    """Fuse flip / multi-scale predictions (SPEC steps 9-10).

    Every map is resized to ``output_size`` (bilinear, cv2, aligned to the continuous
    convention); heatmaps are averaged; tags are concatenated along D (paper). The reference
    (pose-ae-train) keeps the tags of scale 1 only: pass ``tag_indices`` = the list positions of
    the scale-1 predictions (e.g. [i, i_flipped]).

    Args:
        heatmaps_list: list of (K, h_i, w_i) heatmaps, already flipped back where needed.
        tags_list: list of (K, h_i, w_i, D_i) (or (K, h_i, w_i)) tags, same order.
        output_size: (H, W) common size.
        tag_indices: which entries' tags to concatenate; None = all (paper).
    Returns:
        heatmaps (K, H, W) float32, tags (K, H, W, sum D_i) float32.
    """
    if len(heatmaps_list) == 0 or len(heatmaps_list) != len(tags_list):
        raise ValueError(f"need equally many (>= 1) heatmaps and tags; got {len(heatmaps_list)} and {len(tags_list)}")
    H, W = check_output_size(output_size)
    hms, tgs = [], []
    k = None
    for hm, tg in zip(heatmaps_list, tags_list):
        hm = np.asarray(hm)
        tg = np.asarray(tg)
        if tg.ndim == 3:
            tg = tg[..., None]
        if hm.ndim != 3 or tg.ndim != 4 or tg.shape[:3] != hm.shape:
            raise ValueError(f"heatmaps (K, h, w) and tags (K, h, w, D) do not match: {hm.shape} vs {tg.shape}")
        if k is None:
            k = hm.shape[0]
        elif hm.shape[0] != k:
            raise ValueError(f"all predictions must have the same K; got {k} and {hm.shape[0]}")
        hms.append(hm)
        tgs.append(tg)
    idx = range(len(tgs)) if tag_indices is None else [int(i) for i in tag_indices]
    if not idx or any(not 0 <= i < len(tgs) for i in idx):
        raise ValueError(f"tag_indices must index the {len(tgs)} predictions; got {tag_indices!r}")
    heat = np.mean([_resize(hm, (H, W)) for hm in hms], axis=0).astype(np.float32)
    parts = []
    for i in idx:
        kk, h, w, d = tgs[i].shape
        r = _resize(tgs[i].transpose(0, 3, 1, 2).reshape(kk * d, h, w), (H, W))
        parts.append(r.reshape(kk, d, H, W).transpose(0, 2, 3, 1))
    return heat, np.ascontiguousarray(np.concatenate(parts, axis=3), dtype=np.float32)
