"""python experiments/issue8/joint_ceiling.py CKPT [perfect]: how well an AE checkpoint's heatmaps
locate each true joint, apart from detection and grouping (README "Crowds", why heavy stays low).

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
from posegroup.engine.predict import test_options
from posegroup.methods.ae.decode import subpixel_offsets
from posegroup.methods.ae.targets import gaussian_heatmaps

R = 2                                   # search window radius, cells


def joint_terms(heat, kps, areas, scale, var):
    """(joint, v, OKS term) rows of every labelled joint: best peak within R cells of it, moved
    by the decoder's quarter-cell rule (:func:`posegroup.methods.ae.decode.subpixel_offsets`)."""
    rows, peaks = [], []
    for p, area in zip(kps, areas):
        for k in np.flatnonzero(p[:, 2] > 0):
            gx, gy = p[k, 0] * scale, p[k, 1] * scale
            cx, cy = int(np.floor(gx)), int(np.floor(gy))            # the cell holding the joint
            x0, y0 = max(cx - R, 0), max(cy - R, 0)
            win = heat[k, y0:cy + R + 1, x0:cx + R + 1]
            if win.size == 0:
                continue
            py, px = np.unravel_index(np.argmax(win), win.shape)
            rows.append((k, p[k, 2], gx, gy, area))
            peaks.append((py + y0, px + x0))
    if not rows:
        return np.zeros((0, 3))
    k, v, gx, gy, area = np.array(rows).T
    py, px = np.array(peaks).T
    ki = k.astype(np.int64)
    dx, dy = subpixel_offsets(heat, ki, py, px, "quarter")
    d2 = ((px + 0.5 + dx - gx) ** 2 + (py + 0.5 + dy - gy) ** 2) / scale ** 2
    return np.stack([k, v, np.exp(-d2 / (2 * var[ki] * (area + np.spacing(1))))], 1)


def main(ckpt, perfect=False):
    model, method, cfg = load_model(ckpt)
    opts = test_options(cfg, method)
    net = {k: opts[k] for k in ("input_size", "scales", "flip") if k in opts}
    var = (2 * method.keypoint_set.sigmas_array) ** 2
    for split in ("sparse", "heavy"):
        ds, ids = open_split(split_anns((split,))[split], method.keypoint_set, 60)
        rows = [np.zeros((0, 3))]
        for i in ids:
            anns = [a for a in ds.anns[i] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0]
            kps = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns], np.float64)
            heat, _, f, st = method.network_outputs(model, ds.load_image(i), **net)
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
