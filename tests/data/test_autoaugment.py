"""AutoAugment ops against PIL on the same uint8 images; policies against per-image candidates."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from archlab.data.augment import AUGMENTS, build_augment
from archlab.data.autoaugment import (AUTOAUGMENT_SPACE, IMAGENET_POLICY, TRIVIALAUGMENT_SPACE,
                                      AutoAugment, RandAugment, TrivialAugment, magnitude_table)
from archlab.data.image_ops import IMAGE_OPS, apply_per_sample


def images(n=4, c=3, h=13, w=17, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, c, h, w), dtype=np.uint8))


def to_pil(img: torch.Tensor) -> Image.Image:
    a = img.numpy()
    return Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))


def from_pil(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im)
    return torch.from_numpy((a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy())


def pil_reference(x: torch.Tensor, fn) -> torch.Tensor:
    return torch.stack([from_pil(fn(to_pil(img))) for img in x])


def affine(coeffs):
    return lambda im: im.transform(im.size, Image.AFFINE, coeffs, Image.NEAREST)


# (op, value, PIL reference on one image); PIL's AFFINE data maps output to input pixels.
PIL_CASES = [
    ("brightness", 1.37, lambda im: ImageEnhance.Brightness(im).enhance(1.37)),
    ("brightness", 0.53, lambda im: ImageEnhance.Brightness(im).enhance(0.53)),
    ("color", 1.6, lambda im: ImageEnhance.Color(im).enhance(1.6)),
    ("color", 0.3, lambda im: ImageEnhance.Color(im).enhance(0.3)),
    ("contrast", 1.6, lambda im: ImageEnhance.Contrast(im).enhance(1.6)),
    ("contrast", 0.3, lambda im: ImageEnhance.Contrast(im).enhance(0.3)),
    ("sharpness", 1.9, lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
    ("sharpness", 0.2, lambda im: ImageEnhance.Sharpness(im).enhance(0.2)),
    ("posterize", 3, lambda im: ImageOps.posterize(im, 3)),
    ("posterize", 1, lambda im: ImageOps.posterize(im, 1)),
    ("solarize", 100, lambda im: ImageOps.solarize(im, 100)),
    ("solarize", 0, lambda im: ImageOps.solarize(im, 0)),
    ("invert", 0, ImageOps.invert),
    ("shear_x", 0.3, affine((1, 0.3, 0, 0, 1, 0))),
    ("shear_x", -0.27, affine((1, -0.27, 0, 0, 1, 0))),
    ("shear_y", 0.21, affine((1, 0, 0, 0.21, 1, 0))),
    ("translate_x", 3.7, affine((1, 0, -3, 0, 1, 0))),  # content moves right by int(3.7)
    ("translate_y", -4.2, affine((1, 0, 0, 0, 1, 4))),
    ("rotate", 17.3, lambda im: im.rotate(17.3, Image.NEAREST)),
    ("rotate", -29.0, lambda im: im.rotate(-29.0, Image.NEAREST)),
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op,value,reference", PIL_CASES,
                         ids=[f"{op}={v}" for op, v, _ in PIL_CASES])
def test_op_matches_pil(op, value, reference, channels):
    x = images(c=channels)
    out = IMAGE_OPS[op](x, torch.full((len(x),), float(value)))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, x) == (op == "color" and channels == 1)  # no saturation in gray
    assert torch.equal(out, pil_reference(x, reference))


@pytest.mark.parametrize("channels", [1, 3])
def test_autocontrast_matches_pil_up_to_its_float_rounding(channels):
    x = images(n=6, c=channels)
    x[0] = 77  # a flat image is left alone
    x[1, :, :4] = 0  # one channel spans the full range already
    x[2:] = x[2:] // 2 + 40  # levels 40..167 get stretched
    out = IMAGE_OPS["autocontrast"](x, torch.zeros(6))
    assert torch.equal(out[0], x[0]) and not torch.equal(out[2:], x[2:])
    assert (out.int() - pil_reference(x, ImageOps.autocontrast).int()).abs().max() <= 1
    # exact rational form of PIL's lut int(i * 255 / (hi - lo) - lo * 255 / (hi - lo))
    for b, ch in itertools.product(range(6), range(channels)):
        lo, hi = int(x[b, ch].min()), int(x[b, ch].max())
        expected = x[b, ch] if hi == lo else (x[b, ch].long() - lo) * 255 // (hi - lo)
        assert torch.equal(out[b, ch].long(), expected.long())


@pytest.mark.parametrize("channels", [1, 3])
def test_equalize_matches_pil(channels):
    # equalize is the identity below 2 * 255 pixels (PIL's step is 0), so use 32 x 40 images
    x = images(n=3, c=channels, h=32, w=40)
    x[0] = (x[0].float() ** 2 / 255).to(torch.uint8)  # skewed histogram
    x[1] //= 16  # 16 levels
    out = IMAGE_OPS["equalize"](x, torch.zeros(3))
    assert not torch.equal(out, x)
    assert torch.equal(out, pil_reference(x, ImageOps.equalize))


def test_equalize_edge_cases_match_pil():
    x = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
    x[0] = 9  # one level
    x[1, :, :, :16] = 200  # two levels
    x[1, 0, 0, 0] = 3
    x[2] = (torch.arange(1024) % 256).view(32, 32).to(torch.uint8)  # flat histogram
    x[3] = 250
    x[3, 0, :3] = 17  # almost all pixels at the top level: step 0
    out = IMAGE_OPS["equalize"](x, torch.zeros(4))
    assert torch.equal(out, pil_reference(x, ImageOps.equalize))


@pytest.mark.parametrize("space", [AUTOAUGMENT_SPACE, TRIVIALAUGMENT_SPACE])
def test_magnitude_zero_is_identity(space):
    x = images()
    levels, center, _ = magnitude_table(space, 31, 13, 17)
    for k, (name, r) in enumerate(space.items()):
        if r is None:
            continue
        value = torch.full((4,), float(center[k] + levels[k, 0]))
        assert torch.equal(IMAGE_OPS[name](x, value), x), name


def test_magnitude_tables_follow_torchvision_formulas():
    levels, _, _ = magnitude_table(AUTOAUGMENT_SPACE, 31, 28, 32)
    names = list(AUTOAUGMENT_SPACE)
    bits = 8 - (torch.arange(31) / (30 / 4)).round()
    assert torch.equal(levels[names.index("posterize")].round(), bits)
    assert levels[names.index("translate_x"), -1] == pytest.approx(150 / 331 * 32)
    assert levels[names.index("translate_y"), -1] == pytest.approx(150 / 331 * 28)
    assert levels[names.index("rotate"), 9] == pytest.approx(9.0)  # 30 degrees / 30 bins
    wide, _, _ = magnitude_table(TRIVIALAUGMENT_SPACE, 31, 28, 32)
    assert torch.equal(wide[names.index("posterize")].round(),
                       8 - (torch.arange(31) / (30 / 6)).round())


def test_apply_per_sample_gives_each_image_its_own_op():
    x = images(n=6)
    ops = ["identity", "invert", "solarize", "posterize"]
    op = torch.tensor([1, -1, 2, 3, 0, 2])
    value = torch.tensor([0.0, 0.0, 128.0, 2.0, 0.0, 50.0])
    out = apply_per_sample(x, op, value, ops)
    for b in range(6):
        if op[b] <= 0:
            expected = x[b]
        else:
            expected = IMAGE_OPS[ops[op[b]]](x[b:b + 1], value[b:b + 1])[0]
        assert torch.equal(out[b], expected)


def candidates(x: torch.Tensor, space: dict, bins, num_bins: int) -> list[list[torch.Tensor]]:
    """Every image's possible outputs of one op drawn from ``space`` at the given bins."""
    levels, center, signed = magnitude_table(space, num_bins, x.shape[-2], x.shape[-1])
    out = [[] for _ in x]
    for k, name in enumerate(space):
        for j in bins:
            for sign in (1.0, -1.0) if signed[k] else (1.0,):
                v = torch.full((len(x),), float(center[k] + sign * levels[k, j]))
                for b, img in enumerate(IMAGE_OPS[name](x, v)):
                    out[b].append(img)
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_randaugment_output_is_one_drawn_op_per_image(channels):
    x = images(n=24, c=channels, h=9, w=9)
    out = RandAugment(num_ops=1, magnitude=12)(x, torch.Generator().manual_seed(0))
    options = candidates(x, AUTOAUGMENT_SPACE, [12], 31)
    matched = [[i for i, c in enumerate(opts) if torch.equal(c, o)]
               for opts, o in zip(options, out)]
    assert all(matched), "an image is not any single op of its own at magnitude 12"
    assert len({m[0] for m in matched}) >= 8  # different images drew different ops


