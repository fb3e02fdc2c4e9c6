"""Does a PoseNet-backed recurrent checkpoint select one person per step? Scored on the first N
images of a ``benchmark methods --backbone posenet_mobilenet`` output's held-out splits:

- purity: of a step's joints (before the stop) that lie within 3 grid cells of a true joint of
  the same type, the share that belongs to the step's majority person (1: one person per step);
  also for the first step alone;
- the steps taken per image, the distinct majority people among them, the people annotated;
- the same purity of the joint prior itself (every step replaced by PoseNet's joints: what
  "no selection" gives);
- AP of the checkpoint, and of the trivial one-person answer: each joint at the argmax of the
  prior, placed by the offsets, one person per image.

    python experiments/posenet/recurrent_selection.py CKPT BENCH_DIR [N] [KEY=VALUE ...]

KEY=VALUE: test options (``stop_threshold=0``), read as YAML."""
import sys
from pathlib import Path

import numpy as np
import yaml

from posegroup.engine.benchmark import open_split, predict_split, timed_predictor
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import score_results
from posegroup.engine.predict import inference_options
from posegroup.methods.recurrent import decode as rdecode


def splits(bench: Path) -> dict:
    out = {s: (str(bench / f"data/{s}/annotations.json"), None) for s in ("sparse", "medium", "heavy")}
    out["real_val2017"] = (str(bench / "data/real_val2017/annotations.json"), "../shared/data/coco_images")
    return out


def step_owners(heat: np.ndarray, truth: np.ndarray, joint_threshold: float) -> np.ndarray:
    """heat (J, H, W) one step, truth (N, J, 3) grid cells -> the true person owning each of the
    step's found joints within 3 cells (-1: none)."""
    j, _, w = heat.shape
    flat = heat.reshape(j, -1)
    y, x = np.divmod(flat.argmax(1), w)
    d = np.linalg.norm(truth[:, :, :2] - np.stack([x + 0.5, y + 0.5], 1)[None], axis=-1)
    d[truth[..., 2] <= 0] = np.inf
    near = (flat.max(1) >= joint_threshold) & (d.min(0) < 3)
    return np.where(near, d.argmin(0), -1)


def purity(method, model, settings, ds, ids, use_prior: bool) -> str:
    pur, first, distinct, steps, people = [], [], 0, 0, 0
    for iid in ids:
        outs = method.network_outputs(model, ds.load_image(iid), settings=settings)
        truth = ds.annotations(iid)["keypoints"].astype(np.float64)
        truth = truth[(truth[..., 2] > 0).any(1)]
        truth[..., :2] *= outs.factor / outs.stride
        people += len(truth)
        k = rdecode.num_people(outs.stop_probs, settings.stop_threshold)
        steps += k
        majors = set()
        for t in range(k if len(truth) else 0):
            owners = step_owners(outs.prior if use_prior else outs.heatmaps[t], truth, settings.joint_threshold)
            counts = np.bincount(owners[owners >= 0], minlength=len(truth))
            if counts.sum():
                pur.append(counts.max() / counts.sum())
                first += [pur[-1]] if t == 0 else []
                majors.add(int(counts.argmax()))
        distinct += len(majors)
    n = len(ids)
    return (f"purity {np.mean(pur):.2f} (first step {np.mean(first):.2f}), steps per image {steps / n:.2f}, "
            f"distinct majority people {distinct / n:.2f}, annotated {people / n:.2f}")


def trivial_ap(method, model, opts, ds, ids) -> float:
    """AP of one person per image: each joint at the argmax of the prior (placed as the steps are)."""
    plain = type(method).network_outputs

    def prior_only(self, *a, **k):
        o = plain(self, *a, **k)
        return o._replace(heatmaps=o.prior[None], stop_probs=np.ones(1, np.float32))
    type(method).network_outputs = prior_only
    try:
        res = predict_split(timed_predictor(model, method, opts), ds, ids)
    finally:
        type(method).network_outputs = plain
    return score_results(str(ds.ann_file), res["results"], ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]


def main(ckpt, bench, n=30, *options):
    model, method, config = load_model(ckpt)[:3]
    if method.settings.joint_prior == "none":
        raise SystemExit(f"{ckpt}: the purity of the prior needs a checkpoint with joint_prior")
    opts = {**inference_options(config, method), **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options)}}
    settings = method.inference_settings(opts)
    for name, (ann, root) in splits(Path(bench)).items():
        ds, ids = open_split(ann, method.keypoint_set, int(n), root)
        res = predict_split(timed_predictor(model, method, opts), ds, ids)
        ap = score_results(str(ds.ann_file), res["results"], ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]
        print(f"{name}: AP {ap:.3f}, trivial one-person AP {trivial_ap(method, model, opts, ds, ids):.3f}", flush=True)
        print(f"  steps: {purity(method, model, settings, ds, ids, False)}", flush=True)
        print(f"  prior: {purity(method, model, settings, ds, ids, True)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
