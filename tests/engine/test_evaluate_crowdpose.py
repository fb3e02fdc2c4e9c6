"""The official CrowdPose protocol (Jeff-sjtu/CrowdPose crowdposetools/cocoeval.py) on pycocotools.

Hand-worked figures. OKS of one visible keypoint displaced by d px is exp(-d^2 / (2 s^2 (2 sigma)^2)).
Head keypoint (sigma .079, (2 sigma)^2 = .024964), gt box 100 x 100, d = 10 px:
  CrowdPose s^2 = 0.53 * 100 * 100 = 5300: d^2 / (2 * 5300 * .024964) = 100 / 264.62 = .3779,
      OKS = e^-.3779 = .6853 >= .50 .55 .60 .65 -> 4 of the 10 thresholds -> AP .4
  COCO, box area s^2 = 10000: 100 / 499.28 = .2003, OKS = .8185 -> .50 ... .80, 7 thresholds -> AP .7
  COCO, ``area`` 4000: 100 / 199.71 = .5007, OKS = .6061 -> .50 .55 .60, 3 thresholds -> AP .3
"""
import json
import math

import numpy as np
import pytest

from posegroup.cli import main
from posegroup.data.coco import DatasetError
from posegroup.engine.evaluate import (crowd_splits, evaluate_all, evaluate_results, format_table,
                                       gt_as_results, resolve_protocol)
from posegroup.skeleton import COCO17, CROWDPOSE14
from tests.conftest import shared_file

HEAD = 12
# crowdposetools/cocoeval.py computeOks, transcribed: keypoint order of crowdpose_val.json
TOOLKIT_SIGMAS = [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]
TOOLKIT_NAMES = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                 "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                 "right_ankle", "head", "neck"]


def _person(ann_id, image_id, joint=HEAD, xy=(150.0, 150.0), box=(100.0, 100.0, 100.0, 100.0), **extra):
    kp = [0.0] * 42
    kp[3 * joint:3 * joint + 3] = [xy[0], xy[1], 2]
    a = {"id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": kp, "num_keypoints": 1,
         "iscrowd": 0, "bbox": list(box)}
    a.update(extra)
    return a


def _gt(anns, crowd_index=None, n_images=1):
    ids = sorted({a["image_id"] for a in anns} | set(range(1, n_images + 1)))
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in ids]
    if crowd_index is not None:
        for im, c in zip(images, crowd_index):
            im["crowdIndex"] = c
    cat = CROWDPOSE14.coco_category()
    cat["keypoints"] = list(TOOLKIT_NAMES)  # the names as the CrowdPose json spells them
    return {"images": images, "annotations": anns, "categories": [cat]}


def _det(image_id, joint=HEAD, xy=(150.0, 150.0), score=0.9):
    kp = [0.0] * 42
    for j in range(14):
        kp[3 * j:3 * j + 3] = [xy[0], xy[1], 1.0]
    return {"image_id": image_id, "category_id": 1, "keypoints": kp, "score": score}


def test_toolkit_sigmas_and_keypoint_order_are_ours():
    gt = _gt([_person(1, 1)])
    assert resolve_protocol(None, CROWDPOSE14) == "crowdpose"
    from posegroup.skeleton import KeypointSet
    assert KeypointSet.from_coco_category(gt["categories"][0]) is CROWDPOSE14
    assert list(CROWDPOSE14.sigmas) == pytest.approx([s / 10 for s in TOOLKIT_SIGMAS], abs=1e-12)


def test_oks_area_is_053_times_the_gt_box():
    gt = _gt([_person(1, 1)])
    res = [_det(1, xy=(160.0, 150.0))]
    cp = evaluate_results(gt, res)  # auto: CrowdPose-14 -> crowdpose rules
    assert cp["AP"] == pytest.approx(0.4, abs=1e-9) and cp["AR"] == pytest.approx(0.4, abs=1e-9)
    assert cp["AP50"] == pytest.approx(1.0, abs=1e-9) and cp["AP75"] == pytest.approx(0.0, abs=1e-9)
    assert evaluate_results(gt, res, protocol="coco")["AP"] == pytest.approx(0.7, abs=1e-9)
    # an ``area`` field is what COCO scales by; the toolkit ignores it and takes the box
    gt_area = _gt([_person(1, 1, area=4000.0)])
    assert evaluate_results(gt_area, res, protocol="coco")["AP"] == pytest.approx(0.3, abs=1e-9)
    assert evaluate_results(gt_area, res, protocol="crowdpose")["AP"] == pytest.approx(0.4, abs=1e-9)


