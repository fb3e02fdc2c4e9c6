"""Associative Embedding training targets (SPEC section 1, "Targets").

All coordinates are continuous OUTPUT-grid coordinates (docs/ARCHITECTURE.md): output cell
(row i, column j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5). Callers
convert input pixels to output coordinates by dividing by the stride first.

Nothing here hard-wires 17 keypoints: K is read from the shape of ``keypoints``.

Instance segmentation targets (SPEC section 1, last paragraph; :func:`instance_cells`,
:func:`sample_instance_pixels`, :func:`content_rng`). Symbols: N people, (H_in, W_in) the input,
s the stride, (H, W) = (H_in / s, W_in / s) the output grid, M person slots, S pixels sampled per
instance.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..common import check_keypoints, check_output_size, gaussian_heatmaps, joints_in_map

__all__ = ["gaussian_heatmaps", "occlusion_weights", "joint_indices", "tag_maps", "reference_sigma", "instance_cells",
           "sample_instance_pixels", "content_rng"]


def reference_sigma(output_size) -> float:
    """The reference code's heatmap sigma, ``output_size / 64`` (2.0 at 128); the paper uses
    sigma = 2 at every resolution. ``output_size``: an int or (H, W) (the larger side is used)."""
    if np.ndim(output_size) == 0:
        return float(output_size) / 64.0
    return float(max(check_output_size(output_size))) / 64.0


def occlusion_weights(keypoints, output_size, sigma: float = 2.0, weight: float = 1.0) -> np.ndarray:
    """Per-cell weights of the heatmap loss that count occluded joints ``weight`` times.

    W_k(c) = 1 + (weight - 1) · G_k(c), where G_k is :func:`gaussian_heatmaps` of the occluded
    (v = 1) joints only: ``weight`` at an occluded joint's peak, falling back to 1 with its
    Gaussian (and 1 everywhere when ``weight`` is 1 or no joint is occluded). Not in the papers:
    a knob for crowds, where half the labelled joints are hidden (docs/crowds.md).

    Args:
        keypoints: (N, K, 3) x, y, v in output-grid continuous coordinates.
        output_size: (H, W).
        sigma: the heatmaps' Gaussian std, output cells.
        weight: >= 0, the weight at an occluded joint's peak.
    Returns:
        (K, H, W) float32, >= min(1, weight).
    """
    kp = check_keypoints(keypoints).copy()
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a number >= 0; got {weight!r}")
    kp[..., 2] = np.where(kp[..., 2] == 1, 1.0, 0.0)
    occluded = gaussian_heatmaps(kp, output_size, sigma=sigma)
    return (1.0 + (float(weight) - 1.0) * occluded).astype(np.float32)


def joint_indices(keypoints, output_size, max_people: int = 30) -> np.ndarray:
    """Per person, the flat index of each labelled in-map joint, for the grouping (tag) loss.

    Person n's joint k at cell (row y, column x) = floor of its coordinates has the index
    ``k*H*W + y*W + x`` into the flattened (K, H, W) tag maps. Row n of the result is person n
    of ``keypoints``; people beyond ``max_people`` are dropped; joints that are unlabelled
    (v = 0) or outside the map, and rows of absent people, are all zero (flag 0).

    Args:
        keypoints: (N, K, 3) x, y, v in output-grid continuous coordinates.
        output_size: (H, W).
        max_people: rows of the result; 30 (reference).
    Returns:
        (max_people, K, 2) int64: [..., 0] the flat index, [..., 1] the valid flag (1/0).
    """
    kp = check_keypoints(keypoints)
    h, w = check_output_size(output_size)
    if int(max_people) < 0:
        raise ValueError(f"max_people must be >= 0; got {max_people!r}")
    max_people = int(max_people)
    n, k, _ = kp.shape
    out = np.zeros((max_people, k, 2), dtype=np.int64)
    kp = kp[:max_people]
    m = kp.shape[0]
    if m == 0:
        return out
    valid = joints_in_map(kp, h, w)
    xs = np.where(valid, np.floor(np.nan_to_num(kp[..., 0])), 0).astype(np.int64)
    ys = np.where(valid, np.floor(np.nan_to_num(kp[..., 1])), 0).astype(np.int64)
    ks = np.broadcast_to(np.arange(k, dtype=np.int64)[None, :], (m, k))
    out[:m, :, 0] = np.where(valid, ks * h * w + ys * w + xs, 0)
    out[:m, :, 1] = valid
    return out


def tag_maps(keypoints, output_size, person_tags=None) -> np.ndarray:
    """Ideal ("perfect") tag maps: every cell of joint k's map carries the tag of the person whose
    joint k is nearest (equivalently, whose Gaussian is largest there, before truncation).

    Used to build perfect network outputs for decoder tests and benchmarks; not a training
    target (AE learns its tags only through the pull/push loss).

    Args:
        keypoints: (N, K, 3) output-grid coordinates; labelled in-map joints count.
        output_size: (H, W).
        person_tags: (N,) or (N, D) tag of each person; default 2n (ids 0, 2, 4...).
    Returns:
        (K, H, W, D) float32. Joint types that no person has are filled with -1000 (far from
        every tag).
    """
    kp = check_keypoints(keypoints)
    h, w = check_output_size(output_size)
    n, k, _ = kp.shape
    if person_tags is None:
        person_tags = 2.0 * np.arange(n, dtype=np.float64)
    pt = np.asarray(person_tags, dtype=np.float64)
    if pt.ndim == 1:
        pt = pt[:, None]
    if pt.ndim != 2 or pt.shape[0] != n:
        raise ValueError(f"person_tags must have shape (N,) or (N, D) with N = {n}; got {pt.shape}")
    d = pt.shape[1]
    out = np.full((k, h, w, d), -1000.0, dtype=np.float32)
    valid = joints_in_map(kp, h, w)
    cx = np.arange(w, dtype=np.float64) + 0.5
    cy = np.arange(h, dtype=np.float64) + 0.5
    for kk in range(k):
        who = np.nonzero(valid[:, kk])[0]
        if who.size == 0:
            continue
        d2 = ((cy[None, :, None] - kp[who, kk, 1][:, None, None]) ** 2
              + (cx[None, None, :] - kp[who, kk, 0][:, None, None]) ** 2)       # (n_k, H, W)
        out[kk] = pt[who][d2.argmin(axis=0)]
    return out


def _cell_fractions(masks: np.ndarray, output_size: tuple[int, int], stride: int) -> np.ndarray:
    """(..., H_in, W_in) binary masks -> (..., H, W) float64 fraction of each output cell's s x s
    input pixels that are set (input pixels beyond the masks count as unset)."""
    h, w = output_size
    s = int(stride)
    m = np.asarray(masks) != 0
    full = np.zeros(m.shape[:-2] + (h * s, w * s), bool)
    hh, ww = min(m.shape[-2], h * s), min(m.shape[-1], w * s)
    full[..., :hh, :ww] = m[..., :hh, :ww]
    return full.reshape(m.shape[:-2] + (h, s, w, s)).mean(axis=(-3, -1))


def instance_cells(instance_masks, ignore_mask, output_size, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Person instance masks on the output grid.

    The foreground target of a cell is the fraction of its s x s input pixels covered by the
    union of the masks (soft: the BCE of the loss is smallest at p = that fraction, so the
    bilinearly upsampled p crosses 0.5 near the true boundary inside a cell; a hard majority
    rule loses every limb thinner than half a cell: mask IoU of perfect outputs on 64-px
    synthetic scenes 0.55 with the majority rule, 0.75 with the fraction). A cell with any
    coverage belongs to the person covering most of it (ties: the person with the smaller mask,
    usually the one in front). Ignored cells (more than half of their pixels in
    ``ignore_mask``: crowd regions, people without labelled keypoints) belong to nobody.

    Args:
        instance_masks: (N, H_in, W_in) uint8/bool, non-zero = person n.
        ignore_mask: (H_in, W_in) bool or None.
        output_size: (H, W); stride: s.
    Returns:
        owner (H, W) int64: the person index, -1 for background and ignored cells;
        foreground (H, W) float32 in [0, 1] (ignored cells are weighted out by the loss mask,
        not here).
    """
    h, w = check_output_size(output_size)
    masks = np.asarray(instance_masks)
    if masks.ndim != 3:
        raise ValueError(f"instance_masks must be (N, H_in, W_in), got shape {masks.shape}")
    if int(stride) < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    owner = np.full((h, w), -1, np.int64)
    if len(masks) == 0:
        return owner, np.zeros((h, w), np.float32)
    frac = _cell_fractions(masks, (h, w), stride)                      # (N, H, W)
    union = _cell_fractions(masks.any(axis=0), (h, w), stride)
    area = (masks != 0).reshape(len(masks), -1).sum(1)
    rank = np.argsort(np.argsort(area, kind="stable"), kind="stable")  # 0 = smallest mask
    best = (frac - 1e-9 * rank[:, None, None]).argmax(axis=0)           # most coverage, then smaller
    owner = np.where(union > 0, best, -1)
    if ignore_mask is not None:
        owner[_cell_fractions(np.asarray(ignore_mask), (h, w), stride) > 0.5] = -1
    return owner.astype(np.int64), union.astype(np.float32)


