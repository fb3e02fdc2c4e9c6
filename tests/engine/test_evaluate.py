import numpy as np
import pytest
from pycocotools import mask as mask_utils

from posegroup.data.coco import DatasetError
from posegroup.engine.evaluate import (evaluate_all, evaluate_results, format_table, gt_as_results)


def test_ground_truth_scores_one_on_real_coco_layouts(coco_val_gt):
    stats = evaluate_all(coco_val_gt, gt_as_results(coco_val_gt))
    assert stats["protocol"] == "coco" and "splits" not in stats and "segm" not in stats
    for k in ("AP", "AP50", "AP75", "APm", "AR", "AR50", "AR75", "ARm", "ARl"):
        assert stats[k] == pytest.approx(1.0, abs=1e-9), k
    # large people: a near-identical neighbour of another size can take a large person's match
    # (COCOeval tries non-ignored ground truth first), leaving that person's own result a false
    # positive: large AP loses 0.06%, every large person is still recalled
    assert stats["APl"] == pytest.approx(0.99938, abs=1e-5)
    table = format_table(stats).splitlines()
    assert table[0] == "protocol: coco"
    assert table[1].split() == ["keypoints", "AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    assert table[2].split() == ["1.000"] * 4 + ["0.999"] + ["1.000"] * 5


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
    assert evaluate_results(gt, []) == {k: 0.0 for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50",
                                                         "AR75", "ARm", "ARl")}


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def test_segm_ap_on_hand_made_masks():
    """Two people: A = 20x20 square (area 400, small), B = 40x40 square (area 1600, medium).
    Result 1 is A exactly (IoU 1, score .9); result 2 is B moved 8 px right (IoU with B =
    40*32 / (1600 + 1600 - 1280) = 1280 / 1920 = .667, score .8; no overlap with A).
    Thresholds .50 .55 .60 .65: both match, AP 1. Thresholds .70 ... .95: result 1 matches,
    result 2 misses: recall 1/2 at precision 1 -> 51 of 101 recall points.
    AP = (4 + 6 * 51/101) / 10; AP75 = 51/101; AR100 = (4 + 6 * .5) / 10 = .7.
    Small range: only A counts -> APs = ARs = 1; medium: only B, matched at 4 thresholds -> APm =
    ARm = .4 (result 1, of area 400 and unmatched there, is ignored)."""
    h = w = 100
    a = np.zeros((h, w), bool)
    a[10:30, 10:30] = True
    b = np.zeros((h, w), bool)
    b[50:90, 50:90] = True
    b_moved = np.zeros((h, w), bool)
    b_moved[50:90, 58:98] = True
    assert (b & b_moved).sum() / (b | b_moved).sum() == pytest.approx(2 / 3)

    def kp(x, y):
        k = [0.0] * 51
        k[:3] = [x, y, 2]
        return k
    gt = {"images": [{"id": 1, "width": w, "height": h, "file_name": "m.png"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "keypoints": kp(20, 20), "num_keypoints": 1,
               "iscrowd": 0, "bbox": [10, 10, 20, 20], "area": 400, "segmentation": _rle(a)},
              {"id": 2, "image_id": 1, "category_id": 1, "keypoints": kp(70, 70), "num_keypoints": 1,
               "iscrowd": 0, "bbox": [50, 50, 40, 40], "area": 1600, "segmentation": _rle(b)}],
          "categories": [{"id": 1, "name": "person"}]}
    res = [{"image_id": 1, "category_id": 1, "keypoints": kp(20, 20), "score": 0.9, "segmentation": _rle(a)},
           {"image_id": 1, "category_id": 1, "keypoints": kp(70, 70), "score": 0.8, "segmentation": _rle(b_moved)}]
    stats = evaluate_all(gt, res)
    segm = stats["segm"]
    assert segm["AP"] == pytest.approx((4 + 6 * 51 / 101) / 10, abs=1e-9)
    assert segm["AP50"] == pytest.approx(1.0, abs=1e-9) and segm["AP75"] == pytest.approx(51 / 101, abs=1e-9)
    assert segm["AR100"] == pytest.approx(0.7, abs=1e-9) and segm["AR1"] == pytest.approx(0.5, abs=1e-9)
    assert segm["APs"] == pytest.approx(1.0, abs=1e-9) and segm["ARs"] == pytest.approx(1.0, abs=1e-9)
    assert segm["APm"] == pytest.approx(0.4, abs=1e-9) and segm["ARm"] == pytest.approx(0.4, abs=1e-9)
    assert segm["APl"] == -1.0  # no large person: COCO's "absent" marker
    # the keypoints are exact: keypoint AP is 1 beside the mask figures
    assert stats["AP"] == pytest.approx(1.0, abs=1e-9)
    assert evaluate_results(gt, res, iou_type="segm") == segm
