import math

import numpy as np
import pytest

from posegroup.methods.personlab.decode import (bilinear_sample, decode_poses, expected_oks, find_peaks,
                                                hough_scores, instance_scores, refine_mid_offsets)
from posegroup.methods.personlab.targets import encode
from posegroup.skeleton import COCO17, CROWDPOSE14

# a standing person (COCO-17), ~170 px tall
BASE = np.array([[0, 0], [-5, -5], [5, -5], [-10, -3], [10, -3], [-20, 20], [20, 20], [-25, 50], [25, 50],
                 [-27, 80], [27, 80], [-15, 90], [15, 90], [-15, 130], [15, 130], [-15, 170], [15, 170]], float)


def _people(offsets, base=BASE):
    kp = np.zeros((len(offsets), base.shape[0], 3), np.float32)
    for n, off in enumerate(offsets):
        kp[n, :, :2] = base + np.asarray(off, float)
        kp[n, :, 2] = 2
    return kp


def _perfect(kp, size, stride=4, kset=COCO17, **kw):
    t = encode(kp, None, None, size, stride, edges=kset.directed_edges, grid_offset=stride / 2, **kw)
    return t["heatmaps"], t["short_offsets"], t["mid_offsets"]


def _decode(maps, stride=4, kset=COCO17, **kw):
    return decode_poses(*maps, edges=kset.directed_edges, output_stride=stride, grid_offset=stride / 2,
                        sigmas=kset.sigmas, **kw)


def test_bilinear_sample_hand_values():
    field = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)  # channel c: c*6 + 3*i + j
    # cell (i, j) at (4 j + 2, 4 i + 2); (4, 4) is u = 0.5, v = 0.5
    v = bilinear_sample(field, 1, 4.0, 4.0, stride=4, grid_offset=2)
    assert v == pytest.approx(6 + (0 + 1 + 3 + 4) / 4)
    # clamped outside the grid
    assert bilinear_sample(field, 0, -100.0, -100.0, stride=4, grid_offset=2) == 0
    vec = np.stack([field, -field], -1)
    out = bilinear_sample(vec, np.array([0, 1]), np.array([2.0, 10.0]), np.array([2.0, 6.0]), stride=4,
                          grid_offset=2)
    np.testing.assert_allclose(out, [[0, 0], [11, -11]])


def test_hough_single_vote_mass_and_position():
    heat = np.zeros((1, 4, 4), np.float32)
    heat[0, 1, 1] = 1.0
    short = np.zeros((1, 4, 4, 2), np.float32)
    short[0, 1, 1] = (3.0, 1.0)  # cell (1, 1) at (6, 6) votes for (9, 7)
    h = hough_scores(heat, short, output_stride=4, grid_offset=2, radius=2.0)
    assert h.shape == (1, 16, 16)
    # weight stride^2 / (pi R^2) = 16 / (4 pi), split bilinearly around (9, 7): cell centres x.5
    assert h.sum() == pytest.approx(16 / (4 * math.pi), rel=1e-5)
    assert h[0, 6, 8] == pytest.approx(16 / (4 * math.pi) * 0.25, rel=1e-5)
    k, x, y, s = find_peaks(h, peak_threshold=0.0, blur_sigma=0.0)
    assert len(k) >= 1 and abs(x[0] - 9) <= 0.5 and abs(y[0] - 7) <= 0.5


def test_single_person_exact():
    kp = _people([(100, 40)])
    poses, scores = _decode(_perfect(kp, (64, 64)))
    assert poses.shape == (1, 17, 3)
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)
    assert scores[0] > 0.95 and poses[0, :, 2].min() > 0.9


@pytest.mark.parametrize("mid_refine", ["field", "point"])
def test_two_people_close_together(mid_refine):
    kp = _people([(100, 40), (160, 60)])
    poses, scores = _decode(_perfect(kp, (64, 80)), mid_refine=mid_refine)
    assert poses.shape[0] == 2
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=1e-3)


def test_nms_radius():
    # two people 12 px apart: found with r = 10 (paper); with r = 20 the second is suppressed
    kp = _people([(100, 40), (112, 40)])
    maps = _perfect(kp, (64, 64))
    poses, _ = _decode(maps)
    assert poses.shape[0] == 2
    np.testing.assert_allclose(np.sort(poses[..., 0], axis=0), kp[..., 0], atol=1e-3)
    poses, _ = _decode(maps, nms_radius=20.0)
    assert poses.shape[0] == 1


def test_crowdpose_tree_k14():
    base = np.array([[-20, 20], [20, 20], [-25, 50], [25, 50], [-27, 80], [27, 80], [-15, 90], [15, 90],
                     [-15, 130], [15, 130], [-15, 170], [15, 170], [0, -10], [0, 10]], float)
    kp = _people([(80, 30), (200, 50)], base=base)
    poses, scores = _decode(_perfect(kp, (64, 80), kset=CROWDPOSE14), kset=CROWDPOSE14)
    assert poses.shape == (2, 14, 3)
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=1e-3)


