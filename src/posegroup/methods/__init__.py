"""Grouping methods. Each method is one folder with targets.py, head.py, loss.py, decode.py and
a :class:`~posegroup.methods.base.Method` subclass in its ``__init__``; ``build_method`` finds it
by name."""
from __future__ import annotations

import importlib

from .base import Method

METHODS = {"ae": "posegroup.methods.ae", "personlab": "posegroup.methods.personlab",
           "recurrent": "posegroup.methods.recurrent"}


def build_method(name: str, keypoint_set, **cfg) -> Method:
    """Instantiate method ``name`` ("ae", "personlab", ...) for ``keypoint_set`` with config ``cfg``
    (the method's validated settings: an unknown keyword, a wrong type or an out-of-range value
    is a one-line ValueError naming the key and the valid choices)."""
    return method_class(name)(keypoint_set, **cfg)


def check_options(name: str, options: dict | None, *, what: str = "method.options") -> None:
    """Validate method ``name``'s ``options`` without a keypoint set (config load time): the
    class's :meth:`Method.check_options` (by default a build for COCO-17). ValueError as
    :func:`build_method`."""
    method_class(name).check_options(dict(options or {}), what=what)


def inference_option_names(name: str) -> list[str]:
    """The inference options of method ``name`` (a config's ``test`` section, the keywords
    ``method.predict`` takes): the fields of its ``INFERENCE_SETTINGS``, which hold every name of
    its ``INFERENCE_OPTIONS``, ``DECODE_OPTIONS`` and ``INFERENCE_FLAGS``."""
    import dataclasses
    cls = method_class(name)
    return sorted({f.name for f in dataclasses.fields(cls.INFERENCE_SETTINGS)} | set(cls.INFERENCE_FLAGS))


def method_class(name: str) -> type:
    """The :class:`Method` subclass of method ``name`` (without instantiating it)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls = getattr(importlib.import_module(METHODS[name]), "METHOD", None)
    if cls is None:
        raise ValueError(f"method {name!r} is not implemented yet")
    return cls


def inference_flags() -> dict[str, tuple[dict, tuple[str, ...]]]:
    """Every method's :attr:`Method.INFERENCE_FLAGS`, merged: name -> (argparse keywords, the
    methods that take it). The CLI builds its test-time flags from this, so it names no method."""
    out: dict[str, tuple[dict, tuple[str, ...]]] = {}
    for name in METHODS:
        for flag, spec in method_class(name).INFERENCE_FLAGS.items():
            first, owners = out.get(flag, (spec, ()))
            out[flag] = (first, owners + (name,))
    return out


#: Foreign ONNX networks ``predict --onnx M --format F`` reads: format -> "module:Class", a class
#: taking (path, **test options, threads=None) with ``predict(image)``, its two parts
#: ``network_outputs(image)`` (the network passes, timed as the network by ``benchmark predict``)
#: and ``decode(outputs, image_shape, **decode options)``, ``keypoint_set`` and ``run_graph(x)``
#: (the graph alone).
ONNX_FORMATS = {"posenet": "posegroup.methods.personlab.posenet:PoseNetONNX"}
#: The format of an ONNX network without posegroup metadata when none is given.
DEFAULT_ONNX_FORMAT = "posenet"


def onnx_adapter(fmt: str, path, **opts):
    """The adapter object of an ONNX network of format ``fmt`` (``ONNX_FORMATS[fmt](path, **opts)``):
    ``predict(image) -> (poses, scores)``, as ``decode(network_outputs(image), image.shape)``,
    ``keypoint_set``, and ``run_graph(x)`` (the graph alone)."""
    if fmt not in ONNX_FORMATS:
        raise ValueError(f"unknown ONNX format {fmt!r}; choose one of {sorted(ONNX_FORMATS)}")
    return _adapter(ONNX_FORMATS[fmt], opts, f"--onnx --format {fmt}")(path, **opts)


def _adapter(spec: str, opts: dict, what: str) -> type:
    """The adapter class of ``spec`` ("module:Class"), after checking that it takes every keyword
    of ``opts`` (one-line ValueError naming the flag and the ones it takes)."""
    import inspect
    module, cls_name = spec.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls.__init__).parameters
    takes = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k not in ("keypoint_set", "decode")]
    unknown = sorted(k for k in opts if k not in takes)
    if unknown:
        raise ValueError(f"--{unknown[0].replace('_', '-')} is not a test option of {what} "
                         f"(its options: {', '.join('--' + k.replace('_', '-') for k in takes)})")
    return cls


#: Pretrained networks shipped in the package: name -> "module:Class", a class taking
#: (weights=None, *, device=None, **test options) with the adapter interface of ONNX_FORMATS.
PRETRAINED = {"posenet": "posegroup.methods.personlab.posenet:PoseNetTorch"}
#: What ``posegroup predict`` and ``Predictor.load()`` use when no model is given.
DEFAULT_PRETRAINED = "posenet"


def pretrained_model(name: str | None = None, **opts):
    """The adapter object of shipped pretrained network ``name`` (default
    :data:`DEFAULT_PRETRAINED`), its weights read from the package. ``opts``: its test-time
    options (``input_size``, ``flip``...) and ``device``; an unknown one is a one-line ValueError."""
    name = name or DEFAULT_PRETRAINED
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained network {name!r}; choose one of {sorted(PRETRAINED)}")
    return _adapter(PRETRAINED[name], opts, f"the pretrained {name} network")(**opts)


def onnx_predictor(fmt: str, path, **opts):
    """(predictor, keypoint_set) for an ONNX network of format ``fmt``."""
    net = onnx_adapter(fmt, path, **opts)
    return net.predict, net.keypoint_set


__all__ = ["Method", "build_method", "check_options", "inference_option_names", "method_class", "inference_flags", "onnx_adapter", "onnx_predictor", "pretrained_model", "PRETRAINED", "DEFAULT_PRETRAINED", "ONNX_FORMATS", "DEFAULT_ONNX_FORMAT", "METHODS"]
