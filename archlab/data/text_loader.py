"""Batches of next-token blocks cut from one token stream, for language modelling.

A batch is ``{"x": (B, T) int64, "y": (B, T) int64}`` with ``y[:, t]`` the token after
``x[:, t]``: each row is a slice of T + 1 consecutive tokens, x its first T, y its last T.

Training (``shuffle=True``): every epoch draws an offset o in [0, T) and cuts the stream at
o, o + T, o + 2T, ... into blocks of T + 1 tokens (neighbours share one token), so over epochs
a model sees every phase of the text instead of always the same cuts. Every epoch has the same
number of blocks, as many as fit at the largest offset, so ``len()`` never changes. The blocks are permuted
and sharded across ranks exactly as :func:`~archlab.data.loader.shard_indices` shards images:
one permutation shared by all ranks, padded by wrap-around to a multiple of the world size,
rank r taking every world-size-th block from r. Every draw comes from generators seeded by
(seed, epoch) alone, so epoch k is identical whether or not the run was interrupted before it.

Evaluation (``shuffle=False``): consecutive blocks from position 0 and a shorter last one, so
every token from position 1 to N - 1 is predicted exactly once; blocks are dealt to ranks
without padding, so over all ranks each is scored once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from archlab.data.loader import epoch_seed, shard_indices

if TYPE_CHECKING:
    from archlab.data.config import DataConfig
    from archlab.data.pipeline import DataLoaders
    from archlab.data.text import TextCorpus

TextBatch = dict[str, torch.Tensor]  # {"x": (B, T), "y": (B, T)}


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class TextBlockLoader:
    """``for batch in TextBlockLoader(corpus.train, corpus.block_size, 64, device=device,
    shuffle=True, drop_last=True, seed=seed): loss = model(batch["x"]) vs batch["y"]``;
    call ``set_epoch(epoch)`` before each epoch."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, *,
                 device: torch.device, shuffle: bool, drop_last: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D int64 tensor, got "
                             f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
                             f"{tuple(getattr(tokens, 'shape', ()))}")
        self.block_size = _positive_int("block_size", block_size)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.world_size = _positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        n, t = len(tokens), block_size
        if shuffle and n < 2 * t:
            raise ValueError(f"a training stream of {n:,} tokens is too short for block_size "
                             f"{t}: a block of {t + 1} tokens at any offset in [0, {t}) needs "
                             f"at least 2 × block_size = {2 * t} tokens")
        if not shuffle and n < 2:
            raise ValueError(f"an evaluation stream of {n} token(s) has nothing to predict: "
                             "it needs at least 2 tokens")
        if not shuffle and drop_last:
            raise ValueError("drop_last=True with shuffle=False would leave tokens unscored; "
                             "evaluation predicts every token exactly once")
        self.tokens = tokens.to(device)
        self.device, self.shuffle, self.drop_last = torch.device(device), shuffle, drop_last
        self.seed, self.rank, self.epoch = seed, rank, 0
        self.span = torch.arange(t + 1, device=self.device)  # positions within a block
        if shuffle and drop_last and self._rank_blocks() < batch_size:
            raise ValueError(f"each rank gets {self._rank_blocks()} block(s) of {t + 1} tokens "
                             f"per epoch, fewer than batch_size={batch_size}: with drop_last no "
                             "batch would be yielded. Use a smaller batch_size or block_size")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        """Tokens in the whole split (all ranks together)."""
        return len(self.tokens)

    def num_blocks(self) -> int:
        """Blocks in one epoch over all ranks (training: before wrap-around padding)."""
        n, t = len(self.tokens), self.block_size
        if self.shuffle:
            # The count that fits at the largest offset (T - 1): start + T + 1 <= N for starts
            # o + kT, k < N // T - 1. Fixing it makes len() the same in every epoch, so a
            # schedule sized as epochs × len() is exact; at most one block per epoch is lost.
            return n // t - 1
        return -(-(n - 1) // t)  # N - 1 targets in blocks of T, the last one shorter

    def offset(self, epoch: int | None = None) -> int:
        """Where training blocks start in ``epoch`` (default: the current one), in [0, T).

        Drawn from its own generator (the permutation's comes from ``shard_indices``), seeded
        by (seed + 1, epoch) as the image loaders seed their augmentation: the same on all ranks.
        """
        epoch = self.epoch if epoch is None else epoch
        generator = torch.Generator().manual_seed(epoch_seed(self.seed + 1, epoch))
        return int(torch.randint(self.block_size, (1,), generator=generator))

    def _rank_blocks(self) -> int:
        """Blocks this rank takes per epoch (training: padded, so the same on every rank)."""
        if self.shuffle:
            return -(-self.num_blocks() // self.world_size)
        return len(range(self.rank, self.num_blocks(), self.world_size))

    def block_starts(self) -> torch.Tensor:
        """This rank's block start positions for the current epoch, in the order yielded."""
        blocks = shard_indices(self.num_blocks(), self.shuffle, self.seed, self.epoch, self.rank,
                               self.world_size)
        origin = self.offset() if self.shuffle else 0
        return origin + blocks * self.block_size

    def __len__(self) -> int:
        """Batches this rank yields per epoch (training: the same on every rank)."""
        per_rank, b = self._rank_blocks(), self.batch_size
        if self.shuffle:
            return per_rank // b if self.drop_last else -(-per_rank // b)
        tail = int(self._holds_remainder())  # the shorter last block is a batch of its own
        return -(-(per_rank - tail) // b) + tail

    def _remainder(self) -> int:
        """Targets in the last, shorter evaluation block (0: the blocks divide N - 1 evenly)."""
        return (len(self.tokens) - 1) % self.block_size

    def _holds_remainder(self) -> bool:
        last = self.num_blocks() - 1
        return not self.shuffle and self._remainder() > 0 and last % self.world_size == self.rank

    def _gather(self, starts: torch.Tensor, length: int) -> TextBatch:
        # One indexing op: (B, 1) + (length + 1,) -> (B, length + 1) token positions.
        rows = self.tokens[starts[:, None] + self.span[:length + 1]]
        return {"x": rows[:, :-1].contiguous(), "y": rows[:, 1:].contiguous()}

    def __iter__(self) -> Iterator[TextBatch]:
        starts = self.block_starts().to(self.device)
        tail = None
        if self._holds_remainder():  # the shorter last block is this rank's last block
            starts, tail = starts[:-1], starts[-1:]
        b = self.batch_size
        for i in range(len(self) - (tail is not None)):
            yield self._gather(starts[i * b:(i + 1) * b], self.block_size)
        if tail is not None:
            yield self._gather(tail, self._remainder())


def build_text_loaders(cfg: DataConfig, corpus: TextCorpus, *, device: torch.device, seed: int,
                       rank: int = 0, world_size: int = 1) -> DataLoaders:
    """``DataLoaders`` of a :class:`~archlab.data.text.TextCorpus` for a DataConfig.

    Training blocks are reshuffled per epoch and the last partial batch dropped; validation
    falls back to the test split when the corpus has none (``val_is_test``). Image-only data
    settings are refused rather than ignored.
    """
    from archlab.data.pipeline import DataLoaders

    image_only = {"augment": bool(cfg.augment), "pk_sampler": cfg.pk_sampler is not None,
                  "views": cfg.views != 1, "subset_fraction": cfg.subset_fraction is not None,
                  "subset_per_class": cfg.subset_per_class is not None,
                  "test_subset_fraction": cfg.test_subset_fraction is not None}
    given = [k for k, is_set in image_only.items() if is_set]
    if given:
        raise ValueError(f"data.{', data.'.join(given)} do(es) not apply to the text dataset "
                         f"'{cfg.name}' (blocks of tokens, no images or classes); remove it")

    def make(tokens: torch.Tensor, training: bool) -> TextBlockLoader:
        return TextBlockLoader(tokens, corpus.block_size,
                               cfg.batch_size if training else cfg.eval_batch_size,
                               device=device, shuffle=training, drop_last=training, seed=seed,
                               rank=rank, world_size=world_size)

    val = corpus.val if corpus.val is not None else corpus.test
    return DataLoaders(train=make(corpus.train, True), val=make(val, False),
                       test=make(corpus.test, False), bundle=corpus,
                       val_is_test=corpus.val is None)
