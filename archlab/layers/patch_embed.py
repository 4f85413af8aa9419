"""Patch embedding (Dosovitskiy et al., ICLR 2021, Eq. 1): cut the image into p x p patches
and project each linearly to D dims, i.e. a conv with kernel = stride = p.

``PatchEmbed`` *is* that ``nn.Conv2d`` (so its parameters are ``weight`` / ``bias``, and a ViT
that stores it as ``conv_proj`` has torchvision's keys), but its forward returns the token
sequence::

    embed = PatchEmbed(img_size=28, patch_size=4, in_chans=1, embed_dim=192)
    tokens = embed(images)          # (B, 1, 28, 28) -> (B, 49, 192)
"""

from __future__ import annotations

import torch
from torch import nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class PatchEmbed(nn.Conv2d):
    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16,
                 in_chans: int = 3, embed_dim: int = 768) -> None:
        size = _pair(img_size)
        if any(s % patch_size for s in size):
            raise ValueError(f"img_size {size} must be divisible by patch_size {patch_size}")
        super().__init__(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.img_size = size
        self.patch_size = patch_size
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"PatchEmbed built for {self.img_size[0]}x{self.img_size[1]} "
                             f"images (learned position embeddings fix the grid), got "
                             f"{x.shape[-2]}x{x.shape[-1]}")
        x = super().forward(x)  # (B, C, H, W) -> (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # -> (B, N, D), patches in row-major order
