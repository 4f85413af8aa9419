"""Random erasing: one filled rectangle per chosen image, box statistics as specified."""

import math

import pytest
import torch

from archlab.data.augment import build_augment
from archlab.data.random_erasing import RandomErasing


def images(n=8, c=3, h=12, w=10):
    return torch.randint(1, 255, (n, c, h, w), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_erases_exactly_the_drawn_boxes_with_the_value():
    x = images(n=32)
    aug = RandomErasing(p=0.7, value=0)
    out = aug(x, torch.Generator().manual_seed(3))
    boxes = aug.boxes(32, 12, 10, torch.Generator().manual_seed(3), x.device)
    for b, (top, left, bh, bw) in enumerate(boxes.tolist()):
        expected = x[b].clone()
        expected[:, top:top + bh, left:left + bw] = 0  # per-image slice reference
        assert torch.equal(out[b], expected)
        assert 0 <= top and top + bh <= 12 and 0 <= left and left + bw <= 10


def test_box_statistics_follow_scale_ratio_and_p():
    h = w = 64
    n = 4000
    aug = RandomErasing(p=0.6, scale=(0.02, 0.1), ratio=(0.3, 3.3))  # every proposal fits
    top, left, bh, bw = aug.boxes(n, h, w, torch.Generator().manual_seed(0), torch.device("cpu")).T
    erased = bh > 0
    frac = erased.float().mean().item()
    assert abs(frac - 0.6) < 4 * math.sqrt(0.6 * 0.4 / n)  # binomial, 4 sigma
    area = (bh * bw)[erased].double() / (h * w)
    # rounding each side by at most 1/2 px bounds the area error
    assert area.min() > 0.02 - 0.5 * (bh + bw)[erased].max() / (h * w) - 1e-3
    assert area.max() < 0.1 + 0.5 * (bh + bw)[erased].max() / (h * w) + 1e-3
    assert area.mean().item() == pytest.approx(0.06, abs=0.004)  # mean of U(0.02, 0.1)
    log_aspect = (bh[erased].double() / bw[erased]).log()
    lo, hi = math.log(0.3), math.log(3.3)
    assert log_aspect.min() > lo - 0.5 and log_aspect.max() < hi + 0.5
    # log-uniform: mean at the middle of the log range, variance (hi - lo)^2 / 12
    assert log_aspect.mean().item() == pytest.approx((lo + hi) / 2, abs=0.06)
    assert log_aspect.var().item() == pytest.approx((hi - lo) ** 2 / 12, rel=0.15)


def test_images_without_a_fitting_box_are_left_alone():
    # scale 1 with aspect != 1 never fits (one side exceeds the image)
    aug = RandomErasing(p=1.0, scale=(0.95, 1.0), ratio=(2.5, 3.0))
    x = images()
    assert torch.equal(aug(x, torch.Generator().manual_seed(0)), x)


def test_random_value_fills_with_noise_and_keeps_the_rest():
    x = torch.full((16, 3, 16, 16), 100, dtype=torch.uint8)
    aug = RandomErasing(p=1.0, scale=(0.2, 0.3), value="random")
    out = aug(x, torch.Generator().manual_seed(1))
    changed = (out != 100).any(1)  # (B, H, W)
    assert changed.flatten(1).any(1).all()
    noise = out.permute(1, 0, 2, 3)[:, changed]
    assert noise.float().std() > 50  # uniform [0, 255] has std ~74
    assert len(noise.unique()) > 200


def test_deterministic_p0_identity_and_bad_options():
    x = images()
    aug = build_augment({"name": "random_erasing", "p": 0.5, "value": "random"})
    assert torch.equal(aug(x, torch.Generator().manual_seed(4)),
                       aug(x, torch.Generator().manual_seed(4)))
    assert torch.equal(RandomErasing(p=0.0)(x, torch.Generator()), x)
    for bad in ({"p": 1.5}, {"scale": (0.5, 0.1)}, {"ratio": (0.0, 1.0)}, {"value": 300},
                {"value": "mean"}):
        with pytest.raises(ValueError, match="random_erasing"):
            RandomErasing(**bad)
    with pytest.raises(ValueError, match="uint8"):
        RandomErasing()(x.float(), torch.Generator())
