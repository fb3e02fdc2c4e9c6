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
    if scores is not None:
        _score_labels(out, poses, scores, colors, threshold)
    return out


def _score_labels(out: np.ndarray, poses: np.ndarray, scores, colors: np.ndarray, threshold: float) -> None:
    """Each person's score above its highest joint, on a dark box in its colour; a label that
    would cover an earlier one moves down a line (twice at most), else is left out: no piles."""
    scale = max(0.4, min(out.shape[:2]) / 900)
    placed: list[tuple[int, int, int, int]] = []
    for n in np.argsort(-np.asarray(scores, float), kind="stable"):     # the best people first
        ok = poses[n, :, 2] >= threshold
        if not ok.any():
            continue
        text = f"{float(scores[n]):.2f}"
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        top = poses[n][ok][np.argmin(poses[n][ok][:, 1])]
        x = int(np.clip(top[0] - tw / 2, 0, max(out.shape[1] - tw - 2, 0)))
        for shift in range(3):
            y = int(np.clip(top[1] - 6 + shift * (th + base + 2), th + 2, out.shape[0] - base - 1))
            box = (x - 1, y - th - 1, x + tw + 1, y + base)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                cv2.rectangle(out, box[:2], box[2:], (0, 0, 0), -1)
                cv2.putText(out, text, (x, y), FONT, scale, tuple(int(v) for v in colors[n]), 1, cv2.LINE_AA)
                break


FONT = cv2.FONT_HERSHEY_SIMPLEX


