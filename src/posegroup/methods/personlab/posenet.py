"""Google's PoseNet (MobileNetV1, output stride 16) through the PersonLab decoder.

Model layout (../shared/data/README.md): input ``image:0`` float32 [1, H, W, 3], RGB in [-1, 1],
H and W = 16 k + 1; outputs ``heatmap_2`` (17 logits), ``offset_2`` (17 y then 17 x short-range
offsets), ``displacement_fwd_2`` / ``displacement_bwd_2`` (16 y then 16 x mid-range offsets along
the 16 tree edges, parent -> child and child -> parent). Cell (i, j) is at input pixel
(16 j, 16 i) (grid_offset 0), grid = (H - 1) / 16 + 1.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...skeleton import COCO17, KeypointSet
from .decode import decode_poses

#: PoseNet's edge order (parent -> child), = COCO17.edges.
POSENET_EDGES = ((0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11), (11, 13), (13, 15),
                 (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16))


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def convert_outputs(heatmap_logits: np.ndarray, offsets: np.ndarray, displacement_fwd: np.ndarray,
                    displacement_bwd: np.ndarray, edges=POSENET_EDGES) -> dict[str, Any]:
    """PoseNet outputs (H, W, C) (batch dim dropped) -> decoder layout.

    Returns heatmaps (K, H, W) probabilities, short_offsets (K, H, W, 2) and mid_offsets
    (2E, H, W, 2) with (x, y) last, and the directed ``edges`` (forward then backward).
    """
    k = heatmap_logits.shape[-1]
    e = len(edges)
    if offsets.shape[-1] != 2 * k or displacement_fwd.shape[-1] != 2 * e or displacement_bwd.shape[-1] != 2 * e:
        raise ValueError(f"PoseNet outputs: offsets {offsets.shape}, displacements {displacement_fwd.shape} "
                         f"do not match K={k}, E={e}")
    heat = _sigmoid(np.moveaxis(heatmap_logits, -1, 0).astype(np.float32))
    short = np.stack([offsets[..., k:], offsets[..., :k]], axis=-1)  # (H, W, K, 2) x, y
    fwd = np.stack([displacement_fwd[..., e:], displacement_fwd[..., :e]], axis=-1)
    bwd = np.stack([displacement_bwd[..., e:], displacement_bwd[..., :e]], axis=-1)
    mid = np.concatenate([fwd, bwd], axis=2)
    directed = [tuple(p) for p in edges] + [(b, a) for a, b in edges]
    return {"heatmaps": heat, "short_offsets": np.ascontiguousarray(np.moveaxis(short, 2, 0), np.float32),
            "mid_offsets": np.ascontiguousarray(np.moveaxis(mid, 2, 0), np.float32), "edges": directed}


class PoseNetONNX:
    """PoseNet ONNX model + PersonLab decoding.

    Args:
        model_path: the .onnx file (../shared/data/models/posenet_mobilenetv1_dyn.onnx).
        input_size: longer side of the network input (16 k + 1; 513 = PoseNet's usual size).
        providers: onnxruntime execution providers (default CPU).
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
        keypoint_set: COCO-17 (the model's keypoints; its sigmas feed the expected-OKS score).
        decode: default :func:`.decode.decode_poses` options, on top of :attr:`DECODE_DEFAULTS`.

    PoseNet's heatmap disks are smaller than PersonLab's R = 32 (a few 16-px cells), so its
    Hough maps peak lower. With the decoder's default Hough cells (one per 16-px output cell)
    ``peak_threshold`` is 0.1 (the vote mass per cell; on the 136 local COCO images, Hough mass
    "map": AP 0.275 / 0.278 / 0.278 / 0.268 at 0.003 / 0.01 / 0.1 / 0.2), and the expected-OKS
    mass is taken at the votes (``oks_mass="votes"``: AP 0.270, with keypoint and person scores
    on the scale of the paper's input-resolution map; the cell-centred "map" mass gives AP
    0.279 but scores ~half as large). :attr:`PAPER_DECODE` is the earlier setting (Hough map at
    input resolution, 0.003 chosen among 0.001 / 0.003 / 0.006 on the first 40 images: AP
    0.384 / 0.397 / 0.380 there; 0.270 on all 136), ~40x slower.
    """

    DECODE_DEFAULTS = {"peak_threshold": 0.1, "oks_mass": "votes"}
    #: the earlier decoding: the paper's input-resolution Hough map, every cell voting.
    PAPER_DECODE = {"peak_threshold": 0.003, "hough_stride": 1.0, "vote_threshold": 0.0}

    output_stride = 16

    def __init__(self, model_path, *, input_size: int = 513, providers=None, threads: int | None = None,
                 keypoint_set: KeypointSet = COCO17, decode: dict | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"{path}: PoseNet ONNX model file not found")
        if (input_size - 1) % self.output_stride:
            raise ValueError(f"PoseNet input_size must be 16k+1 (e.g. 513), got {input_size}")
        from ...extras import require
        ort = require("onnxruntime", "a PoseNet ONNX network")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path}: cannot load ONNX model ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        try:
            self.output_names = [next(n for n in names if key in n) for key in
                                 ("heatmap", "offset", "displacement_fwd", "displacement_bwd")]
        except StopIteration:
            raise ValueError(f"{path}: outputs {names} are not PoseNet's (heatmap, offset, displacement_fwd/bwd)")
        self.input_size = int(input_size)
        self.keypoint_set = keypoint_set
        self.decode_defaults = dict(decode or {})

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize (aspect kept) so the longer side is ``input_size``, pad right/bottom to 16k+1,
        scale to [-1, 1]. Returns ((1, H, W, 3) float32, factor: net px = image px * factor)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"PoseNet expects a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        factor = self.input_size / max(h, w)
        nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        s = self.output_stride
        ph, pw = int(math.ceil((nh - 1) / s)) * s + 1, int(math.ceil((nw - 1) / s)) * s + 1
        x = np.zeros((ph, pw, 3), np.float32)
        x[:nh, :nw] = resized.astype(np.float32) / 127.5 - 1.0
        return x[None], factor

    def run_graph(self, x: np.ndarray) -> list[np.ndarray]:
        """The network alone: onnxruntime on a prepared input (:meth:`preprocess`) -> the four
        raw outputs (heatmap, offset, displacement_fwd, displacement_bwd), batch dim kept."""
        return self.session.run(self.output_names, {self.input_name: x})

    def run(self, image: np.ndarray) -> tuple[dict[str, Any], float]:
        """Network outputs of one image in the decoder layout, and the resize factor."""
        x, factor = self.preprocess(image)
        outs = self.run_graph(x)
        return convert_outputs(*(o[0] for o in outs)), factor

    def predict(self, image: np.ndarray, **decode_opts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Poses (N, 17, 3) (x, y, score in image px) and scores (N,) of one RGB uint8 image."""
        maps, factor = self.run(image)
        opts = dict(sigmas=self.keypoint_set.sigmas, **self.DECODE_DEFAULTS)
        opts.update(self.decode_defaults)
        opts.update(decode_opts)
        poses, scores = decode_poses(maps["heatmaps"], maps["short_offsets"], maps["mid_offsets"],
                                     edges=maps["edges"], output_stride=self.output_stride,
                                     grid_offset=0.0, **opts)
        poses = poses.copy()
        poses[..., :2] /= factor
        return poses, scores
