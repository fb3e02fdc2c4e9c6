"""Person tracks across video frames: a Hungarian match (scipy ``linear_sum_assignment``) of the
object keypoint similarity (OKS) between each frame's people and the tracks seen in the last
``max_gap + 1`` frames, each extrapolated to the current frame at its last velocity (the mean
joint displacement per frame between its last two matches: a person missed for a few frames
is looked for where it walked to). A track not matched for more than ``max_gap`` frames ends; a person that
matches no track (OKS below ``oks_threshold`` against all) starts a new one (ids 0, 1, 2 ... in
order of appearance, never reused).

OKS as in COCO: ``mean_j exp(-d_j^2 / (2 * area * (2 sigma_j)^2))`` over the joints confident
(score >= ``keypoint_threshold``) in both poses, ``area`` the box area of the track's last pose.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def pose_area(pose: np.ndarray, keypoint_threshold: float = 0.1) -> float:
    """Area (px^2) of the box around the confident joints of ``pose`` (K, 3) (at least 1)."""
    ok = pose[:, 2] >= keypoint_threshold
    if ok.sum() < 2:
        return 1.0
    wh = pose[ok, :2].max(0) - pose[ok, :2].min(0)
    return max(float(wh[0] * wh[1]), 1.0)


def oks_matrix(tracks: np.ndarray, people: np.ndarray, sigmas, keypoint_threshold: float = 0.1) -> np.ndarray:
    """OKS (T, N) between poses ``tracks`` (T, K, 3) (their boxes give the areas) and ``people``
    (N, K, 3); 0 where no joint is confident in both."""
    tracks = np.asarray(tracks, np.float64).reshape(len(tracks), -1, 3)
    people = np.asarray(people, np.float64).reshape(len(people), -1, 3)
    out = np.zeros((len(tracks), len(people)))
    if not len(tracks) or not len(people):
        return out
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2                                  # (K,)
    areas = np.array([pose_area(t, keypoint_threshold) for t in tracks])               # (T,)
    d2 = ((tracks[:, None, :, :2] - people[None, :, :, :2]) ** 2).sum(-1)              # (T, N, K)
    both = (tracks[:, None, :, 2] >= keypoint_threshold) & (people[None, :, :, 2] >= keypoint_threshold)
    e = np.exp(-d2 / (2.0 * areas[:, None, None] * var))
    n = both.sum(-1)
    np.divide((e * both).sum(-1), n, out=out, where=n > 0)
    return out


@dataclass
class Track:
    id: int
    pose: np.ndarray
    last_frame: int
    length: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def predicted(self, frame: int) -> np.ndarray:
        """The pose extrapolated to ``frame`` at the track's velocity."""
        out = self.pose.copy()
        out[:, :2] += self.velocity * (frame - self.last_frame)
        return out


@dataclass
class Tracker:
    """``update(poses)`` once per frame, in order; returns the track id of each person."""
    sigmas: tuple
    oks_threshold: float = 0.3
    max_gap: int = 5
    keypoint_threshold: float = 0.1
    tracks: list = field(default_factory=list)
    frame: int = -1
    next_id: int = 0

    def __post_init__(self):
        if not 0.0 <= float(self.oks_threshold) <= 1.0:
            raise ValueError(f"oks_threshold must be in [0, 1], got {self.oks_threshold}")
        if int(self.max_gap) < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {self.max_gap}")

    def update(self, poses: np.ndarray) -> list[int]:
        from scipy.optimize import linear_sum_assignment
        self.frame += 1
        poses = np.asarray(poses, np.float64).reshape(len(poses), -1, 3) if len(poses) else np.zeros((0, 0, 3))
        self.tracks = [t for t in self.tracks if self.frame - t.last_frame <= self.max_gap + 1]
        ids = [-1] * len(poses)
        if self.tracks and len(poses):
            oks = oks_matrix(np.stack([t.predicted(self.frame) for t in self.tracks]), poses, self.sigmas,
                             self.keypoint_threshold)
            rows, cols = linear_sum_assignment(-oks)
            for r, c in zip(rows, cols):
                if oks[r, c] >= self.oks_threshold and oks[r, c] > 0:
                    t = self.tracks[r]
                    both = (t.pose[:, 2] >= self.keypoint_threshold) & (poses[c][:, 2] >= self.keypoint_threshold)
                    if both.any():
                        step = (poses[c][both, :2] - t.pose[both, :2]).mean(0)
                        t.velocity = step / max(self.frame - t.last_frame, 1)
                    t.pose, t.last_frame, t.length = poses[c], self.frame, t.length + 1
                    ids[c] = t.id
        for c, i in enumerate(ids):
            if i < 0:
                self.tracks.append(Track(self.next_id, poses[c], self.frame))
                ids[c] = self.next_id
                self.next_id += 1
        return ids
