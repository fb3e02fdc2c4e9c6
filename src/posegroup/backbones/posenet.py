"""PoseNet's MobileNetV1 (Google, Apache-2.0) as a PyTorch module, with its pretrained weights.

The network (``../shared/data/models/posenet_mobilenetv1_dyn.onnx``): MobileNetV1 at width 0.75,
a 3x3 stem convolution and 13 depthwise-separable blocks, every convolution followed by ReLU6
(BatchNorm folded into the convolutions), then four 1x1 heads on the last features:

=================  ======  ==========================================================
head               C       meaning
=================  ======  ==========================================================
``heatmaps``       K=17    keypoint logits (sigmoid -> probability)
``offsets``        2K      short-range offsets in input px: K y, then K x
``displacement_fwd`` 2E    mid-range offsets along the E=16 tree edges, parent -> child: E y, then E x
``displacement_bwd`` 2E    the same, child -> parent
=================  ======  ==========================================================

Symbols: B batch, H x W input (16 k + 1 px at output stride 16, 8 k + 1 at 8), h x w output grid
= (H - 1) / s + 1, cell (i, j) at input pixel (s j, s i).

Input: ``x`` (B, 3, H, W) RGB scaled to [-1, 1] (``PoseNetMobileNet.prepare`` turns a uint8 RGB
image into that). Output stride 8 turns the last strided block (block 6) into a stride-1 block and
dilates every 3x3 depthwise convolution after it by 2, with the same weights, as PoseNet's own
output-stride option does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import replacing

#: (out channels, depthwise stride) of the 13 separable blocks at width 0.75 (stem: 24 ch, stride 2).
BLOCKS = ((48, 1), (96, 2), (96, 1), (192, 2), (192, 1), (384, 2), (384, 1), (384, 1), (384, 1),
          (384, 1), (384, 1), (384, 1), (384, 1))
STEM_CHANNELS = 24
FEATURE_CHANNELS = 384
#: Head name -> channels (K = 17 keypoints, E = 16 edges).
HEADS = {"heatmaps": 17, "offsets": 34, "displacement_fwd": 32, "displacement_bwd": 32}
#: The ONNX graph's head convolutions, by a word in their output name.
_ONNX_HEAD_WORDS = {"heatmaps": "heatmap_2", "offsets": "offset_2", "displacement_fwd": "displacement_fwd_2",
                    "displacement_bwd": "displacement_bwd_2"}
#: The weights that ship inside the package (float16, converted from Google's model; LICENSE beside).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "posenet_mobilenetv1_075.pt"
OUTPUT_STRIDES = (8, 16)


class WeightError(ValueError):
    """A weight file that is missing, unreadable or not PoseNet's MobileNetV1: one line."""


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation,
                     groups=groups, bias=True)


