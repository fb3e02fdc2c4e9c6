"""``posegroup export``: a trained network to ONNX (the grouping stays in Python: decoders are
not networks). The exported graph takes ``image`` (B, 3, H, W) normalised with ImageNet
mean/std (H, W multiples of the model's stride multiple) and returns ``output`` (B, C, H/4, W/4),
the last stack's prediction, which ``method.predict`` decodes."""
from __future__ import annotations

from pathlib import Path

import torch


class _LastStack(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image):
        export = getattr(self.model, "export_forward", None)   # a model may export another output
        out = export(image) if callable(export) else self.model(image)
        return out[-1] if isinstance(out, (list, tuple)) else out


def export_onnx(weights, out, *, input_size: int | None = None, opset: int = 17) -> Path:
    """Export the checkpoint ``weights`` to ONNX at ``out``; checks it with onnxruntime when
    installed (max abs difference to PyTorch printed). Returns the output path."""
    from .checkpoint import load_model

    model, method, config = load_model(weights)
    size = int(input_size or (config or {}).get("data", {}).get("input_size", 512))
    wrapped = _LastStack(model).eval()
    x = torch.randn(1, 3, size, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(wrapped, (x,), str(out), input_names=["image"], output_names=["output"],
                      opset_version=opset, dynamo=False,
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "output": {0: "batch", 2: "out_height", 3: "out_width"}})
    try:
        import onnxruntime as ort
    except ImportError:
        return out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = wrapped(x).numpy()
    got = sess.run(None, {"image": x.numpy()})[0]
    diff = float(abs(ref - got).max())
    if diff > 1e-3 * max(1.0, float(abs(ref).max())):
        raise RuntimeError(f"{out}: ONNX output differs from PyTorch by {diff:.2e}")
    print(f"onnxruntime check: max abs difference {diff:.2e}")
    return out
