"""AE instance segmentation: head layout, options, decoders by hand, and a fast
overfit that decodes masks of IoU >= 0.8 per person and is scored by COCOeval segm."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from posegroup.backbones.hourglass import hourglass_from_config
from posegroup.methods import build_method
from posegroup.methods.ae import AEMethod, head, segment
from posegroup.skeleton import COCO17
from tests.helpers import make_dataset


# -- head layout -----------------------------------------------------------------------------
def test_head_layout_with_and_without_segmentation():
    assert head.num_channels(17, 1) == 34 and head.num_channels(17, 1, 0) == 34
    assert head.num_channels(17, 2, 3) == 17 * 3 + 1 + 3
    b, k, d, e, h, w = 2, 3, 2, 2, 4, 5
    heat, tags = torch.randn(b, k, h, w), torch.randn(b, k, h, w, d)
    fg, st = torch.randn(b, h, w), torch.randn(b, h, w, e)
    pred = head.merge_outputs(heat, tags, fg, st)
    assert pred.shape == (b, k * (1 + d) + 1 + e, h, w)
    # the pose channels come first, exactly as without segmentation; then fg, then the pixel tags
    assert torch.equal(pred[:, :k * (1 + d)], head.merge_outputs(heat, tags))
    assert torch.equal(pred[:, k * (1 + d)], fg) and torch.equal(pred[:, k * (1 + d) + 2], st[..., 1])
    h2, t2 = head.split_outputs(pred, k, d, e)
    f2, s2 = head.split_segmentation(pred, k, d, e)
    assert torch.equal(h2, heat) and torch.equal(t2, tags) and torch.equal(f2, fg) and torch.equal(s2, st)
    with pytest.raises(ValueError, match="expected"):
        head.split_outputs(pred, k, d)               # seg channels present but E not given


def test_method_options_validated():
    assert AEMethod(COCO17).num_channels == 34                           # off: layout unchanged
    m = build_method("ae", COCO17, segmentation=True, seg_tag_dim=2, seg_samples=8)
    assert m.num_channels == 34 + 1 + 2 and m.seg_samples == 8
    for bad, key in (({"segmentation": "yes"}, "segmentation"), ({"segmentation": True, "seg_tag_dim": 0}, "seg_tag_dim"),
                     ({"segmentation": True, "seg_samples": 2.5}, "seg_samples"),
                     ({"segmentation": True, "seg_push_weight": -1}, "seg_push_weight"),
                     ({"segmentation": True, "seg_decode": "watershed"}, "seg_decode"),
                     ({"segmentation": True, "seg_threshold": 1.5}, "seg_threshold"),
                     ({"segmentation": True, "seg_push_sigma": 0}, "seg_push_sigma"),
                     ({"segmentation": True, "seg_anchor_statistic": "mode"}, "seg_anchor_statistic")):
        with pytest.raises(ValueError, match=key):
            AEMethod(COCO17, **bad)
    assert "foreground" not in AEMethod(COCO17).encode(np.zeros((0, 17, 3)), None, None, (4, 4), 4)
    with pytest.raises(ValueError, match="instance_masks"):
        AEMethod(COCO17, segmentation=True).encode(np.zeros((0, 17, 3)), None, None, (4, 4), 4)
    net = hourglass_from_config("tiny", AEMethod(COCO17).num_channels)
    with pytest.raises(ValueError, match="seg_decode"):      # a segmentation option without segmentation
        AEMethod(COCO17).predict(net, np.zeros((32, 32, 3), np.uint8), input_size=64, seg_decode="pose")


# -- decoders by hand ----------------------------------------------------------------------------
def test_histogram_identifiers_by_hand():
    t = np.array([0.0, 0.0, 0.05, 0.1, 2.0, 2.05, 2.1, 5.0])[:, None]
    # bins of 0.2 from the minimum: [0, 0.2) holds 4, [2.0, 2.2) 3, [5.0, 5.2) 1 (< min_cells 2)
    ids = segment.histogram_identifiers(t, bin_width=0.2, nms_radius=1.0, min_cells=2)
    np.testing.assert_allclose(ids, [[0.0375], [2.05]])                  # bin means, strongest first
    ids1 = segment.histogram_identifiers(t, bin_width=0.2, nms_radius=1.0, min_cells=1)
    np.testing.assert_allclose(ids1, [[0.0375], [2.05], [5.0]])
    # NMS window: radius 3 tag units = 15 bins each side; bin 10 (count 3) sees bin 0 (count 4),
    # bin 25 (count 1) sees bin 10: only the 0.0375 peak is a local maximum
    ids3 = segment.histogram_identifiers(t, bin_width=0.2, nms_radius=3.0, min_cells=1)
    np.testing.assert_allclose(ids3, [[0.0375]])
    # a plateau (bins 0 and 1 both hold 2) gives two local maxima 0.2 apart: the distance NMS
    # keeps the first
    ids_p = segment.histogram_identifiers(np.array([[0.0], [0.0], [0.2], [0.2]]), bin_width=0.2,
                                          nms_radius=1.0, min_cells=1)
    np.testing.assert_allclose(ids_p, [[0.0]])
    assert segment.histogram_identifiers(np.zeros((0, 2))).shape == (0, 2)


def test_pixel_resampling_continuous_convention():
    # grid (1, 2) at scale 2 -> image (2, 4): pixel u sits at grid (u + 0.5) / 2 - 0.5 (cell index
    # space): -0.25, 0.25, 0.75, 1.25 -> border, 0.75 v0 + 0.25 v1, 0.25 v0 + 0.75 v1, border
    out = segment._to_pixels(np.array([[0.0, 4.0]]), (2, 4), 2.0)
    np.testing.assert_allclose(out, [[0, 1, 3, 4], [0, 1, 3, 4]], atol=1e-6)


def _two_people_maps():
    """A 2 x 4 grid: person A in columns 0-1 (tag 0), background in column 2 (tag 9), person B in
    column 3 (tag 3); poses with every joint at the centre of cell (0, 0) / (0, 3)."""
    prob = np.array([[0.9, 0.9, 0.1, 0.9], [0.9, 0.9, 0.1, 0.9]])
    tags = np.array([[0.0, 0.1, 9.0, 3.0], [0.0, 0.1, 9.0, 3.0]])[..., None]
    poses = np.zeros((2, 17, 3))
    poses[0, :, :2], poses[1, :, :2] = (0.5, 0.5), (3.5, 0.5)
    poses[..., 2] = 0.8
    return prob, tags, poses


def test_anchor_tags_by_hand():
    prob, tags, poses = _two_people_maps()
    # radius 1.5 around (0.5, 0.5): cells (0,0) (0,1) (1,0) (1,1) are foreground -> tags 0, .1, 0, .1
    a = segment.anchor_tags(prob, tags, poses, radius=1.5, statistic="mean")
    np.testing.assert_allclose(a, [[0.05], [3.0]])
    np.testing.assert_allclose(segment.anchor_tags(prob, tags, poses, radius=1.5), [[0.05], [3.0]])  # median
    # radius 1.2: (0,0), (0,1) and (1,0) only ((1,1) at 1.41 is out) -> 0, .1, 0: mean .1/3, median 0
    np.testing.assert_allclose(segment.anchor_tags(prob, tags, poses, radius=1.2, statistic="mean")[0], [0.1 / 3])
    np.testing.assert_allclose(segment.anchor_tags(prob, tags, poses, radius=1.2)[0], [0.0])
    # only joints with score >= joint_threshold count: person 0's joints all weak -> all used
    weak = poses.copy()
    weak[0, :, 2] = 0.01
    np.testing.assert_allclose(segment.anchor_tags(prob, tags, weak, radius=1.2)[0], [0.0])


@pytest.mark.parametrize("mode", ["paper", "pose"])
def test_segment_people_by_hand(mode):
    prob, tags, poses = _two_people_maps()
    masks = segment.segment_people(prob, tags, poses, image_hw=(2, 4), scale=1.0, mode=mode, min_cells=2)
    want_a = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)
    want_b = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], bool)
    assert masks.dtype == bool and masks.shape == (2, 2, 4)
    np.testing.assert_array_equal(masks[0], want_a)
    np.testing.assert_array_equal(masks[1], want_b)
    # a weaker duplicate of A: "pose" gives it A's mask, "paper" (one instance per person) none
    dup = np.concatenate([poses, poses[:1]])
    m3 = segment.segment_people(prob, tags, dup, image_hw=(2, 4), scale=1.0, mode=mode, min_cells=2,
                                scores=np.array([0.9, 0.8, 0.5]))
    np.testing.assert_array_equal(m3[2], want_a if mode == "pose" else np.zeros_like(want_a))
    np.testing.assert_array_equal(m3[0], want_a)
    assert segment.segment_people(prob, tags, poses[:0], image_hw=(2, 4), scale=1.0, mode=mode).shape == (0, 2, 4)


def test_duplicate_leaders_by_hand():
    an = np.array([[0.0], [0.5], [3.0], [np.nan], [2.6]])
    # order by score: 2 (0.9), 0 (0.8), 4 (0.7), 1 (0.6), 3 (0.1); radius 1
    lead = segment.duplicate_leaders(an, np.array([0.8, 0.6, 0.9, 0.1, 0.7]), 1.0)
    np.testing.assert_array_equal(lead, [0, 0, 2, 3, 2])


# -- overfit ----------------------------------------------------------------------------------
def _mask_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N_true,) best IoU of each true mask with any predicted one."""
    if len(pred) == 0:
        return np.zeros(len(truth))
    p = pred.reshape(len(pred), -1).astype(np.float64)
    t = truth.reshape(len(truth), -1).astype(np.float64)
    inter = t @ p.T
    union = t.sum(1)[:, None] + p.sum(1)[None] - inter
    return (inter / np.maximum(union, 1)).max(1)


