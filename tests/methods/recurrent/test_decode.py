"""Recurrent decoding: the stop rule, argmax + threshold, and THE PROOF that targets and decode
are each other's inverse on the real COCO val layouts (perfect outputs -> COCO AP ~ 1)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from posegroup.methods.recurrent.decode import STOP_THRESHOLD, decode_people, num_people
from posegroup.methods.recurrent.targets import person_heatmaps


def test_omega_is_sigmoid_minus_one():
    assert STOP_THRESHOLD == pytest.approx(1 / (1 + math.exp(1)))


def test_stops_at_the_first_probability_below_omega():
    heat = np.zeros((5, 2, 6, 6), np.float32)
    for t in range(5):
        heat[t, :, t, t] = 0.5
    w = STOP_THRESHOLD
    # step 3 falls just below omega; step 4 is confident again but comes after the stop
    poses, scores = decode_people(heat, [0.9, 0.8, w - 1e-3, 0.9, 0.1], subpixel="none")
    assert poses.shape == (2, 2, 3) and scores.shape == (2,)
    assert num_people([0.9, w, 0.2]) == 2          # p == omega is not a stop
    assert num_people([0.9, 0.8]) == 2             # never stops: every step
    assert num_people([0.1, 0.9]) == 0
    assert decode_people(heat, [0.1] * 5)[0].shape == (0, 2, 3)


def test_argmax_cell_centre_and_joint_threshold():
    heat = np.zeros((1, 3, 8, 10), np.float32)
    heat[0, 0, 2, 7] = 0.6
    heat[0, 1, 5, 1] = 0.014            # below tau = 0.015: dropped (score 0)
    heat[0, 2, 0, 0] = 0.015            # at tau: kept
    poses, scores = decode_people(heat, [0.9], subpixel="none")
    np.testing.assert_allclose(poses[0, 0], [7.5, 2.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(poses[0, 1], [1.5, 5.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(poses[0, 2], [0.5, 0.5, 0.015], rtol=1e-6)
    assert scores[0] == pytest.approx((0.6 + 0.0 + 0.015) / 3, rel=1e-6)
    _, s_stop = decode_people(heat, [0.9], person_score="stop")
    _, s_prod = decode_people(heat, [0.9], person_score="product")
    assert s_stop[0] == pytest.approx(0.9) and s_prod[0] == pytest.approx(0.9 * scores[0], rel=1e-6)


def test_quadratic_subpixel_recovers_gaussian_centre():
    kp = np.array([[[4.3, 5.8, 2], [10.6, 3.2, 2]]])
    heat, z = person_heatmaps(kp, (12, 14), sigma=2.0, max_people=1)
    poses, _ = decode_people(heat, [0.9], subpixel="quadratic")
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)


def test_dark_subpixel_recovers_centres_and_takes_its_blur():
    """``subpixel="dark"`` on the method's own Gaussian targets (interior joints) puts each joint on
    its true place (the bound of ``test_dark_subpixel_exact_on_gaussians_and_per_map``); on ragged
    maps each ``blur`` gives common.subpixel_offsets' placement with that blur."""
    from posegroup.methods.common import subpixel_offsets
    kp = np.array([[[14.3, 15.8, 2], [18.6, 13.2, 2]]])
    heat, _ = person_heatmaps(kp, (32, 32), sigma=2.0, max_people=1)
    poses, _ = decode_people(heat, [0.9], subpixel="dark")
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)
    ragged = heat * np.random.default_rng(0).uniform(0.7, 1.3, size=heat.shape)
    y, x = np.unravel_index(ragged[0].reshape(2, -1).argmax(1), (32, 32))
    placed = []
    for blur in (0.5, 2.0):
        poses, _ = decode_people(ragged, [0.9], subpixel="dark", blur=blur)
        dx, dy = subpixel_offsets(ragged[0], np.arange(2), y, x, "dark", blur=blur)
        np.testing.assert_allclose(poses[0, :, :2], np.stack([x + 0.5 + dx, y + 0.5 + dy], 1), atol=1e-5)
        placed.append(poses[0, :, :2])
    assert np.abs(placed[0] - placed[1]).max() > 0.01


