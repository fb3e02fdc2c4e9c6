"""Recurrent ablations (issue #8 item 4) on one trained AE backbone.
usage: python rec_ablate.py SEED STEPS [variant ...]
Every variant: bundled recurrent_tiny_synthetic, frozen backbone from runs/crowd_mixed_s0/last.pt
(AE tiny trained 14000 steps on the mixed crowding set), head trained STEPS steps on train_mixed,
then scored on val_{sparse,medium,heavy} (100 images each) with the official COCO metric."""
import json
import sys

from common import RUNS, score
from posegroup.engine.config import load_config
from posegroup.engine.train import train

VARIANTS = {
    "base": {},
    "feedback0": {"feedback_passes": 0},
    "T1": {"bptt_steps": 1},
    "lstm2_learned": {"lstm2": True, "lstm2_order": "learned"},
    "lstm2_inverse": {"lstm2": True, "lstm2_order": "inverse"},
}
seed, steps = int(sys.argv[1]), int(sys.argv[2])
names = sys.argv[3:] or list(VARIANTS)
R = RUNS
root = R / "rec_abl"
res_path = root / "results.json"
for name in names:
    stage = f"{name}_s{seed}" + (f"_{steps}steps" if steps != 800 else "")
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    if stage in results:
        continue
    cfg = load_config("recurrent_tiny_synthetic", require_training=False)
    cfg["method"]["options"].update(VARIANTS[name])
    cfg["model"]["init_from"] = str(R / "crowd_mixed_s0" / "last.pt")
    cfg["data"].update(train_ann=str(R / "synth/train_mixed/annotations.json"), val_ann=None)
    cfg["train"].update(seed=seed, steps=steps, max_minutes=None, eval_every=0,
                        out_dir=str(root / "runs" / stage), checkpoint_every=200, log_every=50)
    s = train(cfg, overwrite=True, progress=False)
    row = {"splits": score(root / "runs" / stage / "last.pt"), "train_minutes": s["minutes"], "steps": s["steps"]}
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results[stage] = row
    res_path.write_text(json.dumps(results, indent=1))
    print(stage, f"{s['minutes']:.1f} min", {k: round(v["AP"], 3) for k, v in row["splits"].items()}, flush=True)
