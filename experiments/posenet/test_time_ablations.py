"""The papers' test-time ablations on PoseNet-backed checkpoints, scored like
``benchmark methods --backbone posenet_mobilenet`` (same splits, 512 px, first N images):
PersonLab's mid-range refinement on / off, AE's refine on / off and multi-scale.

    python experiments/posenet/test_time_ablations.py BENCH_DIR AE_CKPT N

BENCH_DIR: a ``benchmark methods --backbone posenet_mobilenet`` output folder (its data/ and
runs/personlab/last.pt); AE_CKPT: an AE checkpoint on the PoseNet backbone. Prints Markdown rows:
AP on sparse / medium / heavy / real_val2017 / ochuman."""
import sys
from pathlib import Path

from posegroup.engine.checkpoint import load_model
from posegroup.engine.compare import score_splits
from posegroup.engine.demo import find_shared_data

from common import held_out_splits


def main(bench, ae_ckpt, n):
    anns = held_out_splits(bench)
    anns["ochuman"] = str(find_shared_data("fixtures/ochuman/test_ochuman.json"))
    personlab = Path(bench) / "runs" / "personlab" / "last.pt"
    rows = [("personlab", personlab, {}),
            ("personlab no mid-range refinement", personlab, {"mid_refine_steps": 0}),
            ("ae", ae_ckpt, {}),
            ("ae no refine", ae_ckpt, {"refine": False}),
            ("ae multi-scale 1 / 0.75 / 1.25", ae_ckpt, {"scales": [1.0, 0.75, 1.25]})]
    for name, ckpt, test in rows:
        model, method, config = load_model(ckpt)
        cells = score_splits(model, method, config, {"input_size": 512, **test}, anns, max_images=int(n))
        print("| " + name + " | " + " | ".join(f"{c['AP']:.3f}" for c in cells.values()) + " |", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
