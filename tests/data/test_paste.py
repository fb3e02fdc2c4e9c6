"""Tests for posegroup.data.paste (real-people scenes: people cut out by their masks and pasted).

The core is tested on tiny sources written here (plain-coloured people on a grey floor); the
real COCO images of ../shared/data are used where present (skipped cleanly otherwise)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from posegroup.cli import main
from posegroup.data import paste as P
from posegroup.skeleton import COCO17
from tests.conftest import shared_file

REAL_ANN = "coco_images/person_keypoints_local_images.json"
GREY = 128
LEFT_RGB, RIGHT_RGB = (200, 30, 30), (30, 30, 200)   # the person's left half (image right), right half
# A front-facing person, units of standing height, origin between the hips (x right, y down):
# COCO's left joints sit on the image right.
POSE = np.array([(0, -.43), (.02, -.45), (-.02, -.45), (.05, -.44), (-.05, -.44), (.11, -.32), (-.11, -.32),
                 (.15, -.15), (-.15, -.15), (.16, 0), (-.16, 0), (.075, 0), (-.075, 0), (.08, .24), (-.08, .24),
                 (.08, .45), (-.08, .45)])


# ------------------------------------------------------------------------------ tiny sources
def _ids_per_split(n_train: int, n_heldout: int, fraction: float = 0.3) -> dict:
    """The first image ids (from 1) that fall in each split."""
    out, i = {"train": [], "heldout": []}, 0
    while len(out["train"]) < n_train or len(out["heldout"]) < n_heldout:
        i += 1
        s = P.source_split_of(i, fraction)
        if len(out[s]) < (n_train if s == "train" else n_heldout):
            out[s].append(i)
    return out


def _person(img: np.ndarray, cx: float, cy: float, h: float, vis: int = 2) -> tuple[list, list, list]:
    """Draw a two-coloured ellipse person of standing height ``h`` centred at (cx, cy) into
    ``img``; its COCO keypoints, polygon and bbox."""
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    poly = np.stack([cx + 0.22 * h * np.cos(t), cy - 0.02 * h + 0.52 * h * np.sin(t)], 1)
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly - 0.5).astype(np.int32)], 1)
    xx = np.arange(img.shape[1])[None, :] + 0.5
    img[(m > 0) & (xx >= cx)] = LEFT_RGB
    img[(m > 0) & (xx < cx)] = RIGHT_RGB
    kp = np.concatenate([POSE * h + (cx, cy), np.full((17, 1), vis)], 1)
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0)
    return [round(float(v), 2) for v in kp.reshape(-1)], [[round(float(v), 2) for v in poly.reshape(-1)]], \
        [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def make_sources(root: Path, n_train: int = 6, n_heldout: int = 4, people_per_image: int = 2, size: int = 200,
                 with_segmentation: bool = True, invisible: int = 0) -> Path:
    """A COCO keypoint json with segmentations and its images under ``root``: per split
    ``n_*`` images with ``people_per_image`` people each (the first ``invisible`` people of the
    file have no labelled joint) and one empty image (a background) per split."""
    ids = _ids_per_split(n_train + 1, n_heldout + 1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for split, id_list in ids.items():
        for k, iid in enumerate(id_list):
            img = np.full((size, size, 3), GREY, np.uint8)
            for j in range(people_per_image if k else 0):     # the first image of a split stays empty
                vis = 0 if len(anns) < invisible else 2
                kp, poly, bbox = _person(img, size * (j + 1) / (people_per_image + 1), size * 0.5, size * 0.6, vis)
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": 0, "keypoints": kp,
                             "num_keypoints": 17 if vis else 0, "bbox": bbox, "area": bbox[2] * bbox[3] * 0.7,
                             "segmentation": poly if with_segmentation else []})
            name = f"{iid:06d}.jpg"
            cv2.imwrite(str(root / "images" / name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
            images.append({"id": iid, "file_name": name, "width": size, "height": size})
    ann = root / "people.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [COCO17.coco_category()]}))
    return ann


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("src"), n_train=6, n_heldout=4)


@pytest.fixture(scope="module")
def bank(sources):
    return P.load_people_bank(sources, source_split="train", min_background=64)


# ------------------------------------------------------------------------------ the bank
def test_bank_cuts_people_by_their_masks(bank):
    assert len(bank) == 12 and len(bank.backgrounds) >= 1 and bank.source_split == "train"
    for rgb, m, kp in zip(bank.rgb, bank.mask, bank.keypoints):
        assert rgb.shape[:2] == m.shape and m.any() and m[0].any() and m[:, 0].any()   # cropped to the mask's box
        inside = rgb[m].astype(int)
        assert (np.abs(inside - GREY).max(axis=1) > 40).mean() > 0.97                   # the person, not the floor
        xi, yi = kp[:, 0].astype(int), kp[:, 1].astype(int)
        assert m[yi, xi].all()                                                          # joints moved into the crop
    for bg in bank.backgrounds:
        assert bg.shape[0] == bg.shape[1] >= 64 and np.abs(bg.astype(int) - GREY).max() <= 3


def test_free_window_avoids_boxes():
    win = P.free_window((100, 200), np.array([[0, 0, 90, 100]]), aspect=1.0, margin=4)
    assert win is not None and win[2] - win[0] == win[3] - win[1] == 100 and win[0] >= 94
    assert P.free_window((50, 50), np.array([[0, 0, 50, 50]]), aspect=1.0) is None
    tall = P.free_window((100, 100), np.zeros((0, 4)), aspect=2.0)
    assert tall[3] - tall[1] == 2 * (tall[2] - tall[0])


def test_people_with_no_visible_joint_are_skipped_and_counted(tmp_path):
    ann = make_sources(tmp_path, n_train=6, n_heldout=4, invisible=3)
    counted = sum(P.load_people_bank(ann, source_split=s, min_background=64).skipped["no_visible_joint"]
                  for s in P.SOURCE_SPLITS)
    assert counted == 3


# ------------------------------------------------------------------------------ one person
def _one_person_bank(flip_pairs=True):
    """One 60 x 30 person: left half red, right half blue, a black dot at its left wrist."""
    rgb = np.zeros((60, 30, 3), np.uint8)
    rgb[:, 15:], rgb[:, :15] = LEFT_RGB, RIGHT_RGB
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = POSE * 50 + (15, 28)
    kp[:, 2] = 2
    x, y = kp[9, :2].astype(int)
    rgb[y - 1:y + 2, x - 1:x + 2] = 0
    return P.PeopleBank([rgb], [np.ones((60, 30), bool)], kp[None], np.array([60.0]), [1], [1],
                        [np.full((64, 64, 3), GREY, np.uint8)], [2], COCO17, "people.json", "train", 0.3)


def test_flip_swaps_left_and_right():
    b = _one_person_bank()
    _, m0, k0 = P._transform_person(np.random.default_rng(0), b, 0, 60.0, False, 0.0)
    rgb, m1, k1 = P._transform_person(np.random.default_rng(0), b, 0, 60.0, True, 0.0)
    w = m1.shape[1]
    L, R = 5, 6                                           # left, right shoulder
    # The mirrored person's left shoulder is the source's right one, mirrored: still on the image
    # right (COCO's convention for a person facing the camera), on the source's right-side colour.
    np.testing.assert_allclose(k1[L, 0], w - k0[R, 0], atol=1e-4)
    np.testing.assert_allclose(k1[L, 1], k0[R, 1], atol=1e-4)
    assert k1[L, 0] > k1[R, 0]
    px = rgb[int(k1[L, 1]), int(k1[L, 0])]
    assert px[2] > px[0]                                      # blue: the source's right half
    np.testing.assert_array_equal(k1[COCO17.flip_index, 2], k0[:, 2])


def test_keypoints_follow_the_pixels_under_scale_and_rotation():
    b = _one_person_bank()
    for angle in (-20.0, 0.0, 25.0):
        rgb, m, kp = P._transform_person(np.random.default_rng(1), b, 0, 120.0, False, angle)
        x, y = kp[9, :2]
        assert rgb[int(y), int(x)].max() < 60, angle          # the black dot is at the left wrist
        d0 = np.linalg.norm(b.keypoints[0, 5, :2] - b.keypoints[0, 15, :2])
        assert np.linalg.norm(kp[5, :2] - kp[15, :2]) == pytest.approx(2 * d0, rel=0.02)


def test_people_are_not_upscaled_beyond_the_limit_when_others_fit():
    one = _one_person_bank()
    P_ = 10
    bank = P.PeopleBank([one.rgb[0]] * P_, [one.mask[0]] * P_, np.repeat(one.keypoints, P_, 0),
                        np.array([40.0] * 5 + [400.0] * 5), list(range(P_)), list(range(P_)), one.backgrounds, [99],
                        COCO17, "people.json", "train", 0.3)
    small = {}
    for limit in (2.0, float("inf")):
        small[limit] = 0
        for i in range(20):
            people, _ = P._people(np.random.default_rng([1, i]), bank, 512, 512, 1.0, [], None, limit)
            n_small = sum(bank.height[p] < 100 for p, *_ in people)
            if limit == 2.0:
                assert n_small == max(0, len(people) - 5), (i, n_small, len(people))   # tall ones first
            small[limit] += n_small
    assert small[float("inf")] > small[2.0]


def test_drop_covered():
    full = np.zeros((3, 10, 10), bool)
    full[0, :, :5] = True          # far, half of it under person 1
    full[1, :, :8] = True          # middle, almost all under person 2
    full[2, :, :7] = True          # near
    keep = P._drop_covered(full, np.array([0, 1, 2]), 0.8)
    assert keep.tolist() == [False, False, True]
    keep = P._drop_covered(full, np.array([0, 1, 2]), 0.9)
    assert keep.tolist() == [False, True, True]


# ------------------------------------------------------------------------------ scenes
@pytest.mark.parametrize("crowding", ["medium", "heavy"])
def test_masks_match_pasted_pixels_and_occlusion_sets_v1(bank, crowding):
    n_v1 = 0
    for i in range(12):
        s = P._paste_render(np.random.default_rng([5, i]), bank, 160, 160, P.crowding_levels(crowding)[0])
        img, masks, kps = s["image"].astype(int), s["masks"], s["keypoints"]
        floor = img[~masks.any(0)]
        assert len(floor) and (floor == floor[0]).all()               # only the background outside the masks
        assert (np.abs(img[masks.any(0)] - floor[0]).max(axis=1) > 0).all()
        assert masks.sum(0).max() <= 1                                 # one owner per pixel
        both = (kps[:, 5, 2] > 0) & (kps[:, 6, 2] > 0)
        assert (kps[both, 5, 0] > kps[both, 6, 0]).all()               # left shoulder on the image right
        owner = np.where(masks.any(0), masks.argmax(0), -1)
        for n, kp in enumerate(kps):
            lab = kp[:, 2] > 0
            xi = np.clip(kp[lab, 0].astype(int), 0, 159)
            yi = np.clip(kp[lab, 1].astype(int), 0, 159)
            o, v = owner[yi, xi], kp[lab, 2]
            covered = (o >= 0) & (o != n)
            assert (v[covered] == 1).all() and (v[~covered] == 2).all()
            n_v1 += int((v == 1).sum())
    assert n_v1 > 0


def test_covered_people_are_placed_again_before_being_dropped(bank):
    kept, dropped = {}, {}
    for tries in (0, 2):
        r = [P._paste_render(np.random.default_rng([2, i]), bank, 160, 160, 1.0, replace_tries=tries) for i in range(15)]
        kept[tries], dropped[tries] = sum(len(s["keypoints"]) for s in r), sum(s["dropped"] for s in r)
    assert dropped[0] > 0 and kept[2] > kept[0] and dropped[2] < dropped[0]


def test_crowding_calibration_orders_sparse_medium_heavy(bank):
    ious = {}
    for crowding in ("sparse", "medium", "heavy"):
        c = P.crowding_levels(crowding)[0]
        vals = [P._paste_render(np.random.default_rng([9, i]), bank, 160, 160, c)["max_iou"] for i in range(30)]
        ious[crowding] = np.nanmean(vals)
    assert ious["sparse"] < ious["medium"] < ious["heavy"], ious


def test_dataset_is_deterministic_loads_and_segm_ap_is_one(tmp_path, sources):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    kw = dict(people_from=sources, source_split="train", crowding="sparse,heavy", image_size=128, progress=False)
    a = P.generate_paste_dataset(tmp_path / "a", 6, seed=3, workers=1, **kw)
    P.generate_paste_dataset(tmp_path / "b", 6, seed=3, workers=2, **kw)
    P.generate_paste_dataset(tmp_path / "c", 6, seed=4, workers=1, **kw)
    files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    gt = COCO(a["annotation_file"])
    assert a["people"] > 0 and len(gt.getImgIds()) == 6
    for ann in gt.loadAnns(gt.getAnnIds()):
        m = gt.annToMask(ann)
        assert m.sum() == ann["area"] and ann["segmentation"]["size"] == [128, 128]
    res = [{**a_, "score": 1.0} for a_ in gt.loadAnns(gt.getAnnIds())]
    ev = COCOeval(gt, gt.loadRes(res), "segm")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ kept-people photos
def test_kept_photos_keep_their_people_labelled_and_behind(tmp_path):
    ann = make_sources(tmp_path, n_train=6, n_heldout=4, invisible=1)
    bank = P.load_people_bank(ann, source_split="train", min_background=64, background="kept")
    assert bank.background == "kept" and len(bank.photos) == 7 and not bank.backgrounds
    n_photo_people = n_v1 = 0
    for i in range(12):
        s = P._paste_render(np.random.default_rng([6, i]), bank, 160, 160, 0.3)
        m = s["photo_people"]
        assert all(iid == s["background"] for iid, _ in s["sources"][:m])     # the photo's own people (far)
        assert all(iid != s["background"] for iid, _ in s["sources"][m:])     # nobody pasted into their own photo
        n_photo_people += m
        masks, kps = s["masks"], s["keypoints"]
        both = (kps[:, 5, 2] > 0) & (kps[:, 6, 2] > 0)
        assert (kps[both, 5, 0] > kps[both, 6, 0]).all()          # facing the camera, mirrored or not: left on the right
        assert masks.sum(0).max() <= 1
        owner = np.where(masks.any(0), masks.argmax(0), -1)
        for n, kp in enumerate(kps):
            lab = kp[:, 2] > 0
            o = owner[np.clip(kp[lab, 1].astype(int), 0, 159), np.clip(kp[lab, 0].astype(int), 0, 159)]
            covered = (o >= 0) & (o != n)
            assert (kp[lab, 2][covered] == 1).all() and (kp[lab, 2][~covered] == 2).all()
            n_v1 += int((kp[lab, 2] == 1).sum())
    assert n_photo_people > 0 and n_v1 > 0
    stats = P.generate_paste_dataset(tmp_path / "out", 10, bank=bank, crowding="medium", image_size=128, workers=1,
                                     progress=False)
    doc = json.loads(Path(stats["annotation_file"]).read_text())
    crowd = [a for a in doc["annotations"] if a["iscrowd"]]
    assert doc["info"]["background"] == "kept" and crowd      # the person without joints: an ignore region
    assert all(a["num_keypoints"] == 0 and a["source_image_id"] == doc["images"][a["image_id"] - 1]
               ["background_source_image_id"] for a in crowd)


# ------------------------------------------------------------------------------ source split
def test_train_and_heldout_sources_are_disjoint(tmp_path, sources):
    for split in P.SOURCE_SPLITS:
        P.generate_paste_dataset(tmp_path / split, 8, people_from=sources, source_split=split, crowding="medium",
                                 image_size=128, workers=1, progress=False)
    assert P.shared_source_images(tmp_path / "train" / "annotations.json",
                                  tmp_path / "heldout" / "annotations.json") == set()
    for split in P.SOURCE_SPLITS:
        doc = json.loads((tmp_path / split / "annotations.json").read_text())
        used = {a["source_image_id"] for a in doc["annotations"]} | {i["background_source_image_id"] for i in doc["images"]}
        assert used and used <= set(doc["info"]["source_images"])
        assert {P.source_split_of(i, 0.3) for i in used} == {split}
    P.generate_paste_dataset(tmp_path / "all", 2, people_from=sources, allow_shared_sources=True, image_size=128,
                             workers=1, progress=False)
    assert P.shared_source_images(tmp_path / "all" / "annotations.json", tmp_path / "train" / "annotations.json")


def test_heldout_folder_splits_by_file_name(tmp_path, capsys):
    ann = make_sources(tmp_path, n_train=6, n_heldout=4)
    doc = json.loads(ann.read_text())
    (tmp_path / "images" / "val").mkdir()
    for im in doc["images"]:
        if im["id"] % 2 == 0:                                     # even ids move under images/val/
            (tmp_path / "images" / im["file_name"]).rename(tmp_path / "images" / "val" / im["file_name"])
            im["file_name"] = "val/" + im["file_name"]
    ann.write_text(json.dumps(doc))
    banks = {s: P.load_people_bank(ann, source_split=s, heldout_folder="val/", min_background=64) for s in P.SOURCE_SPLITS}
    assert banks["train"].source_images and all(i % 2 for i in banks["train"].source_images)
    assert banks["heldout"].source_images and not any(i % 2 for i in banks["heldout"].source_images)
    assert banks["train"].split_rule == "heldout when file_name lies under val/"
    with pytest.raises(ValueError, match="no image's file_name lies under"):
        P.load_people_bank(ann, source_split="train", heldout_folder="test2017")
    with pytest.raises(ValueError, match="must be a folder name"):
        P.load_people_bank(ann, source_split="train", heldout_folder="/")
    for im in doc["images"]:
        im["file_name"] = im["file_name"] if im["file_name"].startswith("val/") else "val/../" + im["file_name"]
    ann.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="every image's file_name"):
        P.load_people_bank(ann, source_split="train", heldout_folder="val")
    err = _cli_error(capsys, tmp_path, ann, "--source-split", "train", "--heldout-folder", "val",
                     "--heldout-fraction", "0.2")
    assert "not both" in err


@pytest.mark.parametrize("kw, match", [({}, "--source-split"),
                                       ({"source_split": "val"}, "source split"),
                                       ({"source_split": "train", "allow_shared_sources": True}, "not both"),
                                       ({"source_split": "train", "heldout_fraction": 1.0}, "heldout_fraction"),
                                       ({"source_split": "train", "max_covered": 1.0}, "max_covered"),
                                       ({"source_split": "train", "jpeg_quality": 0}, "jpeg_quality"),
                                       ({"source_split": "train", "replace_tries": -1}, "replace_tries"),
                                       ({"source_split": "train", "background": "none"}, "background"),
                                       ({"source_split": "train", "max_upscale": 0.5}, "max_upscale"),
                                       ({"source_split": "train", "image_size": 8}, "image_size")])
def test_knobs_are_checked_before_anything_is_written(tmp_path, sources, kw, match):
    with pytest.raises(ValueError, match=match):
        P.generate_paste_dataset(tmp_path / "out", 2, people_from=sources, progress=False, workers=1, **kw)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ bad input: one line each
def _cli_error(capsys, tmp_path, ann, *extra) -> str:
    out = tmp_path / "out"
    rc = main(["--quiet", "synth", "--out", str(out), "--images", "2", "--people-from", str(ann), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists(), err
    assert len(err.splitlines()) == 1 and err.startswith("posegroup: error:"), err
    return err


def test_bad_input_json_without_segmentations(tmp_path, capsys):
    ann = make_sources(tmp_path, with_segmentation=False)
    err = _cli_error(capsys, tmp_path, ann, "--source-split", "train")
    assert str(ann) in err and "segmentation" in err


def test_bad_input_missing_image(tmp_path, capsys):
    ann = make_sources(tmp_path)
    first = json.loads(ann.read_text())["images"][1]
    (tmp_path / "images" / first["file_name"]).unlink()
    split = P.source_split_of(first["id"], 0.3)
    err = _cli_error(capsys, tmp_path, ann, "--source-split", split)
    assert first["file_name"] in err and "not found" in err and str(ann) in err


def test_bad_input_too_few_people_for_the_crowding(tmp_path, capsys):
    ann = make_sources(tmp_path, n_train=2, n_heldout=1)
    err = _cli_error(capsys, tmp_path, ann, "--source-split", "train", "--crowding", "heavy")
    assert str(ann) in err and "4 usable people" in err and "8" in err


def test_bad_input_nobody_with_a_visible_joint(tmp_path, capsys):
    ann = make_sources(tmp_path, n_train=2, n_heldout=1, invisible=100)
    err = _cli_error(capsys, tmp_path, ann, "--source-split", "train")
    assert "0 usable people" in err and "no_visible_joint 4" in err


def test_cli_flags_need_people_from_and_report(tmp_path, capsys, sources):
    assert main(["synth", "--out", str(tmp_path / "x"), "--source-split", "train"]) == 2
    assert "--people-from" in capsys.readouterr().err
    rc = main(["--quiet", "synth", "--out", str(tmp_path / "ok"), "--images", "3", "--size", "128",
               "--people-from", str(sources), "--source-split", "heldout", "--workers", "1"])
    line = capsys.readouterr().out
    assert rc == 0 and "real-people scenes" in line and "heldout split" in line and "IoU" in line
    assert len(list((tmp_path / "ok" / "images").glob("*.jpg"))) == 3


# ------------------------------------------------------------------------------ real COCO people
def test_real_coco_people_scenes(tmp_path):
    ann = shared_file(REAL_ANN)
    banks = {s: P.load_people_bank(ann, source_split=s) for s in P.SOURCE_SPLITS}
    assert not set(banks["train"].source_images) & set(banks["heldout"].source_images)
    assert min(len(b) for b in banks.values()) >= 8 and min(len(b.backgrounds) for b in banks.values()) >= 1
    stats = P.generate_paste_dataset(tmp_path / "h", 8, bank=banks["heldout"], crowding="heavy", image_size=256,
                                     workers=1, progress=False)
    assert stats["people"] > 8 and stats["mean_max_iou"] > 0.3


def test_refused_overwrite_leaves_the_earlier_dataset(tmp_path, capsys):
    ann = make_sources(tmp_path / "src", n_train=2, n_heldout=1)
    out = tmp_path / "out"
    args = ["--quiet", "synth", "--out", str(out), "--images", "2", "--size", "96", "--workers", "1",
            "--people-from", str(ann), "--source-split", "train"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(args + ["--overwrite", "--crowding", "heavy"]) == 2
    assert "usable people" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_render_paste_scene_api(bank, tmp_path):
    a = P.render_paste_scene(np.random.default_rng(4), bank, (96, 128), "heavy")
    b = P.render_paste_scene(np.random.default_rng(4), bank, (96, 128), "heavy")
    img, kps, masks = a
    assert img.shape == (96, 128, 3) and img.dtype == np.uint8 and kps.shape[1:] == (17, 3)
    assert masks.shape == (len(kps), 96, 128) and masks.dtype == bool
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="one level"):
        P.render_paste_scene(np.random.default_rng(4), bank, 96, "sparse,heavy")
    other = tmp_path / "plain.json"
    other.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="source_images"):
        P.shared_source_images(other, other)
