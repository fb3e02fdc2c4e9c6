"""Associative Embedding decoding: candidates, greedy tag grouping, sub-pixel adjustment,
refinement and test-time fusion (SPEC section 1, "Decoding", steps 1-10).

Coordinates (docs/ARCHITECTURE.md): the centre of heatmap cell (row i, column j) is at
(x, y) = (j + 0.5, i + 0.5); multiplying decoded positions by the network stride gives input
pixels. Nothing here hard-wires 17 keypoints: K comes from the shapes.

Reference behaviour quoted below is that of the official pose-ae-train decoder (read for facts,
not copied) and of HigherHRNet where they differ.

Options of :func:`group`
------------------------

Presets (every option left None takes the preset's value, :data:`PRESETS`):
  * ``"default"``: the tuned decoder: one candidate per plateau, gated matching in which the
    tag distance only gates and the candidate score decides (``match_cost="score"``),
    log-parabola sub-pixel peaks, refine that fills every missing joint whose best positive
    cell has a tag close to the person's (``refine_accept="near"``; joint score = that
    heatmap value, not 1 as in the reference), person score from the detected joints.
  * ``"spec"``: SPEC as written (the earlier defaults of this function).
  * ``"reference"``: pose-ae-train's test-time decoder (utils/group.py ``HeatmapParser``
    with test.py's settings, then test.py's ``refine``), reproduced on its own code path:
    the heatmap is clipped at 1 first; people live in a dict keyed by the first tag value of
    the joint that created them (a candidate that starts a person whose key exists goes into
    that person, replacing its joint, and resets its tag list); once ``max_people`` people
    exist, later joint types are skipped ("ignore_too_much"); the matching distance is the
    RMS over D, the cost matrix padded square with 1e10; quarter-pixel adjust; refine runs on
    every person with the person's tag = mean of the tags at its joints' cells, L2 distance,
    accepts when the heatmap value at the argmax is > 0, gives the refined joint score 1 and
    adjusts it with test.py's own quarter rule (whose row neighbour is clamped at K - 1, as
    in test.py, and at the map). Person scores: mean of the K joint scores before refine.
    Not reproduced: the order of exactly tied candidates (torch ``topk`` is unspecified; here
    raster order), and the choice among exactly equal-cost assignments (``munkres`` there,
    scipy here). The options in ``_REFERENCE_FIXED`` cannot be changed with this preset.

Options:
    preset: ``"default"``, ``"spec"`` or ``"reference"``.
    detection_threshold: 0.1 (official test-time value; the reference class default is 0.2).
    tag_threshold: 1.0 (reference), > 0.
    top_k: candidates per joint, 30 (reference), in [1, 10000].
    nms_kernel: odd window side in [1, 31]: 3 (pose-ae-train; HigherHRNet/mmpose use 5).
    max_people: 30 (reference), in [1, 10000]: only the first ``max_people`` groups
        (creation order) are matched against; later candidates may still start new people
        (except with the reference preset), so the output is not truncated.
    joint_order: a permutation of range(K) or a KeypointSet; default
        :func:`default_joint_order` (SPEC's COCO order when K = 17, range(K) otherwise).
    adjust: apply the sub-pixel step 6; without it the cell centre (j + 0.5, i + 0.5).
    refine: step 8 (the paper's "+ refine" results).
    subpixel: ``"quarter"`` (reference) or ``"quadratic"`` (log-parabola fit, exact on
        Gaussian peaks); see :func:`subpixel_offsets`.
    tag_metric: ``"l2"`` Euclidean norm (SPEC, HigherHRNet) or ``"rms"`` root mean square
        over the D tag dimensions (pose-ae-train's matching). Identical for D = 1.
    refine_accept: ``"adjusted"`` (SPEC step 8 as written): add the refined joint only when
        heatmap - round(dist) > 0 at the argmax; ``"heatmap"`` (pose-ae-train's code):
        whenever the heatmap value at the argmax is > 0, i.e. nearly every missing joint is
        filled with its best guess (OKS ignores guesses for unlabelled joints), another
        person's joint included; ``"near"`` (default): the argmax over the cells with a
        positive heatmap, taken when its tag distance rounds to at most 1: weak joints of the
        person are filled, other people's (ids >= 2 apart) are not. Noisy oracle, 150
        images, clean / mild / hard: near 0.997 / 0.902 / 0.601, heatmap 0.994 / 0.902 /
        0.598, adjusted 0.997 / 0.892 / 0.536.
    nms_ties: ``"keep"`` (reference max-pool equality) or ``"first"`` (one candidate per
        plateau of exactly equal maxima); see :func:`nms`.
    gated_matching: False (reference): the Hungarian sees every (candidate, group) pair and
        matches at or beyond ``tag_threshold`` are rejected only afterwards, so with tied costs
        it may prefer an assignment whose pairs are then all rejected (e.g. 1-D tags 2, 4, 6
        against groups 0, 2, 4: the optimum "6->4, 4->2, 2->0" costs the same as the right
        one, and splits two people). True: pairs with distance >= ``tag_threshold`` cost
        1e10 before the assignment, so the number of accepted matches is maximised first.
    person_score: ``"detected"`` (SPEC step 7, reference): mean of the K joint scores before
        refine; ``"refined"``: the same mean after refine (refined joints count with their
        heatmap value). On the noisy oracle (``posegroup benchmark decode``) "refined" loses
        much AP under spurious peaks: their one-joint people borrow whole bodies in refine.
    match_cost: ``"rounded"`` (SPEC step 5, reference): round(dist) * 100 - score;
        ``"score"``: among the pairs closer than ``tag_threshold`` (gated as with
        ``gated_matching``) only the candidate score counts, so a spurious peak whose tag is
        close enough never displaces a stronger true joint of the same person because its
        tag happens to round better.
    refine_radius: None (every preset; the paper's refine searches the whole map) or a number > 0:
        refine searches a missing joint only among the cells within ``refine_radius`` times the
        person's size (the larger side of its detected joints' box, at least one cell) of the
        mean of its detected joints. Measured (bundled ``ae_crowd_synthetic`` seed 0, tuning
        splits heavy / medium, AP): None 0.136 / 0.352; 0.5 0.130 / 0.343; 1 0.135 / 0.351;
        2 0.136 / 0.351 -- refine's mistakes there are near the person, not across the image.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...skeleton import KeypointSet
from .targets import check_output_size

__all__ = ["COCO_JOINT_ORDER", "default_joint_order", "nms", "top_candidates", "group",
           "subpixel_offsets", "flip_back", "fuse", "fill_missing"]

#: SPEC step 4: nose, eyes, ears, shoulders, hips, elbows, wrists, knees, ankles (0-based).
COCO_JOINT_ORDER: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)

_COCO_NAMES = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_sho", "r_sho", "l_elb", "r_elb",
               "l_wri", "r_wri", "l_hip", "r_hip", "l_knee", "r_knee", "l_ank", "r_ank")


def default_joint_order(keypoints: "int | KeypointSet") -> tuple[int, ...]:
    """The greedy grouping order for K joints or a keypoint set.

    COCO-17 (K = 17, or a set with the COCO names): :data:`COCO_JOINT_ORDER` (SPEC step 4).
    Another :class:`KeypointSet`: breadth-first over its kinematic tree from the root (the first
    edge's parent), then any joint not reached; e.g. CrowdPose-14 starts head, neck, shoulders.
    A bare K != 17: ``range(K)``.
    """
    if isinstance(keypoints, KeypointSet):
        k = keypoints.num_keypoints
        if tuple(keypoints.names) == _COCO_NAMES:
            return COCO_JOINT_ORDER
        order: list[int] = []
        if keypoints.edges:
            children: dict[int, list[int]] = {}
            for a, b in keypoints.edges:
                children.setdefault(a, []).append(b)
                children.setdefault(b, []).append(a)
            queue = [keypoints.edges[0][0]]
            seen = {queue[0]}
            while queue:
                u = queue.pop(0)
                order.append(u)
                for v in children.get(u, []):
                    if v not in seen:
                        seen.add(v)
                        queue.append(v)
        order += [j for j in range(k) if j not in order]
        return tuple(order)
    k = int(keypoints)
    return COCO_JOINT_ORDER if k == 17 else tuple(range(k))


# ------------------------------------------------------------------------------ validation
def _check_maps(heatmaps, tags) -> tuple[np.ndarray, np.ndarray]:
    hm = np.asarray(heatmaps)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must have shape (K, H, W); got {hm.shape}")
    tg = np.asarray(tags)
    if tg.ndim == 3:
        tg = tg[..., None]
    if tg.ndim != 4 or tg.shape[:3] != hm.shape:
        raise ValueError(f"tags must have shape (K, H, W, D) matching heatmaps {hm.shape}; got {tg.shape}")
    if tg.shape[3] < 1:
        raise ValueError("tags must have a tag dimension D >= 1")
    hm = np.ascontiguousarray(hm, dtype=np.float32)
    tg = np.ascontiguousarray(tg, dtype=np.float32)
    big = np.finfo(np.float32).max
    if not np.isfinite(hm).all():                     # broken outputs: NaN -> 0, +-inf -> +-max
        hm = np.nan_to_num(hm, nan=0.0, posinf=big, neginf=-big)
    if not np.isfinite(tg).all():                     # NaN -> 0, +-inf -> +-1e6 (far, no overflow)
        tg = np.nan_to_num(tg, nan=0.0, posinf=1e6, neginf=-1e6)
    return hm, tg


def _tag_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance over the last axis: 'l2' (SPEC, HigherHRNet) or 'rms' (pose-ae-train)."""
    d2 = np.square(a - b)
    return np.sqrt(d2.sum(axis=-1) if metric == "l2" else d2.mean(axis=-1))


# ------------------------------------------------------------------------------ steps 1-2
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
    kernel = _check_kernel(kernel, hm.shape)
    if ties not in ("keep", "first"):
        raise ValueError(f"nms_ties must be 'keep' or 'first'; got {ties!r}")
    return hm, kernel


#: Largest NMS window side accepted (the window loop is O(kernel^2)).
MAX_NMS_KERNEL = 31


def _check_kernel(kernel, shape) -> int:
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


# ------------------------------------------------------------------------------ step 6
def subpixel_offsets(heatmaps: np.ndarray, joint: np.ndarray, y: np.ndarray, x: np.ndarray,
                     method: str = "quarter") -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offsets (dx, dy) of peaks at integer cells, relative to the cell centre.

    Args:
        heatmaps: (K, H, W) raw (not NMS'd) heatmaps.
        joint, y, x: (M,) int peak cells.
        method: ``"quarter"`` (reference, SPEC step 6): per axis +0.25 if the next neighbour is
            larger than the previous one, else -0.25 (ties go -0.25, as in the reference;
            neighbours clamped at the border). ``"quadratic"``: fit a parabola to the log of the
            heatmap over 3 cells per axis (exact for a Gaussian peak), falling back to a parabola
            on the raw values where a value is <= 0; at a border the 3-cell window is shifted
            inwards; the offset is clipped to [-0.5, 0.5]. ``"none"``: 0.
    Returns:
        dx, dy: (M,) float64 offsets from the cell centre.
    """
    hm = np.asarray(heatmaps)
    _, h, w = hm.shape
    joint, y, x = (np.asarray(a, dtype=np.int64) for a in (joint, y, x))
    if method == "none" or joint.size == 0:
        z = np.zeros(joint.shape, dtype=np.float64)
        return z, z.copy()
    if method == "quarter":
        right = hm[joint, y, np.minimum(x + 1, w - 1)]
        left = hm[joint, y, np.maximum(x - 1, 0)]
        down = hm[joint, np.minimum(y + 1, h - 1), x]
        up = hm[joint, np.maximum(y - 1, 0), x]
        dx = np.where(right > left, 0.25, -0.25)
        dy = np.where(down > up, 0.25, -0.25)
        return dx, dy
    if method == "quadratic":
        return (_parabola(hm, joint, y, x, axis=2, n=w),
                _parabola(hm, joint, y, x, axis=1, n=h))
    raise ValueError(f"subpixel must be 'quarter', 'quadratic' or 'none'; got {method!r}")


def _parabola(hm, joint, y, x, axis: int, n: int) -> np.ndarray:
    pos = x if axis == 2 else y
    if n < 3:
        return np.zeros(pos.shape, dtype=np.float64)
    c = np.minimum(np.maximum(pos, 1), n - 2)        # window centre, shifted inwards at borders
    if axis == 2:
        vals = np.stack([hm[joint, y, c - 1], hm[joint, y, c], hm[joint, y, c + 1]]).astype(np.float64)
    else:
        vals = np.stack([hm[joint, c - 1, x], hm[joint, c, x], hm[joint, c + 1, x]]).astype(np.float64)
    positive = (vals > 0).all(axis=0)
    f = np.where(positive, np.log(np.where(vals > 0, vals, 1.0)), vals)
    den = f[0] - 2.0 * f[1] + f[2]
    num = 0.5 * (f[0] - f[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(den < 0, num / den, 0.0)       # vertex relative to the window centre
    return np.minimum(np.maximum(mu + (c - pos), -0.5), 0.5)


# ------------------------------------------------------------------------------ steps 4-8
#: Option values of the presets of :func:`group`. "spec": SPEC section 1 as written (the
#: earlier defaults); "reference": pose-ae-train's test-time decoder (its own code path, see
#: "Options of group" in the module docstring); "default": the tuned defaults (measured by
#: ``posegroup benchmark decode``).
PRESETS: dict[str, dict] = {
    "spec": dict(detection_threshold=0.1, tag_threshold=1.0, top_k=30, nms_kernel=3, max_people=30,
                 adjust=True, refine=True, subpixel="quarter", tag_metric="l2", refine_accept="adjusted",
                 nms_ties="keep", gated_matching=False, person_score="detected", match_cost="rounded",
                 refine_radius=None),
    "reference": dict(detection_threshold=0.1, tag_threshold=1.0, top_k=30, nms_kernel=3, max_people=30,
                      adjust=True, refine=True, subpixel="quarter", tag_metric="rms",
                      refine_accept="heatmap", nms_ties="keep", gated_matching=False,
                      person_score="detected", match_cost="rounded", refine_radius=None),
    "default": dict(detection_threshold=0.1, tag_threshold=1.0, top_k=30, nms_kernel=3, max_people=30,
                    adjust=True, refine=True, subpixel="quadratic", tag_metric="l2", refine_accept="near",
                    nms_ties="first", gated_matching=True, person_score="detected", match_cost="score",
                    refine_radius=None),
}
#: Options the reference preset reproduces as pose-ae-train has them (passing another value is an error).
_REFERENCE_FIXED = ("nms_kernel", "subpixel", "tag_metric", "refine_accept", "nms_ties", "gated_matching",
                    "person_score", "match_cost", "refine_radius")
_CHOICES = {"subpixel": ("quarter", "quadratic", "none"), "tag_metric": ("l2", "rms"),
            "refine_accept": ("heatmap", "adjusted", "near"), "nms_ties": ("keep", "first"),
            "person_score": ("detected", "refined"), "match_cost": ("rounded", "score")}


def _resolve_options(preset: str, given: dict, shape) -> dict:
    """The preset's options updated by the non-None ``given`` ones, validated (ValueError naming
    the knob when out of range)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    opts = dict(PRESETS[preset])
    for name, value in given.items():
        if value is None:
            continue
        if preset == "reference" and name in _REFERENCE_FIXED and value != opts[name]:
            raise ValueError(f"{name}={value!r} cannot be combined with preset='reference' (fixed to "
                             f"{opts[name]!r}); use preset='spec' or 'default' to change it")
        opts[name] = value
    for name, choices in _CHOICES.items():
        if opts[name] not in choices:
            raise ValueError(f"{name} must be one of {choices}; got {opts[name]!r}")
    for name in ("detection_threshold", "tag_threshold"):
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number; got {v!r}")
        opts[name] = float(v)
    if opts["tag_threshold"] <= 0:
        raise ValueError(f"tag_threshold must be > 0; got {opts['tag_threshold']}")
    r = opts["refine_radius"]
    if r is not None:
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)) or not np.isfinite(r) or r <= 0:
            raise ValueError(f"refine_radius must be a number > 0 or None; got {r!r}")
        opts["refine_radius"] = float(r)
    for name in ("top_k", "max_people"):
        v = opts[name]
        if isinstance(v, bool) or int(v) != v or not 1 <= int(v) <= 10000:
            raise ValueError(f"{name} must be an integer in [1, 10000]; got {v!r}")
        opts[name] = int(v)
    _check_kernel(opts["nms_kernel"], shape)
    opts["nms_kernel"] = int(opts["nms_kernel"])
    for name in ("adjust", "refine", "gated_matching"):
        opts[name] = bool(opts[name])
    return opts


