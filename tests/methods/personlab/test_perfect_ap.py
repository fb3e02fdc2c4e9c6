"""Perfect PersonLab outputs of the real COCO val2017 layouts -> decode_poses -> COCOeval."""
import contextlib
import io
import json

import numpy as np
import pytest

from posegroup.engine.benchmark import personlab_coco_results, personlab_perfect_outputs


def _dedup_gt(ann_file, out_path, dist_px=12.0):
    """Copy of the annotations without duplicate people: COCO val2017 annotates a few people
    twice (keypoints a few px apart); no bottom-up decoder with an NMS radius can return both.
    Drops the later annotation of any pair whose shared labelled keypoints have a median
    distance < ``dist_px``. Returns the number dropped."""
    with open(ann_file) as f:
        data = json.load(f)
    by_img = {}
    for a in data["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    drop = set()
    for anns in by_img.values():
        kps = [(a, np.asarray(a["keypoints"], float).reshape(-1, 3)) for a in anns
               if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
        for i, (a, ka) in enumerate(kps):
            for b, kb in kps[:i]:
                both = (ka[:, 2] > 0) & (kb[:, 2] > 0)
                if b["id"] not in drop and both.sum() >= 2 and \
                        np.median(np.hypot(*(ka[both, :2] - kb[both, :2]).T)) < dist_px:
                    drop.add(a["id"])
    data["annotations"] = [a for a in data["annotations"] if a["id"] not in drop]
    with open(out_path, "w") as f:
        json.dump(data, f)
    return len(drop)


def _ap(ann_file, results, ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _run(coco_val_gt, tmp_path, num_images, **decode_opts):
    outs = personlab_perfect_outputs(coco_val_gt, stride=8, num_images=num_images)
    res = personlab_coco_results(outs, **decode_opts)
    ids = [o["image_id"] for o in outs]
    dedup = tmp_path / "dedup.json"
    dropped = _dedup_gt(coco_val_gt, dedup)
    return _ap(coco_val_gt, res, ids), _ap(dedup, res, ids), dropped


def test_perfect_outputs_ap_first_30_images(coco_val_gt, tmp_path):
    stats, stats_dedup, dropped = _run(coco_val_gt, tmp_path, 30)
    assert dropped >= 1
    assert stats[0] >= 0.97, stats[0]
    assert stats_dedup[0] >= 0.985, stats_dedup[0]
    assert stats_dedup[1] >= 0.99  # AP50


@pytest.mark.slow
@pytest.mark.parametrize("opts", [{}, {"mid_refine": "point"}, {"mid_refine_steps": 0}])
def test_perfect_outputs_ap_511_images(coco_val_gt, tmp_path, opts):
    stats, stats_dedup, dropped = _run(coco_val_gt, tmp_path, None, **opts)
    print(opts, "AP", stats[0], "AP (duplicates removed)", stats_dedup[0], "dropped", dropped)
    # measured (stride 8 on the image): field refine 0.980, point refine 0.982
    assert stats[0] >= 0.975
    assert stats_dedup[0] >= 0.975
