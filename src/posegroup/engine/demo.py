"""``posegroup demo``: the whole pipeline on an embedded default, no user data, no downloads.

By default the demo uses the small trained models shipped inside the package
(``posegroup/weights/``, one per method, made by ``posegroup demo --train``; see
:data:`MANIFEST`): it writes held-out synthetic splits (sparse, medium, heavy overlap),
predicts them with every method, scores with the official COCO metric and writes pictures and
an AP table -- in well under a minute. ``demo --train`` first trains each method's bundled tiny
config for a fixed number of steps (:data:`DEMO_STEPS`; a step budget, so the result does not
depend on how busy the machine is) and uses those models; its ``weights/`` are exactly what
the package ships.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..files import refuse_existing, write_json_atomic, write_text_atomic
from .recipes import demo_crowding, demo_methods
from .shipped import MANIFEST, WEIGHTS_DIR, shipped_manifest  # noqa: F401 (MANIFEST: the demo's, re-exported)

#: The methods of the demo, in training order (a method's INIT_FROM_METHOD comes before it), and
#: ``demo --train``'s training steps per method (batch 16, 128 px): the recipes file's
#: (:func:`~posegroup.engine.recipes.demo_methods`), as is the bundled config each trains.
METHODS = tuple(demo_methods())
DEMO_STEPS = {name: int(entry["steps"]) for name, entry in demo_methods().items()}
#: Held-out splits: name -> crowding.
SPLITS = {"val_sparse": "sparse", "val_medium": "medium", "val_heavy": "heavy"}
#: What the caption says a good number is (recorded with the shipped weights, see MANIFEST).
#: Real photos with ground truth scored by the demo when present (``shared/data`` of a checkout's
#: parent, or the folder ``$POSEGROUP_SHARED_DATA``): the pretrained default's row.
REAL_PHOTOS = "coco_images/person_keypoints_local_images.json"
GOOD = ("A perfect model scores 1.000. For these tiny CPU models (hourglasses of 0.6-0.7 M "
        "weights, 128-px input) sparse AP >= 0.30 is good; heavy overlap is where every method "
        "of this size still fails (docs/crowds.md).")


def find_config(name: str) -> Path:
    """The bundled config NAME (``posegroup/configs/``, package data: no checkout needed) -- never
    a file of the same name in the working directory."""
    from .config import bundled_configs
    stem = name[:-5] if name.endswith(".yaml") else name
    path = bundled_configs().get(stem)
    if path is None:
        raise FileNotFoundError(f"posegroup/configs/{stem}.yaml: bundled config missing from the installed package")
    return path


def slim_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write the inference part of training checkpoint ``src`` to ``dst``: weights in float16
    (halves the file; :func:`~posegroup.engine.checkpoint.load_model` casts them back), the
    config, keypoint set, method and step -- no optimizer or RNG state. Atomic."""
    import torch
    from .checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(src)
    weights = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in state["model"].items()}
    keep = {k: state[k] for k in ("config", "keypoint_set", "method", "step") if k in state}
    return save_checkpoint(dst, dict(keep, model=weights))