def _joint_order(joint_order, k: int) -> tuple[int, ...]:
    order = default_joint_order(k) if joint_order is None else (
        default_joint_order(joint_order) if isinstance(joint_order, KeypointSet)
        else tuple(int(j) for j in joint_order))
    if sorted(order) != list(range(k)):
        raise ValueError(f"joint_order must be a permutation of range({k}); got {list(order)}")
    return order


def group(heatmaps, tags, *, preset: str = "default", detection_threshold: "float | None" = None,
          tag_threshold: "float | None" = None, top_k: "int | None" = None, nms_kernel: "int | None" = None,
          max_people: "int | None" = None, joint_order: "Sequence[int] | KeypointSet | None" = None,
          adjust: "bool | None" = None, refine: "bool | None" = None, subpixel: "str | None" = None,
          tag_metric: "str | None" = None, refine_accept: "str | None" = None, nms_ties: "str | None" = None,
          gated_matching: "bool | None" = None, person_score: "str | None" = None,
          match_cost: "str | None" = None, refine_radius: "float | None" = None):
    """Group joint detections into people by their associative-embedding tags.

    SPEC section 1 decoding, steps 1-8 (``preset="spec"``):
      1. NMS: keep cells equal to the ``nms_kernel`` max-pool of the heatmap.
      2-3. the top ``top_k`` cells per joint with score > ``detection_threshold``, with their tags.
      4-5. joint types in ``joint_order``; the first type present seeds one person per candidate;
         for each next type, cost[i, g] = round(dist(tag_i, mean tag of group g)) * 100 - score_i
         over the first ``max_people`` groups, Hungarian assignment (scipy); a match is accepted
         only if the unrounded distance < ``tag_threshold``, otherwise (and for unmatched
         candidates) the candidate starts a new person.
      6. position = cell centre + sub-pixel offset (``adjust``; ``subpixel`` chooses how).
      7. person score = mean of its K joint scores (missing = 0), before refinement.
      8. ``refine``: for each missing joint of a person, the argmax over the whole raw map of
         heatmap - round(dist(tag, person's mean tag)) is added (with the heatmap value there as
         score, adjusted like the others) when accepted (see ``refine_accept``).

    Presets and options: "Options of group" in the module docstring (every option left None takes
    the preset's value, :data:`PRESETS`; out-of-range values are a ``ValueError`` naming them).

    Args:
        heatmaps: (K, H, W) joint heatmaps (one image).
        tags: (K, H, W, D) tag maps ((K, H, W) is read as D = 1).
        preset, detection_threshold, tag_threshold, top_k, nms_kernel, max_people, joint_order,
        adjust, refine, subpixel, tag_metric, refine_accept, nms_ties, gated_matching, person_score,
        match_cost, refine_radius: the options (module docstring).
    Returns:
        poses: (N, K, 3) float32, x, y, score per joint (score 0 = missing), heatmap-cell units.
        scores: (N,) float32 person scores.
    """
    hm, tg = _check_maps(heatmaps, tags)
    k, h, w, d = tg.shape
    opts = _resolve_options(preset, dict(
        detection_threshold=detection_threshold, tag_threshold=tag_threshold, top_k=top_k,
        nms_kernel=nms_kernel, max_people=max_people, adjust=adjust, refine=refine, subpixel=subpixel,
        tag_metric=tag_metric, refine_accept=refine_accept, nms_ties=nms_ties,
        gated_matching=gated_matching, person_score=person_score, match_cost=match_cost,
        refine_radius=refine_radius), hm.shape)
    order = _joint_order(joint_order, k)
    if k == 0 or h == 0 or w == 0:
        return np.zeros((0, k, 3), np.float32), np.zeros(0, np.float32)
    if preset == "reference":
        return _group_reference(hm, tg, order, opts)
    cj, cy, cx, cv = top_candidates(hm, top_k=opts["top_k"], nms_kernel=opts["nms_kernel"],
                                    detection_threshold=opts["detection_threshold"], nms_ties=opts["nms_ties"])
    member, tag_sum, count = _match(cj, cv, tg[cj, cy, cx], k, order, opts)
    n_groups = member.shape[0]
    sub = opts["subpixel"] if opts["adjust"] else "none"
    poses = _place_joints(hm, member, (cj, cy, cx, cv), sub)
    scores = poses[:, :, 2].mean(axis=1) if n_groups else np.zeros(0)
    if opts["refine"] and n_groups:
        means = tag_sum / count[:, None]
        _refine(poses, means, hm, tg, opts["tag_metric"], sub, opts["refine_accept"], opts["refine_radius"])
        if opts["person_score"] == "refined":
            scores = poses[:, :, 2].mean(axis=1)
    return poses.astype(np.float32), scores.astype(np.float32)