def test_one_direction_edges_follow_from_the_root_only():
    # chain 0 -> 1 -> 2 with forward mid offsets only; a seed at 0 reaches everyone.
    base = np.array([[0, 0], [10, 40], [0, 80]], float)
    kp = _people([(60, 20)], base=base)
    edges = [(0, 1), (1, 2)]
    t = encode(kp, None, None, (32, 32), 4, edges=edges, grid_offset=2)
    heat = t["heatmaps"].copy()
    heat[1:] *= 0.5  # keypoint 0 is the best seed
    poses, _ = decode_poses(heat, t["short_offsets"], t["mid_offsets"], edges=edges, output_stride=4,
                            grid_offset=2, nms_radius=10.0)
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)
    # with the backward list only ((1, 0), (2, 1)), a seed at 0 cannot reach 1 and 2: scored 0,
    # and 1, 2 then seed their own partial people
    t2 = encode(kp, None, None, (32, 32), 4, edges=[(1, 0), (2, 1)], grid_offset=2)
    poses, scores = decode_poses(heat, t2["short_offsets"], t2["mid_offsets"], edges=[(1, 0), (2, 1)],
                                 output_stride=4, grid_offset=2)
    assert len(poses) in (2, 3)  # seeded at 0 (alone), at 2 (reaches all), maybe at 1 (reaches 0)
    alone = [p for p in poses if p[1, 2] == 0 and p[2, 2] == 0]
    assert len(alone) == 1 and np.allclose(alone[0][0, :2], kp[0, 0, :2], atol=1e-3)
    complete = [p for p in poses if p[:, 2].min() > 0]
    assert len(complete) == 1 and np.allclose(complete[0][:, :2], kp[0, :, :2], atol=1e-3)


def test_expected_oks_hand_value():
    hough = np.zeros((1, 40, 40), np.float32)
    hough[0, 20, 23] = 2.0  # all mass at (23.5, 20.5)
    y = np.array([[[20.5, 20.5]]])
    lam2 = 10.0 * 10.0  # box area of a single point is 0 -> floored at 1; use two keypoints instead
    s = expected_oks(np.array([[[20.5, 20.5], [30.5, 30.5]]]), np.concatenate([hough, hough]),
                     np.array([[0.8, 1.0]]), np.array([0.1, 0.1]), radius=8.0)
    d2 = 3.0 ** 2
    assert s[0, 0] == pytest.approx(0.8 * math.exp(-d2 / (2 * lam2 * 0.01)), rel=1e-6)
    # keypoint 1 at (30.5, 30.5): the mass at (23.5, 20.5) is outside its disk of radius 8 -> 0
    assert s[0, 1] == 0
    assert y.shape == (1, 1, 2)


def test_instance_scores_claimed_keypoints():
    xy = np.array([[[0, 0], [50, 0]], [[3, 0], [90, 0]]], float)
    ks = np.array([[1.0, 1.0], [0.8, 0.6]])
    s = instance_scores(xy, ks, nms_radius=10.0)
    # person 1's keypoint 0 is within r of person 0's (higher): only 0.6 counts
    np.testing.assert_allclose(s, [1.0, 0.3])


def test_refine_mid_offsets_snaps_to_short():
    short = np.zeros((2, 4, 4, 2))
    short[1, :, :] = (1.0, -2.0)  # everywhere points 1 px right, 2 up
    mid = np.zeros((1, 4, 4, 2))
    mid[0, ..., 0] = 4.0
    out = refine_mid_offsets(mid, short, [(0, 1)], output_stride=4, grid_offset=2, steps=2)
    np.testing.assert_allclose(out[0, 0, 0], [6.0, -4.0])


def test_bad_shapes():
    with pytest.raises(ValueError, match="mid_offsets"):
        decode_poses(np.zeros((3, 4, 4)), np.zeros((3, 4, 4, 2)), np.zeros((3, 4, 4, 2)), edges=[(0, 1)],
                     output_stride=4)
    with pytest.raises(ValueError, match="edge"):
        decode_poses(np.zeros((3, 4, 4)), np.zeros((3, 4, 4, 2)), np.zeros((1, 4, 4, 2)), edges=[(0, 7)],
                     output_stride=4)


def test_empty_maps():
    poses, scores = decode_poses(np.zeros((17, 8, 8)), np.zeros((17, 8, 8, 2)), np.zeros((32, 8, 8, 2)),
                                 edges=COCO17.directed_edges, output_stride=4, grid_offset=2)
    assert poses.shape == (0, 17, 3) and scores.shape == (0,)
