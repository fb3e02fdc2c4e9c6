"""AE head channel layout (SPEC section 1).

Per stack the network predicts ``K + K*D`` maps: the K joint heatmaps first, then the K*D tag
maps, joint-major: channel ``K + k*D + d`` is dimension ``d`` of joint ``k``'s tag (with D = 1,
as in the paper, channel K + k is joint k's tag).

With instance segmentation on (``seg_tag_dim`` E > 0; SPEC section 1, last paragraph) the
stack predicts ``1 + E`` more channels after those: channel ``K + K*D`` is the per-pixel
foreground logit, channels ``K + K*D + 1 + e`` dimension ``e`` of the per-pixel instance tag.
E = 0 (segmentation off) leaves the layout above unchanged.
"""
from __future__ import annotations

import torch

from ..common import channel_groups


def num_channels(num_keypoints: int, tag_dim: int = 1, seg_tag_dim: int = 0) -> int:
    """Prediction channels per stack: K heatmaps + K*D tags [+ 1 foreground + E pixel tags]."""
    if num_keypoints < 1 or tag_dim < 1:
        raise ValueError(f"num_keypoints and tag_dim must be >= 1, got {num_keypoints}, {tag_dim}")
    if seg_tag_dim < 0:
        raise ValueError(f"seg_tag_dim must be >= 0 (0: no segmentation), got {seg_tag_dim}")
    return sum(channel_groups(num_keypoints, tag_dim, seg_tag_dim))


def _batched(pred: torch.Tensor, k: int, d: int, e: int, what: str) -> tuple[torch.Tensor, bool]:
    unbatched = pred.dim() == 3
    if unbatched:
        pred = pred[None]
    if pred.dim() != 4:
        raise ValueError(f"{what} expects (B, C, H, W), got {tuple(pred.shape)}")
    want = num_channels(k, d, e)
    if pred.shape[1] != want:
        seg = f" + 1 + E (E={e})" if e else ""
        raise ValueError(f"{what}: {pred.shape[1]} channels, expected K + K*D{seg} = {want} (K={k}, D={d})")
    return pred, unbatched