def test_randaugment_n_ops_are_n_successive_single_op_rounds():
    x = images(n=16, c=3, h=9, w=9)
    two = RandAugment(num_ops=2, magnitude=5)(x, torch.Generator().manual_seed(3))
    one, g = RandAugment(num_ops=1, magnitude=5), torch.Generator().manual_seed(3)
    assert torch.equal(two, one(one(x, g), g))


def test_trivialaugment_output_is_one_op_at_some_magnitude():
    x = images(n=12, c=3, h=8, w=8)
    out = TrivialAugment()(x, torch.Generator().manual_seed(1))
    options = candidates(x, TRIVIALAUGMENT_SPACE, range(31), 31)
    assert all(any(torch.equal(c, o) for c in opts) for opts, o in zip(options, out))


def test_autoaugment_output_is_a_subpolicy_of_the_imagenet_policy():
    x = images(n=8, c=3, h=8, w=8)
    aug = AutoAugment()
    out = aug(x, torch.Generator().manual_seed(2))
    levels, center, signed = magnitude_table(aug.space, 10, 8, 8)
    names = list(aug.space)

    def run(img, name, m, sign):
        k = names.index(name)
        v = center[k] + (sign if signed[k] else 1.0) * levels[k, m or 0]
        return IMAGE_OPS[name](img[None], v.view(1))[0]

    for b in range(8):
        reachable = []
        for steps in IMAGENET_POLICY:
            for applied in itertools.product([False, True], repeat=2):
                for signs in itertools.product([1.0, -1.0], repeat=2):
                    img = x[b]
                    for (name, _, m), a, s in zip(steps, applied, signs):
                        img = run(img, name, m, s) if a else img
                    reachable.append(img)
        assert any(torch.equal(r, out[b]) for r in reachable)


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_policy_is_deterministic_and_keeps_dtype_and_shape(name, channels):
    x = images(n=16, c=channels, h=12, w=12)
    aug = build_augment(name)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, images(n=16, c=channels, h=12, w=12))  # input untouched


def test_policies_reject_bad_options_and_inputs():
    with pytest.raises(ValueError, match="magnitude"):
        build_augment({"name": "randaugment", "magnitude": 31})
    with pytest.raises(ValueError, match="policy"):
        build_augment({"name": "autoaugment", "policy": "cifar100"})
    with pytest.raises(ValueError, match="uint8"):
        AUGMENTS.get("trivialaugment")()(torch.zeros(2, 3, 8, 8), torch.Generator())
