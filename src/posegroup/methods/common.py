"""Inference pieces shared by the methods: image -> network input, and resampling of output
maps onto one common grid (multi-scale and flip testing).

Symbols: C channels, (h, w) one network output's grid, (H, W) the common grid: the output grid
of the scale-1 input, cropped to the cells covering the image.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter


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


def as_scales(scales) -> tuple[float, ...]:
    """:func:`check_scales` as a tuple (a frozen settings object's value)."""
    return tuple(check_scales(scales))


def valid_scales(scales) -> bool:
    """Whether :func:`check_scales` takes ``scales``."""
    try:
        check_scales(scales)
    except (TypeError, ValueError):
        return False
    return True


def scales_setting(default: tuple[float, ...] = (1.0,)):
    """The ``scales`` field of a method's inference settings: the test scales (multiples of
    ``input_size``), a non-empty list of positive numbers, kept as a tuple of floats."""
    from .settings import setting
    return setting(default, valid_scales, "a non-empty list of positive numbers, e.g. [1, 0.5, 2]",
                   convert=as_scales)


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


# ---- targets and layouts shared by the methods (heatmap + tag networks) --------------------

def check_keypoints(keypoints, name: str = "keypoints") -> np.ndarray:
    """``keypoints`` as a float64 (N, K, 3) array (x, y, v); ValueError naming ``name`` otherwise."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"{name} must have shape (N, K, 3) = x, y, v; got {kp.shape}")
    return kp


def check_output_size(output_size) -> tuple[int, int]:
    """``output_size`` as positive ints (H, W); ValueError otherwise."""
    try:
        h, w = (int(s) for s in output_size)
    except (TypeError, ValueError):
        raise ValueError(f"output_size must be (H, W); got {output_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size must be positive (H, W); got {output_size!r}")
    return h, w


def joints_in_map(kp: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, K) bool: labelled (v > 0), finite and inside [0, W) x [0, H)."""
    x, y, v = kp[..., 0], kp[..., 1], kp[..., 2]
    with np.errstate(invalid="ignore"):
        return (v > 0) & np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < w) & (y >= 0) & (y < h)


def gaussian_heatmaps(keypoints, output_size, sigma: float = 2.0) -> np.ndarray:
    """Ground-truth joint heatmaps: per joint type, the max over people of 2D Gaussians.

    H_k(c) = max_n exp(-||c - x_nk||^2 / (2 sigma^2)) evaluated at every cell centre c, centred at
    the true sub-pixel keypoint x_nk, and set to 0 where ||c - x_nk|| > 3 sigma (truncation).
    Joints with v = 0 and joints outside [0, W) x [0, H) are skipped.

    Args:
        keypoints: (N, K, 3) x, y, v in output-grid continuous coordinates.
        output_size: (H, W) of the output grid.
        sigma: Gaussian std in output cells; 2.0 (paper). The reference code uses
            ``output_size / 64`` (see :func:`reference_sigma`), also 2.0 at 128x128.
    Returns:
        (K, H, W) float32 heatmaps in [0, 1].
    """
    kp = check_keypoints(keypoints)
    h, w = check_output_size(output_size)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")
    n, k, _ = kp.shape
    out = np.zeros((k, h, w), dtype=np.float32)
    valid = joints_in_map(kp, h, w)
    if not valid.any():
        return out
    pts = kp[valid]                                  # (P, 3)
    joint = np.nonzero(valid)[1]                     # (P,) joint type of each point
    cx = np.arange(w, dtype=np.float64) + 0.5
    cy = np.arange(h, dtype=np.float64) + 0.5
    dx2 = (cx[None, :] - pts[:, 0:1]) ** 2           # (P, W)
    dy2 = (cy[None, :] - pts[:, 1:2]) ** 2           # (P, H)
    inv = 1.0 / (2.0 * sigma * sigma)
    gx = np.exp(-dx2 * inv)
    gy = np.exp(-dy2 * inv)
    cut = 9.0 * sigma * sigma
    for kk in np.unique(joint):                      # vectorised per joint type
        sel = joint == kk
        g = gy[sel][:, :, None] * gx[sel][:, None, :]                       # (n_k, H, W)
        g[(dy2[sel][:, :, None] + dx2[sel][:, None, :]) > cut] = 0.0
        out[kk] = g.max(axis=0)
    return out


def channel_groups(num_keypoints: int, tag_dim: int = 1, seg_tag_dim: int = 0) -> list[int]:
    """The heatmap + tag channel layout (AE's network, the recurrent method's backbone): the
    prediction's kinds of output, in channel order: [K heatmaps, K*D tags] (+ [1 + E]:
    foreground and pixel tags, with segmentation)."""
    return [num_keypoints, num_keypoints * tag_dim] + ([1 + seg_tag_dim] if seg_tag_dim else [])



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


