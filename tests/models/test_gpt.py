"""GPT against a reference assembled from torch's own layers, and the properties it promises:
causality, fused == written-out attention, weight tying, parameter/FLOP counts by hand formula,
GPT-2 initialization, and that it can learn (overfit a repeated sequence)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.models import MODELS, count_flops, create_model, model_info
from archlab.models.gpt import GPT

V, T, D, H, L = 11, 9, 12, 3, 2


def small(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(**{**dict(vocab_size=V, block_size=T, depth=L, width=D, num_heads=H), **kw})


def _randomize(model: nn.Module) -> None:
    """Non-trivial LayerNorm and bias values so their placement matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _reference(model: GPT) -> nn.Module:
    """The same network from torch.nn: a pre-LN GELU nn.TransformerEncoderLayer under a causal
    mask is exactly a GPT-2 block, given our weights."""
    layers = nn.ModuleList(
        nn.TransformerEncoderLayer(D, H, 4 * D, dropout=0.0, activation="gelu",
                                   batch_first=True, norm_first=True) for _ in range(L))
    for ref, block in zip(layers, model.blocks):
        ref.self_attn.in_proj_weight.data.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.data.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(block.attn.proj.state_dict())
        ref.linear1.load_state_dict(block.mlp.fc1.state_dict())
        ref.linear2.load_state_dict(block.mlp.fc2.state_dict())
        ref.norm1.load_state_dict(block.norm1.state_dict())
        ref.norm2.load_state_dict(block.norm2.state_dict())

    def forward(idx):
        x = F.embedding(idx, model.tok_embed.weight) + model.pos_embed.weight[: idx.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1])  # -inf above diag
        for layer in layers:
            x = layer(x, src_mask=mask)
        x = F.layer_norm(x, (D,), model.norm.weight, model.norm.bias)
        return x @ model.tok_embed.weight.T  # tied head

    return forward