def test_the_method_smooths_by_subpixel_blur_times_sigma():
    """``subpixel_blur`` counts in the targets' sigma (the best smoothing measured was half of it
    at sigma 1 and 2): sigma 2 at 0.5 and sigma 1 at 1.0 both smooth by 1 cell, sigma 1 at 0.5
    by half a cell."""
    from posegroup.methods import build_method
    from posegroup.methods.recurrent import RecurrentOutputs
    from posegroup.skeleton import COCO17
    kp = np.concatenate([np.random.default_rng(3).uniform(10, 22, (1, 17, 2)), np.full((1, 17, 1), 2.0)], 2)
    heat, _ = person_heatmaps(kp, (32, 32), sigma=2.0, max_people=1)
    heat = heat * np.random.default_rng(0).uniform(0.7, 1.3, size=heat.shape)
    outs = RecurrentOutputs(heat, np.array([0.9]), 1.0, 4)

    def placed(sigma, blur):
        method = build_method("recurrent", COCO17, sigma=sigma)
        return method.decode(outs, method.inference_settings({"subpixel_blur": blur}), (128, 128))[0]
    cells = lambda b: decode_people(heat, [0.9], subpixel="dark", blur=b)[0]          # noqa: E731
    np.testing.assert_allclose(placed(2.0, 0.5), placed(1.0, 1.0))
    np.testing.assert_allclose(placed(2.0, 0.5)[..., :2], cells(1.0)[..., :2] * 4, atol=1e-4)
    np.testing.assert_allclose(placed(1.0, 0.5)[..., :2], cells(0.5)[..., :2] * 4, atol=1e-4)
    assert np.abs(placed(1.0, 0.5) - placed(1.0, 1.0)).max() > 0.01


def test_bad_inputs():
    with pytest.raises(ValueError):
        decode_people(np.zeros((2, 1, 3, 3)), [0.9])
    with pytest.raises(ValueError):
        decode_people(np.zeros((1, 1, 3, 3)), [0.9], subpixel="cubic")
    with pytest.raises(ValueError):
        decode_people(np.zeros((1, 1, 3, 3)), [0.9], stop_threshold=2.0)
    # NaN / inf maps neither crash nor give NaN scores
    heat = np.full((2, 2, 4, 4), np.nan, np.float32)
    heat[1] = np.inf
    poses, scores = decode_people(heat, [0.9, np.nan])
    assert len(scores) == 1 and np.isfinite(scores).all() and np.isfinite(poses).all()


def test_targets_pad_and_count():
    kp = np.zeros((3, 2, 3))
    kp[0] = [[1, 1, 2], [2, 2, 2]]            # small person
    kp[1] = [[1, 1, 2], [9.5, 9.5, 2]]        # large person
    kp[2] = [[50, 50, 2], [60, 60, 2]]        # outside the 10x10 grid: not a target
    heat, z = person_heatmaps(kp, (10, 10), max_people=4)
    assert z == 2 and heat.shape == (4, 2, 10, 10)
    assert heat[1].max() > 0 and heat[2:].max() == 0
    assert heat[0, 1].argmax() == 9 * 10 + 9      # slot 0 = the larger person (joint 1 in cell 9, 9)
    heat, z = person_heatmaps(kp, (10, 10), max_people=1)
    assert z == 1 and heat.shape[0] == 1