def content_rng(*arrays) -> np.random.Generator:
    """A generator seeded by the bytes of ``arrays`` (CRC-32 of each): the same sample (same
    image, same augmentation) always draws the same pixels, so the draw follows the data order
    and a resumed run repeats it exactly; no global RNG is touched."""
    return np.random.default_rng([zlib.crc32(np.ascontiguousarray(a).tobytes()) for a in arrays])


def sample_instance_pixels(owner, num_slots: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Per person, up to S cells drawn uniformly without replacement from its instance cells.

    Args:
        owner: (H, W) int person index of each cell, -1 = none (:func:`instance_cells`).
        num_slots: M rows of the result (person n in row n; people n >= M are dropped).
        num_samples: S; a person with fewer than S cells gets all of them.
        rng: the generator (:func:`content_rng`).
    Returns:
        (M, S, 2) int64: [..., 0] the flat cell index y*W + x, [..., 1] the valid flag (1/0);
        invalid entries have index 0.
    """
    own = np.asarray(owner, np.int64)
    if own.ndim != 2:
        raise ValueError(f"owner must be (H, W), got shape {own.shape}")
    m, s = int(num_slots), int(num_samples)
    if m < 0 or s < 1:
        raise ValueError(f"num_slots must be >= 0 and num_samples >= 1, got {num_slots}, {num_samples}")
    out = np.zeros((m, s, 2), np.int64)
    flat = own.reshape(-1)
    if m == 0 or flat.size == 0:
        return out
    keys = rng.random(flat.size)                                        # one random key per cell
    mine = flat[None, :] == np.arange(m)[:, None]                       # (M, H*W)
    keyed = np.where(mine, keys[None, :], np.inf)
    take = min(s, flat.size)
    idx = np.argsort(keyed, axis=1, kind="stable")[:, :take]            # the S smallest keys
    valid = np.isfinite(np.take_along_axis(keyed, idx, axis=1))
    out[:, :take, 0] = np.where(valid, idx, 0)
    out[:, :take, 1] = valid
    return out
