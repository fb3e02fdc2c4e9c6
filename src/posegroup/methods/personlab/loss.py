"""PersonLab losses (SPEC section 2).

- heatmaps and segmentation: average logistic (binary cross-entropy with logits) loss over the
  valid cells;
- short, mid and long offsets: L1 (|dx| + |dy|) divided by R, averaged over the cells where the
  target is defined (short: keypoint disks; mid: the *source* disk; long: instance pixels);
- weights (reference code): heatmap 4, segmentation 2, short 1, mid 0.25, long 0.125;
- the total is summed over the hourglass stacks (intermediate supervision).
Averages are over the whole batch (sum of weighted terms / sum of weights).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import head as head_mod

#: SPEC section 2 / reference code loss weights.
LOSS_WEIGHTS = {"heatmap": 4.0, "segmentation": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}


def logistic_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Average logistic loss: sum(w * BCE(logits, target)) / max(sum(w), 1). Any equal shapes
    (weight broadcastable)."""
    weight = torch.broadcast_to(weight, logits.shape).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)


def offset_l1_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, radius: float
                   ) -> torch.Tensor:
    """L1 offset loss / R.

    pred, target: (B, F, H, W, 2) (x, y) offsets in input pixels; weight (B, F, H, W).
    Returns sum(w * (|dx| + |dy|)) / R / max(sum(w), 1).
    """
    w = weight.to(pred.dtype)
    l1 = (pred - target.to(pred.dtype)).abs().sum(dim=-1)
    return (l1 * w).sum() / radius / w.sum().clamp_min(1.0)


def personlab_loss(predictions: list[torch.Tensor], targets: dict[str, torch.Tensor], *,
                   num_keypoints: int, num_edges: int, radius: float = 32.0,
                   weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted PersonLab loss summed over stacks.

    Args:
        predictions: one (B, C, H, W) tensor per stack (layout of :mod:`.head`, offsets in
            units of R).
        targets: batched :func:`.targets.encode` output (heatmaps (B, K, H, W),
            short_offsets (B, K, H, W, 2), mid_offsets (B, E, H, W, 2), long_offsets
            (B, K, H, W, 2), segmentation (B, H, W), valid_mask (B, H, W), short/mid/long
            weights).
        radius: R in input pixels (offset scale and L1 normaliser).
        weights: loss weights, default :data:`LOSS_WEIGHTS`.
    Returns: (total loss tensor, {term: float summed over stacks, "total": float}).
    """
    lw = dict(LOSS_WEIGHTS if weights is None else weights)
    valid = targets["valid_mask"]
    total = predictions[0].new_zeros(())
    logs = {name: 0.0 for name in ("heatmap", "segmentation", "short", "mid", "long")}
    for pred in predictions:
        heads = head_mod.split(pred, num_keypoints, num_edges, offset_scale=radius)
        terms = {
            "heatmap": logistic_loss(heads["heatmaps"], targets["heatmaps"], valid[:, None]),
            "segmentation": logistic_loss(heads["segmentation"], targets["segmentation"], valid),
            "short": offset_l1_loss(heads["short_offsets"].movedim(2, -1), targets["short_offsets"],
                                    targets["short_weights"], radius),
            "mid": offset_l1_loss(heads["mid_offsets"].movedim(2, -1), targets["mid_offsets"],
                                  targets["mid_weights"], radius),
            "long": offset_l1_loss(heads["long_offsets"].movedim(2, -1), targets["long_offsets"],
                                   targets["long_weights"], radius),
        }
        for name, value in terms.items():
            total = total + lw[name] * value
            logs[name] += float(value.detach())
    logs["total"] = float(total.detach())
    return total, logs
