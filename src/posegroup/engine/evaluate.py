"""Official COCO / CrowdPose evaluation (pycocotools COCOeval) of COCO results json.

``evaluate_results(gt, results)`` returns the keypoint AP/AR figures by their usual names, for
any keypoint set (sigmas from the :class:`~posegroup.skeleton.KeypointSet`), and
``evaluate_all`` adds mask AP (iouType "segm") when the results carry segmentations and per-split
figures (CrowdPose easy / medium / hard by ``images[].crowdIndex``).

Two protocols (``protocol=`` "coco" | "crowdpose" | None = chosen from the ground truth's
keypoint set: CrowdPose-14 -> "crowdpose", anything else, OCHuman's COCO-17 included -> "coco"):

- "coco": pycocotools as published. OKS scale s^2 is the annotation's ``area``; ground truth
  without ``area`` is given the box area w x h.
- "crowdpose": the rules of the official CrowdPose toolkit (Jeff-sjtu/CrowdPose,
  crowdpose-api/PythonAPI/crowdposetools/cocoeval.py), reproduced on pycocotools:
  OKS scale s^2 = 0.53 x gt bbox width x height, whatever ``area`` says (computeOks and
  evaluateImg); its 14 sigmas .79 .79 .72 .72 .62 .62 1.07 1.07 .87 .87 .89 .89 .79 .79 / 10
  in CrowdPose's keypoint order (= ``CROWDPOSE14.sigmas``); at most 20 detections per image,
  highest score first (Params.setKpParams maxDets [20], as COCO's keypoint params); AP/AR over
  all areas. AP(easy/medium/hard) is the mean precision of the same evaluation run on the images
  whose crowdIndex is < 0.2 / in [0.2, 0.8) / >= 0.8 (get_type_result + split). The toolkit
  rounds those three to 4 decimals; we do not. It reports no medium/large figures: APm, APl,
  ARm, ARl here apply COCO's 32^2 / 96^2 bounds to the 0.53-scaled area and are not official.

Every input is checked at the door: the ground truth by
:func:`~posegroup.data.coco.validate_coco`, the results record by record (numbers, lengths,
scores, image and category ids), each fault one :class:`DatasetError` line naming the file, the
record and the fault. Mask AP ("segm") follows COCO's rules under both protocols.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.coco import DatasetError, load_coco_json, validate_coco
from ..skeleton import CROWDPOSE14, KeypointSet, get_keypoint_set

KEYPOINT_STATS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
SEGM_STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
PROTOCOLS = ("coco", "crowdpose")
# CrowdPose toolkit: OKS area = 0.53 * bbox w * h; crowd-index splits easy < 0.2 <= medium < 0.8 <= hard.
CROWDPOSE_AREA_SCALE = 0.53
CROWD_SPLIT_BOUNDS = {"easy": 0.2, "medium": 0.8, "hard": math.inf}


# ---------------------------------------------------------------------------- inputs
def _load_gt(gt) -> tuple[dict, str]:
    """A validated deep copy of the ground truth and the name errors blame."""
    if isinstance(gt, (str, Path)):
        return load_coco_json(gt), str(gt)
    name = "<ground truth>"
    if not isinstance(gt, dict) or not isinstance(gt.get("annotations"), list) \
            or not isinstance(gt.get("images"), list):
        raise DatasetError(f"{name}: not a COCO annotation dict (needs 'images' and 'annotations' lists)")
    validate_coco(gt, name)
    return copy.deepcopy(gt), name


def _gt_keypoint_set(gt: dict, keypoint_set) -> KeypointSet:
    if keypoint_set is None:
        cats = [c for c in gt.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
        return KeypointSet.from_coco_category(cats[0]) if cats else get_keypoint_set()
    return get_keypoint_set(keypoint_set)


def resolve_protocol(protocol: str | None, keypoint_set: KeypointSet, gt_name: str = "<ground truth>") -> str:
    """"coco" or "crowdpose": ``protocol`` checked, or chosen from the keypoint set (None)."""
    is_crowdpose = keypoint_set.names == CROWDPOSE14.names
    if protocol is None:
        return "crowdpose" if is_crowdpose else "coco"
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol == "crowdpose" and not is_crowdpose:
        raise DatasetError(f"{gt_name}: protocol 'crowdpose' scores CrowdPose-14 keypoints, but the ground "
                           f"truth has {keypoint_set.name} ({keypoint_set.num_keypoints} keypoints)")
    return protocol


def _fill_gt(data: dict, protocol: str) -> dict:
    """Fields COCOeval needs: categories, bbox (from the keypoints when absent), area (the
    protocol's OKS scale), num_keypoints, iscrowd. Modifies and returns ``data``."""
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
        if protocol == "crowdpose":
            a["area"] = CROWDPOSE_AREA_SCALE * float(a["bbox"][2]) * float(a["bbox"][3])
        elif "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        if "num_keypoints" not in a and a.get("keypoints") is not None:
            a["num_keypoints"] = int(np.count_nonzero(np.asarray(a["keypoints"])[2::3] > 0))
        a.setdefault("iscrowd", 0)
    return data


def _read_results(results) -> tuple[list, str]:
    """The detections and the name errors blame (the results file, or ``<results>``)."""
    if isinstance(results, (str, Path)):
        p = Path(results)
        if not p.is_file():
            raise DatasetError(f"{p}: results file not found")
        try:
            results = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{p}: malformed results json ({e.msg} at line {e.lineno})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{p}: cannot read results ({e})") from None
        name = str(p)
    else:
        name = "<results>"
    if not isinstance(results, list):
        raise DatasetError(f"{name}: results must be a json list of detections")
    return results, name


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: A result keypoint x (y) may lie at most this many image widths (heights) from the origin.
RESULT_COORD_LIMIT = 10.0


def _check_result_range(kp: list, where: str, size: tuple | None) -> None:
    """kp: finite [x, y, s] * K of one result; ``size``: its image's (W, H) or None (no check)."""
    if size is None:
        return
    xy = np.abs(np.asarray(kp, float).reshape(-1, 3)[:, :2])
    out = (xy > RESULT_COORD_LIMIT * np.asarray(size, float)).any(1)
    if out.any():
        j = int(np.argmax(out))
        raise DatasetError(f"{where}: keypoint {j} at ({kp[3 * j]:g}, {kp[3 * j + 1]:g}) lies beyond "
                           f"{RESULT_COORD_LIMIT:g}x the {size[0]:g}x{size[1]:g} image's size from its origin")


def check_results(dets: list, name: str, gt: dict, gt_name: str, *, num_keypoints: int | None) -> None:
    """One-line :class:`DatasetError` ``"<name>: result <i> (image <id>): <fault>"`` for the first
    bad detection: not an object, image id missing or not in the ground truth, category id
    missing or not a ground-truth category, score missing or not a finite number, keypoints
    (when ``num_keypoints`` is given) missing, of the wrong length, or not finite numbers, or a
    keypoint x (y) beyond :data:`RESULT_COORD_LIMIT` image widths (heights) from the origin
    (``|x| > 10 W``: no decoder puts a joint there; a garbage coordinate would still weigh in
    COCOeval's OKS), a segmentation that is not an RLE dict."""
    img_ids = {im["id"] for im in gt["images"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"] if "width" in im and "height" in im}
    cat_ids = {c["id"] for c in gt.get("categories") or [] if isinstance(c, dict) and "id" in c} or {1}
    for i, d in enumerate(dets):
        if not isinstance(d, dict):
            raise DatasetError(f"{name}: result {i}: not a json object")
        if "image_id" not in d:
            raise DatasetError(f"{name}: result {i}: no image_id")
        iid = d["image_id"]
        where = f"{name}: result {i} (image {iid!r})"
        try:
            known = iid in img_ids
        except TypeError:
            known = False
        if not known:
            raise DatasetError(f"{where}: image id not in the ground truth {gt_name}")
        if "category_id" not in d:
            raise DatasetError(f"{where}: no category_id")
        try:
            known = d["category_id"] in cat_ids
        except TypeError:
            known = False
        if not known:
            raise DatasetError(f"{where}: category_id {d['category_id']!r} is not a ground-truth category "
                               f"(known: {sorted(cat_ids, key=str)})")
        if "score" not in d:
            raise DatasetError(f"{where}: no score")
        if not _finite(d["score"]):
            raise DatasetError(f"{where}: score {d['score']!r} is not a finite number")
        if num_keypoints is not None:
            kp = d.get("keypoints")
            if not isinstance(kp, list):
                raise DatasetError(f"{where}: keypoints missing or not a list")
            if len(kp) != 3 * num_keypoints:
                raise DatasetError(f"{where}: {len(kp)} keypoint values, expected {3 * num_keypoints} "
                                   f"({num_keypoints} keypoints x 3)")
            for j, v in enumerate(kp):
                if not _finite(v):
                    raise DatasetError(f"{where}: keypoint {j // 3} {'xys'[j % 3]} is {v!r}, not a finite number")
            _check_result_range(kp, where, sizes.get(iid))
        if "segmentation" in d:
            s = d["segmentation"]
            if not (isinstance(s, dict) and isinstance(s.get("size"), list) and len(s["size"]) == 2
                    and isinstance(s.get("counts"), (str, list))):
                raise DatasetError(f"{where}: segmentation is not an RLE dict with 'size' [h, w] and 'counts'")


def map_file_names(dets: list, name: str, gt: dict, gt_name: str) -> list:
    """The detections with ``image_id`` taken from the ground-truth image of the same file name
    (base names compared) wherever a detection carries ``file_name`` (``predict`` writes it; its
    ids are list indices when no ``--gt`` was given). A file name that no ground-truth image (or
    more than one) has is a one-line :class:`DatasetError` naming both files."""
    by_name: dict[str, list] = {}
    for im in gt["images"]:
        if isinstance(im.get("file_name"), str):
            by_name.setdefault(os.path.basename(im["file_name"]), []).append(im["id"])
    out = []
    for i, d in enumerate(dets):
        if isinstance(d, dict) and d.get("file_name") is not None:
            base = os.path.basename(str(d["file_name"]))
            ids = by_name.get(base, [])
            if len(ids) != 1:
                fault = "no image" if not ids else f"{len(ids)} images (ambiguous)"
                raise DatasetError(f"{name}: result {i}: file_name {base!r} matches {fault} of the ground truth {gt_name}")
            d = dict(d, image_id=ids[0])
        out.append(d)
    return out


def _coco_from_dict(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------- scoring
class _Scorer:
    """Ground truth and detections indexed once, scored on any subset of images."""

    def __init__(self, gt: dict, dets: list, iou_type: str, sigmas):
        self.iou_type, self.sigmas = iou_type, sigmas
        self.coco_gt = _coco_from_dict(gt)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco_dt = self.coco_gt.loadRes(copy.deepcopy(dets)) if dets else None

    def score(self, image_ids=None, verbose: bool = False) -> dict:
        names = KEYPOINT_STATS if self.iou_type == "keypoints" else SEGM_STATS
        if self.coco_dt is None:
            return {n: 0.0 for n in names}
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            ev = COCOeval(self.coco_gt, self.coco_dt, self.iou_type)
            if self.iou_type == "keypoints":
                ev.params.kpt_oks_sigmas = self.sigmas
                ev.params.maxDets = [20]  # COCO's and CrowdPose's keypoint setting, stated
            if image_ids is not None:
                ev.params.imgIds = sorted(set(image_ids))
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if verbose:
            print(buf.getvalue())
        return {n: float(v) for n, v in zip(names, ev.stats)}


def _prepare(gt_file, results, iou_type, keypoint_set, protocol):
    gt, gt_name = _load_gt(gt_file)
    dets, res_name = _read_results(results)
    ks = _gt_keypoint_set(gt, keypoint_set)
    protocol = resolve_protocol(protocol, ks, gt_name)
    need = 3 * ks.num_keypoints
    odd = next((a for a in gt["annotations"] if isinstance(a.get("keypoints"), list) and len(a["keypoints"]) != need), None)
    if odd is not None:
        raise DatasetError(f"{gt_name}: annotation {odd.get('id')!r} has {len(odd['keypoints'])} keypoint values, but "
                           f"the keypoint set ({ks.name}, from its categories or given) needs {need}")
    image_ids = {im.get("id") for im in gt["images"] if isinstance(im, dict)}
    orphan = next((a for a in gt["annotations"] if a.get("image_id") not in image_ids), None)
    if orphan is not None:
        raise DatasetError(f"{gt_name}: annotation {orphan.get('id')!r} names image id {orphan.get('image_id')!r}, "
                           "which is not in 'images' (it would be dropped from the score)")
    _fill_gt(gt, protocol)
    dets = map_file_names(dets, res_name, gt, gt_name)
    check_results(dets, res_name, gt, gt_name,
                  num_keypoints=ks.num_keypoints if iou_type == "keypoints" else None)
    return gt, gt_name, dets, ks, protocol


def evaluate_results(gt_file, results, *, iou_type: str = "keypoints",
                     keypoint_set: KeypointSet | str | None = None, image_ids=None,
                     protocol: str | None = None, verbose: bool = False) -> dict:
    """Score COCO results with pycocotools' COCOeval under the COCO or CrowdPose protocol.

    Args:
        gt_file: COCO ground-truth json path (or an already loaded dict).
        results: list of COCO result dicts (image_id, category_id, keypoints [x, y, s]*K, score;
            ``segmentation`` RLE for iou_type "segm") or the path of such a json.
        iou_type: "keypoints" or "segm".
        keypoint_set: gives the OKS sigmas; default read from the ground truth's categories.
        image_ids: evaluate on these images only (default: every ground-truth image).
        protocol: "coco", "crowdpose" or None (CrowdPose-14 ground truth -> "crowdpose").
    Returns: dict of the figures by name (AP, AP50, AP75, APm, APl, AR, ... for keypoints).
    """
    if iou_type not in ("keypoints", "segm"):
        raise ValueError(f"iou_type must be 'keypoints' or 'segm', not {iou_type!r}")
    gt, _, dets, ks, _ = _prepare(gt_file, results, iou_type, keypoint_set, protocol)
    if iou_type == "segm":
        dets = [d for d in dets if "segmentation" in d]
    return _Scorer(gt, dets, iou_type, ks.sigmas_array).score(image_ids, verbose)


def score_results(gt_file, results, image_ids=None, *, keypoint_set: KeypointSet | str | None = None,
                  keys=None) -> dict[str, float]:
    """The keypoint figures ``keys`` (default all of :data:`KEYPOINT_STATS`) of COCO ``results``
    on ``image_ids`` (default every ground-truth image) of ``gt_file``
    (:func:`evaluate_results`): the one scorer of a model's predictions (``evaluate_predictor``,
    the demo, the benchmarks, ``benchmark methods``). All 0.0 without a result."""
    keys = tuple(KEYPOINT_STATS if keys is None else keys)
    if not results:
        return {k: 0.0 for k in keys}
    stats = evaluate_results(gt_file, results, keypoint_set=keypoint_set, image_ids=image_ids)
    return {k: float(stats[k]) for k in keys}


def crowd_splits(gt: dict, gt_name: str = "<ground truth>") -> dict[str, list]:
    """Image ids per CrowdPose crowd-index split, as the toolkit's ``split``: easy < 0.2,
    medium < 0.8, hard the rest. Empty when no image has ``crowdIndex``; an image without one
    among images with one is a :class:`DatasetError`. Empty splits are left out."""
    images = gt["images"]
    if not any("crowdIndex" in im for im in images):
        return {}
    out = {s: [] for s in CROWD_SPLIT_BOUNDS}
    for im in images:
        if "crowdIndex" not in im:
            raise DatasetError(f"{gt_name}: image {im['id']!r}: no crowdIndex, which the easy/medium/hard "
                               f"split needs (other images have one)")
        split = next(s for s, hi in CROWD_SPLIT_BOUNDS.items() if im["crowdIndex"] < hi)
        out[split].append(im["id"])
    return {s: ids for s, ids in out.items() if ids}


def _has_mask(segm) -> bool:
    """Whether a ground-truth ``segmentation`` outlines something: an RLE dict, or polygons
    with at least one of 3 points or more."""
    if isinstance(segm, dict):
        return "counts" in segm and "size" in segm
    return isinstance(segm, list) and any(isinstance(p, list) and len(p) >= 6 for p in segm)


def _people_with_masks(gt: dict) -> tuple[dict, int]:
    """``gt`` with only the annotations that have a mask (mask AP cannot score the others; COCO
    keypoint files hold people with ``"segmentation": []``), and how many were left out."""
    kept = [a for a in gt["annotations"] if _has_mask(a.get("segmentation"))]
    kept = [dict(a, segmentation=[p for p in a["segmentation"] if isinstance(p, list) and len(p) >= 6])
            if isinstance(a["segmentation"], list) else a for a in kept]
    return dict(gt, annotations=kept), len(gt["annotations"]) - len(kept)


def _notes(gt: dict, gt_name: str, dets: list, results, ks: KeypointSet, keypoint_set) -> list[str]:
    """What the scoring assumed or met that the figures do not show: no keypoint category in the
    ground truth (scored with ``ks``), a results file with no results."""
    notes = []
    if keypoint_set is None and not any(isinstance(c, dict) and c.get("keypoints") for c in gt.get("categories") or []):
        notes.append(f"{gt_name}: no category names its keypoints; scored as {ks.name} "
                     f"({ks.num_keypoints} keypoints)")
    if not dets and isinstance(results, (str, Path)):
        notes.append(f"{results}: holds no results; every ground-truth person counts as missed")
    return notes


def evaluate_all(gt_file, results, *, keypoint_set=None, protocol: str | None = None,
                 only_with_results: bool = False, method=None) -> dict:
    """Keypoint figures at the top level, ``protocol`` (the one applied), ``images_scored`` and
    ``images_total`` (of the ground truth), plus ``segm`` (when results carry masks) and
    ``splits`` (CrowdPose easy/medium/hard, when the ground truth has crowd indices).

    ``only_with_results``: score only the ground-truth images that have results (a prediction
    of some of its images), else all of them (an image without results counts its people as
    missed). ``method``: the :class:`~posegroup.methods.base.Method` that made the results; its
    ``evaluation_figures`` (when any) go under ``figures``, for all images and per split."""
    gt, gt_name, dets, ks, protocol = _prepare(gt_file, results, "keypoints", keypoint_set, protocol)
    notes = _notes(gt, gt_name, dets, results, ks, keypoint_set)
    ids = sorted({d["image_id"] for d in dets}, key=str) if only_with_results else None
    scorer = _Scorer(gt, dets, "keypoints", ks.sigmas_array)
    stats = scorer.score(ids)
    stats.update(protocol=protocol, images_scored=len(gt["images"]) if ids is None else len(ids),
                 images_total=len(gt["images"]))
    if notes:
        stats["notes"] = notes
    masked = [d for d in dets if "segmentation" in d]
    if masked:
        segm_gt, unmasked = _people_with_masks(gt)
        stats["segm"] = _Scorer(segm_gt, masked, "segm", None).score(ids)
        if unmasked:
            stats["segm"]["gt_without_mask"] = unmasked
    splits = crowd_splits(gt, gt_name)
    if splits:
        if ids is not None:   # the scored images of each split (a split without any is left out)
            splits = {s: kept for s, s_ids in splits.items() if (kept := sorted(set(s_ids) & set(ids), key=str))}
        stats["splits"] = {s: scorer.score(s_ids) for s, s_ids in splits.items()}
    if method is not None and (figures := method.evaluation_figures(dets, gt, ids)):
        stats["figures"] = figures
        for s, s_ids in (splits or {}).items():
            stats["splits"][s]["figures"] = method.evaluation_figures(dets, gt, s_ids)
    return stats


def format_table(stats: dict, title: str = "keypoints") -> str:
    """The figures as a small text table (one row per metric family)."""
    lines = []

    def row(label, d, keys):
        widths = [max(8, len(k) + 1) for k in keys]
        lines.append(f"{label:<12}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
        lines.append(f"{'':<12}" + "".join(f"{d.get(k, float('nan')):>{w}.3f}" for k, w in zip(keys, widths)))

    if "protocol" in stats:
        lines.append(f"protocol: {stats['protocol']}")
    row(title, stats, [k for k in KEYPOINT_STATS if k in stats])
    if "segm" in stats:
        row("segm", stats["segm"], ["AP", "AP50", "AP75", "APm", "APl", "AR100"])
        if stats["segm"].get("gt_without_mask"):
            lines.append(f"segm: {stats['segm']['gt_without_mask']} ground-truth annotations have no segmentation "
                         "and are left out of the mask figures")
    for split, d in stats.get("splits", {}).items():
        row(f"  {split}", d, ["AP", "AP50", "AP75", "AR"])
    if "figures" in stats:
        row("method", stats["figures"], list(stats["figures"]))
        for split, d in stats.get("splits", {}).items():
            if "figures" in d:
                row(f"  {split}", d["figures"], list(d["figures"]))
    return "\n".join(lines)


def gt_as_results(gt_file, *, score: float = 1.0, with_masks: bool = False) -> list[dict]:
    """Ground-truth people written as COCO results (for checking the metric: AP must be 1)."""
    gt, _ = _load_gt(gt_file)
    _fill_gt(gt, "coco")
    out = []
    coco = _coco_from_dict(gt) if with_masks else None
    for a in gt["annotations"]:
        if a.get("iscrowd", 0) or not a.get("num_keypoints", 0):
            continue
        r = {"image_id": a["image_id"], "category_id": a.get("category_id", 1),
             "keypoints": [float(v) for v in a["keypoints"]], "score": score}
        if with_masks and a.get("segmentation"):
            rle = coco.annToRLE(a)
            rle["counts"] = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            r["segmentation"] = rle
        out.append(r)
    return out
