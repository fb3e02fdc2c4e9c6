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
    return method_class(name)(keypoint_set, **cfg)


def method_class(name: str) -> type:
    """The :class:`Method` subclass of method ``name`` (without instantiating it)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls = getattr(importlib.import_module(METHODS[name]), "METHOD", None)
    if cls is None:
        raise ValueError(f"method {name!r} is not implemented yet")
    return cls


def test_flags() -> dict[str, tuple[dict, tuple[str, ...]]]:
    """Every method's :attr:`Method.TEST_FLAGS`, merged: name -> (argparse keywords, the
    methods that take it). The CLI builds its test-time flags from this, so it names no method."""
    out: dict[str, tuple[dict, tuple[str, ...]]] = {}
    for name in METHODS:
        for flag, spec in method_class(name).TEST_FLAGS.items():
            first, owners = out.get(flag, (spec, ()))
            out[flag] = (first, owners + (name,))
    return out


#: Foreign ONNX networks ``predict --onnx M --format F`` reads: format -> "module:Class", a class
#: taking (path, **test options) with ``predict(image)`` and ``keypoint_set``.
ONNX_FORMATS = {"posenet": "posegroup.methods.personlab.posenet:PoseNetONNX"}


def onnx_predictor(fmt: str, path, **opts):
    """(predictor, keypoint_set) for an ONNX network of format ``fmt``."""
    if fmt not in ONNX_FORMATS:
        raise ValueError(f"unknown ONNX format {fmt!r}; choose one of {sorted(ONNX_FORMATS)}")
    module, cls = ONNX_FORMATS[fmt].split(":")
    net = getattr(importlib.import_module(module), cls)(path, **opts)
    return net.predict, net.keypoint_set


__all__ = ["Method", "build_method", "method_class", "test_flags", "onnx_predictor", "ONNX_FORMATS", "METHODS"]
