"""python experiments/issue8/sweep_decode.py CKPT N split[,split...] KEY=V1,V2,... [KEY=...]: AP (true
ids) of one checkpoint for every combination of the given test (decoder) options, the network loaded
once. Tune on the tuning splits, not the reported ones:

    posegroup synth --out runs/synth/val_tuneheavy --images 100 --crowding heavy --size 128 --seed 7
    posegroup synth --out runs/synth/val_tunemedium --images 100 --crowding medium --size 128 --seed 7
    python experiments/issue8/sweep_decode.py CKPT 100 tuneheavy,tunemedium tag_threshold=0.5,1,2

Values are JSON (``true``, ``0.5``, ``"l2"`` or a bare word, read as a string)."""
import itertools
import json
import sys

from common import aps, score

from posegroup.engine.checkpoint import load_model


def values(text: str) -> list:
    """``"0.5,1,l2"`` -> [0.5, 1, "l2"]."""
    out = []
    for v in text.split(","):
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            out.append(v)
    return out


if __name__ == "__main__":
    ckpt, n, splits = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    grid = {k: values(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
    loaded = load_model(ckpt)
    for combo in itertools.product(*grid.values()):
        test = dict(zip(grid, combo))
        print(test, aps(score(loaded, test, splits, n)), flush=True)