class SeparableBlock(nn.Module):
    """3x3 depthwise conv (stride, dilation) + ReLU6, then 1x1 pointwise conv + ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int):
        super().__init__()
        self.depthwise = _conv(cin, cin, 3, stride, groups=cin, dilation=dilation)
        self.pointwise = _conv(cin, cout, 1)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pointwise(self.act(self.depthwise(x))))


class PoseNetMobileNet(nn.Module):
    """PoseNet's MobileNetV1 (width 0.75) and its four heads.

    Args:
        output_stride: 16 (the trained layout) or 8 (block 6 unstrided, later 3x3 convs dilated 2).
        heads: build PoseNet's own four heads (False: features only, for a new method's head).

    ``forward(x (B, 3, H, W))`` returns a dict: ``features`` (B, 384, h, w) and, with heads,
    ``heatmaps`` (B, 17, h, w) logits, ``offsets`` (B, 34, h, w), ``displacement_fwd`` and
    ``displacement_bwd`` (B, 32, h, w), in PoseNet's channel order (y block, then x block).
    """

    feature_channels = FEATURE_CHANNELS

    def __init__(self, output_stride: int = 16, heads: bool = True):
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"model.output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        self.output_stride = int(output_stride)
        self.stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self.act = nn.ReLU6(inplace=True)
        blocks, cin, stride, dilation = [], STEM_CHANNELS, 2, 1
        for cout, s in BLOCKS:
            if s == 2 and stride == self.output_stride:     # reached the output stride: dilate instead
                s, next_dilation = 1, dilation * 2
            else:
                next_dilation = dilation
            stride *= s
            blocks.append(SeparableBlock(cin, cout, s, dilation))
            dilation, cin = next_dilation, cout
        self.blocks = nn.Sequential(*blocks)
        self.heads = nn.ModuleDict({n: nn.Conv2d(FEATURE_CHANNELS, c, 1) for n, c in HEADS.items()}) if heads else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.blocks(self.act(self.stem(x)))
        out = {"features": f}
        if self.heads is not None:
            out.update({n: head(f) for n, head in self.heads.items()})
        return out

    @staticmethod
    def prepare(images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB (B, H, W, 3) or (H, W, 3) -> float32 (B, 3, H, W) in [-1, 1] (PoseNet's input)."""
        x = torch.as_tensor(np.asarray(images))
        if x.ndim == 3:
            x = x[None]
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def _onnx_tensors(path: Path) -> dict[str, np.ndarray]:
    """The ONNX graph's convolutions in order -> {our parameter name: array}. WeightError when the
    graph is not PoseNet's MobileNetV1 (31 convolutions: stem, 13 x 2 separable, 4 heads)."""
    from ..extras import require
    onnx = require("onnx", "reading PoseNet's ONNX weights")
    from onnx import numpy_helper
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:   # truncated, not protobuf, ...
        raise WeightError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != 1 + 2 * len(BLOCKS) + len(HEADS):
        raise WeightError(f"{path}: {len(convs)} convolutions, not PoseNet MobileNetV1's {1 + 2 * len(BLOCKS) + len(HEADS)}")
    names = ["stem"] + [f"blocks.{i}.{part}" for i in range(len(BLOCKS)) for part in ("depthwise", "pointwise")]
    for node in convs[len(names):]:
        head = next((n for n, word in _ONNX_HEAD_WORDS.items() if word in node.output[0]), None)
        if head is None:
            raise WeightError(f"{path}: convolution {node.output[0]!r} is none of PoseNet's heads")
        names.append(f"heads.{head}")
    out = {}
    for name, node in zip(names, convs):
        if len(node.input) != 3 or any(i not in inits for i in node.input[1:]):
            raise WeightError(f"{path}: convolution {node.output[0]!r} has no constant weight and bias")
        out[f"{name}.weight"], out[f"{name}.bias"] = inits[node.input[1]], inits[node.input[2]]
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """PoseNet MobileNetV1 weights as a float32 state_dict, from Google's ONNX model (``.onnx``)
    or a converted file (``torch.save`` of a state_dict, float16 or float32). WeightError (one
    line naming the file) when missing, truncated, foreign, or a tensor has the wrong shape."""
    path = Path(path)
    if not path.is_file():
        raise WeightError(f"{path}: PoseNet weight file not found")
    if path.suffix.lower() == ".onnx":
        arrays = _onnx_tensors(path)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightError(f"{path}: not a readable weight file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightError(f"{path}: holds no state_dict of tensors")
    expected = PoseNetMobileNet(16).state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise WeightError(f"{path}: not PoseNet MobileNetV1 weights (no {missing[0]!r})")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            raise WeightError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(ref.shape)}")
        if not torch.isfinite(state[k].float()).all():
            raise WeightError(f"{path}: {k} holds non-finite values")
    return {k: state[k].float() for k in expected}


def posenet_mobilenet(output_stride: int = 16, *, weights: str | Path | None = SHIPPED_WEIGHTS,
                      heads: bool = True) -> PoseNetMobileNet:
    """The pretrained network (``weights``: the shipped file by default, Google's ``.onnx``, or a
    converted file; None: random initialisation), in eval mode."""
    net = PoseNetMobileNet(output_stride, heads=heads)
    if weights is not None:
        state = read_weights(weights)
        if not heads:
            state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        net.load_state_dict(state)
    return net.eval()


def convert_onnx(onnx_path: str | Path, out_path: str | Path, *, half: bool = True) -> Path:
    """Write the weights of Google's ONNX model as a state_dict (float16 when ``half``) to
    ``out_path`` (atomically): how ``weights/posenet_mobilenetv1_075.pt`` was made."""
    state = read_weights(onnx_path)
    if half:
        state = {k: v.half() for k, v in state.items()}
    out_path = Path(out_path)
    with replacing(out_path) as tmp:
        torch.save(state, tmp)
    return out_path


# ---- the backbone of a trainable model (model.backbone: posenet_mobilenet) ----------------------

