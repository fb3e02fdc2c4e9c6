"""Associative Embedding decoding: candidates, greedy tag grouping, sub-pixel adjustment and
refinement (SPEC section 1, "Decoding", steps 1-8 and the COCO output of step 10). The reference
preset's own code path is :mod:`.reference_decode`, the candidates (steps 1-3) :mod:`.peaks`; test-time fusion (steps 9-10) is
:mod:`.fusion`; sub-pixel offsets are :func:`posegroup.methods.common.subpixel_offsets`.

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
  * ``"spec"``: SPEC section 1 as written.
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
    raster order). Among exactly equal-cost assignments the ``munkres`` package's choice is
    made (:func:`.reference_decode.munkres`). The options in ``REFERENCE_FIXED`` cannot be
    changed with this preset.

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
        Gaussian peaks); see :func:`~posegroup.methods.common.subpixel_offsets`.
    tag_metric: ``"l2"`` Euclidean norm (SPEC, HigherHRNet) or ``"rms"`` root mean square
        over the D tag dimensions (pose-ae-train's matching). Identical for D = 1.
    refine_accept: ``"adjusted"`` (SPEC step 8 as written): add the refined joint only when
        heatmap - round(dist) > 0 at the argmax; ``"heatmap"`` (pose-ae-train's code):
        whenever the heatmap value at the argmax is > 0, i.e. nearly every missing joint is
        filled with its best guess (OKS ignores guesses for unlabelled joints), another
        person's joint included; ``"near"`` (default): the argmax over the cells with a
        positive heatmap, taken when its tag distance rounds to at most 1: weak joints of the
        person are filled, other people's (ids >= 2 apart) are not (measured on the noisy
        oracle: docs/decoders.md).
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
        mean of its detected joints (measured: docs/decoders.md).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...skeleton import KeypointSet
from ..common import subpixel_offsets
from ..refine import refine_missing_joints, tag_distance
from .peaks import check_kernel, nms, top_candidates
from .reference_decode import group_reference

__all__ = ["COCO_JOINT_ORDER", "default_joint_order", "nms", "top_candidates", "group",
           "fill_missing", "hough_vote"]

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




# ------------------------------------------------------------------------------ steps 1-2


# ------------------------------------------------------------------------------ steps 4-8
#: Option values of the presets of :func:`group`. "spec": SPEC section 1 as written;
#: "reference": pose-ae-train's test-time decoder (its own code path, see
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
REFERENCE_FIXED = ("nms_kernel", "subpixel", "tag_metric", "refine_accept", "nms_ties", "gated_matching",
                   "person_score", "match_cost", "refine_radius")
#: The valid values of the options of :func:`group` that name a choice.
CHOICES = {"subpixel": ("quarter", "quadratic", "none"), "tag_metric": ("l2", "rms"),
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
        if preset == "reference" and name in REFERENCE_FIXED and value != opts[name]:
            raise ValueError(f"{name}={value!r} cannot be combined with preset='reference' (fixed to "
                             f"{opts[name]!r}); use preset='spec' or 'default' to change it")
        opts[name] = value
    for name, choices in CHOICES.items():
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
    check_kernel(opts["nms_kernel"], shape)
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
        return group_reference(hm, tg, order, opts)
    cj, cy, cx, cv = top_candidates(hm, top_k=opts["top_k"], nms_kernel=opts["nms_kernel"],
                                    detection_threshold=opts["detection_threshold"], nms_ties=opts["nms_ties"])
    member, tag_sum, count = _match(cj, cv, tg[cj, cy, cx], k, order, opts)
    n_groups = member.shape[0]
    sub = opts["subpixel"] if opts["adjust"] else "none"
    poses = _place_joints(hm, member, (cj, cy, cx, cv), sub)
    scores = poses[:, :, 2].mean(axis=1) if n_groups else np.zeros(0)
    if opts["refine"] and n_groups:
        means = tag_sum / count[:, None]
        refine_missing_joints(poses, means, hm, tg, opts["tag_metric"], sub, opts["refine_accept"],
                              opts["refine_radius"])
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
            dist = tag_distance(ctag[idx, None, :].astype(np.float64), means[None, :, :], opts["tag_metric"])
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


def hough_vote(heatmaps: np.ndarray, tags: np.ndarray, offsets: np.ndarray, *, factor: int, blur: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Candidates by short-range offsets: PersonLab's Hough voting (its eq. 1) on a finer grid.

    Args:
        heatmaps: (K, H, W) probabilities.
        tags: (K, H, W, D).
        offsets: (K, 2, H, W): joint k's (x, y) from each cell's centre, in cells.
        factor: n >= 1, fine cells per cell along each axis.
        blur: std of the Gaussian smoothing of the voted maps, fine cells (0: none).
    Returns (votes (K, nH, nW) float32, tags (K, nH, nW, D)): each cell's probability splatted
    bilinearly at its centre + offset, then smoothed (a joint's cells agree on one place, so its
    mass gathers there, and two people's joints a cell apart stay two peaks); each fine cell
    keeps its cell's tag. Fine cell (i, j) covers [j/n, (j+1)/n) x [i/n, (i+1)/n) of the grid.
    """
    from scipy.ndimage import gaussian_filter

    from ..common import hough_scores

    n = int(factor)
    _, h, w = heatmaps.shape
    votes = hough_scores(np.asarray(heatmaps, np.float32), np.moveaxis(np.asarray(offsets), 1, -1),
                         output_stride=1.0, grid_offset=0.5, radius=1.0 / np.sqrt(np.pi),   # weight = p
                         hough_stride=1.0 / n, hough_size_hw=(h * n, w * n))
    if blur > 0:
        votes = gaussian_filter(votes, (0.0, float(blur), float(blur)))
    return votes.astype(np.float32), np.repeat(np.repeat(np.asarray(tags), n, axis=1), n, axis=2)


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
