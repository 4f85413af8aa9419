"""Random erasing (Zhong et al. 2020), batched: each image, with probability ``p``, gets one
rectangle of area fraction ~ U(scale) and aspect ratio (height / width) log-uniform in ``ratio``
filled with ``value`` (a gray level) or ``"random"`` (uniform noise per pixel and channel).

Like torchvision's ``RandomErasing``, a box is proposed up to ``attempts`` times per image and
the first one that fits inside the image is used (an image with none is left alone); all
proposals are drawn at once. Runs on uint8 before normalization, so ``value: 0`` is black
rather than the dataset mean. Config::

    augment: [flip, {name: random_erasing, p: 0.25, value: random}]
"""

from __future__ import annotations

import math

import torch

from archlab.data.augment import AUGMENTS


@AUGMENTS.register("random_erasing")
class RandomErasing:
    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                 ratio: tuple[float, float] = (0.3, 3.3), value: int | str = 0,
                 attempts: int = 10) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random_erasing: p must be in [0, 1], got {p}")
        scale, ratio = tuple(scale), tuple(ratio)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"random_erasing: scale must be (low, high) with "
                             f"0 < low <= high <= 1, got {scale}")
        if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"random_erasing: ratio must be (low, high) with 0 < low <= high, "
                             f"got {ratio}")
        if not (value == "random" or (isinstance(value, int) and 0 <= value <= 255)):
            raise ValueError(f"random_erasing: value must be a gray level in [0, 255] or "
                             f"'random', got {value!r}")
        if attempts < 1:
            raise ValueError(f"random_erasing: attempts must be >= 1, got {attempts}")
        self.p, self.scale, self.ratio = p, scale, ratio
        self.value, self.attempts = value, attempts

    def boxes(self, n: int, h: int, w: int, generator: torch.Generator,
              device: torch.device) -> torch.Tensor:
        """(n, 4) long boxes (top, left, height, width); height 0 where nothing is erased."""
        shape = (n, self.attempts)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)

        area = h * w * uniform(*self.scale)
        aspect = uniform(math.log(self.ratio[0]), math.log(self.ratio[1])).exp_()
        bh = (area * aspect).sqrt_().round_().long()  # (n, attempts)
        bw = (area / aspect).sqrt_().round_().long()
        fits = (bh < h) & (bw < w)
        first = fits.int().argmax(1, keepdim=True)  # first attempt that fits
        erase = fits.any(1) & (torch.rand(n, generator=generator, device=device) < self.p)
        bh = bh.gather(1, first).squeeze(1) * erase
        bw = bw.gather(1, first).squeeze(1) * erase
        # top uniform in [0, h - bh], as randint(0, h - bh + 1)
        top = (torch.rand(n, generator=generator, device=device) * (h - bh + 1)).long()
        left = (torch.rand(n, generator=generator, device=device) * (w - bw + 1)).long()
        return torch.stack([top, left, bh, bw], dim=1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"random_erasing: expects a uint8 (B, C, H, W) batch (augment before "
                             f"normalization), got {x.dtype} of shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        top, left, bh, bw = self.boxes(n, h, w, generator, x.device).T[..., None]  # (B, 1) each
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        in_rows = ((rows >= top) & (rows < top + bh)).to(torch.uint8)  # (B, H)
        in_cols = ((cols >= left) & (cols < left + bw)).to(torch.uint8)  # (B, W)
        # 0/1 uint8 arithmetic rather than a full-size bool mask (slow torch.where on CPU)
        inside = (in_rows[:, :, None] * in_cols[:, None, :])[:, None]  # (B, 1, H, W)
        if self.value == "random":
            fill = torch.randint(0, 256, x.shape, generator=generator, device=x.device,
                                 dtype=torch.uint8)
        else:
            fill = torch.tensor(self.value, dtype=torch.uint8, device=x.device)
        return x * (1 - inside) + fill * inside
