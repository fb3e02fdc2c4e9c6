"""AE test-time ablation: refine and multi-scale on one checkpoint.
usage: python ae_test_abl.py CKPT OUT.json   (rows already in OUT.json are kept)"""
import json
import sys
from pathlib import Path

from common import aps, score
from posegroup.engine.checkpoint import load_model

model, out = load_model(sys.argv[1]), Path(sys.argv[2])      # loaded once for every variant
CONCAT, SCALE1 = {"multiscale_tags": "concat"}, {"multiscale_tags": "scale1"}
VARIANTS = {
    "single": {"refine": False, "scales": [1.0]},
    "single+refine": {"refine": True, "scales": [1.0]},
    "ms{2,1,0.5}": {"refine": False, "scales": [1.0, 2.0, 0.5], **CONCAT},
    "ms{2,1,0.5}+refine": {"refine": True, "scales": [1.0, 2.0, 0.5], **CONCAT},
    "ms{1,0.75,1.25}": {"refine": False, "scales": [1.0, 0.75, 1.25], **CONCAT},
    "ms{1,0.75,1.25}+refine": {"refine": True, "scales": [1.0, 0.75, 1.25], **CONCAT},
    "ms{2,1,0.5} scale1-tags": {"refine": False, "scales": [1.0, 2.0, 0.5], **SCALE1},
    "ms{2,1,0.5}+refine scale1-tags": {"refine": True, "scales": [1.0, 2.0, 0.5], **SCALE1},
    "ms{1,2} scale1-tags": {"refine": False, "scales": [1.0, 2.0], **SCALE1},
    "ms{1,2}+refine scale1-tags": {"refine": True, "scales": [1.0, 2.0], **SCALE1},
}
rows = json.loads(out.read_text()) if out.is_file() else {}
for name, test in VARIANTS.items():
    if name not in rows:
        rows[name] = {"test": test, "splits": score(model, test)}
        out.write_text(json.dumps(rows, indent=1))
        print(name, aps(rows[name]["splits"]), flush=True)
