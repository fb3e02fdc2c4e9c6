"""Prediction: results.json (COCO format, image ids, RLE masks), PNGs, clear errors, evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from posegroup.data.coco import CocoPoseDataset
from posegroup.engine.predict import (PredictError, collect_images, evaluate_predictor, predict_dataset,
                                      predict_images, to_coco_results)
from posegroup.skeleton import COCO17
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("pred"), 3, size=64, people=(1, 2))


def _fake(with_masks=False):
    def predictor(image):
        h, w = image.shape[:2]
        poses = np.zeros((2, 17, 3), np.float32)
        poses[..., 0], poses[..., 1], poses[..., 2] = w / 2, h / 2, 0.9
        out = (poses, np.array([0.9, 0.5]))
        if with_masks:
            masks = np.zeros((2, h, w), bool)
            masks[0, :10, :10] = True
            return out + (masks,)
        return out
    return predictor


def test_predict_images_writes_results_and_pngs(data, tmp_path):
    folder = data.parent
    res = predict_images(_fake(), [folder], out_dir=tmp_path / "out", keypoint_set=COCO17, progress=False)
    assert len(res) == 6 and {r["image_id"] for r in res} == {0, 1, 2}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == res
    r = res[0]
    assert r["category_id"] == 1 and len(r["keypoints"]) == 51 and r["score"] == pytest.approx(0.9)
    assert r["keypoints"][:3] == [32.0, 32.0, pytest.approx(0.9)]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["img000.png", "img001.png", "img002.png"]


def test_gt_image_ids_and_masks(data, tmp_path):
    files = collect_images(data.parent)
    res = predict_images(_fake(True), files[1:], out_dir=tmp_path / "o", keypoint_set=COCO17, draw=False,
                         progress=False, gt_file=data)
    assert {r["image_id"] for r in res} == {2, 3}                 # ids of img001/img002 in the json
    from pycocotools import mask as mu
    rle = dict(res[0]["segmentation"])
    assert isinstance(rle["counts"], str)
    m = mu.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert m.sum() == 100 and m[:10, :10].all()
    assert not list((tmp_path / "o").glob("*.png"))


def test_errors_name_the_file(data, tmp_path):
    with pytest.raises(PredictError, match=r"missing\.jpg: no such image file or folder"):
        predict_images(_fake(), [tmp_path / "missing.jpg"], out_dir=tmp_path, keypoint_set=COCO17)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png: unreadable or corrupt image"):
        predict_images(_fake(), [bad], out_dir=tmp_path / "x", keypoint_set=COCO17, progress=False)
    other = tmp_path / "other.png"
    import cv2
    cv2.imwrite(str(other), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PredictError, match=r"other\.png: file name not found among the images of"):
        predict_images(_fake(), [other], out_dir=tmp_path / "y", keypoint_set=COCO17, progress=False,
                       gt_file=data)


def test_dataset_evaluation_of_a_perfect_predictor(data):
    ds = CocoPoseDataset(data)

    def oracle(image, _it=iter(ds.image_ids)):
        kp = ds.annotations(next(_it))["keypoints"].copy()
        kp[..., 2] = 1.0
        return kp, np.ones(len(kp))

    stats = evaluate_predictor(oracle, ds)
    assert stats["AP"] == pytest.approx(1.0) and stats["num_images"] == 3
    res = predict_dataset(_fake(), ds, max_images=2, progress=False)
    assert {r["image_id"] for r in res} == {1, 2}


def test_empty_and_bad_predictor_outputs():
    assert to_coco_results(1, np.zeros((0, 17, 3)), np.zeros(0)) == []
    from posegroup.engine.predict import unpack
    with pytest.raises(PredictError, match="expected \\(N, K, 3\\)"):
        unpack((np.zeros((2, 17, 2)), np.zeros(2)))


def test_predict_over_times_each_image_and_runs_the_oracle_outside(data):
    """The one dataset loop: a TimedRun's network and decoder seconds per image, people counted,
    plain results (no masks, no file names) for the benchmarks, the oracle's results beside."""
    from posegroup.engine.predict import predict_over
    from posegroup.engine.predictor import TimedRun
    ds = CocoPoseDataset(data)
    fake = _fake(with_masks=True)
    run = TimedRun(lambda image: image, lambda image, _: fake(image))

    def oracle(image, kp):
        return kp, np.ones(len(kp))

    out = predict_over(run, ds, [2, 3], oracle=oracle, timed=True, plain=True)
    assert len(out.network_s) == len(out.decoder_s) == 2 and min(out.network_s + out.decoder_s) >= 0
    assert out.people == 4 and [r["image_id"] for r in out.results] == [2, 2, 3, 3]
    assert all(set(r) == {"image_id", "category_id", "keypoints", "score"} for r in out.results)
    assert len(out.true_results) == sum(len(ds.annotations(i)["keypoints"]) for i in (2, 3))
    full = predict_over(fake, ds, images=[ds.load_image(1)], image_ids=[1])
    assert full.network_s == [] and full.true_results is None
    assert all(r["file_name"] == "img000.png" and "segmentation" in r for r in full.results)
    assert full.results == predict_dataset(fake, ds, max_images=1, progress=False)


def test_predict_paths_skips_unreadable_files_with_their_reason(data, tmp_path):
    from posegroup.engine.predict import predict_paths
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = collect_images(data.parent)[:2]
    skipped = []
    found = list(predict_paths(_fake(), [good[0], bad, good[1]], [7, 8, 9], skipped))
    assert [(i, p.name, f.results[0]["image_id"], f.results[0]["file_name"]) for i, p, _, f in found] == \
        [(0, "img000.png", 7, "img000.png"), (2, "img001.png", 9, "img001.png")]
    assert len(skipped) == 1 and skipped[0][0] == str(bad) and "bad.png" in skipped[0][1]
    assert "\n" not in skipped[0][1]
