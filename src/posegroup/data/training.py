"""Training samples: a COCO-style dataset + a method's target encoder -> network-ready tensors.

Randomness is a pure function of ``(seed, epoch, index)``: the augmentation of image ``i`` in
epoch ``e`` is the same in every process, with any number of data-loader workers, and after a
resume. The engine passes ``(index, epoch)`` pairs as dataset keys (see
:class:`StepBatchSampler`), so no state has to travel to worker processes.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .transforms import ColorJitter, RandomAffine, center_affine, normalize_image


class TrainingSet(Dataset):
    """Torch dataset of augmented images and method targets.

    Args:
        dataset: indexable (``len``, ``ds[i]``) returning ``CocoPoseDataset`` samples: image uint8
            (H, W, 3), keypoints (N, K, 3), instance_masks (N, H, W), ignore_mask (H, W).
        method: a :class:`~posegroup.methods.base.Method` (its ``encode`` makes the targets).
        input_size: S, the square network input in pixels (a multiple of ``stride``).
        stride: input pixels per output cell (output is S/stride square). Default 4.
        augment: random affine (+ flip) and colour jitter when True (default); otherwise the
            deterministic :func:`center_affine` fit.
        seed: base seed of the augmentation randomness. Default 0.
        color_jitter: apply :class:`ColorJitter` when augmenting. Default True.
        affine_options: keyword arguments of :class:`RandomAffine` (scale_range, max_rotation,
            max_translate, flip_prob). Default None = RandomAffine's defaults.
        jitter_options: keyword arguments of :class:`ColorJitter`. Default None = its defaults.

    ``ts[i]`` (uses the epoch set by :meth:`set_epoch`) or ``ts[(i, epoch)]`` returns
    ``{"image": float32 tensor (3, S, S), **{name: tensor} of method.encode(...)}``.
    """

    def __init__(self, dataset, method, *, input_size: int, stride: int = 4, augment: bool = True,
                 seed: int = 0, color_jitter: bool = True, affine_options: dict | None = None,
                 jitter_options: dict | None = None):
        if input_size % stride:
            raise ValueError(f"TrainingSet: input_size {input_size} is not a multiple of stride {stride}")
        self.dataset = dataset
        self.method = method
        self.input_size = int(input_size)
        self.stride = int(stride)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        flip_index = method.keypoint_set.flip_index
        self.affine = RandomAffine(self.input_size, flip_index=flip_index, **(affine_options or {}))
        self.jitter = ColorJitter(**(jitter_options or {})) if color_jitter else None

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by ``ts[i]`` (integer keys)."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int) -> np.random.Generator:
        """The generator of image ``index`` in ``epoch`` (a function of seed, epoch, index only)."""
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, epoch = (key if isinstance(key, tuple) else (key, self.epoch))
        sample = self.dataset[int(index)]
        if self.augment:
            rng = self.rng(index, epoch)
            sample = self.affine(sample, rng)
            image = self.jitter(sample["image"], rng) if self.jitter is not None else sample["image"]
        else:
            sample = center_affine(sample, self.input_size)
            image = sample["image"]
        out_hw = (self.input_size // self.stride, self.input_size // self.stride)
        targets = self.method.encode(sample["keypoints"], sample["ignore_mask"],
                                     sample.get("instance_masks"), out_hw, self.stride)
        out = {"image": torch.from_numpy(normalize_image(image))}
        for name, value in targets.items():
            out[name] = torch.as_tensor(np.ascontiguousarray(value))
        return out


class StepBatchSampler(Sampler):
    """Infinite, resumable batch order: batch ``step`` is a pure function of (seed, step).

    Each epoch is a permutation of ``range(n)`` drawn from ``default_rng([seed, epoch])``, cut into
    ``n // (batch_size * world_size)`` global batches (the remainder is dropped; if n is smaller
    than one global batch, indices repeat within the epoch so every batch is full). Rank ``r``
    takes the ``r``-th contiguous ``batch_size`` slice of each global batch. Yields lists of
    ``(index, epoch)`` keys for :class:`TrainingSet`.

    Args:
        n: dataset length. batch_size: per-process batch. seed: order seed.
        start_step: first step to yield (resume). rank, world_size: distributed sharding.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world_size: int = 1):
        if n < 1:
            raise ValueError("StepBatchSampler: empty dataset")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.start_step, self.rank, self.world_size = int(start_step), int(rank), int(world_size)
        self.global_batch = self.batch_size * self.world_size
        self.steps_per_epoch = max(1, self.n // self.global_batch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(steps_per_epoch * global_batch,) image indices of one epoch."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        need = self.steps_per_epoch * self.global_batch
        reps = -(-need // self.n)
        order = np.concatenate([rng.permutation(self.n) for _ in range(reps)])
        return order[:need]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's keys of global step ``step``."""
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        order = self.epoch_order(epoch)
        start = pos * self.global_batch + self.rank * self.batch_size
        return [(int(i), epoch) for i in order[start:start + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        cache_epoch, order = None, None
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != cache_epoch:
                cache_epoch, order = epoch, self.epoch_order(epoch)
            start = pos * self.global_batch + self.rank * self.batch_size
            yield [(int(i), epoch) for i in order[start:start + self.batch_size]]
            step += 1

    def __len__(self) -> int:  # infinite; DataLoader only needs it for len(loader)
        return 2 ** 62


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of TrainingSet samples into a batch dict (same keys, leading B dim)."""
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
