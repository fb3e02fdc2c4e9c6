"""Associative Embedding (Newell, Huang & Deng 2017) as a :class:`~posegroup.methods.base.Method`.

Head: per stack K heatmaps then K*D tag maps (:mod:`.head`); targets: Gaussian heatmaps,
ignore mask and per-person joint indices (:mod:`.targets`); loss: masked heatmap MSE + pull/push
grouping loss summed over stacks (:mod:`.loss`); decoding: NMS + greedy tag matching
(:mod:`.decode`). SPEC section 1. With ``segmentation=True`` the same hourglass also predicts a
foreground map and per-pixel instance tags (SPEC section 1, last paragraph): targets
:func:`.targets.instance_cells` / :func:`.targets.sample_instance_pixels`, loss
:func:`.loss.segmentation_loss`, decoding :mod:`.segment`.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, NamedTuple

import numpy as np
import torch

from ..base import InferenceSettings, Method
from ..common import downsample_ignore_mask, grid_to_image, scales_setting
from ..settings import (as_dict, boolean, finite, finite_non_negative, finite_positive, from_options, integer_in,
                        non_negative, one_of, positive, setting)
from ...skeleton import KeypointSet
from . import decode
from . import head as _head
from .loss import HEATMAP_FORMS, PUSH_FORMS, PULL_FORMS, ae_loss
from .peaks import MAX_NMS_KERNEL
from .segment import SEG_DECODERS


#: Multi-scale tags: "scale1" (the reference's, the default: see :class:`AEInference`) or
#: "concat" (the paper's).
MULTISCALE_TAGS = ("scale1", "concat")
#: The keyword options of :func:`.decode.group` (its keyword-only parameters).
GROUP_KEYWORDS = tuple(n for n, p in inspect.signature(decode.group).parameters.items()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _joint_order(v) -> bool:
    return isinstance(v, KeypointSet) or (not isinstance(v, (str, bytes)) and all(
        isinstance(j, (int, np.integer)) and not isinstance(j, bool) for j in v))


def _odd_kernel(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= MAX_NMS_KERNEL and v % 2 == 1


def _choice(name: str):
    """A None-or-choice field of :func:`.decode.group` (None: the preset's value)."""
    return setting(None, one_of(*decode.CHOICES[name]), f"one of {list(decode.CHOICES[name])}; None: the preset's")


@dataclasses.dataclass(frozen=True)
class AEInference(InferenceSettings):
    """Every inference option of AE (a config's ``test`` section, the keywords of
    :meth:`AEMethod.predict`; ``method.options`` may set their defaults): the network passes',
    then :func:`.decode.group`'s, each None taking the value of ``preset`` (:data:`.decode.PRESETS`;
    "Options of group" in :mod:`.decode`), then the segmentation decoder's
    (:func:`.segment.segment_people`)."""
    scales: tuple = scales_setting()
    flip: bool = setting(False, None, "average with the mirrored image (tags concatenated)")
    # Not in the paper: PersonLab's Hough voting (its eq. 1) of AE's heatmaps by PoseNet's short-range
    # offsets. The bundled ae_posenet sets 2: AP sparse / medium / heavy / real val2017 0.332 / 0.213 /
    # 0.118 / 0.149 against 0.312 / 0.193 / 0.098 / 0.113 at 0 (docs/posenet_backbone.md).
    hough_factor: int = setting(0, integer_in(0, 8), "0: candidates are the heatmaps' peaks [the paper]; n: each "
                                "cell's probability votes at its centre + its short-range offset on a grid n times "
                                "finer, candidates are that map's peaks (needs short_offsets)")
    hough_blur: float = setting(1.0, finite_non_negative, ">= 0: std of the Gaussian smoothing of the voted maps, "
                                "fine cells")
    # "scale1" (the reference's), not the paper's "concat": measured on the tiny AE trained on mixed
    # crowding (docs/test_time.md, 100 images per split, flip + refine), scales {1, 2, 0.5}: AP sparse /
    # medium / heavy 0.507 / 0.268 / 0.062 with scale-1 tags against 0.258 / 0.118 / 0.020 with
    # concatenated ones (a small model's tags disagree across scales).
    multiscale_tags: str = setting(MULTISCALE_TAGS[0], one_of(*MULTISCALE_TAGS), "tags of scale 1 or of every scale")
    preset: str = setting("default", one_of(*decode.PRESETS), "the decoder's preset")
    refine: bool | None = setting(None, boolean, "fill missing joints by tag; None: the preset's (on)")
    detection_threshold: float | None = setting(None, finite, "heatmap value a candidate exceeds")
    tag_threshold: float | None = setting(None, finite_positive, "tag distance below which a joint joins a person")
    top_k: int | None = setting(None, integer_in(1, 10000), "candidates per joint")
    nms_kernel: int | None = setting(None, _odd_kernel, f"an odd integer in [1, {MAX_NMS_KERNEL}]: NMS window side")
    max_people: int | None = setting(None, integer_in(1, 10000), "people matched against")
    joint_order: tuple | None = setting(None, _joint_order, "a permutation of range(K) or a keypoint set",
                                        convert=lambda v: v if isinstance(v, KeypointSet) else tuple(v))
    adjust: bool | None = setting(None, boolean, "the sub-pixel step; None: the preset's")
    subpixel: str | None = _choice("subpixel")
    tag_metric: str | None = _choice("tag_metric")
    refine_accept: str | None = _choice("refine_accept")
    nms_ties: str | None = _choice("nms_ties")
    gated_matching: bool | None = setting(None, boolean, "None: the preset's")
    person_score: str | None = _choice("person_score")
    match_cost: str | None = _choice("match_cost")
    refine_radius: float | None = setting(None, finite_positive, "person sizes refine searches within")
    seg_decode: str = setting("paper", one_of(*SEG_DECODERS), "masks by tag histogram (paper) or anchored on poses")
    seg_threshold: float = setting(0.5, lambda v: 0 < v < 1, "in (0, 1): foreground probability threshold")
    seg_bin_width: float = setting(0.2, positive, "> 0: histogram bin width")
    seg_nms_radius: float = setting(1.0, non_negative, ">= 0: histogram NMS radius, bins")
    seg_min_cells: int = setting(2, lambda v: v >= 1, ">= 1: pixels of an identifier")
    seg_anchor_radius: float = setting(1.5, positive, "> 0: pose-anchored masks' radius, cells")
    seg_anchor_statistic: str = setting("median", one_of("median", "mean"), "the anchor tag of a person")

    def __post_init__(self):
        fixed = decode.PRESETS["reference"]
        for name in decode.REFERENCE_FIXED if self.preset == "reference" else ():
            v = getattr(self, name)
            if v is not None and v != fixed[name]:
                raise ValueError(f"option '{name}' cannot be {v!r} with preset 'reference' (fixed to {fixed[name]!r})")


#: The segmentation decoder's options (:func:`.segment.segment_people`) and their defaults.
SEG_DECODE_OPTIONS = {f.name: f.default for f in dataclasses.fields(AEInference) if f.name.startswith("seg_")}


def group_keywords(settings: AEInference) -> dict:
    """The :func:`.decode.group` keywords of ``settings``."""
    return {name: getattr(settings, name) for name in GROUP_KEYWORDS}


def true_tags(keypoints: np.ndarray, output_size: tuple[int, int], settings: AEInference) -> np.ndarray:
    """Perfect tags for the true people (the true-id ceiling): keypoints (N, K, 3) on the output
    grid, output_size (H, W) -> (K, H, W, 1) float32 tag maps whose people's ids lie twice
    ``tag_threshold`` (at least 2) apart, further than any match (:func:`.targets.tag_maps`)."""
    from . import targets
    gap = 2.0 * max(1.0, float(settings.tag_threshold or 1.0))
    return targets.tag_maps(keypoints, output_size, person_tags=gap * np.arange(len(keypoints))).astype(np.float32)


def seg_keywords(settings: AEInference) -> dict:
    """The :func:`.segment.segment_people` keywords of ``settings``."""
    return {"mode": settings.seg_decode, "threshold": float(settings.seg_threshold),
            "bin_width": float(settings.seg_bin_width), "nms_radius": float(settings.seg_nms_radius),
            "min_cells": int(settings.seg_min_cells), "anchor_radius": float(settings.seg_anchor_radius),
            "anchor_statistic": settings.seg_anchor_statistic}


class AEOutputs(NamedTuple):
    """:meth:`AEMethod.network_outputs` of one image, on the common grid: heatmaps (K, H, W)
    float32, tags (K, H, W, D') float32 (D' = D x the passes whose tags are kept), ``factor``
    and ``stride`` (image px = grid px * stride / factor), ``segmentation`` (foreground
    probability (H, W), pixel tags (H, W, E)) or None, short-range ``offsets`` (K, 2, H, W) in
    grid cells or None."""
    heatmaps: np.ndarray
    tags: np.ndarray
    factor: float
    stride: int
    segmentation: tuple | None = None
    offsets: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class AESettings:
    """``method.options`` of AE that shape training (reference values in brackets); the other
    keys of ``method.options`` are default test / decode options (:func:`split_options`)."""
    tag_dim: int = setting(1, positive, "> 0: tag dimension D [1]")
    sigma: float = setting(2.0, positive, "> 0: heatmap Gaussian sigma, output cells [2]")
    max_people: int = setting(30, positive, "> 0: person slots for the tag loss [30]")
    heatmap_weight: float = setting(1.0, non_negative, ">= 0: [1]")
    heatmap_form: str = setting("mse", one_of(*HEATMAP_FORMS), "the heatmap loss: mse (the paper) or weight_adaptive "
                                "(SWAHR, Luo et al. 2021; loss.adaptive_weights)")
    heatmap_gamma: float = setting(0.01, positive, "> 0: gamma of weight_adaptive [0.01, SWAHR's code]")
    occluded_weight: float = setting(1.0, non_negative, ">= 0: heatmap-loss weight at occluded (v = 1) "
                                     "joints, targets.occlusion_weights [1 = off; not in the paper]")
    pull_weight: float = setting(1e-3, non_negative, ">= 0: [1e-3]")
    push_weight: float = setting(1e-3, non_negative, ">= 0: [1e-3]")
    push_form: str = setting("paper", one_of(*PUSH_FORMS), "see loss.grouping_loss")
    pull_form: str = setting("paper", one_of(*PULL_FORMS), "see loss.grouping_loss")
    push_sigma: float = setting(1.0, positive, "> 0: sigma of the paper's push term [1]")
    tag_window: int = setting(0, non_negative, ">= 0 cells: the pull reads the (2r+1)^2 cells around each joint, "
                              "loss.grouping_loss window [0 = the paper's own cell; not in the paper]")
    segmentation: bool = setting(False, None, "also predict person instance masks")
    short_offsets: bool = setting(False, None, "model.backbone posenet_mobilenet only: joints placed at their "
                                  "cell plus PoseNet's pretrained short-range offset there (its offset head, "
                                  "frozen, as 2K more channels; no loss) [not in the paper: the argmax + 1/4 "
                                  "cell shift]")
    tag_coords: bool = setting(False, None, "model.backbone posenet_mobilenet and tag_dim >= 2 only: each joint's "
                               "tag dimensions 0, 1 add the cell's (x, y) in cells, head.add_tag_coords [not in "
                               "the paper: spatial embeddings]")
    seg_tag_dim: int = setting(1, positive, "> 0: E, the pixel-tag dimension [1]")
    seg_samples: int = setting(32, positive, "> 0: S, pixels sampled per instance")
    foreground_weight: float = setting(1.0, non_negative, ">= 0: foreground BCE weight")
    seg_pull_weight: float = setting(1e-3, non_negative, ">= 0: pixel pull weight")
    seg_push_weight: float = setting(1e-3, non_negative, ">= 0: pixel push weight")
    seg_push_sigma: float = setting(1.0, positive, "> 0: pixel push sigma [1]")


def split_options(options: dict, *, what: str = "method.options") -> tuple[AESettings, dict]:
    """``(settings, inference_defaults)`` of AE's ``method.options``: the :class:`AESettings`
    keys validated by :func:`~posegroup.methods.settings.from_options`; every other key must be
    an :class:`AEInference` field (a default inference option), else a one-line ValueError
    naming the key (with a close match) and the valid choices."""
    fields = {f.name for f in dataclasses.fields(AESettings)}
    valid = sorted(fields | {f.name for f in dataclasses.fields(AEInference)})
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown option '{key}' in {what}{hint}; valid: {', '.join(valid)}")
    settings = from_options(AESettings, {k: v for k, v in options.items() if k in fields}, what=what)
    return settings, {k: v for k, v in options.items() if k not in fields}


class AEMethod(Method):
    """Associative Embedding.

    Args:
        keypoint_set: the keypoints (K from it).
        tag_dim: tag dimension D (paper: 1).
        sigma: heatmap Gaussian sigma in output cells (paper: 2).
        max_people: person slots for the tag loss (reference: 30).
        heatmap_weight, pull_weight, push_weight: loss weights (reference: 1, 1e-3, 1e-3).
        occluded_weight: heatmap-loss weight at occluded (v = 1) joints' Gaussians
            (:func:`.targets.occlusion_weights`; 1 = off, the paper's loss).
        push_form: "paper" (default) or "reference" (see :func:`.loss.grouping_loss`).
        pull_form: "paper" (default) or "reference".
        push_sigma: sigma of the paper's push term (paper: 1).
        heatmap_form: "mse" (the paper) or "weight_adaptive" (SWAHR's weights,
            :func:`.loss.adaptive_weights`, γ = heatmap_gamma, 0.01).
        tag_window: r cells; the pull reads the (2r+1)² cells around each joint
            (:func:`.loss.grouping_loss` ``window``; 0 = the paper's own cell).
        segmentation: also predict person instance masks (foreground + pixel tags; default off,
            which leaves the head, targets and loss exactly as without it).
        seg_tag_dim: E, the pixel-tag dimension (paper: 1).
        seg_samples: S, pixels sampled per instance for the pixel pull/push (sampling seeded by
            the sample's content, :func:`.targets.content_rng`, so resume stays exact).
        foreground_weight, seg_pull_weight, seg_push_weight: weights of the foreground BCE and
            of the (un-normalised, SPEC) pixel pull / push sums; seg_push_sigma: the push σ (1).
        other keys: the model's default inference options, :class:`AEInference` fields
            (:func:`split_options`; segmentation decoding: :data:`SEG_DECODE_OPTIONS`).
    """

    name = "ae"
    INFERENCE_SETTINGS = AEInference
    INFERENCE_OPTIONS = {f.name: f.default for f in dataclasses.fields(AEInference)
                         if f.name in ("input_size", "scales", "flip", "refine", "multiscale_tags")}
    #: Inference options the decoders read: :func:`.decode.group` keywords + :data:`SEG_DECODE_OPTIONS`.
    DECODE_OPTIONS = GROUP_KEYWORDS + tuple(SEG_DECODE_OPTIONS)

    def __init__(self, keypoint_set: KeypointSet, **options: Any):
        settings, decode_defaults = split_options(options)
        super().__init__(keypoint_set, **as_dict(settings), **decode_defaults)
        self.num_keypoints = keypoint_set.num_keypoints
        defaults = self.check_inference_options(None, self.cfg)
        self._check_decoder(defaults)
        if defaults.hough_factor and not settings.short_offsets:
            raise ValueError("method.options.hough_factor needs method.options.short_offsets: true (the offsets vote)")
        self.settings = settings
        self.seg_decode_defaults = {key: decode_defaults.pop(key) for key in SEG_DECODE_OPTIONS
                                    if key in decode_defaults}
        self.tag_dim = settings.tag_dim
        self.sigma = settings.sigma
        self.max_people = settings.max_people
        self.heatmap_weight = settings.heatmap_weight
        self.occluded_weight = settings.occluded_weight
        self.pull_weight = settings.pull_weight
        self.push_weight = settings.push_weight
        self.push_form = settings.push_form
        self.pull_form = settings.pull_form
        self.push_sigma = settings.push_sigma
        self.tag_window = settings.tag_window
        self.heatmap_form = settings.heatmap_form
        self.heatmap_gamma = settings.heatmap_gamma
        self.decode_defaults = dict(decode_defaults)
        self.segmentation = settings.segmentation
        self.seg_tag_dim = settings.seg_tag_dim if settings.segmentation else 0   # E; 0 = no segmentation head
        self.seg_samples = settings.seg_samples
        self.seg_weights = {"foreground": settings.foreground_weight, "pull": settings.seg_pull_weight,
                            "push": settings.seg_push_weight}
        self.seg_push_sigma = settings.seg_push_sigma
        self.short_offsets = settings.short_offsets
        self.tag_coords = settings.tag_coords
        if self.tag_coords and self.tag_dim < 2:
            raise ValueError(f"method.options.tag_coords needs tag_dim >= 2 (it adds x and y), got tag_dim {self.tag_dim}")
        self.offset_channels = 2 * self.num_keypoints if settings.short_offsets else 0   # last in the layout

    @classmethod
    def check_options(cls, options: dict, *, what: str = "method.options") -> None:
        """Validate ``method.options`` without a keypoint set (config load time): the training
        settings and the default inference options."""
        split_options(dict(options or {}), what=what)
        cls.check_inference_options(None, options)

    @classmethod
    def inference_defaults(cls, options: dict) -> dict:
        """The keys of ``method.options`` that are not :class:`AESettings` fields."""
        fields = {f.name for f in dataclasses.fields(AESettings)}
        return {k: v for k, v in options.items() if k not in fields}

    def _check_decoder(self, settings: AEInference) -> None:
        """What only the keypoint set decides (``joint_order``): :func:`.decode.group` on empty
        (K, 8, 8) maps, its ValueError made one line naming the option."""
        k = self.num_keypoints
        opts = group_keywords(settings)
        try:
            decode.group(np.zeros((k, 8, 8), np.float32), np.zeros((k, 8, 8, 1), np.float32), **opts)
        except (TypeError, ValueError) as e:
            msg = str(e).splitlines()[0]
            knob = msg.split(" ", 1)[0].split("=", 1)[0]
            raise ValueError(f"option '{knob}' is invalid: {msg}" if knob in opts else msg) from None

    # -- head -------------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return _head.num_channels(self.num_keypoints, self.tag_dim, self.seg_tag_dim) + self.offset_channels

    @property
    def output_groups(self) -> list[int]:
        """[K heatmaps, K*D tags] (+ [1 + E] with segmentation) (+ [2K] short offsets)."""
        groups = _head.channel_groups(self.num_keypoints, self.tag_dim, self.seg_tag_dim)
        return groups + ([self.offset_channels] if self.offset_channels else [])

    def build_model(self, model_cfg: dict) -> torch.nn.Module | None:
        """With ``model.backbone: posenet_mobilenet`` (``output_stride`` 8 | 16,
        ``freeze_backbone``): :class:`.head.PoseNetAE`; otherwise None (a stacked hourglass)."""
        from ..common import posenet_backbone
        heads = ("heatmaps", "offsets") if self.short_offsets else ("heatmaps",)
        backbone = posenet_backbone(model_cfg, self.keypoint_set, heads=heads)
        if backbone is None:
            for key, what in (("short_offsets", "PoseNet's pretrained offset head"), ("tag_coords", "its tag head")):
                if getattr(self, key):
                    raise ValueError(f"method.options.{key} needs model.backbone: posenet_mobilenet ({what})")
            return None
        rest = self.num_channels - self.num_keypoints - self.offset_channels
        return _head.PoseNetAE(backbone, rest, offsets=self.short_offsets,
                               tag_coords=(self.num_keypoints, self.tag_dim) if self.tag_coords else None)

    # -- targets ----------------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, ignore_mask: np.ndarray | None, instance_masks: np.ndarray | None,
               output_size: tuple[int, int], stride: int) -> dict[str, np.ndarray]:
        """Targets for one image: keypoints (N, K, 3) in INPUT pixels.

        Returns {"heatmaps": (K, H, W) float32, "mask": (H, W) float32 (1 counted, 0 ignored),
        "joints": (max_people, K, 2) int64}; with ``occluded_weight`` != 1 also
        "heatmap_weights" (K, H, W) float32; with segmentation also "foreground" (H, W) float32
        and "seg_pixels" (max_people, seg_samples, 2) int64 (``instance_masks`` (N, H_in, W_in)
        required, row n = person n).
        """
        from . import targets

        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, self.num_keypoints, 3)
        if kp.ndim != 3 or kp.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"keypoints must be (N, {self.num_keypoints}, 3), got {kp.shape}")
        if int(stride) < 1:
            raise ValueError(f"stride must be a positive integer, got {stride}")
        out_kp = kp.copy()
        out_kp[..., :2] /= float(stride)
        size = tuple(int(v) for v in output_size)
        out = {
            "heatmaps": targets.gaussian_heatmaps(out_kp, size, sigma=self.sigma).astype(np.float32),
            "mask": downsample_ignore_mask(ignore_mask, size, int(stride)),
            "joints": targets.joint_indices(out_kp, size, max_people=self.max_people).astype(np.int64),
        }
        if self.occluded_weight != 1.0:
            out["heatmap_weights"] = targets.occlusion_weights(out_kp, size, self.sigma, self.occluded_weight)
        if self.segmentation:
            out.update(self._encode_segmentation(kp, ignore_mask, instance_masks, size, int(stride)))
        return out

    def _encode_segmentation(self, kp, ignore_mask, instance_masks, size, stride) -> dict[str, np.ndarray]:
        """"foreground" (H, W) and "seg_pixels" (M, S, 2) of :meth:`encode`."""
        from . import targets

        if instance_masks is None:
            raise ValueError("segmentation is on but the sample has no instance_masks")
        masks = np.asarray(instance_masks)
        if masks.ndim != 3 or len(masks) != len(kp):
            raise ValueError(f"instance_masks must be (N={len(kp)}, H_in, W_in), got shape {masks.shape}")
        owner, fg = targets.instance_cells(masks, ignore_mask, size, stride)
        rng = targets.content_rng(owner, kp)
        pixels = targets.sample_instance_pixels(owner, self.max_people, self.seg_samples, rng)
        return {"foreground": fg, "seg_pixels": pixels}

    # -- loss -------------------------------------------------------------------------------
    def loss(self, predictions: list[torch.Tensor], targets: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """predictions: list of (B, K + K*D, H, W); targets: batched encode() outputs.
        Returns (total, {"heatmap", "pull", "push"}) weighted and summed over stacks. The short
        offsets (``short_offsets``: the last 2K channels, PoseNet's frozen head) have no loss."""
        if self.offset_channels:
            predictions = [p[:, :p.shape[1] - self.offset_channels] for p in predictions]
        return ae_loss(predictions, targets, self.num_keypoints, tag_dim=self.tag_dim,
                       heatmap_weight=self.heatmap_weight, pull_weight=self.pull_weight,
                       push_weight=self.push_weight, push_form=self.push_form, sigma=self.push_sigma,
                       pull_form=self.pull_form, tag_window=self.tag_window,
                       heatmap_form=self.heatmap_form, heatmap_gamma=self.heatmap_gamma, seg_tag_dim=self.seg_tag_dim,
                       segmentation_weights=self.seg_weights, seg_sigma=self.seg_push_sigma)

    # -- inference --------------------------------------------------------------------------
    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, settings: AEInference | None = None,
                        **options: Any) -> AEOutputs:
        """Run ``model`` on one uint8 RGB image (H, W, 3) at every scale (and mirrored) of
        ``settings`` (None: :meth:`inference_settings` of ``options``) and fuse onto one grid.

        The image is resized so its longer side is ``input_size * scale``, padded right/bottom
        to the model's ``input_multiple``, ImageNet-normalised. Every prediction (last stack;
        mirrored ones flipped back) is resampled onto the output grid of the scale-1 input,
        cropped to the cells covering the image (exactly aligned: the padding is cropped, not
        stretched), then :func:`.fusion.fuse` averages the heatmaps and concatenates the tags.
        ``multiscale_tags``: "scale1" (default; reference pose-ae-train: tags of scale 1 only,
        the scale closest to 1 when 1 is not among them) or "concat" (paper: tags of every scale;
        see :class:`AEInference` for the measurement).

        Returns :class:`AEOutputs`: with segmentation the foreground probability averaged over
        every pass and the pixel tags of the first, un-mirrored pass of the scale closest to 1
        (tags of different passes are different embeddings, and the paper's histogram decoder
        works on one); with ``short_offsets`` the short-range offsets averaged over every pass.
        """
        from . import fusion

        settings = self.inference_settings(options) if settings is None else settings
        scales = settings.scales
        heats, tags, owner, segs, grid, factor1, stride, offs = self._passes(model, image, settings.input_size,
                                                                             scales, settings.flip)
        best = int(np.argmin([abs(np.log(s)) for s in scales]))
        tag_indices = None
        if settings.multiscale_tags == "scale1":
            tag_indices = [i for i, o in enumerate(owner) if o == best]
        heat, tag = fusion.fuse(heats, tags, grid, tag_indices=tag_indices)
        seg = None
        if self.segmentation:
            prob = np.mean([1.0 / (1.0 + np.exp(-fg)) for fg, _ in segs], axis=0).astype(np.float32)
            seg = (prob, segs[owner.index(best)][1])
        offsets = np.mean(offs, axis=0).astype(np.float32) if self.short_offsets else None
        return AEOutputs(heat, tag, factor1, stride, seg, offsets)

    def _passes(self, model, image, input_size, scales, flip):
        """The network at every scale (and mirrored), each output (last stack) resampled onto the
        common grid by :func:`~posegroup.methods.common.network_passes`; the joint channels of a
        mirrored pass are swapped left/right here (the spatial flip back is the helper's).
        Returns (heatmaps [(K, H, W)], tags [(K, H, W, D)], scale index of each, segmentation
        [(foreground logits (H, W), pixel tags (H, W, E))] (empty when off), grid (H, W), factor1,
        stride, short offsets [(K, 2, H, W) in grid cells, a mirrored pass's made the image's]
        (empty when off))."""
        from ..common import evaluating, last_stack, network_passes, offsets_on_grid

        k, d, e = self.num_keypoints, self.tag_dim, self.seg_tag_dim
        flip_index = torch.as_tensor(np.asarray(self.keypoint_set.flip_index, dtype=np.int64))
        passes = 1 + bool(flip)

        with evaluating(model):
            maps, grid, factor1, stride, ratios = network_passes(model, image, int(input_size), scales, bool(flip),
                                                                 last_stack)
        heats, tags, segs, offs = [], [], [], []
        for i, m in enumerate(maps):
            if self.offset_channels:                              # input px of the pass -> grid cells
                m, off = m[:-self.offset_channels], m[-self.offset_channels:]
                offs.append(offsets_on_grid(off, stride, ratios[i], flip_index if i % passes == 1 else None))
            hm, tg = _head.split_outputs(m, k, d, e)                           # (K, H, W), (K, H, W, D)
            if i % passes == 1:                                   # mirrored: left/right joints swapped
                hm, tg = hm[flip_index], tg[flip_index]
            heats.append(hm.numpy())
            tags.append(tg.numpy())
            if e:
                fg, st = _head.split_segmentation(m, k, d, e)                  # (H, W), (H, W, E)
                segs.append((fg.numpy(), st.numpy()))
        owner = [i // passes for i in range(len(maps))]                         # scale index of each
        return heats, tags, owner, segs, grid, factor1, stride, offs

    INFERENCE_FLAGS = {
        **Method.INFERENCE_FLAGS,
        "flip": {"type": bool, "help": "flip test: average with the mirrored image"},
        "scales": {"type": float, "nargs": "+", "help": "multi-scale test, e.g. 1 0.5 2"},
        "refine": {"type": bool, "help": "AE: fill missing joints by tag (refinement)"},
        "hough_factor": {"type": int, "help": "AE with short_offsets: find joints on the heatmaps voted by the "
                                              "offsets onto a grid N times finer (0: the heatmaps' peaks)"},
        "multiscale_tags": {"type": str, "choices": list(MULTISCALE_TAGS),
                            "help": "AE: tags of scale 1 (reference, default) or of every scale (paper)"},
        "seg_decode": {"type": str, "choices": list(SEG_DECODERS),
                       "help": "AE segmentation: masks by tag-histogram NMS (paper) or anchored on the poses"},
    }

    def draw_maps(self, model: torch.nn.Module, image: np.ndarray, *, canvas: np.ndarray | None = None,
                  **opts: Any) -> list[np.ndarray]:
        """Heatmaps (max over joints) and tag maps of the last stack, drawn over ``canvas``
        (default: the image), each titled, with its colour scale."""
        import cv2

        from ...viz import caption, colorbar, draw_heatmaps, draw_tags, tag_range
        outs = self.network_outputs(model, image, AEInference(input_size=int(opts.get("input_size", 512))))
        hm, tags = outs.heatmaps, outs.tags
        canvas = image if canvas is None else canvas
        w = canvas.shape[1]
        lo, hi = tag_range(hm, tags)
        return [caption(draw_heatmaps(canvas, hm), ["AE heatmaps: strongest joint per pixel"],
                        legend=colorbar(w, 0.0, 1.0, "heatmap value")),
                caption(draw_tags(canvas, hm, tags), ["AE tags of the strongest joint", "one colour = one person"],
                        legend=colorbar(w, lo, hi, "tag value", cv2.COLORMAP_HSV))]

    def inference_settings(self, options: dict | None = None, *, what: str = "test") -> AEInference:
        """:meth:`Method.inference_settings`; a segmentation option given to a method without
        segmentation is a one-line ValueError."""
        given = sorted(k for k, v in (options or {}).items() if k in SEG_DECODE_OPTIONS and v is not None)
        if given and not self.segmentation:
            raise ValueError(f"{given}: segmentation options need a method built with segmentation=True")
        settings = super().inference_settings(options, what=what)
        if settings.hough_factor and not self.short_offsets:
            raise ValueError("option 'hough_factor' needs method.options.short_offsets: true (the offsets vote)")
        return settings

    def predict_true_ids(self, model: torch.nn.Module, image: np.ndarray, keypoints: np.ndarray, **test_opts: Any
                         ) -> tuple[np.ndarray, np.ndarray]:
        """AE's grouping ceiling for one image: the network's heatmaps, decoded with the predicted
        tags replaced by perfect ones (every cell of joint k's tag map carries the id of the true
        person whose joint k is nearest, :func:`posegroup.methods.ae.targets.tag_maps`).

        Args: model, image uint8 (H, W, 3), keypoints (N, K, 3) true people in
        image px, test_opts: the inference options (:class:`AEInference`; the segmentation
        ones are ignored: no masks here).
        Returns (poses (M, K, 3) image px, scores (M,)) like ``self.predict``, through the same
        decoding (:meth:`_group`, ``refine`` included): the ceiling of what the prediction does.
        """
        settings = self.inference_settings({k: v for k, v in test_opts.items() if k not in SEG_DECODE_OPTIONS})
        outs = self.network_outputs(model, image, settings=settings)
        heat = np.asarray(outs.heatmaps, np.float32)
        kp = np.asarray(keypoints, np.float64).copy()
        kp[..., :2] *= outs.factor / outs.stride                        # image px -> output grid
        poses, scores = self._group(heat, true_tags(kp, heat.shape[-2:], settings), settings, outs.offsets)
        return grid_to_image(poses, scores, outs.stride, outs.factor, np.asarray(image).shape)

    def _group(self, heat, tag, settings: AEInference, offsets=None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`.decode.group` of heat (K, H, W) and tag (K, H, W, D) under ``settings``; with
        ``offsets`` (K, 2, H, W) (grid cells) the joints found are placed by them
        (:func:`~posegroup.methods.common.place_by_offsets`), or, with ``hough_factor`` n, found
        on the maps the offsets vote n times finer (:func:`.decode.hough_vote`); missing joints filled
        (:func:`.decode.fill_missing`).
        Returns (poses (N, K, 3) x, y, score on the output grid, scores (N,)), float64."""
        from ..common import place_by_offsets

        n = int(settings.hough_factor)              # > 0 only with short_offsets (inference_settings)
        if n:
            heat, tag = decode.hough_vote(heat, tag, offsets, factor=n, blur=settings.hough_blur)
        poses, scores = decode.group(heat, tag, **group_keywords(settings))
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, self.num_keypoints, 3)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if n:
            poses[..., :2] /= n                                          # fine cells -> the grid's
        elif offsets is not None:
            poses = place_by_offsets(poses, offsets)
        if len(poses):
            poses = np.array(decode.fill_missing(poses), dtype=np.float64)
        return poses, scores

    def decode(self, outputs: AEOutputs, settings: AEInference, image_shape: tuple) -> tuple:
        """The people of :meth:`network_outputs`' ``outputs`` for an image of shape
        ``image_shape`` (H, W, ...): :func:`.decode.group` under ``settings`` (:meth:`_group`),
        positions in image pixels clipped to the image; with segmentation also the masks of
        :func:`.segment.segment_people`. Returns as :meth:`predict`."""
        from . import segment

        poses, scores = self._group(outputs.heatmaps, outputs.tags, settings, outputs.offsets)
        result = grid_to_image(poses, scores, outputs.stride, outputs.factor, image_shape)
        if not self.segmentation:
            return result
        prob, seg_tags = outputs.segmentation
        masks = segment.segment_people(prob, seg_tags, poses, image_hw=tuple(image_shape[:2]),
                                       scale=outputs.stride / outputs.factor, scores=scores, **seg_keywords(settings))
        return result[0], result[1], masks

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                scales=None, flip: bool | None = None, refine: bool | None = None,
                multiscale_tags: str | None = None, **decode_opts: Any) -> tuple:
        """Multi-person poses (and, with segmentation, instance masks) of one uint8 RGB image
        (H, W, 3): :meth:`decode` of :meth:`network_outputs`.

        ``flip`` averages heatmaps with the mirrored image's (tags concatenated); several
        ``scales`` are resampled onto the scale-1 output grid, heatmaps averaged and tags
        concatenated (paper, ``multiscale_tags="concat"``; default "scale1": the reference's
        scale-1 tags only). ``refine`` and ``decode_opts`` go to :func:`.decode.group`, except
        the segmentation options (:data:`SEG_DECODE_OPTIONS`: ``seg_decode`` "paper" | "pose",
        ...), which go to :func:`.segment.segment_people`. Every option is an
        :class:`AEInference` field; one left None takes the model's ``method.options`` value,
        else the field's default.

        Returns poses (N, K, 3) x, y, score in image pixels (missing joints filled by
        :func:`.decode.fill_missing`; positions clipped to the image) and scores (N,); with
        segmentation also masks (N, H, W) bool in image pixels, mask n for person n.
        """
        return super().predict(model, image, input_size=input_size, scales=scales, flip=flip, refine=refine,
                               multiscale_tags=multiscale_tags, **decode_opts)


METHOD = AEMethod

__all__ = ["AEMethod", "AESettings", "AEInference", "AEOutputs", "METHOD", "downsample_ignore_mask", "SEG_DECODE_OPTIONS",
           "GROUP_KEYWORDS", "group_keywords", "seg_keywords"]
