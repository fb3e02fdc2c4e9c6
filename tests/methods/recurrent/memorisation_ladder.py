"""Does the recurrent method learn what it is trained on? A memorisation ladder.

usage (repository root, one training at a time):
  OMP_NUM_THREADS=1 python -m tests.methods.recurrent.memorisation_ladder MODE SEED [--set key=value ...]

MODE "head": the ConvLSTM head trained on the shipped AE network (frozen, ``weights/ae.pt``);
"joint": the same start, the backbone trained too. 16 fixed heavy synthetic scenes (128 px,
``generate_dataset(..., crowding="heavy", seed=0)``), no augmentation, the bundled
``recurrent_tiny_synthetic`` recipe (batch 8, Adam 2e-3, cosine over the last rung's steps or ``--steps``);
the run stops at each rung (300 / 600 / 1200 steps of the same schedule, resumed exactly) and
is scored on the same 16 scenes: COCO AP, the person count against the truth, and where the
joints of matched people land (:func:`joint_shares`). ``--set`` overrides a method option
(``--set stop_weight=4``). Results are appended to ``OUT/results.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

RUNGS = (300, 600, 1200)
#: A predicted joint lies on a true joint when within this many output cells of it.
ON_JOINT_CELLS = 2.0


def oks(pred: np.ndarray, true: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO OKS of pred (K, 3) against true (K, 3) (labelled joints only), area: the person's."""
    lab = true[:, 2] > 0
    if not lab.any():
        return 0.0
    d2 = ((pred[:, :2] - true[:, :2]) ** 2).sum(1)
    e = d2 / (2 * max(area, 1.0) * (2 * sigmas) ** 2)
    return float(np.exp(-e)[lab].mean())


def joint_shares(results: list[dict], gt: dict, sigmas: np.ndarray, radius_px: float) -> dict:
    """Where the joints of matched people land: each predicted person is matched to one true
    person (Hungarian on OKS, pairs with OKS > 0); each of its joints that is labelled in the
    truth and predicted (score > 0) lies on its own person's joint (within ``radius_px``), else
    on the same joint of another person, else on none. Returns the three shares and the count."""
    people: dict = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0:
            people.setdefault(a["image_id"], []).append((np.asarray(a["keypoints"], float).reshape(-1, 3),
                                                         float(a.get("area", 1.0))))
    dets: dict = {}
    for r in results:
        dets.setdefault(r["image_id"], []).append(np.asarray(r["keypoints"], float).reshape(-1, 3))
    counts = {"own": 0, "another": 0, "none": 0}
    for iid, truth in people.items():
        preds = dets.get(iid, [])
        if not preds:
            continue
        score = np.array([[oks(p, t, area, sigmas) for t, area in truth] for p in preds])
        rows, cols = linear_sum_assignment(-score)
        for pi, ti in zip(rows, cols):
            if score[pi, ti] <= 0:
                continue
            pred, own = preds[pi], truth[ti][0]
            for k in np.nonzero((own[:, 2] > 0) & (pred[:, 2] > 0))[0]:
                if np.hypot(*(pred[k, :2] - own[k, :2])) <= radius_px:
                    counts["own"] += 1
                elif any(o[k, 2] > 0 and np.hypot(*(pred[k, :2] - o[k, :2])) <= radius_px
                         for n, (o, _) in enumerate(truth) if n != ti):
                    counts["another"] += 1
                else:
                    counts["none"] += 1
    total = sum(counts.values())
    return {**{f"joints_{k}": (v / total if total else 0.0) for k, v in counts.items()}, "joints_matched": total}


def scenes(out: Path) -> Path:
    """The 16 heavy scenes (made once): their annotations.json."""
    from posegroup.data.synthetic import generate_dataset
    ann = out / "heavy16" / "annotations.json"
    if not ann.is_file():
        generate_dataset(out / "heavy16", 16, crowding="heavy", seed=0, image_size=128, workers=1, progress=False)
    return ann


def config(mode: str, seed: int, ann: Path, run_dir: Path, options: dict, rungs=RUNGS, steps=None) -> dict:
    from posegroup.engine.config import load_config
    import posegroup
    cfg = load_config("recurrent_tiny_synthetic", require_training=False)
    cfg["method"]["options"].update(options)
    cfg["model"].update(init_from=str(Path(posegroup.__file__).parent / "weights" / "ae.pt"),
                        freeze_backbone=(mode == "head"))
    cfg["data"].update(train_ann=str(ann), val_ann=None)
    cfg["data"]["augmentation"]["enabled"] = False
    cfg["train"].update(seed=seed, steps=steps or rungs[-1], max_minutes=None, eval_every=0, out_dir=str(run_dir),
                        checkpoint_every=rungs[0], log_every=50)
    return cfg


def score(ckpt: Path, ann: Path) -> dict:
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.evaluate import evaluate_all
    from posegroup.engine.predict import checkpoint_predictor, predict_dataset
    predictor, method, cfg = checkpoint_predictor(ckpt, "cpu")
    ds = CocoPoseDataset(ann)
    results = predict_dataset(predictor, ds, progress=False)
    stats = evaluate_all(str(ann), results, method=method)
    gt = json.loads(Path(ann).read_text())
    radius = ON_JOINT_CELLS * float(cfg["data"]["stride"])
    return {"AP": round(stats["AP"], 4), **{k: round(v, 3) for k, v in stats.get("figures", {}).items()},
            **{k: round(v, 3) for k, v in joint_shares(results, gt, method.keypoint_set.sigmas_array, radius).items()}}


def main(argv=None) -> None:
    from posegroup.engine.train import train
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["head", "joint"])
    ap.add_argument("seed", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method option")
    ap.add_argument("--out", default="runs/rec_ladder")
    ap.add_argument("--rungs", type=int, nargs="+", default=list(RUNGS), help="steps at which to score")
    ap.add_argument("--steps", type=int, default=None, help="schedule length (default: the last rung)")
    ap.add_argument("--name", default=None, help="run name (default: MODE_sSEED[_key-value...])")
    args = ap.parse_args(argv)
    options = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = Path(args.out)
    ann = scenes(out)
    name = args.name or "_".join([args.mode, f"s{args.seed}"] + [f"{k}-{v}" for k, v in options.items()])
    cfg = config(args.mode, args.seed, ann, out / "runs" / name, options, args.rungs, args.steps)
    for n, rung in enumerate(args.rungs):
        t0 = time.time()
        s = train(cfg, resume=n > 0, overwrite=n == 0, max_steps=rung, progress=False)
        row = {"run": name, "mode": args.mode, "seed": args.seed, "options": options, "steps": s["steps"],
               "train_minutes": round(s["minutes"], 2), **score(Path(s["checkpoint"]), ann),
               "wall_minutes": round((time.time() - t0) / 60, 2)}
        print(json.dumps(row), flush=True)
        res = out / "results.json"
        rows = json.loads(res.read_text()) if res.is_file() else []
        res.write_text(json.dumps(rows + [row], indent=1))


if __name__ == "__main__":
    main()