def test_overfit_three_images_decodes_masks(tmp_path: Path):
    """A tiny hourglass overfits three 64-px images of 2 people each (COCO polygons -> instance
    masks -> targets); both decoders then find every person's mask with IoU >= 0.8, and
    COCOeval scores the masks (segm AP) next to the keypoints. ~30-60 s on one thread."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.data.training import TrainingSet, collate
    from posegroup.engine.evaluate import evaluate_all
    from posegroup.engine.predict import make_predictor, predict_dataset

    torch.manual_seed(0)
    ann = make_dataset(tmp_path / "data", 3, size=64, people=(2, 3), seed=1)
    ds = CocoPoseDataset(ann)
    m = AEMethod(COCO17, segmentation=True, pull_weight=1.0, push_weight=1.0)
    batch = collate([TrainingSet(ds, m, input_size=64, augment=False)[i] for i in range(len(ds))])
    assert batch["seg_pixels"].shape == (3, 30, 32, 2) and batch["foreground"].shape == (3, 16, 16)
    net = hourglass_from_config({"name": "tiny", "num_stacks": 1, "depth": 2, "base_width": 16,
                                 "width_increase": 8, "stem_width": 8}, m.num_channels)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    t0 = time.perf_counter()
    for _ in range(800):
        loss, parts = m.loss(net(batch["image"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(parts) == {"heatmap", "pull", "push", "foreground", "seg_pull", "seg_push"}
    assert parts["foreground"] < 0.1 and time.perf_counter() - t0 < 240
    for mode in ("paper", "pose"):
        for i in range(len(ds)):
            sample = ds[i]
            poses, scores, masks = m.predict(net, sample["image"], input_size=64, seg_decode=mode)
            assert masks.shape == (len(poses), 64, 64) and masks.dtype == bool
            ious = _mask_ious(masks, sample["instance_masks"] != 0)
            assert len(ious) == 2 and ious.min() >= 0.8, (mode, i, ious)
    results = predict_dataset(make_predictor(net, m, input_size=64, seg_decode="pose"), ds, progress=False)
    stats = evaluate_all(str(ann), results, keypoint_set=COCO17)
    assert stats["segm"]["AP"] >= 0.5 and "AP" in stats


def test_draw_poses_masks_in_skeleton_colours():
    from posegroup.viz import draw_poses, person_colors

    img = np.zeros((40, 40, 3), np.uint8)
    poses = np.zeros((2, 17, 3))
    poses[0, 0] = (5.5, 5.5, 1.0)                  # one joint each, far from the masked corners
    poses[1, 0] = (34.5, 5.5, 1.0)
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 30:, :10] = True
    masks[1, 30:, 30:] = True
    out = draw_poses(img, poses, COCO17, masks=masks, thickness=1)
    col = person_colors(2)
    np.testing.assert_array_equal(out[35, 5], (0.5 * col[0]).astype(np.uint8))    # mask 0: colour 0
    np.testing.assert_array_equal(out[35, 35], (0.5 * col[1]).astype(np.uint8))   # mask 1: colour 1
    np.testing.assert_array_equal(out[5, 5], col[0])                               # joint 0: colour 0
    np.testing.assert_array_equal(out[5, 34], col[1])
    assert (out[15, 20] == 0).all()
    with pytest.raises(ValueError, match="masks"):
        draw_poses(img, poses, COCO17, masks=masks[:, :20])


def test_pixel_samples_follow_the_data_order(tmp_path: Path):
    """The sampled pixels are a function of (seed, epoch, index) like the augmentation, so a
    resumed run draws the same ones; no global RNG is used."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.data.training import TrainingSet

    ds = CocoPoseDataset(make_dataset(tmp_path / "d", 2, size=64, people=(2, 2), seed=4))
    ts = TrainingSet(ds, AEMethod(COCO17, segmentation=True, seg_samples=8), input_size=64, seed=1)
    state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    a, b = ts[(1, 3)], ts[(1, 3)]
    assert torch.equal(a["seg_pixels"], b["seg_pixels"]) and a["seg_pixels"][:2, :, 1].all()
    assert not torch.equal(a["seg_pixels"], ts[(1, 4)]["seg_pixels"])       # another epoch, another draw
    assert torch.equal(torch.random.get_rng_state(), state[0]) and (np.random.get_state()[1] == state[1]).all()
