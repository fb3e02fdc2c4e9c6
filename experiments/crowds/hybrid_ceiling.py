"""python experiments/crowds/hybrid_ceiling.py CKPT [N]: which joints hold the heavy split back.
COCO AP of people built from the true people (true detection, true grouping), each joint taken
either from the truth or from the AE checkpoint's heatmaps (:func:`joint_ceiling.local_peaks`:
the best peak within 2 cells of the true joint), on the first N (default 100) images of
val_sparse, val_medium and val_heavy:

- ``network``: every joint from the heatmaps (the localisation ceiling of the checkpoint);
- ``visible true``: visible joints (v = 2) true, occluded ones (v = 1) from the heatmaps;
- ``occluded true``: occluded joints true, visible ones from the heatmaps;
- ``visible true, occluded missing``: visible joints true, occluded joints not predicted (placed
  far away, OKS term 0): what seeing is worth when nothing is inferred behind an occluder;
- ``visible true, occluded from the pose prior``: visible joints true, occluded ones guessed from
  them by the training set's poses alone (:func:`prior_guess`, nearest complete training people
  under scale + translation): how far hidden joints can be inferred from the visible body;
- ``network, occluded from the pose prior``: the same prior fitted to the network's visible joints;
- ``all true``: the truth itself (AP 1, a check of the plumbing).

A person's score is the mean heatmap peak of its located joints (the same for every variant), so
the ranking COCOeval sees comes from the network. Joints the heatmaps cannot place (window off the
grid) count as missing."""
import sys

import numpy as np
from common import SYNTH, split_anns
from joint_ceiling import local_peaks

from posegroup.engine.benchmark import coco_scores, open_split
from posegroup.engine.checkpoint import load_model
from posegroup.engine.predict import inference_options
from posegroup.evaluation import coco_layouts, to_coco_results

VARIANTS = {                             # name: (source of visible joints, of occluded joints)
    "network": ("network", "network"),
    "visible true": ("truth", "network"),
    "occluded true": ("network", "truth"),
    "visible true, occluded missing": ("truth", "missing"),
    "visible true, occluded from the pose prior": ("truth", "prior"),
    "network, occluded from the pose prior": ("network", "network prior"),
    "all true": ("truth", "truth"),
}
NEIGHBOURS = 8


def pose_bank(ann_file) -> np.ndarray:
    """(M, K, 2) the complete people (every joint labelled, v > 0) of a COCO keypoint json."""
    kps = np.concatenate([im["keypoints"] for im in coco_layouts(ann_file)])
    return kps[(kps[..., 2] > 0).all(1), :, :2]


def prior_guess(kps, bank, xy=None, k=NEIGHBOURS):
    """Occluded joints guessed from the visible ones by the pose prior alone: the ``k`` bank poses
    whose visible joints best fit the person's under a scale + translation (least squares, no
    rotation), their occluded joints mapped the same way, the median taken.

    kps: (N, K, 3) true joints (their v says which are visible); bank: (M, K, 2); xy: (N, K, 2)
    the visible joints' positions to fit (default the true ones; NaN = not located). Returns
    (N, K, 2); NaN for people with < 2 located visible joints (no scale to fit) and for joints
    that are not occluded."""
    xy = kps[..., :2] if xy is None else xy
    out = np.full(kps[..., :2].shape, np.nan)
    for n, person in enumerate(kps):
        vis, occ = (person[:, 2] == 2) & np.isfinite(xy[n, :, 0]), person[:, 2] == 1
        if vis.sum() < 2 or not occ.any():
            continue
        target = xy[n, vis]
        mu_t, mu_b = target.mean(0), bank[:, vis].mean(1, keepdims=True)     # (2,), (M, 1, 2)
        a, b = bank[:, vis] - mu_b, target - mu_t                            # (M, V, 2), (V, 2)
        scale = (a * b).sum((1, 2)) / np.maximum((a * a).sum((1, 2)), 1e-9)   # (M,)
        resid = ((scale[:, None, None] * a - b) ** 2).sum((1, 2))
        best = np.argpartition(resid, k)[:k]
        guess = scale[best, None, None] * (bank[best][:, occ] - mu_b[best]) + mu_t
        out[n, occ] = np.median(guess, 0)
    return out


def hybrid_poses(kps, peaks, priors, far, visible_from, occluded_from):
    """kps: (N, K, 3) true joints; peaks: (N, K, 3) :func:`local_peaks`; priors: (N, K, 2)
    :func:`prior_guess` fitted to the true visible joints, (N, K, 2) fitted to the
    network's ones; far: where a missing joint is put (x = y = far, outside the image: OKS
    term 0); ``*_from``: "truth", "network", "prior", "network prior" or "missing". Returns (N, K, 3) poses
    (x, y, 1) and (N,) scores (mean peak value of each person's located joints)."""
    v = kps[..., 2]
    sources = {"truth": kps[..., :2], "network": peaks[..., :2], "prior": priors[0],
               "network prior": priors[1], "missing": np.full(priors[0].shape, np.nan)}
    poses = np.full(priors[0].shape, np.nan)
    for sel, source in ((v == 2, sources[visible_from]), (v == 1, sources[occluded_from])):
        poses[sel] = source[sel]
    poses = np.where(np.isfinite(poses), poses, far)          # missing and unlabelled joints
    scores = np.nan_to_num(np.nanmean(np.where(v > 0, peaks[..., 2], np.nan), axis=1), nan=0.0)
    return np.concatenate([poses, np.ones_like(poses[..., :1])], -1), scores


def main(ckpt, n_images=100):
    model, method, cfg = load_model(ckpt)
    opts = inference_options(cfg, method)
    net = {k: opts[k] for k in ("input_size", "scales", "flip") if k in opts}
    table = {}
    bank = pose_bank(SYNTH / "train_mixed" / "annotations.json")
    for split, ann in split_anns().items():
        ds, ids = open_split(ann, method.keypoint_set, n_images)
        results = {name: [] for name in VARIANTS}
        for i in ids:
            kps = ds.annotations(i, with_masks=False)["keypoints"].astype(np.float64)
            if not len(kps):
                continue
            image = ds.load_image(i)
            heat, _, f, st = method.network_outputs(model, image, **net)[:4]
            far = -4.0 * max(image.shape[:2])            # evaluate() refuses joints beyond 10x the size
            peaks = local_peaks(heat, kps, f / st)
            priors = prior_guess(kps, bank), prior_guess(kps, bank, peaks[..., :2])
            for name, flags in VARIANTS.items():
                results[name] += to_coco_results(i, *hybrid_poses(kps, peaks, priors, far, *flags))
        table[split] = {name: coco_scores(ann, r, ids)["AP"] for name, r in results.items()}
        print(split, {name: round(ap, 3) for name, ap in table[split].items()}, flush=True)
    print(f"\n| joints | {' | '.join(table)} |\n|---|{'---|' * len(table)}")
    for name in VARIANTS:
        print(f"| {name} | " + " | ".join(f"{table[s][name]:.3f}" for s in table) + " |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
