"""AE head channel layout (SPEC section 1).

Per stack the network predicts ``K + K*D`` maps: the K joint heatmaps first, then the K*D tag
maps, joint-major: channel ``K + k*D + d`` is dimension ``d`` of joint ``k``'s tag (with D = 1,
as in the paper, channel K + k is joint k's tag).
"""
from __future__ import annotations

import torch


def num_channels(num_keypoints: int, tag_dim: int = 1) -> int:
    """Prediction channels per stack: K heatmaps + K*D tags."""
    if num_keypoints < 1 or tag_dim < 1:
        raise ValueError(f"num_keypoints and tag_dim must be >= 1, got {num_keypoints}, {tag_dim}")
    return num_keypoints * (1 + tag_dim)


def split_outputs(pred: torch.Tensor, num_keypoints: int, tag_dim: int = 1
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split one stack's prediction.

    Args:
        pred: (B, K + K*D, H, W) (or (K + K*D, H, W), unbatched).
    Returns:
        heatmaps (B, K, H, W) and tags (B, K, H, W, D) (unbatched: without the B axis).
    """
    unbatched = pred.dim() == 3
    if unbatched:
        pred = pred[None]
    if pred.dim() != 4:
        raise ValueError(f"split_outputs expects (B, C, H, W), got {tuple(pred.shape)}")
    k, d = num_keypoints, tag_dim
    if pred.shape[1] != num_channels(k, d):
        raise ValueError(f"split_outputs: {pred.shape[1]} channels, expected K + K*D = {num_channels(k, d)} "
                         f"(K={k}, D={d})")
    b, _, h, w = pred.shape
    heatmaps = pred[:, :k]
    tags = pred[:, k:].reshape(b, k, d, h, w).permute(0, 1, 3, 4, 2)
    if unbatched:
        return heatmaps[0], tags[0]
    return heatmaps, tags


def merge_outputs(heatmaps: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_outputs`: heatmaps (B, K, H, W), tags (B, K, H, W, D) or
    (B, K, H, W) (D = 1) -> (B, K + K*D, H, W)."""
    if tags.dim() == heatmaps.dim():
        tags = tags[..., None]
    if heatmaps.dim() != 4 or tags.dim() != 5 or tags.shape[:4] != heatmaps.shape:
        raise ValueError(f"merge_outputs: heatmaps {tuple(heatmaps.shape)} and tags {tuple(tags.shape)} "
                         "must be (B, K, H, W) and (B, K, H, W, D)")
    b, k, h, w, d = tags.shape
    return torch.cat([heatmaps, tags.permute(0, 1, 4, 2, 3).reshape(b, k * d, h, w)], dim=1)


__all__ = ["num_channels", "split_outputs", "merge_outputs"]
