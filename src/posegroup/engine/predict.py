"""Prediction: images or a dataset -> COCO results (+ PNGs with skeletons).

A *predictor* is any callable ``predictor(image uint8 (H, W, 3) RGB) -> (poses, scores)`` or
``(poses, scores, masks)`` with poses (N, K, 3) = x, y, score in image pixels, scores (N,) and
masks (N, H, W) bool. :func:`make_predictor` / :func:`checkpoint_predictor` wrap a trained model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..data.coco import read_image
from ..evaluation import to_coco_results

#: Image file extensions collected from folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class PredictError(ValueError):
    """Bad input to prediction (the message names the file)."""


def make_predictor(model: torch.nn.Module, method, device: str | torch.device | None = None,
                   **inference_opts: Any) -> Callable[[np.ndarray], tuple]:
    """``image -> method.predict(model, image, **inference_opts)`` with the model in eval mode on
    ``device`` (default: where its parameters are) and gradients off: a
    :class:`~posegroup.engine.predictor.TimedRun` of the method's network and decoder, its
    inference settings checked here, once. ``input_size`` / ``scales`` beyond
    :mod:`posegroup.limits`' bounds, or an option the method refuses, are a ValueError."""
    from ..limits import check_test_sizes
    from .predictor import method_run
    check_test_sizes(inference_opts, lambda key: f"test option {key}")
    if device is not None:
        model = model.to(device)
    model.eval()
    return method_run(model, method, **inference_opts)


def inference_options(config: dict, method) -> dict:
    """``method.predict`` keyword arguments: the config's ``test`` section, with ``input_size``
    defaulting to ``data.input_size`` when the method's inference settings have one."""
    import dataclasses
    opts = dict(config.get("test") or {})
    fields = {f.name for f in dataclasses.fields(method.INFERENCE_SETTINGS)}
    if "input_size" not in opts and "input_size" in fields:
        opts["input_size"] = int(config["data"]["input_size"])
    return opts


def checkpoint_predictor(path: str | Path, device: str | None = None, *, model=None, **inference_opts: Any):
    """``(predictor, method, config)`` for a checkpoint; ``inference_opts`` override the config's
    ``test`` section (whose ``input_size`` defaults to the training ``data.input_size``).
    ``model``: the ``(model, method, config)`` of :func:`~posegroup.engine.checkpoint.load_model`
    when already loaded."""
    from .checkpoint import load_model
    model, method, config = model if model is not None else load_model(path)
    opts = inference_options(config, method)
    from ..limits import check_test_sizes
    check_test_sizes(opts, lambda key: f"{path}: the checkpoint's test.{key}")   # before any flag replaces it
    opts.update(inference_opts)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return make_predictor(model, method, dev, **opts), method, config


def collect_images(paths: str | Path | Iterable[str | Path], *, exclude: str | Path | None = None) -> list[Path]:
    """Files given directly, plus the entries named like images (:data:`IMAGE_EXTENSIONS`) found in
    folders given and their sub-folders (sorted by path; symbolic links to folders not followed;
    the folder ``exclude`` -- the output folder -- left out). An entry that is not a readable file
    (a folder named ``x.jpg``, a dangling link, a pipe) is kept, for the reader to name it as
    skipped. A missing path, or a folder with no image at all, is a one-line :class:`PredictError`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    skip = Path(exclude).resolve() if exclude is not None else None
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = _images_under(p, skip)
            if not found:
                raise PredictError(f"{p}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                                   "or its sub-folders")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.is_symlink() or os.path.lexists(p):
            raise PredictError(f"{p}: not an image file (a dangling or looping link, a pipe, a device ...)")
        else:
            raise PredictError(f"{p}: no such image file or folder")
    return out


def _images_under(folder: Path, skip: Path | None) -> list[Path]:
    """The entries named like images in ``folder`` and its sub-folders, sorted (see collect_images)."""
    found = []
    for root, dirs, names in os.walk(folder):      # does not follow links to folders: no loops
        dirs[:] = sorted(d for d in dirs if skip is None or Path(root, d).resolve() != skip)
        found += [Path(root, name) for name in dirs + names if Path(name).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def unpack(out) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A predictor's output ``(poses, scores[, masks])`` checked -> (poses (N, K, 3), scores (N,),
    masks (N, H, W) or None); a malformed one is a :class:`PredictError`."""
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise PredictError(f"predictor must return (poses, scores) or (poses, scores, masks), got {type(out).__name__}")
    poses = np.asarray(out[0], np.float64)
    scores = np.asarray(out[1], np.float64).reshape(-1)
    masks = None if len(out) == 2 or out[2] is None else np.asarray(out[2])
    if poses.size == 0:
        return poses.reshape(0, poses.shape[1] if poses.ndim == 3 else 0, 3), scores[:0], masks
    if poses.ndim != 3 or poses.shape[2] != 3 or len(scores) != len(poses):
        raise PredictError(f"predictor returned poses {poses.shape} / scores {scores.shape}; "
                           "expected (N, K, 3) and (N,)")
    return poses, scores, masks


