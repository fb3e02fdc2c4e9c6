"""Optional dependencies -- the ``[onnx]`` and ``[ray]`` extras of pyproject.toml -- imported in
one place, so that a missing one is one line saying which ``pip install`` fixes it."""
from __future__ import annotations

import importlib

#: Optional module -> the extra that installs it.
EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "ray": "ray", "ray.data": "ray"}


class MissingDependency(ImportError):
    """An optional package is not installed; the message names it and the ``pip install`` that
    adds it (the CLI prints it as one line)."""


def require(module: str, purpose: str):
    """``import module`` for ``purpose`` (what needs it, e.g. "posegroup export"), or a one-line
    :class:`MissingDependency`."""
    extra = EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: pip install 'posegroup[{extra}]' "
            f"(from a checkout: pip install -e \".[{extra}]\")") from None
