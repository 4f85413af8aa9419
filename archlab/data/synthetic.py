"""A deterministic synthetic image dataset for tests: learnable class patterns plus noise.

Each class ``c`` has a fixed prototype ``P_c`` (a smooth random pattern: Gaussian noise at a
quarter of the resolution, upsampled bilinearly). An image is ``128 + 48 * (a * P_c + noise)``
clipped to uint8, with a per-image contrast ``a`` in [0.75, 1.25] and unit Gaussian pixel noise
of std ``NOISE_STD``, so a linear model separates the classes well but not trivially. Labels
are balanced (round-robin, then shuffled). Train and test share prototypes and differ in noise.
Everything derives from ``seed``: same options, same tensors. For tests only, never benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from archlab.data._registry import ArraySplit, DatasetBundle, channel_stats, register_dataset

NOISE_STD = 0.5
GRAY, SCALE = 128.0, 48.0  # uint8 offset and scale of a unit-variance pattern


def _prototypes(num_classes: int, in_chans: int, img_size: int, gen: torch.Generator) -> torch.Tensor:
    coarse = max(img_size // 4, 2)
    p = torch.randn(num_classes, in_chans, coarse, coarse, generator=gen)
    p = F.interpolate(p, size=(img_size, img_size), mode="bilinear", align_corners=False)
    # unit std per prototype, so every class is equally visible
    return p / p.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)


def _sample(protos: torch.Tensor, n: int, gen: torch.Generator) -> ArraySplit:
    num_classes = protos.shape[0]
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=gen)]
    contrast = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = NOISE_STD * torch.randn(n, *protos.shape[1:], generator=gen)
    x = GRAY + SCALE * (contrast * protos[labels] + noise)  # (N, C, H, W)
    return ArraySplit(x.round().clamp(0, 255).to(torch.uint8), labels.long())


@register_dataset("synthetic", description="deterministic class patterns + noise (tests only)",
                  downloadable=False, synthetic=True, location="generated in memory")
def synthetic(root: Path | None = None, download: bool = True, num_train: int = 512,
              num_test: int = 128, num_classes: int = 10, img_size: int = 16, in_chans: int = 1,
              seed: int = 0) -> DatasetBundle:
    """``num_train``/``num_test`` images of ``in_chans`` x ``img_size``^2; root/download ignored."""
    for key, value, low in (("num_train", num_train, 1), ("num_test", num_test, 1),
                            ("num_classes", num_classes, 2), ("img_size", img_size, 2),
                            ("in_chans", in_chans, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"synthetic: {key} must be an int >= {low}, got {value!r}")
    gen = torch.Generator().manual_seed(seed)
    protos = _prototypes(num_classes, in_chans, img_size, gen)
    train, test = _sample(protos, num_train, gen), _sample(protos, num_test, gen)
    mean, std = channel_stats(train.images)
    return DatasetBundle(train=train, test=test, classes=[f"class{i}" for i in range(num_classes)],
                         in_chans=in_chans, img_size=(img_size, img_size), mean=mean, std=std,
                         source=f"synthetic(seed={seed})")
