"""Decoding of the recurrent association method: nothing to group, people come out one per step.

Symbols:
    T   steps the network took (one person per step)
    J   joints of the keypoint set
    H, W  heatmap grid (output cells)
    N   people decoded: the steps before the first stop probability below omega
    omega  stop threshold, sigmoid(-1) = 1 / (1 + e) (paper, section 3.1)
    tau    joint threshold 0.015 (paper, section 3.2)

Coordinates: cell (i, j) has centre (j + 0.5, i + 0.5) (docs/ARCHITECTURE.md).

Person score (the paper gives none; COCO AP ranks people by one): ``"joints"`` (default) is the
mean over the J joints of the peak heatmap value clipped to [0, 1] (a dropped joint counts 0),
like AE's person score, which ranks well-localised people first. ``"stop"`` (p_t of the step)
and ``"product"`` are the alternatives measured (docs/training.md).
"""
from __future__ import annotations

import math

import numpy as np

from ...evaluation import count_figures  # noqa: F401 (the person count, re-exported for the method)
from ..common import place_by_offsets, subpixel_offsets
from ..refine import refine_missing_joints

#: omega = sigmoid(-1)
STOP_THRESHOLD = 1.0 / (1.0 + math.e)
PERSON_SCORES = ("joints", "stop", "product")
SUBPIXEL = ("none", "quadratic", "dark", "quarter", "offsets")

__all__ = ["decode_people", "refine_people", "num_people", "count_figures", "STOP_THRESHOLD", "PERSON_SCORES", "SUBPIXEL"]


def num_people(stop_probs, stop_threshold: float = STOP_THRESHOLD) -> int:
    """N: the number of steps before the first p_t < stop_threshold (T if none is)."""
    p = np.asarray(stop_probs, np.float64).reshape(-1)
    below = ~(p >= stop_threshold)          # NaN counts as a stop
    return int(np.argmax(below)) if below.any() else len(p)