def test_each_keypoint_uses_its_toolkit_sigma():
    # image j: only keypoint j labelled, displaced so that OKS = .725 with the toolkit's sigma
    # (d = 2 sigma sqrt(2 * 5300 * ln(1 / .725))): matched at .50 ... .70 -> AP .5 per image
    anns, res = [], []
    for j, s in enumerate(TOOLKIT_SIGMAS):
        d = 2 * (s / 10) * math.sqrt(2 * 5300 * math.log(1 / 0.725))
        anns.append(_person(j + 1, j + 1, joint=j))
        res.append(_det(j + 1, xy=(150.0 + d, 150.0)))
    gt = _gt(anns)
    for j in range(14):
        assert evaluate_results(gt, res, image_ids=[j + 1])["AP"] == pytest.approx(0.5, abs=1e-9), j
    assert evaluate_results(gt, res)["AP"] == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("n_before,expected_ap,expected_ar", [(19, 1 / 20, 1.0), (20, 0.0, 0.0)])
def test_at_most_20_detections_per_image(n_before, expected_ap, expected_ar):
    # n_before far-away detections outscore the exact one: the 20th still counts (precision
    # 1/20 at recall 1 -> AP .05, AR 1), the 21st is never looked at (AP 0, AR 0)
    gt = _gt([_person(1, 1)])
    res = [_det(1, xy=(600.0, 450.0), score=1.0 - 0.01 * i) for i in range(n_before)]
    res.append(_det(1, score=0.5))
    for protocol in ("crowdpose", "coco"):
        st = evaluate_results(gt, res, protocol=protocol)
        assert st["AP"] == pytest.approx(expected_ap, abs=1e-9)
        assert st["AR"] == pytest.approx(expected_ar, abs=1e-9)


def test_crowd_index_splits_and_their_ap():
    # easy < 0.2 <= medium < 0.8 <= hard (crowdposetools split(), first=0.2, second=0.8)
    ci = [0.0, 0.19999, 0.2, 0.79, 0.8, 2.5]
    gt = _gt([_person(i, i) for i in range(1, 7)], crowd_index=ci)
    assert crowd_splits(gt) == {"easy": [1, 2], "medium": [3, 4], "hard": [5, 6]}
    # exact on images 1, 2 (score .9); 10 px off on 3, 4 (OKS .6853, score .8); none on 5, 6
    res = [_det(1), _det(2), _det(3, xy=(160.0, 150.0), score=0.8), _det(4, xy=(160.0, 150.0), score=0.8)]
    st = evaluate_all(gt, res)
    assert st["protocol"] == "crowdpose"
    assert st["splits"]["easy"]["AP"] == pytest.approx(1.0, abs=1e-9)
    assert st["splits"]["medium"]["AP"] == pytest.approx(0.4, abs=1e-9)
    assert st["splits"]["hard"]["AP"] == pytest.approx(0.0, abs=1e-9)
    # all six: at OKS thresholds <= .65 four hits (recall 4/6: 67 of 101 recall points at
    # precision 1), above two hits then two misses (recall 2/6: 34 points):
    # AP = (4 * 67 + 6 * 34) / 1010 = 472 / 1010; AR = (4 * 4/6 + 6 * 2/6) / 10
    assert st["AP"] == pytest.approx(472 / 1010, abs=1e-9)
    assert st["AP50"] == pytest.approx(67 / 101, abs=1e-9) and st["AP75"] == pytest.approx(34 / 101, abs=1e-9)
    assert st["AR"] == pytest.approx((4 * 4 / 6 + 6 * 2 / 6) / 10, abs=1e-9)
    # COCO rules on the same data: the displaced people reach OKS .8185 (7 thresholds)
    co = evaluate_all(gt, res, protocol="coco")
    assert co["protocol"] == "coco" and co["splits"]["medium"]["AP"] == pytest.approx(0.7, abs=1e-9)
    assert co["AP"] == pytest.approx((7 * 67 + 3 * 34) / 1010, abs=1e-9)
    assert "protocol: crowdpose" in format_table(st)


def test_crowd_index_missing_on_one_image_is_an_error():
    gt = _gt([_person(1, 1), _person(2, 2)], crowd_index=[0.5])
    with pytest.raises(DatasetError, match=r"<ground truth>: image 2: no crowdIndex"):
        evaluate_all(gt, [_det(1)])


def test_protocol_argument_is_checked():
    gt = _gt([_person(1, 1)])
    with pytest.raises(ValueError, match="unknown evaluation protocol 'crowd'"):
        evaluate_results(gt, [_det(1)], protocol="crowd")
    kp = [0.0] * 51
    kp[:3] = [10, 10, 2]
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": kp, "bbox": [0, 0, 20, 20]}],
            "categories": [COCO17.coco_category()]}
    with pytest.raises(DatasetError, match="protocol 'crowdpose' scores CrowdPose-14 keypoints") as e:
        evaluate_results(coco, [], protocol="crowdpose")
    assert "\n" not in str(e.value)


