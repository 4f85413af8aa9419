"""Scaled dot-product and multi-head attention, written out (Vaswani et al., NeurIPS 2017).

``MultiHeadAttention`` keeps ``nn.MultiheadAttention``'s parameter names (``in_proj_weight``,
``in_proj_bias``, ``out_proj``) so checkpoints that use torch's module (torchvision's ViT among
them) load unchanged. Positional schemes that act on the scores (relative position bias, local
windows, causal masks) enter as an additive ``attn_bias`` / boolean ``attn_mask``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None,
                                 attn_bias: torch.Tensor | None = None,
                                 dropout_p: float = 0.0, training: bool = False
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d + bias) v.

    q: (..., Lq, d), k/v: (..., Lk, d). ``attn_mask`` is boolean, True where attention is
    *allowed*, broadcastable to (..., Lq, Lk); ``attn_bias`` is added to the scores.
    Returns (output (..., Lq, d), attention weights (..., Lq, Lk)).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Lq, Lk)
    if attn_bias is not None:
        scores = scores + attn_bias
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    if dropout_p > 0 and training:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """(L, L) boolean mask allowing position i to attend to positions <= i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """Multi-head attention over batch-first tensors (B, L, D); self- or cross-attention."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                attn_bias: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``key_padding_mask``: (B, Lk) boolean, True marks padding to ignore (torch's sense).

        Returns (output (B, Lq, D), head-averaged weights (B, Lq, Lk) or None); per-head
        weights are kept in ``self.last_attn`` when ``need_weights`` is set.
        """
        key = query if key is None else key
        value = key if value is None else value
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (self.in_proj_bias.chunk(3) if self.in_proj_bias is not None
                         else (None, None, None))
        q = self._split_heads(F.linear(query, w_q, b_q))  # (B, L, D) -> (B, H, L, D/H)
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))
        mask = attn_mask
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk)
            mask = keep if mask is None else mask & keep
        out, weights = scaled_dot_product_attention(q, k, v, mask, attn_bias,
                                                    self.dropout, self.training)
        out = out.transpose(1, 2).flatten(2)  # (B, H, Lq, D/H) -> (B, Lq, D)
        self.last_attn = weights.detach() if need_weights else None
        return self.out_proj(out), (weights.mean(1) if need_weights else None)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
