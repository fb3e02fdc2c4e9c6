"""AE decode benchmark: layouts read right, figures consistent, AP matching COCOeval."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from posegroup.engine.benchmark import (ae_coco_results, ae_perfect_outputs, benchmark_decode_ae,
                                        coco_layouts)


def test_coco_layouts_match_pycocotools(coco_val_gt):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_val_gt))
    lays = coco_layouts(coco_val_gt)
    assert len(lays) == 511
    for lay in lays[:60]:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=lay["image_id"], iscrowd=False))
        want = [a for a in anns if a["num_keypoints"] > 0]
        assert lay["keypoints"].shape == (len(want), 17, 3)
        for kp, a in zip(lay["keypoints"], want):
            np.testing.assert_array_equal(kp.reshape(-1), a["keypoints"])


def test_perfect_outputs_scale_and_results(coco_val_gt):
    outs = ae_perfect_outputs(coco_val_gt, num_images=3)
    with open(coco_val_gt) as f:
        im = json.load(f)["images"][0]
    assert outs[0]["scale"] == pytest.approx(max(im["width"], im["height"]) / 128)
    assert outs[0]["heatmaps"].shape == (17, 128, 128) and outs[0]["tags"].shape == (17, 128, 128, 1)
    res = ae_coco_results(outs, subpixel="quadratic", nms_ties="first", gated_matching=True)
    assert {r["image_id"] for r in res} <= {o["image_id"] for o in outs}
    assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in res)
    # each ground-truth keypoint is reproduced in image pixels by some result
    lay = coco_layouts(coco_val_gt, 1)[0]
    pts = np.array([r["keypoints"] for r in res if r["image_id"] == lay["image_id"]]).reshape(-1, 17, 3)
    for person in lay["keypoints"]:
        lab = person[:, 2] > 0
        err = np.abs(pts[:, lab, :2] - person[None, lab, :2]).max(axis=(1, 2)).min()
        assert err < 0.1


def test_benchmark_decode_ae_figures(coco_val_gt, capsys):
    res = benchmark_decode_ae(coco_val_gt, num_images=40, repeats=1, threads=1)
    out = capsys.readouterr().out
    assert "refine ms" in out and "COCO AP" in out
    assert res["num_images"] == 40
    assert sum(b["images"] for b in res["by_people"].values()) == 40
    assert set(res["by_people"]) <= {"1", "2-3", "4-6", "7+"}
    assert res["ms_refine"] > 0 and res["ms_no_refine"] > 0
    # defaults are the reference decoder's: AP on perfect outputs is high but not perfect
    assert 0.85 <= res["ap_no_refine"] <= 1.0 and 0.85 <= res["ap_refine"] <= 1.0
    with pytest.raises(ValueError):
        benchmark_decode_ae(coco_val_gt, num_images=1, repeats=0)
