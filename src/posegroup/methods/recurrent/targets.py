"""Recurrent association training targets (SPEC section 3, "Ground truth").

Unlike Associative Embedding, each person has its own J heatmaps with a single Gaussian peak
per joint: the ground truth of an image is (Z, J, H, W), not (J, H, W). To stack images with
different person counts into one batch, the people are written into a fixed number P of slots
(zero heatmaps after the Z real ones) together with the count Z.

Symbols: Z people in the image, P slots (``max_people``), J joints, (H, W) output grid.
Coordinates are continuous output-grid coordinates (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import numpy as np

from ..common import check_output_size, gaussian_heatmaps

__all__ = ["person_heatmaps", "visible_people"]


def visible_people(keypoints: np.ndarray, output_size) -> np.ndarray:
    """Indices of the people with at least one labelled joint inside the output grid.

    Args:
        keypoints: (N, J, 3) x, y, v in output-grid coordinates.
        output_size: (H, W).
    Returns: (Z,) int64 indices into N, largest person first (box area of the labelled joints),
    so that when Z exceeds the slot count the smallest people are the ones dropped.
    """
    kp = np.asarray(keypoints, np.float64)
    h, w = check_output_size(output_size)
    if kp.size == 0:
        return np.zeros(0, np.int64)
    x, y, v = kp[..., 0], kp[..., 1], kp[..., 2]
    with np.errstate(invalid="ignore"):
        inside = (v > 0) & np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    keep = np.nonzero(inside.any(axis=1))[0]
    if len(keep) == 0:
        return keep.astype(np.int64)
    area = []
    for n in keep:
        pts = kp[n, inside[n], :2]
        area.append(float(np.prod(pts.max(0) - pts.min(0))))
    order = np.argsort(-np.asarray(area), kind="stable")
    return keep[order].astype(np.int64)


def person_heatmaps(keypoints, output_size, *, sigma: float = 2.0, max_people: int = 8
                    ) -> tuple[np.ndarray, int]:
    """Per-person Gaussian heatmaps, padded to ``max_people`` slots.

    Args:
        keypoints: (N, J, 3) x, y, v in output-grid coordinates.
        output_size: (H, W).
        sigma: Gaussian std in output cells (as AE: 2).
        max_people: P, the slot count (people beyond it, the smallest, are dropped).
    Returns:
        heatmaps (P, J, H, W) float32: slot z < Z holds person z's J maps
        (:func:`posegroup.methods.ae.targets.gaussian_heatmaps` of that person alone), the rest 0;
        Z (int): the number of people written (those with a labelled joint inside the grid).
    """
    kp = np.asarray(keypoints, np.float64)
    h, w = check_output_size(output_size)
    if int(max_people) < 1:
        raise ValueError(f"max_people must be >= 1, got {max_people}")
    j = kp.shape[1] if kp.ndim == 3 else 0
    if kp.size and (kp.ndim != 3 or kp.shape[2] != 3):
        raise ValueError(f"keypoints must be (N, J, 3), got {kp.shape}")
    people = visible_people(kp, (h, w))[: int(max_people)]
    out = np.zeros((int(max_people), j, h, w), np.float32)
    for slot, n in enumerate(people):
        out[slot] = gaussian_heatmaps(kp[n:n + 1], (h, w), sigma=sigma)
    return out, int(len(people))
