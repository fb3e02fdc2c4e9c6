"""Associative Embedding training targets (SPEC section 1, "Targets").

All coordinates are continuous OUTPUT-grid coordinates (docs/ARCHITECTURE.md): output cell
(row i, column j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5). Callers
convert input pixels to output coordinates by dividing by the stride first.

Nothing here hard-wires 17 keypoints: K is read from the shape of ``keypoints``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gaussian_heatmaps", "joint_indices", "tag_maps", "reference_sigma"]


def _check_keypoints(keypoints, name: str = "keypoints") -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"{name} must have shape (N, K, 3) = x, y, v; got {kp.shape}")
    return kp


def check_output_size(output_size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in output_size)
    except (TypeError, ValueError):
        raise ValueError(f"output_size must be (H, W); got {output_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size must be positive (H, W); got {output_size!r}")
    return h, w


def _in_map(kp: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, K) bool: labelled (v > 0), finite and inside [0, W) x [0, H)."""
    x, y, v = kp[..., 0], kp[..., 1], kp[..., 2]
    with np.errstate(invalid="ignore"):
        return (v > 0) & np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < w) & (y >= 0) & (y < h)


def reference_sigma(output_size) -> float:
    """The reference code's heatmap sigma, ``output_size / 64`` (2.0 at 128); the paper uses
    sigma = 2 at every resolution. ``output_size``: an int or (H, W) (the larger side is used)."""
    if np.ndim(output_size) == 0:
        return float(output_size) / 64.0
    return float(max(check_output_size(output_size))) / 64.0


def gaussian_heatmaps(keypoints, output_size, sigma: float = 2.0) -> np.ndarray:
    """Ground-truth joint heatmaps: per joint type, the max over people of 2D Gaussians.

    H_k(c) = max_n exp(-||c - x_nk||^2 / (2 sigma^2)) evaluated at every cell centre c, centred at
    the true sub-pixel keypoint x_nk, and set to 0 where ||c - x_nk|| > 3 sigma (truncation).
    Joints with v = 0 and joints outside [0, W) x [0, H) are skipped.

    Args:
        keypoints: (N, K, 3) x, y, v in output-grid continuous coordinates.
        output_size: (H, W) of the output grid.
        sigma: Gaussian std in output cells; 2.0 (paper). The reference code uses
            ``output_size / 64`` (see :func:`reference_sigma`), also 2.0 at 128x128.
    Returns:
        (K, H, W) float32 heatmaps in [0, 1].
    """
    kp = _check_keypoints(keypoints)
    h, w = check_output_size(output_size)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")
    n, k, _ = kp.shape
    out = np.zeros((k, h, w), dtype=np.float32)
    valid = _in_map(kp, h, w)
    if not valid.any():
        return out
    pts = kp[valid]                                  # (P, 3)
    joint = np.nonzero(valid)[1]                     # (P,) joint type of each point
    cx = np.arange(w, dtype=np.float64) + 0.5
    cy = np.arange(h, dtype=np.float64) + 0.5
    dx2 = (cx[None, :] - pts[:, 0:1]) ** 2           # (P, W)
    dy2 = (cy[None, :] - pts[:, 1:2]) ** 2           # (P, H)
    inv = 1.0 / (2.0 * sigma * sigma)
    gx = np.exp(-dx2 * inv)
    gy = np.exp(-dy2 * inv)
    cut = 9.0 * sigma * sigma
    for kk in np.unique(joint):                      # vectorised per joint type
        sel = joint == kk
        g = gy[sel][:, :, None] * gx[sel][:, None, :]                       # (n_k, H, W)
        g[(dy2[sel][:, :, None] + dx2[sel][:, None, :]) > cut] = 0.0
        out[kk] = g.max(axis=0)
    return out


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
    kp = _check_keypoints(keypoints)
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
    valid = _in_map(kp, h, w)
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
    kp = _check_keypoints(keypoints)
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
    valid = _in_map(kp, h, w)
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