def run_demo(out_dir="posegroup_demo", *, train: bool = False, methods=METHODS, steps: dict | None = None,
             images: int = 2000, val_images: int = 40, progress: bool = True, seed: int = 0,
             overwrite: bool = False) -> dict:
    """Synthesise, (train,) predict, evaluate and draw; returns the table as a dict
    ``{"splits": {split: info}, "methods": {method: {split: {AP, AP50, AP75, AR}, ...}}}``.

    Args:
        train: train each method (``steps`` per method, default :data:`DEMO_STEPS`) on a
            synthetic training split of ``images`` images instead of using the shipped weights.
        methods: which methods (default all three).
    Writes under ``out_dir``: data/ (synthetic splits), train/<method>/ (when training),
    weights/<method>.pt (the slim checkpoints used), pictures/*.png,
    results_<method>_<split>.json, ap_table.md and ap_table.json. An existing non-empty
    ``out_dir`` is refused (ValueError) unless ``overwrite``.
    """
    out = Path(out_dir)
    refuse_existing(out, overwrite, found="already exists and is not empty",
                    to="replace the demo's files there (its synthetic data is reused)",
                    exists=out.exists() and (not out.is_dir() or any(out.iterdir())))
    methods = tuple(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"demo --methods: unknown {unknown}; choose from {list(METHODS)}")
    t0 = time.time()
    say = print if progress else (lambda *a, **k: None)
    data = out / "data"
    say(f"[1/3] synthetic scenes -> {data}")
    stats = _synthesise(data, 128, images=images if train else 0, val_images=val_images, seed=seed,
                        progress=progress, methods=methods)
    if train:
        made = _train_methods(out, data, methods, dict(DEMO_STEPS, **(steps or {})), seed=seed,
                              progress=progress, say=say)
    else:
        made = _shipped_weights(out, methods)
    say("[3/3] predicting and scoring the held-out splits")
    table = {"splits": {name: _split_info(stats[name]) for name in SPLITS}, "methods": {}}
    for m in methods:
        row = dict(made[m])
        for name in SPLITS:
            row[name] = _score_split(out, data / name / "annotations.json", name, Path(row["weights"]),
                                     progress=progress)
        table["methods"][m] = row
    if train:
        write_manifest(out / "weights", table, val_images=val_images, seed=seed)
    text = _ap_table(table, val_images=val_images, trained=train)
    real = find_shared_data(REAL_PHOTOS)
    if real is not None:
        say(f"real photos: the pretrained default on {real}")
        table["real_photos"] = _score_real(out, real, progress=progress)
        text += "\n\n" + _real_table(table["real_photos"])
    write_text_atomic(out / "ap_table.md", text + "\n")
    table["minutes_total"] = (time.time() - t0) / 60
    write_json_atomic(out / "ap_table.json", table, indent=1)
    say(text)
    say(f"pictures in {out / 'pictures'}, table in {out / 'ap_table.md'} ({table['minutes_total']:.1f} min in all)")
    return table


def find_shared_data(rel: str) -> Path | None:
    """``rel`` under the real-data folder: ``$POSEGROUP_SHARED_DATA``, else ``shared/data`` in the
    working directory or one of its parents; None when absent."""
    import os
    env = os.environ.get("POSEGROUP_SHARED_DATA")
    here = Path.cwd()
    roots = [Path(env)] if env else [base / "shared" / "data" for base in [here, *here.parents]]
    return next((r / rel for r in roots if (r / rel).is_file()), None)


def _score_real(out: Path, ann: Path, *, progress: bool, pictures: int = 2) -> dict:
    """The pretrained default (:meth:`Predictor.load() <posegroup.engine.predictor.Predictor.load>`)
    on the real photos of ``ann``: AP, AP50, AR, images, seconds; its first ``pictures`` drawn."""
    from ..data.coco import CocoPoseDataset
    from ..viz import prediction_picture, save_png
    from .evaluate import score_results
    from .predict import MIN_SCORE, predict_dataset
    from .predictor import Predictor
    predictor = Predictor.load()
    ds = CocoPoseDataset(ann)
    t = time.time()
    results = predict_dataset(predictor.run, ds, progress=progress)
    seconds = time.time() - t
    write_json_atomic(out / "results_pretrained_real_photos.json", results)
    st = score_results(ds.ann_file, results, keys=("AP", "AP50", "AR"))
    k = ds.keypoint_set.num_keypoints
    for i in range(min(pictures, len(ds))):
        sample = ds[i]
        rs = [r for r in results if r["image_id"] == sample["image_id"]]
        poses = np.array([r["keypoints"] for r in rs], float).reshape(-1, k, 3)
        save_png(out / "pictures" / f"pretrained_real_{i}_poses.png",
                 prediction_picture(sample["image"], poses, np.array([r["score"] for r in rs]), ds.keypoint_set,
                                    title=f"{predictor.label} | {Path(sample['file_name']).name}",
                                    min_score=MIN_SCORE, gt_poses=sample["keypoints"]))
    return {"label": predictor.label, "ann": str(ann), "images": len(ds), "seconds": seconds, **st}


def _real_table(row: dict) -> str:
    return (f"Real photos ({row['images']} COCO images with ground truth, {row['ann']}), official metric:\n\n"
            "| model | AP | AP50 | AR | s / image |\n|---|---|---|---|---|\n"
            f"| {row['label']} | {row['AP']:.3f} | {row['AP50']:.3f} | {row['AR']:.3f} | "
            f"{row['seconds'] / max(1, row['images']):.2f} |")


