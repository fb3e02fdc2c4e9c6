"""Results files and ground truth are checked at the door: one DatasetError line naming the file,
the record and the fault."""
import json
import math

import pytest

from posegroup.cli import main
from posegroup.data.coco import DatasetError
from posegroup.engine.evaluate import evaluate_all, evaluate_results


def _gt():
    kp = [0.0] * 51
    for j in range(17):
        kp[3 * j:3 * j + 3] = [50 + 3 * j, 40 + 5 * j, 2]
    return {"images": [{"id": 1, "width": 200, "height": 200, "file_name": "x.jpg"},
                       {"id": 2, "width": 200, "height": 200, "file_name": "y.jpg"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "keypoints": kp,
                             "num_keypoints": 17, "iscrowd": 0, "bbox": [50, 40, 48, 80], "area": 3000}],
            "categories": [{"id": 1, "name": "person"}]}


def _good(**change):
    r = {"image_id": 1, "category_id": 1, "keypoints": list(_gt()["annotations"][0]["keypoints"]), "score": 0.9}
    r.update(change)
    return r


def _kp_with(j, v):
    kp = list(_gt()["annotations"][0]["keypoints"])
    kp[j] = v
    return kp


def _no(key):
    r = _good()
    del r[key]
    return r


RESULT_FAULTS = [
    ("nan_keypoint", _good(keypoints=_kp_with(4, math.nan)), r"result 1 \(image 1\): keypoint 1 y is nan"),
    ("inf_keypoint", _good(keypoints=_kp_with(0, math.inf)), r"result 1 \(image 1\): keypoint 0 x is inf"),
    ("string_keypoint", _good(keypoints=_kp_with(6, "12")), r"keypoint 2 x is '12', not a finite number"),
    ("null_keypoint", _good(keypoints=_kp_with(8, None)), r"keypoint 2 s is None"),
    ("short_keypoints", _good(keypoints=[1.0] * 42), r"result 1 \(image 1\): 42 keypoint values, expected 51"),
    ("no_keypoints", _no("keypoints"), r"result 1 \(image 1\): keypoints missing"),
    ("no_score", _no("score"), r"result 1 \(image 1\): no score"),
    ("nan_score", _good(score=math.nan), r"result 1 \(image 1\): score nan is not a finite number"),
    ("string_score", _good(score="high"), r"score 'high' is not a finite number"),
    ("bool_score", _good(score=True), r"score True is not a finite number"),
    ("unknown_image", _good(image_id=5), r"result 1 \(image 5\): image id not in the ground truth"),
    ("unknown_category", _good(category_id=7), r"result 1 \(image 1\): category_id 7 is not a ground-truth category"),
    ("no_category", _no("category_id"), r"result 1 \(image 1\): no category_id"),
    ("no_image_id", _no("image_id"), r"result 1: no image_id"),
    ("not_an_object", [1, 2], r"result 1: not a json object"),
    ("bad_rle", _good(segmentation=[[0, 0, 10, 0, 10, 10]]), r"result 1 \(image 1\): segmentation is not an RLE"),
    # beyond 10 image sizes (200 px) from the origin
    ("huge_keypoint", _good(keypoints=_kp_with(3, 1e9)),
     r"result 1 \(image 1\): keypoint 1 at \(1e\+09, 45\) lies beyond 10x the 200x200 image's size"),
    ("negative_keypoint", _good(keypoints=_kp_with(7, -2001)), r"result 1 \(image 1\): keypoint 2 at \(56, -2001\) lies beyond"),
]


@pytest.mark.parametrize("fault,bad,match", RESULT_FAULTS, ids=[f[0] for f in RESULT_FAULTS])
def test_bad_results_file_is_one_line_naming_file_record_fault(tmp_path, fault, bad, match):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt()))
    res = tmp_path / "res.json"
    # json.dumps writes NaN / Infinity, which Python's json (and so the file) reads back
    res.write_text(json.dumps([_good(), bad]))
    for fn in (evaluate_results, evaluate_all):
        with pytest.raises(DatasetError, match=match) as e:
            fn(gt, res)
        msg = str(e.value)
        assert msg.startswith(f"{res}: result 1") and "\n" not in msg, msg


def test_in_memory_results_are_named_as_such():
    with pytest.raises(DatasetError, match=r"^<results>: result 0 \(image 3\): image id not in the ground "
                                           r"truth <ground truth>$"):
        evaluate_results(_gt(), [_good(image_id=3)])


def test_results_errors_blame_the_results_file_in_the_cli(tmp_path, capsys):
    gt, res = tmp_path / "gt.json", tmp_path / "preds.json"
    gt.write_text(json.dumps(_gt()))
    res.write_text(json.dumps([_good(score=None)]))
    assert main(["evaluate", "--gt", str(gt), "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"posegroup: error: {res}: result 0 (image 1): score None is not a finite number"


GT_FAULTS = [
    ("nan_keypoint", lambda d: d["annotations"][0]["keypoints"].__setitem__(3, math.nan),
     r"annotation 10 \(image 1\): keypoint 1 x is nan"),
    ("nan_bbox", lambda d: d["annotations"][0]["bbox"].__setitem__(2, math.nan),
     r"annotation 10 \(image 1\): bbox w is nan"),
    ("duplicate_image", lambda d: d["images"].append(dict(d["images"][0])), r"image 1: duplicate image id"),
    ("duplicate_annotation", lambda d: d["annotations"].append(dict(d["annotations"][0])),
     r"annotation 10 \(image 1\): duplicate annotation id"),
    ("zero_width", lambda d: d["images"][1].__setitem__("width", 0), r"image 2: width 0 is not a positive number"),
]


@pytest.mark.parametrize("fault,spoil,match", GT_FAULTS, ids=[f[0] for f in GT_FAULTS])
def test_bad_ground_truth_is_refused_in_evaluation(tmp_path, fault, spoil, match):
    data = _gt()
    spoil(data)
    with pytest.raises(DatasetError, match="^<ground truth>: " + match):
        evaluate_results(data, [_good()])
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=f"^{p}: " + match):
        evaluate_all(p, [_good()])


def test_nan_ground_truth_no_longer_scores_a_match(tmp_path):
    # a NaN ground truth must not be scored as a match
    data = _gt()
    data["annotations"][0]["keypoints"] = [math.nan] * 51
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="keypoint 0 x is nan"):
        evaluate_all(p, [_good()])


def test_results_just_inside_the_range_rule_are_scored(tmp_path):
    """|x| and |y| up to 10 image sizes are accepted (scored as misses, not refused)."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt()))
    far = _good(keypoints=_kp_with(0, -2000.0), score=0.5)
    far["keypoints"][1] = 2000.0
    stats = evaluate_results(gt, [_good(), far])
    assert stats["AP"] == pytest.approx(1.0)
