"""``Predictor``: one object that turns a model into people.

    from posegroup import Predictor
    predictor = Predictor.load()                 # the pretrained PoseNet shipped in the package
    people = predictor(image)                    # uint8 (H, W, 3) RGB -> [Person, ...]
    for person in people:
        print(person.score, person.keypoints)    # (K, 3): x, y, score in image pixels

``Predictor.load(path)`` takes a training checkpoint, an ONNX file (one ``posegroup export``
wrote, or a foreign network with ``format=``), the name of a model shipped in the package
(:data:`SHIPPED`), or None for the pretrained default (``posegroup.methods.DEFAULT_PRETRAINED``: PoseNet's
MobileNetV1, Google's, Apache-2.0, with the PersonLab decoder; its weights ship in
``posegroup/weights/``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .shipped import shipped_model
from .timed import TimedRun, adapter_run


@dataclass(frozen=True)
class Person:
    """One detected person.

    keypoints: (K, 3) float32 x, y, score in image pixels; score: the person's score;
    mask: (H, W) bool instance mask in image pixels (methods that segment), else None."""

    keypoints: np.ndarray
    score: float
    mask: np.ndarray | None = None


class Predictor:
    """A model ready to predict: ``predictor(image) -> [Person]``.

    Args:
        run: ``image -> (poses (N, K, 3), scores (N,)[, masks (N, H, W)])`` (the raw predictor;
            a :class:`TimedRun` for every model :meth:`load` reads, which times the network
            and the decoder of each call: :attr:`timings`).
        keypoint_set: the model's keypoints.
        label: "method (model file)", the pictures' caption.
        method: the grouping method of a checkpoint or posegroup ONNX model (None for a foreign
            or pretrained network): what ``evaluate`` asks for its own figures.
        model: a checkpoint's network (the torch module ``run`` predicts with), None for other
            models: what the demo draws the method's maps with.
        config: a checkpoint's config (None for other models).
    """

    def __init__(self, run: Callable[[np.ndarray], tuple], keypoint_set, label: str = "", method=None, *,
                 model=None, config: dict | None = None):
        self.run = run
        self.keypoint_set = keypoint_set
        self.label = label
        self.method = method
        self.model = model
        self.config = config

    def __call__(self, image: np.ndarray) -> list[Person]:
        """uint8 (H, W, 3) RGB image -> people, highest score first."""
        from .predict import unpack
        poses, scores, masks = unpack(self.run(image))
        order = np.argsort(-scores, kind="stable")
        return [Person(poses[i].astype(np.float32), float(scores[i]), None if masks is None else masks[i])
                for i in order]

    @property
    def timings(self) -> dict[str, float] | None:
        """``{"network_ms", "decoder_ms"}`` of the last image predicted (None when ``run`` is
        not a :class:`TimedRun`)."""
        if not isinstance(self.run, TimedRun):
            return None
        return {"network_ms": 1e3 * self.run.network_s, "decoder_ms": 1e3 * self.run.decoder_s}

    def predict_files(self, paths: str | Path | Iterable[str | Path], out_dir: str | Path, *, draw: bool = True,
                      progress: bool = False, overwrite: bool = False, min_score: float = 0.0, gt_file=None):
        """Predict image files and folders (searched recursively) into ``out_dir``: COCO
        ``results.json`` and, with ``draw``, one picture per image. Returns the COCO results (a
        list; its ``skipped`` attribute lists unreadable files with the reason)."""
        from .predict import predict_images
        return predict_images(self.run, paths, out_dir=out_dir, keypoint_set=self.keypoint_set, draw=draw,
                              progress=progress, gt_file=gt_file, overwrite=overwrite, min_score=min_score,
                              label=self.label)

    @classmethod
    def load(cls, path: str | Path | None = None, *, device: str | None = None, format: str | None = None,
             **options: Any) -> "Predictor":
        """The predictor of ``path``: None (the pretrained default), a shipped model's name, a
        checkpoint, or an ONNX file (``format``: the layout of a foreign one). ``options``: the
        model's test-time options (``input_size``, ``flip``...), overriding its own. Bad input is a
        one-line ValueError naming the file."""
        if path is None:
            return cls._default(device, **options)
        shipped = shipped_model(str(path))
        if shipped is not None:
            path = shipped
        path = Path(path)
        if path.suffix.lower() == ".onnx" or format is not None:
            return cls._onnx(path, format, **options)
        return cls._checkpoint(path, device, **options)

    @classmethod
    def _default(cls, device, **options):
        from ..methods import DEFAULT_PRETRAINED, pretrained_model
        net = pretrained_model(None, device=device, **options)
        return cls(adapter_run(net), net.keypoint_set, f"{DEFAULT_PRETRAINED} (pretrained, shipped)")

    @classmethod
    def _onnx(cls, path: Path, fmt, **options):
        from .onnx_model import load_onnx_model, read_metadata
        from .predict import make_predictor
        if fmt is None and read_metadata(path) is not None:    # our own export: its metadata says how
            model, method, meta = load_onnx_model(path)
            _check_flags(method, options)
            test = {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get("test") or {}).items()}
            return cls(make_predictor(model, method, None, **{**test, **options}), method.keypoint_set,
                       f"{method.name} ({path.name})", method)
        from ..methods import DEFAULT_ONNX_FORMAT, onnx_adapter
        fmt = fmt or DEFAULT_ONNX_FORMAT
        net = onnx_adapter(fmt, path, **options)
        return cls(adapter_run(net), net.keypoint_set, f"{fmt} ({path.name})")

    @classmethod
    def _checkpoint(cls, path: Path, device, **options):
        from .checkpoint import load_model
        from .predict import checkpoint_predictor
        model, method, config = load_model(path)
        _check_flags(method, options)
        run, method, _ = checkpoint_predictor(path, device, model=(model, method, config), **options)
        return cls(run, method.keypoint_set, f"{method.name} ({path.name})", method, model=model, config=config)


def _check_flags(method, options: dict) -> None:
    unknown = sorted(set(options) - set(type(method).INFERENCE_FLAGS))
    if unknown:
        raise ValueError(f"--{unknown[0].replace('_', '-')} is not a test option of the {method.name} method "
                         f"(its options: {', '.join('--' + k.replace('_', '-') for k in type(method).INFERENCE_FLAGS)})")
