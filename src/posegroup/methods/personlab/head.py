"""PersonLab head channel layout.

Per stack, C = K + 2K + 2E + 2K + 1 channels, in this order:
``[K heatmap logits | 2K short | 2E mid | 2K long | 1 segmentation logit]``.
Each offset block is per field (x, y) interleaved: channel ``2 f`` is field f's x, ``2 f + 1``
its y. Offset channels are in units of the disk radius R (the network regresses
``offset / R``), which keeps their scale near 1; :func:`split` multiplies by ``offset_scale``
to return input pixels.
"""
from __future__ import annotations

import numpy as np
import torch


def num_channels(num_keypoints: int, num_edges: int) -> int:
    """C = K + 2K + 2E + 2K + 1."""
    return sum(channel_groups(num_keypoints, num_edges))


def channel_groups(num_keypoints: int, num_edges: int) -> list[int]:
    """The prediction's kinds of output, in channel order: [K heatmaps, 2K short offsets, 2E mid
    offsets, 2K long offsets, 1 segmentation]."""
    return [num_keypoints, 2 * num_keypoints, 2 * num_edges, 2 * num_keypoints, 1]


def _bounds(k: int, e: int) -> list[int]:
    return list(np.cumsum([0] + channel_groups(k, e)))


def split(pred, num_keypoints: int, num_edges: int, offset_scale: float = 1.0) -> dict:
    """Split a (B, C, H, W) prediction (torch tensor or numpy array) into named heads.

    Returns ``heatmaps`` (B, K, H, W) logits, ``short_offsets`` (B, K, 2, H, W),
    ``mid_offsets`` (B, E, 2, H, W), ``long_offsets`` (B, K, 2, H, W) (offsets times
    ``offset_scale``) and ``segmentation`` (B, H, W) logits. Views where possible.
    """
    k, e = num_keypoints, num_edges
    if pred.shape[1] != num_channels(k, e):
        raise ValueError(f"PersonLab head: expected {num_channels(k, e)} channels for K={k}, E={e}, "
                         f"got {pred.shape[1]}")
    b = _bounds(k, e)
    bsz, _, h, w = pred.shape
    return {
        "heatmaps": pred[:, b[0]:b[1]],
        "short_offsets": pred[:, b[1]:b[2]].reshape(bsz, k, 2, h, w) * offset_scale,
        "mid_offsets": pred[:, b[2]:b[3]].reshape(bsz, e, 2, h, w) * offset_scale,
        "long_offsets": pred[:, b[3]:b[4]].reshape(bsz, k, 2, h, w) * offset_scale,
        "segmentation": pred[:, b[4]],
    }


def merge(heatmaps, short_offsets, mid_offsets, long_offsets, segmentation, offset_scale: float = 1.0):
    """Inverse of :func:`split` (same shapes, batched); returns (B, C, H, W) of the input's type."""
    bsz, k, h, w = heatmaps.shape
    e = mid_offsets.shape[1]
    parts = [heatmaps, short_offsets.reshape(bsz, 2 * k, h, w) / offset_scale,
             mid_offsets.reshape(bsz, 2 * e, h, w) / offset_scale,
             long_offsets.reshape(bsz, 2 * k, h, w) / offset_scale, segmentation.reshape(bsz, 1, h, w)]
    if isinstance(heatmaps, torch.Tensor):
        return torch.cat(parts, dim=1)
    return np.concatenate(parts, axis=1)


def to_decoder_layout(heads: dict, index: int = 0) -> dict[str, np.ndarray]:
    """One image of :func:`split`'s output as float32 numpy in the decoder's layout:
    heatmaps (K, H, W) *probabilities* (sigmoid), short (K, H, W, 2), mid (E, H, W, 2),
    long (K, H, W, 2), segmentation (H, W) probability."""
    def np_(t):
        if isinstance(t, torch.Tensor):
            t = t.detach().float().cpu().numpy()
        return np.asarray(t, dtype=np.float32)

    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    return {
        "heatmaps": sig(np_(heads["heatmaps"][index])),
        "short_offsets": np.moveaxis(np_(heads["short_offsets"][index]), 1, -1),
        "mid_offsets": np.moveaxis(np_(heads["mid_offsets"][index]), 1, -1),
        "long_offsets": np.moveaxis(np_(heads["long_offsets"][index]), 1, -1),
        "segmentation": sig(np_(heads["segmentation"][index])),
    }


