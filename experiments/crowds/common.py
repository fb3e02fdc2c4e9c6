"""Shared by the crowd scripts: the held-out splits and scoring (run from the repository root).
The splits (and the training scenes) live in runs/$SYNTH (default runs/synth; SYNTH=synthreal for
the real-pose scenes of `pose_runs.py real`)."""
import os
from pathlib import Path

import torch

from posegroup.engine.checkpoint import load_model
from posegroup.engine.compare import SPLITS, score_splits

torch.set_num_threads(1)
RUNS = Path("runs").resolve()
SYNTH = RUNS / os.environ.get("SYNTH", "synth")


def split_anns(splits=tuple(SPLITS), root: Path = SYNTH) -> dict:
    """Split name -> <root>/val_<split>/annotations.json (root: runs/$SYNTH)."""
    return {k: str(Path(root) / f"val_{k}" / "annotations.json") for k in splits}


def score(ckpt_or_model, test: dict | None = None, splits=tuple(SPLITS), n: int = 100) -> dict:
    """compare.score_splits of a checkpoint path or a (model, method, config) triple."""
    loaded = load_model(ckpt_or_model) if isinstance(ckpt_or_model, (str, Path)) else ckpt_or_model
    return score_splits(*loaded, dict(test or {}), split_anns(splits), max_images=n)


def aps(cells: dict) -> dict:
    """{split: (AP, true-id AP or None)} rounded, for printing."""
    return {k: (round(v["AP"], 3), None if v["true_ids_AP"] is None else round(v["true_ids_AP"], 3))
            for k, v in cells.items()}
