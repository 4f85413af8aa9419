"""Recurrent networks written from their equations, and sequence classifiers built on them.

Cells (torch's gate order, so weights are interchangeable with ``torch.nn``):

* Elman RNN (Elman 1990): h' = tanh(W_ih x + b_ih + W_hh h + b_hh)  (or ReLU);
* LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), gates i, f, g, o:
  c' = f * c + i * g,  h' = o * tanh(c');
* GRU (Cho et al. 2014), gates r, z, n: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
  h' = (1 - z) * n + z * h.

:class:`Recurrent` stacks them (``num_layers``, ``bidirectional``, ``batch_first``, inter-layer
``dropout``) with torch's parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so its
state_dict loads into ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and back. ``fused=True`` runs torch's
kernel on the very same parameters (same state_dict); the written-out path is for reading,
instrumenting and checking. ``lengths`` gives right-padded sequences the semantics of a packed
sequence: padding steps neither update the state nor produce output (zeros).

:class:`RNNClassifier` (``lstm_classifier``, ``gru_classifier``, ``rnn_classifier``,
``task="sequence_classification"``) classifies token ids (B, T) (``vocab_size`` set) or feature
sequences (B, T, input_size) (``vocab_size=None``); ``default_cfg.input_size`` is ``(max_len,)``
or ``(max_len, input_size)`` accordingly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

State = tuple[torch.Tensor, ...]  # (h,) for RNN / GRU, (h, c) for LSTM

PAPERS = {
    "rnn": "Elman, Finding Structure in Time, Cognitive Science 1990",
    "lstm": "Hochreiter & Schmidhuber, Long Short-Term Memory, Neural Computation 1997",
    "gru": "Cho et al., Learning Phrase Representations using RNN Encoder-Decoder, EMNLP 2014",
}


def rnn_cell(x: torch.Tensor, state: State, w_ih, w_hh, b_ih, b_hh,
             nonlinearity: str = "tanh") -> State:
    pre = F.linear(x, w_ih, b_ih) + F.linear(state[0], w_hh, b_hh)
    return (torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre),)


def lstm_cell(x: torch.Tensor, state: State, w_ih, w_hh, b_ih, b_hh,
              nonlinearity: str = "tanh") -> State:
    h, c = state
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x: torch.Tensor, state: State, w_ih, w_hh, b_ih, b_hh,
             nonlinearity: str = "tanh") -> State:
    h = state[0]
    x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # the reset gate scales W_hn h + b_hn (torch / cuDNN variant)
    return ((1 - z) * n + z * h,)


# mode -> (cell, gates per cell, torch module)
CELLS = {"rnn": (rnn_cell, 1, nn.RNN), "lstm": (lstm_cell, 4, nn.LSTM),
         "gru": (gru_cell, 3, nn.GRU)}


class Recurrent(nn.Module):
    """A stacked, optionally bidirectional RNN / LSTM / GRU with torch's interface.

    ``forward(x, hx=None, lengths=None)`` returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for
    LSTM): output (B, T, D*H) with ``batch_first`` else (T, B, D*H); h_n/c_n (L*D, B, H).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, nonlinearity: str = "tanh",
                 fused: bool = False) -> None:
        super().__init__()
        if mode not in CELLS:
            raise ValueError(f"unknown recurrent mode '{mode}'; choose one of {sorted(CELLS)}")
        if nonlinearity not in ("tanh", "relu") or (mode != "rnn" and nonlinearity != "tanh"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (and only 'rnn' takes relu), "
                             f"got {nonlinearity!r} for mode '{mode}'")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.nonlinearity = dropout, bidirectional, nonlinearity
        self.num_directions = 2 if bidirectional else 1
        self.fused = fused
        cell, gates, torch_cls = CELLS[mode]
        self._cell = cell
        bound = 1.0 / math.sqrt(hidden_size)  # torch's init: U(-1/sqrt(H), 1/sqrt(H)) everywhere
        self._param_names: list[list[list[str]]] = []  # [layer][direction] -> 2 or 4 names
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            per_direction = []
            for suffix in ["", "_reverse"][: self.num_directions]:
                shapes = {f"weight_ih_l{layer}{suffix}": (gates * hidden_size, layer_in),
                          f"weight_hh_l{layer}{suffix}": (gates * hidden_size, hidden_size)}
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gates * hidden_size,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gates * hidden_size,)
                for name, shape in shapes.items():
                    weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                    self.register_parameter(name, weight)
                per_direction.append(list(shapes))
            self._param_names.append(per_direction)
        kwargs = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
        # Kept out of the module tree (no duplicate parameters); functional_call swaps ours in.
        self.__dict__["_torch_impl"] = torch_cls(input_size, hidden_size, num_layers, bias=bias,
                                                 batch_first=batch_first, dropout=dropout,
                                                 bidirectional=bidirectional, **kwargs)

    def forward(self, x: torch.Tensor, hx=None, lengths: torch.Tensor | None = None):
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, F)" if self.batch_first else "(T, B, F)"
            raise ValueError(f"expected input of shape {layout} with F={self.input_size}, "
                             f"got {tuple(x.shape)}")
        if self.fused:
            return self._forward_fused(x, hx, lengths)
        _, states = self.forward_layers(x, hx, lengths, keep_layers=False)
        return states

    def _forward_fused(self, x, hx, lengths):
        impl = self._torch_impl
        impl.train(self.training)
        params = dict(self.named_parameters())
        if lengths is None:
            return torch.func.functional_call(impl, params, (x, hx))
        total = x.shape[1 if self.batch_first else 0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first,
                                      enforce_sorted=False)
        out, state = torch.func.functional_call(impl, params, (packed, hx))
        out, _ = pad_packed_sequence(out, batch_first=self.batch_first, total_length=total)
        return out, state

    def forward_layers(self, x: torch.Tensor, hx=None, lengths: torch.Tensor | None = None,
                       keep_layers: bool = True):
        """The written-out path. Returns (every layer's output, (output, final states)).

        Layer outputs are in the input's layout, (B, T, D*H) with ``batch_first``.
        """
        seq = x.transpose(0, 1) if self.batch_first else x  # -> (T, B, F)
        batch, n_states = seq.shape[1], 2 if self.mode == "lstm" else 1
        init = self._initial_states(hx, batch, seq)  # n_states tensors of (L*D, B, H)
        if lengths is not None:
            lengths = lengths.to(seq.device)
        finals: list[list[torch.Tensor]] = [[] for _ in range(n_states)]
        layer_outputs = []
        for layer in range(self.num_layers):
            outs = []
            for direction, names in enumerate(self._param_names[layer]):
                index = layer * self.num_directions + direction
                weights = [getattr(self, n) for n in names] + [None] * (4 - len(names))
                out, state = self._run_direction(seq, tuple(s[index] for s in init), weights,
                                                 reverse=direction == 1, lengths=lengths)
                outs.append(out)
                for k in range(n_states):
                    finals[k].append(state[k])
            seq = torch.cat(outs, dim=-1)  # (T, B, D*H)
            if keep_layers:
                layer_outputs.append(seq.transpose(0, 1) if self.batch_first else seq)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                seq = F.dropout(seq, self.dropout, training=True)  # between layers, as torch does
        output = seq.transpose(0, 1) if self.batch_first else seq
        h = [torch.stack(f) for f in finals]  # (L*D, B, H)
        return layer_outputs, (output, (h[0], h[1]) if self.mode == "lstm" else h[0])

    def _initial_states(self, hx, batch: int, seq: torch.Tensor) -> State:
        shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if hx is None:
            zeros = seq.new_zeros(shape)
            return (zeros, zeros) if self.mode == "lstm" else (zeros,)
        states = tuple(hx) if self.mode == "lstm" else (hx,)
        for s in states:
            if tuple(s.shape) != shape:
                raise ValueError(f"initial state must have shape {shape} (L*D, B, H), "
                                 f"got {tuple(s.shape)}")
        return states

    def _run_direction(self, seq: torch.Tensor, state: State, weights, reverse: bool,
                       lengths: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        steps = range(seq.shape[0] - 1, -1, -1) if reverse else range(seq.shape[0])
        outs: list[torch.Tensor] = [None] * seq.shape[0]  # type: ignore[list-item]
        for t in steps:
            new = self._cell(seq[t], state, *weights, nonlinearity=self.nonlinearity)
            if lengths is None:
                state, outs[t] = new, new[0]
            else:
                valid = (t < lengths)[:, None]  # (B, 1): padding steps keep the state
                state = tuple(torch.where(valid, n, s) for n, s in zip(new, state))
                outs[t] = torch.where(valid, new[0], torch.zeros_like(new[0]))
        return torch.stack(outs), state  # (T, B, H)


class RNNClassifier(Classifier):
    """Sequence -> logits (B, num_classes) through a :class:`Recurrent` encoder.

    ``pool="last"`` uses the final state (forward direction at each sequence's last real step,
    backward direction at step 0); ``"mean"`` averages outputs over real steps. With ``vocab_size``
    the input is token ids (B, T) and ``pad_id`` marks right padding; with ``vocab_size=None`` it
    is features (B, T, input_size), all steps real.
    """

    def __init__(self, mode: str = "lstm", num_classes: int = 2, vocab_size: int | None = 1000,
                 input_size: int = 64, hidden_size: int = 128, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, pool: str = "last",
                 pad_id: int | None = 0, max_len: int = 128, fused: bool = False) -> None:
        super().__init__()
        if pool not in ("last", "mean"):
            raise ValueError(f"unknown pool '{pool}'; choose 'last' or 'mean'")
        self.num_classes = num_classes
        self.num_features = hidden_size * (2 if bidirectional else 1)
        self.pool, self.hidden_size, self.max_len = pool, hidden_size, max_len
        self.pad_id = pad_id if vocab_size is not None else None
        # With tokens, input_size is the embedding width; with features, their width.
        self.embed = (nn.Embedding(vocab_size, input_size, padding_idx=self.pad_id)
                      if vocab_size is not None else nn.Identity())
        self.rnn = Recurrent(mode, input_size, hidden_size, num_layers, batch_first=True,
                             dropout=dropout, bidirectional=bidirectional, fused=fused)
        self.head_drop = nn.Dropout(dropout)
        self.head = linear_or_identity(self.num_features, num_classes)
        self.default_cfg = DefaultCfg(
            input_size=(max_len,) if vocab_size is not None else (max_len, input_size),
            num_classes=num_classes, classifier="head", first_conv=None, mean=(0.0,), std=(1.0,),
            family="rnn", paper=PAPERS[mode])

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        """Dummy arguments for ``forward`` (tracing, FLOP counting) at ``max_len`` steps."""
        device = next(self.rnn.parameters()).device
        if isinstance(self.embed, nn.Embedding):
            token = 0 if self.pad_id is None else (self.pad_id + 1) % self.embed.num_embeddings
            return (torch.full((batch_size, self.max_len), token, dtype=torch.long, device=device),)
        return (torch.zeros(batch_size, self.max_len, self.rnn.input_size, device=device),)

    def lengths(self, x: torch.Tensor) -> torch.Tensor | None:
        """Real steps per sequence (B,), counting non-``pad_id`` tokens; None without padding."""
        if self.pad_id is None or x.ndim != 2:
            return None
        return (x != self.pad_id).sum(1).clamp(min=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) ids or (B, T, F) features -> outputs (B, T, D*H), zeros at padding."""
        if isinstance(self.embed, nn.Embedding) and (x.ndim != 2 or x.dtype.is_floating_point):
            raise ValueError(f"expected integer token ids of shape (B, T), got {x.dtype} "
                             f"{tuple(x.shape)} (build with vocab_size=None for feature input)")
        out, _ = self.rnn(self.embed(x), lengths=self.lengths(x))
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False,
                     lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pool outputs (B, T, D*H) -> (B, D*H); ``lengths`` (B,) marks the real steps."""
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device)
        if self.pool == "last":
            last = x[torch.arange(x.shape[0], device=x.device), lengths - 1]  # (B, D*H)
            if self.num_features != self.hidden_size:  # backward direction ends at step 0
                last = torch.cat([last[:, : self.hidden_size], x[:, 0, self.hidden_size:]], -1)
            x = last
        else:  # padding outputs are zero, so the sum only counts real steps
            x = x.sum(1) / lengths[:, None].to(x.dtype)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), lengths=self.lengths(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every recurrent layer's outputs (B, T, D*H), shallow to deep (written-out path)."""
        layers, _ = self.rnn.forward_layers(self.embed(x), lengths=self.lengths(x))
        return layers


def _classifier(mode: str, kwargs: dict) -> RNNClassifier:
    if "mode" in kwargs:
        raise TypeError(f"'{mode}_classifier' fixes mode='{mode}'; use another registered name")
    return RNNClassifier(mode=mode, **kwargs)


@register_model("lstm_classifier", family="rnn", paper=PAPERS["lstm"],
                task="sequence_classification", model_cls=RNNClassifier)
def lstm_classifier(**kwargs) -> RNNClassifier:
    """One-layer LSTM, 128 hidden units, last-state pooling."""
    return _classifier("lstm", kwargs)


@register_model("gru_classifier", family="rnn", paper=PAPERS["gru"],
                task="sequence_classification", model_cls=RNNClassifier)
def gru_classifier(**kwargs) -> RNNClassifier:
    """One-layer GRU, 128 hidden units, last-state pooling."""
    return _classifier("gru", kwargs)


@register_model("rnn_classifier", family="rnn", paper=PAPERS["rnn"],
                task="sequence_classification", model_cls=RNNClassifier)
def rnn_classifier(**kwargs) -> RNNClassifier:
    """One-layer Elman RNN (tanh), 128 hidden units, last-state pooling."""
    return _classifier("rnn", kwargs)
