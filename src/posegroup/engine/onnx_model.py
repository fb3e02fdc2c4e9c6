"""Our own ONNX models, read back without the checkpoint: the metadata ``posegroup export`` writes
and the module-like adapter that lets ``method.predict`` run on onnxruntime.

``export`` stores in the ONNX ``metadata_props``:

* ``posegroup`` -- JSON: ``format_version``, ``method`` (name), ``method_options``, ``model`` (the
  config's model section, to rebuild the parts of the network the graph does not hold),
  ``keypoint_set`` (:func:`~posegroup.engine.checkpoint.keypoint_set_to_dict`), ``stride``,
  ``input_multiple``, ``test`` (the test options, as ``predict --weights`` would use them) and
  ``graph``: ``"forward"`` (the graph is the last stack's output of ``model(x)``) or
  ``"export_forward"`` (the graph is ``model.export_forward(x)``, e.g. the features a recurrent
  head reads);
* ``posegroup.torch_state`` -- the parameters and buffers of the modules the graph never runs
  (e.g. the recurrent method's LSTM head, whose loop stays in PyTorch), base64 of a numpy
  ``.npz`` (plain arrays, read with ``allow_pickle=False``: data, not code); empty when the graph
  holds the whole network.

:class:`OnnxModel` is a ``torch.nn.Module`` whose ``forward(x)`` runs the graph and returns what
the model's forward returns for decoding (a one-element list: the last stack), whose
``export_forward(x)`` / ``features(x)`` return the graph output of an ``export_forward`` graph,
and which carries ``stride``, ``input_multiple`` and the rebuilt PyTorch modules outside the
graph (their attributes, e.g. ``head``, are reached through the adapter). So every method's
``predict(model, image)`` runs on it unchanged.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: metadata_props keys.
META_KEY = "posegroup"
STATE_KEY = "posegroup.torch_state"
FORMAT_VERSION = 1


class OnnxModelError(ValueError):
    """A refused or unreadable ONNX model (the message names the file)."""


# ----------------------------------------------------------------------------- export side
def covered_modules(model: torch.nn.Module, run, x: torch.Tensor) -> set[str]:
    """Names of the submodules ``run(x)`` calls (forward hooks)."""
    called: set[str] = set()
    handles = [m.register_forward_hook(lambda mod, i, o, n=name: called.add(n))
               for name, m in model.named_modules()]
    try:
        with torch.no_grad():
            run(x)
    finally:
        for h in handles:
            h.remove()
    return called


def outside_state(model: torch.nn.Module, covered: set[str]) -> dict[str, np.ndarray]:
    """Parameters and buffers of the modules not in ``covered`` (state-dict names -> arrays)."""
    owners = {}
    for name, m in model.named_modules():
        for p in list(m._parameters) + list(m._buffers):
            owners[f"{name}.{p}" if name else p] = name
    out = {}
    for key, value in model.state_dict().items():
        owner = owners.get(key, key.rpartition(".")[0])
        if owner not in covered and torch.is_tensor(value):
            out[key] = value.detach().cpu().numpy()
    return out


def encode_state(state: dict[str, np.ndarray]) -> str:
    if not state:
        return ""
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": v for i, v in enumerate(state.values())},
             __names__=np.array(list(state), dtype=np.str_))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_state(text: str) -> dict[str, torch.Tensor]:
    if not text:
        return {}
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as z:
        names = [str(n) for n in z["__names__"]]
        return {n: torch.from_numpy(np.array(z[f"a{i}"])) for i, n in enumerate(names)}


def export_metadata(model: torch.nn.Module, method, config: dict, keypoint_set_dict: dict, *,
                    test: dict, graph: str, state: dict[str, np.ndarray]) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (see the module docstring)."""
    model_cfg = dict((config or {}).get("model") or {})
    model_cfg.pop("init_from", None)   # a training-time path, not needed to decode
    meta = {"format_version": FORMAT_VERSION, "method": method.name,
            "method_options": dict(((config or {}).get("method") or {}).get("options") or {}),
            "model": model_cfg, "keypoint_set": keypoint_set_dict,
            "stride": int(model.stride), "input_multiple": int(model.input_multiple),
            "test": {k: (list(v) if isinstance(v, tuple) else v) for k, v in test.items()}, "graph": graph}
    return {META_KEY: json.dumps(meta), STATE_KEY: encode_state(state)}


