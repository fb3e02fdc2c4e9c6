"""Keypoint sets: names, flip pairs, kinematic tree, OKS sigmas.

Nothing downstream hard-wires 17 keypoints: every module takes a :class:`KeypointSet`
(``COCO17``, ``CROWDPOSE14`` or one read from a COCO json's ``categories``).

Facts from ../shared/SPEC.md section 0 (COCO) and the CrowdPose toolkit (CrowdPose sigmas).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class KeypointSet:
    """A keypoint set.

    Attributes:
        name: short name ("coco17", "crowdpose14", ...).
        names: keypoint names, in channel order, length K.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        edges: kinematic tree, directed (parent, child) pairs, 0-based. K-1 edges for a tree.
        sigmas: (K,) OKS sigmas (COCO's per-keypoint constants).
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] = field(default=())

    def __post_init__(self):
        k = len(self.names)
        if len(self.sigmas) != k:
            raise ValueError(f"keypoint set {self.name!r}: {len(self.sigmas)} sigmas for {k} keypoints")
        for a, b in list(self.flip_pairs) + list(self.edges):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"keypoint set {self.name!r}: index pair ({a}, {b}) out of range 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def flip_index(self) -> list[int]:
        """Permutation to apply to keypoint channels after a horizontal flip."""
        idx = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        return idx

    @property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    @property
    def directed_edges(self) -> list[tuple[int, int]]:
        """Both directions of every tree edge: forward (parent->child) edges, then backward.

        This is PersonLab's mid-range offset order (2 * len(edges) fields).
        """
        fwd = [tuple(e) for e in self.edges]
        return fwd + [(b, a) for a, b in fwd]

    def coco_category(self, cat_id: int = 1) -> dict:
        """A COCO ``categories`` entry (skeleton 1-based, as COCO writes it)."""
        return {
            "supercategory": "person",
            "id": cat_id,
            "name": "person",
            "keypoints": list(self.names),
            "skeleton": [[a + 1, b + 1] for a, b in self.edges],
        }

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_coco_category(cls, category: dict, sigmas=None, name: str | None = None) -> "KeypointSet":
        """Build a keypoint set from a COCO ``categories`` entry.

        Recognised layouts (COCO-17, CrowdPose-14) return the built-in set, whose tree and
        sigmas are known (CrowdPose's json skeleton is wrong). Otherwise flip pairs come from
        ``left_*``/``right_*`` names, the tree from the 1-based ``skeleton`` (made a tree by a
        breadth-first walk from keypoint 0), and sigmas default to 0.05 unless given.
        """
        names = tuple(category.get("keypoints") or ())
        if not names:
            raise ValueError("category has no 'keypoints' list")
        for builtin in (COCO17, CROWDPOSE14):
            if tuple(_canon(n) for n in names) == tuple(_canon(n) for n in builtin.names):
                return builtin
        k = len(names)
        canon = [_canon(n) for n in names]
        flips = []
        for i, n in enumerate(canon):
            if n.startswith("l_"):
                j = canon.index("r_" + n[2:]) if ("r_" + n[2:]) in canon else -1
                if j >= 0:
                    flips.append((i, j))
        raw = [(a - 1, b - 1) for a, b in category.get("skeleton") or [] if 1 <= a <= k and 1 <= b <= k]
        edges = _spanning_tree(k, raw)
        sig = tuple(float(s) for s in sigmas) if sigmas is not None else (0.05,) * k
        return cls(name or category.get("name", "custom"), names, tuple(flips), tuple(edges), sig)


def _canon(n: str) -> str:
    n = n.lower().strip()
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if n.startswith(long):
            n = short + n[len(long):]
    for long, short in (("shoulder", "sho"), ("elbow", "elb"), ("wrist", "wri"), ("ankle", "ank")):
        if n.endswith(long):
            n = n[: -len(long)] + short
    return n


def _spanning_tree(k: int, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Breadth-first tree over undirected ``pairs`` rooted at 0 (then at each unreached node)."""
    adj = {i: [] for i in range(k)}
    for a, b in pairs:
        adj[a].append(b)
        adj[b].append(a)
    seen, edges = set(), []
    for root in range(k):
        if root in seen or (not adj[root] and root != 0):
            continue
        seen.add(root)
        queue = [root]
        while queue:
            u = queue.pop(0)
            for v in adj[u]:
                if v not in seen:
                    seen.add(v)
                    edges.append((u, v))
                    queue.append(v)
    return edges


COCO17 = KeypointSet(
    name="coco17",
    names=("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_sho", "r_sho", "l_elb", "r_elb",
           "l_wri", "r_wri", "l_hip", "r_hip", "l_knee", "r_knee", "l_ank", "r_ank"),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # SPEC section 0: 16 edges, parent -> child (also PoseNet's edge order).
    edges=((0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11), (11, 13), (13, 15),
           (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16)),
    sigmas=(.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
            .087, .087, .089, .089),
)

CROWDPOSE14 = KeypointSet(
    name="crowdpose14",
    names=("l_sho", "r_sho", "l_elb", "r_elb", "l_wri", "r_wri", "l_hip", "r_hip", "l_knee",
           "r_knee", "l_ank", "r_ank", "head", "neck"),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    # Tree rooted at the head: head-neck, neck-shoulders, arms, shoulder-hip, legs.
    edges=((12, 13), (13, 0), (0, 2), (2, 4), (0, 6), (6, 8), (8, 10), (13, 1), (1, 3), (3, 5),
           (1, 7), (7, 9), (9, 11)),
    # CrowdPose toolkit sigmas (crowdposetools/cocoeval.py).
    sigmas=(.079, .079, .072, .072, .062, .062, 0.107, 0.107, .087, .087, .089, .089, .079, .079),
)

BUILTIN = {"coco17": COCO17, "coco": COCO17, "crowdpose14": CROWDPOSE14, "crowdpose": CROWDPOSE14}


def get_keypoint_set(spec: "str | KeypointSet | None" = None, ann_file: "str | Path | None" = None) -> KeypointSet:
    """Resolve a keypoint set: a :class:`KeypointSet`, a built-in name, or the categories of a
    COCO json (``ann_file``). Defaults to COCO-17."""
    if isinstance(spec, KeypointSet):
        return spec
    if spec:
        if spec.lower() in BUILTIN:
            return BUILTIN[spec.lower()]
        raise ValueError(f"unknown keypoint set {spec!r}; built-in: {sorted(set(BUILTIN))}")
    if ann_file is not None:
        with open(ann_file) as f:
            cats = json.load(f).get("categories") or []
        person = [c for c in cats if c.get("keypoints")]
        if not person:
            raise ValueError(f"{ann_file}: no category with a 'keypoints' list")
        return KeypointSet.from_coco_category(person[0])
    return COCO17
