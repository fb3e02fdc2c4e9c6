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

import numpy as np
import yaml

from posegroup.engine.benchmark import open_split
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import score_results
from posegroup.engine.predict import inference_options
from posegroup.evaluation import to_coco_results
from posegroup.methods.recurrent import decode as rdecode

from common import held_out_splits


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


class Purity:
    """Running purity of steps (one map per step), their first steps and distinct majority people."""

    def __init__(self):
        self.all, self.first, self.distinct = [], [], 0

    def add(self, maps, truth: np.ndarray, joint_threshold: float) -> None:
        majors = set()
        for t, heat in enumerate(maps if len(truth) else []):
            owners = step_owners(heat, truth, joint_threshold)
            counts = np.bincount(owners[owners >= 0], minlength=len(truth))
            if counts.sum():
                self.all.append(counts.max() / counts.sum())
                self.first += [self.all[-1]] if t == 0 else []
                majors.add(int(counts.argmax()))
        self.distinct += len(majors)

    def line(self, images: int, steps: int, people: int) -> str:
        return (f"purity {np.mean(self.all):.2f} (first step {np.mean(self.first):.2f}), steps per image "
                f"{steps / images:.2f}, distinct majority people {self.distinct / images:.2f}, annotated "
                f"{people / images:.2f}")


def score_split(method, model, settings, ds, ids) -> list[str]:
    """One network pass per image: the checkpoint's people and the trivial one-person answer
    (each joint at the argmax of the prior, decoded as the steps are), both scored; the purity of
    the steps before the stop and of the prior in their place. Returns the report's lines."""
    own, trivial, steps, people = [], [], 0, 0
    purity = {"steps": Purity(), "prior": Purity()}
    for iid in ids:
        image = ds.load_image(iid)
        outs = method.network_outputs(model, image, settings=settings)
        alone = outs._replace(heatmaps=outs.prior[None], stop_probs=np.ones(1, np.float32))
        for results, o in ((own, outs), (trivial, alone)):
            poses, scores = method.decode(o, settings, image.shape)[:2]
            results += to_coco_results(iid, poses, scores)
        truth = ds.annotations(iid)["keypoints"].astype(np.float64)
        truth = truth[(truth[..., 2] > 0).any(1)]
        truth[..., :2] *= outs.factor / outs.stride
        k = rdecode.num_people(outs.stop_probs, settings.stop_threshold)
        purity["steps"].add(outs.heatmaps[:k], truth, settings.joint_threshold)
        purity["prior"].add([outs.prior] * k, truth, settings.joint_threshold)
        steps, people = steps + k, people + len(truth)
    ap = [score_results(str(ds.ann_file), r, ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]
          for r in (own, trivial)]
    return [f"AP {ap[0]:.3f}, trivial one-person AP {ap[1]:.3f}"] + [
        f"  {name}: {p.line(len(ids), steps, people)}" for name, p in purity.items()]


def main(ckpt, bench, n=30, *options):
    model, method, config = load_model(ckpt)[:3]
    if method.settings.joint_prior == "none":
        raise SystemExit(f"{ckpt}: the purity of the prior needs a checkpoint with joint_prior")
    opts = {**inference_options(config, method), **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options)}}
    settings = method.inference_settings(opts)
    for name, (ann, root) in held_out_splits(bench).items():
        ds, ids = open_split(ann, method.keypoint_set, int(n), root)
        first, *rest = score_split(method, model, settings, ds, ids)
        print("\n".join([f"{name}: {first}", *rest]), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
