"""python experiments/issue8/pose_runs.py random|real SEED [--resume]: the bundled
``ae_crowd_synthetic`` (128 px, 64² grid) with a 3800-step cosine schedule (~65 steps/min on the
AMD EPYC CPU of the real-pose session, two runs side by side) on mixed-crowding scenes whose people
take the synthetic kinematic prior (``random``: runs/synth) or real COCO val2017 poses (``real``:
runs/synthreal). Output: runs/crowd_<poses>_s<SEED>. Run from the repository root, one thread
(OMP_NUM_THREADS=1), after making the data:

    python experiments/issue8/split_poses.py ../shared/data/coco_val2017_kp/person_keypoints_val2017_rebuilt.json runs/poses
    posegroup synth --out runs/synthreal/train_mixed --images 8000 --crowding sparse,medium,heavy --size 128 --seed 11 --poses runs/poses/train_poses.json
    posegroup synth --out runs/synthreal/val_heavy --images 100 --crowding heavy --size 128 --seed 2 --poses runs/poses/val_poses.json
    (val_medium: --crowding medium --seed 2; val_sparse: --crowding sparse --seed 1; runs/synth: the
    same commands without --poses)"""
import argparse

from posegroup.engine.config import load_config
from posegroup.engine.train import train

ROOTS = {"random": "runs/synth", "real": "runs/synthreal"}
STEPS = 3800


def pose_config(poses: str, seed: int) -> dict:
    """The run's config: ``ae_crowd_synthetic`` with data, schedule length, seed and output changed."""
    root = ROOTS[poses]
    return load_config("ae_crowd_synthetic", {
        "data": {"train_ann": f"{root}/train_mixed/annotations.json", "val_ann": f"{root}/val_heavy/annotations.json"},
        "train": {"steps": STEPS, "seed": seed, "out_dir": f"runs/crowd_{poses}_s{seed}"}})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("poses", choices=sorted(ROOTS))
    ap.add_argument("seed", type=int)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    print(train(pose_config(args.poses, args.seed), resume=args.resume))
