"""Pictures: skeletons (one colour per person), instance masks, heatmaps and tag maps, as PNG."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .skeleton import KeypointSet


def person_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours, evenly spaced hues (golden-ratio stepping)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 220), np.full(n, 255)], -1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0] if n else np.zeros((0, 3), np.uint8)


def draw_poses(image: np.ndarray, poses: np.ndarray, keypoint_set: KeypointSet, *, scores=None,
               masks=None, threshold: float = 0.1, thickness: int | None = None) -> np.ndarray:
    """Draw people on a copy of ``image``.

    Args:
        image: uint8 (H, W, 3) RGB.
        poses: (N, K, 3) x, y, score in image pixels (continuous coordinates).
        keypoint_set: gives the limbs (its kinematic tree).
        scores: (N,) person scores, written next to each person when given.
        masks: (N, H, W) bool instance masks: mask n is blended in person n's skeleton colour
            (``person_colors(N)[n]``, the colour its limbs and joints are drawn in).
        threshold: joints with a score below it are not drawn.
    Returns: uint8 (H, W, 3) RGB.
    """
    out = np.ascontiguousarray(image.copy())
    poses = np.asarray(poses, np.float64).reshape(-1, keypoint_set.num_keypoints, 3)
    masks = None if masks is None else np.asarray(masks, bool)
    if masks is not None and (masks.ndim != 3 or masks.shape[1:] != out.shape[:2]):
        raise ValueError(f"masks must be (N, H, W) with (H, W) = {out.shape[:2]}, got {masks.shape}")
    colors = person_colors(max(len(poses), 0 if masks is None else len(masks)))
    if masks is not None:
        for m, c in zip(masks, colors):
            out[m] = (0.5 * out[m] + 0.5 * c).astype(np.uint8)
    t = thickness or max(1, int(round(max(image.shape[:2]) / 300)))
    for n, (pose, c) in enumerate(zip(poses, colors)):
        col = tuple(int(v) for v in c)
        ok = pose[:, 2] >= threshold
        pts = np.round(pose[:, :2] - 0.5).astype(int)  # continuous -> cv2 integer centres
        for a, b in keypoint_set.edges:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(pts[a]), tuple(pts[b]), col, t, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, tuple(pts[j]), t + 1, col, -1, cv2.LINE_AA)
            cv2.circle(out, tuple(pts[j]), t + 1, (0, 0, 0), 1, cv2.LINE_AA)
        if scores is not None and ok.any():
            x, y = pts[ok].min(0)
            cv2.putText(out, f"{float(scores[n]):.2f}", (int(x), max(int(y) - 4, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35 * t, col, 1, cv2.LINE_AA)
    return out


def colorize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 RGB with an OpenCV colour map."""
    v = np.asarray(values, np.float32)
    lo = float(np.nanmin(v)) if vmin is None else vmin
    hi = float(np.nanmax(v)) if vmax is None else vmax
    norm = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def draw_heatmaps(image: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Overlay the max over joints of ``heatmaps`` (K, h, w) in [0, 1] on ``image`` (H, W, 3)."""
    h, w = image.shape[:2]
    hm = cv2.resize(np.asarray(heatmaps, np.float32).max(0), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = colorize(hm, 0.0, 1.0)
    return (image * (1 - alpha) + heat * alpha).astype(np.uint8)


def draw_person_maps(image: np.ndarray, person_heatmaps: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """One colour per person: person n's maps (max over its J joints, clipped to [0, 1]) tint
    ``image`` (H, W, 3) in :func:`person_colors` ``[n]`` (the colours of :func:`draw_poses`).
    person_heatmaps: (N, J, h, w)."""
    h, w = image.shape[:2]
    maps = np.asarray(person_heatmaps, np.float32)
    out = image.astype(np.float32) * (1 - alpha)
    if len(maps) == 0:
        return out.astype(np.uint8)
    colors = person_colors(len(maps)).astype(np.float32)
    tint = np.zeros((h, w, 3), np.float32)
    for n in range(len(maps)):
        m = np.clip(cv2.resize(maps[n].max(0), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
        tint = np.maximum(tint, m[..., None] * colors[n])
    return np.clip(out + alpha * tint, 0, 255).astype(np.uint8)


def draw_tags(image: np.ndarray, heatmaps: np.ndarray, tags: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Tag map picture: at each cell the tag (first dimension) of the joint with the strongest
    heatmap, coloured, where that heatmap exceeds ``threshold``. heatmaps (K, h, w), tags (K, h, w[, D])."""
    hm = np.asarray(heatmaps, np.float32)
    tg = np.asarray(tags, np.float32)
    if tg.ndim == 4:
        tg = tg[..., 0]
    best = hm.argmax(0)
    tag = np.take_along_axis(tg, best[None], 0)[0]
    strong = hm.max(0) > threshold
    vals = tag[strong]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    pic = colorize(tag, lo, hi, cv2.COLORMAP_HSV)
    pic[~strong] = 0
    h, w = image.shape[:2]
    pic = cv2.resize(pic, (w, h), interpolation=cv2.INTER_NEAREST)
    return (image * 0.4 + pic * 0.6).astype(np.uint8)


def save_png(path, image_rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image_rgb, np.uint8), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    return path
