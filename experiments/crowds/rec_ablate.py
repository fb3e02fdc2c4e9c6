"""The recurrent paper's ablations on one trained AE backbone.
usage: python rec_ablate.py SEED STEPS [variant ...] [--backbone b128|b256] [--minutes M]
Every variant: bundled recurrent_tiny_synthetic, head trained STEPS steps (or M minutes) on
train_mixed on a frozen AE backbone, then scored on val_{sparse,medium,heavy} (100 images each)
with the official COCO metric. Backbones:
  b128 (default): runs/crowd_mixed_s0/last.pt, AE tiny trained 14000 steps at 128 px (32² grid);
  b256: runs/crowd256_s0/last.pt, AE tiny trained 4800 steps at 256 px (64² grid)."""
import argparse
import json

from common import RUNS, SYNTH, score
from posegroup.engine.config import load_config
from posegroup.engine.train import train

VARIANTS = {
    "base": {},
    "feedback0": {"feedback_passes": 0},
    "T1": {"bptt_steps": 1},
    "lstm2_learned": {"lstm2": True, "lstm2_order": "learned"},
    "lstm2_inverse": {"lstm2": True, "lstm2_order": "inverse"},
}
BACKBONES = {"b128": ("crowd_mixed_s0", 128), "b256": ("crowd256_s0", 256)}
ap = argparse.ArgumentParser()
ap.add_argument("seed", type=int)
ap.add_argument("steps", type=int)
ap.add_argument("variants", nargs="*")
ap.add_argument("--backbone", choices=sorted(BACKBONES), default="b128")
ap.add_argument("--minutes", type=float, default=None)
args = ap.parse_args()
seed, steps, names = args.seed, args.steps, args.variants or list(VARIANTS)
backbone_run, size = BACKBONES[args.backbone]
root = RUNS / "rec_abl"
res_path = root / "results.json"
for name in names:
    stage = (f"{name}_s{seed}" + (f"_{steps}steps" if steps != 800 else "")
             + ("" if args.backbone == "b128" else f"_{args.backbone}"))
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    if stage in results:
        continue
    cfg = load_config("recurrent_tiny_synthetic", require_training=False)
    cfg["method"]["options"].update(VARIANTS[name])
    cfg["model"]["init_from"] = str(RUNS / backbone_run / "last.pt")
    cfg["data"]["input_size"] = cfg["test"]["input_size"] = size
    cfg["data"].update(train_ann=str(SYNTH / "train_mixed" / "annotations.json"), val_ann=None)
    cfg["train"].update(seed=seed, steps=steps, max_minutes=args.minutes, eval_every=0,
                        out_dir=str(root / "runs" / stage), checkpoint_every=200, log_every=50)
    s = train(cfg, overwrite=True, progress=False)
    row = {"splits": score(root / "runs" / stage / "last.pt"), "train_minutes": s["minutes"], "steps": s["steps"]}
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results[stage] = row
    res_path.write_text(json.dumps(results, indent=1))
    print(stage, f"{s['minutes']:.1f} min", {k: round(v["AP"], 3) for k, v in row["splits"].items()}, flush=True)
