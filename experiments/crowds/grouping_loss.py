"""python experiments/crowds/grouping_loss.py CKPT N split[,split...]: where AE's predicted tags
lose people, against the true-id ceiling.

Per split (first N images), with the checkpoint's own test options:
  * AP of the prediction, and AP with every predicted person's score replaced by its best OKS
    against the image's true people (perfect ranking: what the person scores cost);
  * the tags at the true joints (flip-averaged network, scale 1): each joint's distance to its
    person's mean tag (visible v = 2 and occluded v = 1 joints apart), and the distances between
    the mean tags of the people of one image (fraction under 1, 2, 4; the decoder's tag threshold
    is 2 in the bundled config).
Tags are read at the true joints' cells; people with fewer than two labelled joints are skipped.
"""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from common import split_anns

from posegroup.engine.benchmark import open_split
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import evaluate_results
from posegroup.engine.predict import inference_options
from posegroup.evaluation import to_coco_results


def best_oks(pose: np.ndarray, truth: list[dict], sigmas: np.ndarray) -> float:
    """COCO OKS of one predicted pose (K, 3) against the best of ``truth`` (annotation dicts)."""
    var = (2 * sigmas) ** 2
    best = 0.0
    for g in truth:
        gk = np.asarray(g["keypoints"], float).reshape(-1, 3)
        vis = gk[:, 2] > 0
        if vis.any():
            e = ((pose[:, :2] - gk[:, :2]) ** 2).sum(1) / var / (g["area"] + np.spacing(1)) / 2
            best = max(best, float(np.exp(-e[vis]).mean()))
    return best


def tag_spread(tag: np.ndarray, kp: np.ndarray) -> tuple[list, list, list]:
    """(distances of visible joints' tags to their person's mean, the same for occluded joints,
    distances between the people's mean tags) of one image; tag (K, H, W, D), kp (N, K, 3) on the grid."""
    vis_d, occ_d, means = [], [], []
    for p in kp:
        js = np.nonzero(p[:, 2] > 0)[0]
        if js.size < 2:
            continue
        x = np.clip(p[js, 0].astype(int), 0, tag.shape[2] - 1)
        y = np.clip(p[js, 1].astype(int), 0, tag.shape[1] - 1)
        t = tag[js, y, x]                                               # (n, D)
        d = np.linalg.norm(t - t.mean(0), axis=1)
        vis_d += list(d[p[js, 2] == 2])
        occ_d += list(d[p[js, 2] == 1])
        means.append(t.mean(0))
    gaps = [float(np.linalg.norm(a - b)) for i, a in enumerate(means) for b in means[i + 1:]]
    return vis_d, occ_d, gaps


def run_split(model, method, opts, ann: str, n: int) -> None:
    ds, ids = open_split(ann, method.keypoint_set, n)
    sigmas = np.asarray(method.keypoint_set.sigmas_array, float)
    truth = {}
    for a in json.loads(Path(ann).read_text())["annotations"]:
        truth.setdefault(a["image_id"], []).append(a)
    results, ranked, vis_d, occ_d, gaps = [], [], [], [], []
    for i in ids:
        img = ds.load_image(i)
        with torch.inference_mode():
            poses, scores = method.predict(model, img, **opts)[:2]
            _, tag, factor, stride = method.network_outputs(model, img, input_size=int(opts["input_size"]),
                                                            flip=True, scales=[1.0], multiscale_tags="scale1")[:4]
        res = to_coco_results(i, poses, scores)
        results += res
        for r in copy.deepcopy(res):
            r["score"] = best_oks(np.asarray(r["keypoints"], float).reshape(-1, 3), truth.get(i, []), sigmas)
            ranked.append(r)
        kp = ds.annotations(i, with_masks=False)["keypoints"].copy()
        kp[..., :2] *= factor / stride
        v, o, g = tag_spread(np.asarray(tag), kp)
        vis_d, occ_d, gaps = vis_d + v, occ_d + o, gaps + g

    def ap(r):
        return evaluate_results(ann, r, keypoint_set=method.keypoint_set, image_ids=ids)["AP"] if r else 0.0

    gaps = np.asarray(gaps)
    print(f"{Path(ann).parent.name}: AP {ap(results):.3f}, with perfect person scores {ap(ranked):.3f} | tag to own mean, "
          f"median (p90): visible {np.median(vis_d):.2f} ({np.percentile(vis_d, 90):.2f}), occluded "
          + (f"{np.median(occ_d):.2f} ({np.percentile(occ_d, 90):.2f})" if occ_d else "-")
          + f" | between people: median {np.median(gaps):.2f}, under 1 / 2 / 4: {(gaps < 1).mean():.2f} / "
          f"{(gaps < 2).mean():.2f} / {(gaps < 4).mean():.2f} ({gaps.size} pairs)", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    ckpt, n, splits = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    model, method, config = load_model(ckpt)
    opts = inference_options(config, method)
    anns = split_anns(splits)
    for s in splits:
        run_split(model, method, opts, anns[s], n)