#: ``model.backbone`` value that selects this network in any method's config.
BACKBONE_NAME = "posenet_mobilenet"
#: The ``model`` keys a PoseNet-backed model reads (a method may take a few more of its own).
MODEL_KEYS = ("backbone", "output_stride", "freeze_backbone", "freeze_heads")
#: ImageNet mean / std of :func:`posegroup.data.transforms.normalize_image` (the training images).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PoseNetBackbone(nn.Module):
    """:class:`PoseNetMobileNet` on the project's input and grid conventions.

    ``forward(x (B, 3, S, S))``, ``x`` ImageNet-normalised (``data.transforms.normalize_image``),
    S a multiple of the stride s: a fixed per-channel affine turns ``x`` into PoseNet's [-1, 1];
    the input is padded (0 = PoseNet's grey) by s/2 px before and s/2 + 1 after, to s (k + 1) + 1
    px, the sizes PoseNet was trained at (its borders then meet the convolutions' padding as in
    training), and the first and last row and column of every output are dropped, so output
    cell (i, j) lies at input ((j + 1/2) s, (i + 1/2) s) -- the project's cell centres
    (``docs/ARCHITECTURE.md``), to within the half pixel by which the continuous and the
    pixel-index conventions differ -- and the grid is (S/s, S/s), as the methods' targets and
    decoders expect. Returns the dict of
    :class:`PoseNetMobileNet` (features (B, 384, S/s, S/s) and, with heads, PoseNet's four heads
    in its own layout).

    Args:
        output_stride: 16 or 8. heads: the names of PoseNet's heads to keep (True: all four,
            False: none); a head no loss trains is better left out (DDP wants every parameter
            that requires a gradient to get one). freeze: the MobileNet body (stem and blocks)
            gets no gradient (PoseNet's heads and a method's new heads train). freeze_heads:
            PoseNet's pretrained heads get none either (only a method's new heads train).
        weights: pretrained weights (default: the shipped file); None: random initialisation.
    Attributes the engine and methods read: ``stride`` (= ``feature_stride``), ``input_multiple``
    (= stride), ``feature_channels`` (384), ``num_stacks`` (1), ``last_features`` ([features]
    of the last forward).
    """

    num_stacks = 1
    feature_channels = FEATURE_CHANNELS

    def __init__(self, output_stride: int = 16, *, heads: bool | tuple[str, ...] = True, freeze: bool = False,
                 freeze_heads: bool = False, weights: str | Path | None = SHIPPED_WEIGHTS):
        super().__init__()
        keep = tuple(HEADS) if heads is True else tuple(heads or ())
        unknown = sorted(set(keep) - set(HEADS))
        if unknown:
            raise ValueError(f"PoseNet has no head(s) {unknown}; its heads: {', '.join(HEADS)}")
        self.net = posenet_mobilenet(output_stride, weights=weights, heads=bool(keep)).train()
        for name in [n for n in HEADS if keep and n not in keep]:
            del self.net.heads[name]
        self.stride = self.feature_stride = self.input_multiple = int(output_stride)
        self.freeze = bool(freeze)
        mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        # ImageNet-normalised n -> 2 (n std + mean) - 1
        self.register_buffer("in_scale", (2 * std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", (2 * mean - 1).view(1, 3, 1, 1), persistent=False)
        if self.freeze:
            for p in list(self.net.stem.parameters()) + list(self.net.blocks.parameters()):
                p.requires_grad_(False)
        if freeze_heads and self.net.heads is not None:
            self.net.heads.requires_grad_(False)
        self.last_features: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        half = self.stride // 2          # s/2 before, s/2 + 1 after: s (k + 1) + 1 px, PoseNet's sizes
        x = nn.functional.pad(x * self.in_scale + self.in_shift, (half, half + 1, half, half + 1))
        out = {name: t[:, :, 1:-1, 1:-1] for name, t in self.net(x).items()}
        self.last_features = [out["features"]]
        return out


def _model_error(key: str, value, want: str) -> ValueError:
    return ValueError(f"model.{key} must be {want} with model.backbone: {BACKBONE_NAME}, got {value!r}")


def backbone_from_config(model_cfg: dict, *, extra_keys=(), freeze_default: bool = False,
                         heads: bool | tuple[str, ...] = True) -> PoseNetBackbone:
    """The :class:`PoseNetBackbone` a ``model`` config section describes (``backbone:
    posenet_mobilenet``, ``output_stride`` 8 | 16 (default 16), ``freeze_backbone`` true | false
    (default ``freeze_default``), ``freeze_heads`` true | false (default false: PoseNet's heads
    fine-tune)); ``heads``: PoseNet's heads to keep (see
    :class:`PoseNetBackbone`). A key other than :data:`MODEL_KEYS` and ``extra_keys`` (the
    calling method's own) or a bad value is a one-line ValueError naming ``model.<key>``."""
    cfg = dict(model_cfg or {})
    if cfg.get("backbone") != BACKBONE_NAME:
        raise ValueError(f"model.backbone must be {BACKBONE_NAME!r} (or absent: the method's own network), "
                         f"got {cfg.get('backbone')!r}")
    valid = tuple(MODEL_KEYS) + tuple(extra_keys)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in model with model.backbone: {BACKBONE_NAME}; "
                         f"valid: {', '.join(valid)}")
    stride = cfg.get("output_stride", 16)
    if isinstance(stride, bool) or stride not in OUTPUT_STRIDES:
        raise _model_error("output_stride", stride, f"one of {list(OUTPUT_STRIDES)}")
    freeze, freeze_heads = cfg.get("freeze_backbone", freeze_default), cfg.get("freeze_heads", False)
    for key, value in (("freeze_backbone", freeze), ("freeze_heads", freeze_heads)):
        if not isinstance(value, bool):
            raise _model_error(key, value, "true or false")
    return PoseNetBackbone(int(stride), heads=heads, freeze=freeze, freeze_heads=freeze_heads)
