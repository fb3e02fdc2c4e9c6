"""python experiments/crowds/joint_ceiling.py CKPT [perfect]: how well an AE checkpoint's heatmaps
locate each true joint, apart from detection and grouping (docs/crowds.md, why heavy stays low).

For every labelled joint of the first 60 images of val_sparse and val_heavy: the highest heatmap
cell within 2 cells of it (cell j's centre at j + 0.5, the AE decoder's convention), moved a
quarter cell towards its higher neighbour, scored by COCO's
per-keypoint OKS term exp(-d^2 / (2 area (2 sigma_k)^2)) (area: the annotation's, i.e. the
person's visible area). Printed per visibility (v = 1 occluded, v = 2 visible) and per joint.
``perfect``: the same on the AE targets (:func:`posegroup.methods.ae.targets.gaussian_heatmaps`,
sigma 2 cells) of the true joints instead."""
import sys

import numpy as np
from common import split_anns

from posegroup.engine.benchmark import open_split
from posegroup.engine.checkpoint import load_model
from posegroup.engine.predict import inference_options
from posegroup.methods.common import subpixel_offsets
from posegroup.methods.ae.targets import gaussian_heatmaps

R = 2                                   # search window radius, cells


def local_peaks(heat, kps, scale):
    """Oracle-located joints: for each labelled joint, the highest heatmap cell of its type within
    R cells of the truth, moved by the decoder's quarter-cell rule
    (:func:`posegroup.methods.common.subpixel_offsets`).

    heat: (K, H, W) heatmaps; kps: (N, K, 3) true joints, image px; scale: grid cells per px.
    Returns (N, K, 3): x, y (image px) and the peak value; NaN for unlabelled joints and joints
    whose window lies off the grid."""
    K, H, W = heat.shape
    out = np.full(kps.shape, np.nan)
    n, k = np.nonzero(kps[..., 2] > 0)
    cx = np.floor(kps[n, k, 0] * scale).astype(np.int64)            # the cell holding the joint
    cy = np.floor(kps[n, k, 1] * scale).astype(np.int64)
    d = np.arange(-R, R + 1)
    wy, wx = cy[:, None, None] + d[None, :, None], cx[:, None, None] + d[None, None, :]
    inside = (wy >= 0) & (wy < H) & (wx >= 0) & (wx < W)
    vals = np.where(inside, heat[k[:, None, None], wy.clip(0, H - 1), wx.clip(0, W - 1)], -np.inf)
    best = vals.reshape(len(k), -1).argmax(1)
    py, px = wy[np.arange(len(k)), best // (2 * R + 1), 0], wx[np.arange(len(k)), 0, best % (2 * R + 1)]
    ok = inside.reshape(len(k), -1).any(1)
    n, k, py, px = n[ok], k[ok], py[ok], px[ok]
    dx, dy = subpixel_offsets(heat, k, py, px, "quarter")
    out[n, k] = np.stack([(px + 0.5 + dx) / scale, (py + 0.5 + dy) / scale, heat[k, py, px]], 1)
    return out


def joint_terms(heat, kps, areas, scale, var):
    """(joint, v, OKS term) rows of every labelled joint located by :func:`local_peaks`.
    var: (K,) (2 sigma_k)^2; areas: (N,) the annotations' areas."""
    peaks = local_peaks(heat, kps, scale)
    n, k = np.nonzero(np.isfinite(peaks[..., 0]))
    d2 = ((peaks[n, k, :2] - kps[n, k, :2]) ** 2).sum(1)
    area = np.asarray(areas, np.float64)[n]
    return np.stack([k, kps[n, k, 2], np.exp(-d2 / (2 * var[k] * (area + np.spacing(1))))], 1)


def main(ckpt, perfect=False):
    model, method, cfg = load_model(ckpt)
    opts = inference_options(cfg, method)
    net = {k: opts[k] for k in ("input_size", "scales", "flip") if k in opts}
    var = (2 * method.keypoint_set.sigmas_array) ** 2
    for split in ("sparse", "heavy"):
        ds, ids = open_split(split_anns((split,))[split], method.keypoint_set, 60)
        rows = [np.zeros((0, 3))]
        for i in ids:
            anns = [a for a in ds.anns[i] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0]
            kps = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns], np.float64)
            heat, _, f, st = method.network_outputs(model, ds.load_image(i), **net)[:4]
            if perfect:
                grid_kps = kps.copy()
                grid_kps[..., :2] *= f / st
                heat = gaussian_heatmaps(grid_kps, heat.shape[1:], sigma=2.0)
            rows.append(joint_terms(heat, kps, [a["area"] for a in anns], f / st, var))
        t = np.concatenate(rows)
        for v in (1, 2):
            sel = t[:, 1] == v
            print(f"{split} v={v}: {sel.sum()} joints, mean OKS term {t[sel, 2].mean():.3f}")
        print(f"{split} all: mean {t[:, 2].mean():.3f}; per joint",
              [round(float(t[t[:, 0] == k, 2].mean()), 2) for k in range(len(var))], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], perfect=len(sys.argv) > 2 and sys.argv[2] == "perfect")
