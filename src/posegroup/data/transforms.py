"""Geometric and photometric augmentation with exact inverses.

All affine matrices here are (2, 3) maps between *continuous* pixel coordinates (pixel (row i,
column j) has centre (j + 0.5, i + 0.5)); :func:`to_cv2` converts one for ``cv2.warpAffine``,
which places pixel centres on integers. A warped sample carries its matrix under ``"affine"`` so
test-time predictions map back with :func:`invert_affine_points`.
"""
from __future__ import annotations

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W), ImageNet mean/std normalised."""
    x = image.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def affine_matrix(center, scale: float, rotation_deg: float, out_center, flip_width: float | None = None) -> np.ndarray:
    """(2, 3) continuous-coordinate affine: move ``center`` to the origin, scale, rotate
    (counter-clockwise on screen for positive angles), move to ``out_center``; then, when
    ``flip_width`` is given, mirror x -> flip_width - x."""
    a = np.deg2rad(rotation_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    rot = np.array([[c, s], [-s, c]])
    t = np.asarray(out_center, np.float64) - rot @ np.asarray(center, np.float64)
    m = np.hstack([rot, t[:, None]])
    if flip_width is not None:
        m = np.array([[-1.0, 0.0, flip_width], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def to_cv2(m: np.ndarray) -> np.ndarray:
    """Continuous-coordinate affine -> the matrix ``cv2.warpAffine`` expects (integer centres)."""
    a, b = m[:, :2], m[:, 2]
    return np.hstack([a, (a @ [0.5, 0.5] + b - 0.5)[:, None]])


def apply_affine_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """points (..., 2) -> (..., 2) under the (2, 3) affine ``m``."""
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def invert_affine_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map points (..., 2) from the warped frame back to the original frame of ``m``."""
    return apply_affine_points(points, invert_affine(m))


def warp_sample(sample: dict, m: np.ndarray, out_size: int | tuple[int, int], flip_index=None) -> dict:
    """Warp a dataset sample (see ``CocoPoseDataset``) by the continuous affine ``m``.

    Keypoints move with the image; joints that leave the frame become unlabelled (v = 0);
    ``flip_index`` (given when ``m`` mirrors) swaps left/right keypoint channels.
    Returns a new dict with ``image``, ``keypoints``, ``instance_masks``, ``ignore_mask`` and
    ``affine`` (= m) replaced; other keys are kept.
    """
    oh, ow = (out_size, out_size) if np.isscalar(out_size) else out_size
    mc = to_cv2(m)
    out = dict(sample)
    out["image"] = cv2.warpAffine(sample["image"], mc, (ow, oh), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(124, 116, 104))
    ign = sample["ignore_mask"].astype(np.uint8)
    out["ignore_mask"] = cv2.warpAffine(ign, mc, (ow, oh), flags=cv2.INTER_NEAREST).astype(bool)
    masks = sample.get("instance_masks")
    if masks is not None and len(masks):
        out["instance_masks"] = np.stack([cv2.warpAffine(mk, mc, (ow, oh), flags=cv2.INTER_NEAREST)
                                          for mk in masks])
    elif masks is not None:
        out["instance_masks"] = np.zeros((0, oh, ow), np.uint8)
    kp = np.array(sample["keypoints"], np.float32, copy=True)
    if kp.size:
        xy = apply_affine_points(kp[..., :2], m).astype(np.float32)
        vis = kp[..., 2].copy()
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < ow) & (xy[..., 1] >= 0) & (xy[..., 1] < oh)
        vis[~inside] = 0
        xy[vis == 0] = 0
        kp = np.concatenate([xy, vis[..., None]], -1)
        if flip_index is not None:
            kp = kp[:, flip_index]
    out["keypoints"] = kp
    out["affine"] = m
    return out


class RandomAffine:
    """Training augmentation: random scale, rotation, translation and horizontal flip (with the
    left/right joint swap). The image is first fitted so its longer side is ``input_size``.

    Defaults follow HigherHRNet / the AE reference training (scale 0.75-1.25 around the fitted
    size, rotation +-30 degrees, translation up to 40 px at 512 input -> 0.08 of the size, flip 0.5).
    """

    def __init__(self, input_size: int, *, scale_range=(0.75, 1.25), max_rotation: float = 30.0,
                 max_translate: float = 0.08, flip_prob: float = 0.5, flip_index=None):
        self.input_size = int(input_size)
        self.scale_range = tuple(scale_range)
        self.max_rotation = float(max_rotation)
        self.max_translate = float(max_translate)
        self.flip_prob = float(flip_prob)
        self.flip_index = list(flip_index) if flip_index is not None else None

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        h, w = sample["image"].shape[:2]
        s = self.input_size
        scale = s / max(h, w) * rng.uniform(*self.scale_range)
        rot = rng.uniform(-self.max_rotation, self.max_rotation)
        shift = rng.uniform(-self.max_translate, self.max_translate, size=2) * s
        flip = self.flip_index is not None and rng.random() < self.flip_prob
        m = affine_matrix((w / 2, h / 2), scale, rot, (s / 2 + shift[0], s / 2 + shift[1]),
                          flip_width=s if flip else None)
        return warp_sample(sample, m, s, flip_index=self.flip_index if flip else None)


def center_affine(sample: dict, input_size: int) -> dict:
    """Deterministic fit: the image's longer side becomes ``input_size``, centred, padded."""
    h, w = sample["image"].shape[:2]
    s = int(input_size)
    m = affine_matrix((w / 2, h / 2), s / max(h, w), 0.0, (s / 2, s / 2))
    return warp_sample(sample, m, s)


class ColorJitter:
    """Photometric jitter of an RGB uint8 image: brightness, contrast, saturation (factors drawn
    in [1 - x, 1 + x]) and hue shift (fraction of the hue circle)."""

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.03):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32)
        x *= rng.uniform(1 - self.brightness, 1 + self.brightness)
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        gray = x.mean(axis=2, keepdims=True)
        x = (x - gray) * rng.uniform(1 - self.saturation, 1 + self.saturation) + gray
        x = np.clip(x, 0, 255).astype(np.uint8)
        if self.hue > 0:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
            shift = int(round(rng.uniform(-self.hue, self.hue) * 180))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return x


def resize_for_inference(image: np.ndarray, long_side: int, multiple: int = 64) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``long_side`` (aspect kept), then pad right/bottom to a
    multiple of ``multiple``. Returns (image uint8, factor); image coordinate = net coordinate / factor."""
    h, w = image.shape[:2]
    factor = long_side / max(h, w)
    nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    ph, pw = -(-nh // multiple) * multiple, -(-nw // multiple) * multiple
    out = np.zeros((ph, pw, 3), np.uint8)
    out[:nh, :nw] = resized
    return out, factor
