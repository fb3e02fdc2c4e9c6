"""Tests for posegroup.data.synthetic (synthetic crowded scenes)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from posegroup.data import synthetic as S
from posegroup.skeleton import COCO17
from tests.conftest import shared_file

COCO_VAL = "coco_val2017_kp/person_keypoints_val2017_rebuilt.json"


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def heavy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("heavy")
    stats = S.generate_dataset(d, 12, crowding="heavy", seed=3, workers=1, progress=False)
    return d, stats


# ------------------------------------------------------------------------------ helpers
def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    np.testing.assert_allclose(S.box_iou_matrix(a, b), [[1 / 7, 1.0, 0.0]])
    assert S.max_pairwise_iou(np.array([[0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 11, 11]])) == pytest.approx(1 / 3)
    assert np.isnan(S.max_pairwise_iou(np.array([[0, 0, 1, 1]])))


@pytest.mark.parametrize("bad", ["crowded", -0.1, 1.5, None])
def test_crowding_level_rejects(bad):
    with pytest.raises(ValueError, match="crowding"):
        S.crowding_level(bad)


def test_crowding_level_values():
    assert S.crowding_level("sparse") == 0.0 and S.crowding_level("HEAVY") == 1.0
    assert S.crowding_level(0.25) == 0.25 and S.crowding_level("0.5") == 0.5


# ------------------------------------------------------------------------------ render_scene
def test_render_scene_shapes_and_rectangular_size():
    img, kps, masks = S.render_scene(np.random.default_rng(0), (96, 160), "heavy")
    assert img.dtype == np.uint8 and img.shape == (96, 160, 3)
    assert kps.shape[1:] == (17, 3) and masks.shape == (len(kps), 96, 160) and masks.dtype == bool
    assert 1 <= len(kps) <= 8
    # Visible masks are disjoint (one owner per pixel).
    assert masks.sum(axis=0).max() <= 1


@pytest.mark.parametrize("crowding", ["sparse", "heavy"])
def test_visibility_agrees_with_masks(crowding):
    n2 = n1 = 0
    for i in range(12):
        img, kps, masks = S.render_scene(np.random.default_rng([7, i]), 128, crowding)
        H, W = img.shape[:2]
        for p, (person, m) in enumerate(zip(kps, masks)):
            v = person[:, 2]
            assert set(np.unique(v)) <= {0.0, 1.0, 2.0}
            assert np.all(person[v == 0, :2] == 0)                 # COCO: x = y = 0 when v = 0
            for x, y, vis in person[v > 0]:
                assert 0 <= x < W and 0 <= y < H
                r, c = int(np.floor(y)), int(np.floor(x))
                others = np.delete(masks, p, axis=0)[:, r, c]
                if vis == 2:                                        # owned by itself (or nobody)
                    assert m[r, c] or not others.any()
                    n2 += 1
                else:                                               # covered by a nearer person
                    assert others.any() and not m[r, c]
                    n1 += 1
            nk = int((v > 0).sum())
            # Kept small people: no keypoints; annotated people: >= 3 labelled and >= 1% area.
            assert nk == 0 or (nk >= 3 and m.sum() >= 0.01 * H * W)
    assert n2 > 50
    if crowding == "heavy":
        assert n1 > 10


def test_kinematic_left_right_convention():
    """Front-facing figures show their left hip on the image right; the prior's yaw never
    exceeds 100 degrees, so a left hip clearly on the image left would mean a mirrored model."""
    dx = []
    for i in range(300):
        J, lab, _ = S._kinematic_figure(np.random.default_rng([11, i]))
        assert lab.all()
        dx.append(J[S.L_HIP, 0] - J[S.R_HIP, 0])
    dx = np.array(dx)
    assert np.mean(dx > 0.1) > 0.35            # about half the figures face the camera
    assert np.all(dx > -0.05)


def test_kinematic_limb_lengths_are_anthropometric():
    """Projected bone lengths never exceed the 3D ones (Winter's proportions, +-5% jitter)."""
    for i in range(50):
        J, _, _ = S._kinematic_figure(np.random.default_rng([12, i]))
        upper_arm = np.linalg.norm(J[S.L_SHO] - J[S.L_ELB])
        thigh = np.linalg.norm(J[S.R_HIP] - J[S.R_KNEE])
        assert upper_arm <= S.UPPER_ARM * 1.05 + 1e-9
        assert thigh <= S.THIGH * 1.05 + 1e-9


def test_single_pose_bank_is_rigidly_placed():
    """With a one-pose bank every person is that pose up to scale, rotation and mirror, and
    the pose's unlabelled joints stay v = 0."""
    rng = np.random.default_rng(0)
    pose = np.zeros((17, 3), np.float32)
    pose[:, :2] = rng.uniform(-0.4, 0.4, size=(17, 2))
    pose[:, 2] = 1
    pose[[S.NOSE, S.L_EAR, S.R_WRI], :] = 0            # unlabelled
    labelled = pose[:, 2] > 0
    checked = 0
    for i in range(10):
        _, kps, _ = S.render_scene(np.random.default_rng([5, i]), 256, "sparse", pose_bank=pose[None])
        for person in kps:
            v = person[:, 2]
            if (v > 0).sum() == 0:
                continue
            # Unlabelled joints (or their mirror images after a flip) are never labelled.
            unl = np.flatnonzero(~labelled)
            mirrored = np.array(COCO17.flip_index)[unl]
            assert np.all(v[unl] == 0) or np.all(v[mirrored] == 0)
            idx = np.flatnonzero(v > 0)
            if len(idx) < 3:
                continue
            for src in (pose, pose[COCO17.flip_index]):
                d_obs = np.linalg.norm(person[idx, None, :2] - person[None, idx, :2], axis=-1)
                d_ref = np.linalg.norm(src[idx, None, :2] - src[None, idx, :2], axis=-1)
                if not np.all(src[idx, 2] > 0):
                    continue
                s = d_obs.sum() / d_ref.sum()
                if np.allclose(d_obs, s * d_ref, atol=0.05):
                    checked += 1
                    break
            else:
                raise AssertionError("a person is not a scaled copy of the bank pose")
    assert checked >= 5


# ------------------------------------------------------------------------------ dataset
def test_dataset_loads_in_pycocotools_and_masks_match(heavy_dir):
    d, stats = heavy_dir
    coco = COCO(str(d / "annotations.json"))
    assert len(coco.getImgIds()) == 12 == stats["images"]
    assert coco.loadCats(1)[0]["keypoints"] == list(COCO17.names)
    anns = coco.loadAnns(coco.getAnnIds())
    assert stats["people"] + stats["ignored_people"] == len(anns)
    for a in anns:
        img = coco.loadImgs(a["image_id"])[0]
        assert (d / "images" / img["file_name"]).is_file()
        m = coco.annToMask(a)
        assert m.shape == (img["height"], img["width"]) == (256, 256)
        assert int(m.sum()) == a["area"] > 0
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        assert a["bbox"] == [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]
        kp = np.array(a["keypoints"], float).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        for x, y, v in kp[kp[:, 2] == 2]:                     # visible joints lie on the mask
            assert m[int(y), int(x)] == 1
    info = json.loads((d / "annotations.json").read_text())["info"]
    assert info["seed"] == 3 and info["crowding"] == "heavy"
    assert info["mean_max_iou"] == pytest.approx(stats["mean_max_iou"], abs=1e-6)


def test_determinism_across_workers_and_seeds(tmp_path, heavy_dir):
    d, _ = heavy_dir
    a = tmp_path / "a"
    S.generate_dataset(a, 12, crowding="heavy", seed=3, workers=2, progress=False, chunksize=2)
    assert _files(a) == _files(d)
    b = tmp_path / "b"
    S.generate_dataset(b, 3, crowding="heavy", seed=4, workers=1, progress=False)
    fb, fd = _files(b), _files(d)
    assert fb["images/000000.jpg"] != fd["images/000000.jpg"]
    assert fb["annotations.json"] != fd["annotations.json"]


def test_heavy_is_more_crowded_than_sparse(tmp_path, heavy_dir):
    _, heavy = heavy_dir
    sparse = S.generate_dataset(tmp_path / "s", 24, crowding="sparse", seed=3, workers=1, progress=False)
    assert sparse["mean_max_iou"] < 0.2 < 0.5 < heavy["mean_max_iou"]
    # Independent check on the written visible boxes with pycocotools' box IoU.
    def mean_max_visible_iou(ann_file):
        coco = COCO(str(ann_file))
        out = []
        for i in coco.getImgIds():
            boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=i))]
            if len(boxes) >= 2:
                iou = mask_util.iou(boxes, boxes, [0] * len(boxes))
                np.fill_diagonal(iou, 0)
                out.append(iou.max())
        return np.mean(out)
    assert mean_max_visible_iou(tmp_path / "s" / "annotations.json") + 0.15 < \
        mean_max_visible_iou(heavy_dir[0] / "annotations.json")
    assert heavy["mean_people_per_image"] > sparse["mean_people_per_image"]


