"""AE test-time ablation (issue #8 item 4): refine and multi-scale on one checkpoint.
usage: python ae_test_abl.py CKPT OUT.json"""
import json, sys, os, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)
from posegroup.engine import compare
ckpt, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
R = Path("runs/synth").resolve()
anns = {k: str(R / f"val_{k}" / "annotations.json") for k in compare.SPLITS}
VARIANTS = {
    "single": {"refine": False, "scales": [1.0]},
    "single+refine": {"refine": True, "scales": [1.0]},
    "ms{2,1,0.5}": {"refine": False, "scales": [1.0, 2.0, 0.5]},
    "ms{2,1,0.5}+refine": {"refine": True, "scales": [1.0, 2.0, 0.5]},
    "ms{1,0.75,1.25}": {"refine": False, "scales": [1.0, 0.75, 1.25]},
    "ms{1,0.75,1.25}+refine": {"refine": True, "scales": [1.0, 0.75, 1.25]},
    "ms{2,1,0.5} scale1-tags": {"refine": False, "scales": [1.0, 2.0, 0.5], "multiscale_tags": "scale1"},
    "ms{2,1,0.5}+refine scale1-tags": {"refine": True, "scales": [1.0, 2.0, 0.5], "multiscale_tags": "scale1"},
    "ms{1,2} scale1-tags": {"refine": False, "scales": [1.0, 2.0], "multiscale_tags": "scale1"},
    "ms{1,2}+refine scale1-tags": {"refine": True, "scales": [1.0, 2.0], "multiscale_tags": "scale1"},
}
rows = json.loads(out.read_text()) if out.is_file() else {}
with tempfile.TemporaryDirectory() as d:
    (Path(d) / "runs" / "x").mkdir(parents=True)
    os.symlink(ckpt, Path(d) / "runs" / "x" / "last.pt")
    for name, test in VARIANTS.items():
        if name in rows:
            continue
        rows[name] = compare.evaluate_row(name, "x", test, anns, Path(d), max_images=100)
        out.write_text(json.dumps(rows, indent=1))
        print(name, {k: (round(v["AP"], 3), round(v["true_ids_AP"], 3)) for k, v in rows[name]["splits"].items()}, flush=True)