@pytest.mark.parametrize("fused", [True, False])
def test_matches_a_reference_built_from_torch_layers(fused):
    model = small(fused=fused)
    _randomize(model)
    idx = torch.randint(0, V, (3, T))
    model.eval()
    torch.testing.assert_close(model(idx), _reference(model)(idx), rtol=0, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_causal_changing_token_t_changes_no_earlier_logit(fused):
    model = small(fused=fused).eval()
    _randomize(model)
    idx = torch.randint(0, V, (2, T))
    base = model(idx)
    for t in range(T):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
        assert (out[:, t] - base[:, t]).abs().amax() > 1e-4  # position t does see token t


@pytest.mark.parametrize("train", [True, False])
def test_sdpa_equals_written_out_attention(train):
    fused, written = small(fused=True), small(fused=False)
    _randomize(fused)
    written.load_state_dict(fused.state_dict())
    idx = torch.randint(0, V, (4, T))
    results = []
    for model in (fused, written):
        model.train(train)
        logits = model(idx)
        (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
        results.append((logits, [p.grad for p in model.parameters()]))
    (logits, grads), (ref_logits, ref_grads) = results
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)


def test_sdpa_and_written_out_drop_attention_alike():
    """Dropout masks differ between the paths, so compare distributions: over many draws both
    have the dropout-free output as mean (dropout rescales by 1/(1-p)) and the same spread."""
    fused, written = small(fused=True, dropout=0.5), small(fused=False, dropout=0.5)
    _randomize(fused)
    written.load_state_dict(fused.state_dict())
    h = torch.randn(1, T, D)
    exact = fused.blocks[0].attn.eval()(h).detach()
    spreads, n = [], 4000
    for model in (fused, written):
        attn = model.blocks[0].attn.train()
        attn.resid_drop.p = 0.0  # keep only the attention-weight dropout the paths differ in
        with torch.no_grad():
            draws = torch.stack([attn(h) for _ in range(n)])
        std = draws.std(0)
        # Per element, the mean of n draws is within 5 standard errors of its expectation.
        assert ((draws.mean(0) - exact).abs() <= 5 * std / n ** 0.5 + 1e-6).all()
        spreads.append(std.mean().item())
    assert spreads[0] > 0 and spreads[1] == pytest.approx(spreads[0], rel=0.05)


def test_weight_tying():
    tied = small()
    assert tied.head.weight is tied.tok_embed.weight
    assert sum(p.numel() for p in tied.parameters()) == \
        sum(p.numel() for p in small(tie_weights=False).parameters()) - V * D
    untied = small(tie_weights=False)
    assert untied.head.weight is not untied.tok_embed.weight
    assert untied.head.weight.data_ptr() != untied.tok_embed.weight.data_ptr()
    # The shared matrix gets gradient from both uses: reading (embedding) and writing (head).
    idx = torch.randint(0, V, (2, T))
    tied(idx).sum().backward()
    grad_both = tied.tok_embed.weight.grad.clone()
    tied.zero_grad()
    tied.head(tied.forward_features(idx).detach()).sum().backward()
    assert not torch.allclose(grad_both, tied.tok_embed.weight.grad)
    tied.reset_classifier(5)
    assert tied.head.weight.shape == (5, D) and tied.head.weight is not tied.tok_embed.weight


def _param_formula(vocab, block, depth, width, bias, tied):
    per_block = 12 * width ** 2  # qkv 3D², proj D², fc1 4D², fc2 4D²
    per_block += (3 + 1 + 4 + 1) * width * bias  # their biases
    per_block += 2 * width * (1 + bias)  # two LayerNorms (gain, bias)
    final_norm = width * (1 + bias)
    return vocab * width + block * width + depth * per_block + final_norm \
        + (0 if tied else vocab * width)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_equals_hand_formula(bias, tied):
    model = small(bias=bias, tie_weights=tied)
    assert sum(p.numel() for p in model.parameters()) == _param_formula(V, T, L, D, bias, tied)


def test_registered_variants_parameter_counts():
    for name, (depth, width) in {"gpt_char": (4, 128), "gpt_mini": (6, 192)}.items():
        model = create_model(name, vocab_size=65, block_size=128)
        assert sum(p.numel() for p in model.parameters()) == \
            _param_formula(65, 128, depth, width, True, True)
        assert MODELS.entry(name).meta["task"] == "language_model"


def test_flops_equal_hand_formula():
    """2 FLOPs per multiply-accumulate: every Linear on each of the T tokens, plus Q Kᵀ and
    A V over the full (T, T) score matrix in each layer. On CPU, torch's flop counter has no
    formula for the fused attention kernel, so the written-out path is counted; on the meta
    device (model_info) SDPA decomposes into counted matmuls."""
    model = small(fused=False)
    linear = 2 * T * (L * 12 * D ** 2 + D * V)
    attention = L * 2 * (2 * T * T * D)
    assert count_flops(model, (T,)) == linear + attention
    info = model_info("gpt_char", vocab_size=V, block_size=T, depth=L, width=D, num_heads=H)
    assert info.flops == linear + attention and info.params == _param_formula(V, T, L, D, 1, 1)


def test_gpt2_initialization():
    torch.manual_seed(0)
    model = create_model("gpt_mini", vocab_size=65, block_size=128)  # depth 6, width 192
    residual_std = 0.02 / math.sqrt(2 * 6)
    for block in model.blocks:  # 192*192 and 768*192 samples: std within ~1%
        assert block.attn.proj.weight.std().item() == pytest.approx(residual_std, rel=0.03)
        assert block.mlp.fc2.weight.std().item() == pytest.approx(residual_std, rel=0.03)
        assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert block.attn.qkv.bias.abs().max() == 0
    assert model.tok_embed.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.pos_embed.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_overfits_a_repeated_sequence():
    torch.manual_seed(0)
    vocab = 16
    model = GPT(vocab_size=vocab, block_size=32, depth=2, width=32, num_heads=2)
    seq = torch.randint(0, vocab, (8,)).repeat(5)[:33]  # period 8: predictable after 8 tokens
    x, y = seq[:-1][None], seq[1:][None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Uniform guessing costs log V = 2.77 nats; the first period (8 of 32 targets) is
    # unpredictable, but in 40 steps the model memorizes it too.
    assert loss.item() < 0.1 * math.log(vocab)


def test_any_length_up_to_block_size_and_a_clear_error_beyond():
    model = small().eval()
    for length in (1, T // 2, T):
        assert model(torch.zeros(2, length, dtype=torch.long)).shape == (2, length, V)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, T + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.zeros(1, T))


def test_intermediates_lead_to_the_logits():
    model = small().eval()
    _randomize(model)
    idx = torch.randint(0, V, (2, T))
    inter = model.forward_intermediates(idx)
    assert len(inter) == L and all(h.shape == (2, T, D) for h in inter)
    torch.testing.assert_close(model.head(model.norm(inter[-1])), model(idx))


def test_bad_head_count_is_a_clear_error():
    with pytest.raises(ValueError, match="num_heads"):
        GPT(vocab_size=V, block_size=T, width=10, num_heads=3)