def split_outputs(pred: torch.Tensor, num_keypoints: int, tag_dim: int = 1, seg_tag_dim: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose part of one stack's prediction.

    Args:
        pred: (B, C, H, W) (or (C, H, W), unbatched), C = K + K*D [+ 1 + E when seg_tag_dim E > 0].
    Returns:
        heatmaps (B, K, H, W) and tags (B, K, H, W, D) (unbatched: without the B axis).
    """
    k, d = num_keypoints, tag_dim
    pred, unbatched = _batched(pred, k, d, seg_tag_dim, "split_outputs")
    b, _, h, w = pred.shape
    heatmaps = pred[:, :k]
    tags = pred[:, k:k * (1 + d)].reshape(b, k, d, h, w).permute(0, 1, 3, 4, 2)
    if unbatched:
        return heatmaps[0], tags[0]
    return heatmaps, tags


def split_segmentation(pred: torch.Tensor, num_keypoints: int, tag_dim: int, seg_tag_dim: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The segmentation part of one stack's prediction (seg_tag_dim E >= 1).

    Args:
        pred: (B, K + K*D + 1 + E, H, W) (or unbatched (C, H, W)).
    Returns:
        foreground logits (B, H, W) and pixel tags (B, H, W, E) (unbatched: without B).
    """
    if seg_tag_dim < 1:
        raise ValueError(f"split_segmentation needs seg_tag_dim >= 1, got {seg_tag_dim}")
    pred, unbatched = _batched(pred, num_keypoints, tag_dim, seg_tag_dim, "split_segmentation")
    c0 = num_keypoints * (1 + tag_dim)
    fg = pred[:, c0]
    tags = pred[:, c0 + 1:].permute(0, 2, 3, 1)
    if unbatched:
        return fg[0], tags[0]
    return fg, tags


def merge_outputs(heatmaps: torch.Tensor, tags: torch.Tensor, foreground: torch.Tensor | None = None,
                  seg_tags: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`split_outputs` (and :func:`split_segmentation`): heatmaps (B, K, H, W),
    tags (B, K, H, W, D) or (B, K, H, W) (D = 1) [, foreground (B, H, W), seg_tags (B, H, W, E)]
    -> (B, K + K*D [+ 1 + E], H, W)."""
    if tags.dim() == heatmaps.dim():
        tags = tags[..., None]
    if heatmaps.dim() != 4 or tags.dim() != 5 or tags.shape[:4] != heatmaps.shape:
        raise ValueError(f"merge_outputs: heatmaps {tuple(heatmaps.shape)} and tags {tuple(tags.shape)} "
                         "must be (B, K, H, W) and (B, K, H, W, D)")
    b, k, h, w, d = tags.shape
    parts = [heatmaps, tags.permute(0, 1, 4, 2, 3).reshape(b, k * d, h, w)]
    if (foreground is None) != (seg_tags is None):
        raise ValueError("merge_outputs: give both foreground and seg_tags, or neither")
    if foreground is not None:
        if foreground.shape != (b, h, w) or seg_tags.dim() != 4 or seg_tags.shape[:3] != (b, h, w):
            raise ValueError(f"merge_outputs: foreground {tuple(foreground.shape)} and seg_tags "
                             f"{tuple(seg_tags.shape)} must be (B, H, W) and (B, H, W, E) with B, H, W = {(b, h, w)}")
        parts += [foreground[:, None], seg_tags.permute(0, 3, 1, 2)]
    return torch.cat(parts, dim=1)


__all__ = ["num_channels", "channel_groups", "split_outputs", "split_segmentation", "merge_outputs"]


class PoseNetAE(torch.nn.Module):
    """AE on PoseNet's MobileNetV1 (``model.backbone: posenet_mobilenet``): PoseNet's heatmap
    head (its logits through a sigmoid: the AE heatmap loss and decoder read probabilities, as
    they read the hourglass's Gaussian-regressing maps) and a new head on the features for the
    other channels (K*D tags [+ 1 + E segmentation]).

    With ``tag_coords`` (K, D), D >= 2, every joint's tag dimensions 0 and 1 add the cell's x
    and y (:func:`add_tag_coords`).

    ``forward(x (B, 3, S, S))`` (ImageNet-normalised) -> ``[(B, K + C_rest (+ 2K), S/s, S/s)]``,
    one "stack" in :func:`num_channels`' layout, cells at the project's centres (see
    :class:`~posegroup.backbones.posenet.PoseNetBackbone`). ``stride`` / ``input_multiple``: s.
    With ``offsets`` PoseNet's short-range offset head (frozen: no AE loss trains it) adds 2K
    channels last: joint k's (x, y) offset from each cell's centre in input px at 2k, 2k + 1.
    """

    def __init__(self, backbone: torch.nn.Module, rest_channels: int, width: int = 128, *, offsets: bool = False,
                 tag_coords: tuple[int, int] | None = None):
        super().__init__()
        from ..common import feature_head
        self.backbone = backbone
        self.tag_head = feature_head(backbone.feature_channels, rest_channels, width)
        self.stride = self.input_multiple = backbone.stride
        self.tag_coords = tag_coords          # (K, D), D >= 2 (AEMethod validates the options)
        self.offsets = bool(offsets)
        if self.offsets:
            backbone.net.heads["offsets"].requires_grad_(False)
            k = backbone.net.heads["heatmaps"].out_channels
            self.register_buffer("offset_index", torch.tensor([c for j in range(k) for c in (k + j, j)]),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.backbone(x)
        rest = self.tag_head(out["features"])
        if self.tag_coords is not None:
            rest = add_tag_coords(rest, *self.tag_coords)
        maps = [torch.sigmoid(out["heatmaps"]), rest]
        if self.offsets:
            maps.append(out["offsets"].index_select(1, self.offset_index))
        return [torch.cat(maps, 1)]


def add_tag_coords(rest: torch.Tensor, num_keypoints: int, tag_dim: int) -> torch.Tensor:
    """Spatial tags (Neven et al. 2019's spatial embeddings; not in the AE paper): each joint's
    tag dimensions 0 and 1 add the cell's column x and row y, in cells, so the head's output
    there is a displacement and a person's joints agree when each points at one place of the
    person, whatever the features know of who is who.

    Args:
        rest: (B, C, H, W), C >= K*D, joint k's tag dimension d at channel k*D + d (the tag part
            of :func:`num_channels`' layout without the K heatmaps); channels past K*D unchanged.
    Returns: (B, C, H, W).
    """
    b, c, h, w = rest.shape
    k, d = num_keypoints, tag_dim
    ys = torch.arange(h, device=rest.device, dtype=rest.dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, device=rest.device, dtype=rest.dtype).view(1, w).expand(h, w)
    per_joint = torch.cat([torch.stack([xs, ys]), rest.new_zeros(d - 2, h, w)])          # (D, H, W)
    coords = torch.cat([per_joint.repeat(k, 1, 1), rest.new_zeros(c - k * d, h, w)])     # (C, H, W)
    return rest + coords[None]
