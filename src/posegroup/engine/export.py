"""``posegroup export``: a trained network to ONNX (the grouping stays in Python: decoders are
not networks). The exported graph takes ``image`` (B, 3, H, W) normalised with ImageNet
mean/std (H, W multiples of the model's stride multiple) and returns ``output`` (B, C, H/4, W/4),
the last stack's prediction, which ``method.predict`` decodes (a model with ``export_forward``:
what that returns, e.g. the features a recurrent head reads; the head stays in PyTorch).

The file's ``metadata_props`` carry what decoding needs -- method, method options, keypoint
set, stride, input multiple, test options, and the weights of the modules the graph does not
run (:mod:`posegroup.engine.onnx_model`) -- so ``predict --onnx M.onnx`` needs no checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from ..files import refuse_existing, replacing
from ..methods.common import last_stack


class _LastStack(torch.nn.Module):
    """What the graph runs: the last stack of ``model``'s ``graph`` ("forward": the model itself;
    "export_forward": ``model.export_forward``, see ``Method.EXPORT_GRAPH``)."""

    def __init__(self, model: torch.nn.Module, graph: str = "forward"):
        super().__init__()
        if graph not in ("forward", "export_forward"):
            raise ValueError(f"graph must be 'forward' or 'export_forward', got {graph!r}")
        self.model = model
        self.graph = graph

    def forward(self, image):
        return last_stack(self.model.export_forward if self.graph == "export_forward" else self.model, image)


#: Suffixes of checkpoints: ``export`` never writes an ONNX file under such a name.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


class ExportError(ValueError):
    """A refused or failed export (the message names the file)."""


def _is_onnx_file(path: Path) -> bool:
    """Whether ``path`` holds an ONNX model (a protobuf ModelProto with a graph), read without
    unpickling anything: what ``export --overwrite`` may replace."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:1] != b"\x08" or head[:2] == b"PK":      # ModelProto starts with ir_version (field 1)
            return False
        import onnx
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:   # noqa: BLE001 -- any parse failure: not an ONNX file
        return False


def _check_target(out: Path, weights, overwrite: bool) -> None:
    """The refusals of :func:`export_onnx` about ``out`` (nothing read or written yet)."""
    if out.resolve() == Path(weights).resolve():
        raise ExportError(f"{out}: is the checkpoint being exported; choose another --out")
    if out.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise ExportError(f"{out}: an ONNX file must not be named like a checkpoint ({out.suffix}); use .onnx")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; --out names the .onnx file to write")
    if out.is_symlink():
        raise ExportError(f"{out}: is a symbolic link; export never writes through one (choose another --out)")
    refuse_existing(out, overwrite, error=ExportError)
    if out.exists() and not _is_onnx_file(out):
        raise ExportError(f"{out}: exists and is not an ONNX model (a checkpoint? another file?); --overwrite "
                          "replaces only an ONNX file (choose another --out)")


def _check_finite(model: torch.nn.Module, weights) -> None:
    """A network with NaN or infinite weights (a diverged run) is not exported."""
    bad = next((k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ExportError(f"{weights}: weight '{bad}' holds NaN or infinite values (a diverged run?); not exported")


def _check_onnxruntime(path: Path, wrapped: torch.nn.Module, x: torch.Tensor, out: Path) -> float | None:
    """Max abs difference between onnxruntime's output of the ONNX file ``path`` and PyTorch's of
    ``wrapped`` on ``x`` (None without onnxruntime); a RuntimeError naming ``out`` beyond 1e-3
    of the output's scale."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = wrapped(x).cpu().numpy()
    got = sess.run(None, {"image": x.cpu().numpy()})[0]
    diff = float(abs(ref - got).max())
    if diff > 1e-3 * max(1.0, float(abs(ref).max())):
        raise RuntimeError(f"{out}: ONNX output differs from PyTorch by {diff:.2e}")
    return diff


def export_onnx(weights, out, *, input_size: int | None = None, opset: int = 17, overwrite: bool = False,
                trust: bool | None = None, device: str | None = None) -> Path:
    """Export the checkpoint ``weights`` to ONNX at ``out``; checks it with onnxruntime when
    installed (max abs difference to PyTorch printed). Returns the output path.

    Safety: ``out`` is written to a temporary file beside it and moved into place only once
    exported and checked. An existing ``out`` is refused unless ``overwrite``, and replaced only
    when it is an ONNX model; ``out`` equal to ``weights``, a folder, a symbolic link, or named like
    a checkpoint (:data:`CHECKPOINT_SUFFIXES`) is always refused (:class:`ExportError`), as are
    NaN or infinite weights. The file gets the mode the umask gives a new file. ``trust``: see :func:`~posegroup.engine.checkpoint.load_checkpoint`.
    ``device``: where the network is traced (default cpu).
    """
    from ..extras import require
    from ..limits import MAX_INPUT_SIZE, MIN_INPUT_SIZE, check_int
    from .checkpoint import keypoint_set_to_dict, load_model
    from .onnx_model import covered_modules, export_metadata, outside_state
    from .predict import inference_options

    onnx = require("onnx", "posegroup export")     # torch's exporter writes through it
    out = Path(out)
    _check_target(out, weights, overwrite)
    if input_size is not None:
        check_int(input_size, "--input-size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    model, method, config = load_model(weights, trust=trust)
    _check_finite(model, weights)
    size = int(input_size or (config or {}).get("data", {}).get("input_size", 512))
    check_int(size, f"{weights}: data.input_size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    wrapped = _LastStack(model.to(device or "cpu"), method.EXPORT_GRAPH).eval()
    x = torch.randn(1, 3, size, size, device=device or "cpu")
    covered = covered_modules(wrapped.model, wrapped, x)   # modules the graph runs; the others' weights travel
    metadata = export_metadata(model, method, config, keypoint_set_to_dict(method.keypoint_set),
                               test=inference_options(config or {"data": {"input_size": size}}, method),
                               graph=wrapped.graph, state=outside_state(model, covered))
    with replacing(out, unique=True) as tmp:
        try:
            torch.onnx.export(wrapped, (x,), str(tmp), input_names=["image"], output_names=["output"],
                              opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "output": {0: "batch", 2: "out_height", 3: "out_width"}})
        except torch.onnx.OnnxExporterError as e:
            raise ExportError(f"{weights}: torch's ONNX exporter failed ({str(e).splitlines()[0]})") from None
        proto = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        diff = _check_onnxruntime(tmp, wrapped, x, out)
    if diff is not None:
        print(f"onnxruntime check: max abs difference {diff:.2e}")
    return out
