"""Official COCO evaluation (pycocotools COCOeval) of COCO results json.

``evaluate_results(gt, results)`` returns the keypoint AP/AR figures by their usual names, for
any keypoint set (sigmas from the :class:`~posegroup.skeleton.KeypointSet`), and
``evaluate_all`` adds mask AP (iouType "segm") when the results carry segmentations and per-split
figures (CrowdPose easy / medium / hard by ``images[].crowdIndex``).

Ground truth without ``area`` (CrowdPose) is scored with the box area, as CrowdPose does;
``num_keypoints`` is derived when absent.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.coco import DatasetError, load_coco_json
from ..skeleton import KeypointSet, get_keypoint_set

KEYPOINT_STATS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
SEGM_STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
# CrowdPose's crowd-index splits (its toolkit: easy < 0.1 <= medium <= 0.8 < hard).
CROWD_SPLITS = {"easy": (0.0, 0.1), "medium": (0.1, 0.8), "hard": (0.8, 1.01)}


def _prepare_gt(gt: dict | str | Path) -> tuple[dict, str]:
    if isinstance(gt, (str, Path)):
        name = str(gt)
        data = load_coco_json(gt)
    else:
        name, data = "<ground truth>", gt
    data = copy.deepcopy(data)
    data.setdefault("categories", [{"id": 1, "name": "person"}])
    data.setdefault("info", {})
    data.setdefault("licenses", [])
    for a in data["annotations"]:
        if "bbox" not in a:
            kp = np.asarray(a.get("keypoints") or [0, 0, 0], float).reshape(-1, 3)
            lab = kp[kp[:, 2] > 0]
            if len(lab):
                x0, y0 = lab[:, :2].min(0)
                x1, y1 = lab[:, :2].max(0)
                a["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            else:
                a["bbox"] = [0.0, 0.0, 0.0, 0.0]
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        if "num_keypoints" not in a and a.get("keypoints") is not None:
            a["num_keypoints"] = int(np.count_nonzero(np.asarray(a["keypoints"])[2::3] > 0))
        a.setdefault("iscrowd", 0)
    return data, name


def _load_results(results, name: str) -> list[dict]:
    if isinstance(results, (str, Path)):
        p = Path(results)
        if not p.is_file():
            raise DatasetError(f"{p}: results file not found")
        try:
            results = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{p}: malformed results json ({e.msg} at line {e.lineno})") from None
        name = str(p)
    if not isinstance(results, list):
        raise DatasetError(f"{name}: results must be a json list of detections")
    return results


def _coco_from_dict(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate_results(gt_file, results, *, iou_type: str = "keypoints",
                     keypoint_set: KeypointSet | str | None = None, image_ids=None,
                     verbose: bool = False) -> dict:
    """Score COCO results with the official COCOeval.

    Args:
        gt_file: COCO ground-truth json path (or an already loaded dict).
        results: list of COCO result dicts (image_id, category_id, keypoints [x, y, s]*K, score;
            ``segmentation`` RLE for iou_type "segm") or the path of such a json.
        iou_type: "keypoints" or "segm".
        keypoint_set: gives the OKS sigmas; default read from the ground truth's categories.
        image_ids: evaluate on these images only (default: every ground-truth image).
    Returns: dict of the COCO figures by name (AP, AP50, AP75, APm, APl, AR, ... for keypoints).
    """
    gt, name = _prepare_gt(gt_file)
    dets = _load_results(results, "results")
    k = None
    if iou_type == "keypoints":
        if keypoint_set is None:
            cats = [c for c in gt["categories"] if c.get("keypoints")]
            keypoint_set = KeypointSet.from_coco_category(cats[0]) if cats else get_keypoint_set()
        keypoint_set = get_keypoint_set(keypoint_set)
        k = keypoint_set.num_keypoints
        for d in dets:
            if len(d.get("keypoints", ())) != 3 * k:
                raise DatasetError(f"{name}: a result for image {d.get('image_id')} has "
                                   f"{len(d.get('keypoints', ()))} keypoint values, expected {3 * k}")
    names = KEYPOINT_STATS if iou_type == "keypoints" else SEGM_STATS
    gt_ids = {im["id"] for im in gt["images"]}
    unknown = {d.get("image_id") for d in dets} - gt_ids
    if unknown:
        raise DatasetError(f"{name}: results name image ids not in the ground truth, "
                           f"e.g. {sorted(unknown, key=str)[:3]}")
    if iou_type == "segm":
        dets = [d for d in dets if "segmentation" in d]
    if not dets:
        return {n: 0.0 for n in names}
    coco_gt = _coco_from_dict(gt)
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = keypoint_set.sigmas_array
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(buf.getvalue())
    return {n: float(v) for n, v in zip(names, ev.stats)}


def crowd_splits(gt: dict) -> dict[str, list]:
    """Image ids per CrowdPose crowd-index split (empty when no image has ``crowdIndex``)."""
    out = {}
    for split, (lo, hi) in CROWD_SPLITS.items():
        ids = [im["id"] for im in gt["images"] if "crowdIndex" in im and lo <= im["crowdIndex"] < hi]
        if ids:
            out[split] = ids
    return out


def evaluate_all(gt_file, results, *, keypoint_set=None) -> dict:
    """Keypoint figures at the top level, plus ``segm`` (when results carry masks) and
    ``splits`` (CrowdPose easy/medium/hard, when the ground truth has crowd indices)."""
    gt, _ = _prepare_gt(gt_file)
    dets = _load_results(results, str(gt_file))
    stats = evaluate_results(gt, dets, keypoint_set=keypoint_set)
    if any("segmentation" in d for d in dets):
        stats["segm"] = evaluate_results(gt, dets, iou_type="segm")
    splits = crowd_splits(gt)
    if splits:
        stats["splits"] = {s: evaluate_results(gt, dets, keypoint_set=keypoint_set, image_ids=ids)
                           for s, ids in splits.items()}
    return stats


def format_table(stats: dict, title: str = "keypoints") -> str:
    """The figures as a small text table (one row per metric family)."""
    lines = []

    def row(label, d, keys):
        lines.append(f"{label:<12}" + "".join(f"{k:>8}" for k in keys))
        lines.append(f"{'':<12}" + "".join(f"{d.get(k, float('nan')):>8.3f}" for k in keys))

    row(title, stats, [k for k in KEYPOINT_STATS if k in stats])
    if "segm" in stats:
        row("segm", stats["segm"], ["AP", "AP50", "AP75", "APm", "APl", "AR100"])
    for split, d in stats.get("splits", {}).items():
        row(f"  {split}", d, ["AP", "AP50", "AP75", "AR"])
    return "\n".join(lines)


def gt_as_results(gt_file, *, score: float = 1.0, with_masks: bool = False) -> list[dict]:
    """Ground-truth people written as COCO results (for checking the metric: AP must be 1)."""
    gt, _ = _prepare_gt(gt_file)
    out = []
    coco = _coco_from_dict(gt) if with_masks else None
    for a in gt["annotations"]:
        if a.get("iscrowd", 0) or not a.get("num_keypoints", 0):
            continue
        r = {"image_id": a["image_id"], "category_id": a.get("category_id", 1),
             "keypoints": [float(v) for v in a["keypoints"]], "score": score}
        if with_masks and a.get("segmentation"):
            from pycocotools import mask as mask_utils
            rle = coco.annToRLE(a)
            rle["counts"] = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            r["segmentation"] = rle
        out.append(r)
    return out
