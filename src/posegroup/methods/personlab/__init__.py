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
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from ..base import InferenceSettings, Method
from ..common import evaluating, scales_setting
from ..settings import (as_dict, finite, finite_non_negative, finite_positive, from_options, integer_in, non_negative,
                        one_of, positive, setting)
from . import head as head_mod
from .decode import decode_poses
from .hough import SAMPLING
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


def _at_least_one(v) -> bool:
    return finite(v) and int(v) == v and v >= 1


_at_least_one.must = "an integer >= 1"


def _vote_threshold(v) -> bool:
    return finite(v) and 0 <= v < 1


_vote_threshold.must = "a number in [0, 1)"


def _sigmas(v) -> bool:
    return not isinstance(v, (str, bytes)) and len(v) > 0 and all(finite_positive(x) for x in v)


@dataclasses.dataclass(frozen=True)
class PersonLabInference(InferenceSettings):
    """Every inference option of PersonLab (a config's ``test`` section, the keywords of
    :meth:`PersonLabMethod.predict`; ``method.options`` ``input_size`` and ``decode:`` set
    their defaults): the network passes', then :func:`.decode.decode_poses`' (the same defaults;
    "Options of decode_poses" in :mod:`.decode`), then :func:`.segment.segment`'s."""
    scales: tuple = scales_setting()
    flip: bool = setting(False, None, "average with the mirrored image")
    with_masks: bool = setting(True, None, "instance masks")
    radius: float | None = setting(None, finite_positive, "disk radius R, input px; None: the method's")
    sigmas: tuple | None = setting(None, _sigmas, "one OKS sigma > 0 per keypoint; None: the keypoint set's",
                                   convert=tuple)
    hough_stride: float | None = setting(None, finite_positive, "input px per Hough cell; None: the output stride")
    blur_sigma: float = setting(2.0, finite_non_negative, "Hough blur, input px (0 = off)")
    peak_threshold: float = setting(0.01, finite_non_negative, "minimum blurred Hough score of a candidate")
    refine_peaks: bool = setting(True, None, "move each candidate by its short offset")
    mid_refine_steps: int = setting(2, integer_in(0, 16), "recurrent mid-offset refinements")
    mid_refine: str = setting("point", one_of("field", "point"), "where the mid-offset refinement applies")
    offset_sampling: str = setting("bilinear", one_of(*SAMPLING), "how offsets are read between cells")
    oks_mass: str = setting("map", one_of("map", "votes"), "the Hough mass of the expected OKS")
    nms_radius: float = setting(10.0, finite_non_negative, "r, input px")
    snap_radius: float = setting(0.0, finite_non_negative, "snap a mid-offset keypoint to a candidate, input px")
    max_people: int | None = setting(None, _at_least_one, "stop after this many people; None: no limit")
    score_threshold: float = setting(0.0, finite_non_negative, "drop people scoring below it")
    vote_threshold: float = setting(0.01, _vote_threshold, "only cells with p_k above it vote")
    seg_threshold: float = setting(0.5, finite_non_negative, "p_S threshold of the masks")
    distance_threshold: float = setting(0.25, finite_non_negative, "t, the embedding distance of a mask pixel")
    self_refine_steps: int = setting(2, non_negative, "long-offset self refinements")
    short_refine_steps: int = setting(2, non_negative, "long-offset refinements by the short offsets")


#: The keyword options of :func:`.decode.decode_poses` (the method sets the others).
DECODE_KEYWORDS = tuple(_decode_keywords())


