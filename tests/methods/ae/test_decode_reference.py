"""``group(..., preset="reference")`` against pose-ae-train's test-time behaviour, on hand-made
cases where the SPEC preset and the defaults decode differently. Every expected value below is
worked out by hand from the reference's rules (utils/group.py, test.py), not by our code."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from posegroup.methods.ae.decode import group
from posegroup.methods.ae.reference_decode import munkres


def _blank(k, size=20, d=1):
    return np.zeros((k, size, size), np.float32), np.zeros((k, size, size, d), np.float32)


def test_refine_accepts_any_positive_heatmap_with_score_one_and_its_row_clamp():
    hm, tg = _blank(2)
    hm[0, 5, 5] = 0.9                     # person: joint 0 at cell (row 5, col 5), tag 0
    hm[0, 5, 6] = 0.5                     # right > left -> x = 5.5 + 0.25
    hm[0, 4, 5] = 0.3                     # up > down    -> y = 5.5 - 0.25
    tg[1] = 3.0                           # joint 1: only a weak peak (below 0.1), tags far away
    hm[1, 15, 12] = 0.05                  # argmax of hm - round(3) -> (15, 12); hm 0.05 > 0: taken
    hm[1, 15, 13] = 0.02                  # right > left -> x = 12.5 + 0.25
    hm[1, 16, 12] = 0.04                  # the real row below is larger than the row above ...
    hm[1, 14, 12] = 0.01                  # ... but test.py compares row min(15 + 1, K - 1) = 1
    poses, scores = group(hm, tg, preset="reference", joint_order=[0, 1])
    np.testing.assert_allclose(poses, [[[5.75, 5.25, 0.9], [12.75, 15.25, 1.0]]], rtol=1e-6)
    np.testing.assert_allclose(scores, [0.45], rtol=1e-6)          # from before refine
    # today's other presets differ: SPEC and the defaults refuse the far tag; with a near tag
    # the defaults take the joint with its honest score
    assert group(hm, tg, preset="spec", joint_order=[0, 1])[0][0, 1, 2] == 0
    assert group(hm, tg, joint_order=[0, 1])[0][0, 1, 2] == 0
    tg[1, 15, 12] = 0.6
    assert group(hm, tg, joint_order=[0, 1])[0][0, 1, 2] == pytest.approx(0.05)


def test_people_dict_keyed_by_tag_merges_equal_tags():
    hm, tg = _blank(2)
    hm[0, 5, 5], tg[0, 5, 5] = 0.9, 1.0
    hm[0, 5, 15], tg[0, 5, 15] = 0.7, 1.0     # same key 1.0: written into the first person
    hm[1, 12, 10], tg[1, 12, 10] = 0.8, 1.2   # matched to that person (|1.2 - 1.0| < 1)
    poses, scores = group(hm, tg, preset="reference", refine=False, joint_order=[0, 1])
    # neighbours all 0: the reference's ties go -0.25 on both axes
    np.testing.assert_allclose(poses, [[[15.25, 5.25, 0.7], [10.25, 12.25, 0.8]]], rtol=1e-6)
    np.testing.assert_allclose(scores, [0.75], rtol=1e-6)
    assert len(group(hm, tg, preset="spec", refine=False)[0]) == 2


def test_joint_types_skipped_once_max_people_exist():
    hm, tg = _blank(2)
    for col, t in ((4, 0.0), (14, 2.0)):
        hm[0, 5, col], tg[0, 5, col] = 0.9, t
        hm[1, 12, col], tg[1, 12, col] = 0.8, t
    poses, _ = group(hm, tg, preset="reference", refine=False, max_people=2, joint_order=[0, 1])
    assert poses.shape == (2, 2, 3) and (poses[:, 1, 2] == 0).all()     # "ignore_too_much"
    poses, _ = group(hm, tg, preset="spec", refine=False, max_people=2, joint_order=[0, 1])
    assert (poses[:, 1, 2] > 0).all()


def test_heatmap_clipped_at_one():
    hm, tg = _blank(1, 9)
    hm[0, 4, 4], hm[0, 4, 5], hm[0, 5, 4] = 1.5, 0.9, 0.8
    poses, scores = group(hm, tg, preset="reference")
    np.testing.assert_allclose(poses, [[[4.75, 4.75, 1.0]]], rtol=1e-6)
    np.testing.assert_allclose(scores, [1.0])
    assert group(hm, tg, preset="spec")[1][0] == pytest.approx(1.5)


def test_munkres_choice_among_equal_cost_assignments():
    # three people with 2-D tags (0, 0), (2, 0), (1, 1); joint 1 candidates: tag (1, 0), score
    # 0.9, RMS distance 0.707 to all three (round 1, accepted), and tag (0.1, 0), score 0.5,
    # round 0 to the first person only. Cost [[99.1, 99.1, 99.1], [-0.5, 99.5, 99.5]]: both
    # (0->1, 1->0) and (0->2, 1->0) are optimal; munkres' scan (worked by hand: stars (0,0);
    # primes (0,2), covers row 0; primes (1,0); path (1,0)-(0,0)-(0,2)) picks 0->2.
    hm, tg = _blank(2, 40, d=2)
    for col, (t, v) in enumerate((((0, 0), 0.9), ((2, 0), 0.8), ((1, 1), 0.7))):
        hm[0, 5, 5 + 12 * col], tg[0, 5, 5 + 12 * col] = v, t
    hm[1, 30, 10], tg[1, 30, 10] = 0.9, (1.0, 0.0)
    hm[1, 30, 30], tg[1, 30, 30] = 0.5, (0.1, 0.0)
    poses, _ = group(hm, tg, preset="reference", refine=False, joint_order=[0, 1])
    assert poses.shape == (3, 2, 3)
    np.testing.assert_allclose(poses[:, 1, 2], [0.5, 0.0, 0.9], rtol=1e-6)
    rows, cols = munkres(np.array([[99.1, 99.1, 99.1], [-0.5, 99.5, 99.5]]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [2, 0]
    # the SPEC preset's L2 distance is 1.0 for the first candidate: it starts a 4th person
    spec = group(hm, tg, preset="spec", refine=False, joint_order=[0, 1])[0]
    assert len(spec) == 4 and spec[:3, 1, 2].tolist() == pytest.approx([0.5, 0.0, 0.0])


def test_munkres_is_a_minimum_cost_assignment():
    rng = np.random.default_rng(0)
    for _ in range(300):
        r = int(rng.integers(1, 6))
        c = int(rng.integers(r, 7))
        cost = np.round(rng.uniform(0, 3, (r, c))) * 100 - rng.choice([0.5, 0.9], (r, 1))
        rows, cols = munkres(cost)
        assert rows.tolist() == list(range(r)) and len(set(cols.tolist())) == r
        best = min(sum(cost[i, p[i]] for i in range(r)) for p in itertools.permutations(range(c), r))
        assert cost[rows, cols].sum() == pytest.approx(best)


def test_reference_preset_fixes_its_options():
    hm, tg = _blank(1)
    with pytest.raises(ValueError, match="subpixel"):
        group(hm, tg, preset="reference", subpixel="quadratic")
    with pytest.raises(ValueError, match="preset"):
        group(hm, tg, preset="fastest")
    group(hm, tg, preset="reference", subpixel="quarter", detection_threshold=0.2)   # allowed
