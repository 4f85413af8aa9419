"""P×K batch sampling (Hermans et al. 2017): batch structure, seeding, epoch coverage, DDP
sharding, the loader and config wiring, and its errors."""

from __future__ import annotations

import pytest
import torch

from archlab.runs.config import ConfigError, load_config
from archlab.data._registry import ArraySplit
from archlab.data.loader import InMemoryLoader, Normalize
from archlab.data.pk_sampler import PKBatchSampler

BALANCED = torch.arange(10).repeat_interleave(40)  # 10 classes x 40 examples, shuffled below
UNEVEN = torch.cat([torch.full((n,), c) for c, n in enumerate([60, 50, 45, 40, 33, 27, 21])])


def shuffled(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("labels, p, k", [(BALANCED, 4, 5), (UNEVEN, 3, 4), (UNEVEN, 7, 2)])
def test_every_batch_is_p_classes_times_k_distinct_examples(labels, p, k):
    labels = shuffled(labels)
    sampler = PKBatchSampler(labels, p, k, seed=3)
    batches = sampler.epoch_batches()
    assert batches.shape == (len(labels) // (p * k), p * k)
    for batch in batches:
        counts = torch.bincount(labels[batch])
        assert sorted(counts[counts > 0].tolist()) == [k] * p  # exactly P classes, K each
        assert len(set(batch.tolist())) == p * k  # every class has >= K examples: no repeats


def test_a_class_smaller_than_k_repeats_examples_but_keeps_k_slots():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
    batches = PKBatchSampler(labels, 3, 4, seed=0).epoch_batches(0)
    for batch in batches:
        assert sorted(torch.bincount(labels[batch], minlength=3).tolist()) == [4, 4, 4]


def test_seeded_reproducible_and_different_across_epochs_and_seeds():
    labels = shuffled(BALANCED)
    a, b = PKBatchSampler(labels, 4, 5, seed=7), PKBatchSampler(labels, 4, 5, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.equal(a.epoch_batches(), b.epoch_batches())  # what resume relies on
    assert list(a) == b.rank_batches().tolist()
    assert not torch.equal(a.epoch_batches(2), a.epoch_batches(3))
    assert not torch.equal(a.epoch_batches(2), PKBatchSampler(labels, 4, 5, seed=8)
                           .epoch_batches(2))


def test_an_epoch_shows_nearly_every_example_once():
    """Balanced data: over 5 seeds every example appears at most twice, >= 90% exactly once
    (measured over 200 seeds: >= 95%), and every class fills 40 ± 10 slots of the 400. A sampler
    drawing K examples at random with replacement would leave ~35% of the examples unseen."""
    for seed in range(5):
        labels = shuffled(BALANCED, seed)
        batches = PKBatchSampler(labels, 4, 5, seed=seed).epoch_batches()
        seen = torch.bincount(batches.flatten(), minlength=len(labels))
        assert seen.max() <= 2
        assert (seen == 1).float().mean() >= 0.9
        per_class = torch.bincount(labels[batches.flatten()], minlength=10)
        assert ((per_class - 40).abs() <= 10).all(), per_class
    # Uneven classes: classes are drawn in proportion to what they have left to show, so the
    # big ones are not starved (measured >= 94% of examples seen, over 200 seeds).
    batches = PKBatchSampler(UNEVEN, 3, 4, seed=0).epoch_batches()
    seen = torch.bincount(batches.flatten(), minlength=len(UNEVEN))
    assert (seen >= 1).float().mean() >= 0.9 and seen.max() <= 2


def test_ranks_split_the_same_epoch_into_disjoint_equal_shares():
    labels = shuffled(BALANCED)
    world = 3
    ranks = [PKBatchSampler(labels, 4, 5, seed=1, rank=r, world_size=world) for r in range(world)]
    full = ranks[0].epoch_batches(0)
    shares = [r.rank_batches(0) for r in ranks]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(ranks[0])
    assert len(ranks[0]) == (-(-len(labels) // world)) // 20  # as many steps as a padded shuffle
    for r, share in enumerate(shares):
        assert torch.equal(share, full[r::world])  # each rank's batch is a whole P x K batch
    assert sum(len(s) for s in shares) == len(full)


def test_loader_yields_the_sampled_images_and_labels_every_epoch_alike():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (80, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(8).repeat_interleave(10)
    sampler = PKBatchSampler(labels, 2, 3, seed=5)
    loader = InMemoryLoader(ArraySplit(images, labels), 6, normalize=Normalize([0.0], [1.0],
                            torch.device("cpu")), device=torch.device("cpu"), shuffle=True,
                            drop_last=True, seed=5, batch_sampler=sampler)
    loader.set_epoch(4)
    expected = PKBatchSampler(labels, 2, 3, seed=5).epoch_batches(4)
    first = list(loader)
    assert len(first) == len(loader) == 80 // 6 == len(expected)
    for batch, idx in zip(first, expected):
        x, y = batch["x"], batch["y"]
        assert torch.equal(y, labels[idx])
        # the loader scales by a multiply, not a divide: equal up to float rounding
        assert torch.allclose(x, images[idx].float() / 255, rtol=0, atol=1e-6)
    again = list(loader)  # re-iterating the same epoch (a resumed run) gives the same batches
    assert all(torch.equal(a["y"], b["y"]) for a, b in zip(first, again))


def test_config_fills_batch_size_and_builds_pk_batches_on_real_data():
    from archlab.data.pipeline import build_loaders

    cfg = load_config(None, ["data.name=digits",
                             "data.pk_sampler={classes_per_batch: 5, samples_per_class: 4}"])
    assert cfg.data.batch_size == 20
    loaders = build_loaders(cfg.data, device=torch.device("cpu"), seed=0)
    n = len(loaders.bundle.train)
    assert len(loaders.train) == n // 20
    batch = next(iter(loaders.train))
    x, y = batch["x"], batch["y"]
    assert x.shape[0] == 20 and sorted(torch.bincount(y)[torch.bincount(y) > 0].tolist()) \
        == [4] * 5
    assert len(loaders.test) == -(-len(loaders.bundle.test) // cfg.data.eval_batch_size)


@pytest.mark.parametrize("overrides, fragment", [
    (["data.pk_sampler={classes_per_batch: 4, samples_per_class: 8}", "data.batch_size=64"],
     "set batch_size to 32 or leave it out"),
    (["data.pk_sampler={classes_per_batch: 1, samples_per_class: 8}"],
     "data.pk_sampler.classes_per_batch"),
    (["data.pk_sampler={classes_per_batch: 4, samples_per_class: 1}"],
     "data.pk_sampler.samples_per_class"),
    (["data.pk_sampler={classes_per_batch: 4}"], "samples_per_class"),
])
def test_bad_p_k_config_names_the_problem(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(None, overrides)


def test_more_classes_per_batch_than_the_data_has_is_an_error():
    with pytest.raises(ValueError, match=r"classes_per_batch=11 .* only 10 classes"):
        PKBatchSampler(BALANCED, 11, 2)
