"""Batch iterators that hand the Trainer normalized float batches on the training device.

:class:`InMemoryLoader` is the fast path: the whole split is one uint8 tensor on the device;
shuffling, augmentation and normalization happen per batch with tensor ops. Its randomness
comes from a generator seeded by (seed, epoch), so epoch k is identical whether or not the run
was interrupted before it. :class:`StreamingLoader` wraps a ``DataLoader`` with workers for
on-disk datasets and applies the same batched augmentation after the transfer.

Under DDP both shard an epoch like ``DistributedSampler``: one permutation shared by all ranks,
padded to a multiple of the world size, rank r taking every world-size-th index from r.

Batches are mappings ``{"x": images, "y": labels}``. Both loaders take an optional
``batch_sampler`` that chooses each batch's indices instead of the shuffle (e.g.
:class:`~archlab.data.pk_sampler.PKBatchSampler`), and ``views=2`` adds ``"x_view2"``: the same
images augmented twice with independent draws, as contrastive self-supervision (SimCLR's
nt_xent) needs.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from archlab.data._registry import ArraySplit
from archlab.data.augment import BatchAugment

Batch = dict[str, torch.Tensor]  # {"x", "y"} and, with views=2, "x_view2"


def image_batch(views: list[torch.Tensor], labels: torch.Tensor) -> Batch:
    batch = {"x": views[0], "y": labels}
    if len(views) > 1:
        batch["x_view2"] = views[1]
    return batch


class BatchSampler(Protocol):
    """Chooses whole batches of indices (this rank's share), reseeded per epoch."""

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[list[int]]: ...

    def rank_batches(self) -> torch.Tensor: ...


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
                 world_size: int = 1, batch_sampler: BatchSampler | None = None,
                 views: int = 1) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size, self.normalize, self.device = batch_size, normalize, device
        self.augment, self.shuffle, self.drop_last = list(augment), shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batch_sampler, self.views = batch_sampler, check_views(views)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)

    @property
    def num_examples(self) -> int:
        """Examples in the whole split (all ranks together)."""
        return len(self.labels)

    def num_samples(self) -> int:
        n = len(self.labels)
        return -(-n // self.world_size) if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def index_batches(self) -> Iterator[torch.Tensor]:
        """This rank's index batches for the current epoch."""
        if self.batch_sampler is not None:
            yield from self.batch_sampler.rank_batches().to(self.device)
            return
        order = shard_indices(len(self.labels), self.shuffle, self.seed, self.epoch, self.rank,
                              self.world_size).to(self.device)
        for i in range(len(self)):
            yield order[i * self.batch_size:(i + 1) * self.batch_size]

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed + 1, self.epoch) + self.rank)
        for idx in self.index_batches():
            images = self.images[idx]
            views = [self.normalize(augmented(images, self.augment, generator))
                     for _ in range(self.views)]
            yield image_batch(views, self.labels[idx])


def check_views(views: int) -> int:
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2 (augmented copies of each image), got {views!r}")
    return views


def augmented(x: torch.Tensor, augment: Sequence[BatchAugment],
              generator: torch.Generator) -> torch.Tensor:
    """``x`` through the augmentation chain; every draw comes from ``generator``."""
    for aug in augment:
        x = aug(x, generator)
    return x


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
                 num_workers: int = 2, batch_sampler: BatchSampler | None = None,
                 views: int = 1) -> None:
        self.sampler = _ShardSampler(len(dataset), shuffle, seed, rank, world_size)
        self.batch_sampler = batch_sampler
        batching = (dict(batch_sampler=batch_sampler) if batch_sampler is not None else
                    dict(batch_size=batch_size, sampler=self.sampler, drop_last=drop_last))
        self.loader = DataLoader(dataset, **batching, num_workers=num_workers,
                                 pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0)
        self.normalize, self.device, self.augment = normalize, device, list(augment)
        self.seed, self.rank, self.views = seed, rank, check_views(views)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)

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
            views = [self.normalize(augmented(x, self.augment, generator))
                     for _ in range(self.views)]
            yield image_batch(views, y.to(self.device, non_blocking=True))
