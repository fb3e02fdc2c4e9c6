"""AE decoding: hand cases, then THE PROOF on perfect outputs of the real COCO val layouts."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from posegroup.methods.ae.decode import COCO_JOINT_ORDER, default_joint_order, fill_missing, group, nms, top_candidates
from posegroup.methods.ae.fusion import flip_back, fuse
from posegroup.methods.common import subpixel_offsets
from posegroup.methods.ae.targets import gaussian_heatmaps, tag_maps
from posegroup.skeleton import COCO17, CROWDPOSE14


def _maps(people, size=(32, 32), tags=None, sigma=2.0):
    kp = np.asarray(people, dtype=np.float64)
    return gaussian_heatmaps(kp, size, sigma), tag_maps(kp, size, tags)


# ------------------------------------------------------------------------------ hand cases
def test_two_people_two_groups_exact_positions():
    a = [(5.3, 6.2, 2), (8.7, 9.1, 2), (6.1, 14.4, 2)]
    b = [(20.2, 7.7, 2), (24.6, 10.3, 2), (22.1, 18.9, 2)]
    hm, tg = _maps([a, b])
    poses, scores = group(hm, tg, subpixel="quadratic")
    # (6.0 is not a cell border, so the reference NMS gives one candidate per joint)
    assert poses.shape == (2, 3, 3) and scores.shape == (2,)
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order, :, :2], np.asarray([a, b])[:, :, :2], atol=1e-3)
    # step 7: person score = mean of its K joint scores = the peak cell values
    np.testing.assert_allclose(scores, poses[:, :, 2].mean(axis=1), rtol=1e-6)
    for p, person in zip(poses[order], (a, b)):
        for k, (x, y, _) in enumerate(person):
            assert p[k, 2] == pytest.approx(hm[k, int(y), int(x)])


def test_quarter_adjust_and_cell_centres():
    hm = np.zeros((1, 9, 9), np.float32)
    hm[0, 4, 4] = 1.0
    hm[0, 4, 5] = 0.5          # right neighbour larger -> x + 0.25
    hm[0, 3, 4] = 0.4          # upper neighbour larger -> y - 0.25
    tg = np.zeros((1, 9, 9, 1), np.float32)
    poses, _ = group(hm, tg, refine=False, preset="spec")
    np.testing.assert_allclose(poses[0, 0], [4 + 0.5 + 0.25, 4 + 0.5 - 0.25, 1.0])
    poses, _ = group(hm, tg, refine=False, adjust=False)
    np.testing.assert_allclose(poses[0, 0], [4.5, 4.5, 1.0])


def test_tag_threshold_just_below_and_above():
    hm = np.zeros((2, 16, 16), np.float32)
    hm[0, 4, 4] = 0.9          # joint 0 seeds a person with tag 0
    hm[1, 10, 10] = 0.8        # joint 1: its tag decides
    for tag, groups in ((0.99, 1), (1.01, 2)):
        tg = np.zeros((2, 16, 16, 1), np.float32)
        tg[1, 10, 10, 0] = tag
        poses, scores = group(hm, tg, joint_order=[0, 1], refine=False)
        assert len(poses) == groups, tag
    # distance is the L2 norm over D (SPEC); 'rms' divides by sqrt(D)
    tg = np.zeros((2, 16, 16, 2), np.float32)
    tg[1, 10, 10] = [0.9, 0.9]                      # l2 = 1.27, rms = 0.9
    assert len(group(hm, tg, refine=False)[0]) == 2
    assert len(group(hm, tg, refine=False, tag_metric="rms")[0]) == 1


def test_detection_threshold_and_top_k():
    hm = np.zeros((1, 16, 16), np.float32)
    hm[0, 2, 2], hm[0, 8, 8], hm[0, 12, 3] = 0.5, 0.1, 0.3     # 0.1 is not > 0.1
    tg = np.zeros((1, 16, 16, 1), np.float32)
    tg[0, 8, 8], tg[0, 12, 3] = 4.0, 8.0
    tg[0, 2, 2] = 0.0
    kk, yy, xx, vv = top_candidates(hm)
    np.testing.assert_array_equal(vv, np.float32([0.5, 0.3]))
    assert len(group(hm, tg, refine=False)[0]) == 2
    kk, yy, xx, vv = top_candidates(hm, top_k=1)
    assert (yy[0], xx[0]) == (2, 2)


def test_refine_adds_missing_joint():
    hm = np.zeros((2, 20, 20), np.float32)
    tg = np.zeros((2, 20, 20, 1), np.float32)
    hm[0, 5, 5] = 0.9                      # person tag 0, joint 0 detected
    hm[1, 12, 7] = 0.05                    # its joint 1, below the detection threshold
    hm[1, 15, 15] = 0.08                   # a stronger weak peak with a far tag
    tg[1] = 3.0                            # every joint-1 tag is far from the person's ...
    tg[1, 12, 7] = 0.0                     # ... except at its own weak peak
    poses, scores = group(hm, tg, refine=False, preset="spec")
    assert poses[0, 1, 2] == 0
    poses_r, scores_r = group(hm, tg, refine=True, adjust=False, preset="spec")
    np.testing.assert_allclose(poses_r[0, 1], [7.5, 12.5, 0.05], rtol=1e-6)
    np.testing.assert_allclose(scores_r, scores)            # person score is from before refine
    # the far-tag peak scores 0.08 - 3 < 0: never taken; removing the right one leaves nothing
    hm[1, 12, 7] = 0.0
    tg[1, 12, 7] = 3.0
    assert group(hm, tg, refine=True, preset="spec")[0][0, 1, 2] == 0
    # pose-ae-train's acceptance (heatmap value > 0 at the argmax) takes it anyway
    p = group(hm, tg, refine=True, adjust=False, refine_accept="heatmap", preset="spec")[0]
    np.testing.assert_allclose(p[0, 1], [15.5, 15.5, 0.08], rtol=1e-6)
    # the defaults ("near") do not: its tag is 3 away; a weak peak whose tag rounds to 1 (0.7
    # away) is taken, with the heatmap value as the joint's score
    assert group(hm, tg, adjust=False)[0][0, 1, 2] == 0
    tg[1, 15, 15] = 0.7
    np.testing.assert_allclose(group(hm, tg, adjust=False)[0][0, 1], [15.5, 15.5, 0.08], rtol=1e-6)
    assert group(hm, tg, adjust=False, preset="spec")[0][0, 1, 2] == 0          # 0.08 - 1 < 0


def test_refine_radius_keeps_the_search_near_the_person():
    """``refine_radius``: a missing joint is searched only within radius x the person's size
    (larger side of its detected joints' box, at least one cell) of their mean. Person: joints 0
    and 1 at (x, y) = (4.5, 4.5) and (8.5, 4.5) (mean (6.5, 4.5), size 4). Joint 2 has a strong
    peak far away, at (25.5, 25.5), and a weak one near, at (7.5, 7.5), both with the person's tag:
    the whole map takes the far one, radius 1 (reach 4 cells) the near one (3.2 from the mean),
    radius 0.5 (reach 2) neither."""
    hm = np.zeros((3, 32, 32), np.float32)
    tg = np.zeros((3, 32, 32, 1), np.float32)
    hm[0, 4, 4] = hm[1, 4, 8] = 0.9
    hm[2, 25, 25], hm[2, 7, 7] = 0.08, 0.05        # both under the detection threshold
    kw = dict(adjust=False, joint_order=[0, 1, 2])
    assert len(group(hm, tg, refine=False, **kw)[0]) == 1
    np.testing.assert_allclose(group(hm, tg, **kw)[0][0, 2], [25.5, 25.5, 0.08], rtol=1e-6)
    np.testing.assert_allclose(group(hm, tg, refine_radius=1.0, **kw)[0][0, 2], [7.5, 7.5, 0.05], rtol=1e-6)
    assert group(hm, tg, refine_radius=0.5, **kw)[0][0, 2, 2] == 0
    np.testing.assert_allclose(group(hm, tg, refine_radius=0.5, **kw)[0][0, :2],
                               group(hm, tg, refine=False, **kw)[0][0, :2])
    for bad in (0, -1.0, True, "far", float("inf")):
        with pytest.raises(ValueError, match="refine_radius"):
            group(hm, tg, refine_radius=bad)
    with pytest.raises(ValueError, match="refine_radius"):
        group(hm, tg, refine_radius=1.0, preset="reference")


def test_k14_crowdpose_and_joint_orders():
    rng = np.random.default_rng(1)
    people = np.concatenate([rng.uniform(2, 60, size=(3, 14, 2)), np.full((3, 14, 1), 2.0)], axis=2)
    hm, tg = _maps(people, (64, 64))
    assert default_joint_order(14) == tuple(range(14))
    order = default_joint_order(CROWDPOSE14)
    assert order[:2] == (12, 13) and sorted(order) == list(range(14))
    assert default_joint_order(COCO17) == COCO_JOINT_ORDER == default_joint_order(17)
    for jo in (None, CROWDPOSE14):
        poses, scores = group(hm, tg, joint_order=jo, subpixel="quadratic", nms_ties="first",
                              gated_matching=True)
        assert poses.shape[1:] == (14, 3)
        # every person recovered: each decoded person's joints sit on one true person
        assert len(poses) == 3
        for p in poses:
            n = np.argmin(np.abs(people[:, :, :2] - p[None, :, :2]).sum(axis=(1, 2)))
            found = p[:, 2] > 0
            assert found.sum() >= 12
            np.testing.assert_allclose(p[found, :2], people[n, found, :2], atol=0.05)


def test_gated_matching_avoids_tied_wrong_assignment():
    # joint 0: people with tags 0, 2, 4; joint 1: candidates with tags 2, 4, 6 (6 is a new person)
    hm = np.zeros((2, 30, 30), np.float32)
    tg = np.zeros((2, 30, 30, 1), np.float32)
    for i, (t0, t1) in enumerate(((0, 2), (2, 4), (4, 6))):
        hm[0, 5, 5 + 8 * i] = 0.9
        tg[0, 5, 5 + 8 * i] = t0
        hm[1, 20, 5 + 8 * i] = 0.9
        tg[1, 20, 5 + 8 * i] = t1
    poses, _ = group(hm, tg, refine=False, gated_matching=True)
    assert len(poses) == 4
    assert sorted((p[:, 2] > 0).sum() for p in poses) == [1, 1, 2, 2]


def test_nms_plateau_ties():
    hm = np.zeros((1, 10, 10), np.float32)
    hm[0, 4, 4] = hm[0, 4, 5] = 0.7        # a keypoint on a cell border: two equal cells
    hm[0, 3:6, 3] = 0.2
    assert (nms(hm) > 0).sum() == 2
    assert (nms(hm, ties="first") > 0).sum() == 1 and nms(hm, ties="first")[0, 4, 4] == 0.7
    assert len(top_candidates(hm)[0]) == 2 and len(top_candidates(hm, nms_ties="first")[0]) == 1


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("ties", ["keep", "first"])
def test_sparse_candidates_match_dense_nms(kernel, ties):
    rng = np.random.default_rng(kernel)
    hm = np.round(rng.random((5, 24, 20)), 1).astype(np.float32)   # many exact ties
    dense = nms(hm, kernel, ties)
    kk, yy, xx, vv = top_candidates(hm, top_k=10 ** 6, nms_kernel=kernel, detection_threshold=0.15,
                                    nms_ties=ties)
    ref = np.argwhere(dense > 0.15)
    assert sorted(zip(kk.tolist(), yy.tolist(), xx.tolist())) == sorted(map(tuple, ref.tolist()))
    # brute-force max-pool equality for the dense one
    pad = np.pad(hm, ((0, 0), (kernel // 2,) * 2, (kernel // 2,) * 2), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(pad, (kernel, kernel), axis=(1, 2)).max(axis=(-1, -2))
    if ties == "keep":
        np.testing.assert_array_equal(dense, np.where(hm == win, hm, 0))


def test_quadratic_subpixel_exact_on_gaussians_and_borders():
    rng = np.random.default_rng(2)
    pts = np.concatenate([rng.uniform(0, 16, size=(40, 1, 2)), np.full((40, 1, 1), 2.0)], axis=2)
    pts[:4, 0, :2] = [[0.1, 0.2], [15.9, 15.95], [0.3, 8.0], [8.0, 15.7]]    # border peaks
    for p in pts:
        hm = gaussian_heatmaps(p[None], (16, 16), 2.0)
        y, x = np.unravel_index(hm[0].argmax(), (16, 16))
        dx, dy = subpixel_offsets(hm, [0], [y], [x], "quadratic")
        np.testing.assert_allclose([x + 0.5 + dx[0], y + 0.5 + dy[0]], p[0, :2], atol=1e-3)
        qx, qy = subpixel_offsets(hm, [0], [y], [x], "quarter")
        assert abs(qx[0]) == 0.25 and abs(qy[0]) == 0.25


def test_flip_back_restores_maps():
    kp = np.array([[[5.2, 7.1, 2], [9.9, 7.3, 2], [3.3, 12.0, 2]]])
    flip_index = [0, 2, 1]                 # joints 1 and 2 are a left/right pair
    w = 24
    mirrored = kp.copy()
    mirrored[..., 0] = w - kp[..., 0]
    mirrored = mirrored[:, flip_index]     # the flipped image's joint 1 is the original's joint 2
    hm_f, tg_f = _maps(mirrored, (16, w), tags=[[3.0, -1.0]])
    hm, tg = flip_back(hm_f, tg_f, flip_index)
    hm0, tg0 = _maps(kp, (16, w), tags=[[3.0, -1.0]])
    np.testing.assert_allclose(hm, hm0, atol=1e-6)
    np.testing.assert_array_equal(tg[hm0 > 0], tg0[hm0 > 0])
    with pytest.raises(ValueError):
        flip_back(hm_f, tg_f, [0, 1])


def test_fuse_alignment_average_and_concatenation():
    # a linear ramp in continuous coordinates, sampled at two resolutions covering the same extent
    def ramp(h, w):
        x = (np.arange(w) + 0.5) / w
        return np.broadcast_to(x[None, None, :] * np.ones((2, h, 1)), (2, h, w)).astype(np.float32)
    hm64, hm32 = ramp(64, 64), ramp(32, 32)
    tg64 = np.ones((2, 64, 64, 1), np.float32)
    tg32 = 2 * np.ones((2, 32, 32, 2), np.float32)
    heat, tags = fuse([hm64, hm32], [tg64, tg32], (64, 64))
    assert heat.shape == (2, 64, 64) and tags.shape == (2, 64, 64, 3)
    # bilinear with half-pixel alignment reproduces a linear function away from the borders
    np.testing.assert_allclose(heat[:, :, 2:-2], hm64[:, :, 2:-2], atol=1e-5)
    np.testing.assert_array_equal(tags[..., 0], 1)
    np.testing.assert_array_equal(tags[..., 1:], 2)
    _, tags_ref = fuse([hm64, hm32], [tg64, tg32], (64, 64), tag_indices=[0])
    assert tags_ref.shape == (2, 64, 64, 1)
    with pytest.raises(ValueError):
        fuse([hm64], [], (64, 64))


def test_fill_missing_by_hand():
    poses = np.array([[[2, 4, 0.5], [0, 0, 0], [4, 8, 0.7]], [[0, 0, 0]] * 3], np.float32)
    out = fill_missing(poses)
    np.testing.assert_allclose(out[0], [[2, 4, 0.5], [3, 6, 0], [4, 8, 0.7]])
    np.testing.assert_array_equal(out[1], poses[1])
    assert poses[0, 1, 0] == 0                         # input untouched


def test_bad_input_raises():
    hm = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ValueError):
        group(hm, np.zeros((3, 8, 7, 1)))
    with pytest.raises(ValueError):
        group(hm[0], np.zeros((8, 8)))
    with pytest.raises(ValueError):
        group(hm, np.zeros((3, 8, 8)), joint_order=[0, 1, 1])
    with pytest.raises(ValueError):
        group(hm, np.zeros((3, 8, 8)), nms_kernel=2)
    with pytest.raises(ValueError):
        group(hm, np.zeros((3, 8, 8)), subpixel="cubic")
    poses, scores = group(hm, np.zeros((3, 8, 8)))
    assert poses.shape == (0, 3, 3) and scores.shape == (0,)


# ------------------------------------------------------------------------------ THE PROOF
BEST = dict(subpixel="quadratic", nms_ties="first", gated_matching=True)
FIGURES: dict = {}


@pytest.fixture(scope="module")
def perfect(coco_val_gt):
    from posegroup.methods.ae.bench import ae_perfect_outputs

    return ae_perfect_outputs(coco_val_gt, resolution=128, sigma=2.0)


@pytest.fixture(scope="module")
def coco_gt(coco_val_gt):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco_val_gt))


def _ap(coco_gt, outputs, **kw):
    """Decode ``outputs`` with ``group`` and score with pycocotools COCOeval."""
    from pycocotools.cocoeval import COCOeval

    from posegroup.methods.ae.bench import ae_coco_results

    results = ae_coco_results(outputs, **kw)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "keypoints")
        ev.params.imgIds = [o["image_id"] for o in outputs]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_perfect_outputs_subset_fast(perfect, coco_gt):
    sub = perfect[:100]
    ap = _ap(coco_gt, sub, **BEST)
    print(f"\nperfect outputs, 100 images: AP {ap:.4f} (quadratic sub-pixel)")
    assert ap >= 0.99


def test_perfect_outputs_all_511(perfect, coco_gt):
    assert len(perfect) == 511
    ap_best = _ap(coco_gt, perfect, preset="spec", **BEST)
    ap_quarter = _ap(coco_gt, perfect, preset="spec", **{**BEST, "subpixel": "quarter"})
    ap_no_refine = _ap(coco_gt, perfect, preset="spec", **BEST, refine=False)
    ap_spec = _ap(coco_gt, perfect, preset="spec")               # SPEC as written
    ap_default = _ap(coco_gt, perfect)
    ap_reference = _ap(coco_gt, perfect, preset="reference")
    FIGURES.update(best=ap_best, quarter=ap_quarter, no_refine=ap_no_refine, spec=ap_spec,
                   default=ap_default, reference=ap_reference)
    print(f"\nperfect outputs, 511 images, COCO AP: defaults {ap_default:.4f}, reference preset "
          f"{ap_reference:.4f}, spec {ap_spec:.4f}; spec + quadratic/first/gated {ap_best:.4f} "
          f"(quarter adjust {ap_quarter:.4f}, without refine {ap_no_refine:.4f})")
    assert ap_best >= 0.99 and ap_default >= 0.99
    assert 0.97 <= ap_quarter < ap_best       # the quarter-pixel rule loses localisation
    assert ap_spec >= 0.9 and ap_reference < ap_default


def _noise_aps(coco_gt, outputs, stds=(0.1, 0.3, 0.5)):
    """Per-cell tag noise, the SPEC preset with BEST (the earlier figures)."""
    rng = np.random.default_rng(0)
    aps = [_ap(coco_gt, outputs, preset="spec", **BEST)]
    for std in stds:
        noisy = [{**o, "tags": o["tags"] + rng.normal(0, std, o["tags"].shape).astype(np.float32)}
                 for o in outputs]
        aps.append(_ap(coco_gt, noisy, preset="spec", **BEST))
    print(f"\ntag noise std (ids 2 apart) -> AP, {len(outputs)} images: " + ", ".join(
        f"{s}: {a:.4f}" for s, a in zip((0.0,) + tuple(stds), aps)))
    assert aps[1] >= 0.98                      # small noise: still nearly perfect
    for a, b in zip(aps, aps[1:]):
        assert b <= a + 0.005                  # monotone up to noise
    assert aps[-1] < aps[0]                    # and it does degrade
    return aps


def test_tag_noise_degrades_gracefully_subset(perfect, coco_gt):
    aps = _noise_aps(coco_gt, perfect[:150])   # measured: 0.9969, 0.9969, 0.9929, 0.9422
    assert aps[-1] >= 0.85


@pytest.mark.slow
def test_tag_noise_degrades_gracefully_all_511(perfect, coco_gt):
    aps = _noise_aps(coco_gt, perfect)
    assert aps[-1] >= 0.9


def test_hough_vote_splats_each_cell_at_its_offset_by_hand():
    """One cell (row 1, column 1; centre (1.5, 1.5) cells) of probability 0.8 with offset
    (+0.25, 0) votes at (1.75, 1.5) cells = (3.5, 3.0) fine cells at n = 2; fine cell centres sit
    at c + 0.5, so the vote is column 3 exactly and half-way between rows 2 and 3: 0.4 each. Every
    other cell has probability 0. Tags: each fine cell keeps its cell's."""
    from posegroup.methods.ae.decode import hough_vote
    heat = np.zeros((1, 3, 4), np.float32)
    heat[0, 1, 1] = 0.8
    offsets = np.zeros((1, 2, 3, 4), np.float32)
    offsets[0, 0] = 0.25
    tags = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    votes, fine_tags = hough_vote(heat, tags, offsets, factor=2, blur=0.0)
    assert votes.shape == (1, 6, 8) and fine_tags.shape == (1, 6, 8, 1)
    expected = np.zeros((1, 6, 8))
    expected[0, 2, 3] = expected[0, 3, 3] = 0.4
    np.testing.assert_allclose(votes, expected, atol=1e-6)
    assert fine_tags[0, 3, 3, 0] == tags[0, 1, 1, 0] and fine_tags[0, 5, 7, 0] == tags[0, 2, 3, 0]
    blurred, _ = hough_vote(heat, tags, offsets, factor=2, blur=1.0)
    assert abs(blurred.sum() - 0.8) < 0.05 and blurred.max() < 0.4     # smoothing spreads the same mass
