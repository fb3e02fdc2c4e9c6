"""Single-person refinement of missing joints by tag (associative embedding, SPEC section 1 step
8): a person missing joint k takes the cell of joint k's heatmap that is best by heatmap value
minus the rounded distance of its tag to the person's mean tag. The AE decoder fills its groups'
gaps with it; the recurrent method fills its people's (its paper's multi-scale test).

Symbols: N people, K joints, H, W the grid, D the tag dimension.
"""
from __future__ import annotations

import numpy as np

from .common import subpixel_offsets


def tag_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance over the last axis: 'l2' (SPEC, HigherHRNet) or 'rms' (pose-ae-train)."""
    d2 = np.square(a - b)
    return np.sqrt(d2.sum(axis=-1) if metric == "l2" else d2.mean(axis=-1))


def person_reach(poses: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
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


def refine_missing_joints(poses: np.ndarray, means: np.ndarray, hm: np.ndarray, tg: np.ndarray, metric: str,
                          subpixel: str, accept: str, radius: "float | None" = None) -> None:
    """SPEC step 8, in place: each missing joint (score 0) of ``poses`` (N, K, 3: x, y, score on
    the grid, cell (i, j) centred at (j + 0.5, i + 0.5)) is searched in ``hm`` (K, H, W) for the
    cell best by value - round(distance of its tag in ``tg`` (K, H, W, D) to the person's mean
    tag ``means`` (N, D), ``metric`` 'l2' | 'rms')), and taken (placed by ``subpixel``, scored by
    its value) when ``accept`` says so: "heatmap" (value > 0), "adjusted" (value - round(dist) > 0)
    or "near" (value > 0 and round(dist) <= 1). ``radius``: search only the cells within that many
    person sizes of the person (:func:`person_reach`); None: the whole map."""
    k, h, w, d = tg.shape
    reach = None if radius is None else person_reach(poses, radius)
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
            dist = tag_distance(tj[None, :, :], mt[:, None, :], metric)
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