# ----------------------------------------------------------------------------- read side
def _onnx():
    from ..extras import require
    return require("onnx", "reading an ONNX model (--onnx)")


def read_metadata(path: str | Path) -> dict[str, str] | None:
    """The posegroup ``metadata_props`` of ``path`` (``{key: value}``), or None when the model
    carries none (a foreign network)."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 -- protobuf raises several types
        raise OnnxModelError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    return props if META_KEY in props else None


def _session(path: Path):
    from ..extras import require
    ort = require("onnxruntime", "running an ONNX model (--onnx)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, torch.get_num_threads())
    so.inter_op_num_threads = 1
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), so, providers=providers)


class OnnxModel(torch.nn.Module):
    """A posegroup ONNX model as a module ``method.predict`` can run (see the module docstring).

    ``inner``: the PyTorch modules outside the graph (rebuilt from the metadata's method and
    model sections with the stored weights), or None when the graph holds the whole network.
    The adapter lives on the CPU (its parameters, if any, say so to the methods); the graph runs
    on CUDA when onnxruntime has that provider, else on the CPU.
    """

    def __init__(self, path: str | Path, meta: dict, inner: torch.nn.Module | None, session):
        super().__init__()
        self.path = str(path)
        self.meta = meta
        self.stride = int(meta["stride"])
        self.input_multiple = int(meta["input_multiple"])
        self.graph = meta.get("graph", "forward")
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.inner = inner
        if inner is None:  # a device for ``next(model.parameters())``: the CPU
            self._device_anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

    def run_graph(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)

    def forward(self, x: torch.Tensor):
        if self.graph != "forward":
            raise OnnxModelError(f"{self.path}: the graph holds the model's export_forward, not its forward")
        return [self.run_graph(x)]

    def export_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_graph(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The graph output of an ``export_forward`` graph (what the model's method reads through
        ``features``)."""
        if self.graph != "export_forward":
            raise OnnxModelError(f"{self.path}: the graph holds the model's forward, not its features")
        return self.run_graph(x)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self._modules.get("inner")
            if inner is None or name.startswith("_") or name == "module":
                raise
            return getattr(inner, name)


def load_onnx_model(path: str | Path) -> tuple[OnnxModel, Any, dict]:
    """``(adapter, method, meta)`` of a posegroup ONNX model; :class:`OnnxModelError` naming the
    file when it carries no posegroup metadata or the metadata is unusable."""
    from ..methods import build_method
    from .checkpoint import build_model, keypoint_set_from_dict
    path = Path(path)
    props = read_metadata(path)
    if props is None:
        raise OnnxModelError(f"{path}: carries no posegroup metadata (not written by 'posegroup export'?); "
                             "for a foreign network give --format")
    try:
        meta = json.loads(props[META_KEY])
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise OnnxModelError(f"{path}: metadata format {meta['format_version']} is newer than this "
                                 f"posegroup reads ({FORMAT_VERSION}); upgrade posegroup")
        ks = keypoint_set_from_dict(meta["keypoint_set"])
        method = build_method(meta["method"], ks, **(meta.get("method_options") or {}))
        state = decode_state(props.get(STATE_KEY, ""))
    except OnnxModelError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise OnnxModelError(f"{path}: unusable posegroup metadata ({type(e).__name__}: {e})") from None
    inner = None
    if state:
        inner = build_model({"model": meta.get("model") or {}}, method)
        missing, unexpected = inner.load_state_dict(state, strict=False)
        if unexpected:
            raise OnnxModelError(f"{path}: stored weights do not fit the {meta['method']} model "
                                 f"(unexpected {list(unexpected)[:3]})")
        inner.eval()
    return OnnxModel(path, meta, inner, _session(path)).eval(), method, meta
