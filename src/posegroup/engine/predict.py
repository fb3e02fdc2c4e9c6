"""Prediction: images or a dataset -> COCO results (+ PNGs with skeletons).

A *predictor* is any callable ``predictor(image uint8 (H, W, 3) RGB) -> (poses, scores)`` or
``(poses, scores, masks)`` with poses (N, K, 3) = x, y, score in image pixels, scores (N,) and
masks (N, H, W) bool. :func:`make_predictor` / :func:`checkpoint_predictor` wrap a trained model.

Every prediction takes one step per image, :func:`predict_image` (the predictor, its output
checked, the image's COCO results); :func:`predict_over` is the one loop over a dataset's
images (evaluate, the demo, the benchmarks), :func:`predict_paths` the loop over image files
(``predict``, the Ray workers), video the loop over frames.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from ..data.coco import DatasetError, read_image
from ..evaluation import to_coco_results
from ..files import refuse_existing, write_bytes_atomic, write_json_atomic

#: Image file extensions collected from folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class PredictError(ValueError):
    """Bad input to prediction (the message names the file)."""


def make_predictor(model: torch.nn.Module, method, device: str | torch.device | None = None,
                   **inference_opts: Any) -> Callable[[np.ndarray], tuple]:
    """``image -> method.predict(model, image, **inference_opts)`` with the model in eval mode on
    ``device`` (default: where its parameters are) and gradients off: a
    :class:`~posegroup.engine.timed.TimedRun` of the method's network and decoder, its
    inference settings checked here, once. ``input_size`` / ``scales`` beyond
    :mod:`posegroup.limits`' bounds, or an option the method refuses, are a ValueError."""
    from ..limits import check_test_sizes
    from .timed import method_run
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


class ImagePrediction(NamedTuple):
    """One image predicted (:func:`predict_image`): poses (N, K, 3) x, y, score in image
    pixels, scores (N,), masks (N, H, W) bool or None, and ``results``, its COCO results."""

    poses: np.ndarray
    scores: np.ndarray
    masks: np.ndarray | None
    results: list[dict]


def predict_image(run: Callable, image: np.ndarray, image_id: int, *, file_name: str | None = None,
                  plain: bool = False) -> ImagePrediction:
    """The step every prediction loop takes per image: ``run(image)`` (a predictor, see the
    module docstring) checked by :func:`unpack`, and its COCO results
    (:func:`~posegroup.evaluation.to_coco_results`) under ``image_id``, with ``file_name`` and
    the masks' RLEs -- neither with ``plain``."""
    poses, scores, masks = unpack(run(image))
    results = to_coco_results(image_id, poses, scores, None if plain else masks,
                              file_name=None if plain else file_name)
    return ImagePrediction(poses, scores, masks, results)