def perfect_results(ann_file, num_images, resolution=128, **decode_opts):
    """Per image: person heatmaps at ``resolution`` cells for the longer side, stop probabilities
    [1]*Z + [0], decoded; results in image pixels."""
    from posegroup.evaluation import coco_layouts
    from posegroup.engine.predict import to_coco_results

    results, ids = [], []
    for lay in coco_layouts(ann_file, num_images):
        scale = max(lay["width"], lay["height"]) / float(resolution)
        kp = lay["keypoints"].copy()
        kp[..., :2] /= scale
        heat, z = person_heatmaps(kp, (resolution, resolution), max_people=max(1, len(kp)))
        stop = np.r_[np.ones(z), 0.0]
        heat = np.concatenate([heat[:z], np.zeros((1,) + heat.shape[1:], np.float32)])
        poses, scores = decode_people(heat, stop, **decode_opts)
        poses[..., :2] *= scale
        results += to_coco_results(lay["image_id"], poses, scores)
        ids.append(lay["image_id"])
    return results, ids


def _coco_ap(ann_file, results, ids):
    from posegroup.engine.evaluate import evaluate_results
    return evaluate_results(str(ann_file), results, image_ids=ids)["AP"]


def test_perfect_outputs_decode_to_ap_1_on_real_layouts(coco_val_gt):
    results, ids = perfect_results(coco_val_gt, 150, subpixel="quadratic")
    ap = _coco_ap(coco_val_gt, results, ids)
    assert ap >= 0.985
    dark, _ = perfect_results(coco_val_gt, 150, subpixel="dark")        # the default
    assert _coco_ap(coco_val_gt, dark, ids) >= 0.985
    # the paper's plain argmax (cell centres, no sub-pixel) on the same maps scores lower:
    # this test can tell a worse decoder apart
    plain, _ = perfect_results(coco_val_gt, 150, subpixel="none")
    assert _coco_ap(coco_val_gt, plain, ids) < ap - 0.05


# ---------------------------------------------------------------------------- count figures
def _count_gt():
    kp = [10, 10, 2] + [0, 0, 0] * 16
    anns = [{"id": 1, "image_id": 1, "keypoints": kp, "num_keypoints": 1, "iscrowd": 0},
            {"id": 2, "image_id": 1, "keypoints": kp, "num_keypoints": 1, "iscrowd": 0},
            {"id": 3, "image_id": 2, "keypoints": kp, "num_keypoints": 1, "iscrowd": 0},
            {"id": 4, "image_id": 2, "keypoints": [0, 0, 0] * 17, "num_keypoints": 0, "iscrowd": 0},   # not a person
            {"id": 5, "image_id": 2, "keypoints": kp, "num_keypoints": 1, "iscrowd": 1}]              # a crowd
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2, 3)]
    for a in anns:
        a.update(category_id=1, bbox=[5, 5, 10, 10], area=100.0)
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}]}


def _det(image_id):
    return {"image_id": image_id, "category_id": 1, "keypoints": [10.0, 10.0, 1.0] + [0.0] * 48, "score": 0.5}


def test_count_figures_by_hand():
    from posegroup.methods.recurrent.decode import count_figures
    gt = _count_gt()
    results = [_det(1)] + [_det(2)] * 4                      # image 1: 1 of 2; image 2: 4 of 1; image 3: 0 of 0
    f = count_figures(results, gt)
    assert f == {"count_error": pytest.approx(4 / 3), "count_over": pytest.approx(1.0),
                 "count_under": pytest.approx(1 / 3), "people_returned": 5.0, "people_true": 3.0}
    assert count_figures(results, gt, [1])["count_error"] == 1.0


def test_evaluate_prints_the_count_of_the_recurrent_method_only():
    from posegroup.engine.evaluate import evaluate_all, format_table
    from posegroup.methods import build_method
    from posegroup.skeleton import COCO17
    gt, results = _count_gt(), [_det(1), _det(2), _det(2)]
    stats = evaluate_all(gt, results, method=build_method("recurrent", COCO17))
    assert stats["figures"]["count_error"] == pytest.approx(2 / 3)
    assert "count_error" in format_table(stats)
    plain = evaluate_all(gt, results, method=build_method("ae", COCO17))   # the base hook: no figures
    assert "figures" not in plain and "count_error" not in format_table(plain)


