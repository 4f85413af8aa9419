"""GPT: a decoder-only Transformer language model (Radford et al. 2018; GPT-2, 2019).

Token ids (B, T) -> next-token logits (B, T, V), position t seeing only tokens <= t:

    h_0 = E[idx] + P[:T]               token + learned absolute position embeddings
    h_l = h_{l-1} + Attn(LN(h_{l-1}))  causal multi-head self-attention (pre-LN, GPT-2)
    h_l = h_l + MLP(LN(h_l))           Linear(D, 4D) -> GELU -> Linear(4D, D)
    logits = LN_f(h_L) Eᵀ              head tied to the token embedding (Press & Wolf 2017)

GPT-2's changes to GPT-1, all kept here: LayerNorm moved to each sub-block's input, a final
LayerNorm after the last block, and residual projections initialized with std
0.02 / sqrt(2 * depth) (two residual additions per block, GPT-2 §2.3).

``fused=True`` computes attention with ``torch.nn.functional.scaled_dot_product_attention``
(one kernel, no (T, T) weight matrix kept for backward on the efficient backends);
``fused=False`` runs the written-out ``softmax(Q Kᵀ / sqrt(d) + mask) V`` of
:mod:`archlab.layers.attention` on the same parameters, for reading and checking. torch's
FLOP counter has no formula for the CPU fused kernel, so ``count_flops`` on a CPU model misses
attention unless ``fused=False``; ``model_info`` counts on the meta device and includes it.

Usage: ``create_model("gpt_char", vocab_size=65, block_size=256)``; the dataset fixes
``vocab_size`` and ``block_size`` (the longest context the model can see).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.attention import causal_mask, scaled_dot_product_attention
from archlab.layers.positional import LearnedPositionalEmbedding
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

PAPER = ("Radford et al., Improving Language Understanding by Generative Pre-Training, 2018; "
         "Language Models are Unsupervised Multitask Learners, 2019")
MLP_RATIO = 4  # GPT-1 §4.1: 3072-wide feed-forward for a 768-wide model
INIT_STD = 0.02  # GPT-1 §4.1: N(0, 0.02) "is sufficient" since LayerNorm is used throughout


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention over (B, T, D); query t attends to keys <= t."""

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 fused: bool = True) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.num_heads, self.dropout, self.fused = num_heads, dropout, fused
        self.qkv = nn.Linear(width, 3 * width, bias=bias)  # q, k, v in one matmul
        self.proj = nn.Linear(width, width, bias=bias)  # residual projection (scaled init)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, 3D) -> 3 x (B, H, T, D/H)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        p = self.dropout if self.training else 0.0
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            mask = causal_mask(x.shape[1], device=x.device)
            out, _ = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                  training=self.training)
        out = out.transpose(1, 2).flatten(2)  # (B, H, T, D/H) -> (B, T, D)
        return self.resid_drop(self.proj(out))


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(D, 4D) -> GELU -> Linear(4D, D) -> dropout."""

    def __init__(self, width: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, MLP_RATIO * width, bias=bias)
        self.act = create_act("gelu")
        self.fc2 = nn.Linear(MLP_RATIO * width, width, bias=bias)  # residual projection
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-LN decoder block (GPT-2): x + Attn(LN(x)), then + MLP(LN(.))."""

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 fused: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, bias=bias)
        self.attn = CausalSelfAttention(width, num_heads, dropout, bias, fused)
        self.norm2 = nn.LayerNorm(width, bias=bias)
        self.mlp = MLP(width, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(Classifier):
    """Decoder-only Transformer LM: ids (B, T <= block_size) -> logits (B, T, vocab_size).

    Options: ``depth`` blocks of ``width`` channels and ``num_heads`` heads; ``dropout`` on the
    embeddings, attention weights and residual branches; ``bias=False`` drops every Linear and
    LayerNorm bias; ``tie_weights`` shares the head with the token embedding; ``fused`` picks
    torch's attention kernel over the written-out one (same parameters, same results).
    ``vocab_size`` and ``block_size`` default to a Tiny-Shakespeare-sized character model so
    ``archlab models info`` can build it; a dataset always sets them.
    """

    def __init__(self, vocab_size: int = 65, block_size: int = 128, depth: int = 4,
                 width: int = 128, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 tie_weights: bool = True, fused: bool = True) -> None:
        super().__init__()
        if vocab_size < 1 or block_size < 1 or depth < 1:
            raise ValueError(f"vocab_size, block_size and depth must be >= 1, got "
                             f"{vocab_size}, {block_size}, {depth}")
        self.vocab_size, self.block_size, self.depth = vocab_size, block_size, depth
        self.num_classes, self.num_features = vocab_size, width
        self.tok_embed = nn.Embedding(vocab_size, width)
        self.pos_embed = LearnedPositionalEmbedding(width, block_size, init_std=INIT_STD)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, num_heads, dropout, bias, fused)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(width, bias=bias)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self._init_weights()
        if tie_weights:  # one (V, D) matrix both reads and writes tokens (Press & Wolf 2017)
            self.head.weight = self.tok_embed.weight
        self.default_cfg = DefaultCfg(input_size=(block_size,), num_classes=vocab_size,
                                      classifier="head", first_conv=None, mean=(0.0,),
                                      std=(1.0,), family="gpt", paper=PAPER)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # GPT-2 §2.3: scale residual-layer weights by 1/sqrt(N), N = 2 * depth residual adds,
        # so the residual stream's variance does not grow with depth.
        residual_std = INIT_STD / math.sqrt(2 * self.depth)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.fc2.weight, std=residual_std)

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        """Dummy ids (batch_size, block_size) for ``forward`` (tracing, FLOP counting)."""
        return (torch.zeros(batch_size, self.block_size, dtype=torch.long,
                            device=self.tok_embed.weight.device),)

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.ndim != 2 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(f"expected integer token ids of shape (B, T), got {idx.dtype} "
                             f"{tuple(idx.shape)}")
        if idx.shape[1] > self.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds block_size="
                             f"{self.block_size}; crop the context to its last block_size "
                             f"tokens (sampling.generate does) or build a larger block_size")
        return self.drop(self.pos_embed(self.tok_embed(idx)))  # (B, T) -> (B, T, D)

    def forward_features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> final-LayerNormed hidden states (B, T, D)."""
        x = self._embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)  # (B, T, D) -> (B, T, V)

    def forward_intermediates(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream (B, T, D) after every block, shallow to deep (before LN_f)."""
        x, outs = self._embed(idx), []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh, untied head with ``num_classes`` outputs (0: identity)."""
        self.num_classes = num_classes
        self.head = linear_or_identity(self.num_features, num_classes)


# Architecture as data: (depth, width, num_heads); every other option keeps GPT's default.
GPT_VARIANTS: dict[str, dict] = {
    "gpt_char": dict(depth=4, width=128, num_heads=4),
    "gpt_mini": dict(depth=6, width=192, num_heads=6),
}


def _build(variant: str, kwargs: dict) -> GPT:
    return GPT(**{**GPT_VARIANTS[variant], **kwargs})


@register_model("gpt_char", family="gpt", paper=PAPER, task="language_model", model_cls=GPT)
def gpt_char(**kwargs) -> GPT:
    """Character-level GPT: 4 blocks, width 128, 4 heads (0.82M params at V=65, T=128)."""
    return _build("gpt_char", kwargs)


@register_model("gpt_mini", family="gpt", paper=PAPER, task="language_model", model_cls=GPT)
def gpt_mini(**kwargs) -> GPT:
    """Small GPT: 6 blocks, width 192, 6 heads (2.7M params at V=65, T=128)."""
    return _build("gpt_mini", kwargs)