def decode_people(heatmaps, stop_probs, *, stop_threshold: float = STOP_THRESHOLD, joint_threshold: float = 0.015,
                  subpixel: str = "none", person_score: str = "joints", offsets=None,
                  blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """People of one image from the recurrent network's per-step heatmaps.

    Args:
        heatmaps: (T, J, H, W) the heatmaps of the steps taken.
        stop_probs: (T,) p_t.
        stop_threshold: omega; people are the steps before the first p_t < omega.
        joint_threshold: tau; a joint whose peak is below it is dropped (score 0, position kept).
        subpixel: "none" (paper: the argmax cell's centre), "quadratic" (log-parabola through
            the peak and its neighbours), "dark" (the same on the map smoothed by a Gaussian of
            std ``blur`` cells: a per-person map's broad peak made regular first, see
            :func:`~posegroup.methods.common.subpixel_offsets`), "quarter" (AE reference
            quarter-cell shift) or
            "offsets" (the argmax cell's centre plus that joint's short-range offset there, as
            PoseNet / PersonLab place joints; needs ``offsets``).
        person_score: "joints", "stop" or "product" (see the module doc).
        offsets: (J, 2, H, W) short-range offsets in cells (joint j's (x, y) from each cell's
            centre), for ``subpixel="offsets"``.
        blur: the smoothing std of ``subpixel="dark"``, in cells (> 0).
    Returns:
        poses (N, J, 3): x, y, score in heatmap cells; scores (N,).
    """
    hm = np.asarray(heatmaps, np.float32)
    p = np.asarray(stop_probs, np.float64).reshape(-1)
    if hm.ndim != 4 or len(hm) != len(p):
        raise ValueError(f"heatmaps must be (T, J, H, W) and stop_probs (T,); got {hm.shape} and {p.shape}")
    if not 0.0 <= stop_threshold <= 1.0:
        raise ValueError(f"stop_threshold must lie in [0, 1], got {stop_threshold}")
    if not np.isfinite(joint_threshold):
        raise ValueError(f"joint_threshold must be finite, got {joint_threshold}")
    if subpixel not in SUBPIXEL:
        raise ValueError(f"subpixel must be one of {SUBPIXEL}, got {subpixel!r}")
    if subpixel == "offsets" and (offsets is None or np.shape(offsets) != (hm.shape[1], 2) + hm.shape[2:]):
        raise ValueError(f"subpixel='offsets' needs offsets (J, 2, H, W) = {(hm.shape[1], 2) + hm.shape[2:]}, "
                         f"got {None if offsets is None else np.shape(offsets)} (method.options.short_offsets)")
    if person_score not in PERSON_SCORES:
        raise ValueError(f"person_score must be one of {PERSON_SCORES}, got {person_score!r}")
    n = num_people(p, stop_threshold)
    t, j, h, w = hm.shape
    if n == 0:
        return np.zeros((0, j, 3), np.float32), np.zeros(0, np.float32)
    maps = np.nan_to_num(hm[:n], nan=0.0, posinf=1.0, neginf=0.0).reshape(n * j, h, w)
    flat = maps.reshape(n * j, -1)
    best = flat.argmax(-1)
    peak = flat[np.arange(n * j), best]
    y, x = np.divmod(best, w)
    dx, dy = subpixel_offsets(maps, np.arange(n * j), y, x, method="none" if subpixel == "offsets" else subpixel,
                              blur=blur)
    poses = np.stack([x + 0.5 + dx, y + 0.5 + dy, np.where(peak >= joint_threshold, peak, 0.0)], -1).reshape(n, j, 3)
    if subpixel == "offsets":                         # every joint, dropped ones too: their place still counts
        poses = place_by_offsets(poses, np.asarray(offsets, np.float64), only_found=False)
    poses = poses.astype(np.float32)
    joint_score = np.clip(poses[..., 2], 0.0, 1.0).mean(1)
    stop = np.clip(np.nan_to_num(p[:n], nan=0.0), 0.0, 1.0)
    scores = {"joints": joint_score, "stop": stop, "product": joint_score * stop}[person_score]
    return poses, np.asarray(scores, np.float32)


def refine_people(poses, heatmaps, tags, *, subpixel: str = "quadratic", missing_below: float = 0.0
                  ) -> np.ndarray:
    """The paper's multi-scale test (section 4, as AE's): each person's missing joints filled by
    AE's single-person refinement (:func:`~posegroup.methods.refine.refine_missing_joints`, AE's
    default acceptance "near": a positive cell whose tag lies within 1 of the person's, L2 tag
    distance) from the AE backbone's maps. Missing: score <= 0 (below tau: the paper's), or below
    ``missing_below`` when that is larger (a weak joint found again by AE; kept as it was when AE
    finds nothing). A person's tag is the mean of the tags at its other joints' cells; a person
    without one is left as it is.

    Args:
        poses: (N, J, 3) x, y, score in cells, as :func:`decode_people` gives them.
        heatmaps: (J, H, W) AE heatmaps (averaged over the scales); tags: (J, H, W, D).
        subpixel: how a filled joint is placed ("offsets", which needs PoseNet's, and "dark",
            made for the broad per-person maps, count as "quadratic" on AE's sharp maps).
        missing_below: joints scored below it count as missing (0: only tau's).
    Returns a float32 copy of ``poses`` with the filled joints placed and scored by the heatmap.
    """
    p = np.array(poses, dtype=np.float64, copy=True)
    hm, tg = np.asarray(heatmaps, np.float32), np.asarray(tags, np.float32)
    if hm.ndim != 3 or tg.shape[:3] != hm.shape or p.ndim != 3 or p.shape[1] != hm.shape[0]:
        raise ValueError(f"refine_people needs poses (N, J, 3), heatmaps (J, H, W) and tags (J, H, W, D) of one "
                         f"J, H, W; got {p.shape}, {hm.shape}, {tg.shape}")
    found = (p[..., 2] > 0) & (p[..., 2] >= missing_below)
    keep = found.any(1)
    if not keep.any() or found[keep].all():
        return p.astype(np.float32)
    before = p.copy()
    p[..., 2] = np.where(found, p[..., 2], 0.0)
    j, h, w = hm.shape
    n_idx, j_idx = np.nonzero(found)
    cx = np.clip(np.floor(p[n_idx, j_idx, 0]).astype(np.int64), 0, w - 1)
    cy = np.clip(np.floor(p[n_idx, j_idx, 1]).astype(np.int64), 0, h - 1)
    sums = np.zeros((len(p), tg.shape[3]))
    np.add.at(sums, n_idx, tg[j_idx, cy, cx])
    means = sums[keep] / found[keep].sum(1, keepdims=True)
    people = p[keep]
    refine_missing_joints(people, means, hm, tg, "l2", "quadratic" if subpixel in ("offsets", "dark") else subpixel,
                          "near")
    p[keep] = people
    p = np.where((p[..., 2:] == 0) & ~found[..., None], before, p)     # not found again: as it was
    return p.astype(np.float32)
