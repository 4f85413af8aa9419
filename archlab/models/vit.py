"""Vision Transformer (Dosovitskiy et al., ICLR 2021): an image as a sequence of patch tokens.

Patches are embedded by a strided conv (Eq. 1), a learned class token is prepended, learned
position embeddings are added, and pre-norm Transformer blocks follow (Eqs. 2-3:
``x + MSA(LN(x))``, ``x + MLP(LN(x))``, LayerNorm eps 1e-6, GELU MLP of width 4D); the final
LayerNorm's class token feeds the head (Eq. 4).

Sizes (D, depth, heads): tiny (192, 12, 3) and small (384, 12, 6) from DeiT (Touvron et al.
2021), base (768, 12, 12) from the paper. ``vit_b_16`` (and its alias ``vit_base_patch16``)
reproduces torchvision's ``vit_b_16`` module layout, so its checkpoints load with
``strict=True``. The ``*_patch4`` variants are for 32x32 images (8x8 = 64 patches);
``img_size`` and ``patch_size`` are options, e.g. 28x28 digits with 7x7 patches::

    model = create_model("vit_tiny_patch4", num_classes=10, in_chans=1, img_size=28)
    maps = model.forward_intermediates(x)    # per block (B, D, 7, 7), for Grad-CAM-style tools
    attn = model.get_attention_maps(x)       # per block (B, heads, 50, 50), token 0 = class
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.attention import MultiHeadAttention
from archlab.layers.drop import DropPath
from archlab.layers.patch_embed import PatchEmbed
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = ("Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image "
         "Recognition at Scale, ICLR 2021")
LN_EPS = 1e-6


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block (torchvision names: ln_1, self_attention, ln_2, mlp.0/.3)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 act: str = "gelu") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.self_attention = MultiHeadAttention(dim, num_heads, dropout=attn_drop_rate)
        self.dropout = nn.Dropout(drop_rate)
        self.ln_2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), create_act(act), nn.Dropout(drop_rate),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(drop_rate))
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        """``need_weights`` keeps the per-head attention in ``self_attention.last_attn``."""
        y, _ = self.self_attention(self.ln_1(x), need_weights=need_weights)
        x = x + self.drop_path(self.dropout(y))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class Encoder(nn.Module):
    """Position embedding + blocks + final LayerNorm (torchvision's ``encoder`` layout)."""

    def __init__(self, seq_length: int, depth: int, dim: int, num_heads: int, mlp_dim: int,
                 drop_rate: float, attn_drop_rate: float, drop_path_rate: float,
                 act: str) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(drop_rate)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(dim, num_heads, mlp_dim, drop_rate,
                                                attn_drop_rate,
                                                drop_path_rate * i / max(1, depth - 1), act))
            for i in range(depth)))  # stochastic depth rising linearly to drop_path_rate (DeiT)
        self.ln = nn.LayerNorm(dim, eps=LN_EPS)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pos_embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.embed(x)))


class VisionTransformer(Classifier):
    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 act: str = "gelu") -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_classes, self.num_features = embed_dim, num_classes, embed_dim
        self.class_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.conv_proj = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.encoder = Encoder(self.conv_proj.num_patches + 1, depth, embed_dim, num_heads,
                               int(embed_dim * mlp_ratio), drop_rate, attn_drop_rate,
                               drop_path_rate, act)
        self.heads = nn.Sequential(OrderedDict(head=linear_or_identity(embed_dim, num_classes)))
        h, w = self.conv_proj.img_size
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, h, w), num_classes=num_classes, classifier="heads.head",
            first_conv="conv_proj", **imagenet_stats(in_chans), family="vit", paper=PAPER)
        self._init_weights()

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)  # (B, C, H, W) -> (B, N, D)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)  # -> (B, 1 + N, D), class token first

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final LayerNorm, (B, 1 + N, D)."""
        return self.encoder(self._tokens(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]  # class token (B, 1 + N, D) -> (B, D)
        return x if pre_logits else self.heads(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.heads.head = linear_or_identity(self.embed_dim, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's patch tokens as a feature map (B, D, H/p, W/p); class token dropped."""
        gh, gw = self.conv_proj.grid_size
        x, outs = self.encoder.embed(self._tokens(x)), []
        for block in self.encoder.layers:
            x = block(x)
            # patch tokens (B, N, D) -> (B, D, gh, gw)
            outs.append(x[:, 1:].transpose(1, 2).unflatten(2, (gh, gw)))
        return outs

    def get_attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per block, the (detached) attention weights (B, heads, 1 + N, 1 + N); row/column 0
        is the class token, the rest are patches in row-major order."""
        x, maps = self.encoder.embed(self._tokens(x)), []
        for block in self.encoder.layers:
            x = block(x, need_weights=True)
            maps.append(block.self_attention.last_attn)
        return maps

    def _init_weights(self) -> None:
        # torchvision's ViT init, except the head (small normal instead of zeros, so every
        # parameter receives gradient from the first step).
        fan_in = self.conv_proj.in_channels * self.conv_proj.patch_size ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        for block in self.encoder.layers:
            for m in (block.mlp[0], block.mlp[3]):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        if isinstance(self.heads.head, nn.Linear):
            nn.init.trunc_normal_(self.heads.head.weight, std=0.02)
            nn.init.zeros_(self.heads.head.bias)


# name: (embed_dim, depth, num_heads, patch_size, img_size, num_classes, heavy)
VARIANTS = {
    "vit_tiny_patch4": (192, 12, 3, 4, 32, 10, False),
    "vit_small_patch4": (384, 12, 6, 4, 32, 10, True),  # 21M params, 2.7 GFLOPs at 32px
    "vit_tiny_patch16": (192, 12, 3, 16, 224, 1000, True),  # 2.5 GFLOPs at 224px
    "vit_small_patch16": (384, 12, 6, 16, 224, 1000, True),
    "vit_base_patch16": (768, 12, 12, 16, 224, 1000, True),
    "vit_b_16": (768, 12, 12, 16, 224, 1000, True),
}


def _register(name: str, embed_dim: int, depth: int, num_heads: int, patch_size: int,
              img_size: int, num_classes: int, heavy: bool) -> None:
    defaults = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                    patch_size=patch_size, img_size=img_size, num_classes=num_classes)

    def builder(**kwargs) -> VisionTransformer:
        return VisionTransformer(**{**defaults, **kwargs})

    builder.__name__ = name
    builder.__doc__ = (f"ViT D={embed_dim}, depth {depth}, {num_heads} heads, {patch_size}x"
                       f"{patch_size} patches of {img_size}x{img_size} images; defaults "
                       f"{num_classes} classes. Any VisionTransformer option can be overridden.")
    register_model(name, family="vit", paper=PAPER, heavy=heavy,
                   model_cls=VisionTransformer)(builder)


for _name, _row in VARIANTS.items():
    _register(_name, *_row)
