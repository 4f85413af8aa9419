"""Transformer layers against torch's, and the properties the models promise (masking,
padding, locality, causality, tied embeddings, greedy decoding)."""

import pytest
import torch
from torch import nn

from archlab.layers.attention import causal_mask
from archlab.layers.transformer_block import TransformerDecoderLayer, TransformerEncoderLayer
from archlab.models import MODELS, create_model
from archlab.models.transformer import TransformerEncoderClassifier, TransformerSeq2Seq

D, H, FF = 16, 4, 32


def _randomize(module: nn.Module) -> None:
    """Non-trivial LayerNorm and bias values so their placement matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first).double().eval()
    _randomize(ours)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True,
                                     norm_first=norm_first).double().eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    padding = torch.tensor([[False] * 5, [False] * 4 + [True]])
    out = ours(x, attn_mask=causal_mask(5), key_padding_mask=padding)
    # torch.nn marks disallowed positions with True, the complement of archlab's masks.
    expected = ref(x, src_mask=~causal_mask(5), src_key_padding_mask=padding)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(1)
    ours = TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first).double().eval()
    _randomize(ours)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True,
                                     norm_first=norm_first).double().eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 4, D, dtype=torch.float64)
    memory = torch.randn(2, 6, D, dtype=torch.float64)
    mem_padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    tgt_padding = torch.tensor([[False] * 4, [False] * 3 + [True]])
    out = ours(x, memory, self_attn_mask=causal_mask(4), key_padding_mask=tgt_padding,
               memory_key_padding_mask=mem_padding)
    expected = ref(x, memory, tgt_mask=~causal_mask(4), tgt_key_padding_mask=tgt_padding,
                   memory_key_padding_mask=mem_padding)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def _classifier(**kw) -> TransformerEncoderClassifier:
    torch.manual_seed(0)
    args = dict(num_classes=3, vocab_size=20, max_len=16, d_model=D, num_heads=H,
                num_layers=2, dim_feedforward=FF, dropout=0.0)
    return create_model("transformer_encoder_tiny", **{**args, **kw}).eval()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "relative"])
@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_classifier_ignores_right_padding(positions, pool):
    model = _classifier(positions=positions, pool=pool)
    if model.rel_pos is not None:
        nn.init.normal_(model.rel_pos.bias.weight)  # make the bias matter
    tokens = torch.randint(1, 20, (2, 6))
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(tokens), rtol=0, atol=1e-5)
        # ...and padding is not a no-op by accident: real token 0 would change the output
        unpadded = _classifier(positions=positions, pool=pool, pad_id=None)
        unpadded.load_state_dict(model.state_dict())
        assert not torch.allclose(unpadded(padded), unpadded(tokens), atol=1e-4)


def test_window_limits_receptive_field_per_layer():
    model = _classifier(window=1, pad_id=None)
    tokens = torch.randint(1, 20, (1, 9))
    changed = tokens.clone()
    changed[0, 4] = (tokens[0, 4] + 1) % 20
    with torch.no_grad():
        a, b = model.forward_intermediates(tokens), model.forward_intermediates(changed)
    diff = [(x - y).abs().amax(-1)[0] > 1e-6 for x, y in zip(a, b)]
    # one layer with window 1 reaches positions 3..5, two layers 2..6
    assert diff[0].tolist() == [False] * 3 + [True] * 3 + [False] * 3
    assert diff[1].tolist() == [False] * 2 + [True] * 5 + [False] * 2


def test_classifier_contract_pieces():
    model = _classifier(pool="cls")
    tokens = torch.randint(1, 20, (2, 7))
    feats = model.forward_features(tokens)
    assert feats.shape == (2, 8, D)  # +1 for [CLS]
    inter = model.forward_intermediates(tokens)
    assert len(inter) == 2 and all(t.shape == (2, 8, D) for t in inter)
    torch.testing.assert_close(model.norm(inter[-1]), feats)
    pooled = model.forward_head(feats, pre_logits=True)
    torch.testing.assert_close(pooled, feats[:, 0])
    assert model(tokens).shape == (2, 3)
    model.reset_classifier(0)
    torch.testing.assert_close(model(tokens), pooled)
    entry = MODELS.entry("transformer_encoder_tiny")
    assert entry.meta["task"] == "sequence_classification"
    assert model.default_cfg.input_size == (16,)
    (example,) = model.example_inputs(2)  # max_len positions including [CLS], no padding
    assert example.shape == (2, 15) and not model.padding_mask(example).any()


def test_bad_inputs_raise_clear_errors():
    model = _classifier()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.randn(2, 5))
    with pytest.raises(ValueError, match="positions"):
        _classifier(positions="rotary")
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(1, 20, (1, 17)))


def _seq2seq(**kw) -> TransformerSeq2Seq:
    torch.manual_seed(0)
    args = dict(src_vocab_size=12, max_len=16, d_model=D, num_heads=H, num_encoder_layers=2,
                num_decoder_layers=2, dim_feedforward=FF, dropout=0.0)
    return create_model("transformer_seq2seq_tiny", **{**args, **kw}).eval()


@pytest.mark.parametrize("positions,window", [("sinusoidal", None), ("relative", 2)])
def test_decoder_is_causal(positions, window):
    model = _seq2seq(positions=positions, window=window)
    src, tgt = torch.randint(3, 12, (2, 5)), torch.randint(3, 12, (2, 6))
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(3, 12, (2, 3))
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    assert a.shape == (2, 6, 12)
    assert model(*model.example_inputs(2)).shape == (2, 16, 12)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_source_padding_is_ignored():
    model = _seq2seq()
    src, tgt = torch.randint(3, 12, (2, 5)), torch.randint(3, 12, (2, 4))
    padded = torch.cat([src, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, tgt), model(src, tgt), rtol=0, atol=1e-5)


def test_tied_embeddings_share_one_tensor():
    tied, untied = _seq2seq(), _seq2seq(tie_embeddings=False)
    assert tied.head.weight is tied.tgt_embed.weight
    assert untied.head.weight is not untied.tgt_embed.weight
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(tied) == 12 * D


def test_generate_matches_step_by_step_argmax():
    model = _seq2seq(tie_embeddings=False)
    # Larger output and cross-attention weights than the init: varied, source-dependent tokens.
    nn.init.normal_(model.head.weight)
    for layer in model.decoder_layers:
        nn.init.normal_(layer.multihead_attn.out_proj.weight)
    src = torch.tensor([[3, 4, 5, 6, 7], [11, 10, 9, 8, 8]])
    bos, steps = 1, 6
    free = model.generate(src, max_len=steps, bos=bos, eos=-1)  # an eos that never occurs
    assert free.shape == (2, steps)
    # Reference: re-run the full model on the growing prefix, one sequence at a time.
    for b in range(2):
        prefix = [bos]
        for _ in range(steps):
            with torch.no_grad():
                logits = model(src[b:b + 1], torch.tensor([prefix]))
            prefix.append(int(logits[0, -1].argmax()))
        assert free[b].tolist() == prefix[1:]
    # With a real eos, each sequence stops at its first eos and is padded after it.
    eos = int(free[1, 1])
    out = model.generate(src, max_len=steps, bos=bos, eos=eos)
    stops = []
    for b in range(2):
        row = free[b].tolist()
        stop = row.index(eos) + 1 if eos in row else steps
        stops.append(stop)
        assert out[b, :stop].tolist() == row[:stop]
        assert all(t == model.pad_id for t in out[b, stop:].tolist())
    assert stops[0] != stops[1]  # the two sequences finish at different steps
    assert out.shape[1] == max(stops)  # decoding ends once every sequence has finished
    with pytest.raises(ValueError, match="pad_id"):
        model.generate(src, 3, bos=0, eos=eos)
    assert MODELS.entry("transformer_seq2seq_tiny").meta["task"] == "seq2seq"
