"""python experiments/crowds/pose_runs.py random|real SEED [--width BASE,INC] [--batch B] [--steps N] [--lr LR]
    [--set KEY=VALUE ...] [--resume]

The bundled ``ae_crowd_synthetic`` (128 px, 64² grid) with a 3800-step cosine schedule (~65 steps/min
on a 2-core AMD EPYC CPU, AVX2 only, two runs side by side) on mixed-crowding scenes whose
people take the synthetic kinematic prior (``random``: runs/synth) or real COCO val2017 poses
(``real``: runs/synthreal). Output: runs/crowd_<poses>_s<SEED>. ``--width 32,12 --steps 5400``: the
hourglass's ``base_width`` / ``width_increase`` (bundled: 48, 16) and the cosine schedule's length,
into runs/crowd_<poses>_w<BASE>_s<SEED> (a narrower network takes more steps in the same minutes);
``--batch 8``: the batch size (bundled: 16), into runs/crowd_<poses>[_w<BASE>]_b<B>_s<SEED>;
``--lr 8e-3``: the cosine schedule's peak learning rate (bundled: 4e-3), into ..._lr<LR>_s<SEED>;
``--set data.augmentation.scale_range=[0.5,1.5]`` (repeatable): any other config key, dotted, its
value as YAML (:func:`posegroup.engine.config.parse_override`), into ..._<last key part><value>_s<SEED> (e.g. ..._scale_range0.5-1.5_s0).
Run from the repository root, one thread (OMP_NUM_THREADS=1), after making the data:

    python experiments/crowds/split_poses.py ../shared/data/coco_val2017_kp/person_keypoints_val2017_rebuilt.json runs/poses
    posegroup synth --out runs/synthreal/train_mixed --images 8000 --crowding sparse,medium,heavy --size 128 --seed 11 --poses runs/poses/train_poses.json
    posegroup synth --out runs/synthreal/val_heavy --images 100 --crowding heavy --size 128 --seed 2 --poses runs/poses/val_poses.json
    (val_medium: --crowding medium --seed 2; val_sparse: --crowding sparse --seed 1; runs/synth: the
    same commands without --poses)"""
import argparse
import re

from common import RUNS, split_anns
from posegroup.engine.config import ConfigError, deep_update, load_config, parse_override
from posegroup.engine.train import train

ROOTS = {"random": RUNS / "synth", "real": RUNS / "synthreal"}
STEPS = 3800
#: The base crowd recipe every run starts from (docs/crowds.md): grouping-loss weights 1e-3 / 1e-2,
#: augmentation on, one shared read-out, tag threshold 1, a 62-minute limit. The bundled
#: ``ae_crowd_synthetic`` differs (3e-4 / 3e-3, no augmentation, ``model.head_split: outputs``, tag
#: threshold 2, ``train.steps: auto`` in 60 minutes); ``--set`` changes any key.
RECIPE = {"method": {"options": {"pull_weight": 1e-3, "push_weight": 1e-2}},
          "data": {"augmentation": {"enabled": True}}, "model": {"head_split": None},
          "train": {"max_minutes": 62}, "test": {"tag_threshold": 1.0}}


def pose_config(poses: str, seed: int, width: tuple[int, int] | None = None, steps: int = STEPS,
                batch: int | None = None, lr: float | None = None, sets: tuple[str, ...] = ()) -> dict:
    """The run's config: ``ae_crowd_synthetic`` with data, schedule length, seed, output and
    (``width``: (base_width, width_increase); ``batch``; ``lr``) the hourglass's widths, the batch
    size and the peak learning rate changed; ``sets``: ``"dotted.key=value"`` overrides."""
    root = ROOTS[poses]
    tag = (f"_w{width[0]}" if width else "") + (f"_b{batch}" if batch else "") + (f"_lr{lr:g}" if lr else "")
    overrides = RECIPE
    for text in sets:
        overrides = deep_update(overrides, parse_override(text))
        key, value = text.split("=", 1)
        tag += "_" + key.strip().split(".")[-1] + re.sub(r"[^0-9A-Za-z.]+", "-", value).strip("-")
    return load_config("ae_crowd_synthetic", deep_update(overrides, {
        "model": dict(zip(("base_width", "width_increase"), width or ())),
        "data": {"train_ann": str(root / "train_mixed" / "annotations.json"),
                 "val_ann": split_anns(("heavy",), root)["heavy"]},
        "train": {"steps": steps, "seed": seed, "out_dir": str(RUNS / f"crowd_{poses}{tag}_s{seed}"),
                  **({"batch_size": batch} if batch else {}), **({"lr": lr} if lr else {})}}))


def widths(value: str) -> tuple[int, int]:
    """``"BASE,INC"`` -> (base_width, width_increase)."""
    parts = value.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--width {value!r}: give BASE,INC, e.g. 32,12")
    return int(parts[0]), int(parts[1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("poses", choices=sorted(ROOTS))
    ap.add_argument("seed", type=int)
    ap.add_argument("--width", type=widths, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    try:
        cfg = pose_config(args.poses, args.seed, args.width, args.steps, args.batch, args.lr, tuple(args.sets))
    except ConfigError as e:
        raise SystemExit(f"pose_runs.py: {e}") from None
    print(train(cfg, resume=args.resume))
