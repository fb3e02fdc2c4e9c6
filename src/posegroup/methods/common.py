"""Inference pieces shared by the methods: image -> network input, and resampling of output
maps onto one common grid (multi-scale and flip testing).

Symbols: C channels, (h, w) one network output's grid, (H, W) the common grid: the output grid
of the scale-1 input, cropped to the cells covering the image.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F


def resample_maps(maps: torch.Tensor, size: tuple[int, int], ratio: float) -> torch.Tensor:
    """Bilinear resampling of (C, h, w) maps onto an (H, W) grid whose cell X lies at continuous
    source coordinate X * ratio (cell centres: (X + 0.5) * ratio). Outside the source: 0.
    Identity when ratio == 1 and the sizes agree."""
    c, h, w = maps.shape
    if ratio == 1.0 and (h, w) == tuple(size):
        return maps
    gh, gw = size
    ys = ((torch.arange(gh, dtype=maps.dtype, device=maps.device) + 0.5) * ratio) / h * 2 - 1
    xs = ((torch.arange(gw, dtype=maps.dtype, device=maps.device) + 0.5) * ratio) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)      # (H, W, 2) as (x, y)
    return F.grid_sample(maps[None], grid[None], mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


@contextmanager
def evaluating(model: torch.nn.Module):
    """``with evaluating(model):`` -- eval mode and no gradients inside; the model's own
    train / eval mode is restored on leaving, also after an error."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
    return img


def check_scales(scales) -> list[float]:
    out = [float(s) for s in np.atleast_1d(np.asarray(scales, dtype=np.float64))]
    if not out or any(not s > 0 for s in out):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {out}")
    return out