def write_manifest(folder: Path, table: dict, *, val_images: int, seed: int) -> Path:
    """``folder/manifest.json`` for the weights a ``demo --train`` run made: per method its file,
    steps, seed, the held-out split size and the AP it scored (what the shipped-weights test
    checks). Copying ``folder`` into ``posegroup/weights/`` ships them."""
    manifest = {m: {"file": Path(row["weights"]).name, "steps": row["steps"], "seed": seed,
                    "val_images": val_images, "minutes": round(row.get("minutes", 0.0), 2),
                    "AP": {s: round(row[s]["AP"], 4) for s in SPLITS},
                    "command": f"posegroup demo --train --methods {','.join(table['methods'])} --seed {seed} "
                               f"--val-images {val_images}"}
                for m, row in table["methods"].items()}
    return write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")


def _shipped_weights(out: Path, methods) -> dict:
    """``{method: {weights, steps, recorded}}`` of the weights shipped in the package; a missing
    file is a one-line FileNotFoundError that says how to make it."""
    manifest = shipped_manifest()
    made = {}
    for m in methods:
        entry = manifest.get(m)
        path = WEIGHTS_DIR / entry["file"] if entry else WEIGHTS_DIR / f"{m}.pt"
        if not entry or not path.is_file():
            raise FileNotFoundError(f"{path}: no shipped {m} weights in this installation; run "
                                    "`posegroup demo --train` to train them")
        made[m] = {"weights": str(path), "steps": entry.get("steps"), "recorded": entry.get("AP", {}),
                   "source": "shipped"}
    return made


def _train_methods(out: Path, data: Path, methods, steps: dict, *, seed: int, progress: bool, say) -> dict:
    """Train each method's bundled tiny config for ``steps[method]`` steps on its training split
    (:func:`train_split`);
    a method with an ``INIT_FROM_METHOD`` starts from that model trained here (or the shipped one). Returns
    ``{method: {weights, steps, minutes, source}}`` and writes ``out/weights/<method>.pt``."""
    from ..methods import method_class
    from .config import load_config
    from .train import train
    made = {}
    for i, m in enumerate(methods):
        recipe = demo_methods()[m]
        cfg = load_config(find_config(recipe["config"]))
        cfg["data"].update(train_ann=str(data / train_split(recipe) / "annotations.json"), train_images=None,
                           val_ann=None, val_images=None)
        run_dir = out / "train" / m
        cfg["train"].update(steps=int(steps[m]), max_minutes=None, eval_every=0, seed=seed,
                            out_dir=str(run_dir))
        donor = method_class(m).INIT_FROM_METHOD
        if donor:      # trained here before it (METHODS' order), or the shipped one
            weights = made.get(donor, {}).get("weights") or _shipped_weights(out, [donor])[donor]["weights"]
            cfg["model"]["init_from"] = str(weights)
        say(f"[2/3] training {m} ({i + 1}/{len(methods)}): {steps[m]} steps")
        t = time.time()
        summary = train(cfg, out_dir=run_dir, progress=progress, overwrite=True)
        minutes = (time.time() - t) / 60
        done = int(summary.get("steps") or steps[m])
        say(f"      {m}: {done} steps in {minutes:.1f} min ({done / max(minutes, 1e-9):.0f} steps/min)")
        weights = slim_checkpoint(summary["checkpoint"], out / "weights" / f"{m}.pt")
        made[m] = {"weights": str(weights), "steps": done, "minutes": minutes, "source": "trained", "seed": seed}
    return made


def _split_info(info: dict) -> dict:
    """Crowding figures of a synthetic split's ``info``."""
    return {k: info.get(k) for k in ("crowding", "mean_max_iou", "people_per_image", "num_images")}


def train_split(recipe: dict) -> str:
    """The training split of a demo recipe entry: ``train`` for its ``crowding`` (default sparse)
    when sparse, else ``train_<crowding>`` (commas as ``_``), e.g. ``train_sparse_medium_heavy``."""
    crowding = demo_crowding(recipe)
    return "train" if crowding == "sparse" else "train_" + crowding.replace(",", "_")


def _synthesise(data: Path, size: int, *, images: int, val_images: int, seed: int, progress: bool,
                methods=()) -> dict:
    """The held-out :data:`SPLITS` and, with ``images`` > 0, the training split of each of
    ``methods`` (:func:`train_split`, ``images`` scenes at its recipe's crowding) under ``data``
    (a split already there is reused); returns each split's crowding figures (mean max box IoU,
    people per image, crowding)."""
    from ..data.synthetic import generate_dataset
    splits = {name: (crowding, val_images, seed + 1000 * (i + 1)) for i, (name, crowding) in enumerate(SPLITS.items())}
    if images > 0:
        for m in methods:
            recipe = demo_methods()[m]
            splits[train_split(recipe)] = (demo_crowding(recipe), images, seed)
    stats = {}
    for name, (crowding, n, s) in splits.items():
        ann = data / name / "annotations.json"
        if not ann.is_file():
            generate_dataset(data / name, n, crowding=crowding, seed=s, image_size=size, progress=progress)
        doc = json.loads(ann.read_text())
        people = sum(1 for a in doc["annotations"] if a.get("num_keypoints", 0) > 0)
        stats[name] = dict(doc.get("info", {}), num_images=len(doc["images"]),
                           people_per_image=people / max(1, len(doc["images"])))
    return stats


