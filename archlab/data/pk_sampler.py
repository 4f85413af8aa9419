"""P×K batch sampling for metric learning (Hermans, Beyer & Leibe 2017, "In Defense of the
Triplet Loss", sec. 2: "randomly sampling P classes, and then randomly sampling K images of
each class, thus resulting in a batch of P·K images"; they use P=18, K=4).

Batch-hard mining needs every anchor to have a positive (K >= 2) and a negative (P >= 2) inside
its batch, which a plain shuffle does not guarantee. Enable it from the data config::

    data: {pk_sampler: {classes_per_batch: 8, samples_per_class: 8}}   # batch_size = 64

An epoch is as many batches as a shuffled epoch with ``drop_last`` (N // (P·K) per rank) and is a
pure function of (seed, epoch), so it is identical on resume. Within an epoch every class is a
queue of its examples in a random order; each batch draws P distinct classes with probability
proportional to how many examples they still have to show in the current pass, then takes the
next K from each queue (a fresh random pass starts when a queue runs dry). So an epoch shows
nearly every example once whatever the class balance, and an example repeats inside a batch only
when its class has fewer than K examples. Under DDP every rank builds the same sequence of
batches and takes every world-size-th one (as ``shard_indices`` does with examples), so each
rank's batch is itself P×K.
"""

from __future__ import annotations

from typing import Annotated, Iterator

import torch
from pydantic import Field
from torch.utils.data import Sampler

from archlab.config import config_dataclass
from archlab.data.loader import epoch_seed

# Weight of a class that has shown all its examples in the current pass: it is drawn only when
# fewer than P classes have examples left, which keeps every batch at P distinct classes.
_EXHAUSTED_WEIGHT = 1e-6


@config_dataclass
class PKSamplerConfig:
    """``data.pk_sampler``: batches of P classes × K examples each (batch_size = P·K)."""
    classes_per_batch: Annotated[int, Field(ge=2)]
    """P, distinct classes per batch (>= 2: an anchor needs a negative); at most the number of
    classes in the training split."""
    samples_per_class: Annotated[int, Field(ge=2)]
    """K, examples of each chosen class (>= 2: an anchor needs a positive)."""

    @property
    def batch_size(self) -> int:
        return self.classes_per_batch * self.samples_per_class


class PKBatchSampler(Sampler[list[int]]):
    """Index batches of P classes × K examples, seeded by (seed, epoch), sharded by rank.

    ``for idx in sampler`` yields this rank's batches as lists (usable as a ``DataLoader``
    ``batch_sampler``); :meth:`rank_batches` gives them as one (batches, P·K) tensor. Call
    :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.
    """

    def __init__(self, labels: torch.Tensor, classes_per_batch: int, samples_per_class: int, *,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        labels = torch.as_tensor(labels).long().cpu()
        if labels.ndim != 1 or labels.numel() == 0:
            raise ValueError(f"pk_sampler: labels must be a non-empty (N,) tensor, got shape "
                             f"{tuple(labels.shape)}")
        if classes_per_batch < 2 or samples_per_class < 2:
            raise ValueError(f"pk_sampler: classes_per_batch and samples_per_class must both be "
                             f">= 2 (an anchor needs a negative and a positive), got "
                             f"P={classes_per_batch}, K={samples_per_class}")
        self.classes = torch.unique(labels)
        if classes_per_batch > len(self.classes):
            raise ValueError(f"data.pk_sampler.classes_per_batch={classes_per_batch} but the "
                             f"training split has only {len(self.classes)} classes; use at most "
                             f"{len(self.classes)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"pk_sampler: rank must be in [0, {world_size}), got {rank}")
        self.members = [torch.nonzero(labels == c).flatten() for c in self.classes]
        self.p, self.k = classes_per_batch, samples_per_class
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.num_examples = len(labels)
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per rank: as many as a shuffled, padded, drop_last epoch (at least one)."""
        per_rank = -(-self.num_examples // self.world_size)
        return max(1, per_rank // self.batch_size)

    def epoch_batches(self, epoch: int | None = None) -> torch.Tensor:
        """All ranks' batches of ``epoch`` as a (len(self) * world_size, P·K) index tensor;
        rows of one batch are grouped by class, K at a time."""
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        queues = [self._fresh_pass(c, g, exclude=()) for c in range(len(self.members))]
        remaining = torch.tensor([len(m) for m in self.members], dtype=torch.float64)
        batches = []
        for _ in range(len(self) * self.world_size):
            weights = torch.where(remaining > 0, remaining,
                                  torch.full_like(remaining, _EXHAUSTED_WEIGHT))
            chosen = torch.multinomial(weights, self.p, replacement=False, generator=g)
            batch = []
            for c in chosen.tolist():
                take, queues[c] = self._take(c, queues[c], g)
                batch += take
                remaining[c] -= self.k  # examples of c this epoch has yet to show
            batches.append(batch)
        return torch.tensor(batches, dtype=torch.int64)

    def rank_batches(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's batches, (len(self), P·K)."""
        return self.epoch_batches(epoch)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.rank_batches().tolist())

    # ------------------------------------------------------------------ per-class queues
    def _fresh_pass(self, c: int, g: torch.Generator, exclude) -> list[int]:
        """Class c's examples in a new random order; those in ``exclude`` (already in the batch
        being filled) go last so the batch gets K distinct examples when the class has K."""
        order = self.members[c][torch.randperm(len(self.members[c]), generator=g)].tolist()
        if not exclude:
            return order
        return [i for i in order if i not in exclude] + [i for i in order if i in exclude]

    def _take(self, c: int, queue: list[int], g: torch.Generator) -> tuple[list[int], list[int]]:
        """The next K examples of class c and what is left of its queue."""
        take, queue = queue[:self.k], queue[self.k:]
        while len(take) < self.k:
            queue = self._fresh_pass(c, g, exclude=set(take))
            need = self.k - len(take)
            take, queue = take + queue[:need], queue[need:]
        return take, queue
