"""Written-out RNN / LSTM / GRU against torch.nn.RNN / LSTM / GRU with the same weights."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.models import MODELS, create_model
from archlab.models.rnn import Recurrent

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CASES = [(mode, layers, bidir) for mode in ("rnn", "lstm", "gru")
         for layers in (1, 2) for bidir in (False, True)]
F_IN, HID, B, T = 3, 5, 2, 6


def _pair(mode, num_layers, bidirectional, batch_first=True, nonlinearity="tanh"):
    torch.manual_seed(0)
    extra = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
    ours = Recurrent(mode, F_IN, HID, num_layers, batch_first=batch_first,
                     bidirectional=bidirectional, **extra)
    ref = TORCH[mode](F_IN, HID, num_layers, batch_first=batch_first,
                      bidirectional=bidirectional, **extra)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def _initial_state(mode, num_layers, bidirectional):
    shape = (num_layers * (2 if bidirectional else 1), B, HID)
    return (torch.randn(shape), torch.randn(shape)) if mode == "lstm" else torch.randn(shape)


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("mode,num_layers,bidirectional", CASES)
def test_outputs_states_and_grads_match_torch(mode, num_layers, bidirectional):
    ours, ref = _pair(mode, num_layers, bidirectional)
    x = torch.randn(B, T, F_IN)
    hx = _initial_state(mode, num_layers, bidirectional)
    results = []
    for module in (ours, ref):
        xi = x.clone().requires_grad_()
        hi = tuple(h.clone().requires_grad_() for h in _flat(hx))
        out, state = module(xi, hi if mode == "lstm" else hi[0])
        # A loss touching every output and final state, with distinct weights per position.
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        loss = loss + sum((s * s).sum() for s in _flat(state))
        loss.backward()
        grads = [xi.grad] + [h.grad for h in hi] + [p.grad for p in module.parameters()]
        results.append((out, _flat(state), grads))
    (out, state, grads), (ref_out, ref_state, ref_grads) = results
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    for s, r in zip(state, ref_state):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-6)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)


def test_relu_rnn_and_time_major_layout_match_torch():
    ours, ref = _pair("rnn", 2, True, batch_first=False, nonlinearity="relu")
    x = torch.randn(T, B, F_IN)  # (T, B, F)
    out, h = ours(x)
    ref_out, ref_h = ref(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_lengths_match_packed_sequences_and_fused_path(mode):
    ours, ref = _pair(mode, 2, True)
    x, lengths = torch.randn(B, T, F_IN), torch.tensor([T, 3])
    out, state = ours(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_out, ref_state = ref(packed)
    ref_out, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=T)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    for s, r in zip(_flat(state), _flat(ref_state)):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-6)
    ours.fused = True  # torch's kernel on the very same parameters
    fused_out, fused_state = ours(x, lengths=lengths)
    torch.testing.assert_close(fused_out, out, rtol=0, atol=1e-6)
    for s, r in zip(_flat(fused_state), _flat(state)):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-6)


def test_fused_trains_the_shared_parameters():
    ours, _ = _pair("lstm", 1, False)
    ours.fused = True
    out, _ = ours(torch.randn(B, T, F_IN))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


def test_bad_state_shape_raises():
    ours, _ = _pair("gru", 1, False)
    with pytest.raises(ValueError, match="initial state"):
        ours(torch.randn(B, T, F_IN), torch.zeros(2, B, HID))
    with pytest.raises(ValueError, match="unknown recurrent mode"):
        Recurrent("transformer", 3, 4)


def _tokens_classifier(name, **kw):
    torch.manual_seed(0)
    args = dict(num_classes=4, vocab_size=15, input_size=8, hidden_size=HID, max_len=T)
    return create_model(name, **{**args, **kw}).eval()


@pytest.mark.parametrize("name", ["lstm_classifier", "gru_classifier", "rnn_classifier"])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_classifier_ignores_padding(name, pool):
    model = _tokens_classifier(name, pool=pool, bidirectional=True, num_layers=2)
    tokens = torch.randint(1, 15, (B, 4))
    padded = torch.cat([tokens, torch.zeros(B, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(tokens), rtol=0, atol=1e-6)
    assert MODELS.entry(name).meta["task"] == "sequence_classification"


def test_last_pooling_is_the_final_state():
    model = _tokens_classifier("lstm_classifier", bidirectional=True, num_classes=0)
    tokens = torch.randint(1, 15, (B, T))
    tokens[1, 4:] = 0
    with torch.no_grad():
        pooled = model(tokens)  # num_classes=0: the pooled embedding
        _, (h_n, _) = model.rnn(model.embed(tokens), lengths=model.lengths(tokens))
    torch.testing.assert_close(pooled, torch.cat([h_n[0], h_n[1]], dim=-1), rtol=0, atol=1e-6)


def test_feature_input_contract_pieces():
    model = create_model("gru_classifier", num_classes=3, vocab_size=None, input_size=7,
                         hidden_size=HID, num_layers=2, max_len=T, fused=True).eval()
    x = torch.randn(B, T, 7)
    assert model.default_cfg.input_size == (T, 7)
    feats = model.forward_features(x)
    assert feats.shape == (B, T, HID)
    inter = model.forward_intermediates(x)  # written-out path, same weights as the fused one
    assert [t.shape for t in inter] == [(B, T, HID)] * 2
    torch.testing.assert_close(inter[-1], feats, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats[:, -1])
    assert model(x).shape == (B, 3)
    assert model(*model.example_inputs(2)).shape == (B, 3)
    with pytest.raises(ValueError, match="token ids"):
        _tokens_classifier("lstm_classifier")(torch.randn(B, T))
    model.reset_classifier(0)
    assert model(x).shape == (B, HID)
    with pytest.raises(TypeError, match="mode"):
        create_model("gru_classifier", mode="lstm")
