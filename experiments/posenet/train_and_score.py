"""One bundled PoseNet config trained at one budget with some settings changed, then scored as
``benchmark methods`` scores (first N images of the held-out sparse / medium / heavy
real-people scenes and of the real val2017 photos, 512 px): the A/B runs behind the options of
``recurrent_posenet`` and ``ae_posenet`` (docs/posenet_backbone.md).

    python experiments/posenet/train_and_score.py CONFIG BENCH_DIR OUT MINUTES SEED N [KEY=VALUE ...]

CONFIG: a bundled config (``recurrent_posenet``). BENCH_DIR: a ``benchmark methods --backbone
posenet_mobilenet`` output (its ``data/``). KEY: a method option (``joint_prior=gate``), or a
dotted config path (``data.input_size=512``); VALUE is read as YAML. Prints one line per split."""
import json
import sys
from pathlib import Path

import yaml

from posegroup.engine.checkpoint import load_model
from posegroup.engine.compare import score_splits
from posegroup.engine.config import load_config
from posegroup.engine.train import train

from common import held_out_splits


def main(config, bench, out, minutes, seed, n, *options):
    bench, out = Path(bench), Path(out)
    over = {"method": {"options": {}},
            "data": {"train_ann": str(bench / "data/train/annotations.json"), "val_ann": None},
            "train": {"seed": int(seed), "out_dir": str(out), "steps": "auto", "eval_every": 0,
                      "checkpoint_every": 10 ** 9, "max_minutes": float(minutes), "workers": 0}}
    for key, value in (o.split("=", 1) for o in options):
        path = key.split(".") if "." in key else ["method", "options", key]
        node = over
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value)
    cfg = load_config(config, over)
    if not (out / "last.pt").is_file():
        run = train(cfg, progress=False, schedule_minutes=float(minutes))
        print(f"trained {run['steps']} steps", flush=True)
    model, method, trained = load_model(out / "last.pt")
    cells = score_splits(model, method, trained, {}, held_out_splits(bench), max_images=int(n))
    (out / "scores.json").write_text(json.dumps(cells, indent=1))
    for split, c in cells.items():
        ceiling = "-" if c["true_ids_AP"] is None else f"{c['true_ids_AP']:.3f}"
        print(f"{split}: AP {c['AP']:.3f} AP50 {c['AP50']:.3f} AR {c['AR']:.3f} true-id AP {ceiling} count_error "
              f"{c['count_error']:.2f} network_ms {c['network_ms']:.0f} decoder_ms {c['decoder_ms']:.0f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