class PersonLabOutputs(NamedTuple):
    """:meth:`PersonLabMethod.network_outputs` of one image: the maps in the decoder's layout
    (:func:`.head.to_decoder_layout`) on the grid of scale 1, ``stride`` (scale-1 input px per
    cell), ``grid_shape`` (the grid's extent in scale-1 input px, (H, W)) and ``factor`` (scale-1
    input px per image px)."""
    maps: dict
    stride: float
    grid_shape: tuple
    factor: float


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
        cls.check_inference_options(None, options)

    @classmethod
    def inference_defaults(cls, options: dict) -> dict:
        """``method.options`` ``input_size`` and the keys of its ``decode:``."""
        out = dict(options.get("decode") or {})
        if "input_size" in options:
            out["input_size"] = options["input_size"]
        return out

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

    INFERENCE_SETTINGS = PersonLabInference
    INFERENCE_OPTIONS = {f.name: f.default for f in dataclasses.fields(PersonLabInference)
                         if f.name in ("input_size", "scales", "flip")}
    #: Inference options the decoders read (:func:`.decode.decode_poses`, :func:`.segment.segment`).
    DECODE_OPTIONS = DECODE_KEYWORDS + _SEGMENT_OPTS
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

    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, settings: PersonLabInference | None = None,
                        **options: Any) -> PersonLabOutputs:
        """:meth:`network_maps` of one RGB uint8 (H, W, 3) image under ``settings`` (None:
        :meth:`inference_settings` of ``options``): ``input_size``, ``flip``, ``scales``."""
        settings = self.inference_settings(options) if settings is None else settings
        return PersonLabOutputs(*self.network_maps(model, image, input_size=settings.input_size,
                                                   flip=settings.flip, scales=settings.scales))

    def decode_keywords(self, settings: PersonLabInference) -> dict:
        """The :func:`.decode.decode_poses` keywords of ``settings`` (``radius`` None: the
        method's; ``sigmas`` None: the keypoint set's)."""
        opts = {name: getattr(settings, name) for name in DECODE_KEYWORDS}
        opts["radius"] = self.radius if settings.radius is None else settings.radius
        opts["sigmas"] = self.keypoint_set.sigmas if settings.sigmas is None else settings.sigmas
        return opts

    def decode(self, outputs: PersonLabOutputs, settings: PersonLabInference, image_shape: tuple):
        """The people of :meth:`network_outputs`' ``outputs`` for an image of shape
        ``image_shape`` (H, W, ...): :func:`.decode.decode_poses` on the output grid (bilinear
        sampling = bilinear upsampling), masks (``with_masks``) by :func:`.segment.segment`.
        Returns ``(poses (N, K, 3), scores (N,), masks (N, H, W) bool)`` in image pixels (masks
        None when not ``with_masks``)."""
        maps, stride, grid_shape, factor = outputs
        h, w = image_shape[:2]
        poses, scores = decode_poses(maps["heatmaps"], maps["short_offsets"], maps["mid_offsets"],
                                     edges=self.edges, output_stride=stride, grid_offset=stride / 2.0,
                                     **self.decode_keywords(settings))
        masks = np.zeros((len(poses), h, w), bool)
        if settings.with_masks and len(poses):
            m = segment(maps["segmentation"], maps["long_offsets"], maps["short_offsets"], poses,
                        output_stride=stride, grid_offset=stride / 2.0, output_size=grid_shape,
                        **{k: getattr(settings, k) for k in _SEGMENT_OPTS})
            nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
            for j in range(len(m)):
                masks[j] = cv2.resize(m[j, :nh, :nw].astype(np.uint8), (w, h),
                                      interpolation=cv2.INTER_NEAREST) > 0
        poses = poses.copy()
        poses[..., :2] /= factor
        return poses, scores, (masks if settings.with_masks else None)    # no masks asked: none written, not empty ones

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                flip: bool | None = None, scales=None, with_masks: bool | None = None, **decode_opts: Any):
        """Run ``model`` on one RGB uint8 (H, W, 3) image and decode: :meth:`decode` of
        :meth:`network_outputs`. Every option is a :class:`PersonLabInference` field
        (``decode_opts``: :func:`.decode.decode_poses`' and :func:`.segment.segment`'s); one left
        None takes the model's ``method.options`` value, else the field's default. Returns
        ``(poses (N, K, 3), scores (N,), masks (N, H, W) bool)`` in image pixels (masks None when
        not ``with_masks``).
        """
        return super().predict(model, image, input_size=input_size, flip=flip, scales=scales, with_masks=with_masks,
                               **decode_opts)


METHOD = PersonLabMethod

__all__ = ["PersonLabMethod", "PersonLabSettings", "PersonLabInference", "PersonLabOutputs", "DECODE_KEYWORDS", "METHOD", "decode_poses", "segment", "encode_targets", "personlab_loss"]