def _place_joints(hm: np.ndarray, member: np.ndarray, candidates: tuple, subpixel: str) -> np.ndarray:
    """Step 6: (G, K, 3) float64 x, y, score of each group's joints (zeros where it has none):
    the candidate's cell centre plus its ``subpixel`` offset. ``member`` (G, K) candidate index
    per group joint (-1 = none); ``candidates`` (joint, y, x, score) arrays of
    :func:`top_candidates`; ``hm`` (K, H, W)."""
    cj, cy, cx, cv = candidates
    poses = np.zeros((member.shape[0], hm.shape[0], 3), dtype=np.float64)
    gi, ji = np.nonzero(member >= 0)
    ci = member[gi, ji]
    if ci.size:
        dx, dy = subpixel_offsets(hm, cj[ci], cy[ci], cx[ci], subpixel)
        poses[gi, ji, 0] = cx[ci] + 0.5 + dx
        poses[gi, ji, 1] = cy[ci] + 0.5 + dy
        poses[gi, ji, 2] = cv[ci]
    return poses


def _match(cj, cv, ctag, k: int, order, opts):
    """Steps 4-5: greedy joint-by-joint Hungarian matching of candidates to groups.

    Returns member (G, K) candidate index per group joint (-1 = none), tag_sum (G, D), count (G,)."""
    d = ctag.shape[1]
    bounds = np.searchsorted(cj, np.arange(k + 1))    # candidates of joint j: bounds[j]:bounds[j+1]
    cap = max(cj.size, 1)
    member = np.full((cap, k), -1, dtype=np.int64)    # candidate index of each group's joint
    tag_sum = np.zeros((cap, d), dtype=np.float64)
    count = np.zeros(cap, dtype=np.int64)
    n_groups, thr = 0, opts["tag_threshold"]
    for j in order:
        lo, hi = bounds[j], bounds[j + 1]
        if hi == lo:
            continue
        idx = np.arange(lo, hi)
        new = idx
        if n_groups > 0:
            g = min(n_groups, opts["max_people"])
            means = tag_sum[:g] / count[:g, None]
            dist = _tag_distance(ctag[idx, None, :].astype(np.float64), means[None, :, :], opts["tag_metric"])
            rows, cols = _assign(dist, cv[idx], thr, opts)
            ok = dist[rows, cols] < thr
            rows, cols = rows[ok], cols[ok]
            member[cols, j] = idx[rows]
            tag_sum[cols] += ctag[idx[rows]]
            count[cols] += 1
            matched = np.zeros(idx.size, dtype=bool)
            matched[rows] = True
            new = idx[~matched]
        m = new.size
        member[n_groups:n_groups + m, j] = new
        tag_sum[n_groups:n_groups + m] = ctag[new]
        count[n_groups:n_groups + m] = 1
        n_groups += m
    return member[:n_groups], tag_sum[:n_groups], count[:n_groups]


