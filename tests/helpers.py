"""Helpers shared by the test modules: tiny stick-figure COCO datasets, tiny training configs
(AE, recurrent), exact-resume comparisons and a standing person's keypoints."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from posegroup.engine.config import merge_config
from posegroup.skeleton import COCO17

#: The tiny stacked hourglass of the test configs.
TINY_HOURGLASS = {"name": "tiny", "num_stacks": 1, "depth": 2, "base_width": 16, "width_increase": 8,
                  "stem_width": 8}

#: A standing person (COCO-17), ~170 px tall, (x, y) px with the nose at (0, 0).
STANDING_PX = np.array([[0, 0], [-5, -5], [5, -5], [-10, -3], [10, -3], [-20, 20], [20, 20], [-25, 50], [25, 50],
                        [-27, 80], [27, 80], [-15, 90], [15, 90], [-15, 130], [15, 130], [-15, 170], [15, 170]], float)


#: A standing person, COCO-17, in a unit box (x right, y down), height 1.
STICK_FIGURE = np.array([
    [0.50, 0.08], [0.46, 0.05], [0.54, 0.05], [0.42, 0.07], [0.58, 0.07],
    [0.36, 0.22], [0.64, 0.22], [0.30, 0.40], [0.70, 0.40], [0.28, 0.56], [0.72, 0.56],
    [0.42, 0.55], [0.58, 0.55], [0.41, 0.77], [0.59, 0.77], [0.40, 0.97], [0.60, 0.97]])


def make_dataset(folder: Path, num_images: int = 4, *, size: int = 128, people=(1, 3), seed: int = 0) -> Path:
    """Write a tiny COCO keypoint dataset of stick figures; returns the json path.

    Each person is a coloured skeleton with distinct joint blobs on a grey background, placed
    without overlap (columns of the image), height 50-70% of the image.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        img = np.full((size, size, 3), 90, np.uint8)
        n = int(rng.integers(people[0], people[1] + 1))
        col_w = size / n
        for p in range(n):
            h = size * rng.uniform(0.5, 0.7)
            w = min(h * 0.5, col_w * 0.9)
            x0 = p * col_w + (col_w - w) / 2
            y0 = rng.uniform(0, size - h)
            xy = STICK_FIGURE * [w, h] + [x0, y0]
            color = tuple(int(c) for c in rng.integers(120, 255, 3))
            for a, b in COCO17.edges:
                cv2.line(img, tuple(int(v) for v in xy[a] - 0.5), tuple(int(v) for v in xy[b] - 0.5), color, 2)
            for k, (x, y) in enumerate(xy):
                cv2.circle(img, (int(x - 0.5), int(y - 0.5)), 2, (255, 255 - 12 * k, 12 * k), -1)
            kp = np.concatenate([xy, np.full((17, 1), 2.0)], 1)
            bx, by = xy.min(0)
            bw, bh = xy.max(0) - xy.min(0)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "keypoints": [round(float(v), 2) for v in kp.reshape(-1)], "num_keypoints": 17,
                         "bbox": [float(bx), float(by), float(bw), float(bh)], "area": float(bw * bh),
                         "segmentation": [[float(bx), float(by), float(bx + bw), float(by),
                                           float(bx + bw), float(by + bh), float(bx), float(by + bh)]]})
        name = f"img{i:03d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
    ann = {"images": images, "annotations": anns, "categories": [COCO17.coco_category(1)]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(ann))
    return path


def tiny_config(ann: Path, out_dir: Path, **train_over) -> dict:
    """A merged config for a tiny AE model on the dataset ``ann`` (CPU, seconds per step)."""
    cfg = {
        "method": {"name": "ae", "options": {"pull_weight": 1.0, "push_weight": 1.0}},
        "model": {"name": "tiny", "num_stacks": 1, "depth": 2, "base_width": 16, "width_increase": 8,
                  "stem_width": 8},
        "data": {"train_ann": str(ann), "input_size": 64,
                 "augmentation": {"scale_range": [0.9, 1.1], "max_rotation": 10}},
        "train": {"batch_size": 2, "lr": 1e-3, "steps": 6, "workers": 0, "checkpoint_every": 100,
                  "log_every": 1, "seed": 3, "out_dir": str(out_dir),
                  "lr_schedule": {"type": "step", "milestones": [4], "gamma": 0.5}},
        "test": {"input_size": 64},
    }
    cfg["train"].update(train_over)
    return merge_config(cfg)


#: Checkpoint entries that must be identical between a resumed and an uninterrupted run.
EXACT_KEYS = ("step", "epoch", "model", "train_model", "optimizer", "scheduler", "scaler", "rng")


def assert_same_state(a, b, where: str = "") -> None:
    """Every tensor and value of ``a`` equal to ``b`` (nested dicts / lists), bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)     # NaN == NaN here


def assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints hold the same training state: every entry of :data:`EXACT_KEYS`."""
    for key in EXACT_KEYS:
        assert (key in a) == (key in b), key
        if key in a:
            assert_same_state(a[key], b[key], key)


def rng_hungry(real):
    """``build_method_from_config`` whose loss draws from every global RNG each step: dropout
    on the predictions (torch) and a loss factor from numpy and python's ``random``. A resume
    that did not restore the global RNG states gives other gradients."""
    import random

    def build(cfg, ks):
        method = real(cfg, ks)
        loss = method.loss

        def noisy_loss(preds, targets):
            preds = [torch.nn.functional.dropout(p, 0.2, training=True) for p in preds]
            total, parts = loss(preds, targets)
            return total * (1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()), parts

        method.loss = noisy_loss
        return method

    return build


def recurrent_config(ann: Path, out_dir: Path, *, options=None, model=None, **train_over) -> dict:
    """A merged config for a tiny recurrent model (tiny hourglass backbone trained with it) on
    the dataset ``ann``; ``options`` / ``model`` update the method options / model section."""
    cfg = {
        "method": {"name": "recurrent", "options": {"hidden_width": 32, "lstm1_layers": 2, "max_people": 5,
                                                    "sigma": 1.0, **(options or {})}},
        "model": {"freeze_backbone": False, "backbone": TINY_HOURGLASS, **(model or {})},
        "data": {"train_ann": str(ann), "input_size": 64, "augmentation": {"enabled": False}},
        "train": {"batch_size": 4, "lr": 3e-3, "steps": 300, "workers": 0, "checkpoint_every": 1000,
                  "log_every": 50, "seed": 0, "out_dir": str(out_dir), "lr_schedule": {"type": "cosine"}},
        "test": {"input_size": 64},
    }
    cfg["train"].update(train_over)
    return merge_config(cfg)


def stick_dataset(tmp_path_factory, name: str):
    """A 3-image stick-figure dataset (64 px) in a fresh folder ``name``: annotations.json beside
    img000..img002.png (the CLI tests' data)."""
    return make_dataset(tmp_path_factory.mktemp(name), 3, size=64, people=(1, 2))


def one_step_checkpoint(data, tmp_path_factory, name: str):
    """A 1-step tiny AE checkpoint trained on ``data`` in a fresh folder ``name``."""
    from pathlib import Path

    from posegroup.engine.train import train
    return Path(train(tiny_config(data, tmp_path_factory.mktemp(name), steps=1), progress=False)["checkpoint"])


def one_line_error(capsys, *needles) -> str:
    """The CLI's error output: exactly one ``posegroup: error:`` line containing every needle."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("posegroup: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err
