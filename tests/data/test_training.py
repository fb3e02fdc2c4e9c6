"""TrainingSet determinism and shapes; StepBatchSampler order, resume and sharding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posegroup.data.training import StepBatchSampler, TrainingSet, collate
from posegroup.methods import build_method
from posegroup.skeleton import COCO17


class _Data:
    """Two fake samples: one 80x60 image with two people."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        kp = np.zeros((2, 17, 3), np.float32)
        kp[..., 0] = rng.uniform(5, 55, (2, 17))
        kp[..., 1] = rng.uniform(5, 75, (2, 17))
        kp[..., 2] = 2
        return {"image": rng.integers(0, 255, (80, 60, 3), dtype=np.uint8), "keypoints": kp,
                "instance_masks": np.zeros((2, 80, 60), np.uint8), "ignore_mask": np.zeros((80, 60), bool),
                "image_id": i + 1, "file_name": f"{i}.png"}


@pytest.fixture(scope="module")
def ts():
    return TrainingSet(_Data(), build_method("ae", COCO17), input_size=64, stride=4, seed=5)


def test_shapes(ts):
    s = ts[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert s["heatmaps"].shape == (17, 16, 16) and s["mask"].shape == (16, 16)
    b = collate([ts[0], ts[1]])
    assert b["image"].shape == (2, 3, 64, 64) and b["joints"].shape[0] == 2


def test_augmentation_is_a_function_of_seed_epoch_index(ts):
    a, b = ts[(1, 3)], ts[(1, 3)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = ts[(1, 4)]
    assert not torch.equal(a["image"], c["image"])
    ts.set_epoch(3)
    assert torch.equal(ts[1]["image"], a["image"])
    other = TrainingSet(_Data(), ts.method, input_size=64, seed=6)
    assert not torch.equal(other[(1, 3)]["image"], a["image"])


def test_no_augment_is_center_fit():
    t = TrainingSet(_Data(), build_method("ae", COCO17), input_size=64, augment=False)
    assert torch.equal(t[(0, 0)]["image"], t[(0, 9)]["image"])
    with pytest.raises(ValueError, match="not a multiple of stride"):
        TrainingSet(_Data(), t.method, input_size=66, stride=4)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_sampler_epochs_resume_and_shards():
    s = StepBatchSampler(10, 3, seed=1)
    assert s.steps_per_epoch == 3
    batches = _take(iter(s), 7)
    epoch0 = [i for b in batches[:3] for i, e in b]
    assert len(set(epoch0)) == 9 and all(e == 0 for b in batches[:3] for _, e in b)
    assert all(e == 2 for _, e in batches[6])
    resumed = _take(iter(StepBatchSampler(10, 3, seed=1, start_step=4)), 3)
    assert resumed == batches[4:7]
    assert [s.batch(k) for k in range(7)] == batches
    r0 = _take(iter(StepBatchSampler(10, 2, seed=1, rank=0, world_size=2)), 2)
    r1 = _take(iter(StepBatchSampler(10, 2, seed=1, rank=1, world_size=2)), 2)
    assert not set(map(tuple, r0[0])) & set(map(tuple, r1[0]))
    assert _take(iter(StepBatchSampler(10, 3, seed=2)), 1) != batches[:1]


def test_sampler_small_dataset_fills_batches():
    s = StepBatchSampler(2, 5, seed=0)
    b = next(iter(s))
    assert len(b) == 5 and {i for i, _ in b} == {0, 1}
