"""Batched augmentation and the in-memory loader, against per-sample references."""

import pytest
import torch
import torch.nn.functional as F

from archlab.data._registry import ArraySplit
from archlab.data.augment import HorizontalFlip, RandomCrop, RandomTranslate, build_augment, shift_batch
from archlab.data.loader import InMemoryLoader, Normalize, shard_indices
from archlab.data.split import balanced_subset, train_val_split


def images(n=16, c=1, h=8, w=8):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_shift_equals_pad_and_crop_per_sample():
    x = images()
    dy = torch.randint(-2, 3, (16,))
    dx = torch.randint(-2, 3, (16,))
    out = shift_batch(x, dy, dx, 2)
    padded = F.pad(x, (2, 2, 2, 2))
    for b in range(16):
        y0, x0 = 2 + dy[b].item(), 2 + dx[b].item()
        assert torch.equal(out[b], padded[b, :, y0:y0 + 8, x0:x0 + 8])


def test_random_crop_reflect_matches_reference():
    x = images(4, 3)
    g = torch.Generator().manual_seed(1)
    out = RandomCrop(padding=3, padding_mode="reflect")(x, g)
    g = torch.Generator().manual_seed(1)
    dy = torch.randint(-3, 4, (4,), generator=g)
    dx = torch.randint(-3, 4, (4,), generator=g)
    padded = F.pad(x.float(), (3, 3, 3, 3), mode="reflect").to(torch.uint8)
    for b in range(4):
        y0, x0 = 3 + dy[b].item(), 3 + dx[b].item()
        assert torch.equal(out[b], padded[b, :, y0:y0 + 8, x0:x0 + 8])


def test_flip_mirrors_exactly_the_chosen_images():
    x = images(64)
    out = HorizontalFlip(0.5)(x, torch.Generator().manual_seed(3))
    flipped = [torch.equal(out[b], x[b].flip(-1)) for b in range(64)]
    kept = [torch.equal(out[b], x[b]) for b in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(f and not k for f, k in zip(flipped, kept)) < 54
    assert torch.equal(HorizontalFlip(1.0)(x, torch.Generator()), x.flip(-1))


def test_translate_keeps_content_within_bounds():
    x = torch.zeros(8, 1, 10, 10, dtype=torch.uint8)
    x[:, :, 4:6, 4:6] = 255
    out = RandomTranslate(0.2)(x, torch.Generator().manual_seed(0))
    assert (out.flatten(1).sum(1) == x.flatten(1).sum(1)).all()  # a 2-px shift keeps the blob


def test_build_augment_rejects_bad_entries():
    with pytest.raises(ValueError, match="random_crop"):
        build_augment({"name": "random_crop", "pad": 2})
    with pytest.raises(ValueError, match="padding must be >= 1"):
        build_augment({"name": "random_crop", "padding": 0})
    with pytest.raises(ValueError, match="mapping with 'name'"):
        build_augment(3)


def test_normalize_equals_definition():
    x = images(4, 3)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    got = Normalize(mean, std, torch.device("cpu"))(x)
    ref = (x.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(got, ref)


def make_loader(n=100, **kw):
    split = ArraySplit(images(n), torch.arange(n) % 10)
    norm = Normalize((0.5,), (0.5,), torch.device("cpu"))
    return InMemoryLoader(split, 16, normalize=norm, device=torch.device("cpu"), **kw)


def test_epoch_visits_every_example_once_and_is_a_function_of_seed_and_epoch():
    loader = make_loader(shuffle=True, seed=7)
    loader.set_epoch(3)
    seen = torch.cat([b["y"] for b in loader])
    assert len(seen) == 100 and len(loader) == 7
    first = [b["x"].clone() for b in loader]
    loader.set_epoch(4)
    other = [b["x"] for b in loader]
    loader.set_epoch(3)
    again = [b["x"] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_drop_last_and_augment_only_in_the_given_loader():
    loader = make_loader(shuffle=True, drop_last=True, augment=[HorizontalFlip(1.0)])
    batches = list(loader)
    assert len(batches) == 6 and all(b["x"].shape[0] == 16 for b in batches)


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_shards_cover_the_epoch(shuffle):
    n, world = 103, 2
    shards = [shard_indices(n, shuffle, 0, 5, r, world) for r in range(world)]
    union = torch.cat(shards)
    assert set(union.tolist()) == set(range(n))
    if shuffle:  # training pads so every rank takes the same number of steps
        assert len(shards[0]) == len(shards[1]) == 52
    else:  # evaluation counts each example exactly once
        assert len(union) == n


def test_train_val_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(200) % 4
    split = ArraySplit(images(200), labels)
    train, val = train_val_split(split, 0.25, seed=1)
    assert torch.bincount(val.labels).tolist() == [round(50 * 0.25)] * 4
    t2, v2 = train_val_split(split, 0.25, seed=1)
    assert torch.equal(v2.images, val.images)
    # disjoint: the pixel rows of val never appear in train (images are distinct random draws)
    train_set = {bytes(t.numpy()) for t in train.images}
    assert not any(bytes(v.numpy()) in train_set for v in val.images)
    assert len(train) + len(val) == 200


def test_balanced_subset_counts():
    labels = torch.cat([torch.zeros(60), torch.ones(40)]).long()
    split = ArraySplit(images(100), labels)
    sub = balanced_subset(split, per_class=10, seed=0)
    assert torch.bincount(sub.labels).tolist() == [10, 10]
    frac = balanced_subset(split, fraction=0.5, seed=0)
    assert torch.bincount(frac.labels).tolist() == [30, 20]
    with pytest.raises(ValueError, match="only 40"):
        balanced_subset(split, per_class=50)


def test_cutout_zeroes_exactly_the_square_around_the_drawn_centre():
    from archlab.data.augment import Cutout

    x = torch.full((6, 2, 10, 10), 200, dtype=torch.uint8)
    out = Cutout(size=4)(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    cy = torch.randint(0, 10, (6,), generator=g)
    cx = torch.randint(0, 10, (6,), generator=g)
    for b in range(6):
        ref = x[b].clone()
        ref[:, max(0, cy[b] - 2):cy[b] + 2, max(0, cx[b] - 2):cx[b] + 2] = 0
        assert torch.equal(out[b], ref)
    assert torch.equal(Cutout(size=4, p=0.0)(x, torch.Generator()), x)
