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


def flip_outputs(heatmap_logits: np.ndarray, offsets: np.ndarray, displacement_fwd: np.ndarray,
                 displacement_bwd: np.ndarray, flip_index, edges=POSENET_EDGES) -> tuple[np.ndarray, ...]:
    """PoseNet outputs (h, w, C) of a horizontally flipped input -> outputs of the unflipped input.

    The grid puts cell j at input pixel s j on an input 16 k + 1 wide, so flipping the input maps
    cell j onto cell w - 1 - j exactly: every map is mirrored along w, left/right keypoints (and
    the edges between them) swap channels, and x offsets change sign."""
    k, e = heatmap_logits.shape[-1], len(edges)
    fi = np.asarray(flip_index)
    edge_at = {tuple(ed): i for i, ed in enumerate(edges)}
    try:
        fe = np.array([edge_at[(int(fi[a]), int(fi[b]))] for a, b in edges])
    except KeyError:
        raise ValueError("flip: the edges are not symmetric under the keypoint set's flip pairs") from None

    def mirror(a, index, n):
        a = a[:, ::-1]
        return np.concatenate([a[..., :n][..., index], -a[..., n:][..., index]], axis=-1)

    return (heatmap_logits[:, ::-1][..., fi], mirror(offsets, fi, k), mirror(displacement_fwd, fe, e),
            mirror(displacement_bwd, fe, e))


