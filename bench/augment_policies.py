"""Augmented images/s: archlab's batched RandAugment vs kornia's, same batches, same run.

archlab's ``randaugment`` draws ops and signs per image and works on uint8; kornia's
``kornia.augmentation.auto.RandAugment`` draws the ops once per batch (signs per image) and
works on float images in [0, 1]. Both get their own input format ready-made (the uint8 -> float
conversion kornia would need is not timed; kornia gets gray images as 3 channels, since its
colour ops reject 1), with N = 2 ops at magnitude 9 of 30; also timed:
archlab's TrivialAugment and AutoAugment, and a PIL per-image RandAugment loop as the classic
baseline. Needs ``pip install kornia`` for the kornia column (it is skipped otherwise).

    python bench/augment_policies.py [--batch-size 256] [--seconds 0.2] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from _common import emit
from archlab.data.autoaugment import AutoAugment, RandAugment, TrivialAugment


def images_per_s(fn, x: torch.Tensor, seconds: float) -> float:
    """Best per-batch rate over ``seconds`` (the minimum batch time is the least disturbed by
    other load on a shared machine)."""
    fn(x)  # warm-up
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return x.shape[0] / best


def pil_randaugment(num_ops: int, magnitude: float):
    """torchvision-style RandAugment on PIL images, one image at a time (the classic loader)."""
    m = magnitude / 30
    ops = [
        lambda im, s: im,
        lambda im, s: im.transform(im.size, Image.AFFINE, (1, s * 0.3 * m, 0, 0, 1, 0)),
        lambda im, s: im.transform(im.size, Image.AFFINE, (1, 0, 0, s * 0.3 * m, 1, 0)),
        lambda im, s: im.transform(im.size, Image.AFFINE, (1, 0, int(s * 0.45 * m * im.size[0]),
                                                           0, 1, 0)),
        lambda im, s: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1,
                                                           int(s * 0.45 * m * im.size[1]))),
        lambda im, s: im.rotate(s * 30 * m),
        lambda im, s: ImageEnhance.Brightness(im).enhance(1 + s * 0.9 * m),
        lambda im, s: ImageEnhance.Color(im).enhance(1 + s * 0.9 * m),
        lambda im, s: ImageEnhance.Contrast(im).enhance(1 + s * 0.9 * m),
        lambda im, s: ImageEnhance.Sharpness(im).enhance(1 + s * 0.9 * m),
        lambda im, s: ImageOps.posterize(im, int(8 - round(4 * m))),
        lambda im, s: ImageOps.solarize(im, int(256 - 256 * m)),
        lambda im, s: ImageOps.autocontrast(im),
        lambda im, s: ImageOps.equalize(im),
    ]
    rng = random.Random(0)

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = x.permute(0, 2, 3, 1).numpy()
        out = []
        for a in arr:
            im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
            for _ in range(num_ops):
                im = rng.choice(ops)(im, rng.choice((-1, 1)))
            out.append(np.asarray(im))
        return torch.from_numpy(np.stack(out))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=0.2, help="timed per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--magnitude", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from kornia.augmentation.auto import RandAugment as KorniaRandAugment
    except ImportError:
        KorniaRandAugment = None

    results = {}
    for shape_name, (c, h, w) in {"gray_28x28": (1, 28, 28), "rgb_32x32": (3, 32, 32)}.items():
        x = torch.randint(0, 256, (args.batch_size, c, h, w), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(0)
        ours, trivial, auto = RandAugment(num_ops=2, magnitude=args.magnitude), TrivialAugment(), \
            AutoAugment()
        runs = {"archlab_randaugment": (lambda t: ours(t, g), x),
                "archlab_trivialaugment": (lambda t: trivial(t, g), x),
                "archlab_autoaugment": (lambda t: auto(t, g), x),
                "pil_per_image_randaugment": (pil_randaugment(2, args.magnitude), x)}
        if KorniaRandAugment is not None:
            kornia_aug = KorniaRandAugment(n=2, m=args.magnitude)
            # kornia's colour ops need 3 channels: gray goes in replicated (3x the pixels)
            runs["kornia_randaugment"] = (torch.no_grad()(kornia_aug),
                                          (x.float() / 255).expand(-1, 3, -1, -1).contiguous())
        best = {k: 0.0 for k in runs}
        for r in range(args.rounds):  # interleaved rounds, best of each: load drift hits all alike
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                fn, inp = runs[name]
                best[name] = max(best[name], images_per_s(fn, inp, args.seconds))
        row = {k: round(v) for k, v in best.items()}
        if "kornia_randaugment" in row:
            row["archlab_vs_kornia_randaugment"] = round(
                best["archlab_randaugment"] / best["kornia_randaugment"], 2)
        results[shape_name] = row
    kornia_version = None
    if KorniaRandAugment is not None:
        import kornia
        kornia_version = kornia.__version__
    emit({"benchmark": "augment_policies", "unit": "images/s", "device": "cpu",
          "batch_size": args.batch_size, "num_ops": 2, "magnitude": args.magnitude,
          "seconds_per_measurement": args.seconds, "rounds": args.rounds,
          "threads": args.threads, "kornia": kornia_version, "results": results})


if __name__ == "__main__":
    main()
