"""TextBlockLoader: blocks checked against slicing the stream, the offset's determinism, the
shard across ranks, and evaluation scoring every target exactly once."""

from __future__ import annotations

import pytest
import torch

from archlab.data.config import DataConfig
from archlab.data.text import corpus_from_text
from archlab.data.text_loader import TextBlockLoader, build_text_loaders

CPU = torch.device("cpu")


def positions(n: int) -> torch.Tensor:
    """A stream whose tokens are their own positions: a block shows where it was cut."""
    return torch.arange(n)


def random_stream(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 97, (n,), generator=torch.Generator().manual_seed(seed))


def loader(tokens, t=8, b=4, **kw) -> TextBlockLoader:
    kw = {"shuffle": True, "drop_last": False, **kw}
    return TextBlockLoader(tokens, t, b, device=CPU, **kw)


def epoch(ld: TextBlockLoader, e: int) -> list[dict]:
    ld.set_epoch(e)
    return list(ld)


def starts_of(batches: list[dict]) -> list[int]:
    return [int(s) for batch in batches for s in batch["x"][:, 0]]


def test_training_blocks_are_slices_of_the_stream_and_y_is_x_shifted():
    n, t = 203, 8
    for e in range(4):
        pos = epoch(loader(positions(n), t), e)
        rand_tokens = random_stream(n)
        rand = epoch(loader(rand_tokens, t), e)
        offset = loader(positions(n), t).offset(e)
        seen = []
        for bp, br in zip(pos, rand, strict=True):
            x, y = bp["x"], bp["y"]
            assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape
            assert x.shape[1] == t and x.is_contiguous() and y.is_contiguous()
            s = x[:, :1]
            assert torch.equal(x, s + torch.arange(t)) and torch.equal(y, x + 1)  # contiguous
            # The same cuts on a random stream are exactly the stream's slices.
            assert torch.equal(br["x"], rand_tokens[x]) and torch.equal(br["y"], rand_tokens[y])
            seen += s.flatten().tolist()
        # Starts o, o + T, ... while a whole block of T + 1 fits at any offset: N // T - 1 blocks.
        assert sorted(seen) == [offset + k * t for k in range(n // t - 1)]
        assert max(seen) + t + 1 <= n and 0 <= offset < t


def test_offset_changes_per_epoch_and_depends_only_on_seed_and_epoch():
    n, t = 500, 16
    offsets = [loader(positions(n), t).offset(e) for e in range(12)]
    assert len(set(offsets)) > 3
    history = loader(positions(n), t, seed=7)
    for e in range(5):
        batches = epoch(history, e)
    fresh = epoch(loader(positions(n), t, seed=7), 4)  # resumed at epoch 4, no history
    assert len(batches) == len(fresh)
    assert all(torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
               for a, b in zip(batches, fresh))
    other_seed = epoch(loader(positions(n), t, seed=8), 4)
    assert starts_of(other_seed) != starts_of(fresh)
    # The batch order is a permutation that changes between epochs.
    assert starts_of(epoch(history, 0)) != sorted(starts_of(epoch(history, 0)))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_partition_the_epoch_with_wraparound_padding(world_size):
    n, t = 8 * 24, 8  # 23 blocks: padding needed for 2 and for 3 ranks
    whole = loader(positions(n), t, b=3)
    for e in range(3):
        order = starts_of(epoch(whole, e))  # world size 1: the epoch's whole permutation
        ranks = [loader(positions(n), t, b=3, rank=r, world_size=world_size)
                 for r in range(world_size)]
        per_rank = [starts_of(epoch(ld, e)) for ld in ranks]
        assert len({len(p) for p in per_rank}) == 1 and len({len(ld) for ld in ranks}) == 1
        total = -(-len(order) // world_size) * world_size
        padded = order + order[:total - len(order)]
        merged = [None] * total
        for r, p in enumerate(per_rank):
            merged[r::world_size] = p  # rank r took every world_size-th block from r
        assert merged == padded


@pytest.mark.parametrize("shuffle, drop_last, world_size, b, n", [
    (True, False, 1, 4, 203), (True, True, 1, 4, 203), (True, True, 2, 3, 203),
    (True, False, 3, 5, 203), (True, False, 1, 50, 203), (False, False, 1, 4, 203),
    (False, False, 3, 2, 203), (False, False, 2, 4, 201), (False, False, 4, 100, 9)])
def test_len_is_the_number_of_batches_yielded(shuffle, drop_last, world_size, b, n):
    for rank in range(world_size):
        ld = loader(random_stream(n), 8, b, shuffle=shuffle, drop_last=drop_last, rank=rank,
                    world_size=world_size)
        for e in range(3):
            batches = epoch(ld, e)
            assert len(ld) == len(batches)
            if drop_last:
                assert all(len(batch["x"]) == b for batch in batches)
        assert ld.num_examples == n


@pytest.mark.parametrize("n", [203, 201, 9, 2])  # with a shorter last block, without, tiny
@pytest.mark.parametrize("world_size", [1, 3])
def test_evaluation_predicts_every_target_exactly_once(n, world_size):
    t = 8
    tokens = random_stream(n, seed=n)
    ys, xs, shapes = [], [], []
    for rank in range(world_size):
        ld = loader(positions(n), t, b=4, shuffle=False, rank=rank, world_size=world_size)
        for batch in ld:
            assert torch.equal(batch["y"], batch["x"] + 1)
            ys.append(batch["y"].flatten())
            xs.append(batch["x"].flatten())
            shapes.append(tuple(batch["x"].shape))
    targets = torch.cat(ys)
    assert sorted(targets.tolist()) == list(range(1, n))  # positions 1..N-1, each once
    assert torch.equal(tokens[targets.sort().values], tokens[1:])
    if (n - 1) % t:
        assert (1, (n - 1) % t) in shapes  # the shorter remainder block is scored
    if world_size == 1:  # in stream order on one rank: y is the stream from position 1
        ld = loader(tokens, t, b=4, shuffle=False)
        assert torch.equal(torch.cat([batch["y"].flatten() for batch in ld]), tokens[1:])
        assert torch.equal(torch.cat([batch["x"].flatten() for batch in ld]), tokens[:-1])


def test_constructor_errors():
    with pytest.raises(ValueError, match="1-D int64"):
        loader(torch.arange(100).int())
    with pytest.raises(ValueError, match="at least 2 × block_size = 16"):
        loader(positions(15), 8)
    loader(positions(16), 8)
    with pytest.raises(ValueError, match="nothing to predict"):
        loader(positions(1), 8, shuffle=False)
    with pytest.raises(ValueError, match="drop_last=True with shuffle=False"):
        loader(positions(100), 8, shuffle=False, drop_last=True)
    with pytest.raises(ValueError, match=r"rank=2 must be in \[0, world_size=2\)"):
        loader(positions(100), 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="fewer than batch_size=20"):
        loader(positions(100), 8, b=20, drop_last=True)  # 11 blocks
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        loader(positions(100), 0)


TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(40))


def test_build_text_loaders_from_a_data_config(tmp_path):
    corpus = corpus_from_text(TEXT, block_size=16, val_fraction=0.1)
    cfg = DataConfig(name="text", options={"path": "unused"}, batch_size=8, eval_batch_size=32)
    loaders = build_text_loaders(cfg, corpus, device=CPU, seed=3)
    assert not loaders.val_is_test and loaders.bundle is corpus
    assert loaders.train.shuffle and loaders.train.drop_last and not loaders.val.shuffle
    assert torch.equal(loaders.val.tokens, corpus.val)
    assert torch.equal(loaders.test.tokens, corpus.test)
    assert all(batch["x"].shape == (8, 16) for batch in loaders.train)
    no_val = build_text_loaders(cfg, corpus_from_text(TEXT, block_size=16), device=CPU, seed=3)
    assert no_val.val_is_test and torch.equal(no_val.val.tokens, no_val.test.tokens)
    flipped = DataConfig(name="text", options={"path": "unused"}, augment=["flip"])
    with pytest.raises(ValueError, match="data.augment do"):
        build_text_loaders(flipped, corpus, device=CPU, seed=3)
