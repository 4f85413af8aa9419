"""Position information for sequence models.

* :class:`SinusoidalPositionalEncoding`: the fixed sin/cos table of Vaswani et al. 2017 (§3.5),
  added to the token embeddings;
* :class:`LearnedPositionalEmbedding`: a learned vector per absolute position (BERT, GPT);
* :class:`RelativePositionBias`: a learned scalar per head and clipped relative distance, added
  to the attention scores (Shaw et al. 2018, in the bucket-free form T5 generalized);
* :func:`local_attention_mask`: a banded boolean mask for windowed (local) attention.

Absolute encodings act on (B, T, D) activations; the relative bias and the mask act on the
(B, H, Lq, Lk) scores through ``MultiHeadAttention(attn_bias=..., attn_mask=...)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(length, dim) table with PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(same)."""
    if length < 0 or dim < 1:
        raise ValueError(f"sinusoidal_encoding needs length >= 0 and dim >= 1, "
                         f"got length={length}, dim={dim}")
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = position * inv_freq  # (L, ceil(D/2))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])  # an odd dim has one sin column more
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[:T] for x of shape (B, T, D); the table is a non-persistent buffer (no weights)."""

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = x.shape[1]
        if offset + length > self.max_len:
            raise ValueError(f"sequence of length {offset + length} exceeds "
                             f"max_len={self.max_len}; build the model with a larger max_len")
        return x + self.pe[offset:offset + length].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """x + P[:T] with a learned P (max_len, D), initialized N(0, 0.02²) as in BERT / GPT-2."""

    def __init__(self, dim: int, max_len: int = 512, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = x.shape[1]
        if offset + length > self.max_len:
            raise ValueError(f"sequence of length {offset + length} exceeds "
                             f"max_len={self.max_len}; build the model with a larger max_len")
        return x + self.weight[offset:offset + length]


def relative_positions(query_len: int, key_len: int, device: torch.device | None = None
                       ) -> torch.Tensor:
    """(Lq, Lk) integer matrix of key position minus query position, j - i."""
    q = torch.arange(query_len, device=device)[:, None]
    k = torch.arange(key_len, device=device)[None, :]
    return k - q


class RelativePositionBias(nn.Module):
    """Learned bias b[h, clip(j - i, -max_distance, max_distance)] added to head h's scores.

    Distances beyond ``max_distance`` share one bucket per side (Shaw et al. 2018 clip the same
    way). ``forward(Lq, Lk)`` returns (H, Lq, Lk), which broadcasts over the batch of
    (B, H, Lq, Lk) scores. One instance is usually shared by all layers, as in T5.
    """

    def __init__(self, num_heads: int, max_distance: int = 16) -> None:
        super().__init__()
        if max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {max_distance}")
        self.num_heads, self.max_distance = num_heads, max_distance
        self.bias = nn.Embedding(2 * max_distance + 1, num_heads)
        nn.init.zeros_(self.bias.weight)  # start as plain attention, as T5 effectively does

    def forward(self, query_len: int, key_len: int) -> torch.Tensor:
        rel = relative_positions(query_len, key_len, self.bias.weight.device)
        index = rel.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.bias(index).permute(2, 0, 1)  # (Lq, Lk, H) -> (H, Lq, Lk)


def local_attention_mask(length: int, window: int, causal: bool = False,
                         device: torch.device | None = None) -> torch.Tensor:
    """(L, L) boolean mask, True where position i may attend to j: |i - j| <= window.

    ``causal=True`` also requires j <= i (a sliding window over the past, as in Longformer's
    causal variant / Mistral). True means *allowed*, the convention of ``MultiHeadAttention``.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    rel = relative_positions(length, length, device)
    allowed = rel.abs() <= window
    if causal:
        allowed = allowed & (rel <= 0)
    return allowed
