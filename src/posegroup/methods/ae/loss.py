"""Associative Embedding losses (SPEC section 1; Newell et al. 2017).

Heatmap loss: masked mean squared error. Grouping (tag) loss for one image with N people,
person n with labelled joints k in K_n and tags h_k(x):

- reference tag   h̄_n = 1/|K_n| Σ_{k∈K_n} h_k(x_nk)
- pull            = 1/N Σ_n 1/|K_n| Σ_{k∈K_n} ‖h̄_n − h_k(x_nk)‖²
- push (paper)    = 1/N² Σ_n Σ_{n'≠n} exp(−‖h̄_n − h̄_n'‖² / (2σ²)),  σ = 1
- push (reference code, princeton-vl/pose-ae-train ``singleTagLoss``)
                  = ½ · 1/(N(N−1)) Σ_n Σ_{n'≠n} exp(−‖h̄_n − h̄_n'‖²)
  (the code sums exp(−d²) over all ordered pairs, subtracts the N diagonal ones, divides by
  N(N−1) and halves.)
- push (hinge)    = 1/(N(N−1)) Σ_n Σ_{n'≠n} max(0, σ − ‖h̄_n − h̄_n'‖)   (CornerNet's margin form,
  Law & Deng 2018, margin Δ = σ; not in the AE paper). Its gradient does not vanish where two
  people's tags coincide, unlike exp(−d²) whose slope is 0 at d = 0, so tags that start (or
  fall) together are still pushed apart.

Images with fewer than two people have push 0, images without people pull 0. Everything is
vectorised over the batch and the people (no Python loop).

Instance segmentation (SPEC section 1, last paragraph; option ``segmentation`` of the method):
per-pixel tags h(x) (dimension E), S_n the pixels sampled in instance n (at most S per instance,
``targets.sample_instance_pixels``), per image

- pixel pull = Σ_n Σ_{x∈S_n} Σ_{x'∈S_n} ‖h(x) − h(x')‖²   (= Σ_n 2|S_n| Σ_{x∈S_n} ‖h(x) − h̄_n‖²)
- pixel push = Σ_n Σ_{n'≠n} Σ_{x∈S_n} Σ_{x'∈S_n'} exp(−‖h(x) − h(x')‖² / (2σ²))
- foreground = binary cross-entropy of the foreground logit against the instance-mask union,
  averaged over the counted (non-ignored) pixels.

These are sums, exactly as written (not normalised by |S_n| or N): the config's weights carry
the scale (see the bundled config ``ae_seg_tiny_synthetic``). Averaged over the images of the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .head import split_outputs, split_segmentation

PUSH_FORMS = ("paper", "reference", "hinge")
HEATMAP_FORMS = ("mse", "weight_adaptive")
PULL_FORMS = ("paper", "reference")


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                 *, weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Masked heatmap MSE, as the reference code computes it.

    Args:
        pred, target: (B, K, H, W).
        mask: (B, H, W), 1 = counted, 0 = ignored (None: all counted).
        weight: (B, K, H, W) per-cell weights (None: 1; e.g. :func:`.targets.occlusion_weights`).
        reduction: "mean" (over the batch) or "none" (per image, (B,)).
    Returns: per image the mean over joints and *all* pixels of mask · weight · (pred − target)²
    (ignored pixels count in the denominator with 0 error, as in the reference ``HeatmapLoss``),
    averaged over the batch.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"heatmap_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both "
                         "be (B, K, H, W)")
    err = (pred - target.to(pred.dtype)) ** 2
    if mask is not None:
        if mask.shape != (pred.shape[0],) + tuple(pred.shape[2:]):
            raise ValueError(f"heatmap_loss: mask {tuple(mask.shape)} must be (B, H, W) = "
                             f"{(pred.shape[0],) + tuple(pred.shape[2:])}")
        err = err * mask.to(pred.dtype)[:, None]
    if weight is not None:
        if weight.shape != pred.shape:
            raise ValueError(f"heatmap_loss: weight {tuple(weight.shape)} must be (B, K, H, W) = {tuple(pred.shape)}")
        err = err * weight.to(pred.dtype)
    per_image = err.flatten(1).mean(1)
    return _reduce(per_image, reduction)


def adaptive_weights(pred: torch.Tensor, target: torch.Tensor, gamma: float = 0.01) -> torch.Tensor:
    """Per-cell weights of the weight-adaptive heatmap regression (SWAHR: Luo et al., CVPR 2021,
    "Rethinking the Heatmap Regression for Bottom-up Human Pose Estimation"):
    w = |1 − p|·g^γ + |p|·(1 − g^γ). Near a joint (g^γ ≈ 1 wherever the target is not ~0) a cell
    counts by how far the prediction is below 1, elsewhere by how far it is above 0, so the many
    background cells already near 0 stop dominating the mean. Not detached (the gradient also
    flows through w, as in the authors' code). γ: 0.01 in their code.

    Args:
        pred, target: (B, K, H, W).
    Returns: (B, K, H, W) weights for :func:`heatmap_loss`.
    """
    if gamma <= 0:
        raise ValueError(f"adaptive_weights: gamma must be > 0, got {gamma}")
    g = target.to(pred.dtype).clamp(min=0) ** gamma
    return (1 - pred).abs() * g + pred.abs() * (1 - g)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}; choose 'mean' or 'none'")


def _flat_tags(tags: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """(B, K, H, W, D) | (B, K, H, W) | (B, K*H*W, D) -> (B, K*H*W, D)."""
    if tags.dim() == 5:
        return tags.reshape(tags.shape[0], -1, tags.shape[-1])
    if tags.dim() == 4:
        return tags.reshape(tags.shape[0], -1, 1)
    if tags.dim() == 3:
        return tags
    raise ValueError(f"tags must be (B, K, H, W, D), (B, K, H, W) or (B, K*H*W, D), got {tuple(tags.shape)}")


def grouping_loss(tags: torch.Tensor, joints: torch.Tensor, *, push_form: str = "paper", sigma: float = 1.0,
                  pull_form: str = "paper", window: int = 0, reduction: str = "mean"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """AE grouping loss (pull, push).

    Args:
        tags: (B, K, H, W, D), (B, K, H, W) (D = 1) or flattened (B, K*H*W, D).
        joints: (B, M, K, 2) integer: [flat index k·H·W + y·W + x, valid > 0] per person slot and
            joint (``targets.joint_indices``); slots with no valid joint are empty.
        push_form: "paper" (1/N² Σ_{n≠n'} exp(−d²/(2σ²)), default), "reference"
            (½ mean over ordered pairs n≠n' of exp(−d²), the reference code) or "hinge"
            (mean over ordered pairs n≠n' of max(0, σ − d)).
        sigma: σ of the paper's push (1 in the paper), the hinge's margin; unused by the reference form.
        pull_form: "paper" (squared Euclidean distance to h̄_n, default) or "reference" (the code's
            ``torch.mean`` also averages over the D tag dimensions). Equal when D = 1.
        window: r >= 0 cells. 0 is the paper (the pull reads each joint's own cell). r > 0: each
            joint's pull term is the mean over the (2r+1)² cells around it that lie on the grid
            (:func:`window_tags`), so a peak one cell off still reads its person's tag; h̄_n
            and the push stay at the joints' own cells. Needs tags with their grid,
            (B, K, H, W[, D]).
        reduction: "mean" over the batch or "none" ((B,) each).
    Returns: (pull, push).
    """
    if push_form not in PUSH_FORMS:
        raise ValueError(f"unknown push_form {push_form!r}; choose one of {PUSH_FORMS}")
    if pull_form not in PULL_FORMS:
        raise ValueError(f"unknown pull_form {pull_form!r}; choose one of {PULL_FORMS}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    flat = _flat_tags(tags)
    b, n_pix, d = flat.shape
    if joints.dim() != 4 or joints.shape[0] != b or joints.shape[-1] != 2:
        raise ValueError(f"joints must be (B={b}, M, K, 2), got {tuple(joints.shape)}")
    joints = joints.to(device=flat.device, dtype=torch.long)
    _, m, k, _ = joints.shape
    valid = joints[..., 1] > 0                                   # (B, M, K)
    idx = torch.where(valid, joints[..., 0], torch.zeros_like(joints[..., 0]))
    if valid.any() and (idx[valid].min() < 0 or idx[valid].max() >= n_pix):
        raise ValueError(f"joint indices out of range [0, {n_pix}) for tags of shape {tuple(tags.shape)}")
    h = torch.gather(flat, 1, idx.reshape(b, m * k, 1).expand(-1, -1, d)).reshape(b, m, k, d)
    v = valid.to(flat.dtype)                                     # (B, M, K)
    count = v.sum(2)                                             # |K_n|, (B, M)
    present = count > 0                                          # (B, M)
    n_people = present.sum(1).to(flat.dtype)                     # N, (B,)
    mean = (h * v[..., None]).sum(2) / count.clamp(min=1)[..., None]  # h̄_n, (B, M, D)

    if window:
        hw, inside = window_tags(tags, idx, window)                # (B, M, K, P, D), (B, M, K, P)
        inside = inside.to(flat.dtype)
        sq = (((hw - mean[:, :, None, None]) ** 2).sum(-1) * inside).sum(-1) / inside.sum(-1)
    else:
        sq = ((h - mean[:, :, None]) ** 2).sum(-1)               # (B, M, K)
    if pull_form == "reference":
        sq = sq / d
    pull_n = (sq * v).sum(2) / count.clamp(min=1)                # (B, M), 0 for empty slots
    pull = pull_n.sum(1) / n_people.clamp(min=1)

    d2 = ((mean[:, :, None] - mean[:, None]) ** 2).sum(-1)       # (B, M, M)
    pair = present[:, :, None] & present[:, None] & ~torch.eye(m, dtype=torch.bool, device=flat.device)
    if push_form == "paper":
        e = torch.exp(-d2 / (2.0 * sigma ** 2))
        norm = n_people ** 2
    elif push_form == "hinge":
        # d = sqrt(d² + 1e-12): finite slope where two means coincide (sqrt's is infinite at 0)
        e = torch.clamp(sigma - torch.sqrt(d2 + 1e-12), min=0)
        norm = n_people * (n_people - 1)
    else:
        e = 0.5 * torch.exp(-d2)
        norm = n_people * (n_people - 1)
    push = (e * pair.to(flat.dtype)).sum((1, 2)) / norm.clamp(min=1)
    return _reduce(pull, reduction), _reduce(push, reduction)


def window_tags(tags: torch.Tensor, idx: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tags of the (2r+1)² cells around each joint (r = ``window``).

    Args:
        tags: (B, K, H, W, D) or (B, K, H, W) (D = 1).
        idx: (B, M, K) flat indices k·H·W + y·W + x of the joints (any value where unused).
    Returns: (tags (B, M, K, P, D), inside (B, M, K, P) bool: the cell lies on the grid), P = (2r+1)²,
    cells ordered row by row from (−r, −r); cells off the grid read the joint's own cell.
    """
    if tags.dim() not in (4, 5):
        raise ValueError(f"grouping_loss: window > 0 needs tags (B, K, H, W[, D]), got {tuple(tags.shape)}")
    if window < 0:
        raise ValueError(f"grouping_loss: window must be >= 0, got {window}")
    b, _, h, w = tags.shape[:4]
    flat = _flat_tags(tags)
    d = flat.shape[-1]
    k_, rest = idx // (h * w), idx % (h * w)
    y, x = rest // w, rest % w
    steps = torch.arange(-window, window + 1, device=idx.device)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    ny, nx = y[..., None] + dy.reshape(-1), x[..., None] + dx.reshape(-1)      # (B, M, K, P)
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    cell = torch.where(inside, k_[..., None] * h * w + ny * w + nx, idx[..., None])
    m, k, p = idx.shape[1], idx.shape[2], cell.shape[-1]
    out = torch.gather(flat, 1, cell.reshape(b, m * k * p, 1).expand(-1, -1, d)).reshape(b, m, k, p, d)
    return out, inside


def pixel_grouping_loss(seg_tags: torch.Tensor, pixels: torch.Tensor, *, sigma: float = 1.0,
                        reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's instance-segmentation grouping loss on sampled pixels (pull, push).

    Args:
        seg_tags: (B, H, W, E) pixel tags (or (B, H, W), E = 1).
        pixels: (B, M, S, 2) integer [flat index y·W + x, valid > 0] of the pixels sampled per
            person slot (``targets.sample_instance_pixels``).
        sigma: σ of the push (paper: 1).
        reduction: "mean" over the batch or "none" ((B,) each).
    Returns: (pull, push) as in the module docstring (sums over people and pixel pairs).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    tags = seg_tags[..., None] if seg_tags.dim() == 3 else seg_tags
    if tags.dim() != 4:
        raise ValueError(f"seg_tags must be (B, H, W, E) or (B, H, W), got {tuple(seg_tags.shape)}")
    b, h, w, e = tags.shape
    if pixels.dim() != 4 or pixels.shape[0] != b or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must be (B={b}, M, S, 2), got {tuple(pixels.shape)}")
    pixels = pixels.to(device=tags.device, dtype=torch.long)
    valid = pixels[..., 1] > 0                                             # (B, M, S)
    present = valid.any(2).any(0).nonzero()
    m = int(present.max()) + 1 if len(present) else 0                      # slots in use
    if m == 0:
        zero = tags.sum() * 0.0
        return _reduce(zero.expand(b), reduction), _reduce(zero.expand(b), reduction)
    valid = valid[:, :m]
    s = valid.shape[2]
    idx = torch.where(valid, pixels[:, :m, :, 0], torch.zeros_like(pixels[:, :m, :, 0]))
    if valid.any() and (idx[valid].min() < 0 or idx[valid].max() >= h * w):
        raise ValueError(f"pixel indices out of range [0, {h * w}) for seg_tags of shape {tuple(tags.shape)}")
    flat = tags.reshape(b, h * w, e)
    hx = torch.gather(flat, 1, idx.reshape(b, m * s, 1).expand(-1, -1, e)).reshape(b, m, s, e)
    v = valid.to(tags.dtype)
    count = v.sum(2)                                                       # |S_n|, (B, M)
    mean = (hx * v[..., None]).sum(2) / count.clamp(min=1)[..., None]      # h̄_n, (B, M, E)
    spread = (((hx - mean[:, :, None]) ** 2).sum(-1) * v).sum(2)           # Σ_x ‖h(x) − h̄_n‖²
    pull = (2.0 * count * spread).sum(1)                                   # (B,)

    pts = hx.reshape(b, m * s, e)
    who = torch.arange(m, device=tags.device).repeat_interleave(s)         # slot of each sample
    d2 = ((pts[:, :, None] - pts[:, None]) ** 2).sum(-1)                   # (B, M·S, M·S)
    vv = v.reshape(b, m * s)
    pair = vv[:, :, None] * vv[:, None] * (who[:, None] != who[None, :]).to(tags.dtype)
    push = (torch.exp(-d2 / (2.0 * sigma ** 2)) * pair).sum((1, 2))
    return _reduce(pull, reduction), _reduce(push, reduction)


def foreground_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                    *, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of foreground logits (B, H, W) against target (B, H, W) in {0, 1},
    averaged per image over the counted pixels of ``mask`` (B, H, W) (1 counted, 0 ignored;
    None: all), then over the batch ("mean") or not ("none", (B,))."""
    if logits.shape != target.shape or logits.dim() != 3:
        raise ValueError(f"foreground_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                         "must both be (B, H, W)")
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    wgt = torch.ones_like(bce) if mask is None else mask.to(logits.dtype)
    if wgt.shape != bce.shape:
        raise ValueError(f"foreground_loss: mask {tuple(mask.shape)} must be (B, H, W) = {tuple(bce.shape)}")
    per_image = (bce * wgt).flatten(1).sum(1) / wgt.flatten(1).sum(1).clamp(min=1.0)
    return _reduce(per_image, reduction)


def segmentation_loss(pred: torch.Tensor, targets: dict, num_keypoints: int, tag_dim: int, seg_tag_dim: int, *,
                      foreground_weight: float, pull_weight: float, push_weight: float, sigma: float
                      ) -> dict[str, torch.Tensor]:
    """Weighted segmentation terms of one stack: {"foreground", "seg_pull", "seg_push"}.
    pred (B, K + K*D + 1 + E, H, W); targets "foreground" (B, H, W), "seg_pixels" (B, M, S, 2),
    "mask" (B, H, W) optional."""
    for key in ("foreground", "seg_pixels"):
        if key not in targets:
            raise ValueError(f"ae_loss: segmentation is on but targets lack {key!r} (have {sorted(targets)})")
    logits, tags = split_segmentation(pred, num_keypoints, tag_dim, seg_tag_dim)
    pull, push = pixel_grouping_loss(tags, targets["seg_pixels"], sigma=sigma)
    return {"foreground": foreground_weight * foreground_loss(logits, targets["foreground"], targets.get("mask")),
            "seg_pull": pull_weight * pull, "seg_push": push_weight * push}


def ae_loss(predictions: "list[torch.Tensor] | torch.Tensor", targets: dict, num_keypoints: int, *,
            tag_dim: int = 1, heatmap_weight: float = 1.0, pull_weight: float = 1e-3,
            push_weight: float = 1e-3, push_form: str = "paper", sigma: float = 1.0,
            pull_form: str = "paper", tag_window: int = 0, heatmap_form: str = "mse", heatmap_gamma: float = 0.01,
            seg_tag_dim: int = 0,
            segmentation_weights: dict | None = None, seg_sigma: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Total AE loss summed over stacks (intermediate supervision).

    Args:
        predictions: list of (B, K + K*D, H, W), one per stack (or one tensor).
        targets: "heatmaps" (B, K, H, W), "mask" (B, H, W) (1 counted, 0 ignored; optional),
            "heatmap_weights" (B, K, H, W) (optional, see :func:`heatmap_loss`),
            "joints" (B, M, K, 2) int64.
        heatmap_weight, pull_weight, push_weight: reference code weights 1, 1e-3, 1e-3.
        push_form, sigma, pull_form: see :func:`grouping_loss`; tag_window: its ``window``.
        heatmap_form: "mse" (the paper) or "weight_adaptive" (cells weighted by
            :func:`adaptive_weights` with γ = ``heatmap_gamma``, on top of "heatmap_weights").
        seg_tag_dim: E > 0 adds the segmentation terms (:func:`segmentation_loss`; targets
            "foreground" (B, H, W) and "seg_pixels" (B, M, S, 2)) with ``segmentation_weights``
            {"foreground", "pull", "push"} and push σ ``seg_sigma``.
    Returns: (total, {"heatmap", "pull", "push"[, "foreground", "seg_pull", "seg_push"]}) with the
    *weighted* terms summed over stacks (total = their sum), as Python floats.
    """
    if isinstance(predictions, torch.Tensor):
        predictions = [predictions]
    if len(predictions) == 0:
        raise ValueError("ae_loss: no predictions")
    if heatmap_form not in HEATMAP_FORMS:
        raise ValueError(f"unknown heatmap_form {heatmap_form!r}; choose one of {HEATMAP_FORMS}")
    for key in ("heatmaps", "joints"):
        if key not in targets:
            raise ValueError(f"ae_loss: targets lack {key!r} (have {sorted(targets)})")
    gt, mask, joints = targets["heatmaps"], targets.get("mask"), targets["joints"]
    total = predictions[0].new_zeros(())
    parts = {"heatmap": 0.0, "pull": 0.0, "push": 0.0}
    for pred in predictions:
        heat, tags = split_outputs(pred, num_keypoints, tag_dim, seg_tag_dim)
        weight = targets.get("heatmap_weights")
        if heatmap_form == "weight_adaptive":
            adaptive = adaptive_weights(heat, gt, heatmap_gamma)
            weight = adaptive if weight is None else adaptive * weight.to(adaptive.dtype)
        lh = heatmap_weight * heatmap_loss(heat, gt, mask, weight=weight)
        pull, push = grouping_loss(tags, joints, push_form=push_form, sigma=sigma, pull_form=pull_form,
                                   window=tag_window)
        pull, push = pull_weight * pull, push_weight * push
        terms = {"heatmap": lh, "pull": pull, "push": push}
        if seg_tag_dim:
            sw = segmentation_weights or {}
            terms.update(segmentation_loss(pred, targets, num_keypoints, tag_dim, seg_tag_dim,
                                           foreground_weight=sw.get("foreground", 1.0), sigma=seg_sigma,
                                           pull_weight=sw.get("pull", 1.0), push_weight=sw.get("push", 1.0)))
        for name, value in terms.items():
            total = total + value
            parts[name] = parts.get(name, 0.0) + float(value.detach())
    return total, parts


__all__ = ["heatmap_loss", "adaptive_weights", "grouping_loss", "window_tags", "pixel_grouping_loss", "foreground_loss", "segmentation_loss",
           "ae_loss", "PUSH_FORMS", "PULL_FORMS", "HEATMAP_FORMS"]
