"""PersonLab (Papandreou et al., ECCV 2018): disk heatmaps, short / mid / long-range offsets,
person segmentation; Hough voting + greedy tree decoding; instance masks from long offsets.
SPEC section 2. The head layout is in :mod:`.head`, targets in :mod:`.targets`, the loss in
:mod:`.loss`, decoding in :mod:`.decode` and :mod:`.segment`; :mod:`.posenet` runs Google's
PoseNet (a real PersonLab-style network) through the same decoder.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

import cv2
import numpy as np
import torch

from ..base import Method
from ..common import evaluating
from ..settings import as_dict, from_options, positive, setting
from . import head as head_mod
from .decode import decode_poses
from .loss import LOSS_WEIGHTS, personlab_loss
from .segment import segment
from .targets import encode as encode_targets

_SEGMENT_OPTS = ("seg_threshold", "distance_threshold", "self_refine_steps", "short_refine_steps")

#: Parameters of :func:`.decode.decode_poses` the method sets itself (not options).
_DECODE_FIXED = ("heatmaps", "short_offsets", "mid_offsets", "edges", "output_stride", "grid_offset")


def _decode_keywords() -> dict[str, Any]:
    """Option name -> default of :func:`.decode.decode_poses` (inspect.signature)."""
    return {n: p.default for n, p in inspect.signature(decode_poses).parameters.items() if n not in _DECODE_FIXED}


def _unknown_key(key: str, valid, what: str) -> ValueError:
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ValueError(f"unknown option '{key}' in {what}{hint}; valid: {', '.join(sorted(valid))}")


def _check_loss_weights(weights) -> bool:
    if not isinstance(weights, dict):
        raise ValueError(f"option 'loss_weights' must be a mapping, got {weights!r}")
    for key, v in weights.items():
        if key not in LOSS_WEIGHTS:
            raise _unknown_key(key, LOSS_WEIGHTS, "method.options.loss_weights")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"option 'loss_weights.{key}' must be a number >= 0, got {v!r}")
    return True


def check_decode_options(opts, num_keypoints: int | None = None, *, what: str = "method.options.decode") -> bool:
    """Keys of ``opts`` checked against :func:`.decode.decode_poses`'s keywords (a close match
    suggested), switches against their bool defaults, values by a dry run of the decoder on
    empty (K, 4, 4) maps (its own range checks; ``num_keypoints`` None: ``sigmas`` unchecked).
    Returns True (a :func:`~posegroup.methods.settings.setting` check)."""
    if not isinstance(opts, dict):
        raise ValueError(f"option 'decode' must be a mapping, got {opts!r}")
    known = _decode_keywords()
    for key, v in opts.items():
        if key not in known:
            raise _unknown_key(key, known, what)
        if isinstance(known[key], bool) and not isinstance(v, bool):
            raise ValueError(f"option '{key}' in {what} must be true or false, got {v!r}")
    dry = {key: v for key, v in opts.items() if num_keypoints is not None or key != "sigmas"}
    k = int(num_keypoints or 1)
    try:
        decode_poses(np.zeros((k, 4, 4), np.float32), np.zeros((k, 4, 4, 2), np.float32),
                     np.zeros((0, 4, 4, 2), np.float32), edges=[], output_stride=4.0, **dry)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0]
        knob = msg.split(" ", 1)[0]
        raise ValueError(f"option '{knob}' in {what} is invalid: {msg}" if knob in opts else f"{what}: {msg}") from None
    return True


@dataclasses.dataclass(frozen=True)
class PersonLabSettings:
    """``method.options`` of PersonLab (paper values in brackets)."""
    radius: float = setting(32.0, positive, "> 0: disk radius R in input px [32]")
    loss_weights: dict | None = setting(None, _check_loss_weights,
                                        f"a mapping over {sorted(LOSS_WEIGHTS)} of numbers >= 0")
    input_size: int = setting(512, positive, "> 0: default longer side for predict")
    decode: dict | None = setting(None, check_decode_options, "keywords of decode.decode_poses")


class PersonLabMethod(Method):
    """PersonLab as a :class:`~posegroup.methods.base.Method`.

    Args:
        keypoint_set: the :class:`~posegroup.skeleton.KeypointSet` (its ``directed_edges``
            are the mid-range fields, its sigmas the expected-OKS κ_k / 2).
    Options (:class:`PersonLabSettings`, validated; an unknown key is a ValueError):
        radius: disk radius R in input pixels (paper 32).
        loss_weights: override of :data:`.loss.LOSS_WEIGHTS` (heatmap 4, seg 2, short 1,
            mid 0.25, long 0.125).
        input_size: default longer side for :meth:`predict`.
        decode: default keyword options of :func:`.decode.decode_poses` for :meth:`predict`.
    """

    name = "personlab"

    def __init__(self, keypoint_set, **options: Any):
        settings = from_options(PersonLabSettings, options)
        check_decode_options(settings.decode or {}, keypoint_set.num_keypoints)
        super().__init__(keypoint_set, **as_dict(settings))
        self.settings = settings
        self.radius = float(settings.radius)
        self.edges = list(keypoint_set.directed_edges)
        self.loss_weights = dict(LOSS_WEIGHTS, **(settings.loss_weights or {}))
        self.input_size = int(settings.input_size)
        self.decode_defaults = dict(settings.decode or {})

    @classmethod
    def check_options(cls, options: dict, *, what: str = "method.options") -> None:
        """Validate ``method.options`` without a keypoint set (config load time)."""
        from_options(PersonLabSettings, dict(options or {}), what=what)

    @property
    def num_keypoints(self) -> int:
        return self.keypoint_set.num_keypoints

    @property
    def num_channels(self) -> int:
        """K heatmaps + 2K short + 2E mid + 2K long + 1 segmentation."""
        return head_mod.num_channels(self.num_keypoints, len(self.edges))

    @property
    def output_groups(self) -> list[int]:
        """[K heatmaps, 2K short, 2E mid, 2K long offsets, 1 segmentation]."""
        return head_mod.channel_groups(self.num_keypoints, len(self.edges))

    def build_model(self, model_cfg: dict) -> torch.nn.Module | None:
        """With ``model.backbone: posenet_mobilenet`` (``output_stride`` 8 | 16,
        ``freeze_backbone``): :class:`.head.PoseNetPersonLab` (COCO-17, PoseNet's tree edges);
        otherwise None (a stacked hourglass)."""
        from ..common import posenet_backbone
        from .posenet import POSENET_EDGES
        backbone = posenet_backbone(model_cfg, self.keypoint_set)
        if backbone is None:
            return None
        if [tuple(e) for e in self.keypoint_set.edges] != list(POSENET_EDGES):
            raise ValueError(f"model.backbone: posenet_mobilenet needs PoseNet's 16 COCO tree edges; "
                             f"keypoint set {self.keypoint_set.name} has {list(self.keypoint_set.edges)}")
        return head_mod.PoseNetPersonLab(backbone, self.num_keypoints, len(self.edges), self.radius)

    def encode(self, keypoints, ignore_mask, instance_masks, output_size, stride):
        """Targets of :func:`.targets.encode` (grid_offset = stride / 2, the project's cells)."""
        return encode_targets(keypoints, instance_masks, ignore_mask, tuple(output_size), stride,
                              edges=self.edges, radius=self.radius, grid_offset=stride / 2.0)

    def loss(self, predictions, targets):
        """:func:`.loss.personlab_loss` summed over stacks."""
        return personlab_loss(predictions, targets, num_keypoints=self.num_keypoints,
                              num_edges=len(self.edges), radius=self.radius, weights=self.loss_weights)

    def heads_to_numpy(self, prediction: torch.Tensor, index: int = 0, ratio: float = 1.0) -> dict[str, np.ndarray]:
        """One image of a (B, C, H, W) prediction in the decoder's layout (probabilities,
        offsets (.., H, W, 2) in input px divided by ``ratio``: the input px of the prediction's
        pass per input px of the frame they are wanted in)."""
        heads = head_mod.split(prediction, self.num_keypoints, len(self.edges), offset_scale=self.radius / ratio)
        return head_mod.to_decoder_layout(heads, index)

    #: Test options that go to the decoders (:func:`.decode.decode_poses`, :func:`.segment.segment`).
    DECODE_OPTIONS = tuple(_decode_keywords()) + _SEGMENT_OPTS
    INFERENCE_FLAGS = {**Method.INFERENCE_FLAGS,
                  "flip": {"type": bool, "help": "flip test: average with the mirrored image"},
                  "scales": {"type": float, "nargs": "+", "help": "multi-scale test, e.g. 1 0.5 2"},
                  "with_masks": {"type": bool, "help": "PersonLab: instance masks (default on)"}}

    def network_maps(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                     flip: bool = False, scales=(1.0,)) -> tuple[dict, float, tuple[int, int], float]:
        """The last stack's maps of one RGB uint8 (H, W, 3) image in the decoder's layout
        (:func:`.head.to_decoder_layout`), on the common grid of scale 1.

        Each pass (:func:`~posegroup.methods.common.network_passes`: the longer side resized to
        ``input_size`` times each of ``scales``, padded right/bottom to the model's
        ``input_multiple``, ImageNet-normalised; ``flip``: also the mirrored image, in the same
        batch) is resampled onto the grid of scale 1 (bilinear, logits), its offsets rescaled to
        scale-1 input px, a mirrored pass's channels swapped back (:func:`.head.swap_sides`); the
        passes' probabilities and offsets are averaged. (The paper reports a multi-scale result
        without saying how its scales are merged; averaging on one grid is ours.)
        Returns (maps, stride (scale-1 input px per cell), the grid's extent in scale-1 input px
        (H, W), resize factor of scale 1)."""
        from ..common import last_stack, network_passes

        with evaluating(model):
            preds, grid, factor, stride, ratios = network_passes(
                model, image, int(input_size or self.input_size), scales, bool(flip), last_stack)
        total: dict[str, np.ndarray] = {}
        for i, (pred, ratio) in enumerate(zip(preds, ratios)):
            maps = self.heads_to_numpy(pred[None], 0, ratio)
            if flip and i % 2:
                maps = head_mod.swap_sides(maps, self.keypoint_set.flip_index, self.edges)
            total = {key: total.get(key, 0.0) + a for key, a in maps.items()}
        maps = {key: (a / len(preds)).astype(np.float32) for key, a in total.items()}
        return maps, float(stride), (grid[0] * stride, grid[1] * stride), factor

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                flip: bool = False, scales=(1.0,), with_masks: bool = True, **decode_opts: Any):
        """Run ``model`` on one RGB uint8 (H, W, 3) image and decode.

        :meth:`network_maps` (``input_size``, ``flip``, ``scales``) gives the maps; they are decoded with
        :func:`.decode.decode_poses` (``decode_opts`` override its defaults) on the output grid
        (bilinear sampling = bilinear upsampling), masks with :func:`.segment.segment` (options
        ``seg_threshold``, ``distance_threshold``, ...). Returns ``(poses (N, K, 3), scores (N,),
        masks (N, H, W) bool)`` in image pixels (masks None when not ``with_masks``).
        """
        maps, stride, grid_shape, factor = self.network_maps(model, image, input_size=input_size, flip=flip,
                                                             scales=scales)
        h, w = image.shape[:2]
        seg_opts = {k: decode_opts.pop(k) for k in _SEGMENT_OPTS if k in decode_opts}
        opts = dict(radius=self.radius, sigmas=self.keypoint_set.sigmas)
        opts.update(self.decode_defaults)
        opts.update(decode_opts)
        poses, scores = decode_poses(maps["heatmaps"], maps["short_offsets"], maps["mid_offsets"],
                                     edges=self.edges, output_stride=stride, grid_offset=stride / 2.0,
                                     **opts)
        masks = np.zeros((len(poses), h, w), bool)
        if with_masks and len(poses):
            m = segment(maps["segmentation"], maps["long_offsets"], maps["short_offsets"], poses,
                        output_stride=stride, grid_offset=stride / 2.0, output_size=grid_shape,
                        **seg_opts)
            nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
            for j in range(len(m)):
                masks[j] = cv2.resize(m[j, :nh, :nw].astype(np.uint8), (w, h),
                                      interpolation=cv2.INTER_NEAREST) > 0
        poses = poses.copy()
        poses[..., :2] /= factor
        return poses, scores, (masks if with_masks else None)    # no masks asked: none written, not empty ones


METHOD = PersonLabMethod

__all__ = ["PersonLabMethod", "PersonLabSettings", "METHOD", "decode_poses", "segment", "encode_targets", "personlab_loss"]