# ------------------------------------------------------------------------------ poses_file
def test_poses_file_real_coco(tmp_path):
    path = shared_file(COCO_VAL)
    bank = S.load_pose_bank(path)
    data = json.loads(path.read_text())
    expected = sum(1 for a in data["annotations"] if not a.get("iscrowd", 0)
                   and sum(1 for v in a["keypoints"][2::3] if v > 0) >= 8)
    assert bank.shape == (expected, 17, 3)
    # Normalised: hip centre at the origin for people with both hips labelled.
    both = (bank[:, S.L_HIP, 2] > 0) & (bank[:, S.R_HIP, 2] > 0)
    np.testing.assert_allclose(bank[both][:, [S.L_HIP, S.R_HIP], :2].mean(axis=1), 0, atol=1e-5)
    stats = S.generate_dataset(tmp_path, 6, crowding="heavy", seed=1, poses_file=path, workers=1,
                               progress=False)
    assert stats["people"] >= 6
    coco = COCO(str(tmp_path / "annotations.json"))
    assert len(coco.getAnnIds()) == stats["people"] + stats["ignored_people"]


def test_bad_poses_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json.*not found"):
        S.load_pose_bank(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*malformed json"):
        S.generate_dataset(tmp_path / "o", 1, poses_file=bad, progress=False)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"annotations": [{"id": 9, "keypoints": [1, 2, 2] * 14}]}))
    with pytest.raises(ValueError, match="short.json.*annotation id 9 has 42 keypoint values"):
        S.load_pose_bank(short)
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"annotations": [{"id": 1, "keypoints": [1, 2, 2] * 3 + [0, 0, 0] * 14}]}))
    with pytest.raises(ValueError, match="none.json.*no person"):
        S.load_pose_bank(none)
    lst = tmp_path / "list.json"
    lst.write_text("[]")
    with pytest.raises(ValueError, match="list.json.*annotations"):
        S.load_pose_bank(lst)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        S.render_scene(np.random.default_rng(0), (10, 10))
    with pytest.raises(ValueError, match="num_images"):
        S.generate_dataset(tmp_path, 0, progress=False)


def test_medium_lies_between_sparse_and_heavy_near_crowdpose(tmp_path):
    """'medium' is calibrated to CrowdPose val's mean max box IoU (0.305): on 60 images it lies
    well between sparse and heavy."""
    iou = {c: S.generate_dataset(tmp_path / c, 60, crowding=c, seed=11, image_size=96, workers=1,
                                 progress=False)["mean_max_iou"] for c in ("sparse", "medium", "heavy")}
    assert iou["sparse"] < 0.15 < iou["medium"] < 0.45 < iou["heavy"]
    assert S.crowding_level("medium") == S.CROWDING_LEVELS["medium"] == 0.3


def test_mixed_crowding_alternates_levels(tmp_path):
    stats = S.generate_dataset(tmp_path / "mix", 6, crowding="sparse,heavy", seed=2, image_size=64, workers=1,
                               progress=False)
    import json
    images = json.loads(Path(stats["annotation_file"]).read_text())["images"]
    assert [im["crowding"] for im in images] == [0.0, 1.0] * 3
    with pytest.raises(ValueError, match="crowding"):
        S.crowding_levels("sparse,crowded")
