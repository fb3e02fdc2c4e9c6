"""Checkpoints: atomic writes, clear errors on bad files, and models rebuilt from the file alone.

A training checkpoint is a dict (``torch.save``) with the keys:
``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler`` (state dicts or None),
``step`` (optimizer steps done), ``epoch``, ``rng`` (:func:`rng_state`), ``config`` (the full
merged config), ``keypoint_set`` (:func:`keypoint_set_to_dict`), ``method`` (method name),
``format`` (:data:`FORMAT`).
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..skeleton import KeypointSet

#: Checkpoint format tag, stored under ``"format"``.
FORMAT = "posegroup-checkpoint-v1"


class CheckpointError(ValueError):
    """A missing, corrupt or incomplete checkpoint (the message names the file)."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsync'ed, then ``os.replace``d over ``path``. A crash leaves the old file intact.

    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state.setdefault("format", FORMAT)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable too
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` with a one-line message naming the file when it is missing,
    unreadable, truncated/corrupt, or not a posegroup checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a posegroup checkpoint (no 'model' entry)")
    return state


# ---- pieces of the state --------------------------------------------------------------------

def rng_state() -> dict:
    """The global random states: python, numpy, torch CPU and (if any) every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` output (CUDA states only when CUDA is there)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def keypoint_set_to_dict(ks: KeypointSet) -> dict:
    """Plain-data form of a keypoint set (stored in checkpoints)."""
    return {"name": ks.name, "names": list(ks.names), "flip_pairs": [list(p) for p in ks.flip_pairs],
            "edges": [list(e) for e in ks.edges], "sigmas": list(ks.sigmas)}


def keypoint_set_from_dict(d: dict) -> KeypointSet:
    """Inverse of :func:`keypoint_set_to_dict`."""
    return KeypointSet(name=d["name"], names=tuple(d["names"]),
                       flip_pairs=tuple(tuple(p) for p in d["flip_pairs"]),
                       edges=tuple(tuple(e) for e in d["edges"]), sigmas=tuple(d["sigmas"]))


def build_model(config: dict, method) -> torch.nn.Module:
    """The network for ``method`` from ``config["model"]``.

    A method may supply its own network through a ``build_model(model_cfg)`` method (e.g. the
    recurrent decoder on top of a hourglass); otherwise a stacked hourglass with
    ``method.num_channels`` output channels per stack is built with
    :func:`posegroup.backbones.hourglass.hourglass_from_config`.
    """
    model_cfg = dict(config.get("model") or {})
    builder = getattr(method, "build_model", None)
    if callable(builder):
        return builder(model_cfg)
    from ..backbones.hourglass import hourglass_from_config
    return hourglass_from_config(model_cfg, method.num_channels)


def build_method_from_config(config: dict, keypoint_set: KeypointSet):
    """``build_method(config.method.name, keypoint_set, **config.method.options)``."""
    from ..methods import build_method
    m = config["method"]
    return build_method(m["name"], keypoint_set, **(m.get("options") or {}))


def load_model(path: str | Path, map_location: Any = "cpu") -> tuple[torch.nn.Module, Any, dict]:
    """Rebuild ``(model, method, config)`` from a checkpoint alone (model in eval mode).

    Raises :class:`CheckpointError` naming the file when it is missing, corrupt, lacks the
    config/keypoint set, or its weights do not fit the network its config describes.
    """
    state = load_checkpoint(path, map_location)
    for key in ("config", "keypoint_set", "method"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}' (cannot rebuild the model)")
    config = state["config"]
    ks = keypoint_set_from_dict(state["keypoint_set"])
    method = build_method_from_config(config, ks)
    model = build_model(config, method)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the configured model "
                              f"({str(e).strip().splitlines()[0]})") from None
    model.eval()
    return model, method, config
