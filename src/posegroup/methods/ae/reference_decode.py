"""The reference preset of :func:`.decode.group`: pose-ae-train's test-time decoder (its
utils/group.py ``HeatmapParser`` with test.py's settings, then test.py's ``refine``) on its own
code path, with its own Munkres assignment (:func:`munkres`) so that equal-cost ties resolve as
the ``munkres`` package resolves them. What is and is not reproduced: "Options of group" in
:mod:`.decode`.
"""
from __future__ import annotations

import numpy as np

from ..common import subpixel_offsets
from .peaks import top_candidates

__all__ = ["group_reference", "munkres"]


def group_reference(hm: np.ndarray, tg: np.ndarray, order, opts: dict):
    """pose-ae-train's test-time decoding (``group(..., preset="reference")``, see
    :func:`.decode.group`) of heatmaps ``hm`` (K, H, W) and tags ``tg`` (K, H, W, D), joint types
    visited in ``order``, ``opts`` the preset's resolved options. Returns poses (N, K, 3) float32
    and scores (N,) float32."""
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
        rows, cols = munkres(cost)                   # one column per row, rows ascending
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


def munkres(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
