"""python lstm2_bypass.py STAGE ...: AP of LSTM2 checkpoints (runs/rec_abl/runs/STAGE/last.pt)
with LSTM2 bypassed (LSTM1's heatmaps decoded directly)."""
import sys

from common import RUNS, aps, score
from posegroup.engine.checkpoint import load_model

for stage in sys.argv[1:]:
    model, method, config = load_model(RUNS / "rec_abl" / "runs" / stage / "last.pt")
    model.head.lstm2 = None
    print(stage, "LSTM2 bypassed", aps(score((model, method, config))), flush=True)
