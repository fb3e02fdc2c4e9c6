"""``decode_poses`` on broken or extreme maps: never a crash, a hang or a NaN
score; an out-of-range knob is a ValueError naming it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from posegroup.methods.personlab.decode import PAPER_HOUGH, decode_poses
from posegroup.skeleton import COCO17

EDGES = COCO17.directed_edges


def _maps(k=17, h=33, w=33, fill=0.0, seed=0):
    rng = np.random.default_rng(seed)
    heat = np.full((k, h, w), fill, np.float32)
    short = rng.normal(0, 4, (k, h, w, 2)).astype(np.float32)
    mid = rng.normal(0, 20, (len(EDGES), h, w, 2)).astype(np.float32)
    return heat, short, mid


def _cases():
    rng = np.random.default_rng(2)
    yield "empty grid", *_maps(h=0, w=0)
    yield "all zero", *_maps()
    heat, short, mid = _maps()
    yield "NaN", np.full_like(heat, np.nan), np.full_like(short, np.nan), np.full_like(mid, np.nan)
    yield "+inf", np.full_like(heat, np.inf), np.full_like(short, np.inf), np.full_like(mid, -np.inf)
    mixed = np.where(rng.random(heat.shape) < 0.3, np.nan, rng.random(heat.shape)).astype(np.float32)
    yield "mixed", mixed, np.where(rng.random(short.shape) < 0.1, np.inf, short), mid
    heat, short, mid = _maps(h=65, w=65)
    for j in range(17):                                     # 1000 isolated peaks per map
        heat[j].flat[rng.choice(65 * 65, 1000, replace=False)] = rng.uniform(0.5, 1.0, 1000)
    yield "1000 peaks", heat, np.zeros_like(short), mid


def _params():
    for case in _cases():
        for name, hough in (("default", {}), ("paper", PAPER_HOUGH)):
            slow = case[0] == "1000 peaks" and name == "paper"      # ~25 s on the earlier path
            yield pytest.param(case, hough, id=f"{case[0]}-{name}", marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case,hough", list(_params()))
def test_no_crash_no_hang_no_nan(case, hough):
    name, heat, short, mid = case
    kw = dict(output_stride=8, peak_threshold=1e-4) if name == "1000 peaks" else dict(output_stride=16)
    t0 = time.perf_counter()
    poses, scores = decode_poses(heat, short, mid, edges=EDGES, sigmas=COCO17.sigmas, **kw, **hough)
    assert time.perf_counter() - t0 < 120.0                 # a hang guard, not a speed target
    assert poses.shape[1:] == (17, 3) and scores.shape == (poses.shape[0],)
    assert np.isfinite(scores).all() and np.isfinite(poses).all()
    assert (np.diff(scores) <= 1e-6).all()
    if name in ("empty grid", "all zero", "NaN"):
        assert len(poses) == 0
    if name == "1000 peaks":
        assert len(poses) >= 100


@pytest.mark.parametrize("knob,value", [
    ("radius", 0), ("radius", -3.0), ("output_stride", 0), ("output_stride", float("nan")), ("hough_stride", 0),
    ("hough_stride", 1e-4), ("blur_sigma", -1.0), ("peak_threshold", -0.1), ("peak_threshold", float("inf")),
    ("nms_radius", -1), ("mid_refine_steps", 1.5), ("mid_refine_steps", 100), ("max_people", 0),
    ("vote_threshold", 1.0), ("vote_threshold", -0.5), ("snap_radius", -2.0), ("score_threshold", float("nan")),
    ("mid_refine", "twice"), ("oks_mass", "cells"), ("offset_sampling", "cubic"),
])
def test_out_of_range_knob_is_a_value_error_naming_it(knob, value):
    heat, short, mid = _maps(h=9, w=9)
    kw = dict(edges=EDGES, output_stride=16, sigmas=COCO17.sigmas)
    kw[knob] = value
    with pytest.raises(ValueError, match=knob):
        decode_poses(heat, short, mid, **kw)


def test_bad_shapes_and_sigmas():
    heat, short, mid = _maps(h=9, w=9)
    with pytest.raises(ValueError, match="short_offsets"):
        decode_poses(heat, short[:, :8], mid, edges=EDGES, output_stride=16)
    with pytest.raises(ValueError, match="mid_offsets"):
        decode_poses(heat, short, mid[:3], edges=EDGES, output_stride=16)
    with pytest.raises(ValueError, match="sigmas"):
        decode_poses(heat, short, mid, edges=EDGES, output_stride=16, sigmas=[0.05] * 3)
    with pytest.raises(ValueError, match="heatmaps"):
        decode_poses(heat[0], short, mid, edges=EDGES, output_stride=16)
