"""AP of LSTM2 checkpoints with LSTM2 bypassed (LSTM1's heatmaps decoded directly)."""
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import posegroup.engine.checkpoint as ck
from posegroup.engine import compare
orig = ck.load_model
def patched(path, *a, **k):
    model, method, config = orig(path, *a, **k)
    model.head.lstm2 = None
    return model, method, config
ck.load_model = patched
R = Path("runs").resolve()
anns = {k: str(R / "synth" / f"val_{k}" / "annotations.json") for k in compare.SPLITS}
for stage in sys.argv[1:]:
    row = compare.evaluate_row(stage, stage, {}, anns, R / "rec_abl", max_images=100)
    print(stage, "LSTM2 bypassed", {k: round(v["AP"], 3) for k, v in row["splits"].items()}, flush=True)
