"""``posegroup demo``: the whole pipeline on an embedded default, no user data, no downloads.

Makes a small synthetic training split and two held-out splits (sparse, heavy overlap), trains a
tiny Associative Embedding hourglass for a few CPU minutes (bundled config ae_tiny_synthetic),
predicts, scores with the official COCO metric and writes pictures and an AP table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

CONFIG_NAME = "ae_tiny_synthetic.yaml"


def find_config(name: str = CONFIG_NAME) -> Path:
    """The bundled config NAME (``posegroup/configs/``, package data: no checkout needed)."""
    from .config import BUNDLED_DIR, bundled_configs
    path = bundled_configs().get(Path(name).stem)
    if path is None:
        raise FileNotFoundError(f"{BUNDLED_DIR / name}: bundled config missing from the installed package")
    return path


def run_demo(out_dir="posegroup_demo", *, minutes: float = 5.0, images: int = 2000,
             val_images: int = 40, progress: bool = True, seed: int = 0, overwrite: bool = False) -> dict:
    """Synthesise, train, predict, evaluate and draw; returns the AP table as a dict.

    Writes under ``out_dir``: data/ (synthetic splits), train/ (checkpoints, TensorBoard),
    pictures/*.png, results_{split}.json, ap_table.md and ap_table.json. An existing non-empty
    ``out_dir`` is refused (ValueError) unless ``overwrite``.
    """
    from .checkpoint import load_model
    from .config import load_config
    from .predict import checkpoint_predictor
    from .train import train

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"{out}: already exists and is not empty; pass --overwrite to replace the demo's "
                         "files there (its synthetic data is reused), or choose another --out")
    t0 = time.time()
    cfg = load_config(find_config())
    data = out / "data"
    say = print if progress else (lambda *a, **k: None)
    say(f"[1/4] synthetic scenes -> {data}")
    stats = _synthesise(data, int(cfg["data"].get("synth_image_size", cfg["data"]["input_size"])),
                        images=images, val_images=val_images, seed=seed, progress=progress)
    cfg["data"]["train_ann"] = str(data / "train" / "annotations.json")
    cfg["data"]["train_images"] = None
    cfg["data"]["val_ann"] = None        # scored below, after training
    cfg["data"]["val_images"] = None
    # A cosine schedule sized to the time budget: ~266 steps/min measured for this config on
    # one free CPU core (batch 16, 128 px); on a slower or busier machine the time limit ends
    # training before the schedule does.
    cfg["train"]["steps"] = max(50, int(minutes * 250))
    cfg["train"]["max_minutes"] = minutes
    cfg["train"]["eval_every"] = 0

    say(f"[2/4] training a tiny AE hourglass for {minutes:g} min on the CPU")
    summary = train(cfg, out_dir=out / "train", max_minutes=minutes, progress=progress, overwrite=True)
    predictor, method, config = checkpoint_predictor(summary["checkpoint"])
    model, _, _ = load_model(summary["checkpoint"])

    say("[3/4] predicting and scoring the held-out splits")
    table = {}
    for name in ("val_sparse", "val_heavy"):
        table[name] = _score_split(out, data / name / "annotations.json", name, predictor, method, model,
                                   input_size=config["data"]["input_size"], progress=progress)
        table[name]["mean_max_iou"] = stats[name].get("mean_max_iou")

    say("[4/4] results")
    text = _ap_table(table)
    (out / "ap_table.md").write_text(text + "\n")
    table["minutes_total"] = (time.time() - t0) / 60
    table["train_steps"] = summary.get("steps")
    (out / "ap_table.json").write_text(json.dumps(table, indent=1))
    say(text)
    say(f"pictures in {out / 'pictures'}, table in {out / 'ap_table.md'} ({table['minutes_total']:.1f} min in all)")
    return table


def _synthesise(data: Path, size: int, *, images: int, val_images: int, seed: int, progress: bool) -> dict:
    """The train / val_sparse / val_heavy synthetic splits under ``data`` (a split already there
    is reused); returns each split's info (crowding statistics)."""
    from ..data.synthetic import generate_dataset
    splits = {"train": ("sparse", images, seed), "val_sparse": ("sparse", val_images, seed + 1000),
              "val_heavy": ("heavy", val_images, seed + 2000)}
    stats = {}
    for name, (crowding, n, s) in splits.items():
        ann = data / name / "annotations.json"
        if not ann.is_file():
            stats[name] = generate_dataset(data / name, n, crowding=crowding, seed=s, image_size=size,
                                           progress=progress)
        else:
            stats[name] = json.loads(ann.read_text()).get("info", {})
    return stats


def _score_split(out: Path, ann: Path, name: str, predictor, method, model, *, input_size: int,
                 progress: bool) -> dict:
    """Predict split ``name``, write ``results_{name}.json``, score it and draw its first four
    images (poses and the method's maps, enlarged) into ``out/pictures``. Returns AP, AP50,
    AP75, AR."""
    from ..data.coco import CocoPoseDataset
    from ..viz import draw_poses, save_png
    from .evaluate import evaluate_all
    from .predict import predict_dataset
    ds = CocoPoseDataset(ann)
    results = predict_dataset(predictor, ds, progress=progress)
    (out / f"results_{name}.json").write_text(json.dumps(results))
    st = evaluate_all(ds.ann_file, results)
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    pics = out / "pictures"
    for i in range(min(4, len(ds))):
        sample = ds[i]
        rs = by_image.get(sample["image_id"], [])
        k = ds.keypoint_set.num_keypoints
        poses = np.array([r["keypoints"] for r in rs], float).reshape(-1, k, 3)
        scores = np.array([r["score"] for r in rs])
        keep = scores >= 0.1
        # small synthetic images are drawn enlarged so that a person can see them
        zoom = max(1, 384 // max(sample["image"].shape[:2]))
        big = cv2.resize(sample["image"], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        shown = poses[keep].copy()
        shown[..., :2] *= zoom
        pic = draw_poses(big, shown, ds.keypoint_set, scores=scores[keep])
        save_png(pics / f"{name}_{i}_poses.png", np.concatenate([big, pic], 1))
        maps = method.draw_maps(model, sample["image"], canvas=big, input_size=input_size)
        if maps:
            save_png(pics / f"{name}_{i}_maps.png", np.concatenate(maps, 1))
    return {"AP": st["AP"], "AP50": st["AP50"], "AP75": st["AP75"], "AR": st["AR"]}


def _ap_table(table: dict) -> str:
    """The markdown AP table of the held-out splits."""
    lines = ["| split | mean max-IoU | AP | AP50 | AP75 | AR |", "|---|---|---|---|---|---|"]
    for name, r in table.items():
        iou = r["mean_max_iou"]
        lines.append(f"| {name} | {iou:.2f} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AR']:.3f} |"
                     if iou is not None else
                     f"| {name} | - | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AR']:.3f} |")
    return "\n".join(lines)
