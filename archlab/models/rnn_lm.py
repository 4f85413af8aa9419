"""Recurrent language models: embedding -> stacked RNN / LSTM / GRU -> linear head.

Token ids (B, T) -> next-token logits (B, T, V), the recurrence making position t depend only on
tokens <= t (Mikolov et al. 2010 for the Elman RNN LM; Zaremba et al. 2014 for the LSTM LM with
dropout on the non-recurrent connections: after the embedding, between layers, before the head).

The encoder is :class:`archlab.models.rnn.Recurrent` with torch's parameter names;
``fused=True`` (default) runs torch's kernel on those parameters, ``fused=False`` the written-out
cells, with the same results. torch's FLOP counter does not see inside the CPU (oneDNN) LSTM
kernel: count with ``fused=False`` or through ``model_info``, which counts on the meta device.

Each call starts from a zero state: a training block is its own sequence, no state is carried
between blocks (hence ``forward(idx)`` takes only the ids, and sampling crops the context to
``block_size`` tokens, the longest context seen in training). ``block_size`` is otherwise only
the length of the example inputs; any T is accepted.

``tie_weights`` shares the head with the embedding (Press & Wolf 2017; Inan et al. 2017), which
needs ``embed_dim == hidden_size`` since the head reads the last layer's hidden state.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model
from archlab.models.rnn import PAPERS, Recurrent

PAPER_LM = {
    "rnn": "Mikolov et al., Recurrent Neural Network Based Language Model, Interspeech 2010",
    "lstm": "Zaremba et al., Recurrent Neural Network Regularization, arXiv:1409.2329, 2014",
    "gru": PAPERS["gru"],
}


class RNNLanguageModel(Classifier):
    """ids (B, T) -> logits (B, T, vocab_size) through ``num_layers`` recurrent layers.

    ``vocab_size`` and ``block_size`` default to a Tiny-Shakespeare-sized character model so
    ``archlab models info`` can build it; a dataset always sets them.
    """

    def __init__(self, mode: str = "lstm", vocab_size: int = 65, block_size: int = 128,
                 embed_dim: int = 128, hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.0, tie_weights: bool = False, fused: bool = True) -> None:
        super().__init__()
        if tie_weights and embed_dim != hidden_size:
            raise ValueError(f"tie_weights=True shares the (V, D) embedding with the head, which "
                             f"reads the hidden state, so it needs embed_dim == hidden_size; got "
                             f"embed_dim={embed_dim}, hidden_size={hidden_size}")
        if vocab_size < 1 or block_size < 1:
            raise ValueError(f"vocab_size and block_size must be >= 1, got {vocab_size}, "
                             f"{block_size}")
        self.mode, self.vocab_size, self.block_size = mode, vocab_size, block_size
        self.num_classes, self.num_features = vocab_size, hidden_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.embed_drop = nn.Dropout(dropout)
        self.rnn = Recurrent(mode, embed_dim, hidden_size, num_layers, batch_first=True,
                             dropout=dropout, fused=fused)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embed.weight
        self.default_cfg = DefaultCfg(input_size=(block_size,), num_classes=vocab_size,
                                      classifier="head", first_conv=None, mean=(0.0,),
                                      std=(1.0,), family="rnn", paper=PAPER_LM[mode])

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        """Dummy ids (batch_size, block_size) for ``forward`` (tracing, FLOP counting)."""
        return (torch.zeros(batch_size, self.block_size, dtype=torch.long,
                            device=self.embed.weight.device),)

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.ndim != 2 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(f"expected integer token ids of shape (B, T), got {idx.dtype} "
                             f"{tuple(idx.shape)}")
        return self.embed_drop(self.embed(idx))  # (B, T) -> (B, T, E)

    def forward_features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> last layer's hidden states (B, T, H), from a zero initial state."""
        out, _ = self.rnn(self._embed(idx))
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)  # (B, T, H) -> (B, T, V)

    def forward_intermediates(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Every recurrent layer's hidden states (B, T, H), shallow to deep (written-out path)."""
        layers, _ = self.rnn.forward_layers(self._embed(idx))
        return layers

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh, untied head with ``num_classes`` outputs (0: identity)."""
        self.num_classes = num_classes
        self.head = linear_or_identity(self.num_features, num_classes)


def _build(mode: str, kwargs: dict) -> RNNLanguageModel:
    if "mode" in kwargs:
        raise TypeError(f"'{mode}_lm' fixes mode='{mode}'; use another registered name")
    return RNNLanguageModel(mode=mode, **kwargs)


@register_model("lstm_lm", family="rnn", paper=PAPER_LM["lstm"], task="language_model",
                model_cls=RNNLanguageModel)
def lstm_lm(**kwargs) -> RNNLanguageModel:
    """Two-layer LSTM LM: embedding 128, 256 hidden units (0.95M params at V=65)."""
    return _build("lstm", kwargs)


@register_model("gru_lm", family="rnn", paper=PAPER_LM["gru"], task="language_model",
                model_cls=RNNLanguageModel)
def gru_lm(**kwargs) -> RNNLanguageModel:
    """Two-layer GRU LM: embedding 128, 256 hidden units (0.72M params at V=65)."""
    return _build("gru", kwargs)


@register_model("rnn_lm", family="rnn", paper=PAPER_LM["rnn"], task="language_model",
                model_cls=RNNLanguageModel)
def rnn_lm(**kwargs) -> RNNLanguageModel:
    """Two-layer Elman (tanh) RNN LM: embedding 128, 256 hidden units (0.26M params at V=65)."""
    return _build("rnn", kwargs)
