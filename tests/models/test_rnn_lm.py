"""Recurrent LMs against torch.nn.Embedding + nn.LSTM/GRU/RNN + nn.Linear with the same weights,
fused == written-out (logits and gradients), weight tying and its size check, FLOPs by formula."""

import pytest
import torch
from torch import nn

from archlab.models import MODELS, count_flops, create_model, model_info
from archlab.models.rnn_lm import RNNLanguageModel

TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
V, T, E, HID, LAYERS = 13, 7, 6, 8, 2


def small(mode, **kw) -> RNNLanguageModel:
    torch.manual_seed(0)
    return create_model(f"{mode}_lm", **{**dict(vocab_size=V, block_size=T, embed_dim=E,
                                               hidden_size=HID, num_layers=LAYERS), **kw})


def _logits_and_grads(model, idx):
    logits = model(idx)
    (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
    return logits, [p.grad for p in model.parameters()]


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_fused_equals_written_out(mode):
    fused, written = small(mode, fused=True), small(mode, fused=False)
    written.load_state_dict(fused.state_dict())
    idx = torch.randint(0, V, (3, T))
    logits, grads = _logits_and_grads(fused, idx)
    ref_logits, ref_grads = _logits_and_grads(written, idx)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_equals_torch_embedding_rnn_linear(mode, fused):
    model = small(mode, fused=fused)
    embed, head = nn.Embedding(V, E), nn.Linear(HID, V)
    rnn = TORCH[mode](E, HID, LAYERS, batch_first=True)
    embed.load_state_dict(model.embed.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    idx = torch.randint(0, V, (3, T))
    logits, grads = _logits_and_grads(model, idx)
    reference = nn.ModuleDict(dict(embed=embed, rnn=rnn, head=head))
    ref_logits = head(rnn(embed(idx))[0])  # zero initial state, like every training block
    (ref_logits * torch.linspace(-1, 1, ref_logits.numel()).view_as(ref_logits)).sum().backward()
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    ours = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dropout_on_every_non_recurrent_connection(mode):
    """Zaremba et al. 2014: dropout after the embedding, between layers and before the head;
    eval mode turns it off, giving the dropout-free model's output."""
    model, plain = small(mode, dropout=0.5), small(mode, dropout=0.0)
    idx = torch.randint(0, V, (2, T))
    model.train()
    assert not torch.allclose(model(idx), model(idx))
    torch.testing.assert_close(model.eval()(idx), plain.eval()(idx))
    assert model.embed_drop.p == model.head_drop.p == model.rnn.dropout == 0.5


def test_tie_weights_needs_equal_sizes():
    with pytest.raises(ValueError, match="embed_dim == hidden_size"):
        small("lstm", tie_weights=True)  # E=6 != HID=8
    tied = small("gru", embed_dim=HID, tie_weights=True)
    assert tied.head.weight is tied.embed.weight
    untied = small("gru", embed_dim=HID)
    assert sum(p.numel() for p in tied.parameters()) == \
        sum(p.numel() for p in untied.parameters()) - V * HID


def test_mode_is_fixed_by_the_name():
    with pytest.raises(TypeError, match="fixes mode"):
        create_model("lstm_lm", mode="gru")


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_causal_and_any_length(mode):
    model = small(mode).eval()
    idx = torch.randint(0, V, (2, 3 * T))  # longer than block_size: recurrences take any T
    base = model(idx)
    assert base.shape == (2, 3 * T, V)
    changed = idx.clone()
    changed[:, T] = (changed[:, T] + 1) % V
    torch.testing.assert_close(model(changed)[:, :T], base[:, :T], rtol=0, atol=0)


def _flop_formula(mode, embed_dim, hidden, layers, vocab, length):
    """2 FLOPs per multiply-accumulate per token: W_ih x and W_hh h in every layer, the head."""
    gates = GATES[mode] * hidden
    recurrent = gates * (embed_dim + hidden) + (layers - 1) * gates * (2 * hidden)
    return 2 * length * (recurrent + hidden * vocab)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_flops_and_parameters_equal_hand_formula(mode):
    gates = GATES[mode] * HID
    params = V * E + gates * (E + HID + 2) + (LAYERS - 1) * gates * (2 * HID + 2) + HID * V + V
    model = small(mode, fused=False)
    assert sum(p.numel() for p in model.parameters()) == params
    assert count_flops(model, (T,)) == _flop_formula(mode, E, HID, LAYERS, V, T)
    # model_info counts on the meta device, where the fused kernels decompose into matmuls.
    info = model_info(f"{mode}_lm", vocab_size=V, block_size=T, embed_dim=E, hidden_size=HID,
                      num_layers=LAYERS)
    assert info.flops == _flop_formula(mode, E, HID, LAYERS, V, T) and info.params == params
    assert MODELS.entry(f"{mode}_lm").meta["task"] == "language_model"