def test_cli_protocol_flag(tmp_path, capsys):
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(_gt([_person(1, 1)])))
    r.write_text(json.dumps([_det(1, xy=(160.0, 150.0))]))
    for flag, ap in ((None, 0.4), ("crowdpose", 0.4), ("coco", 0.7)):
        s = tmp_path / f"stats_{flag}.json"
        argv = ["evaluate", "--gt", str(g), "--results", str(r), "--stats", str(s)]
        assert main(argv + (["--protocol", flag] if flag else [])) == 0
        st = json.loads(s.read_text())
        assert st["AP"] == pytest.approx(ap, abs=1e-9) and st["protocol"] == (flag or "crowdpose")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--gt", str(g), "--results", str(r), "--protocol", "mpii"])
    assert e.value.code == 2 and "invalid choice: 'mpii'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- real annotations
def test_ground_truth_scores_one_per_split_on_crowdpose_val(shared_data):
    gt = shared_file("crowdpose/crowdpose_val.json")
    stats = evaluate_all(gt, gt_as_results(gt))
    assert stats["protocol"] == "crowdpose"
    for k in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert stats[k] == pytest.approx(1.0, abs=1e-9), k
    for s in ("easy", "medium", "hard"):
        assert stats["splits"][s]["AP"] == pytest.approx(1.0, abs=1e-9), s
    # every one of the 2000 images falls in a split (crowdIndex 0 ... 3.02)
    sizes = {s: len(ids) for s, ids in crowd_splits(json.loads(gt.read_text())).items()}
    assert sizes == {"easy": 411, "medium": 1240, "hard": 349}


def _perturbed(gt_file):
    """Every labelled, non-crowd person, each coordinate moved by N(0, (0.05 sqrt(w h))^2),
    score U(0.1, 1), numpy default_rng(0), in annotation order."""
    gt = json.loads(gt_file.read_text())
    rng = np.random.default_rng(0)
    res = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints"):
            continue
        kp = np.array(a["keypoints"], float).reshape(-1, 3)
        s = math.sqrt(a["bbox"][2] * a["bbox"][3])
        kp[:, :2] += rng.normal(0, 0.05 * s, size=(len(kp), 2))
        res.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                    "score": float(rng.uniform(0.1, 1.0))})
    return res


def test_perturbed_crowdpose_val_matches_the_official_toolkit(shared_data):
    """Figures printed by the official toolkit (Jeff-sjtu/CrowdPose 86fe5e1, crowdposetools
    COCOeval, run with pycocotools' mask module and np.float -> float) for these results."""
    gt = shared_file("crowdpose/crowdpose_val.json")
    res = _perturbed(gt)
    st = evaluate_all(gt, res)
    official = {"AP": 0.6804, "AP50": 0.9898, "AP75": 0.9338, "AR": 0.7333, "AR50": 0.9994, "AR75": 0.9671}
    for k, v in official.items():
        assert st[k] == pytest.approx(v, abs=2e-4), k
    for s, v in {"easy": 0.6918, "medium": 0.6812, "hard": 0.6731}.items():
        assert st["splits"][s]["AP"] == pytest.approx(v, abs=2e-4), s
    # COCO's rules (box area, no 0.53) on the same results score far higher
    assert evaluate_results(gt, res, protocol="coco")["AP"] == pytest.approx(0.8302, abs=2e-4)


# ---------------------------------------------------------------------------- OCHuman
def test_ochuman_evaluates_as_coco17(shared_data):
    gt_file = shared_file("fixtures/ochuman/test_ochuman.json")
    gt = json.loads(gt_file.read_text())
    res = gt_as_results(gt_file)
    st = evaluate_all(gt_file, res)
    assert st["protocol"] == "coco" and "splits" not in st and st["AP"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(DatasetError, match="ground truth has coco17"):
        evaluate_all(gt_file, res, protocol="crowdpose")
    # annotation 3 (image 2, area 94308, 13 labelled joints, overlapping annotation 2) moved
    # 35 px right and scored last: OKS over its labelled joints with COCO's sigmas and area
    # is .7206 (matched at .50 ... .70, 5 thresholds)
    coco_sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                            .87, .87, .89, .89]) / 10
    a3 = next(a for a in gt["annotations"] if a["id"] == 3)
    vis = np.array(a3["keypoints"][2::3]) > 0
    oks = np.mean(np.exp(-35 ** 2 / (2 * 94308 * (2 * coco_sigmas[vis]) ** 2)))
    n = int(np.sum(oks >= np.linspace(0.5, 0.95, 10)))
    assert oks == pytest.approx(0.7206, abs=1e-4) and n == 5
    moved = [dict(r) for r in res]
    i3 = next(i for i, r in enumerate(res) if r["image_id"] == 2 and r["keypoints"] == [float(v) for v in a3["keypoints"]])
    kp = np.array(moved[i3]["keypoints"]).reshape(17, 3)
    kp[:, 0] += 35
    moved[i3] = dict(moved[i3], keypoints=kp.ravel().tolist(), score=0.5)
    # matched at n thresholds (AP 1 there); elsewhere 4 hits then a miss: 81 of 101 recall points
    st = evaluate_results(gt_file, moved)
    assert st["AP"] == pytest.approx((5 + 5 * 81 / 101) / 10, abs=1e-9)