class _PoseNetDecoding:
    """What the ONNX and the PyTorch PoseNet share: preprocessing, flip fusion
    (:meth:`network_outputs`) and PersonLab decoding (:meth:`decode`). A subclass sets ``input_size``, ``keypoint_set``, ``decode_defaults``, ``flip``,
    ``output_stride`` and implements :meth:`run_graph` (prepared input -> the four raw outputs)."""

    DECODE_DEFAULTS = {"peak_threshold": 0.1, "oks_mass": "votes"}
    #: the paper's decoding: Hough map at input resolution, every cell voting.
    PAPER_DECODE = {"peak_threshold": 0.003, "hough_stride": 1.0, "vote_threshold": 0.0}
    output_stride = 16
    flip = False

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize (aspect kept) so the longer side is ``input_size``, pad right/bottom to s k + 1,
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
        raise NotImplementedError

    def network_outputs(self, image: np.ndarray) -> tuple[dict[str, Any], float]:
        """The network passes of one RGB uint8 image (H, W, 3): its outputs in the decoder layout
        (:func:`convert_outputs`; flip-averaged when ``flip``) and the resize factor (net px =
        image px * factor)."""
        x, factor = self.preprocess(image)
        if self.flip:
            both = self.run_graph(np.concatenate([x, x[:, :, ::-1]]))
            back = flip_outputs(*(o[1] for o in both), self.keypoint_set.flip_index)
            outs = [(o[0] + b) / 2 for o, b in zip(both, back)]
        else:
            outs = [o[0] for o in self.run_graph(x)]
        return convert_outputs(*outs), factor

    run = network_outputs

    def decode(self, outputs: tuple[dict[str, Any], float], image_shape=None, **decode_opts: Any
               ) -> tuple[np.ndarray, np.ndarray]:
        """Poses (N, 17, 3) (x, y, score in image px) and scores (N,) of :meth:`network_outputs`'
        ``outputs``: :func:`.decode.decode_poses` with :attr:`DECODE_DEFAULTS`, the adapter's
        ``decode`` options and ``decode_opts`` (each over the one before). ``image_shape``: not
        read (the factor places the poses)."""
        maps, factor = outputs
        opts = dict(sigmas=self.keypoint_set.sigmas, **self.DECODE_DEFAULTS)
        opts.update(self.decode_defaults)
        opts.update(decode_opts)
        poses, scores = decode_poses(maps["heatmaps"], maps["short_offsets"], maps["mid_offsets"],
                                     edges=maps["edges"], output_stride=self.output_stride,
                                     grid_offset=0.0, **opts)
        poses = poses.copy()
        poses[..., :2] /= factor
        return poses, scores

    def predict(self, image: np.ndarray, **decode_opts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Poses (N, 17, 3) (x, y, score in image px) and scores (N,) of one RGB uint8 image:
        :meth:`decode` of :meth:`network_outputs`."""
        return self.decode(self.network_outputs(image), np.asarray(image).shape, **decode_opts)


def _check_input_size(input_size: int, stride: int) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < stride + 1 \
            or (input_size - 1) % stride:
        raise ValueError(f"PoseNet input_size must be {stride}k+1 (e.g. {32 * stride + 1}), got {input_size!r}")
    return int(input_size)


class PoseNetTorch(_PoseNetDecoding):
    """PoseNet's MobileNetV1 as a PyTorch module (:mod:`posegroup.backbones.posenet`) + PersonLab
    decoding: the pretrained default for real photos.

    The defaults (897 px, output stride 16, flip) are the best of input sizes 769 / 897 / 1025,
    output strides 16 / 8 and flip off / on, measured on the 136 real COCO images of
    ``../shared/data/coco_images`` (``experiments/posenet/sweep_default.py``; docs/posenet.md):
    AP 0.356 (0.341 on its 88 val2017 images); PoseNet's usual 513 px without flip: 0.268.

    Args:
        weights: the network's weights (default: the file shipped in the package).
        input_size: longer side of the network input (s k + 1).
        output_stride: 16 (PoseNet's trained layout) or 8 (dilated, same weights).
        flip: average the outputs of the image and its mirror image.
        device: torch device (default: cuda when there is one, else cpu).
        threads: torch intra-op threads (None: unchanged).
        decode: :func:`.decode.decode_poses` options on top of :attr:`DECODE_DEFAULTS`.
    """

    def __init__(self, weights=None, *, input_size: int = 897, output_stride: int = 16, flip: bool = True,
                 device: str | None = None, threads: int | None = None, keypoint_set: KeypointSet = COCO17,
                 decode: dict | None = None):
        import torch
        from ...backbones.posenet import SHIPPED_WEIGHTS, posenet_mobilenet
        self.output_stride = int(output_stride)
        self.input_size = _check_input_size(input_size, self.output_stride)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = posenet_mobilenet(self.output_stride, weights=weights or SHIPPED_WEIGHTS).to(self.device)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.flip = bool(flip)
        self.keypoint_set = keypoint_set
        self.decode_defaults = dict(decode or {})

    def run_graph(self, x: np.ndarray) -> list[np.ndarray]:
        """The network alone: (B, H, W, 3) prepared input -> the four raw outputs (B, h, w, C)."""
        import torch
        with torch.inference_mode():
            out = self.net(torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2))
            return [out[n].permute(0, 2, 3, 1).float().cpu().numpy()
                    for n in ("heatmaps", "offsets", "displacement_fwd", "displacement_bwd")]


class PoseNetONNX(_PoseNetDecoding):
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
    0.279 but scores ~half as large). :attr:`PAPER_DECODE` is the paper's setting (Hough map at
    input resolution, 0.003 chosen among 0.001 / 0.003 / 0.006 on the first 40 images: AP
    0.384 / 0.397 / 0.380 there; 0.270 on all 136), ~40x slower.
    """

    def __init__(self, model_path, *, input_size: int = 513, providers=None, threads: int | None = None,
                 keypoint_set: KeypointSet = COCO17, decode: dict | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"{path}: PoseNet ONNX model file not found")
        self.input_size = _check_input_size(input_size, self.output_stride)
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
        self.keypoint_set = keypoint_set
        self.decode_defaults = dict(decode or {})

    def run_graph(self, x: np.ndarray) -> list[np.ndarray]:
        """The network alone: onnxruntime on a prepared input (:meth:`preprocess`) -> the four
        raw outputs (heatmap, offset, displacement_fwd, displacement_bwd), batch dim kept."""
        return self.session.run(self.output_names, {self.input_name: x})
