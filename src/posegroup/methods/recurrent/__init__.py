"""Learned recurrent association (Briq, Doering & Gall, arXiv 1904.11864) as a
:class:`~posegroup.methods.base.Method`. SPEC section 3.

A ConvLSTM reads the features of every hourglass stack and emits ONE person's J heatmaps per
step, refining each in a feedback loop, until its stop probability falls below omega: there is
nothing to group afterwards. Targets: per-person Gaussian heatmaps in fixed slots
(:mod:`.targets`); network: :mod:`.head`; loss: Hungarian matching, stop BCE, truncated BPTT
(:mod:`.loss`); decoding: :mod:`.decode`.

Contract growth (docs/ARCHITECTURE.md): the method builds its own network
(``build_model``), computes its loss from the model (``training_loss``: the loss needs the
recurrent unroll) and the model's ``load_init_state`` takes the ``model.init_from`` AE
checkpoint.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import torch

from ..base import InferenceSettings, Method
from ..common import grid_to_image, scales_setting
from ..settings import as_dict, finite, finite_non_negative, from_options, non_negative, one_of, positive, setting, unit_interval
from ...skeleton import KeypointSet
from ..common import channel_groups
from . import decode as _decode
from .head import GATED_PRIORS, JOINT_PRIORS, OMEGA, RecurrentHead, RecurrentPoseNet
from .loss import LOSS_CONFIGS, LSTM2_INPUTS, ORDERS, REDUCTIONS, first_stop, lstm2_sequence, order_people, recurrent_loss


@dataclasses.dataclass(frozen=True)
class RecurrentSettings:
    """``method.options`` of the recurrent method (paper values in brackets)."""
    sigma: float = setting(2.0, positive, "Gaussian std of the per-person targets, output cells")
    max_people: int = setting(8, positive, "person slots per image (P); larger people kept")
    hidden_width: int = setting(64, positive, "LSTM1 first hidden width, halved per layer")
    lstm1_layers: int = setting(3, positive, "[3]")
    feedback_passes: int = setting(2, non_negative, "LSTM1 calls per person [2]; 0 = no loop")
    lstm2: bool = setting(False, None, "add LSTM2, the refinement in a chosen order")
    lstm2_hidden_width: int = setting(0, non_negative, "LSTM2 first hidden width (0: hidden_width)")
    lstm2_layers: int = setting(2, positive, "[2]")
    lstm2_order: str = setting("learned", one_of(*ORDERS), "LSTM2 input order (Table 3)")
    lstm2_inputs: str = setting("predicted", one_of(*LSTM2_INPUTS), "steps LSTM2 reads in training: the "
                                "predicted people as at test time, or the matched ones only [predicted]")
    lstm2_detach_input: bool = setting(False, None, "LSTM2's loss stops at its input instead of reaching "
                                                    "LSTM1 [false: the 'loss on LSTM2 only' ablation trains LSTM1]")
    loss_config: str = setting("aa'", one_of(*LOSS_CONFIGS), "Table 4 configuration")
    bptt_steps: int = setting(8, positive, "truncated BPTT chunk T [8]")
    cut_at_stop: bool = setting(True, None, "a chunk also closes (match, gradient cut) at every p_t < omega "
                                            "[Algorithm 1, line 10: true]")
    mask_matching: bool = setting(False, None, "ignored cells left out of the matching cost [the paper: no "
                                               "mask]; off: +0.02 AP on the memorisation ladder (two seeds)")
    mask_stop: bool = setting(False, None, "no stop target for steps in ignored cells [the paper: no mask]")
    heatmap_reduction: str = setting("sum", one_of(*REDUCTIONS), "one matched person's squared error: "
                                                                 "sum or mean over its J*H*W cells [sum]")
    max_steps: int = setting(0, non_negative, "step limit (0: max_people + 1)")
    stop_threshold: float = setting(OMEGA, unit_interval, "omega [sigmoid(-1)]")
    heatmap_weight: float = setting(1.0, non_negative, "[1]")
    stop_weight: float = setting(3.0, non_negative, "[1: equal weights]; 3: the same AP, half the count error "
                                                    "on the memorisation ladder (two seeds)")
    lstm2_weight: float = setting(1.0, non_negative, "[1]")
    joint_threshold: float = setting(0.015, None, "tau, decode [0.015]")
    subpixel: str = setting("dark", one_of(*_decode.SUBPIXEL), "decode peak refinement [none: argmax cell]; dark: "
                            "+0.07-0.10 AP over quadratic on the memorisation ladder, +0.03 on held-out sparse "
                            "scenes; offsets: PoseNet's short-range offsets (needs short_offsets)")
    subpixel_blur: float = setting(0.5, positive, "subpixel dark: std of the smoothing in units of sigma (best "
                                                  "measured 0.5 at sigma 1 and 2)")
    short_offsets: bool = setting(False, None, "model.backbone posenet_mobilenet only: the network keeps PoseNet's "
                                  "pretrained short-range offset head (frozen) for subpixel: offsets [not in the paper]")
    person_score: str = setting("joints", one_of(*_decode.PERSON_SCORES), "decode person score")
    feature_width: int = setting(0, non_negative, "0: the LSTMs read the backbone's C features [the paper]; F: a "
                                 "learned 1x1 convolution reduces them to F first (PoseNet's 384: a step costs half)")
    joint_prior: str = setting("none", one_of(*JOINT_PRIORS), "model.backbone posenet_mobilenet only: PoseNet's "
                               "pretrained heatmap head (frozen) gives J joint probabilities that LSTM1 reads "
                               "(input) or reads and selects one person's joints from (gate: heatmaps = prior "
                               "x sigmoid(output); seed: the same on what earlier steps left, starting from "
                               "the strongest joint left) [none: not in the paper]")
    seed_matching: bool = setting(False, None, "joint_prior seed: the matching takes first each step's pair with "
                                  "the true person owning its seed [false: the paper's Hungarian matching alone]")
    seed_context: bool = setting(False, None, "joint_prior seed: LSTM1 also reads each cell's features times the "
                                 "seed cell's, a similarity to the seed however far it is [false: not in the paper]")
    seed_type: bool = setting(False, None, "joint_prior seed: LSTM1 also reads which joint the seed is, image-wide, "
                              "and each cell's place from the seed in that joint's channels [false: not in the paper]")
    lstm1_dilation: int = setting(1, positive, "dilation d of LSTM1's layers after the first: each reaches d "
                                  "cells either side instead of 1 [1]")

    def __post_init__(self):
        for name in ("seed_context", "seed_type"):
            if getattr(self, name) and self.joint_prior != "seed":
                raise ValueError(f"option '{name}' needs joint_prior: seed, got {self.joint_prior!r}")

    @property
    def step_limit(self) -> int:
        return self.max_steps or self.max_people + 1


@dataclasses.dataclass(frozen=True)
class RecurrentInference(InferenceSettings):
    """Every inference option of the recurrent method (a config's ``test`` section, the
    keywords of :meth:`RecurrentMethod.predict`): the network passes', then
    :func:`.decode.decode_people`'s, whose defaults are the model's :class:`RecurrentSettings`."""
    scales: tuple = scales_setting()
    flip: bool = setting(False, None, "features of the mirrored image averaged before the LSTM")
    stop_threshold: float = setting(OMEGA, unit_interval, "omega: the people are the steps before the first p_t below it")
    joint_threshold: float = setting(0.015, finite, "tau: a joint whose peak is below it gets score 0")
    subpixel: str = setting("dark", one_of(*_decode.SUBPIXEL), "peak refinement (offsets: needs short_offsets)")
    subpixel_blur: float = setting(0.5, positive, "subpixel dark: std of the smoothing in units of the model's sigma")
    person_score: str = setting("joints", one_of(*_decode.PERSON_SCORES), "the person score")
    select_power: float = setting(1.0, finite_non_negative, "joint_prior gate / seed: a step's heatmaps are the "
                                  "prior times its selection sigmoid(output) to this power [1: as trained]; below 1 "
                                  "the prior weighs more where the selection is unsure")
    refine: bool = setting(False, None, "the paper's multi-scale test: each person's missing joints filled by "
                                        "AE's single-person refinement on the AE backbone's heatmaps (averaged "
                                        "over the passes) and tags (the first scale's); needs an AE backbone")
    refine_below: float = setting(0.0, unit_interval, "refine: joints scored below it count as missing too "
                                                      "(0: only those below tau, the paper's)")


class RecurrentOutputs(NamedTuple):
    """:meth:`RecurrentMethod.network_outputs` of one image: ``heatmaps`` (T, J, H, W) of the
    steps taken, ``stop_probs`` (T,), ``factor`` and ``stride`` (image px = grid px * stride /
    factor), PoseNet's short-range ``offsets`` (J, 2, H, W) in grid cells (``short_offsets``) or
    None, and with ``refine`` the AE backbone's ``ae_heatmaps`` (J, H, W), averaged over the
    passes, and ``ae_tags`` (J, H, W, D) of the first pass (else None); with ``joint_prior`` the
    ``prior`` (J, H, W) the LSTM read (PoseNet's joint probabilities, averaged over the passes)."""
    heatmaps: np.ndarray
    stop_probs: np.ndarray
    factor: float
    stride: int
    offsets: np.ndarray | None = None
    ae_heatmaps: np.ndarray | None = None
    ae_tags: np.ndarray | None = None
    prior: np.ndarray | None = None


#: ``model`` section keys of a recurrent config.
MODEL_KEYS = ("backbone", "freeze_backbone", "backbone_tag_dim", "init_from")


class RecurrentMethod(Method):
    """The recurrent association method; options: :class:`RecurrentSettings`."""

    name = "recurrent"
    INIT_FROM_METHOD = "ae"           # the ConvLSTM reads a trained AE hourglass (paper sec. 4)
    EXPORT_GRAPH = "export_forward"   # the features the LSTM reads; the loop stays in PyTorch
    INFERENCE_SETTINGS = RecurrentInference
    INFERENCE_OPTIONS = {f.name: f.default for f in dataclasses.fields(RecurrentInference)
                         if f.name in ("input_size", "scales", "flip")}
    INFERENCE_FLAGS = {
        **Method.INFERENCE_FLAGS,
        "flip": {"type": bool, "help": "flip test (recurrent: features averaged before the LSTM)"},
        "scales": {"type": float, "nargs": "+", "help": "multi-scale test, e.g. 1 0.5 2"},
        "stop_threshold": {"type": float, "help": "recurrent: omega, stop at the first p_t below it"},
        "joint_threshold": {"type": float, "help": "recurrent: tau, joints below it get score 0"},
        "subpixel": {"type": str, "choices": list(_decode.SUBPIXEL), "help": "recurrent: peak refinement"},
        "subpixel_blur": {"type": float, "help": "recurrent subpixel dark: smoothing std, in units of sigma"},
        "person_score": {"type": str, "choices": list(_decode.PERSON_SCORES), "help": "recurrent: person score"},
        "select_power": {"type": float, "help": "recurrent gate / seed: a step's heatmaps are the prior times its "
                                                "selection to this power (1: as trained)"},
        "refine": {"type": bool, "help": "recurrent: fill missing joints by AE's refinement (an AE backbone)"},
        "refine_below": {"type": float, "help": "recurrent refine: joints scored below it count as missing"},
    }
    DECODE_OPTIONS = ("stop_threshold", "joint_threshold", "subpixel", "subpixel_blur", "person_score")

    def __init__(self, keypoint_set: KeypointSet, **options: Any):
        self.settings = from_options(RecurrentSettings, options)
        self.check_inference_options(None, options, what="method.options")     # subpixel: offsets needs the head
        super().__init__(keypoint_set, **as_dict(self.settings))
        self.num_keypoints = keypoint_set.num_keypoints

    @classmethod
    def inference_defaults(cls, options: dict) -> dict:
        """The decode options of ``method.options`` (:class:`RecurrentSettings` fields)."""
        return {k: options[k] for k in cls.DECODE_OPTIONS if k in options}

    @classmethod
    def check_inference_options(cls, options: dict | None, method_options: dict | None = None, *,
                                what: str = "test") -> RecurrentInference:
        """:meth:`Method.check_inference_options`; ``subpixel: offsets`` given to a model
        without ``short_offsets``, or ``select_power`` other than 1 to one without a gated
        ``joint_prior``, is a one-line ValueError."""
        settings = super().check_inference_options(options, method_options, what=what)
        model = method_options or {}
        if settings.subpixel == "offsets" and not model.get("short_offsets", False):
            raise ValueError(f"option 'subpixel' in {what} is 'offsets', which needs "
                             "method.options.short_offsets: true (PoseNet's offset head)")
        if settings.select_power != 1 and model.get("joint_prior", "none") not in GATED_PRIORS:
            raise ValueError(f"option 'select_power' in {what} is {settings.select_power}, which needs "
                             "method.options.joint_prior: gate or seed (a step's heatmaps are the prior times "
                             "its selection)")
        return settings

    def load_init_state(self, model: torch.nn.Module, state_dict: dict, source: str) -> None:
        """``model.init_from`` names an AE checkpoint: its network becomes the backbone
        (:meth:`.head.RecurrentPoseNet.load_init_state`)."""
        model.load_init_state(state_dict, source)

    @property
    def num_channels(self) -> int:
        return self.num_keypoints   # one person's J heatmaps per step

    # -- network ----------------------------------------------------------------------------
    def build_model(self, model_cfg: dict) -> RecurrentPoseNet:
        """Hourglass (``model.backbone``, default "tiny"; its AE head has J * (1 + D) channels,
        D = ``model.backbone_tag_dim`` (1)) + :class:`.head.RecurrentHead`; ``model.backbone:
        posenet_mobilenet``: PoseNet's features instead (``output_stride`` 8 | 16, default 16;
        ``freeze_backbone``, default true)."""
        from ...backbones.hourglass import hourglass_from_config
        from ...backbones.posenet import BACKBONE_NAME
        from ..common import posenet_backbone
        cfg = dict(model_cfg or {})
        offsets, prior = self.settings.short_offsets, self.settings.joint_prior != "none"
        if cfg.get("backbone") == BACKBONE_NAME:      # PoseNet's features (output_stride 8 | 16)
            keypoints = self.keypoint_set if offsets or prior else None      # PoseNet's heads are COCO-17's
            heads = ("offsets",) * offsets + ("heatmaps",) * prior
            return self._with_head(posenet_backbone(cfg, keypoints, freeze_default=True, heads=heads or False),
                                   cfg.get("freeze_backbone", True), offsets)
        for key, on, head in (("short_offsets", offsets, "offset"), ("joint_prior", prior, "heatmap")):
            if on:
                raise ValueError(f"method.options.{key} needs model.backbone: posenet_mobilenet "
                                 f"(PoseNet's pretrained {head} head)")
        unknown = sorted(set(cfg) - set(MODEL_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in model (recurrent method); valid: {list(MODEL_KEYS)}")
        freeze = cfg.get("freeze_backbone", True)
        if not isinstance(freeze, bool):
            raise ValueError(f"model.freeze_backbone must be true or false, got {freeze!r}")
        tag_dim = int(cfg.get("backbone_tag_dim", 1))
        groups = channel_groups(self.num_keypoints, tag_dim)               # the AE backbone's [J, J*D]
        return self._with_head(hourglass_from_config(cfg.get("backbone", "tiny"), sum(groups), groups), freeze,
                               ae_tag_dim=tag_dim)

    def _with_head(self, backbone: torch.nn.Module, freeze: bool, offsets: bool = False,
                   ae_tag_dim: int | None = None) -> RecurrentPoseNet:
        """``backbone`` (``feature_channels`` x ``num_stacks`` features) + the ConvLSTM head."""
        s = self.settings
        head = RecurrentHead(backbone.feature_channels * backbone.num_stacks, self.num_keypoints,
                             hidden_width=s.hidden_width, lstm1_layers=s.lstm1_layers,
                             feedback_passes=s.feedback_passes,
                             lstm2_hidden_width=(s.lstm2_hidden_width or s.hidden_width) if s.lstm2 else None,
                             lstm2_layers=s.lstm2_layers, joint_prior=s.joint_prior,
                             feature_width=s.feature_width, seed_context=s.seed_context, seed_type=s.seed_type,
                             lstm1_dilation=s.lstm1_dilation)
        return RecurrentPoseNet(backbone, head, freeze_backbone=freeze, offsets=offsets, ae_tag_dim=ae_tag_dim,
                                joint_prior=s.joint_prior != "none")

    # -- targets ----------------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, ignore_mask: np.ndarray | None, instance_masks: np.ndarray | None,
               output_size: tuple[int, int], stride: int) -> dict[str, np.ndarray]:
        """{"person_heatmaps": (P, J, H, W) float32, "num_people": () int64, "mask": (H, W) float32}."""
        from ..common import downsample_ignore_mask
        from .targets import person_heatmaps
        kp = np.asarray(keypoints, np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, self.num_keypoints, 3)
        if kp.ndim != 3 or kp.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"keypoints must be (N, {self.num_keypoints}, 3), got {kp.shape}")
        out_kp = kp.copy()
        out_kp[..., :2] /= float(stride)
        size = tuple(int(v) for v in output_size)
        heat, z = person_heatmaps(out_kp, size, sigma=self.settings.sigma, max_people=self.settings.max_people)
        return {"person_heatmaps": heat, "num_people": np.asarray(z, np.int64),
                "mask": downsample_ignore_mask(ignore_mask, size, int(stride))}

    # -- loss -------------------------------------------------------------------------------
    def loss(self, predictions, targets):
        raise NotImplementedError("the recurrent loss needs the model: the engine calls training_loss")

    def training_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Algorithm 1 on a batch: unroll LSTM1 for |p| steps per image, match, loss (+ LSTM2).
        Runs through ``model``'s forward (DDP-safe)."""
        return model(batch["image"], batch=batch, loss_fn=self._sequence_loss)

    def _sequence_loss(self, net: RecurrentPoseNet, image: torch.Tensor, batch: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        x = net.head.norm(net.features(image))          # normalised (running statistics updated) once
        z = batch["num_people"].reshape(-1)
        seeds = [] if s.joint_prior == "seed" and s.seed_matching else None
        heats, logits, lengths = net.head.unroll(x, max_steps=s.step_limit, min_steps=z + 1, normalized=True,
                                                 stop_threshold=s.stop_threshold, bptt_steps=s.bptt_steps,
                                                 cut_at_stop=s.cut_at_stop, record_seeds=seeds)
        gt, mask = batch["person_heatmaps"], batch.get("mask")
        loss, parts, pairs = recurrent_loss(heats, logits, lengths, gt, z, mask, config=s.loss_config,
                                            bptt_steps=s.bptt_steps, cut_at_stop=s.cut_at_stop,
                                            stop_threshold=s.stop_threshold, heatmap_weight=s.heatmap_weight,
                                            stop_weight=s.stop_weight, reduction=s.heatmap_reduction,
                                            mask_matching=s.mask_matching, mask_stop=s.mask_stop,
                                            seeds=torch.stack(seeds, 1) if seeds else None)
        if net.head.lstm2 is not None:
            loss2 = self._lstm2_loss(net, x, heats, logits, lengths, pairs, gt, mask)
            parts["lstm2"] = float(loss2.detach())
            loss = loss + s.lstm2_weight * loss2
        return loss, parts

    def _lstm2_loss(self, net, x, heats, logits, lengths, pairs, gt, mask) -> torch.Tensor:
        """Eq. 4: LSTM2 reads LSTM1's people (:func:`.loss.lstm2_sequence`) in the configured
        order and is scored against the matched ones' ground truth in the same order.

        x: (B, C, H, W) normalised features; heats (B, L, J, H, W), logits (B, L), lengths (B,);
        pairs: per image (step, true person); gt (B, P, J, H, W); mask (B, H, W) or None."""
        s = self.settings
        src = heats.detach() if s.lstm2_detach_input else heats
        probs = torch.sigmoid(logits.detach().float()).cpu().numpy()
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, ())))
        rows = []
        for i, pr in enumerate(pairs):
            n = int(lengths[i])
            steps, people = lstm2_sequence(pr, first_stop(probs[i, :n], s.stop_threshold), s.lstm2_inputs)
            u = order_people(s.lstm2_order, heats[i, steps].detach().float().cpu().numpy(), probs[i, steps], rng)
            rows.append((steps[u], people[u]))
        width = max((len(st) for st, _ in rows), default=0)
        if width == 0:
            return heats.sum() * 0.0
        pad = heats.new_zeros((width,) + heats.shape[2:])
        inputs = torch.stack([torch.cat([src[i, torch.from_numpy(st)], pad[len(st):]]) for i, (st, _) in enumerate(rows)])
        targets = torch.stack([torch.cat([gt[i, torch.from_numpy(np.maximum(pe, 0))], pad[len(pe):]])
                               for i, (_, pe) in enumerate(rows)])
        scored = torch.tensor([[k < len(pe) and pe[k] >= 0 for k in range(width)] for _, pe in rows])
        out = net.head.refine(x, inputs, normalized=True)
        err = (out - targets) ** 2
        if mask is not None:
            err = err * mask[:, None, None]
        err = err * scored.to(err)[:, :, None, None, None]
        per_person = err.flatten(2).sum(2) if s.heatmap_reduction == "sum" else err.flatten(2).mean(2)
        return per_person.sum() / heats.shape[0]

    # -- inference --------------------------------------------------------------------------
    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, settings: RecurrentInference | None = None,
                        *, generator_seed: int = 0, return_offsets: bool | None = None,
                        **options: Any) -> RecurrentOutputs:
        """Features of every scale (and of the mirrored image, flipped back) of ``settings``
        (None: :meth:`inference_settings` of ``options``) averaged on the scale-1 grid, then
        LSTM1 (+ LSTM2) unrolled until the first stop (omega: ``settings.stop_threshold``).

        Averaging *features* (not per-person heatmaps, whose person order differs between
        passes) is the one place where scales and flips can meet before the LSTM. Mirrored
        features are flipped back spatially only: a channel that encodes "left" then sees a
        right limb, so flip testing is off by default.

        Returns :class:`RecurrentOutputs`; with ``short_offsets`` PoseNet's short-range offsets
        averaged over the passes (a mirrored pass's made the image's). ``return_offsets`` true
        for a method without ``short_offsets`` is a ValueError.
        """
        from ..common import evaluating, network_passes
        if return_offsets and not self.settings.short_offsets:
            raise ValueError("return_offsets needs a method built with short_offsets=True")
        settings = self.inference_settings(options) if settings is None else settings
        net = getattr(model, "module", model)
        run = self._ae_run(net) if settings.refine else (lambda m, x: m.export_forward(x))
        with evaluating(net):
            maps, grid, factor, stride, ratios = network_passes(
                net, image, int(settings.input_size), settings.scales, bool(settings.flip), run)
            maps, ae = self._split_ae(maps, net, bool(settings.flip)) if settings.refine else (maps, (None, None))
            maps, offsets = self._split_offsets(maps, ratios, stride, bool(settings.flip))
            maps = self._prior_unmirrored(maps, bool(settings.flip))
            feats = net.head.norm(torch.stack(maps).mean(0)[None].to(next(net.parameters()).device))
            gen = torch.Generator().manual_seed(int(generator_seed))
            heats, logits, lengths = net.head.unroll(feats, max_steps=self.settings.step_limit, normalized=True,
                                                     stop_threshold=settings.stop_threshold, generator=gen,
                                                     select_power=float(settings.select_power))
            length = int(lengths[0])
            heat, probs = heats[0, :length], torch.sigmoid(logits[0, :length])
            if net.head.lstm2 is not None:
                heat = self._refine(net, feats, heat, probs, gen, settings.stop_threshold)
        prior = feats[0, -self.num_keypoints:].float().cpu().numpy() if self.settings.joint_prior != "none" else None
        return RecurrentOutputs(heat.cpu().numpy(), probs.cpu().numpy(), factor, stride, offsets, *ae, prior=prior)

    def predict_true_ids(self, model: torch.nn.Module, image: np.ndarray, keypoints: np.ndarray, **test_opts: Any
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The method's selection ceiling for one image: each true person selected perfectly from
        the joints the network finds -- the joint prior (``joint_prior``), else its steps'
        heatmaps at their per-cell maximum -- by that person's training target (a Gaussian of std
        ``sigma`` cells at each labelled joint, peak 1, :func:`.targets.person_heatmaps`), one
        step per true person, decoded as :meth:`decode` does.

        Args: model, image uint8 (H, W, 3), keypoints (N, J, 3) true people in image px,
        test_opts: the inference options (:class:`RecurrentInference`).
        Returns (poses (N, J, 3) image px, scores (N,)) like ``self.predict``."""
        settings = self.inference_settings(test_opts)
        outs = self.network_outputs(model, image, settings)
        found = outs.prior if outs.prior is not None else outs.heatmaps.max(0, initial=0.0)
        kp = np.asarray(keypoints, np.float64).reshape(-1, self.num_keypoints, 3).copy()
        kp[..., :2] *= outs.factor / outs.stride                        # image px -> output grid
        return self.decode(self.true_selection(outs, found, kp), settings, np.shape(image))

    def true_selection(self, outputs: RecurrentOutputs, found: np.ndarray, keypoints: np.ndarray) -> RecurrentOutputs:
        """``outputs`` with one step per true person, each selecting that person from the joints
        ``found`` (J, H, W) by its training target (:func:`.targets.person_heatmaps`, std
        ``sigma``); keypoints (N, J, 3) on the output grid. Every step's stop probability is 1."""
        from .targets import person_heatmaps
        gates, n = person_heatmaps(keypoints, found.shape[-2:], sigma=self.settings.sigma,
                                   max_people=max(1, len(keypoints)))
        return outputs._replace(heatmaps=found[None] * gates[:n], stop_probs=np.ones(n, np.float32))

    @staticmethod
    def _ae_run(net) -> Any:
        """The pass of ``refine``: the features the LSTM reads, then the AE backbone's maps
        (:meth:`.head.RecurrentPoseNet.ae_maps`); a one-line ValueError for a model without them."""
        if not isinstance(net, RecurrentPoseNet) or net.ae_tag_dim is None:
            raise ValueError("refine needs the PyTorch model on an AE backbone (a stacked hourglass with its "
                             "heatmap and tag head; not PoseNet's features, not an exported graph)")
        return lambda m, x: torch.cat([m.export_forward(x), m.ae_maps()], 1)

    def _split_ae(self, maps: list, net, flip: bool) -> tuple[list, tuple[np.ndarray, np.ndarray]]:
        """Each pass's (C + J + J*D, H, W) output split into the features and the AE maps: the AE
        heatmaps averaged over the passes (a mirrored pass's joints swapped back), the tags of the
        first pass: (features [(C, H, W)], (heatmaps (J, H, W), tags (J, H, W, D)))."""
        j, d = self.num_keypoints, int(net.ae_tag_dim)
        ae = sum(channel_groups(j, d))                  # the AE backbone's [J heatmaps, J*D tags]
        flip_index = self._flip_index()
        heats = [m[-ae:-ae + j][flip_index] if flip and i % 2 else m[-ae:-ae + j] for i, m in enumerate(maps)]
        first = maps[0][-ae + j:]
        tags = first.reshape(j, d, *first.shape[-2:]).permute(0, 2, 3, 1)
        return [m[:-ae] for m in maps], (torch.stack(heats).mean(0).numpy(), tags.contiguous().numpy())

    def _split_offsets(self, maps: list, ratios: list, stride: int, flip: bool) -> tuple[list, np.ndarray | None]:
        """Each pass's (C [+ 2J], H, W) output split into features and offsets; the offsets (input
        px of their pass) turned into grid cells, a mirrored pass's swapped left/right and negated
        in x, and averaged: (features [(C, H, W)], offsets (J, 2, H, W) or None)."""
        from ..common import offsets_on_grid
        if not self.settings.short_offsets:
            return maps, None
        j, flip_index = self.num_keypoints, self.keypoint_set.flip_index
        offs = [offsets_on_grid(m[-2 * j:], stride, ratios[i], flip_index if flip and i % 2 else None)
                for i, m in enumerate(maps)]
        return [m[:-2 * j] for m in maps], np.mean(offs, axis=0).astype(np.float32)

    def _prior_unmirrored(self, maps: list, flip: bool) -> list:
        """Each pass's (C, H, W) features; with ``joint_prior`` and ``flip``, a mirrored pass's
        last J channels (the joint prior) swapped left/right, so that they are the image's joints."""
        if self.settings.joint_prior == "none" or not flip:
            return maps
        j, index = self.num_keypoints, self._flip_index()
        return [torch.cat([m[:-j], m[-j:][index]]) if i % 2 else m for i, m in enumerate(maps)]

    def _flip_index(self) -> torch.Tensor:
        """(J,) int64: joint j of a mirrored pass is joint flip_index[j] of the image."""
        return torch.as_tensor(np.asarray(self.keypoint_set.flip_index, np.int64))

    def _refine(self, net, feats, heat, probs, gen, stop_threshold: float) -> torch.Tensor:
        n = _decode.num_people(probs.cpu().numpy(), stop_threshold)
        if n == 0:
            return heat
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (), generator=gen)))
        u = order_people(self.settings.lstm2_order, heat[:n].cpu().numpy(), probs[:n].cpu().numpy(), rng)
        refined = net.head.refine(feats, heat[:n][torch.from_numpy(u)][None], normalized=True)[0]
        out = heat.clone()
        out[torch.from_numpy(u)] = refined
        return out

    def evaluation_figures(self, results: list[dict], gt: dict, image_ids=None) -> dict[str, float]:
        """The person count against the truth (:func:`.decode.count_figures`): the stop head
        decides how many people come out, the AP alone does not show over- or under-counting."""
        return _decode.count_figures(results, gt, image_ids)

    def draw_maps(self, model: torch.nn.Module, image: np.ndarray, *, canvas: np.ndarray | None = None,
                  **opts: Any) -> list[np.ndarray]:
        """Each decoded person's heatmaps in its own colour (the colours of the pose picture),
        titled, with a colour key (person n = the n-th step of the recurrent loop)."""
        from ...viz import caption, color_key, draw_person_maps, person_colors
        outs = self.network_outputs(model, image, RecurrentInference(input_size=int(opts.get("input_size", 512))))
        heat, probs = outs.heatmaps, outs.stop_probs
        n = _decode.num_people(probs, self.settings.stop_threshold)
        canvas = image if canvas is None else canvas
        key = color_key(canvas.shape[1], person_colors(n), [f"person {i + 1}" for i in range(n)]) if n else None
        return [caption(draw_person_maps(canvas, heat[:n]), [f"recurrent: {n} people, one per step"], legend=key)]

    def decode(self, outputs: RecurrentOutputs, settings: RecurrentInference, image_shape: tuple
               ) -> tuple[np.ndarray, np.ndarray]:
        """The people of :meth:`network_outputs`' ``outputs`` (:func:`.decode.decode_people`
        under ``settings``) in the pixels of an image of shape ``image_shape`` (H, W, ...)."""
        opts = {k: getattr(settings, k) for k in self.DECODE_OPTIONS}
        opts["blur"] = opts.pop("subpixel_blur") * self.settings.sigma        # in cells
        poses, scores = _decode.decode_people(outputs.heatmaps, outputs.stop_probs, offsets=outputs.offsets, **opts)
        if settings.refine:
            poses = _decode.refine_people(poses, outputs.ae_heatmaps, outputs.ae_tags, subpixel=settings.subpixel,
                                          missing_below=settings.refine_below)
        return grid_to_image(poses, scores, outputs.stride, outputs.factor, image_shape)

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                scales=None, flip: bool | None = None, **decode_opts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Poses (N, J, 3) x, y, score in image pixels and scores (N,) of one uint8 RGB image:
        :meth:`decode` of :meth:`network_outputs`.

        ``decode_opts``: ``stop_threshold``, ``joint_threshold``, ``subpixel``, ``subpixel_blur``, ``person_score``
        (defaults: the method's settings), see :func:`.decode.decode_people`; every option is a
        :class:`RecurrentInference` field."""
        return super().predict(model, image, input_size=input_size, scales=scales, flip=flip, **decode_opts)


METHOD = RecurrentMethod

__all__ = ["RecurrentMethod", "RecurrentSettings", "RecurrentInference", "RecurrentOutputs", "METHOD"]