def _assign(dist: np.ndarray, score: np.ndarray, thr: float, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """Step 5's assignment of candidates (rows) to groups (columns): (rows, cols) of the pairs
    the Hungarian picks (scipy), before the ``dist < thr`` acceptance."""
    gated = opts["gated_matching"] or opts["match_cost"] == "score"
    feasible = dist < thr
    if gated and (feasible.sum(axis=0) <= 1).all() and (feasible.sum(axis=1) <= 1).all():
        return np.nonzero(feasible)                  # no two pairs compete: the optimum is all of them
    if opts["match_cost"] == "score":                # the tag distance only gates
        cost = np.empty(dist.shape)
        cost[:] = -score[:, None]
    else:
        cost = np.round(dist) * 100.0 - score[:, None]
    if gated:                                        # gate, and let every row stay unmatched at
        cost[~feasible] = 1e10                       # cost 1e9: more matches first, then the score
        cost = np.concatenate([cost, np.full((dist.shape[0], dist.shape[0]), 1e9)], axis=1)
    rows, cols = linear_sum_assignment(cost)
    keep = cols < dist.shape[1]
    return rows[keep], cols[keep]


def _person_reach(poses: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``refine_radius``: each person's centre (N, 2), the mean of its detected joints, and reach
    (N,), ``radius`` times the larger side of their bounding box (at least one cell)."""
    found = poses[:, :, 2] > 0
    n = np.maximum(found.sum(axis=1), 1)[:, None]
    xy = poses[:, :, :2].astype(np.float64)
    centre = (xy * found[..., None]).sum(axis=1) / n
    hi = np.where(found[..., None], xy, -np.inf).max(axis=1)
    lo = np.where(found[..., None], xy, np.inf).min(axis=1)
    side = np.where(found.any(axis=1), (hi - lo).max(axis=1), 0.0)
    return centre, radius * np.maximum(side, 1.0)


def _refine(poses: np.ndarray, means: np.ndarray, hm: np.ndarray, tg: np.ndarray, metric: str,
            subpixel: str, accept: str, radius: "float | None" = None) -> None:
    """SPEC step 8, in place. poses (N, K, 3); means (N, D) group mean tags; ``radius``: search
    only the cells within that many person sizes of the person (:func:`_person_reach`)."""
    k, h, w, d = tg.shape
    reach = None if radius is None else _person_reach(poses, radius)
    flat_hm = hm.reshape(k, h * w)
    flat_tg = tg.reshape(k, h * w, d)
    miss_p, miss_j = np.nonzero(poses[:, :, 2] == 0)
    if miss_p.size == 0:
        return
    positive = None
    if accept in ("adjusted", "near"):
        # heatmap - round(dist) <= heatmap, so only cells with heatmap > 0 can be accepted
        # ("adjusted": the same answer as the whole map; "near" searches those by definition):
        # found in one pass, searched per joint when sparse (dense maps: whole, masked)
        positive = np.flatnonzero(flat_hm.reshape(-1) > 0)
        sparse = positive.size < flat_hm.size // 4
        bounds = np.searchsorted(positive, np.arange(k + 1) * (h * w))
    found_j, found_y, found_x, found_v, found_p = [], [], [], [], []
    for j in np.unique(miss_j):                       # vectorised over the people missing joint j
        people = miss_p[miss_j == j]
        mt = means[people].astype(np.float32)         # (P, D)
        hj, tj = flat_hm[j], flat_tg[j]
        cells = mask = None
        if positive is not None:
            if bounds[j + 1] == bounds[j]:
                continue
            if sparse:
                cells = positive[bounds[j]:bounds[j + 1]] - j * (h * w)
                hj, tj = hj[cells], tj[cells]
            elif accept == "near":
                mask = hj <= 0
        if d == 1:                                    # same for 'l2' and 'rms'
            dist = np.abs(tj[None, :, 0] - mt[:, 0:1])
        else:
            dist = _tag_distance(tj[None, :, :], mt[:, None, :], metric)
        score = hj[None, :] - np.round(dist)          # (P, cells)
        if mask is not None:
            score[:, mask] = -np.inf
        if reach is not None:
            idx = np.arange(h * w) if cells is None else cells
            centre, r = reach[0][people], reach[1][people]
            far = (np.square(idx % w + 0.5 - centre[:, 0:1]) + np.square(idx // w + 0.5 - centre[:, 1:2])
                   > np.square(r)[:, None])
            score[far] = -np.inf
        best = score.argmax(axis=1)
        reachable = np.isfinite(score[np.arange(people.size), best])
        val = hj[best]
        if accept == "heatmap":
            ok = val > 0
        elif accept == "near":                        # the best positive cell, tag within round 1
            ok = (val > 0) & (np.round(dist[np.arange(people.size), best]) <= 1)
        else:
            ok = score[np.arange(people.size), best] > 0
        ok &= reachable
        if cells is not None:
            best = cells[best]
        if ok.any():
            found_p.append(people[ok])
            found_j.append(np.full(int(ok.sum()), j, dtype=np.int64))
            found_y.append(best[ok] // w)
            found_x.append(best[ok] % w)
            found_v.append(val[ok])
    if not found_p:
        return
    p, j, y, x, v = (np.concatenate(a) for a in (found_p, found_j, found_y, found_x, found_v))
    dx, dy = subpixel_offsets(hm, j, y, x, subpixel)
    poses[p, j, 0] = x + 0.5 + dx
    poses[p, j, 1] = y + 0.5 + dy
    poses[p, j, 2] = v


# ------------------------------------------------------------------------------ reference preset
def _group_reference(hm: np.ndarray, tg: np.ndarray, order, opts: dict):
    """pose-ae-train's test-time decoding (``group(..., preset="reference")``), see :func:`group`."""
    k, h, w, d = tg.shape
    hm = np.minimum(hm, np.float32(1.0))              # test.py clips the fused heatmap at 1
    cj, cy, cx, cv = top_candidates(hm, top_k=opts["top_k"], nms_kernel=3,
                                    detection_threshold=opts["detection_threshold"], nms_ties="keep")
    ctag = tg[cj, cy, cx]
    state = _RefGroups(cj.size, k, d)
    bounds = np.searchsorted(cj, np.arange(k + 1))
    for j in order:
        idx = np.arange(bounds[j], bounds[j + 1])
        if idx.size == 0:
            continue
        if state.n == 0:
            state.add_new(idx, j, ctag)
            continue
        g = min(state.n, opts["max_people"])
        if g == opts["max_people"]:                  # "ignore_too_much": the joint type is skipped
            continue
        means = (state.tag_sum[:g] / state.count[:g, None]).astype(np.float32).astype(np.float64)
        diff = np.sqrt(np.square(ctag[idx, None, :].astype(np.float64) - means[None]).mean(axis=2))
        cost = np.round(diff) * 100.0 - cv[idx, None]
        if cost.shape[0] > cost.shape[1]:            # square padding with 1e10 columns
            cost = np.concatenate([cost, np.full((idx.size, idx.size - g), 1e10)], axis=1)
        rows, cols = _munkres(cost)                  # one column per row, rows ascending
        ok = cols < g
        ok[ok] = diff[rows[ok], cols[ok]] < opts["tag_threshold"]
        state.assign(idx, rows, cols, ok, j, ctag)
    joints = state.member[:state.n]
    poses = np.zeros((state.n, k, 3), dtype=np.float32)
    gi, ji = np.nonzero(joints >= 0)
    ci = joints[gi, ji]
    mode = "quarter" if opts["adjust"] else "none"
    if ci.size:
        dx, dy = subpixel_offsets(hm, cj[ci], cy[ci], cx[ci], mode)
        poses[gi, ji, 0] = cx[ci] + 0.5 + dx
        poses[gi, ji, 1] = cy[ci] + 0.5 + dy
        poses[gi, ji, 2] = cv[ci]
    scores = poses[:, :, 2].mean(axis=1)
    if opts["refine"] and state.n:
        _refine_reference(poses, hm, tg, mode)
    return poses, scores.astype(np.float32)


class _RefGroups:
    """pose-ae-train's people dict: people keyed by the first tag value of the joint that created
    them, in creation order. A candidate that starts a person whose key exists already is written
    into that person (replacing its joint of that type) and resets its tag list to its own tag."""

    def __init__(self, cap: int, k: int, d: int):
        self.member = np.full((max(cap, 1), k), -1, dtype=np.int64)
        self.tag_sum = np.zeros((max(cap, 1), d), dtype=np.float64)
        self.count = np.zeros(max(cap, 1), dtype=np.int64)
        self.keys: dict[float, int] = {}
        self.n = 0

    def add_new(self, cand: np.ndarray, j: int, ctag: np.ndarray) -> None:
        keys = ctag[cand, 0]
        if np.unique(keys).size == keys.size and not any(float(t) in self.keys for t in keys):
            m = cand.size                             # common case: no key collision, vectorised
            sl = slice(self.n, self.n + m)
            self.member[sl, j] = cand
            self.tag_sum[sl] = ctag[cand]
            self.count[sl] = 1
            self.keys.update((float(t), self.n + i) for i, t in enumerate(keys))
            self.n += m
            return
        for c in cand:                                # collisions: one by one, in order
            g = self.keys.setdefault(float(ctag[c, 0]), self.n)
            if g == self.n:
                self.n += 1
            self.member[g, j] = c
            self.tag_sum[g] = ctag[c]
            self.count[g] = 1

    def assign(self, idx, rows, cols, ok, j, ctag) -> None:
        new_rows = rows[~ok]
        keys = ctag[idx[new_rows], 0]
        clash = np.unique(keys).size != keys.size or any(float(t) in self.keys for t in keys)
        if not clash:
            self.member[cols[ok], j] = idx[rows[ok]]
            self.tag_sum[cols[ok]] += ctag[idx[rows[ok]]]
            self.count[cols[ok]] += 1
            self.add_new(idx[new_rows], j, ctag)
            return
        for r, c, good in zip(rows, cols, ok):       # the reference's order: rows ascending
            if good:
                self.member[c, j] = idx[r]
                self.tag_sum[c] += ctag[idx[r]]
                self.count[c] += 1
            else:
                self.add_new(idx[r:r + 1], j, ctag)


def _munkres(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of every row (rows <= columns) by the Munkres algorithm, making
    the choices of the ``munkres`` package (1.0-1.1) that pose-ae-train calls, so that among
    equal-cost assignments the same one comes out: the matrix is padded square with zero rows;
    row minima are subtracted; zeros are starred row by row (first free column); the search for
    an uncovered zero starts at the last primed row / starred column, wraps, and takes the last
    zero of the first row that has one; the path and the cover updates are the textbook ones.
    Returns (rows, cols) of the original rows, rows ascending."""
    r0, c0 = cost.shape
    n = max(r0, c0)
    c = np.zeros((n, n))
    c[:r0, :c0] = cost
    c -= c.min(axis=1, keepdims=True)
    star = np.zeros((n, n), dtype=bool)
    prime = np.zeros((n, n), dtype=bool)
    col_used = np.zeros(n, dtype=bool)
    for i in range(n):                                 # step 2: star the first free zero per row
        free = np.flatnonzero((c[i] == 0) & ~col_used)
        if free.size:
            star[i, free[0]] = col_used[free[0]] = True
    while True:
        col_cov = star.any(axis=0)                     # step 3
        row_cov = np.zeros(n, dtype=bool)
        if col_cov.sum() >= n:
            break
        i0 = j0 = 0
        while True:                                    # step 4
            z = (c == 0) & ~row_cov[:, None] & ~col_cov[None, :]
            rows_order = np.roll(np.arange(n), -i0)
            hit = rows_order[z[rows_order].any(axis=1)]
            if hit.size == 0:                          # step 6, then step 4 from the top
                m = c[~row_cov][:, ~col_cov].min()
                c[row_cov] += m
                c[:, ~col_cov] -= m
                i0 = j0 = 0
                continue
            i = hit[0]
            cols_order = np.roll(np.arange(n), -j0)
            j = cols_order[z[i, cols_order]][-1]
            prime[i, j] = True
            s = np.flatnonzero(star[i])
            if s.size == 0:
                break
            row_cov[i], col_cov[s[0]] = True, False
            i0, j0 = i, s[0]
        path = [(i, j)]                                # step 5: alternating star / prime path
        while True:
            rs = np.flatnonzero(star[:, path[-1][1]])
            if rs.size == 0:
                break
            path.append((rs[0], path[-1][1]))
            path.append((rs[0], np.flatnonzero(prime[rs[0]])[0]))
        for a, b in path:
            star[a, b] = not star[a, b]
        prime[:] = False
    rows, cols = np.nonzero(star[:r0, :c0])
    return rows, cols

def _refine_reference(poses: np.ndarray, hm: np.ndarray, tg: np.ndarray, subpixel: str) -> None:
    """test.py's refine, in place: the person's tag is the mean of the tags at its joints' cells;
    for each missing joint the first argmax over the whole map of heatmap - round(L2 distance) is
    taken whenever the heatmap value there is > 0, with joint score 1."""
    k, h, w, d = tg.shape
    found = poses[:, :, 2] > 0
    p_idx, j_idx = np.nonzero(found)
    cell_y = np.floor(poses[p_idx, j_idx, 1]).astype(np.int64)
    cell_x = np.floor(poses[p_idx, j_idx, 0]).astype(np.int64)
    tag_at = tg[j_idx, np.clip(cell_y, 0, h - 1), np.clip(cell_x, 0, w - 1)].astype(np.float64)
    n = found.sum(axis=1)
    sums = np.zeros((poses.shape[0], d))
    np.add.at(sums, p_idx, tag_at)
    means = (sums / np.maximum(n, 1)[:, None]).astype(np.float32)
    miss_p, miss_j = np.nonzero(~found & (n > 0)[:, None])
    flat_hm, flat_tg = hm.reshape(k, h * w), tg.reshape(k, h * w, d)
    for j in np.unique(miss_j):
        people = miss_p[miss_j == j]
        if d == 1:
            dist = np.abs(flat_tg[j][None, :, 0] - means[people, 0:1])
        else:
            dist = np.sqrt(np.square(flat_tg[j][None, :, :] - means[people, None, :]).sum(axis=2))
        best = (flat_hm[j][None, :] - np.round(dist)).argmax(axis=1)
        ok = flat_hm[j][best] > 0
        people, best = people[ok], best[ok]
        y, x = np.divmod(best, w)
        dx = dy = 0.0
        if subpixel == "quarter":                     # test.py's own quarter rule: its row
            hj = hm[j]                                # bound is K - 1 (det.shape[0]), its
            right = np.minimum(np.minimum(x + 1, h - 1), w - 1)
            down = np.minimum(np.minimum(y + 1, k - 1), h - 1)
            dx = np.where(hj[y, right] > hj[y, np.maximum(x - 1, 0)], 0.25, -0.25)
            dy = np.where(hj[down, x] > hj[np.maximum(y - 1, 0), x], 0.25, -0.25)
        poses[people, j, 0] = x + 0.5 + dx            # column bound H - 1 (det.shape[1])
        poses[people, j, 1] = y + 0.5 + dy
        poses[people, j, 2] = 1.0


# ------------------------------------------------------------------------------ steps 9-10
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


def fill_missing(poses) -> np.ndarray:
    """COCO output (SPEC step 10): each missing joint (score 0) is placed at the mean position of
    the person's detected joints, keeping score 0. People without any joint are unchanged.

    poses: (N, K, 3) x, y, score. Returns a new (N, K, 3) array.
    """
    p = np.array(poses, dtype=np.float32, copy=True)
    if p.ndim != 3 or p.shape[2] != 3:
        raise ValueError(f"poses must have shape (N, K, 3); got {p.shape}")
    found = p[:, :, 2] > 0
    n = found.sum(axis=1)
    has = n > 0
    mean = np.zeros((p.shape[0], 2), dtype=np.float32)
    mean[has] = (p[has, :, :2] * found[has, :, None]).sum(axis=1) / n[has, None]
    miss = ~found & has[:, None]
    p[:, :, :2] = np.where(miss[:, :, None], mean[:, None, :], p[:, :, :2])
    return p
