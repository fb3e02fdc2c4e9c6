"""python experiments/crowds/sweep_decode.py CKPT N split[,split...] KEY=V1,V2,... [KEY=...]: AP (true
ids) of one checkpoint for every combination of the given test (decoder) options, the network loaded
once. Tune on the tuning splits, not the reported ones:

    posegroup synth --out runs/synth/val_tuneheavy --images 100 --crowding heavy --size 128 --seed 7
    posegroup synth --out runs/synth/val_tunemedium --images 100 --crowding medium --size 128 --seed 7
    python experiments/crowds/sweep_decode.py CKPT 100 tuneheavy,tunemedium tag_threshold=0.5,1,2

Each value is read as YAML, like ``--set`` (``true``, ``0.5``, ``l2``)."""
import itertools
import sys

from common import aps, score

from posegroup.engine.checkpoint import load_model
from posegroup.engine.config import parse_override

if __name__ == "__main__":
    ckpt, n, splits = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    grid = {k: [parse_override(f"v={v}")["v"] for v in vs.split(",")]
            for k, vs in (a.split("=", 1) for a in sys.argv[4:])}
    loaded = load_model(ckpt)
    for combo in itertools.product(*grid.values()):
        test = dict(zip(grid, combo))
        print(test, aps(score(loaded, test, splits, n)), flush=True)