def swap_sides(maps: dict, flip_index, edges) -> dict[str, np.ndarray]:
    """The maps of a horizontally mirrored image's pass, already flipped back along W (as
    :func:`~posegroup.methods.common.network_passes` returns them), made the un-mirrored
    image's: the network labels a mirrored person's left joints as right ones, so joint k is
    channel ``flip_index[k]``, edge (a, b) the edge (flip_index[a], flip_index[b]), and every x
    offset is negated. Exact for cell-centred grids (cell i at ``(i + 1/2) stride``) whose padded
    input is mirrored whole.

    Args:
        maps: :func:`to_decoder_layout` of the pass: heatmaps (K, H, W), short_offsets
            (K, H, W, 2), mid_offsets (E, H, W, 2), long_offsets (K, H, W, 2), segmentation (H, W).
        flip_index: (K,) the left/right partner of each joint (``KeypointSet.flip_index``).
        edges: the E directed (a, b) edges of the mid-range channels; mirrored into each other.
    Returns the same keys and shapes; a ValueError names an edge whose mirror is not an edge.
    """
    fi = np.asarray(flip_index, dtype=np.int64)
    where = {tuple(map(int, ab)): i for i, ab in enumerate(edges)}
    missing = [ab for ab in where if (int(fi[ab[0]]), int(fi[ab[1]])) not in where]
    if missing:
        raise ValueError(f"flip test: the mirror of edge {missing[0]} is not among the mid-range edges")
    edge_index = np.array([where[(int(fi[a]), int(fi[b]))] for a, b in where], dtype=np.int64)
    sign = np.array([-1.0, 1.0], np.float32)

    def swap(a, index=None, vector=False):
        a = np.asarray(a, np.float32)
        if index is not None:
            a = a[index]
        return np.ascontiguousarray(a * sign if vector else a)

    return {"heatmaps": swap(maps["heatmaps"], fi), "short_offsets": swap(maps["short_offsets"], fi, True),
            "mid_offsets": swap(maps["mid_offsets"], edge_index, True),
            "long_offsets": swap(maps["long_offsets"], fi, True), "segmentation": swap(maps["segmentation"])}


def posenet_channel_index(num_keypoints: int, num_edges: int) -> tuple[list[int], list[int]]:
    """Where the short and mid-range channels of :func:`split`'s layout come from in PoseNet's:
    ``(short, mid)``: short[2k] = x of keypoint k = PoseNet offset channel K + k, short[2k + 1]
    = its y = channel k; mid (directed edge f: the E forward edges, then the E backward ones)
    indexes ``cat(displacement_fwd, displacement_bwd)`` (each E y channels, then E x)."""
    k, e = num_keypoints, num_edges
    short = [c for j in range(k) for c in (k + j, j)]
    mid = [c for f in range(2 * e) for c in ((f // e) * 2 * e + e + f % e, (f // e) * 2 * e + f % e)]
    return short, mid


class PoseNetPersonLab(torch.nn.Module):
    """PersonLab on PoseNet's MobileNetV1 (``model.backbone: posenet_mobilenet``): PoseNet's own
    heatmap (logits), short-range and mid-range heads -- fine-tuned, their channels reordered
    into this module's layout and divided by R (:func:`posenet_channel_index`) -- plus a new head
    on the features for the 2K long-range offsets and the segmentation logit.

    ``forward(x (B, 3, S, S))`` (ImageNet-normalised) -> ``[(B, C, S/s, S/s)]``, one "stack" in
    :func:`split`'s layout (C = :func:`num_channels`), cells at the project's centres (see
    :class:`~posegroup.backbones.posenet.PoseNetBackbone`). PoseNet's mid-range fields follow
    its 16 COCO tree edges, which must be the method's (``directed_edges`` of COCO-17).
    """

    def __init__(self, backbone: torch.nn.Module, num_keypoints: int, num_edges: int, radius: float,
                 width: int = 128):
        super().__init__()
        from ..common import feature_head
        self.backbone = backbone
        self.radius = float(radius)
        self.new_head = feature_head(backbone.feature_channels, 2 * num_keypoints + 1, width)
        short, mid = posenet_channel_index(num_keypoints, num_edges // 2)
        self.register_buffer("short_index", torch.tensor(short), persistent=False)
        self.register_buffer("mid_index", torch.tensor(mid), persistent=False)
        self.stride = self.input_multiple = backbone.stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.backbone(x)
        short = out["offsets"].index_select(1, self.short_index) / self.radius
        disp = torch.cat([out["displacement_fwd"], out["displacement_bwd"]], 1)
        mid = disp.index_select(1, self.mid_index) / self.radius
        return [torch.cat([out["heatmaps"], short, mid, self.new_head(out["features"])], 1)]
