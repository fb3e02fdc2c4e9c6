"""Associative Embedding instance segmentation: decoding (SPEC section 1, last paragraph).

Symbols:
    (H, W)   the output grid (continuous convention: cell (i, j) has its centre at (j + 0.5, i + 0.5))
    (Hi, Wi) the image, in pixels; image px = grid px * c, c = stride / factor (``scale``)
    E        pixel-tag dimension
    p(x)     foreground probability of cell / pixel x (sigmoid of the foreground logit)
    h(x)     pixel tag of x, (E,)
    F        foreground: the pixels with p(x) >= ``threshold``
    I        instance identifiers (tags), (I, E)
    N        decoded people, poses (N, K, 3) x, y, score on the grid
    a_n      person n's anchor tag: median h over the foreground cells near its joints, (N, E)

Two decoders, option ``seg_decode`` of the AE method:

- ``"paper"``: histogram of h over F (bins of ``bin_width`` tag units on every axis), NMS on
  the histogram (a bin is a peak when it holds at least ``min_cells`` cells, is the maximum of
  its window of ``nms_radius`` tag units, and no stronger peak lies within ``nms_radius``);
  each peak's identifier is the mean tag of its bin's cells; every pixel of F goes to the
  nearest identifier. Instances are then given to the decoded people one to one (Hungarian on
  ‖a_n − identifier‖); a person left without an instance gets an empty mask, an instance left
  without a person is dropped (a result needs a pose).
- ``"pose"`` (pose-anchored): every pixel of F goes to the person whose anchor tag a_n is
  nearest, so masks and poses share ids and every person gets one mask. A person whose anchor
  lies within ``nms_radius`` of a higher-scored person's is a duplicate detection of that
  person (same tags): it takes that person's mask instead of splitting its pixels.

The histogram and the anchors are computed on the grid; the assignment is made at every image
pixel, with p and h resampled bilinearly to the pixel centres.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

SEG_DECODERS = ("paper", "pose")

#: the most histogram bins :func:`histogram_identifiers` builds (E-dimensional tags span few bins)
MAX_BINS = 2_000_000


def _check_maps(prob, tags) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, np.float64)
    t = np.asarray(tags, np.float64)
    if t.ndim == 2:
        t = t[..., None]
    if p.ndim != 2 or t.ndim != 3 or t.shape[:2] != p.shape:
        raise ValueError(f"foreground (H, W) and pixel tags (H, W, E) do not match: {p.shape} vs {t.shape}")
    return p, t


def histogram_identifiers(tags: np.ndarray, *, bin_width: float = 0.2, nms_radius: float = 1.0,
                          min_cells: int = 2) -> np.ndarray:
    """The paper's identifiers: NMS on the histogram of the foreground tags.

    Args:
        tags: (P, E) tags of the foreground cells.
        bin_width: histogram bin width in tag units (every axis).
        nms_radius: peaks closer than this (tag units, Euclidean) are one instance; the window
            of the local-maximum test spans ``round(nms_radius / bin_width)`` bins each side.
        min_cells: a peak bin holds at least this many cells.
    Returns: (I, E) identifiers, strongest peak first.
    """
    t = np.asarray(tags, np.float64)
    if t.ndim != 2:
        raise ValueError(f"tags must be (P, E), got shape {t.shape}")
    if not (bin_width > 0 and nms_radius >= 0 and min_cells >= 1):
        raise ValueError(f"need bin_width > 0, nms_radius >= 0, min_cells >= 1; got {bin_width}, "
                         f"{nms_radius}, {min_cells}")
    e = t.shape[1]
    if len(t) == 0:
        return np.zeros((0, e))
    lo = t.min(0)
    cell = np.floor((t - lo) / bin_width).astype(np.int64)               # (P, E) bin of each tag
    shape = tuple(int(v) for v in cell.max(0) + 1)
    if np.prod(np.asarray(shape, np.float64)) > MAX_BINS:
        raise ValueError(f"tag histogram of {shape} bins exceeds {MAX_BINS}; raise seg_bin_width")
    flat = np.ravel_multi_index(tuple(cell.T), shape)
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
    r = int(round(nms_radius / bin_width))
    peak = (counts >= min_cells) & (counts == ndimage.maximum_filter(counts, size=2 * r + 1, mode="constant"))
    bins = np.flatnonzero(peak)
    bins = bins[np.argsort(-counts.reshape(-1)[bins], kind="stable")]    # strongest first
    sums = np.zeros((counts.size, e))
    np.add.at(sums, flat, t)
    means = sums[bins] / counts.reshape(-1)[bins][:, None]
    keep: list[int] = []
    for i in range(len(bins)):                                            # greedy NMS, few peaks
        if all(np.linalg.norm(means[i] - means[j]) >= nms_radius for j in keep):
            keep.append(i)
    return means[keep]


def anchor_tags(prob: np.ndarray, tags: np.ndarray, poses: np.ndarray, *, threshold: float = 0.5,
                radius: float = 1.5, joint_threshold: float = 0.1, statistic: str = "median") -> np.ndarray:
    """a_n: each person's median (``statistic="median"``, per tag dimension) or mean tag over the foreground cells within ``radius`` cells of its joints
    with score >= ``joint_threshold`` (all its joints when none passes; all cells near them when
    none is foreground; a person with no cell on the grid gets NaN).

    The median (default) ignores a minority of cells near the joints that belong to someone
    else (an occluded joint lies on the person in front). Perfect maps, anchors on the visible
    joints, "pose" masks, segm AP: heavy synthetic split median 0.198 / mean 0.147, sparse
    0.688 / 0.704 (docs/segmentation.md).

    Args: prob (H, W), tags (H, W, E), poses (N, K, 3) grid x, y, score.
    Returns: (N, E).
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    p, t = _check_maps(prob, tags)
    h, w, e = t.shape
    poses = np.asarray(poses, np.float64).reshape(len(poses), -1, 3)
    n, k = poses.shape[:2]
    if n == 0:
        return np.zeros((0, e))
    rr = int(np.ceil(radius))
    oy, ox = np.mgrid[-rr:rr + 1, -rr:rr + 1]
    cy = np.floor(poses[..., 1])[..., None, None] + oy                    # (N, K, 2R+1, 2R+1)
    cx = np.floor(poses[..., 0])[..., None, None] + ox
    near = ((cx + 0.5 - poses[..., 0, None, None]) ** 2 + (cy + 0.5 - poses[..., 1, None, None]) ** 2
            <= radius ** 2) & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    strong = poses[..., 2] >= joint_threshold
    strong = np.where(strong.any(1, keepdims=True), strong, True)         # (N, K)
    near &= strong[..., None, None]
    idx = (np.clip(cy, 0, h - 1) * w + np.clip(cx, 0, w - 1)).astype(np.int64).reshape(n, -1)
    near = near.reshape(n, -1)
    fg = (p.reshape(-1) >= threshold)[idx] & near
    use = np.where(fg.any(1, keepdims=True), fg, near)                  # (N, cells)
    vals = np.where(use[..., None], t.reshape(-1, e)[idx], np.nan)       # (N, cells, E)
    if statistic == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nansum(vals, 1) / use.sum(1)[:, None]
    with warnings.catch_warnings():                                      # all-NaN rows -> NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(vals, axis=1)


