"""python eval_splits.py CKPT N split[,split...] [key=json ...]: AP (true ids) of a checkpoint."""
import json, sys, os, tempfile, shutil
from pathlib import Path
import torch
torch.set_num_threads(1)
from posegroup.engine import compare
ckpt = Path(sys.argv[1]).resolve(); n = int(sys.argv[2]); splits = sys.argv[3].split(",")
test = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
compare.SPLITS = {k: compare.SPLITS[k] for k in splits}
R = Path("runs/synth").resolve()
anns = {k: str(R / f"val_{k}" / "annotations.json") for k in splits}
with tempfile.TemporaryDirectory() as d:
    (Path(d) / "runs" / "x").mkdir(parents=True)
    shutil.copy(ckpt, Path(d) / "runs" / "x" / "last.pt")
    row = compare.evaluate_row(ckpt.parent.name, "x", test, anns, Path(d), max_images=n)
print(ckpt, test, {k: (round(v["AP"], 3), round(v["true_ids_AP"] or -1, 3)) for k, v in row["splits"].items()})
