"""The recurrent head on PoseNet with a joint prior (``joint_prior``) against without, at one
budget: trains ``recurrent_posenet`` with method options KEY=VALUE on the benchmark's real-people
training scenes, then scores it as ``benchmark methods`` does (first N images of the held-out
sparse / medium / heavy scenes and of the real val2017 photos, 512 px).

    python experiments/posenet/recurrent_prior.py BENCH_DIR OUT MINUTES SEED N [KEY=VALUE ...]

BENCH_DIR: a ``benchmark methods --backbone posenet_mobilenet`` output (its ``data/``). VALUE is
read as YAML (``joint_prior=gate``, ``feedback_passes=0``). Prints one line per split."""
import json
import sys
from pathlib import Path

import yaml

from posegroup.engine.checkpoint import load_model
from posegroup.engine.compare import score_splits
from posegroup.engine.config import load_config
from posegroup.engine.train import train


def main(bench, out, minutes, seed, n, *options):
    bench, out = Path(bench), Path(out)
    opts = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options)}
    cfg = load_config("recurrent_posenet", {
        "method": {"options": opts},
        "data": {"train_ann": str(bench / "data/train/annotations.json"), "val_ann": None},
        "train": {"seed": int(seed), "out_dir": str(out), "steps": "auto", "eval_every": 0,
                  "checkpoint_every": 10 ** 9, "max_minutes": float(minutes)}})
    if not (out / "last.pt").is_file():
        run = train(cfg, progress=False, schedule_minutes=float(minutes))
        print(f"trained {run['steps']} steps", flush=True)
    model, method, config = load_model(out / "last.pt")
    anns = {s: str(bench / f"data/{s}/annotations.json") for s in ("sparse", "medium", "heavy")}
    anns["real_val2017"] = (str(bench / "data/real_val2017/annotations.json"), "../shared/data/coco_images")
    cells = score_splits(model, method, config, {}, anns, max_images=int(n))
    (out / "scores.json").write_text(json.dumps(cells, indent=1))
    for split, c in cells.items():
        print(f"{split}: AP {c['AP']:.3f} AP50 {c['AP50']:.3f} AR {c['AR']:.3f} count_error "
              f"{c['count_error']:.2f} network_ms {c['network_ms']:.0f} decoder_ms {c['decoder_ms']:.0f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
