"""Video: ``posegroup predict CLIP.mp4 [--track] --out DIR`` for any predictor (a checkpoint, our
own ONNX model or a foreign one).

Frames are read with OpenCV's ``VideoCapture`` and the annotated video written with its
``VideoWriter`` (``mp4v`` codec, ``.mp4``): opencv-python-headless is already a dependency (the
data pipeline uses it), its bundled FFmpeg reads the common containers and writes mp4v without a
display, so video needs no new package (PyAV would be one more binary wheel for the same frames).

Per clip, ``DIR`` gets ``<stem>.mp4`` (the skeletons drawn on every frame; with ``--track`` each
person in the colour of its track and labelled ``#id``) and ``<stem>.json``: a COCO results list,
one entry per person and frame, with ``image_id`` = ``frame`` = the frame index (from 0) and
``track_id`` (null without tracking) besides ``keypoints``, ``score`` (and ``segmentation``).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..files import refuse_existing, replacing, write_json_atomic
from .predict import PredictError, predict_image

#: File extensions ``predict`` treats as videos.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_info(path: str | Path) -> dict:
    """``fps``, ``frames`` (the container's count; may be approximate), ``width``, ``height``."""
    import cv2
    cap = _open(path)
    try:
        return {"fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0), "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}
    finally:
        cap.release()


def _open(path):
    import cv2
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise PredictError(f"{path}: cannot be opened as a video")
    return cap


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video as uint8 (H, W, 3) RGB, in order."""
    import cv2
    cap = _open(path)
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def draw_tracked(image: np.ndarray, poses: np.ndarray, scores: np.ndarray, masks, ids: list[int] | None,
                 keypoint_set, threshold: float = 0.1) -> np.ndarray:
    """:func:`posegroup.viz.draw_poses`, each person in the colour of its track id (mod 64) and
    labelled ``#id``; without ids as ``draw_poses``."""
    import cv2
    from ..viz import draw_poses, person_colors
    if ids is None or not len(poses):
        return draw_poses(image, poses, keypoint_set, scores=scores, masks=masks, threshold=threshold)
    if any(i is None for i in ids):   # people in no track: drawn thin, unlabelled, after the tracked ones
        on = [k for k, i in enumerate(ids) if i is not None]
        off = [k for k, i in enumerate(ids) if i is None]
        canvas = draw_tracked(image, poses[on], scores[on], None if masks is None else masks[on],
                              [ids[k] for k in on], keypoint_set, threshold)
        return draw_poses(canvas, poses[off], keypoint_set, threshold=threshold, thickness=1)
    canvas, remaining = image, list(range(len(poses)))
    while remaining:   # people whose colour slots collide are drawn in a later pass
        slots: dict[int, int] = {}
        for i in remaining:
            slots.setdefault(ids[i] % 64, i)
        remaining = [i for i in remaining if i not in slots.values()]
        n = max(slots) + 1
        p = np.zeros((n,) + poses.shape[1:])
        s = np.zeros(n)
        m = None if masks is None else np.zeros((n,) + masks.shape[1:], bool)
        for slot, i in slots.items():
            p[slot], s[slot] = poses[i], scores[i]
            if m is not None:
                m[slot] = masks[i]
        canvas = draw_poses(canvas, p, keypoint_set, scores=s, masks=m, threshold=threshold)
    colors = person_colors(64)
    for i, pose in enumerate(poses):
        ok = pose[:, 2] >= threshold
        if ok.any():
            x, y = pose[ok, :2].min(0)[0], pose[ok, :2].max(0)[1]
            cv2.putText(canvas, f"#{ids[i]}", (int(x), int(min(y + 10, canvas.shape[0] - 2))),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, tuple(int(c) for c in colors[ids[i] % 64]), 1, cv2.LINE_AA)
    return canvas


def _video_targets(path: Path, out_dir: Path, *, draw: bool, overwrite: bool) -> list[Path]:
    """``[out_dir/<stem>.json]`` (+ ``<stem>.mp4`` when ``draw``), checked: no target on the
    input, none existing unless ``overwrite`` (:class:`PredictError`)."""
    targets = [out_dir / f"{path.stem}.json"] + ([out_dir / f"{path.stem}.mp4"] if draw else [])
    for t in targets:
        if t.resolve() == path.resolve():
            raise PredictError(f"{t}: is the input video and would be overwritten; choose another --out")
        refuse_existing(t, overwrite, error=PredictError, found="already exists (an earlier prediction?)")
    return targets


def _predict_frame(predictor: Callable, frame: np.ndarray, index: int, tracker, track_min_score: float):
    """One frame (H, W, 3) RGB: ``(poses (N, K, 3), scores (N,), masks or None, ids, entries)``;
    ``ids`` the track id per person (None without a tracker; None for people scored below
    ``track_min_score``), ``entries`` its COCO results with ``frame`` and ``track_id``."""
    poses, scores, masks, entries = predict_image(predictor, frame, index)
    ids = None
    if tracker is not None:
        keep = np.flatnonzero(scores >= track_min_score)
        kept = tracker.update(poses[keep])
        ids = [None] * len(poses)
        for k, i in zip(keep, kept):
            ids[k] = i
    for k, e in enumerate(entries):
        e["frame"] = index
        e["track_id"] = None if ids is None or ids[k] is None else int(ids[k])
    return poses, scores, masks, ids, entries


def predict_video(predictor: Callable, path: str | Path, *, out_dir: str | Path, keypoint_set,
                  track: bool = False, track_max_gap: int = 5, track_oks: float = 0.3, track_min_score: float = 0.0,
                  draw: bool = True,
                  progress: bool = True, threshold: float = 0.1, overwrite: bool = False) -> dict:
    """Predict every frame of the video ``path``; write ``out_dir/<stem>.json`` (and, when
    ``draw``, ``out_dir/<stem>.mp4``) as the module docstring says.

    ``track``: ids by :class:`~posegroup.engine.track.Tracker` (OKS ``track_oks``, gaps of up
    to ``track_max_gap`` frames); people scored below ``track_min_score`` join no track
    (``track_id`` null; they neither continue nor start one). Returns ``{"results", "frames", "seconds", "fps", "json",
    "video", "tracks"}`` (``fps``: frames per second of the whole loop: read, predict, track,
    draw and write).

    Safety as :func:`~posegroup.engine.predict.predict_images`: outputs are written to
    temporary files and moved into place at the end; an existing output is refused unless
    ``overwrite``, and an output landing on the input is always refused (:class:`PredictError`).
    """
    from contextlib import nullcontext

    from .track import Tracker
    path, out_dir = Path(path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PredictError(f"{out_dir}: exists and is not a folder; --out names the output folder")
    info = video_info(path)
    targets = _video_targets(path, out_dir, draw=draw, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tuple(keypoint_set.sigmas), oks_threshold=track_oks, max_gap=track_max_gap) if track else None
    frames = read_frames(path)
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, total=info["frames"] or None, desc=path.name, unit="frame")
    start = time.perf_counter()
    video = replacing(targets[1], tmp=out_dir / f".{path.stem}.tmp.mp4") if draw else nullcontext()
    with video as tmp_video:
        results, n = _predict_frames(predictor, frames, tracker, tmp_video, keypoint_set=keypoint_set,
                                     fps=info["fps"] if info["fps"] > 0 else 25.0, threshold=threshold,
                                     track_min_score=track_min_score)
        if n == 0:
            raise PredictError(f"{path}: no frame could be read")
        seconds = time.perf_counter() - start
        write_json_atomic(targets[0], results)
    return {"results": results, "frames": n, "seconds": seconds, "fps": n / max(seconds, 1e-9),
            "json": str(targets[0]), "video": str(targets[1]) if draw else None,
            "tracks": tracker.next_id if tracker is not None else None}


def _predict_frames(predictor: Callable, frames, tracker, tmp_video: Path | None, *, keypoint_set, fps: float,
                    threshold: float, track_min_score: float) -> tuple[list[dict], int]:
    """Each frame of ``frames`` predicted (:func:`_predict_frame`) and, when ``tmp_video`` is
    given, drawn (:func:`draw_tracked`) into that mp4v file at ``fps``. Returns (the COCO
    results of every frame, the frames read)."""
    import cv2
    results: list[dict] = []
    writer = None
    n = 0
    try:
        for n, frame in enumerate(frames, 1):
            poses, scores, masks, ids, entries = _predict_frame(predictor, frame, n - 1, tracker, track_min_score)
            results.extend(entries)
            if tmp_video is not None:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise PredictError(f"{tmp_video}: OpenCV cannot write an mp4v video here")
                canvas = draw_tracked(frame, poses, scores, masks, ids, keypoint_set, threshold)
                writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return results, n


def predict_videos(predictor: Callable, paths, *, out_dir, keypoint_set, quiet: bool = False, **kw) -> list[dict]:
    """:func:`predict_video` for each clip; prints one line per clip (people, frames, fps)."""
    out = []
    for p in paths:
        s = predict_video(predictor, p, out_dir=out_dir, keypoint_set=keypoint_set, progress=not quiet, **kw)
        tracks = f", {s['tracks']} tracks" if s["tracks"] is not None else ""
        print(f"{p}: {len(s['results'])} people in {s['frames']} frames{tracks}, {s['fps']:.1f} frames/s "
              f"-> {s['json']}" + (f", {s['video']}" if s["video"] else ""), file=sys.stdout)
        out.append(s)
    return out