def enlarge(image: np.ndarray, min_side: int = 384) -> tuple[np.ndarray, float]:
    """``image`` scaled up (never down) so its shorter side is at least ``min_side`` px, and the
    factor applied (1.0: unchanged); multiply image coordinates by it."""
    h, w = image.shape[:2]
    factor = max(1.0, min_side / max(min(h, w), 1))
    if factor == 1.0:
        return image, 1.0
    size = (int(round(w * factor)), int(round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), factor


def caption(picture: np.ndarray, lines: list[str], *, legend: np.ndarray | None = None) -> np.ndarray:
    """``picture`` under a dark strip with ``lines`` of white text (a title), and above
    ``legend`` (e.g. :func:`colorbar`, :func:`color_key`; resized to the picture's width) when given."""
    w = picture.shape[1]
    scale = max(0.4, min(0.6, w / 800))
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, 1)
    step = th + base + 4
    strip = np.full((step * len(lines) + 4, w, 3), 32, np.uint8)
    for i, line in enumerate(lines):
        text = line
        while len(text) > 4 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > w - 8:   # too wide: cut
            text = text[:-2]
        text = text if text == line else text[:-1] + "~"
        cv2.putText(strip, text, (4, 2 + th + i * step), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    parts = [strip, picture]
    if legend is not None:
        parts.append(legend if legend.shape[1] == w else
                     cv2.resize(legend, (w, legend.shape[0]), interpolation=cv2.INTER_NEAREST))
    return np.concatenate(parts, 0)


def colorbar(width: int, lo: float, hi: float, label: str, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """A legend strip (uint8 RGB, ``width`` px wide): the colour map from ``lo`` to ``hi`` with
    its end values and ``label``."""
    h = 34
    bar = colorize(np.tile(np.linspace(0, 1, max(width - 8, 2), dtype=np.float32), (12, 1)), 0.0, 1.0, colormap)
    out = np.full((h, width, 3), 32, np.uint8)
    out[2:14, 4:4 + bar.shape[1]] = bar
    scale = 0.4
    texts = [(f"{lo:.3g}", 4), (label, None), (f"{hi:.3g}", -1)]
    for text, x in texts:
        tw = cv2.getTextSize(text, FONT, scale, 1)[0][0]
        x = (width - tw) // 2 if x is None else (x if x >= 0 else width - tw - 4)
        cv2.putText(out, text, (max(x, 0), 29), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def color_key(width: int, colors: np.ndarray, labels: list[str]) -> np.ndarray:
    """A legend strip: a swatch of each colour (uint8 RGB (n, 3)) and its label, in rows."""
    scale, x, rows = 0.4, 4, [[]]
    for c, label in zip(colors, labels):
        tw = cv2.getTextSize(label, FONT, scale, 1)[0][0] + 22
        if x + tw > width and rows[-1]:
            rows.append([])
            x = 4
        rows[-1].append((x, c, label))
        x += tw + 6
    out = np.full((18 * len(rows) + 4, width, 3), 32, np.uint8)
    for r, row in enumerate(rows):
        for x, c, label in row:
            y = 4 + 18 * r
            cv2.rectangle(out, (x, y), (x + 14, y + 12), tuple(int(v) for v in c), -1)
            cv2.putText(out, label, (x + 18, y + 11), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def prediction_picture(image: np.ndarray, poses: np.ndarray, scores, keypoint_set: KeypointSet, *,
                       title: str, masks=None, min_score: float = 0.0, threshold: float = 0.1,
                       gt_poses: np.ndarray | None = None, min_side: int = 384) -> np.ndarray:
    """The picture ``predict`` writes: the image enlarged to ``min_side`` px (short side), the
    people scored at least ``min_score`` with their scores, under a caption (``title``, people
    shown of those found); with ``gt_poses`` (M, K, 3: x, y, v), the ground truth drawn beside
    it. uint8 RGB."""
    big, f = enlarge(image, min_side)
    poses = np.asarray(poses, np.float64).reshape(-1, keypoint_set.num_keypoints, 3)
    scores = np.asarray(scores, np.float64).reshape(-1)
    keep = scores >= min_score
    shown = poses[keep].copy()
    shown[..., :2] *= f
    m = None
    if masks is not None and len(masks):
        m = np.asarray(masks, bool)[keep]
        m = np.stack([cv2.resize(x.astype(np.uint8), big.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
                      for x in m]) if len(m) else None
    drawn = draw_poses(big, shown, keypoint_set, scores=scores[keep], masks=m, threshold=threshold)
    hidden = f"; {len(poses) - keep.sum()} below score {min_score:g} not drawn" if (~keep).any() else ""
    panels = [caption(drawn, [title, f"prediction: {int(keep.sum())} people{hidden}"])]
    if gt_poses is not None:
        gt = np.asarray(gt_poses, np.float64).reshape(-1, keypoint_set.num_keypoints, 3).copy()
        gt[..., :2] *= f
        gt[..., 2] = (gt[..., 2] > 0).astype(float)                  # visibility flags as joint scores
        truth = draw_poses(big, gt, keypoint_set, threshold=0.5)
        panels.append(caption(truth, ["", f"ground truth: {len(gt)} people"]))
    return side_by_side(panels)


def side_by_side(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures (uint8 RGB) in a row, ``gap`` white pixels apart, the shorter ones padded at the
    bottom."""
    h = max(p.shape[0] for p in pictures)
    row = []
    for i, p in enumerate(pictures):
        if i:
            row.append(np.full((h, gap, 3), 255, np.uint8))
        row.append(np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(row, 1)


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
    tag, strong = _strongest_tags(heatmaps, tags, threshold)
    lo, hi = tag_range(heatmaps, tags, threshold)
    pic = colorize(tag, lo, hi, cv2.COLORMAP_HSV)
    pic[~strong] = 0
    h, w = image.shape[:2]
    pic = cv2.resize(pic, (w, h), interpolation=cv2.INTER_NEAREST)
    return (image * 0.4 + pic * 0.6).astype(np.uint8)


def _strongest_tags(heatmaps, tags, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(tag of the strongest joint at each cell, cells where that joint's heatmap > threshold)."""
    hm = np.asarray(heatmaps, np.float32)
    tg = np.asarray(tags, np.float32)
    if tg.ndim == 4:
        tg = tg[..., 0]
    tag = np.take_along_axis(tg, hm.argmax(0)[None], 0)[0]
    return tag, hm.max(0) > threshold


def tag_range(heatmaps, tags, threshold: float = 0.1) -> tuple[float, float]:
    """The tag values :func:`draw_tags` spreads over its colour map (its legend's ends)."""
    tag, strong = _strongest_tags(heatmaps, tags, threshold)
    vals = tag[strong]
    return (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)


def save_png(path, image_rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (folders created), whole or not at all
    (:func:`posegroup.files.write_bytes_atomic`)."""
    from .files import write_bytes_atomic
    path = Path(path)
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.asarray(image_rgb, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not write PNG")
    return write_bytes_atomic(path, png.tobytes())