def _to_pixels(maps: np.ndarray, image_hw: tuple[int, int], scale: float) -> np.ndarray:
    """Bilinear resampling of grid maps (H, W[, C]) at every image pixel centre: image pixel
    (u, v) is at grid ((u + 0.5) / scale, (v + 0.5) / scale); beyond the grid: edge values."""
    hi, wi = image_hw
    f = 1.0 / scale
    mat = np.array([[f, 0.0, 0.5 * f - 0.5], [0.0, f, 0.5 * f - 0.5]])
    m = np.ascontiguousarray(maps, np.float32)
    chans = [m] if m.ndim == 2 else [np.ascontiguousarray(m[..., c]) for c in range(m.shape[-1])]
    out = [cv2.warpAffine(c, mat, (wi, hi), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE) for c in chans]
    return out[0] if m.ndim == 2 else np.stack(out, -1)


def nearest_labels(prob: np.ndarray, tags: np.ndarray, centres: np.ndarray, *, threshold: float = 0.5
                   ) -> np.ndarray:
    """Each pixel with p >= threshold to the nearest of ``centres`` (I, E) (NaN rows never win).
    prob (H, W), tags (H, W, E) -> (H, W) int64 label, -1 = background (or no centre)."""
    p, t = _check_maps(prob, tags)
    c = np.asarray(centres, np.float64).reshape(-1, t.shape[-1])
    labels = np.full(p.shape, -1, np.int64)
    ok = np.isfinite(c).all(1)
    fg = p >= threshold
    if not ok.any() or not fg.any():
        return labels
    d2 = ((t[fg][:, None, :] - c[ok][None]) ** 2).sum(-1)                # (P, I_ok)
    labels[fg] = np.flatnonzero(ok)[d2.argmin(1)]
    return labels


