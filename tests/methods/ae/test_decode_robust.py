"""``group`` on broken or extreme maps: never a crash, a hang or a NaN score; an
out-of-range knob is a ValueError naming it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from posegroup.methods.ae.decode import PRESETS, group


def _thousand_peaks(k=17, size=128, seed=0):
    rng = np.random.default_rng(seed)
    hm = np.zeros((k, size, size), np.float32)
    for j in range(k):                       # 1000 isolated cells per map, random heights and tags
        hm[j].flat[rng.choice(size * size, 1000, replace=False)] = rng.uniform(0.2, 1.0, 1000)
    return hm, rng.normal(0.0, 3.0, (k, size, size, 1)).astype(np.float32)


def _cases():
    rng = np.random.default_rng(1)
    z = np.zeros((17, 64, 64), np.float32)
    noisy = rng.random((17, 64, 64)).astype(np.float32)
    yield "empty K", np.zeros((0, 8, 8), np.float32), np.zeros((0, 8, 8), np.float32)
    yield "empty H W", np.zeros((17, 0, 0), np.float32), np.zeros((17, 0, 0), np.float32)
    yield "all zero", z, z
    yield "NaN", np.full_like(z, np.nan), np.full_like(z, np.nan)
    yield "+inf", np.full_like(z, np.inf), np.full_like(z, np.inf)
    yield "-inf", np.full_like(z, -np.inf), rng.normal(size=z.shape).astype(np.float32)
    yield "mixed", np.where(rng.random(z.shape) < 0.3, np.nan, noisy), np.where(
        rng.random(z.shape) < 0.3, np.inf, rng.normal(size=z.shape)).astype(np.float32)
    yield "1000 peaks", *_thousand_peaks()


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_no_crash_no_hang_no_nan(case, preset):
    _, hm, tg = case
    t0 = time.perf_counter()
    poses, scores = group(hm, tg, preset=preset)
    assert time.perf_counter() - t0 < 30.0                 # a hang guard, not a speed target
    k = hm.shape[0]
    assert poses.shape[1:] == (k, 3) and scores.shape == (poses.shape[0],)
    assert np.isfinite(scores).all() and np.isfinite(poses).all()
    if case[0] in ("all zero", "NaN", "-inf", "empty K", "empty H W"):
        assert len(poses) == 0                              # nothing to detect
    if case[0] == "1000 peaks":
        assert len(poses) >= 30                             # the top 30 of each map are used
    found = poses[..., 2] > 0
    h, w = hm.shape[1:]
    assert (poses[..., 0][found] >= 0).all() and (poses[..., 0][found] <= w).all()
    assert (poses[..., 1][found] >= 0).all() and (poses[..., 1][found] <= h).all()


@pytest.mark.parametrize("knob,value", [
    ("nms_kernel", 0), ("nms_kernel", 4), ("nms_kernel", 10001), ("nms_kernel", 3.5),
    ("top_k", 0), ("max_people", 0), ("top_k", 10 ** 9), ("tag_threshold", 0.0), ("tag_threshold", -1.0),
    ("detection_threshold", float("nan")), ("detection_threshold", float("inf")), ("subpixel", "cubic"),
    ("tag_metric", "l1"), ("refine_accept", "always"), ("nms_ties", "last"), ("person_score", "max"),
    ("match_cost", "exact"),
])
def test_out_of_range_knob_is_a_value_error_naming_it(knob, value):
    hm = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(ValueError, match=knob):
        group(hm, np.zeros((3, 16, 16)), **{knob: value})


def test_unknown_preset_and_bad_shapes():
    hm = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="preset"):
        group(hm, hm, preset="fast")
    with pytest.raises(ValueError, match="tags"):
        group(hm, np.zeros((3, 16, 15)))
    with pytest.raises(ValueError, match="heatmaps"):
        group(hm[0], hm[0])