def subpixel_offsets(heatmaps: np.ndarray, joint: np.ndarray, y: np.ndarray, x: np.ndarray,
                     method: str = "quarter", blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offsets (dx, dy) of peaks at integer cells, relative to the cell centre.

    Args:
        heatmaps: (K, H, W) raw (not NMS'd) heatmaps.
        joint, y, x: (M,) int peak cells.
        method: ``"quarter"`` (reference, SPEC step 6): per axis +0.25 if the next neighbour is
            larger than the previous one, else -0.25 (ties go -0.25, as in the reference;
            neighbours clamped at the border). ``"quadratic"``: fit a parabola to the log of the
            heatmap over 3 cells per axis (exact for a Gaussian peak), falling back to a parabola
            on the raw values where a value is <= 0; at a border the 3-cell window is shifted
            inwards; the offset is clipped to [-0.5, 0.5]. ``"dark"``: the same fit on the maps
            first smoothed by a Gaussian of std ``blur`` cells (per map, borders reflected): the
            distribution modulation of DARK (Zhang et al., CVPR 2020), which turns a broad or
            ragged peak back into one the log-parabola fits. ``"none"``: 0.
        blur: ``"dark"``'s smoothing std in cells (> 0).
    Returns:
        dx, dy: (M,) float64 offsets from the cell centre.
    """
    hm = np.asarray(heatmaps)
    _, h, w = hm.shape
    joint, y, x = (np.asarray(a, dtype=np.int64) for a in (joint, y, x))
    if method == "none" or joint.size == 0:
        z = np.zeros(joint.shape, dtype=np.float64)
        return z, z.copy()
    if method == "quarter":
        right = hm[joint, y, np.minimum(x + 1, w - 1)]
        left = hm[joint, y, np.maximum(x - 1, 0)]
        down = hm[joint, np.minimum(y + 1, h - 1), x]
        up = hm[joint, np.maximum(y - 1, 0), x]
        dx = np.where(right > left, 0.25, -0.25)
        dy = np.where(down > up, 0.25, -0.25)
        return dx, dy
    if method == "dark":
        if not blur > 0:
            raise ValueError(f"subpixel 'dark' needs a blur > 0 cells, got {blur}")
        maps, joint = np.unique(joint, return_inverse=True)       # smooth only the maps that hold a peak
        hm = gaussian_filter(hm[maps].astype(np.float64), (0.0, blur, blur))
        method = "quadratic"
    if method == "quadratic":
        return (_parabola(hm, joint, y, x, axis=2, n=w),
                _parabola(hm, joint, y, x, axis=1, n=h))
    raise ValueError(f"subpixel must be 'quarter', 'quadratic', 'dark' or 'none'; got {method!r}")


def _parabola(hm, joint, y, x, axis: int, n: int) -> np.ndarray:
    pos = x if axis == 2 else y
    if n < 3:
        return np.zeros(pos.shape, dtype=np.float64)
    c = np.minimum(np.maximum(pos, 1), n - 2)        # window centre, shifted inwards at borders
    if axis == 2:
        vals = np.stack([hm[joint, y, c - 1], hm[joint, y, c], hm[joint, y, c + 1]]).astype(np.float64)
    else:
        vals = np.stack([hm[joint, c - 1, x], hm[joint, c, x], hm[joint, c + 1, x]]).astype(np.float64)
    positive = (vals > 0).all(axis=0)
    f = np.where(positive, np.log(np.where(vals > 0, vals, 1.0)), vals)
    den = f[0] - 2.0 * f[1] + f[2]
    num = 0.5 * (f[0] - f[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(den < 0, num / den, 0.0)       # vertex relative to the window centre
    return np.minimum(np.maximum(mu + (c - pos), -0.5), 0.5)


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


def offsets_on_grid(channels: torch.Tensor, stride: int, ratio: float, flip_index=None) -> np.ndarray:
    """One pass's short-range offsets made the grid's: ``channels`` (2K, H, W) on the common
    grid (:func:`network_passes`), joint k's (x, y) offset at 2k, 2k + 1 in the pass's input px
    (``ratio``: its input px per scale-1 input px), to (K, 2, H, W) in grid cells; with
    ``flip_index`` (a mirrored pass, flipped back spatially) the joints swapped left/right and x
    negated, so that they are the image's."""
    off = channels.reshape(-1, 2, *channels.shape[-2:]) / (stride * ratio)
    if flip_index is not None:
        off = off[torch.as_tensor(np.asarray(flip_index, dtype=np.int64))] * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return off.numpy()


def place_by_offsets(poses: np.ndarray, offsets: np.ndarray, *, only_found: bool = True) -> np.ndarray:
    """Joints placed by short-range offsets (PoseNet's / PersonLab's sub-cell positions).

    Args:
        poses: (N, K, 3) x, y, score on an output grid whose cell (i, j) covers [j, j+1) x [i, i+1).
        offsets: (K, 2, H, W): joint k's (x, y) offset from each cell's centre, in cells.
        only_found: move only the found joints (score > 0); False: every joint.
    Returns a float64 copy of ``poses`` whose found joints (score > 0; every joint when not
    ``only_found``) sit at the centre of the cell they lie in (clipped to the grid) plus that
    cell's offset; scores unchanged.
    """
    p = np.array(poses, dtype=np.float64, copy=True)
    if not p.size:
        return p
    _, _, h, w = offsets.shape
    n, k = np.nonzero(p[..., 2] > 0) if only_found else np.nonzero(np.ones(p.shape[:2], bool))
    cx = np.clip(np.floor(p[n, k, 0]).astype(np.int64), 0, w - 1)
    cy = np.clip(np.floor(p[n, k, 1]).astype(np.int64), 0, h - 1)
    p[n, k, 0] = cx + 0.5 + offsets[k, 0, cy, cx]
    p[n, k, 1] = cy + 0.5 + offsets[k, 1, cy, cx]
    return p


# ---- Hough voting (PersonLab's eq. 1): PersonLab's decoder, AE's hough_factor -------------------

def hough_size(grid_size: tuple[int, int], output_stride: float, grid_offset: float,
               hough_stride: float) -> tuple[int, int]:
    """(Hh, Wh) of the Hough map covering every cell position of a (H, W) grid."""
    h, w = grid_size
    ext = max(2.0 * grid_offset, 1.0)
    return (int(math.ceil(((h - 1) * output_stride + ext) / hough_stride)),
            int(math.ceil(((w - 1) * output_stride + ext) / hough_stride)))


def raw_votes(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
              grid_offset: float = 0.0, radius: float = 32.0, min_p: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Hough votes before splatting: every cell with p_k > ``min_p`` (default 0) votes for
    keypoint k at ``x + S_k(x)`` (input px) with weight ``p_k · stride² / (πR²)``. Returns
    ``(k, x, y, w)`` sorted by k."""
    kk, ii, jj = np.nonzero(heatmaps > min_p)
    wv = heatmaps[kk, ii, jj].astype(np.float64) * (output_stride ** 2 / (math.pi * radius ** 2))
    so = short_offsets[kk, ii, jj].astype(np.float64)
    return kk, jj * output_stride + grid_offset + so[:, 0], ii * output_stride + grid_offset + so[:, 1], wv


def hough_votes(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
                grid_offset: float = 0.0, radius: float = 32.0, hough_stride: float = 1.0,
                hough_size_hw: tuple[int, int] | None = None, votes: tuple | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Bilinearly splatted Hough votes as a sparse list (paper eq. 1, unblurred).

    The votes of :func:`raw_votes` (or ``votes``) are each split over the 4 Hough cells around
    them. Returns ``(k, r, c, w, (Hh, Wh))``: one entry per (vote, corner) inside the map (the
    same Hough cell may appear several times; the dense map is their sum, :func:`hough_scores`).
    """
    k, h, w = heatmaps.shape
    hh, wh = hough_size_hw or hough_size((h, w), output_stride, grid_offset, hough_stride)
    kk, vx, vy, wv = votes if votes is not None else raw_votes(
        heatmaps, short_offsets, output_stride=output_stride, grid_offset=grid_offset, radius=radius)
    qx = vx / hough_stride - 0.5
    qy = vy / hough_stride - 0.5
    x0 = np.floor(qx).astype(np.int64)
    y0 = np.floor(qy).astype(np.int64)
    fx = qx - x0
    fy = qy - y0
    ks, rs, cs, ws = [], [], [], []
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                       (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < wh) & (yi >= 0) & (yi < hh) & (wt > 0)
        ks.append(kk[ok])
        rs.append(yi[ok])
        cs.append(xi[ok])
        ws.append(wv[ok] * wt[ok])
    return np.concatenate(ks), np.concatenate(rs), np.concatenate(cs), np.concatenate(ws), (hh, wh)


def hough_scores(heatmaps: np.ndarray, short_offsets: np.ndarray, *, output_stride: float,
                 grid_offset: float = 0.0, radius: float = 32.0, hough_stride: float = 1.0,
                 hough_size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Dense Hough score maps h_k (paper eq. 1), unblurred.

    Args:
        heatmaps: (K, H, W) probabilities p_k.
        short_offsets: (K, H, W, 2) (x, y) input pixels.
        radius: R (paper 32); the votes are normalised by 1/(πR²).
        hough_stride: input pixels per Hough cell (1 = input resolution, as in the paper).
    Returns: (K, Hh, Wh) float32.
    """
    k = heatmaps.shape[0]
    kk, rr, cc, ww, (hh, wh) = hough_votes(heatmaps, short_offsets, output_stride=output_stride,
                                           grid_offset=grid_offset, radius=radius,
                                           hough_stride=hough_stride, hough_size_hw=hough_size_hw)
    out = np.bincount((kk * hh + rr) * wh + cc, weights=ww, minlength=k * hh * wh)
    return out.reshape(k, hh, wh).astype(np.float32)
