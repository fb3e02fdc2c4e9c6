"""Associative Embedding (Newell, Huang & Deng 2017) as a :class:`~posegroup.methods.base.Method`.

Head: per stack K heatmaps then K*D tag maps (:mod:`.head`); targets: Gaussian heatmaps,
ignore mask and per-person joint indices (:mod:`.targets`); loss: masked heatmap MSE + pull/push
grouping loss summed over stacks (:mod:`.loss`); decoding: NMS + greedy tag matching
(:mod:`.decode`). SPEC section 1.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..base import Method
from ...skeleton import KeypointSet
from . import head as _head
from .loss import PUSH_FORMS, PULL_FORMS, ae_loss
from ..common import grid_to_image, resample_maps as _resample


def downsample_ignore_mask(ignore_mask: np.ndarray | None, output_size: tuple[int, int], stride: int) -> np.ndarray:
    """Loss mask on the output grid from an input-resolution ignore mask.

    Args:
        ignore_mask: (H_in, W_in) bool, True = ignored (or None: nothing ignored).
        output_size: (H, W); output cell (i, j) covers input [j s, (j+1) s) x [i s, (i+1) s).
        stride: s.
    Returns: (H, W) float32, 1 = counted, 0 = ignored (a cell is ignored when more than half of
    its input pixels are; input pixels beyond the input image count as not ignored).
    """
    h, w = (int(v) for v in output_size)
    if ignore_mask is None:
        return np.ones((h, w), np.float32)
    m = np.asarray(ignore_mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"ignore_mask must be (H, W), got shape {m.shape}")
    s = int(stride)
    full = np.zeros((h * s, w * s), bool)
    hh, ww = min(m.shape[0], h * s), min(m.shape[1], w * s)
    full[:hh, :ww] = m[:hh, :ww]
    frac = full.reshape(h, s, w, s).mean(axis=(1, 3))
    return (frac <= 0.5).astype(np.float32)


class AEMethod(Method):
    """Associative Embedding.

    Args:
        keypoint_set: the keypoints (K from it).
        tag_dim: tag dimension D (paper: 1).
        sigma: heatmap Gaussian sigma in output cells (paper: 2).
        max_people: person slots for the tag loss (reference: 30).
        heatmap_weight, pull_weight, push_weight: loss weights (reference: 1, 1e-3, 1e-3).
        push_form: "paper" (default) or "reference" (see :func:`.loss.grouping_loss`).
        pull_form: "paper" (default) or "reference".
        push_sigma: sigma of the paper's push term (paper: 1).
        **decode_defaults: default options of :func:`.decode.group` for :meth:`predict`.
    """

    name = "ae"

    def __init__(self, keypoint_set: KeypointSet, *, tag_dim: int = 1, sigma: float = 2.0, max_people: int = 30,
                 heatmap_weight: float = 1.0, pull_weight: float = 1e-3, push_weight: float = 1e-3,
                 push_form: str = "paper", pull_form: str = "paper", push_sigma: float = 1.0,
                 **decode_defaults: Any):
        super().__init__(keypoint_set, tag_dim=tag_dim, sigma=sigma, max_people=max_people,
                         heatmap_weight=heatmap_weight, pull_weight=pull_weight, push_weight=push_weight,
                         push_form=push_form, pull_form=pull_form, push_sigma=push_sigma, **decode_defaults)
        if int(tag_dim) < 1:
            raise ValueError(f"tag_dim must be >= 1, got {tag_dim}")
        if push_form not in PUSH_FORMS:
            raise ValueError(f"unknown push_form {push_form!r}; choose one of {PUSH_FORMS}")
        if pull_form not in PULL_FORMS:
            raise ValueError(f"unknown pull_form {pull_form!r}; choose one of {PULL_FORMS}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.num_keypoints = keypoint_set.num_keypoints
        self.tag_dim = int(tag_dim)
        self.sigma = float(sigma)
        self.max_people = int(max_people)
        self.heatmap_weight = float(heatmap_weight)
        self.pull_weight = float(pull_weight)
        self.push_weight = float(push_weight)
        self.push_form = push_form
        self.pull_form = pull_form
        self.push_sigma = float(push_sigma)
        self.decode_defaults = dict(decode_defaults)

    # -- head -------------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return _head.num_channels(self.num_keypoints, self.tag_dim)

    # -- targets ----------------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, ignore_mask: np.ndarray | None, instance_masks: np.ndarray | None,
               output_size: tuple[int, int], stride: int) -> dict[str, np.ndarray]:
        """Targets for one image: keypoints (N, K, 3) in INPUT pixels.

        Returns {"heatmaps": (K, H, W) float32, "mask": (H, W) float32 (1 counted, 0 ignored),
        "joints": (max_people, K, 2) int64}.
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
        return {
            "heatmaps": targets.gaussian_heatmaps(out_kp, size, sigma=self.sigma).astype(np.float32),
            "mask": downsample_ignore_mask(ignore_mask, size, int(stride)),
            "joints": targets.joint_indices(out_kp, size, max_people=self.max_people).astype(np.int64),
        }

    # -- loss -------------------------------------------------------------------------------
    def loss(self, predictions: list[torch.Tensor], targets: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """predictions: list of (B, K + K*D, H, W); targets: batched encode() outputs.
        Returns (total, {"heatmap", "pull", "push"}) weighted and summed over stacks."""
        return ae_loss(predictions, targets, self.num_keypoints, tag_dim=self.tag_dim,
                       heatmap_weight=self.heatmap_weight, pull_weight=self.pull_weight,
                       push_weight=self.push_weight, push_form=self.push_form, sigma=self.push_sigma,
                       pull_form=self.pull_form)

    # -- inference --------------------------------------------------------------------------
    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int = 512,
                        scales=(1.0,), flip: bool = False, multiscale_tags: str = "concat"
                        ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """Run ``model`` at every scale (and mirrored) and fuse onto one grid.

        Every prediction (last stack; mirrored ones flipped back) is resampled onto the output
        grid of the scale-1 input, cropped to the cells covering the image (exactly aligned: the
        padding is cropped, not stretched), then
        :func:`.decode.fuse` averages the heatmaps and concatenates the tags.
        ``multiscale_tags``: "concat" (paper: tags of every scale) or "scale1" (reference
        pose-ae-train: tags of scale 1 only, the scale closest to 1 when 1 is not among them).

        Returns heatmaps (K, H, W) float32, tags (K, H, W, D') float32 (D' = D x entries used),
        the factor f such that image px = grid px * stride / f, and the stride.
        """
        from . import decode
        from ...data.transforms import normalize_image, resize_for_inference

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
        scales = [float(s) for s in np.atleast_1d(np.asarray(scales, dtype=np.float64))]
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
        if int(input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if multiscale_tags not in ("concat", "scale1"):
            raise ValueError(f"multiscale_tags must be 'concat' or 'scale1', got {multiscale_tags!r}")
        multiple = int(getattr(model, "input_multiple", 64))
        stride = int(getattr(model, "stride", 4))
        k, d = self.num_keypoints, self.tag_dim
        device = next(model.parameters()).device
        h0, w0 = img.shape[:2]
        # common grid: the output grid of the scale-1 input
        factor1 = input_size / max(h0, w0)
        nh1, nw1 = max(1, int(round(h0 * factor1))), max(1, int(round(w0 * factor1)))
        # cells covering the image (the padding beyond it is cropped away)
        grid = (-(-nh1 // stride), -(-nw1 // stride))
        heats, tags, owner = [], [], []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for si, s in enumerate(scales):
                    net_img, factor = resize_for_inference(img, max(1, int(round(input_size * s))), multiple)
                    x = torch.from_numpy(normalize_image(net_img))[None].to(device)
                    if flip:
                        x = torch.cat([x, torch.flip(x, dims=[3])], 0)
                    out = model(x)
                    out = out[-1] if isinstance(out, (list, tuple)) else out
                    hm, tg = _head.split_outputs(out.float(), k, d)      # (b, K, h, w), (b, K, h, w, D)
                    hm, tg = hm.cpu(), tg.cpu()
                    ratio = factor / factor1   # grid cell X <-> this output's continuous X * ratio
                    for b in range(hm.shape[0]):
                        hb, tb = hm[b].numpy(), tg[b].numpy()
                        if b == 1:
                            hb, tb = decode.flip_back(hb, tb, self.keypoint_set.flip_index)
                        heats.append(_resample(torch.from_numpy(np.ascontiguousarray(hb)), grid, ratio).numpy())
                        tb = torch.from_numpy(np.ascontiguousarray(tb)).permute(0, 3, 1, 2)
                        tb = _resample(tb.reshape(k * d, *tb.shape[2:]), grid, ratio)
                        tb = tb.reshape(k, d, *grid).permute(0, 2, 3, 1)
                        tags.append(tb.numpy())
                        owner.append(si)
        finally:
            model.train(was_training)
        tag_indices = None
        if multiscale_tags == "scale1":
            best = int(np.argmin([abs(np.log(s)) for s in scales]))
            tag_indices = [i for i, o in enumerate(owner) if o == best]
        heat, tag = decode.fuse(heats, tags, grid, tag_indices=tag_indices)
        return heat, tag, factor1, stride

    TEST_OPTIONS = {"input_size": 512, "scales": (1.0,), "flip": False, "refine": False,
                    "multiscale_tags": "concat"}
    TEST_FLAGS = {
        **Method.TEST_FLAGS,
        "flip": {"type": bool, "help": "flip test: average with the mirrored image"},
        "scales": {"type": float, "nargs": "+", "help": "multi-scale test, e.g. 1 0.5 2"},
        "refine": {"type": bool, "help": "AE: fill missing joints by tag (refinement)"},
        "multiscale_tags": {"type": str, "choices": ["concat", "scale1"],
                            "help": "AE: tags of every scale (paper) or of scale 1 (reference)"},
    }

    def draw_maps(self, model: torch.nn.Module, image: np.ndarray, *, canvas: np.ndarray | None = None,
                  **opts: Any) -> list[np.ndarray]:
        """Heatmaps (max over joints) and tag maps of the last stack, drawn over ``canvas``
        (default: the image)."""
        from ...viz import draw_heatmaps, draw_tags
        hm, tags, _, _ = self.network_outputs(model, image, input_size=int(opts.get("input_size", 512)))
        canvas = image if canvas is None else canvas
        return [draw_heatmaps(canvas, hm), draw_tags(canvas, hm, tags)]

    def predict_true_ids(self, model: torch.nn.Module, image: np.ndarray, keypoints: np.ndarray, **test_opts: Any
                         ) -> tuple[np.ndarray, np.ndarray]:
        """AE's grouping ceiling for one image: the network's heatmaps, decoded with the predicted
        tags replaced by perfect ones (every cell of joint k's tag map carries the id of the true
        person whose joint k is nearest, :func:`posegroup.methods.ae.targets.tag_maps`).

        Args: model, image uint8 (H, W, 3), keypoints (N, K, 3) true people in
        image px, test_opts: ``input_size``, ``scales``, ``flip`` (network side) + decode options.
        Returns (poses (M, K, 3) image px, scores (M,)) like ``self.predict``.
        """
        from . import decode, targets

        net_keys = ("input_size", "scales", "flip")
        net_opts = {k: v for k, v in test_opts.items() if k in net_keys}
        opts = {**self.decode_defaults, **{k: v for k, v in test_opts.items() if k not in net_keys}}
        opts["refine"] = False
        heat, _, factor, stride = self.network_outputs(model, image, **net_opts)
        heat = np.asarray(heat, np.float32)
        kp = np.asarray(keypoints, np.float64).copy()
        kp[..., :2] *= factor / stride                                  # image px -> output grid
        ids = 2.0 * np.arange(len(kp))                                  # ids 2 apart > tag_threshold 1
        true_tags = targets.tag_maps(kp, heat.shape[-2:], person_tags=ids).astype(np.float32)
        poses, scores = decode.group(heat, true_tags, **opts)
        poses = np.asarray(poses, np.float64).reshape(-1, self.num_keypoints, 3)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(poses):
            poses = np.asarray(decode.fill_missing(poses), np.float64).copy()
            poses[..., :2] *= stride / factor
        return poses.astype(np.float32), scores.astype(np.float32)

    def predict(self, model: torch.nn.Module, image: np.ndarray, *, input_size: int | None = None,
                scales=None, flip: bool | None = None, refine: bool | None = None,
                multiscale_tags: str | None = None, **decode_opts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Multi-person poses of one uint8 RGB image (H, W, 3).

        The image is resized so its longer side is ``input_size * scale``, padded right/bottom to
        the model's ``input_multiple``, ImageNet-normalised; the last stack's output is used.
        ``flip`` averages heatmaps with the mirrored image's (tags concatenated); several
        ``scales`` are resampled onto the scale-1 output grid, heatmaps averaged and tags
        concatenated (paper; ``multiscale_tags="scale1"``: the reference's scale-1 tags only).
        ``refine`` and ``decode_opts`` go to :func:`.decode.group`.

        Options left None take the constructor's ``decode_defaults`` value, else
        ``TEST_OPTIONS`` (input_size 512, scales (1.0,), flip False, refine False, "concat").

        Returns poses (N, K, 3) x, y, score in image pixels (missing joints filled by
        :func:`.decode.fill_missing`; positions clipped to the image) and scores (N,).
        """
        from . import decode

        given = {"input_size": input_size, "scales": scales, "flip": flip, "refine": refine,
                 "multiscale_tags": multiscale_tags}
        opts = {**self.TEST_OPTIONS, **self.decode_defaults, **decode_opts}
        opts.update({key: v for key, v in given.items() if v is not None})
        test = {key: opts.pop(key) for key in self.TEST_OPTIONS}
        heat, tag, factor, stride = self.network_outputs(
            model, image, input_size=int(test["input_size"]), scales=test["scales"], flip=bool(test["flip"]),
            multiscale_tags=test["multiscale_tags"])
        poses, scores = decode.group(heat, tag, refine=bool(test["refine"]), **opts)
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, self.num_keypoints, 3)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(poses):
            poses = np.array(decode.fill_missing(poses), dtype=np.float64)
        return grid_to_image(poses, scores, stride, factor, np.asarray(image).shape)


METHOD = AEMethod

__all__ = ["AEMethod", "METHOD", "downsample_ignore_mask"]