def match_people(identifiers: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """One-to-one instances for people (Hungarian on ‖a_n − identifier_i‖): (N,) instance index
    of each person, -1 when left over (or its anchor is NaN)."""
    ids = np.asarray(identifiers, np.float64)
    an = np.asarray(anchors, np.float64)
    out = np.full(len(an), -1, np.int64)
    ok = np.flatnonzero(np.isfinite(an).all(1)) if an.size else np.zeros(0, np.int64)
    if len(ids) == 0 or len(ok) == 0:
        return out
    cost = np.sqrt(((an[ok][:, None] - ids[None]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(cost)
    out[ok[rows]] = cols
    return out


def duplicate_leaders(anchors: np.ndarray, scores: np.ndarray, radius: float) -> np.ndarray:
    """(N,) for each person the index of the person whose mask it takes: the nearest person of
    higher score (earlier on equal scores) whose anchor is within ``radius`` of its own and who
    leads itself; otherwise itself. NaN anchors lead themselves."""
    an = np.asarray(anchors, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    leader = np.arange(len(an))
    leaders: list[int] = []
    for i in order:                                                       # N people, few
        if np.isfinite(an[i]).all() and leaders:
            d = np.sqrt(((an[leaders] - an[i]) ** 2).sum(-1))
            j = int(np.nanargmin(np.where(np.isfinite(d), d, np.inf)))
            if d[j] < radius:
                leader[i] = leaders[j]
                continue
        if np.isfinite(an[i]).all():
            leaders.append(int(i))
    return leader


def segment_people(prob: np.ndarray, tags: np.ndarray, poses: np.ndarray, *, image_hw: tuple[int, int],
                   scale: float, scores: np.ndarray | None = None, mode: str = "paper", threshold: float = 0.5, bin_width: float = 0.2,
                   nms_radius: float = 1.0, min_cells: int = 2, anchor_radius: float = 1.5,
                   anchor_statistic: str = "median", joint_threshold: float = 0.1) -> np.ndarray:
    """Instance masks of the decoded people in image pixels.

    Args:
        prob: (H, W) foreground probability on the grid; tags: (H, W, E) pixel tags.
        poses: (N, K, 3) decoded people on the grid (x, y, score).
        scores: (N,) person scores ("pose": who leads duplicates); default the mean joint score.
        image_hw: (Hi, Wi); scale: image px per grid px (stride / factor).
        mode: "paper" or "pose" (module docstring); threshold: foreground p threshold (0.5).
        bin_width, nms_radius, min_cells: :func:`histogram_identifiers` ("paper").
        anchor_radius, anchor_statistic, joint_threshold: :func:`anchor_tags` (radius, statistic...).
    Returns: (N, Hi, Wi) bool, disjoint; mask n belongs to person n.
    """
    if mode not in SEG_DECODERS:
        raise ValueError(f"unknown seg_decode {mode!r}; choose one of {SEG_DECODERS}")
    p, t = _check_maps(prob, tags)
    hi, wi = (int(v) for v in image_hw)
    n = len(poses)
    if n == 0:
        return np.zeros((0, hi, wi), bool)
    anchors = anchor_tags(p, t, poses, threshold=threshold, radius=anchor_radius, joint_threshold=joint_threshold,
                          statistic=anchor_statistic)
    if mode == "pose":
        sc = np.asarray(poses, np.float64)[..., 2].mean(1) if scores is None else scores
        owner = duplicate_leaders(anchors, sc, nms_radius)
        centres = np.where((owner == np.arange(n))[:, None], anchors, np.nan)
    else:
        centres = histogram_identifiers(t[p >= threshold], bin_width=bin_width, nms_radius=nms_radius,
                                        min_cells=min_cells)
        owner = match_people(centres, anchors)
    labels = nearest_labels(_to_pixels(p, (hi, wi), scale), _to_pixels(t, (hi, wi), scale).reshape(hi, wi, -1),
                            centres, threshold=threshold)
    return (labels[None] == owner[:, None, None]) & (owner[:, None, None] >= 0)


__all__ = ["SEG_DECODERS", "histogram_identifiers", "anchor_tags", "nearest_labels", "match_people",
           "duplicate_leaders", "segment_people"]
