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
from typing import Any

import numpy as np
import torch

from ..base import Method
from ..settings import as_dict, from_options, non_negative, one_of, positive, setting
from ...skeleton import KeypointSet
from . import head as _head
from .loss import HEATMAP_FORMS, PUSH_FORMS, PULL_FORMS, ae_loss
from .segment import SEG_DECODERS
from ..common import downsample_ignore_mask, grid_to_image


#: Test-time options of the segmentation decoder (:func:`.segment.segment_people`) and their
#: defaults; constructor keywords (the method's defaults) and :meth:`AEMethod.predict` keywords.
#: Multi-scale tags: "scale1" (the reference's, the default: see ``AEMethod.INFERENCE_OPTIONS``) or
#: "concat" (the paper's).
MULTISCALE_TAGS = ("scale1", "concat")

SEG_DECODE_OPTIONS = {"seg_decode": "paper", "seg_threshold": 0.5, "seg_bin_width": 0.2,
                      "seg_nms_radius": 1.0, "seg_min_cells": 2, "seg_anchor_radius": 1.5,
                      "seg_anchor_statistic": "median"}


def check_seg_decode_options(opts: dict) -> dict:
    """The segmentation decoding options validated (ValueError naming the key) and mapped to
    :func:`.segment.segment_people` keywords."""
    unknown = set(opts) - set(SEG_DECODE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown segmentation option(s) {sorted(unknown)}; valid: {sorted(SEG_DECODE_OPTIONS)}")
    o = {**SEG_DECODE_OPTIONS, **opts}
    checks = {"seg_decode": o["seg_decode"] in SEG_DECODERS, "seg_threshold": 0 < o["seg_threshold"] < 1,
              "seg_bin_width": o["seg_bin_width"] > 0, "seg_nms_radius": o["seg_nms_radius"] >= 0,
              "seg_min_cells": float(o["seg_min_cells"]).is_integer() and o["seg_min_cells"] >= 1,
              "seg_anchor_radius": o["seg_anchor_radius"] > 0,
              "seg_anchor_statistic": o["seg_anchor_statistic"] in ("median", "mean")}
    for key, ok in checks.items():
        if not ok:
            want = {"seg_decode": f"one of {SEG_DECODERS}", "seg_anchor_statistic": "'median' or 'mean'"}.get(
                key, "see posegroup.methods.ae.SEG_DECODE_OPTIONS")
            raise ValueError(f"option '{key}' has an invalid value {o[key]!r}; expected {want}")
    return {"mode": o["seg_decode"], "threshold": float(o["seg_threshold"]), "bin_width": float(o["seg_bin_width"]),
            "nms_radius": float(o["seg_nms_radius"]), "min_cells": int(o["seg_min_cells"]),
            "anchor_radius": float(o["seg_anchor_radius"]), "anchor_statistic": o["seg_anchor_statistic"]}


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
    seg_tag_dim: int = setting(1, positive, "> 0: E, the pixel-tag dimension [1]")
    seg_samples: int = setting(32, positive, "> 0: S, pixels sampled per instance")
    foreground_weight: float = setting(1.0, non_negative, ">= 0: foreground BCE weight")
    seg_pull_weight: float = setting(1e-3, non_negative, ">= 0: pixel pull weight")
    seg_push_weight: float = setting(1e-3, non_negative, ">= 0: pixel push weight")
    seg_push_sigma: float = setting(1.0, positive, "> 0: pixel push sigma [1]")


#: Keyword options of :func:`.decode.group` (its keyword-only parameters).
def _group_keywords() -> tuple[str, ...]:
    from . import decode
    return tuple(n for n, p in inspect.signature(decode.group).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


def split_options(options: dict, *, what: str = "method.options") -> tuple[AESettings, dict]:
    """``(settings, decode_defaults)`` of AE's ``method.options``: the :class:`AESettings` keys
    validated by :func:`~posegroup.methods.settings.from_options`; every other key must be a
    test option (:attr:`AEMethod.INFERENCE_OPTIONS`), a keyword of :func:`.decode.group` or a
    segmentation decoding option (:data:`SEG_DECODE_OPTIONS`), else a one-line ValueError
    naming the key (with a close match) and the valid choices."""
    fields = {f.name for f in dataclasses.fields(AESettings)}
    valid = sorted(fields | set(AEMethod.INFERENCE_OPTIONS) | set(AEMethod.DECODE_OPTIONS))
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown option '{key}' in {what}{hint}; valid: {', '.join(valid)}")
    settings = from_options(AESettings, {k: v for k, v in options.items() if k in fields}, what=what)
    return settings, {k: v for k, v in options.items() if k not in fields}


def check_test_options(opts: dict, num_keypoints: int | None = None) -> None:
    """Values of AE test / decode options (keys already known), checked at build time: the
    network-side options here, the segmentation ones by :func:`check_seg_decode_options`, the
    :func:`.decode.group` ones by a dry run on empty (K, 8, 8) maps (its own checks).
    ``num_keypoints`` None: ``joint_order`` is not checked (no keypoint set yet)."""
    from . import decode
    from ..common import check_scales
    if "input_size" in opts:
        v = opts["input_size"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < 1:
            raise ValueError(f"option 'input_size' must be a positive integer, got {v!r}")
    for key in ("flip", "refine"):
        if key in opts and not isinstance(opts[key], bool):
            raise ValueError(f"option '{key}' must be true or false, got {opts[key]!r}")
    if opts.get("multiscale_tags", MULTISCALE_TAGS[0]) not in MULTISCALE_TAGS:
        raise ValueError(f"option 'multiscale_tags' has an invalid value {opts['multiscale_tags']!r}; "
                         f"expected one of {list(MULTISCALE_TAGS)}")
    if "scales" in opts:
        try:
            check_scales(opts["scales"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"option 'scales' has an invalid value {opts['scales']!r} ({e})") from None
    check_seg_decode_options({k: v for k, v in opts.items() if k in SEG_DECODE_OPTIONS})
    group_opts = {k: v for k, v in opts.items() if k in _group_keywords()}
    if num_keypoints is None:
        group_opts.pop("joint_order", None)
    k = int(num_keypoints or 1)
    try:
        decode.group(np.zeros((k, 8, 8), np.float32), np.zeros((k, 8, 8, 1), np.float32), **group_opts)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0]
        knob = msg.split(" ", 1)[0].split("=", 1)[0]
        raise ValueError(f"option '{knob}' is invalid: {msg}" if knob in group_opts else msg) from None


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
        seg_decode, seg_threshold, seg_bin_width, seg_nms_radius, seg_min_cells,
            seg_anchor_radius, seg_anchor_statistic: default segmentation decoding
            (:data:`SEG_DECODE_OPTIONS`, :func:`.segment.segment_people`).
        other keys: default test / decode options for :meth:`predict` (:func:`split_options`).
    """

    name = "ae"
    # multiscale_tags default "scale1" (the reference's), not the paper's "concat": measured on the
    # tiny AE trained on mixed crowding (docs/test_time.md, 100 images per split, flip + refine),
    # scales {1, 2, 0.5}: AP sparse / medium / heavy 0.507 / 0.268 / 0.062 with scale-1 tags
    # against 0.258 / 0.118 / 0.020 with concatenated ones (a small model's tags disagree across
    # scales). refine None: group()'s preset decides (default: on).
    INFERENCE_OPTIONS = {"input_size": 512, "scales": (1.0,), "flip": False, "refine": None,
                    "multiscale_tags": MULTISCALE_TAGS[0]}
    #: Test options that go to the decoders: :func:`.decode.group` keywords + :data:`SEG_DECODE_OPTIONS`.
    DECODE_OPTIONS = _group_keywords() + tuple(SEG_DECODE_OPTIONS)

    def __init__(self, keypoint_set: KeypointSet, **options: Any):
        settings, decode_defaults = split_options(options)
        check_test_options(decode_defaults, keypoint_set.num_keypoints)
        super().__init__(keypoint_set, **as_dict(settings), **decode_defaults)
        self.settings = settings
        self.seg_decode_defaults = {key: decode_defaults.pop(key) for key in SEG_DECODE_OPTIONS
                                    if key in decode_defaults}
        self.num_keypoints = keypoint_set.num_keypoints
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
        self.offset_channels = 2 * self.num_keypoints if settings.short_offsets else 0   # last in the layout

    @classmethod
    def check_options(cls, options: dict, *, what: str = "method.options") -> None:
        """Validate ``method.options`` without a keypoint set (config load time)."""
        _, decode_defaults = split_options(dict(options or {}), what=what)
        check_test_options(decode_defaults)

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
            if self.short_offsets:
                raise ValueError("method.options.short_offsets needs model.backbone: posenet_mobilenet "
                                 "(PoseNet's pretrained offset head)")
            return None
        rest = self.num_channels - self.num_keypoints - self.offset_channels
        return _head.PoseNetAE(backbone, rest, offsets=self.short_offsets)

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
    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int = 512,
                        scales=(1.0,), flip: bool = False, multiscale_tags: str = MULTISCALE_TAGS[0],
                        return_segmentation: bool = False, return_offsets: bool = False) -> tuple:
        """Run ``model`` at every scale (and mirrored) and fuse onto one grid.

        Every prediction (last stack; mirrored ones flipped back) is resampled onto the output
        grid of the scale-1 input, cropped to the cells covering the image (exactly aligned: the
        padding is cropped, not stretched), then
        :func:`.fusion.fuse` averages the heatmaps and concatenates the tags.
        ``multiscale_tags``: "scale1" (default; reference pose-ae-train: tags of scale 1 only,
        the scale closest to 1 when 1 is not among them) or "concat" (paper: tags of every scale;
        see ``INFERENCE_OPTIONS`` for the measurement).

        Returns heatmaps (K, H, W) float32, tags (K, H, W, D') float32 (D' = D x entries used),
        the factor f such that image px = grid px * stride / f, and the stride; with
        ``return_segmentation`` (segmentation on) also (foreground probability (H, W), pixel
        tags (H, W, E)): the probability averaged over every pass, the tags of the first,
        un-mirrored pass of the scale closest to 1 (tags of different passes are different
        embeddings, and the paper's histogram decoder works on one). With ``return_offsets``
        (``short_offsets`` on) last also the short-range offsets (K, 2, H, W) in grid cells,
        averaged over every pass.
        """
        from . import fusion

        if multiscale_tags not in MULTISCALE_TAGS:
            raise ValueError(f"multiscale_tags must be one of {list(MULTISCALE_TAGS)}, got {multiscale_tags!r}")
        if return_segmentation and not self.segmentation:
            raise ValueError("return_segmentation needs a method built with segmentation=True")
        if return_offsets and not self.short_offsets:
            raise ValueError("return_offsets needs a method built with short_offsets=True")
        from ..common import check_scales

        scales = check_scales(scales)
        heats, tags, owner, segs, grid, factor1, stride, offs = self._passes(model, image, input_size, scales, flip)
        best = int(np.argmin([abs(np.log(s)) for s in scales]))
        tag_indices = None
        if multiscale_tags == "scale1":
            tag_indices = [i for i, o in enumerate(owner) if o == best]
        heat, tag = fusion.fuse(heats, tags, grid, tag_indices=tag_indices)
        out = (heat, tag, factor1, stride)
        if return_segmentation:
            prob = np.mean([1.0 / (1.0 + np.exp(-fg)) for fg, _ in segs], axis=0).astype(np.float32)
            out += ((prob, segs[owner.index(best)][1]),)
        return out + ((np.mean(offs, axis=0).astype(np.float32),) if return_offsets else ())

    def _passes(self, model, image, input_size, scales, flip):
        """The network at every scale (and mirrored), each output (last stack) resampled onto the
        common grid by :func:`~posegroup.methods.common.network_passes`; the joint channels of a
        mirrored pass are swapped left/right here (the spatial flip back is the helper's).
        Returns (heatmaps [(K, H, W)], tags [(K, H, W, D)], scale index of each, segmentation
        [(foreground logits (H, W), pixel tags (H, W, E))] (empty when off), grid (H, W), factor1,
        stride, short offsets [(K, 2, H, W) in grid cells, a mirrored pass's made the image's]
        (empty when off))."""
        from ..common import evaluating, last_stack, network_passes

        k, d, e = self.num_keypoints, self.tag_dim, self.seg_tag_dim
        flip_index = torch.as_tensor(np.asarray(self.keypoint_set.flip_index, dtype=np.int64))
        passes = 1 + bool(flip)

        with evaluating(model):
            maps, grid, factor1, stride, ratios = network_passes(model, image, int(input_size), scales, bool(flip),
                                                                 last_stack)
        heats, tags, segs, offs = [], [], [], []
        for i, m in enumerate(maps):
            if self.offset_channels:                              # input px of the pass -> grid cells
                m, off = m[:-self.offset_channels], m[-self.offset_channels:].reshape(k, 2, *m.shape[-2:])
                off = off / (stride * ratios[i])
                if i % passes == 1:
                    off = off[flip_index] * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
                offs.append(off.numpy())
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
        hm, tags, _, _ = self.network_outputs(model, image, input_size=int(opts.get("input_size", 512)))
        canvas = image if canvas is None else canvas
        w = canvas.shape[1]
        lo, hi = tag_range(hm, tags)
        return [caption(draw_heatmaps(canvas, hm), ["AE heatmaps: strongest joint per pixel"],
                        legend=colorbar(w, 0.0, 1.0, "heatmap value")),
                caption(draw_tags(canvas, hm, tags), ["AE tags of the strongest joint", "one colour = one person"],
                        legend=colorbar(w, lo, hi, "tag value", cv2.COLORMAP_HSV))]

    def _split_options(self, test_given: dict, others: dict) -> tuple[dict, dict, dict]:
        """Test-time keywords split into (every ``INFERENCE_OPTIONS`` key, the segmentation options
        given, the :func:`.decode.group` keywords). Test options given as None, and options not
        given, take the constructor's ``decode_defaults`` value, else ``INFERENCE_OPTIONS``."""
        opts = {**self.INFERENCE_OPTIONS, **self.decode_defaults, **others}
        opts.update({key: v for key, v in test_given.items() if v is not None})
        test = {key: opts.pop(key) for key in self.INFERENCE_OPTIONS}
        seg = {key: opts.pop(key) for key in SEG_DECODE_OPTIONS if key in opts}
        return test, seg, opts

    @staticmethod
    def _network_options(test: dict) -> dict:
        """:meth:`network_outputs` keywords of a ``test`` dict of :meth:`_split_options`."""
        return {"input_size": int(test["input_size"]), "scales": test["scales"], "flip": bool(test["flip"]),
                "multiscale_tags": test["multiscale_tags"]}

    def predict_true_ids(self, model: torch.nn.Module, image: np.ndarray, keypoints: np.ndarray, **test_opts: Any
                         ) -> tuple[np.ndarray, np.ndarray]:
        """AE's grouping ceiling for one image: the network's heatmaps, decoded with the predicted
        tags replaced by perfect ones (every cell of joint k's tag map carries the id of the true
        person whose joint k is nearest, :func:`posegroup.methods.ae.targets.tag_maps`).

        Args: model, image uint8 (H, W, 3), keypoints (N, K, 3) true people in
        image px, test_opts: ``input_size``, ``scales``, ``flip``, ``multiscale_tags`` (network
        side) + decode options (segmentation options are ignored: no masks here).
        Returns (poses (M, K, 3) image px, scores (M,)) like ``self.predict``, through the same
        decoding (:meth:`_group`, ``refine`` included): the ceiling of what the prediction does.
        """
        from . import targets

        test, _, opts = self._split_options({k: v for k, v in test_opts.items() if k in self.INFERENCE_OPTIONS},
                                            {k: v for k, v in test_opts.items() if k not in self.INFERENCE_OPTIONS})
        outs = self.network_outputs(model, image, **self._network_options(test), return_offsets=self.short_offsets)
        heat, _, factor, stride = outs[:4]
        heat = np.asarray(heat, np.float32)
        kp = np.asarray(keypoints, np.float64).copy()
        kp[..., :2] *= factor / stride                                  # image px -> output grid
        gap = 2.0 * max(1.0, float(opts.get("tag_threshold") or 1.0))  # ids further apart than any match
        ids = gap * np.arange(len(kp))
        true_tags = targets.tag_maps(kp, heat.shape[-2:], person_tags=ids).astype(np.float32)
        poses, scores = self._group(heat, true_tags, test["refine"], opts, outs[-1] if self.short_offsets else None)
        return grid_to_image(poses, scores, stride, factor, np.asarray(image).shape)

    def _group(self, heat, tag, refine, opts: dict, offsets=None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`.decode.group` of heat (K, H, W) and tag (K, H, W, D) with ``refine`` (None: the
        preset's) and the decode ``opts``; with ``offsets`` (K, 2, H, W) (grid cells) the joints
        found are placed by them (:func:`~posegroup.methods.common.place_by_offsets`); missing
        joints filled (:func:`.decode.fill_missing`).
        Returns (poses (N, K, 3) x, y, score on the output grid, scores (N,)), float64."""
        from ..common import place_by_offsets
        from . import decode

        refine = None if refine is None else bool(refine)
        poses, scores = decode.group(heat, tag, refine=refine, **opts)
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, self.num_keypoints, 3)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if offsets is not None:
            poses = place_by_offsets(poses, offsets)
        if len(poses):
            poses = np.array(decode.fill_missing(poses), dtype=np.float64)
        return poses, scores

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                scales=None, flip: bool | None = None, refine: bool | None = None,
                multiscale_tags: str | None = None, **decode_opts: Any) -> tuple:
        """Multi-person poses (and, with segmentation, instance masks) of one uint8 RGB image (H, W, 3).

        The image is resized so its longer side is ``input_size * scale``, padded right/bottom to
        the model's ``input_multiple``, ImageNet-normalised; the last stack's output is used.
        ``flip`` averages heatmaps with the mirrored image's (tags concatenated); several
        ``scales`` are resampled onto the scale-1 output grid, heatmaps averaged and tags
        concatenated (paper, ``multiscale_tags="concat"``; default "scale1": the reference's scale-1 tags only).
        ``refine`` and ``decode_opts`` go to :func:`.decode.group`, except the segmentation
        options (:data:`SEG_DECODE_OPTIONS`: ``seg_decode`` "paper" | "pose", ...), which go to
        :func:`.segment.segment_people`.

        Options left None take the constructor's ``decode_defaults`` value, else
        ``INFERENCE_OPTIONS`` (input_size 512, scales (1.0,), flip False, refine None = :func:`.decode.group`'s
        preset default (on), multiscale_tags "scale1").

        Returns poses (N, K, 3) x, y, score in image pixels (missing joints filled by
        :func:`.decode.fill_missing`; positions clipped to the image) and scores (N,); with
        segmentation also masks (N, H, W) bool in image pixels, mask n for person n.
        """
        from . import segment

        test, seg_given, opts = self._split_options(
            {"input_size": input_size, "scales": scales, "flip": flip, "refine": refine,
             "multiscale_tags": multiscale_tags}, decode_opts)
        if seg_given and not self.segmentation:
            raise ValueError(f"{sorted(seg_given)}: segmentation options need a method built with segmentation=True")
        seg_opts = check_seg_decode_options({**self.seg_decode_defaults, **seg_given})
        outs = self.network_outputs(model, image, **self._network_options(test),
                                    return_segmentation=self.segmentation, return_offsets=self.short_offsets)
        heat, tag, factor, stride = outs[:4]
        poses, scores = self._group(heat, tag, test["refine"], opts, outs[-1] if self.short_offsets else None)
        shape = np.asarray(image).shape
        result = grid_to_image(poses, scores, stride, factor, shape)
        if not self.segmentation:
            return result
        prob, seg_tags = outs[4]
        masks = segment.segment_people(prob, seg_tags, poses, image_hw=shape[:2], scale=stride / factor,
                                       scores=scores, **seg_opts)
        return result[0], result[1], masks


METHOD = AEMethod

__all__ = ["AEMethod", "AESettings", "METHOD", "downsample_ignore_mask", "SEG_DECODE_OPTIONS", "check_seg_decode_options"]
