"""Transformers over token sequences (Vaswani et al., Attention Is All You Need, NeurIPS 2017).

* :class:`TransformerEncoderClassifier` (``transformer_encoder_tiny``,
  ``task="sequence_classification"``): token ids (B, T) -> logits (B, num_classes), mean or
  [CLS] pooling. ``forward_features`` gives hidden states (B, T', D), T' = T (+1 with CLS);
  ``forward_head(h, padding_mask=...)`` pools over non-padding positions.
* :class:`TransformerSeq2Seq` (``transformer_seq2seq_tiny``, ``task="seq2seq"``): encoder-decoder
  with a causal decoder; ``model(src, tgt_in)`` -> logits (B, Tt, V) under teacher forcing (the
  caller shifts the target right, ``tgt_in = [bos, y_1, ..., y_{n-1}]``); ``generate`` decodes
  greedily.

Options shared by both: ``positions`` = "sinusoidal" (§3.5), "learned" (absolute, BERT/GPT) or
"relative" (a per-head bias on the scores by clipped distance, Shaw et al. 2018 / T5);
``window=w`` restricts self-attention to |i - j| <= w (local attention); tokens equal to
``pad_id`` are masked out as keys and ignored by pooling (``pad_id=None``: no padding).
Padding is expected on the right, so absolute positions of real tokens do not depend on it.

``default_cfg.input_size`` is ``(max_len,)``: a sequence of token ids, not an image, so the
registry's image contract does not apply (these entries carry ``task`` meta to say so).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.attention import causal_mask
from archlab.layers.positional import (LearnedPositionalEmbedding, RelativePositionBias,
                                       SinusoidalPositionalEncoding, local_attention_mask)
from archlab.layers.transformer_block import TransformerDecoderLayer, TransformerEncoderLayer
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

PAPER = "Vaswani et al., Attention Is All You Need, NeurIPS 2017"
POSITIONS = ("sinusoidal", "learned", "relative")
POOLS = ("mean", "cls")


class TokenEmbed(nn.Module):
    """Token ids (B, T) -> sqrt(D) * E[ids] (B, T, D), the paper's embedding scaling (§3.4).

    E starts at N(0, 1/D) so the scaled embeddings have unit scale, like the sin/cos positions
    they are summed with (the initialization fairseq uses).
    """

    def __init__(self, vocab_size: int, d_model: int, pad_id: int | None) -> None:
        super().__init__()
        if pad_id is not None and not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id} must be a token id in [0, {vocab_size}) or None")
        self.vocab_size, self.scale = vocab_size, math.sqrt(d_model)
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        nn.init.normal_(self.weight, std=d_model ** -0.5)
        self.pad_id = pad_id
        if pad_id is not None:
            with torch.no_grad():
                self.weight[pad_id].zero_()

    def non_padding_ids(self, batch_size: int, length: int) -> torch.Tensor:
        """(B, T) ids of one token that is not ``pad_id``: a dummy input."""
        token = 0 if self.pad_id is None else (self.pad_id + 1) % self.vocab_size
        return torch.full((batch_size, length), token, dtype=torch.long, device=self.weight.device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"expected integer token ids of shape (B, T), got {ids.dtype} "
                             f"{tuple(ids.shape)}")
        return F.embedding(ids, self.weight, padding_idx=self.pad_id) * self.scale


def _absolute_positions(positions: str, d_model: int, max_len: int) -> nn.Module:
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions '{positions}'; choose one of {POSITIONS}")
    if positions == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if positions == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    return nn.Identity()  # "relative" acts on the attention scores instead


def _self_attention_mask(padding: torch.Tensor | None, length: int, window: int | None,
                         causal: bool, global_first: bool = False) -> torch.Tensor | None:
    """Boolean (B or 1, 1, L, L) mask (True = allowed) combining padding, window and causality.

    Every position may attend to itself, so a padding query never has an empty row (softmax over
    nothing would be NaN and leak through the next layer's values).
    """
    device = padding.device if padding is not None else None
    allowed = None
    if window is not None:
        allowed = local_attention_mask(length, window, causal=causal, device=device)
        if global_first:  # the [CLS] token sees and is seen by all (Longformer's global tokens)
            allowed[0, :] = True
            allowed[:, 0] = True
    elif causal:
        allowed = causal_mask(length, device=device)
    if padding is not None:
        keep = ~padding[:, None, None, :]  # (B, 1, 1, L)
        allowed = keep if allowed is None else allowed & keep
    if allowed is None:
        return None
    return allowed | torch.eye(length, dtype=torch.bool, device=allowed.device)


class TransformerEncoderClassifier(Classifier):
    """Token ids (B, T) -> logits (B, num_classes).

    ``create_model("transformer_encoder_tiny", num_classes=2, vocab_size=5000, pool="cls")``.
    """

    def __init__(self, num_classes: int = 2, vocab_size: int = 1000, max_len: int = 128,
                 d_model: int = 64, num_heads: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 256, dropout: float = 0.1,
                 positions: str = "sinusoidal", max_distance: int = 16,
                 norm_first: bool = True, pool: str = "mean", window: int | None = None,
                 pad_id: int | None = 0, act: str = "relu") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool '{pool}'; choose one of {POOLS}")
        self.num_classes, self.num_features = num_classes, d_model
        self.pool, self.window, self.pad_id, self.max_len = pool, window, pad_id, max_len
        self.embed = TokenEmbed(vocab_size, d_model, pad_id)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if pool == "cls" else None
        self.pos = _absolute_positions(positions, d_model, max_len)
        self.rel_pos = RelativePositionBias(num_heads, max_distance) if positions == "relative" \
            else None
        self.pos_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, act, norm_first)
            for _ in range(num_layers))
        # Pre-norm leaves the residual stream un-normalized; a final LN is standard (GPT-2, ViT).
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = linear_or_identity(d_model, num_classes)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        self.default_cfg = DefaultCfg(input_size=(max_len,), num_classes=num_classes,
                                      classifier="head", first_conv=None, mean=(0.0,),
                                      std=(1.0,), family="transformer", paper=PAPER)

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        """Dummy arguments for ``forward`` (tracing, FLOP counting): non-padding token ids."""
        length = self.max_len - (self.cls_token is not None)
        return (self.embed.non_padding_ids(batch_size, length),)

    def padding_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """(B, T') True at padding positions of the hidden states (the CLS slot never is)."""
        if self.pad_id is None:
            return None
        padding = tokens == self.pad_id
        if self.cls_token is not None:
            padding = F.pad(padding, (1, 0), value=False)
        return padding

    def _embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x = self.embed(tokens)  # (B, T) -> (B, T, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, T+1, D)
        x = self.pos_drop(self.pos(x))
        length = x.shape[1]
        attn = {"attn_mask": _self_attention_mask(self.padding_mask(tokens), length, self.window,
                                                  causal=False,
                                                  global_first=self.cls_token is not None),
                "attn_bias": self.rel_pos(length, length) if self.rel_pos is not None else None}
        return x, attn

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        x, attn = self._embed(tokens)
        for layer in self.layers:
            x = layer(x, **attn)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False,
                     padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool (B, T', D) -> (B, D); mean pooling skips positions where ``padding_mask`` is set."""
        if self.pool == "cls":
            x = x[:, 0]
        elif padding_mask is None:
            x = x.mean(1)
        else:
            keep = (~padding_mask).unsqueeze(-1).to(x.dtype)  # (B, T', 1)
            x = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return x if pre_logits else self.head(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(tokens),
                                 padding_mask=self.padding_mask(tokens))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states (B, T', D) after every encoder layer, shallow to deep."""
        x, attn = self._embed(tokens)
        outs = []
        for layer in self.layers:
            x = layer(x, **attn)
            outs.append(x)
        return outs


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer: ``model(src (B, Ts), tgt_in (B, Tt))`` -> logits (B, Tt, V).

    ``tie_embeddings`` shares the target embedding with the output projection (§3.4; Press &
    Wolf 2017). ``generate`` is greedy and recomputes the decoder each step (no KV cache), which
    is fine for the short sequences of unit tests and toy tasks.
    """

    def __init__(self, src_vocab_size: int = 1000, tgt_vocab_size: int | None = None,
                 max_len: int = 128, d_model: int = 64, num_heads: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2,
                 dim_feedforward: int = 256, dropout: float = 0.1,
                 positions: str = "sinusoidal", max_distance: int = 16, norm_first: bool = True,
                 window: int | None = None, pad_id: int | None = 0, act: str = "relu",
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        tgt_vocab_size = src_vocab_size if tgt_vocab_size is None else tgt_vocab_size
        self.num_classes = self.tgt_vocab_size = tgt_vocab_size
        self.num_features = d_model
        self.window, self.pad_id, self.max_len = window, pad_id, max_len
        self.src_embed = TokenEmbed(src_vocab_size, d_model, pad_id)
        self.tgt_embed = TokenEmbed(tgt_vocab_size, d_model, pad_id)
        self.src_pos = _absolute_positions(positions, d_model, max_len)
        self.tgt_pos = _absolute_positions(positions, d_model, max_len)
        relative = positions == "relative"
        # Separate biases for encoder and decoder self-attention; cross-attention has none (T5).
        self.enc_rel_pos = RelativePositionBias(num_heads, max_distance) if relative else None
        self.dec_rel_pos = RelativePositionBias(num_heads, max_distance) if relative else None
        self.drop = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, act, norm_first)
            for _ in range(num_encoder_layers))
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, dim_feedforward, dropout, act, norm_first)
            for _ in range(num_decoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, tgt_vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.tgt_embed.weight
        self.default_cfg = DefaultCfg(input_size=(max_len,), num_classes=tgt_vocab_size,
                                      classifier="head", first_conv=None, mean=(0.0,),
                                      std=(1.0,), family="transformer", paper=PAPER)

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Dummy (src, tgt) for ``forward`` (tracing, FLOP counting): max_len non-padding ids."""
        return (self.src_embed.non_padding_ids(batch_size, self.max_len),
                self.tgt_embed.non_padding_ids(batch_size, self.max_len))

    def _padding(self, ids: torch.Tensor) -> torch.Tensor | None:
        return None if self.pad_id is None else ids == self.pad_id

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """src (B, Ts) -> (memory (B, Ts, D), source padding mask (B, Ts) or None)."""
        return self._encode(src)[0], self._padding(src)

    def _encode(self, src: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.drop(self.src_pos(self.src_embed(src)))  # (B, Ts) -> (B, Ts, D)
        length, padding = x.shape[1], self._padding(src)
        mask = _self_attention_mask(padding, length, self.window, causal=False)
        bias = self.enc_rel_pos(length, length) if self.enc_rel_pos is not None else None
        outs = []
        for layer in self.encoder_layers:
            x = layer(x, attn_mask=mask, attn_bias=bias)
            outs.append(x)
        return self.encoder_norm(x), outs

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor,
               memory_padding: torch.Tensor | None = None) -> torch.Tensor:
        """tgt (B, Tt) decoder input ids, memory (B, Ts, D) -> hidden states (B, Tt, D)."""
        return self._decode(tgt, memory, memory_padding)[0]

    def _decode(self, tgt, memory, memory_padding) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.drop(self.tgt_pos(self.tgt_embed(tgt)))  # (B, Tt) -> (B, Tt, D)
        length = x.shape[1]
        mask = _self_attention_mask(self._padding(tgt), length, self.window, causal=True)
        bias = self.dec_rel_pos(length, length) if self.dec_rel_pos is not None else None
        outs = []
        for layer in self.decoder_layers:
            x = layer(x, memory, self_attn_mask=mask, self_attn_bias=bias,
                      memory_key_padding_mask=memory_padding)
            outs.append(x)
        return self.decoder_norm(x), outs

    def forward_features(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, memory_padding = self.encode(src)
        return self.decode(tgt, memory, memory_padding)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)  # (B, Tt, D) -> (B, Tt, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(src, tgt))

    def forward_intermediates(self, src: torch.Tensor, tgt: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder layer's (B, Ts, D) then every decoder layer's (B, Tt, D) hidden states."""
        memory, enc_outs = self._encode(src)
        _, dec_outs = self._decode(tgt, memory, self._padding(src))
        return enc_outs + dec_outs

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int, bos: int, eos: int) -> torch.Tensor:
        """Greedy decoding: (B, Ts) -> (B, L) generated ids without ``bos``, L <= max_len.

        Stops when every sequence has produced ``eos``; positions after a sequence's ``eos`` hold
        ``pad_id`` (or ``eos`` when the model has no padding). Call ``model.eval()`` first.
        """
        if self.pad_id is not None and bos == self.pad_id:
            raise ValueError(f"bos={bos} equals pad_id; the decoder would mask it out as padding")
        if max_len + 1 > self.max_len:
            raise ValueError(f"max_len={max_len} (+1 for bos) exceeds the model's "
                             f"max_len={self.max_len}")
        memory, memory_padding = self.encode(src)
        filler = eos if self.pad_id is None else self.pad_id
        ys = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits = self.forward_head(self.decode(ys, memory, memory_padding)[:, -1])  # (B, V)
            next_id = logits.argmax(-1).masked_fill(finished, filler)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            finished |= next_id == eos
            if finished.all():
                break
        return ys[:, 1:]


@register_model("transformer_encoder_tiny", family="transformer", paper=PAPER,
                task="sequence_classification", model_cls=TransformerEncoderClassifier)
def transformer_encoder_tiny(**kwargs) -> TransformerEncoderClassifier:
    """2 pre-norm layers, d_model 64, 4 heads, FFN 256, sinusoidal positions, mean pooling."""
    return TransformerEncoderClassifier(**kwargs)


@register_model("transformer_seq2seq_tiny", family="transformer", paper=PAPER, task="seq2seq",
                model_cls=TransformerSeq2Seq)
def transformer_seq2seq_tiny(**kwargs) -> TransformerSeq2Seq:
    """2+2 pre-norm layers, d_model 64, 4 heads, FFN 256, tied output embedding."""
    return TransformerSeq2Seq(**kwargs)