def common_grid(image_hw: tuple[int, int], input_size: int, stride: int) -> tuple[tuple[int, int], float]:
    """((H, W), factor1): the common grid and the scale-1 resize factor (image px = grid px *
    stride / factor1)."""
    if int(input_size) < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    h0, w0 = image_hw
    factor1 = input_size / max(h0, w0)
    nh1, nw1 = max(1, int(round(h0 * factor1))), max(1, int(round(w0 * factor1)))
    return (-(-nh1 // stride), -(-nw1 // stride)), factor1


def last_stack(model: torch.nn.Module | Callable, x: torch.Tensor) -> torch.Tensor:
    """The last stack's output of ``model(x)`` (a list of stacks, or one tensor): the
    ``run`` of :func:`network_passes` for methods that decode the network's maps, and the
    exported graph's output (``model`` may be a bound ``export_forward``)."""
    out = model(x)
    return out[-1] if isinstance(out, (list, tuple)) else out


def network_passes(model: torch.nn.Module, image: np.ndarray, input_size: int, scales, flip: bool,
                   run) -> tuple[list, tuple[int, int], float, int, list]:
    """Run ``run(model, x (b, 3, S, S)) -> (b, C, h, w)`` at every scale (and mirrored) and
    resample each result onto the common grid (mirrored ones flipped back spatially).

    Returns (maps: list of (C, H, W) tensors in the order scale 1 [, scale 1 mirrored], scale 2
    ..., the grid (H, W), factor1, stride, ratios: each map's input px per input px of scale 1
    (a length in its pass's input px divided by it is one in scale-1 input px, the grid's unit
    times ``stride``)).
    """
    from ..data.transforms import normalize_image, resize_for_inference

    img = check_image(image)
    multiple = int(getattr(model, "input_multiple", 64))
    stride = int(getattr(model, "stride", 4))
    grid, factor1 = common_grid(img.shape[:2], input_size, stride)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    out, ratios = [], []
    for s in check_scales(scales):
        net_img, factor = resize_for_inference(img, max(1, int(round(input_size * s))), multiple)
        x = torch.from_numpy(normalize_image(net_img))[None].to(device)
        if flip:
            x = torch.cat([x, torch.flip(x, dims=[3])], 0)
        maps = run(model, x).float().cpu()
        for b in range(maps.shape[0]):
            m = maps[b] if b == 0 else torch.flip(maps[b], dims=[2])
            out.append(resample_maps(m, grid, factor / factor1))
        ratios += [factor / factor1] * maps.shape[0]
    return out, grid, factor1, stride, ratios


def grid_to_image(poses: np.ndarray, scores: np.ndarray, stride: int, factor: float, image_shape
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Poses (N, K, 3) on the common grid -> image pixels (x, y * stride / factor), clipped to
    the image (H, W, ...); returns float32 (poses, scores)."""
    poses = np.array(poses, dtype=np.float64).reshape(len(poses), -1, 3) if len(poses) else \
        np.asarray(poses, np.float64)
    if len(poses):
        poses[..., :2] *= stride / factor
        h0, w0 = image_shape[:2]
        poses[..., 0] = np.clip(poses[..., 0], 0, w0)
        poses[..., 1] = np.clip(poses[..., 1], 0, h0)
    return poses.astype(np.float32), np.asarray(scores, np.float64).reshape(-1).astype(np.float32)


# ---- PoseNet-backed networks (model.backbone: posenet_mobilenet) ------------------------------

def posenet_backbone(model_cfg: dict | None, keypoint_set=None, *, extra_keys=(), freeze_default: bool = False,
                     heads: bool | tuple[str, ...] = True):
    """The :class:`~posegroup.backbones.posenet.PoseNetBackbone` of a ``model`` section naming
    ``backbone: posenet_mobilenet`` (validated, one-line ValueErrors naming ``model.<key>``),
    or None when the section names no backbone (the engine's stacked hourglass). ``heads``:
    PoseNet's heads the method's network uses (True: all four).
    ``keypoint_set``: when given, must be COCO-17 (PoseNet's heads predict those joints)."""
    cfg = dict(model_cfg or {})
    cfg.pop("init_from", None)
    if "backbone" not in cfg:
        return None
    from ..backbones.posenet import backbone_from_config
    from ..skeleton import COCO17
    net = backbone_from_config(cfg, extra_keys=extra_keys, freeze_default=freeze_default, heads=heads)
    if keypoint_set is not None and tuple(keypoint_set.names) != tuple(COCO17.names):
        raise ValueError(f"model.backbone: posenet_mobilenet predicts COCO-17 keypoints; the data's keypoint "
                         f"set is {keypoint_set.name} ({keypoint_set.num_keypoints} keypoints)")
    return net


def feature_head(in_channels: int, out_channels: int, width: int = 128) -> torch.nn.Module:
    """A new head on a backbone's features: 3x3 conv (``width``) + ReLU + 1x1 conv:
    (B, in_channels, h, w) -> (B, out_channels, h, w)."""
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(inplace=True),
                               torch.nn.Conv2d(width, out_channels, 1))


def place_by_offsets(poses: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joints placed by short-range offsets (PoseNet's / PersonLab's sub-cell positions).

    Args:
        poses: (N, K, 3) x, y, score on an output grid whose cell (i, j) covers [j, j+1) x [i, i+1).
        offsets: (K, 2, H, W): joint k's (x, y) offset from each cell's centre, in cells.
    Returns a float64 copy of ``poses`` whose found joints (score > 0) sit at the centre of the
    cell they lie in (clipped to the grid) plus that cell's offset; scores unchanged.
    """
    p = np.array(poses, dtype=np.float64, copy=True)
    if not p.size:
        return p
    _, _, h, w = offsets.shape
    n, k = np.nonzero(p[..., 2] > 0)
    cx = np.clip(np.floor(p[n, k, 0]).astype(np.int64), 0, w - 1)
    cy = np.clip(np.floor(p[n, k, 1]).astype(np.int64), 0, h - 1)
    p[n, k, 0] = cx + 0.5 + offsets[k, 0, cy, cx]
    p[n, k, 1] = cy + 0.5 + offsets[k, 1, cy, cx]
    return p
