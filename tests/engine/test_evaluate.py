import json

import numpy as np
import pytest

from posegroup.data.coco import DatasetError
from posegroup.engine.evaluate import (evaluate_all, evaluate_results, format_table, gt_as_results)
from tests.conftest import shared_file


def test_ground_truth_scores_one_on_real_coco_layouts(coco_val_gt):
    stats = evaluate_all(coco_val_gt, gt_as_results(coco_val_gt))
    for k in ("AP", "AP50", "AP75", "AR"):
        assert stats[k] == pytest.approx(1.0, abs=1e-6), k
    # per-area figures: a few near-identical neighbours of other sizes can steal a match
    assert stats["APm"] > 0.99 and stats["APl"] > 0.99
    assert "AP" in format_table(stats)


def test_ground_truth_scores_one_on_crowdpose_14(shared_data):
    gt = shared_file("crowdpose/crowdpose_val.json")
    stats = evaluate_all(gt, gt_as_results(gt))
    assert stats["AP"] == pytest.approx(1.0, abs=1e-6)
    assert set(stats["splits"]) == {"easy", "medium", "hard"}
    assert all(s["AP"] == pytest.approx(1.0, abs=1e-6) for s in stats["splits"].values())


def _tiny_gt():
    kp = [0.0] * 51
    for j in range(17):
        kp[3 * j:3 * j + 3] = [50 + 3 * j, 40 + 5 * j, 2]
    return {"images": [{"id": 1, "width": 200, "height": 200, "file_name": "x.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": kp,
                             "num_keypoints": 17, "iscrowd": 0, "bbox": [50, 40, 48, 80], "area": 3000}],
            "categories": [{"id": 1, "name": "person"}]}


def test_oks_drops_with_displacement_as_hand_computed():
    gt = _tiny_gt()
    kp = np.array(gt["annotations"][0]["keypoints"], float).reshape(17, 3)
    sig = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
                    .087, .087, .089, .089])
    # shift every joint by d px: OKS = mean exp(-d^2 / (2 s^2 (2 sigma)^2)), s^2 = area
    d = 6.0
    oks = np.mean(np.exp(-d ** 2 / (2 * 3000 * (2 * sig) ** 2)))
    det = kp.copy()
    det[:, 0] += d
    res = [{"image_id": 1, "category_id": 1, "keypoints": det.ravel().tolist(), "score": 0.9}]
    stats = evaluate_results(gt, res)
    # AP over thresholds .50:.05:.95 counts the thresholds below the OKS
    thresholds = np.linspace(.5, .95, 10)
    assert stats["AP"] == pytest.approx(np.mean(oks > thresholds), abs=1e-6)


def test_errors_name_the_problem(tmp_path):
    gt = _tiny_gt()
    with pytest.raises(DatasetError, match="expected 51"):
        evaluate_results(gt, [{"image_id": 1, "category_id": 1, "keypoints": [0] * 42, "score": 1}])
    with pytest.raises(DatasetError, match="not in the ground truth"):
        evaluate_results(gt, [{"image_id": 5, "category_id": 1, "keypoints": [0] * 51, "score": 1}])
    bad = tmp_path / "r.json"
    bad.write_text("[{")
    with pytest.raises(DatasetError, match="r.json: malformed"):
        evaluate_results(gt, bad)
    assert evaluate_results(gt, [])["AP"] == 0.0
