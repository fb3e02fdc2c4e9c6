"""Checkpoints: atomic writes, clear errors on bad files, and models rebuilt from the file alone.

A training checkpoint is a dict (``torch.save``) with the keys:
``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler`` (state dicts or None),
``step`` (optimizer steps done), ``epoch``, ``rng`` (:func:`rng_state`), ``config`` (the full
merged config), ``keypoint_set`` (:func:`keypoint_set_to_dict`), ``method`` (method name),
``format`` (:data:`FORMAT`).

Checkpoints are data, not code: everything in them is a tensor or plain Python data (dict,
list, str, number, bool, None), so :func:`load_checkpoint` reads them with
``torch.load(weights_only=True)``, which cannot run code. A file that needs more (an old-format
checkpoint that pickled NumPy's RNG state, or a foreign / tampered pickle) is refused with a
one-line :class:`CheckpointError`; ``trust=True`` (``--trust-checkpoint`` on the command line)
reads it the old, unsafe way -- only for a file whose origin you trust, since unpickling it can
run arbitrary code.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import replacing
from ..skeleton import KeypointSet

#: Checkpoint format tag, stored under ``"format"``.
FORMAT = "posegroup-checkpoint-v2"


class CheckpointError(ValueError):
    """A missing, corrupt or incomplete checkpoint (the message names the file)."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsync'ed, then ``os.replace``d over ``path``. A crash leaves the old file intact.

    Returns the path written.
    """
    path = Path(path)
    state = dict(state)
    state.setdefault("format", FORMAT)
    if "config" in state:
        state["config"] = plain(state["config"])
    try:
        with replacing(path, unique=True, fsync=True) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:   # disk full, permissions, torch's writer
        raise CheckpointError(f"{path}: cannot write the checkpoint ({_write_cause(e, path)}); "
                              "the previous checkpoint, if any, is intact") from None
    return path


def _write_cause(e: BaseException, path: Path) -> str:
    """One line: the OS's reason (e.g. "No space left on device"), or torch's first line plus
    the free space of the target's file system when that is nearly exhausted."""
    import shutil
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
    try:
        free = shutil.disk_usage(path.parent).free
        if free < 64 * 2 ** 20:
            cause += f"; only {free // 2 ** 20} MiB free on that disk"
    except OSError:
        pass
    return cause


def stale_temp_files(path: str | Path) -> list[Path]:
    """Temporary files of an interrupted :func:`save_checkpoint` of ``path``
    (``.NAME.*.tmp`` beside it)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(q for q in path.parent.glob(f".{path.name}.*.tmp") if q.is_file())


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` of ``path`` left behind;
    returns the files removed."""
    removed = []
    for q in stale_temp_files(path):
        try:
            q.unlink()
            removed.append(q)
        except OSError:
            pass
    return removed


#: Module-wide default of ``trust`` in :func:`load_checkpoint` (see :func:`trusting`).
_TRUST_DEFAULT = False


class trusting:
    """Context manager: inside it, :func:`load_checkpoint` calls without an explicit ``trust``
    read pickled checkpoints too (the command line's ``--trust-checkpoint``)."""

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)

    def __enter__(self):
        global _TRUST_DEFAULT
        self._saved = _TRUST_DEFAULT
        _TRUST_DEFAULT = self.enabled or _TRUST_DEFAULT
        return self

    def __exit__(self, *exc):
        global _TRUST_DEFAULT
        _TRUST_DEFAULT = self._saved
        return False


def load_checkpoint(path: str | Path, map_location: Any = "cpu", *, trust: bool | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with ``torch.load(weights_only=True)``.

    Args:
        trust: also read a checkpoint holding arbitrary pickled objects (an old-format or
            foreign file) with ``weights_only=False`` -- which runs any code the file carries.
            Only for files of trusted origin. Default: False (inside :class:`trusting`: True).
    Raises :class:`CheckpointError` with a one-line message naming the file when it is missing,
    unreadable, truncated/corrupt, holds pickled code (untrusted), or is not a posegroup checkpoint.
    """
    path = Path(path)
    trust = _TRUST_DEFAULT if trust is None else bool(trust)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if not trust and found:
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects ({found.group(1)}), not just tensors and "
                "plain data (an old-format or foreign checkpoint; loading it could run code). If you trust its "
                "origin, pass --trust-checkpoint (trust=True)") from None
        detail = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = detail[-2] if "weights only load failed" in text.lower() and len(detail) >= 2 else (
            detail[0] if detail else type(e).__name__)
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({first})") from None
    except Exception as e:  # anything a trusted (unsafe) unpickling raises
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a posegroup checkpoint (no 'model' entry)")
    return state


def plain(obj: Any) -> Any:
    """``obj`` as plain data ``torch.load(weights_only=True)`` reads: dicts (str keys), lists,
    str, int, float, bool, None and tensors; tuples become lists, paths strings, NumPy scalars
    and arrays Python numbers and lists."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint as plain data")


