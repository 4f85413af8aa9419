"""Mixup / CutMix: exact convex combination, box area vs lambda, label mass, Beta lambdas."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from archlab.train.techniques import BATCH_MIXES, Mixup, build_batch_mix


def batch(n=6, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, k, (n,), generator=g)


def expected_mass(y, lam, k, eps):
    """Per-class total of the soft targets, computed from the counts of y and its pairing."""
    count = torch.bincount(y, minlength=k).double()
    count_partner = torch.bincount(y.flip(0), minlength=k).double()
    n = len(y)
    return (1 - eps) * (lam * count + (1 - lam) * count_partner) + eps * n / k


def test_mixup_is_the_exact_convex_combination_with_conserved_label_mass():
    x, y = batch()
    mix = Mixup(num_classes=5, mixup_alpha=0.4, label_smoothing=0.1)
    params = mix.draw(8, 8, torch.Generator().manual_seed(7))
    assert params.kind == "mixup" and 0.0 < params.lam < 1.0
    out, soft = mix(x, y, torch.Generator().manual_seed(7))  # same seed, same draw
    lam = params.lam
    partner = torch.arange(5, -1, -1)
    assert torch.equal(out, lam * x + (1 - lam) * x[partner])
    assert torch.allclose(soft.sum(1), torch.ones(6), atol=1e-6)
    assert torch.allclose(soft.sum(0).double(), expected_mass(y, lam, 5, 0.1), atol=1e-5)
    for i in range(6):  # each row: its own and its partner's class weights
        row = torch.full((5,), 0.1 / 5)
        row[y[i]] += 0.9 * lam
        row[y[partner[i]]] += 0.9 * (1 - lam)
        assert torch.allclose(soft[i], row, atol=1e-6)


def test_cutmix_pastes_one_box_and_lambda_is_the_kept_area():
    n, k = 8, 4
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 12).clone()
    y = torch.tensor([0, 1, 2, 3, 3, 2, 0, 0])
    mix = build_batch_mix({"name": "cutmix", "alpha": 1.0}, num_classes=k)
    for seed in range(20):
        out, soft = mix(x, y, torch.Generator().manual_seed(seed))
        pasted = out[:, 0] != x[:, 0]  # (B, H, W): pixels taken from the partner
        for b in range(n):  # changed pixels hold the partner's value, in every channel
            assert (out[b][:, pasted[b]] == n - 1 - b).all()
        mask = pasted[0]
        if mask.any():  # the same box everywhere, and it is a rectangle
            rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
            box = torch.zeros_like(mask)
            box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            assert torch.equal(mask, box) and (pasted == mask).all()
        kept = 1.0 - mask.double().mean().item()
        target = torch.tensor([[1.0 if c == y[i] else 0.0 for c in range(k)] for i in range(n)])
        assert torch.allclose(soft, kept * target + (1 - kept) * target.flip(0), atol=1e-6)
        assert torch.allclose(soft.sum(0).double(), expected_mass(y, kept, k, 0.0), atol=1e-5)


def test_cutmix_box_area_matches_lambda_before_clipping():
    h, w = 32, 24
    mix = Mixup(num_classes=3, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False)
    unclipped = 0
    for seed in range(300):
        p = mix.draw(h, w, torch.Generator().manual_seed(seed))
        top, bottom, left, right = p.box
        area = (bottom - top) * (right - left) / (h * w)
        r = math.sqrt(1 - p.lam)  # box sides are r*h and r*w floored to an even length
        assert area <= 1 - p.lam + 1e-9
        if top > 0 and left > 0 and bottom < h and right < w:
            unclipped += 1
            assert area > max(r - 2 / h, 0) * max(r - 2 / w, 0) - 1e-9
    assert unclipped > 30


def test_mixup_lambda_follows_beta_alpha_alpha():
    mix = Mixup(num_classes=3, mixup_alpha=0.4)
    g = torch.Generator().manual_seed(0)
    lams = [mix.draw(4, 4, g).lam for _ in range(600)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3
    assert stats.kstest(lams, stats.beta(1.0, 1.0).cdf).pvalue < 1e-3


def test_switch_prob_and_prob_choose_per_batch():
    mix = Mixup(num_classes=3, mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.3, prob=0.8)
    g = torch.Generator().manual_seed(1)
    kinds = [mix.draw(8, 8, g).kind for _ in range(1000)]
    n_none, n_cut = kinds.count("none"), kinds.count("cutmix")
    assert abs(n_none / 1000 - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 1000)
    assert abs(n_cut / (1000 - n_none) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / (1000 - n_none))


def test_unmixed_batch_gets_torch_label_smoothing():
    x, y = batch()
    mix = Mixup(num_classes=5, prob=0.0, label_smoothing=0.2)
    out, soft = mix(x, y, torch.Generator())
    assert torch.equal(out, x)
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(F.cross_entropy(logits, soft),
                          F.cross_entropy(logits, y, label_smoothing=0.2), atol=1e-6)


def test_deterministic_registered_and_rejects_bad_input():
    x, y = batch()
    mix = build_batch_mix({"name": "mixup", "mixup_alpha": 0.8, "cutmix_alpha": 1.0}, 5)
    a = mix(x, y, torch.Generator().manual_seed(3))
    b = mix(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert BATCH_MIXES.list() == ["cutmix", "mixup"]
    with pytest.raises(ValueError, match="alpha"):
        Mixup(num_classes=5, mixup_alpha=0.0)
    with pytest.raises(ValueError, match="integer class targets"):
        mix(x, y.float(), torch.Generator())
    with pytest.raises(ValueError, match="float"):
        mix(x.to(torch.uint8), y, torch.Generator())
    with pytest.raises(ValueError, match="batch mix 'cutmix'"):
        build_batch_mix({"name": "cutmix", "beta": 1.0}, 5)