def read_or_skip(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(image uint8 (H, W, 3) RGB, None)`` of an image file, or ``(None, reason)`` when it
    cannot be read: the reader's one line naming the file (what ``predict`` prints for a
    skipped image)."""
    try:
        return read_image(path), None
    except (DatasetError, OSError, ValueError) as e:
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__


def predict_paths(run: Callable, paths: list, image_ids: list[int], skipped: list, *, progress: bool = False
                  ) -> Iterator[tuple[int, Path, np.ndarray, ImagePrediction]]:
    """Image files predicted in turn (``predict``'s loop; Ray's workers run it on their shards):
    yields ``(index, path, image, prediction)`` for each readable file of ``paths``, under its
    id in ``image_ids`` (:func:`predict_image`, with the file's base name); an unreadable one is
    appended to ``skipped`` as ``(str(path), reason)`` (:func:`read_or_skip`) and left out."""
    pairs = list(zip(paths, image_ids))
    it = enumerate(pairs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(pairs), desc="predict", unit="img")
    for index, (path, image_id) in it:
        image, reason = read_or_skip(path)
        if image is None:
            skipped.append((str(path), reason))
            continue
        yield index, Path(path), image, predict_image(run, image, image_id, file_name=Path(path).name)


@dataclass
class DatasetPrediction:
    """What :func:`predict_over` gives: ``results`` (COCO results of every image),
    ``network_s`` / ``decoder_s`` (seconds of the network and of the decoder per image, when
    timed; else empty), ``people`` (poses predicted in all), ``true_results`` (the oracle's COCO
    results; None without an oracle)."""

    results: list[dict] = field(default_factory=list)
    network_s: list[float] = field(default_factory=list)
    decoder_s: list[float] = field(default_factory=list)
    people: int = 0
    true_results: list[dict] | None = None


def predict_over(run: Callable, dataset, image_ids=None, *, images=None, oracle=None, timed: bool = False,
                 plain: bool = False, progress: bool = False) -> DatasetPrediction:
    """The one loop over a dataset's images (``evaluate``, ``demo``, the benchmarks, ``benchmark
    methods``): ``run`` on the images ``image_ids`` (default all) of a ``CocoPoseDataset``-like
    ``dataset`` (``image_ids``, ``images`` by id, ``load_image(id)``, ``annotations(id)``), or on
    ``images``, the same images already loaded, in that order.

    Args:
        timed: ``run`` is a :class:`~posegroup.engine.timed.TimedRun`; its ``network_s`` and
            ``decoder_s`` of each image are kept.
        oracle: ``(image, true keypoints (N, K, 3)) -> (poses, scores, ...)`` (a method's
            true-id ceiling), run outside the timings, gradients off, on each image with its
            annotated people.
        plain: results with keypoints and scores only (no masks, no file names): what the
            benchmarks score.
    """
    ids = list(dataset.image_ids) if image_ids is None else list(image_ids)
    out = DatasetPrediction(true_results=None if oracle is None else [])
    it = enumerate(ids)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(ids), desc="predict", unit="img")
    for i, image_id in it:
        image = dataset.load_image(image_id) if images is None else images[i]
        found = predict_image(run, image, image_id, file_name=dataset.images[image_id].get("file_name"), plain=plain)
        if timed:
            out.network_s.append(run.network_s)
            out.decoder_s.append(run.decoder_s)
        out.people += len(found.poses)
        out.results += found.results
        if oracle is not None:
            with torch.inference_mode():
                p, s = oracle(image, dataset.annotations(image_id, with_masks=False)["keypoints"])[:2]
            out.true_results += to_coco_results(image_id, p, s)
    return out


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
    write_json_atomic(out_dir / "results.json", list(results))
    stale = _listed_pictures(out_dir) - written if overwrite and previous else set()
    write_json_atomic(out_dir / PICTURE_LIST, sorted(written))
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
    for t in targets:
        refuse_existing(t, overwrite, error=PredictError, found="already exists (an earlier prediction?)")
    _check_replaceable(targets)
    return names, inputs, previous


def _predict_files(predictor: Callable, files: list[Path], names: list[str], out_dir: Path, *, keypoint_set,
                   picture: dict | None, progress: bool, gt_file) -> tuple[PredictResults, set[str]]:
    """Predict each file in turn (:func:`predict_paths`) and, when ``picture`` (the options of
    :func:`_draw`) is given, draw it. Returns (results with ``skipped``, picture names written)."""
    id_map, gt_people = _read_gt(gt_file)
    need = 3 * keypoint_set.num_keypoints
    for people in gt_people.values():
        bad = next((len(kp) if isinstance(kp, list) else repr(kp) for kp in people
                    if not isinstance(kp, list) or len(kp) != need), None)
        if bad is not None:
            raise PredictError(f"{gt_file}: a ground-truth person has {bad} keypoint values, expected {need} "
                               f"({keypoint_set.num_keypoints} keypoints of the model's {keypoint_set.name})")
    ids = list(range(len(files)))
    if gt_file is not None:
        missing = next((path for path in files if path.name not in id_map), None)
        if missing is not None:
            raise PredictError(f"{missing}: file name not found among the images of {gt_file}")
        ids = [id_map[path.name] for path in files]
    results = PredictResults()
    results.skipped = []
    written: set[str] = set()
    for index, path, image, found in predict_paths(predictor, files, ids, results.skipped, progress=progress):
        results.extend(found.results)
        if picture is not None:
            gt = gt_people.get(ids[index], []) if gt_file is not None else None
            _draw(out_dir / f"{names[index]}.png", image, path.name, found.poses, found.scores, found.masks, gt,
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
    """COCO results (with masks and file names) of the first ``max_images`` images (default
    all) of a ``CocoPoseDataset``-like dataset (:func:`predict_over`). Writes them to
    ``out_file`` when given."""
    ids = list(dataset.image_ids)[:max_images] if max_images is not None else None
    results = predict_over(predictor, dataset, ids, progress=progress).results
    if out_file is not None:
        write_json_atomic(out_file, results)
    return results


def evaluate_predictor(predictor: Callable, dataset, *, max_images: int | None = None, progress: bool = False,
                       out_file: str | Path | None = None, method=None) -> dict:
    """Predict ``dataset`` and score it with COCO keypoint AP on the same images.

    Returns the figures of :func:`posegroup.engine.evaluate.score_results` (each keypoint
    figure; all 0.0 without a result) plus ``num_images`` and ``num_results``, and with a
    ``method`` the figures ``evaluate`` prints for it (``Method.evaluation_figures``: the
    recurrent method's person count) on the same images."""
    from .evaluate import score_results
    ids = list(dataset.image_ids)[:max_images] if max_images is not None else list(dataset.image_ids)
    results = predict_dataset(predictor, dataset, max_images=max_images, progress=progress, out_file=out_file)
    stats = score_results(str(dataset.ann_file), results, ids, keypoint_set=dataset.keypoint_set)
    stats.update(num_images=len(ids), num_results=len(results))
    if method is not None:
        stats.update(method.evaluation_figures(results, dataset.data, ids))
    return stats