# ---- pieces of the state --------------------------------------------------------------------

def rng_state() -> dict:
    """The global random states: python, numpy, torch CPU and (if any) every CUDA device, as
    plain data and tensors (readable with ``weights_only=True``):
    ``python`` [version, [625 ints], gauss_next], ``numpy`` {"kind", "keys" (uint32 tensor),
    "pos", "has_gauss", "cached_gaussian"}, ``torch`` (uint8 tensor), ``cuda`` (list of them)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [int(version), [int(v) for v in internal], gauss],
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.array(keys, dtype=np.uint32)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` output (CUDA states only when CUDA is there). Also takes the
    tuples of old (pickled) checkpoints."""
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
    npst = state["numpy"]
    if isinstance(npst, dict):
        keys = npst["keys"]
        keys = keys.numpy() if hasattr(keys, "numpy") else np.asarray(keys)
        np.random.set_state((npst["kind"], np.asarray(keys, dtype=np.uint32), int(npst["pos"]),
                             int(npst["has_gauss"]), float(npst["cached_gaussian"])))
    else:
        np.random.set_state(npst)
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

    The method's :meth:`~posegroup.methods.base.Method.build_model` hook supplies its own
    network (e.g. heads on ``model.backbone: posenet_mobilenet``, the recurrent decoder on top
    of a hourglass); when it returns None a stacked hourglass with ``method.num_channels``
    output channels per stack is built with
    :func:`posegroup.backbones.hourglass.hourglass_from_config`; ``model.head_split: outputs``
    becomes ``method.output_groups`` (one read-out per kind of output the method predicts).
    """
    model_cfg = dict(config.get("model") or {})
    net = method.build_model(dict(model_cfg))
    if net is not None:
        return net
    from ..backbones.hourglass import hourglass_from_config
    model_cfg.pop("init_from", None)
    return hourglass_from_config(model_cfg, method.num_channels, method.output_groups)


def load_init_weights(net: torch.nn.Module, config: dict, method) -> str | None:
    """Initialise ``net`` from the checkpoint named by ``model.init_from`` (a fresh training
    run only) through ``method.load_init_state(net, state_dict, source)`` (default: every weight,
    strictly; the recurrent method loads an AE checkpoint into its backbone). Returns the path
    used, or None."""
    path = (config.get("model") or {}).get("init_from")
    if not path:
        return None
    state = load_checkpoint(path)["model"]
    try:
        method.load_init_state(net, state, str(path))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: model.init_from weights do not fit the configured model "
                              f"({str(e).strip().splitlines()[0]})") from None
    return str(path)


def build_method_from_config(config: dict, keypoint_set: KeypointSet, *, source: str | None = None):
    """``build_method(config.method.name, keypoint_set, **config.method.options)``; a bad
    option is a one-line :class:`~posegroup.engine.config.ConfigError` naming ``source``
    (default: the config's file) and ``method.options.<key>``."""
    from ..methods import build_method
    from .config import option_error
    m = config["method"]
    try:
        return build_method(m["name"], keypoint_set, **(m.get("options") or {}))
    except (TypeError, ValueError) as e:
        raise option_error(e, str(source or config.get("_source") or "<config>")) from None


def load_model(path: str | Path, map_location: Any = "cpu", *,
               trust: bool | None = None) -> tuple[torch.nn.Module, Any, dict]:
    """Rebuild ``(model, method, config)`` from a checkpoint alone (model in eval mode).

    ``trust``: as in :func:`load_checkpoint` (default: refuse pickled code).
    Raises :class:`CheckpointError` naming the file when it is missing, corrupt, lacks the
    config/keypoint set, or its weights do not fit the network its config describes.
    """
    state = load_checkpoint(path, map_location, trust=trust)
    for key in ("config", "keypoint_set", "method"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}' (cannot rebuild the model)")
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("method"), dict) \
            or not isinstance(config.get("data", {}), dict):
        raise CheckpointError(f"{path}: checkpoint 'config' is not a config mapping with a 'method' section "
                              f"(got {type(config).__name__}); cannot rebuild the model")
    try:
        ks = keypoint_set_from_dict(state["keypoint_set"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: checkpoint 'keypoint_set' is malformed ({type(e).__name__}: {e})") from None
    method = build_method_from_config(config, ks, source=f"{path} (config)")
    model = build_model(config, method)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the configured model "
                              f"({str(e).strip().splitlines()[0]})") from None
    model.eval()
    return model, method, config
