"""Batch iterators that hand the Trainer normalized float batches on the training device.

:class:`InMemoryLoader` is the fast path: the whole split is one uint8 tensor on the device;
shuffling, augmentation and normalization happen per batch with tensor ops. Its randomness
comes from a generator seeded by (seed, epoch), so epoch k is identical whether or not the run
was interrupted before it. :class:`StreamingLoader` wraps a ``DataLoader`` with workers for
on-disk datasets and applies the same batched augmentation after the transfer.

Under DDP both shard an epoch like ``DistributedSampler``: one permutation shared by all ranks,
padded to a multiple of the world size, rank r taking every world-size-th index from r.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from archlab.data._registry import ArraySplit
from archlab.data.augment import BatchAugment

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def shard_indices(n: int, shuffle: bool, seed: int, epoch: int, rank: int,
                  world_size: int) -> torch.Tensor:
    """This rank's indices for one epoch. Training (shuffle) pads so every rank takes the same
    number of steps; evaluation does not pad, so each example is counted exactly once."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    else:
        order = torch.arange(n)
    if world_size > 1:
        if shuffle:  # pad by wrapping around, as DistributedSampler does
            total = -(-n // world_size) * world_size
            order = torch.cat([order, order[: total - n]])
        order = order[rank::world_size]
    return order


class Normalize:
    """uint8 [0, 255] -> float ((x / 255) - mean) / std as one scale and one shift."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device,
                 channels_last: bool = False) -> None:
        std_t = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(self.scale).add_(self.shift)  # in place: one float buffer per batch
        return x.contiguous(memory_format=self.memory_format)


class InMemoryLoader:
    def __init__(self, split: ArraySplit, batch_size: int, *, normalize: Normalize,
                 device: torch.device, augment: Sequence[BatchAugment] = (), shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size, self.normalize, self.device = batch_size, normalize, device
        self.augment, self.shuffle, self.drop_last = list(augment), shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        """Examples in the whole split (all ranks together)."""
        return len(self.labels)

    def num_samples(self) -> int:
        n = len(self.labels)
        return -(-n // self.world_size) if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = shard_indices(len(self.labels), self.shuffle, self.seed, self.epoch, self.rank,
                              self.world_size).to(self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed + 1, self.epoch) + self.rank)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            for aug in self.augment:
                x = aug(x, generator)
            yield self.normalize(x), self.labels[idx]


class _ShardSampler(Sampler[int]):
    def __init__(self, n: int, shuffle: bool, seed: int, rank: int, world_size: int) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def __iter__(self):
        return iter(shard_indices(self.n, self.shuffle, self.seed, self.epoch, self.rank,
                                  self.world_size).tolist())

    def __len__(self) -> int:
        return len(shard_indices(self.n, False, 0, 0, self.rank, self.world_size)) \
            if not self.shuffle else -(-self.n // self.world_size)


class StreamingLoader:
    """DataLoader with workers for datasets that do not fit in memory (e.g. ``imagefolder``)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, normalize: Normalize,
                 device: torch.device, augment: Sequence[BatchAugment] = (), shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int = 2) -> None:
        self.sampler = _ShardSampler(len(dataset), shuffle, seed, rank, world_size)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 drop_last=drop_last, num_workers=num_workers,
                                 pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0)
        self.normalize, self.device, self.augment = normalize, device, list(augment)
        self.seed, self.rank = seed, rank

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    @property
    def num_examples(self) -> int:
        """Examples in the whole split (all ranks together)."""
        return len(self.loader.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed + 1, self.sampler.epoch) + self.rank)
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            for aug in self.augment:
                x = aug(x, generator)
            yield self.normalize(x), y.to(self.device, non_blocking=True)
