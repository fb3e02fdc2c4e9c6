"""Grouping methods. Each method is one folder with targets.py, head.py, loss.py, decode.py and
a :class:`~posegroup.methods.base.Method` subclass in its ``__init__``; ``build_method`` finds it
by name."""
from __future__ import annotations

import importlib

from .base import Method

METHODS = {"ae": "posegroup.methods.ae", "personlab": "posegroup.methods.personlab",
           "recurrent": "posegroup.methods.recurrent"}


def build_method(name: str, keypoint_set, **cfg) -> Method:
    """Instantiate method ``name`` ("ae", "personlab", ...) for ``keypoint_set`` with config ``cfg``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    module = importlib.import_module(METHODS[name])
    cls = getattr(module, "METHOD", None)
    if cls is None:
        raise ValueError(f"method {name!r} is not implemented yet")
    return cls(keypoint_set, **cfg)


__all__ = ["Method", "build_method", "METHODS"]
