"""Transformer encoder and decoder layers (Vaswani et al., Attention Is All You Need, 2017).

Parameter names and registration order follow ``torch.nn.TransformerEncoderLayer`` /
``TransformerDecoderLayer`` (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
``norm1..3``), so their state_dicts load into each other; with the same weights both compute the
same thing. Unlike torch's layers these accept an additive ``attn_bias`` (relative positions) and
use archlab's mask convention: boolean ``attn_mask`` True where attention is *allowed*,
``key_padding_mask`` True at padding.

``norm_first=False`` is the paper's post-norm ``x = LN(x + f(x))``; ``norm_first=True`` the
pre-norm ``x = x + f(LN(x))`` that trains deep stacks without warmup (Xiong et al. 2020).
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.attention import MultiHeadAttention


class TransformerEncoderLayer(nn.Module):
    """Self-attention + position-wise feed-forward over (B, T, D)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, act: str = "relu", norm_first: bool = False,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.act = create_act(act)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                attn_bias: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), attn_mask, attn_bias, key_padding_mask)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._self_attention(x, attn_mask, attn_bias, key_padding_mask))
        return self.norm2(x + self._feed_forward(x))

    def _self_attention(self, x, attn_mask, attn_bias, key_padding_mask) -> torch.Tensor:
        out, _ = self.self_attn(x, attn_mask=attn_mask, attn_bias=attn_bias,
                                key_padding_mask=key_padding_mask)
        return self.dropout1(out)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.act(self.linear1(x)))))


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder memory, feed-forward.

    The caller passes the causal mask (``archlab.layers.attention.causal_mask``) as
    ``self_attn_mask``; keeping it explicit lets the same layer run bidirectionally.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, act: str = "relu", norm_first: bool = False,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.multihead_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.act = create_act(act)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                self_attn_mask: torch.Tensor | None = None,
                self_attn_bias: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, Tt, D) target states, memory: (B, Ts, D) encoder output -> (B, Tt, D)."""
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), self_attn_mask, self_attn_bias,
                                         key_padding_mask)
            x = x + self._cross_attention(self.norm2(x), memory, memory_key_padding_mask)
            return x + self._feed_forward(self.norm3(x))
        x = self.norm1(x + self._self_attention(x, self_attn_mask, self_attn_bias,
                                                key_padding_mask))
        x = self.norm2(x + self._cross_attention(x, memory, memory_key_padding_mask))
        return self.norm3(x + self._feed_forward(x))

    def _self_attention(self, x, attn_mask, attn_bias, key_padding_mask) -> torch.Tensor:
        out, _ = self.self_attn(x, attn_mask=attn_mask, attn_bias=attn_bias,
                                key_padding_mask=key_padding_mask)
        return self.dropout1(out)

    def _cross_attention(self, x, memory, memory_key_padding_mask) -> torch.Tensor:
        out, _ = self.multihead_attn(x, memory, memory, key_padding_mask=memory_key_padding_mask)
        return self.dropout2(out)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.linear2(self.dropout(self.act(self.linear1(x)))))
