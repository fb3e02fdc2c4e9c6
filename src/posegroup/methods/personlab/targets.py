"""PersonLab training targets (SPEC section 2; Papandreou et al., ECCV 2018).

All offsets are (x, y) vectors in *input* pixels. Output cell (i, j) sits at input position
``(j * stride + grid_offset, i * stride + grid_offset)``; for this project's networks
``grid_offset = stride / 2`` (cell centres in the continuous-pixel convention of
docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def cell_positions(output_size: tuple[int, int], stride: float, grid_offset: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel positions of the output cells.

    Returns ``(px, py)``, each (H, W) float32: ``px[i, j] = j * stride + grid_offset``,
    ``py[i, j] = i * stride + grid_offset``; ``grid_offset`` defaults to ``stride / 2``.
    """
    h, w = output_size
    off = stride / 2.0 if grid_offset is None else float(grid_offset)
    xs = np.arange(w, dtype=np.float32) * stride + off
    ys = np.arange(h, dtype=np.float32) * stride + off
    px, py = np.meshgrid(xs, ys)
    return px, py


def _sample_mask(mask: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Nearest sample of an input-resolution mask (..., H_in, W_in) at positions (H, W)."""
    h_in, w_in = mask.shape[-2:]
    cols = np.clip(np.floor(px).astype(np.int64), 0, w_in - 1)
    rows = np.clip(np.floor(py).astype(np.int64), 0, h_in - 1)
    return mask[..., rows, cols]


def encode(keypoints: np.ndarray, instance_masks: np.ndarray | None, ignore_mask: np.ndarray | None,
           output_size: tuple[int, int], stride: float, *, edges: Sequence[tuple[int, int]],
           radius: float = 32.0, grid_offset: float | None = None) -> dict[str, np.ndarray]:
    """PersonLab targets for one image.

    Args:
        keypoints: (N, K, 3) x, y, v in input pixels; v > 0 means labelled.
        instance_masks: (N, H_in, W_in) person masks (non-zero = person) or None.
        ignore_mask: (H_in, W_in) bool, True where the loss is ignored, or None.
        output_size: (H, W) of the network output.
        stride: input pixels per output cell.
        edges: directed (source, target) keypoint pairs, in mid-offset channel order
            (``keypoint_set.directed_edges``: both directions of the tree, E = 2 (K - 1)).
        radius: disk radius R in input pixels (SPEC / paper: 32).
        grid_offset: input position of cell (0, 0); default ``stride / 2``.

    Returns (float32 unless said):
        heatmaps (K, H, W): 1 where the cell is within R of keypoint k of any person.
        short_offsets (K, H, W, 2): y_{j,k} - x for the nearest person j with keypoint k
            labelled (0 outside the disks).
        mid_offsets (E, H, W, 2): for edge (k, l), y_{j,l} - x on the disk of y_{j,k} (person j
            with both labelled; the nearest such y_{j,k} where disks overlap).
        long_offsets (K, H, W, 2): y_{j,k} - x on the pixels of instance j (where several
            instances overlap, the one with the smallest mask wins: it is usually in front).
            Without instance masks the instance's pixels are the union of its keypoint disks.
        segmentation (H, W): 1 on any instance pixel.
        valid_mask (H, W): 1 - ignore (weights the heatmap and segmentation losses).
        short_weights (K, H, W), mid_weights (E, H, W), long_weights (K, H, W): where each
            offset target is defined, times valid_mask.
    Masks are sampled at the cell positions (nearest input pixel).
    """
    kps = np.asarray(keypoints, dtype=np.float32)
    if kps.ndim != 3 or kps.shape[-1] != 3:
        raise ValueError(f"keypoints must be (N, K, 3), got shape {kps.shape}")
    n, k_num = kps.shape[:2]
    h, w = output_size
    edges = _checked_edges(edges, k_num)
    e_num = len(edges)
    px, py = cell_positions((h, w), stride, grid_offset)
    pos = np.stack([px, py], axis=-1)  # (H, W, 2)

    if ignore_mask is not None:
        valid = 1.0 - _sample_mask(np.asarray(ignore_mask).astype(bool), px, py).astype(np.float32)
    else:
        valid = np.ones((h, w), np.float32)

    heat = np.zeros((k_num, h, w), np.float32)
    short = np.zeros((k_num, h, w, 2), np.float32)
    mid = np.zeros((e_num, h, w, 2), np.float32)
    mid_w = np.zeros((e_num, h, w), np.float32)
    long_ = np.zeros((k_num, h, w, 2), np.float32)
    long_w = np.zeros((k_num, h, w), np.float32)
    seg = np.zeros((h, w), np.float32)

    if n > 0:
        lab = kps[..., 2] > 0  # (N, K)
        xy = kps[..., :2]
        # displacement from every cell to every keypoint: (N, K, H, W, 2)
        disp = xy[:, :, None, None, :] - pos[None, None]
        dist2 = np.einsum("nkhwc,nkhwc->nkhw", disp, disp)
        dist2 = np.where(lab[:, :, None, None], dist2, np.inf)
        in_disk = dist2 <= radius * radius  # (N, K, H, W)
        heat = in_disk.any(axis=0).astype(np.float32)
        nearest = np.argmin(dist2, axis=0)  # (K, H, W)
        short = np.take_along_axis(disp, nearest[None, ..., None], axis=0)[0] * heat[..., None]

        mid, mid_w = _mid_targets(xy, lab, dist2, pos, edges, radius)
        long_, long_w, seg = _long_targets(disp, lab, in_disk, instance_masks, px, py)

    return {
        "heatmaps": heat,
        "short_offsets": short.astype(np.float32),
        "mid_offsets": mid,
        "long_offsets": long_.astype(np.float32),
        "segmentation": seg,
        "valid_mask": valid,
        "short_weights": heat * valid[None],
        "mid_weights": mid_w * valid[None],
        "long_weights": long_w * valid[None],
    }


def _checked_edges(edges: Sequence[tuple[int, int]], k_num: int) -> list[tuple[int, int]]:
    """``edges`` as int pairs; ValueError for a keypoint index outside [0, k_num)."""
    edges = [(int(a), int(b)) for a, b in edges]
    for a, b in edges:
        if not (0 <= a < k_num and 0 <= b < k_num):
            raise ValueError(f"edge ({a}, {b}) out of range for {k_num} keypoints")
    return edges


def _mid_targets(xy: np.ndarray, lab: np.ndarray, dist2: np.ndarray, pos: np.ndarray,
                 edges: list[tuple[int, int]], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Mid-range targets of :func:`encode`: (E, H, W, 2) offsets y_{j,l} - x on the disk of
    y_{j,k} for each edge (k, l) (the nearest such person j with both labelled) and the (E, H, W)
    weights. ``xy`` (N, K, 2), ``lab`` (N, K) bool, ``dist2`` (N, K, H, W) squared distances
    (inf where unlabelled), ``pos`` (H, W, 2) cell positions."""
    h, w = pos.shape[:2]
    mid = np.zeros((len(edges), h, w, 2), np.float32)
    mid_w = np.zeros((len(edges), h, w), np.float32)
    for e, (a, b) in enumerate(edges):
        both = lab[:, a] & lab[:, b]
        if not both.any():
            continue
        d2 = np.where(both[:, None, None], dist2[:, a], np.inf)  # (N, H, W)
        j = np.argmin(d2, axis=0)
        inside = np.take_along_axis(d2, j[None], axis=0)[0] <= radius * radius
        target = xy[j, b] - pos  # (H, W, 2)
        mid[e] = target * inside[..., None]
        mid_w[e] = inside
    return mid, mid_w


def _long_targets(disp: np.ndarray, lab: np.ndarray, in_disk: np.ndarray, instance_masks,
                  px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long-range targets of :func:`encode`: (K, H, W, 2) offsets to the keypoints of the
    instance owning each cell (the smallest mask covering it; without masks the union of its
    keypoint disks), their (K, H, W) weights, and the (H, W) segmentation. ``disp`` (N, K, H, W, 2)
    keypoint - cell, ``lab`` (N, K), ``in_disk`` (N, K, H, W), ``instance_masks`` (N, H_in, W_in)
    or None, ``px``/``py`` (H, W) cell positions."""
    n = disp.shape[0]
    if instance_masks is not None:
        masks = np.asarray(instance_masks)
        if masks.shape[0] != n:
            raise ValueError(f"{masks.shape[0]} instance masks for {n} people")
        cell_masks = _sample_mask(masks != 0, px, py)  # (N, H, W)
        areas = (masks != 0).reshape(n, -1).sum(axis=1).astype(np.float64)
    else:
        cell_masks = in_disk.any(axis=1)
        areas = cell_masks.reshape(n, -1).sum(axis=1).astype(np.float64)
    seg = cell_masks.any(axis=0).astype(np.float32)
    # owner = the smallest instance covering the cell
    cost = np.where(cell_masks, areas[:, None, None], np.inf)
    owner = np.argmin(cost, axis=0)
    covered = cell_masks.any(axis=0)
    long_ = np.take_along_axis(disp, owner[None, None, ..., None], axis=0)[0]
    long_w = (lab[owner].transpose(2, 0, 1) & covered[None]).astype(np.float32)  # (K, H, W)
    return long_ * long_w[..., None], long_w, seg


def impute_unlabelled(keypoints: np.ndarray, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Give every unlabelled keypoint the position of the nearest labelled keypoint along the
    (undirected) tree, v = 1. For *perfect-output* experiments only: a trained network predicts
    mid-range offsets through unlabelled joints too, while :func:`encode` (the training target)
    defines them only between labelled joints, so perfect outputs built from :func:`encode`
    alone leave a person's tree disconnected wherever a joint is unlabelled.

    keypoints (N, K, 3) -> (N, K, 3) copy (people with no labelled keypoint unchanged).
    """
    kps = np.array(keypoints, dtype=np.float64, copy=True)
    k = kps.shape[1]
    adj: list[set[int]] = [set() for _ in range(k)]
    for a, b in edges:
        adj[int(a)].add(int(b))
        adj[int(b)].add(int(a))
    for person in kps:
        lab = person[:, 2] > 0
        if lab.all() or not lab.any():
            continue
        # multi-source BFS from the labelled keypoints
        src = {i: i for i in np.nonzero(lab)[0].tolist()}
        frontier = list(src)
        while frontier:
            nxt = []
            for u in frontier:
                for v in sorted(adj[u]):
                    if v not in src:
                        src[v] = src[u]
                        nxt.append(v)
            frontier = nxt
        for v, s in src.items():
            if not lab[v]:
                person[v, :2] = person[s, :2]
                person[v, 2] = 1
    return kps