def test_offsets_place_each_joint_from_its_argmax_cell():
    """``subpixel="offsets"``: the argmax cell's centre plus that joint's offset at that cell
    (hand-worked), whatever the offsets elsewhere; without offsets of the maps' shape it is one
    line naming the option."""
    heat = np.zeros((2, 2, 5, 6), np.float32)
    heat[0, 0, 2, 3] = 0.9
    heat[0, 1, 4, 0] = 0.7
    heat[1, 0, 1, 5] = 0.8
    heat[1, 1, 0, 1] = 0.6
    offsets = np.full((2, 2, 5, 6), 9.0, np.float32)       # everywhere else: far off
    offsets[0, :, 2, 3] = (0.3, -0.2)
    offsets[1, :, 4, 0] = (-0.4, 0.1)
    offsets[0, :, 1, 5] = (1.5, 0.0)                        # an offset may leave its cell
    offsets[1, :, 0, 1] = (0.0, 0.0)
    poses, _ = decode_people(heat, [0.9, 0.9], subpixel="offsets", offsets=offsets)
    np.testing.assert_allclose(poses[..., :2], [[[3.8, 2.3], [0.1, 4.6]], [[7.0, 1.5], [1.5, 0.5]]], atol=1e-6)
    np.testing.assert_allclose(poses[..., 2], [[0.9, 0.7], [0.8, 0.6]], rtol=1e-6)
    with pytest.raises(ValueError, match="subpixel='offsets' needs offsets .*short_offsets"):
        decode_people(heat, [0.9, 0.9], subpixel="offsets")
    with pytest.raises(ValueError, match="subpixel='offsets' needs offsets"):
        decode_people(heat, [0.9, 0.9], subpixel="offsets", offsets=offsets[:, :, :4])


def test_refine_fills_a_missing_joint_from_the_ae_maps_by_tag():
    """AE's single-person refinement on a recurrent person (hand-worked): the person's tag is the
    mean tag at its found joints (1.0); its missing joint 2 takes the AE cell whose tag is near
    (value 0.5, tag 1.2), not the stronger one of another person (0.9, tag 4.0); with
    ``missing_below`` a weak joint is found again by AE, and kept as it was when AE finds nothing."""
    from posegroup.methods.recurrent.decode import refine_people
    hm = np.zeros((3, 6, 6), np.float32)
    tags = np.zeros((3, 6, 6, 1), np.float32)
    hm[2, 1, 4], tags[2, 1, 4, 0] = 0.5, 1.2      # near the person's tag
    hm[2, 5, 0], tags[2, 5, 0, 0] = 0.9, 4.0      # stronger, another person's tag
    tags[0, 2, 2, 0], tags[1, 3, 3, 0] = 0.8, 1.2     # the found joints' cells: mean tag 1.0
    poses = np.array([[[2.5, 2.5, 0.7], [3.5, 3.5, 0.6], [0.5, 0.5, 0.0]]], np.float32)
    out = refine_people(poses, hm, tags, subpixel="none")
    np.testing.assert_allclose(out[0, 2], [4.5, 1.5, 0.5])
    np.testing.assert_allclose(out[0, :2], poses[0, :2])
    weak = poses.copy()
    weak[0, 2] = [0.5, 0.5, 0.2]                  # found by the recurrent head, but weakly
    np.testing.assert_allclose(refine_people(weak, hm, tags, subpixel="none")[0, 2], [0.5, 0.5, 0.2])
    np.testing.assert_allclose(refine_people(weak, hm, tags, subpixel="none", missing_below=0.3)[0, 2],
                               [4.5, 1.5, 0.5])
    hm[2, 1, 4] = 0.0                             # AE has nothing near: the weak joint stays
    np.testing.assert_allclose(refine_people(weak, hm, tags, subpixel="none", missing_below=0.3)[0, 2],
                               [0.5, 0.5, 0.2])
    with pytest.raises(ValueError, match="refine_people needs"):
        refine_people(poses, hm[:2], tags)