def _read_gt(gt_file: str | Path | None) -> tuple[dict[str, int], dict[int, list]]:
    """(image id by base file name, ground-truth keypoint lists by image id) of ``gt_file``."""
    if gt_file is None:
        return {}, {}
    try:
        with open(gt_file) as f:
            data = json.load(f)
        images = data.get("images") or []
        people: dict[int, list] = {}
        for a in data.get("annotations") or []:
            if a.get("keypoints") and not a.get("iscrowd", 0):
                people.setdefault(a["image_id"], []).append(a["keypoints"])
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
        raise PredictError(f"{gt_file}: cannot read ground-truth json ({e})") from None
    return {os.path.basename(im["file_name"]): int(im["id"]) for im in images if "file_name" in im}, people


def write_json(path: Path, obj) -> None:
    """``obj`` as json at ``path``, through a temporary file (a failed write leaves ``path`` as it
    was); an OSError names ``path``."""
    write_bytes_atomic(Path(path), json.dumps(obj).encode())


def write_bytes_atomic(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """``data`` at ``path`` through the temporary file ``tmp`` (default ``.NAME.tmp`` beside it),
    renamed over ``path``: a failed write leaves ``path`` as it was and no temporary file; the
    OSError names ``path``."""
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


class PredictResults(list):
    """The results list of :func:`predict_images`, with ``skipped``: ``(path, reason)`` of the
    files that could not be read."""

    skipped: list


#: People scored below this are not drawn by default (all are written to results.json): on the
#: 136 real COCO images, PoseNet's people below 0.2 are mostly fragments and duplicates that
#: pile up on crowded pictures (docs/cli.md).
MIN_SCORE = 0.2


def predict_images(predictor: Callable, paths, *, out_dir: str | Path, keypoint_set, draw: bool = True,
                   progress: bool = True, gt_file: str | Path | None = None, threshold: float = 0.1,
                   overwrite: bool = False, min_score: float = MIN_SCORE, label: str = "") -> PredictResults:
    """Predict every image in ``paths`` (files and/or folders).

    Writes ``out_dir/results.json`` (COCO keypoint results, each with the image's ``file_name``;
    ``image_id`` from ``gt_file``'s images by file name when given -- an image not in it is an
    error --, else the image's index in the list; ``evaluate`` maps results to ground-truth ids
    by ``file_name`` either way) and, when ``draw``, ``out_dir/<stem>.png``
    (:func:`posegroup.viz.prediction_picture`: the people scored at least ``min_score``, joints
    above ``threshold``, small images enlarged, a caption with ``label`` (the model), the file
    name and the people shown; the ground truth beside it when ``gt_file`` is given;
    ``<stem>_<index>.png`` when a name repeats). Returns the
    results list (:class:`PredictResults`, whose ``skipped`` lists the unreadable files).

    An unreadable or corrupt image is skipped (one line each on stderr, at the end) and the
    others predicted; only when no image at all could be read is it an error.

    Safety: never writes into or over its inputs -- an ``out_dir`` that is one of the input
    folders, a picture that would land on an input file, or a ``gt_file`` in the way are
    refused (:class:`PredictError`, whatever ``overwrite``). An ``out_dir`` that already holds
    ``results.json`` or a picture of the same name is refused unless ``overwrite``; then the
    earlier prediction is replaced as a whole: its pictures not drawn again -- those the
    earlier prediction listed in ``out_dir/.posegroup_pictures.json``, nothing else -- are
    deleted at the end. A target that is a symbolic link, a ``results.json`` that is not a
    results list or a ``.png`` that is not a PNG is refused whatever ``overwrite``; pictures and
    ``results.json`` are each written to a temporary file and moved into place.
    """
    import sys
    files = collect_images(paths, exclude=out_dir)
    out_dir = Path(out_dir)
    names, inputs, previous = _check_outputs(paths, files, out_dir, draw=draw, gt_file=gt_file, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = dict(threshold=threshold, min_score=min_score, label=label) if draw else None
    results, written = _predict_files(predictor, files, names, out_dir, keypoint_set=keypoint_set,
                                      picture=picture, progress=progress, gt_file=gt_file)
    if files and len(results.skipped) == len(files):
        more = f" (and {len(files) - 1} more unreadable)" if len(files) > 1 else ""
        raise PredictError(f"{results.skipped[0][1]}{more}; no image could be read, nothing written")
    for _, reason in results.skipped:
        print(f"posegroup: skipped {reason}", file=sys.stderr)
    write_json(out_dir / "results.json", list(results))
    stale = _listed_pictures(out_dir) - written if overwrite and previous else set()
    write_json(out_dir / PICTURE_LIST, sorted(written))
    for name in stale:  # the earlier prediction's pictures that were not drawn again
        old = out_dir / name
        if old.is_file() and not old.is_symlink() and old.resolve() not in inputs and _is_png(old):
            old.unlink()
    return results


#: The pictures the last prediction in a folder drew (what ``--overwrite`` may delete there).
PICTURE_LIST = ".posegroup_pictures.json"


def _listed_pictures(out_dir: Path) -> set[str]:
    """The picture names ``out_dir``'s :data:`PICTURE_LIST` holds (none when absent or odd)."""
    try:
        names = json.loads((out_dir / PICTURE_LIST).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and n.endswith(".png") and "/" not in n and "\\" not in n} \
        if isinstance(names, list) else set()


def _is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def _is_results_list(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), list)
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def _check_replaceable(targets: list[Path]) -> None:
    """Refuse (whatever ``--overwrite``) a target that is a link or a file of another kind."""
    for t in targets:
        if t.is_symlink():
            raise PredictError(f"{t}: is a symbolic link; predict never writes through one (remove it, "
                               "or choose another --out)")
        if t.exists() and (not t.is_file() or (t.suffix == ".png" and not _is_png(t))
                           or (t.name == "results.json" and not _is_results_list(t))):
            raise PredictError(f"{t}: exists and is not a {'PNG picture' if t.suffix == '.png' else 'results list'} "
                               "predict wrote; not replaced (choose another --out)")


def _check_outputs(paths, files: list[Path], out_dir: Path, *, draw: bool, gt_file, overwrite: bool
                   ) -> tuple[list[str], set[Path], bool]:
    """The safety rules of :func:`predict_images` (nothing written yet). Returns (picture stem
    of each file, the resolved inputs, whether ``out_dir`` held a ``results.json``)."""
    out_res = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise PredictError(f"{out_dir}: exists and is not a folder; --out names the output folder")
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    for p in given:
        if Path(p).is_dir() and Path(p).resolve() == out_res:
            raise PredictError(f"{out_dir}: the output folder is an input folder (pictures would be written "
                               "among the images); choose another --out")
    names, drawn = [], set()
    for index, path in enumerate(files):  # picture names as drawn below
        name = path.stem if path.stem not in drawn else f"{path.stem}_{index}"  # same name, other folder
        drawn.add(name)
        names.append(name)
    targets = [out_res / "results.json"] + ([out_res / f"{n}.png" for n in names] if draw else [])
    inputs = {Path(os.path.realpath(f)) for f in files}     # realpath: a link loop stays as it is
    if gt_file is not None:
        inputs.add(Path(gt_file).resolve())
    for t in targets:
        if t in inputs:
            raise PredictError(f"{t}: is an input of this prediction and would be overwritten; choose another --out")
    previous = (out_dir / "results.json").is_file()
    if not overwrite:
        for t in targets:
            if t.exists():
                raise PredictError(f"{t}: already exists (an earlier prediction?); pass --overwrite to replace it, "
                                   "or choose another --out")
    _check_replaceable(targets)
    return names, inputs, previous


def _predict_files(predictor: Callable, files: list[Path], names: list[str], out_dir: Path, *, keypoint_set,
                   picture: dict | None, progress: bool, gt_file) -> tuple[PredictResults, set[str]]:
    """Predict each file in turn and, when ``picture`` (the options of :func:`_draw`) is given,
    draw it. Returns (results with ``skipped``, picture names written)."""
    from ..data.coco import DatasetError
    id_map, gt_people = _read_gt(gt_file)
    need = 3 * keypoint_set.num_keypoints
    for people in gt_people.values():
        bad = next((len(kp) if isinstance(kp, list) else repr(kp) for kp in people
                    if not isinstance(kp, list) or len(kp) != need), None)
        if bad is not None:
            raise PredictError(f"{gt_file}: a ground-truth person has {bad} keypoint values, expected {need} "
                               f"({keypoint_set.num_keypoints} keypoints of the model's {keypoint_set.name})")
    results = PredictResults()
    results.skipped = []
    written: set[str] = set()
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="predict", unit="img")
    for index, path in enumerate(it):
        if gt_file is not None:
            if path.name not in id_map:
                raise PredictError(f"{path}: file name not found among the images of {gt_file}")
            image_id = id_map[path.name]
        else:
            image_id = index
        try:
            image = read_image(path)
        except (DatasetError, OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            results.skipped.append((str(path), reason))
            continue
        poses, scores, masks = unpack(predictor(image))
        results.extend(to_coco_results(image_id, poses, scores, masks, file_name=path.name))
        if picture is not None:
            gt = gt_people.get(image_id, []) if gt_file is not None else None
            _draw(out_dir / f"{names[index]}.png", image, path.name, poses, scores, masks, gt,
                  keypoint_set=keypoint_set, **picture)
            written.add(f"{names[index]}.png")
    return results, written


def _draw(target: Path, image, file_name: str, poses, scores, masks, gt, *, keypoint_set, threshold: float,
          min_score: float, label: str) -> None:
    """Write the picture of one image (:func:`posegroup.viz.prediction_picture`)."""
    from ..viz import prediction_picture
    gt_poses = None if gt is None else np.asarray(gt, np.float64).reshape(-1, keypoint_set.num_keypoints, 3)
    title = " | ".join(s for s in (label, file_name) if s)
    import cv2
    picture = prediction_picture(image, poses, scores, keypoint_set, title=title, masks=masks,
                                 min_score=min_score, threshold=threshold, gt_poses=gt_poses)
    png = cv2.imencode(".png", cv2.cvtColor(np.asarray(picture, np.uint8), cv2.COLOR_RGB2BGR))[1]
    write_bytes_atomic(target, png.tobytes(), target.with_name(f".{target.stem}.tmp.png"))


def predict_dataset(predictor: Callable, dataset, *, max_images: int | None = None, progress: bool = True,
                    out_file: str | Path | None = None) -> list[dict]:
    """COCO results for the images of a ``CocoPoseDataset``-like dataset (``image_ids``,
    ``load_image(image_id)`` or ``ds[i]["image"]``), the first ``max_images`` (default all).
    Writes the results to ``out_file`` when given."""
    ids = list(getattr(dataset, "image_ids", range(len(dataset))))
    if max_images is not None:
        ids = ids[:max_images]
    it = enumerate(ids)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(ids), desc="predict", unit="img")
    results: list[dict] = []
    for i, image_id in it:
        if hasattr(dataset, "load_image"):
            image = dataset.load_image(image_id)
        else:
            image = dataset[i]["image"]
        poses, scores, masks = unpack(predictor(image))
        info = getattr(dataset, "images", {}).get(image_id) or {}
        results.extend(to_coco_results(image_id, poses, scores, masks, file_name=info.get("file_name")))
    if out_file is not None:
        write_json(Path(out_file), results)
    return results


def evaluate_predictor(predictor: Callable, dataset, *, max_images: int | None = None, progress: bool = False,
                       out_file: str | Path | None = None) -> dict:
    """Predict ``dataset`` and score it with COCO keypoint AP on the same images.

    Returns the stats dict of :func:`posegroup.engine.evaluate.evaluate_results` plus
    ``num_images`` and ``num_results``."""
    from .evaluate import evaluate_results
    ids = list(dataset.image_ids)[:max_images] if max_images is not None else list(dataset.image_ids)
    results = predict_dataset(predictor, dataset, max_images=max_images, progress=progress, out_file=out_file)
    if results:
        stats = dict(evaluate_results(str(dataset.ann_file), results, keypoint_set=dataset.keypoint_set,
                                      image_ids=ids))
    else:
        stats = {"AP": 0.0}
    stats.update(num_images=len(ids), num_results=len(results))
    return stats
