"""Method- and engine-free pieces of evaluation and benchmarking, shared by ``engine/`` and
``methods/`` (a method's modules import these from here, never from the engine):

- :func:`to_coco_results`: one image's poses (N, K, 3), scores (N,) and masks (N, H, W) as COCO
  results entries;
- :func:`coco_layouts`: the real pose layouts of a COCO keypoint json (the decode benchmarks'
  oracle outputs are drawn from them);
- :func:`set_threads`, :func:`timed_runs`, :func:`timing_summary` and :data:`PEOPLE_BUCKETS`:
  timing of decoders on one thread, summarised by people per image.

COCO AP itself is the engine's (:mod:`posegroup.engine.evaluate`); a method's benchmark plug-in
is handed the engine's scorer (``score_ap``) instead of importing it.
"""
from __future__ import annotations

import os

import numpy as np


def to_coco_results(image_id: int, poses: np.ndarray, scores: np.ndarray, masks: np.ndarray | None = None,
                    category_id: int = 1, file_name: str | None = None) -> list[dict]:
    """COCO results entries of one image: keypoints flat [x, y, s]*K, score, a ``segmentation``
    RLE (counts as str) when masks (N, H, W) are given, and ``file_name`` (the image's base
    name, by which ``evaluate`` finds its ground-truth id) when given."""
    results = []
    rles = None
    if masks is not None and len(masks):
        from pycocotools import mask as mask_utils
        rles = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    for n in range(len(poses)):
        r = {"image_id": int(image_id), "category_id": int(category_id),
             "keypoints": [round(float(v), 3) for v in poses[n].reshape(-1)],
             "score": float(scores[n])}
        if file_name is not None:
            r["file_name"] = os.path.basename(str(file_name))
        if rles is not None:
            rle = dict(rles[n])
            rle["counts"] = rle["counts"].decode("ascii")
            r["segmentation"] = rle
        results.append(r)
    return results


def coco_layouts(ann_file, num_images=None):
    """Real pose layouts of a COCO keypoint json.

    Returns a list (images in file order, the first ``num_images`` if given) of dicts with
    ``image_id``, ``width``, ``height`` and ``keypoints`` (N, K, 3) float64 x, y, v of the
    non-crowd people with >= 1 labelled keypoint (image pixels, continuous convention). K is
    read from the json's category.
    """
    import numpy as np

    from .data.coco import CocoPoseDataset

    ds = CocoPoseDataset(ann_file)
    images = ds.data["images"]
    if num_images is not None:
        images = images[:int(num_images)]
    return [{"image_id": im["id"], "width": im["width"], "height": im["height"],
             "keypoints": ds.annotations(im["id"], with_masks=False)["keypoints"].astype(np.float64)}
            for im in images]


#: People-per-image buckets of the decode benchmarks.
PEOPLE_BUCKETS = {"0": (0, 0), "1": (1, 1), "2-3": (2, 3), "4-6": (4, 6), "7+": (7, 10 ** 9)}


def set_threads(threads) -> int:
    """One-thread (or ``threads``) torch / OpenMP / BLAS / OpenCV for timing."""
    import os

    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads!r}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:  # pragma: no cover - torch is a dependency, but the timing does not need it
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # pragma: no cover
        pass
    return threads


def timed_runs(fns, items, repeats):
    """ms per item of each of ``fns`` {name: f(item)}: the fastest of ``repeats`` runs, in CPU
    time of this process (``time.process_time``; the decoders run on one thread, so on a shared
    machine this is robust to other jobs where wall time is not); the settings take turns on
    every item so that cache and frequency changes hit them alike."""
    import time

    import numpy as np

    times = {name: [] for name in fns}
    for item in items:
        for name, fn in fns.items():
            t = []
            for _ in range(int(repeats)):
                t0 = time.process_time()
                fn(item)
                t.append(time.process_time() - t0)
            times[name].append(1e3 * float(np.min(t)))
    return {name: np.asarray(v) for name, v in times.items()}


def timing_summary(times, people):
    """Median / mean ms and the medians by :data:`PEOPLE_BUCKETS`."""
    import numpy as np

    by_people = {}
    for name, (lo, hi) in PEOPLE_BUCKETS.items():
        sel = (people >= lo) & (people <= hi)
        if sel.any():
            by_people[name] = {"images": int(sel.sum()), "ms": float(np.median(times[sel]))}
    return {"ms": float(np.median(times)) if len(times) else float("nan"),
            "ms_mean": float(np.mean(times)) if len(times) else float("nan"), "by_people": by_people}


def count_figures(results: list[dict], gt: dict, image_ids=None) -> dict[str, float]:
    """How many people the method returns against how many there are, per image.

    results: COCO results (``image_id`` per entry); gt: COCO ground-truth dict, its true people
    the non-crowd annotations with a labelled keypoint; image_ids: the images counted (None:
    all of ``gt``'s). Returns ``count_error`` (mean |returned - true|), ``count_over`` (mean
    max(returned - true, 0)), ``count_under`` (mean max(true - returned, 0)), ``people_returned``
    and ``people_true`` (totals); zeros without images.
    """
    ids = [im["id"] for im in gt["images"]] if image_ids is None else list(image_ids)
    returned = dict.fromkeys(ids, 0)
    true = dict.fromkeys(ids, 0)
    for r in results:
        if r.get("image_id") in returned:
            returned[r["image_id"]] += 1
    for a in gt["annotations"]:
        labelled = np.count_nonzero(np.asarray(a.get("keypoints") or [0, 0, 0])[2::3] > 0)
        if a.get("image_id") in true and not a.get("iscrowd", 0) and labelled:
            true[a["image_id"]] += 1
    diff = np.array([returned[i] - true[i] for i in ids], np.float64)
    if len(diff) == 0:
        diff = np.zeros(1)
    return {"count_error": float(np.abs(diff).mean()), "count_over": float(np.maximum(diff, 0).mean()),
            "count_under": float(np.maximum(-diff, 0).mean()), "people_returned": float(sum(returned.values())),
            "people_true": float(sum(true.values()))}