def _score_split(out: Path, ann: Path, name: str, weights: Path, *, progress: bool, pictures: int = 2) -> dict:
    """Predict split ``name`` with the model in ``weights``
    (:meth:`Predictor.load <posegroup.engine.predictor.Predictor.load>`), write
    ``results_<method>_<name>.json``, score it (official COCO metric) and draw its first
    ``pictures`` images into ``out/pictures``. Returns AP, AP50, AP75, AR."""
    from ..data.coco import CocoPoseDataset
    from .evaluate import score_results
    from .predict import predict_dataset
    from .predictor import Predictor
    predictor = Predictor.load(weights)
    method, config = predictor.method, predictor.config
    ds = CocoPoseDataset(ann)
    results = predict_dataset(predictor.run, ds, progress=progress)
    write_json_atomic(out / f"results_{method.name}_{name}.json", results)
    _draw_examples(out / "pictures", f"{method.name}_{name}", ds, results, method, predictor.model,
                   input_size=int(config["data"]["input_size"]), count=pictures)
    return score_results(ds.ann_file, results, keys=("AP", "AP50", "AP75", "AR"))


def _draw_examples(pics: Path, prefix: str, ds, results: list, method, model, *, input_size: int,
                   count: int) -> None:
    """``prefix_<i>_poses.png`` (the predicted people scored >= ``predict.MIN_SCORE`` beside the
    ground truth, enlarged, captioned) and the method's ``prefix_<i>_maps.png`` (titled, with
    a colour legend) for the first ``count`` images of ``ds``."""
    from ..viz import enlarge, prediction_picture, save_png, side_by_side
    from .predict import MIN_SCORE
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    k = ds.keypoint_set.num_keypoints
    for i in range(min(count, len(ds))):
        sample = ds[i]
        rs = by_image.get(sample["image_id"], [])
        poses = np.array([r["keypoints"] for r in rs], float).reshape(-1, k, 3)
        scores = np.array([r["score"] for r in rs])
        title = f"{method.name} | {Path(sample['file_name']).name}"
        save_png(pics / f"{prefix}_{i}_poses.png",
                 prediction_picture(sample["image"], poses, scores, ds.keypoint_set, title=title,
                                    min_score=MIN_SCORE, gt_poses=sample["keypoints"]))
        big, _ = enlarge(sample["image"])     # small synthetic images: enlarged so that a person can see them
        maps = method.draw_maps(model, sample["image"], canvas=big, input_size=input_size)
        if maps:
            save_png(pics / f"{prefix}_{i}_maps.png", side_by_side(maps))


def _ap_table(table: dict, *, val_images: int, trained: bool) -> str:
    """The markdown table: a caption (what is measured, what a good number is), one row per
    method with each split's AP (AR), the training steps, and the split figures."""
    splits = list(table["splits"])
    info = table["splits"]
    caption = (f"COCO keypoint AP (AR) on {val_images} held-out synthetic 128-px images per split, official "
               "metric (pycocotools); models " + ("trained by this run" if trained else
                                                    "shipped with posegroup (`posegroup demo --train` retrains them)")
               + ". " + GOOD)
    head = "| method | weights | steps | " + " | ".join(f"{s} AP (AR)" for s in splits) + " |"
    lines = [caption, "", head, "|" + "---|" * (3 + len(splits))]
    for m, row in table["methods"].items():
        cells = [f"{row[s]['AP']:.3f} ({row[s]['AR']:.3f})" for s in splits]
        lines.append(f"| {m} | {row['source']} | {row.get('steps') or '-'} | " + " | ".join(cells) + " |")
    ious = ", ".join(f"{s} {_fmt(info[s].get('mean_max_iou'))} / {info[s]['people_per_image']:.1f}" for s in splits)
    lines += ["", f"Splits: mean max box-IoU between people / people per image: {ious} "
              "(OCHuman: 0.67 mean max IoU)."]
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"
