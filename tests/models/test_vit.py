"""ViT: patch embedding, class token, position embedding, attention vs torch's
nn.MultiheadAttention, intermediates as feature maps, attention maps, torchvision layout."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archlab.layers.patch_embed import PatchEmbed
from archlab.models import count_flops, create_model

MANIFEST = Path("/work/shared/reference/torchvision_manifest.json")


def _tiny(**kw):
    """A small ViT for fast tests (same code path as the registered sizes)."""
    torch.manual_seed(0)
    args = dict(num_classes=5, in_chans=1, img_size=28, embed_dim=32, depth=2, num_heads=4)
    return create_model("vit_tiny_patch4", **{**args, **kw}).eval()


@pytest.mark.parametrize("img_size,patch,expected_n", [(28, 4, 49), ((32, 16), 4, 32),
                                                       (224, 16, 196)])
def test_patch_embed_shape_and_value(img_size, patch, expected_n):
    torch.manual_seed(0)
    embed = PatchEmbed(img_size, patch, in_chans=3, embed_dim=24)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, h, w)
    tokens = embed(x)
    assert tokens.shape == (2, expected_n, 24) and expected_n == (h // patch) * (w // patch)
    # reference: flatten each p x p patch (row-major over the grid) and apply one linear map
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, gh, gw, p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (B, N, C*p*p)
    ref = patches @ embed.weight.flatten(1).T + embed.bias
    assert torch.allclose(tokens, ref, atol=1e-4)


def test_patch_embed_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="divisible"):
        PatchEmbed(30, 4)
    with pytest.raises(ValueError, match="28x28"):
        PatchEmbed(28, 4, in_chans=1)(torch.randn(1, 1, 32, 32))


def test_class_token_is_prepended_and_position_embedding_shape():
    model = _tiny()
    assert model.encoder.pos_embedding.shape == (1, 50, 32)  # 1 class token + 7*7 patches
    with torch.no_grad():
        model.class_token.normal_()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.randn(2, 1, 28, 28)
    model(x)
    tokens = seen["x"]
    assert tokens.shape == (2, 50, 32)
    assert torch.equal(tokens[:, 0], model.class_token[0].expand(2, -1))
    assert torch.equal(tokens[:, 1:], model.conv_proj(x))
    with torch.device("meta"):
        assert create_model("vit_b_16").encoder.pos_embedding.shape == (1, 197, 768)


def test_attention_and_block_equal_torch_reference():
    model = _tiny()
    block = model.encoder.layers.encoder_layer_0
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    mha.load_state_dict(block.self_attention.state_dict())  # same parameter names
    x = torch.randn(2, 50, 32)
    ours, _ = block.self_attention(x)
    ref, _ = mha(x, x, x, need_weights=False)
    assert torch.allclose(ours, ref, atol=1e-5)
    # the whole pre-norm block: x + MSA(LN(x)), then + MLP(LN(.)) (Eqs. 2-3)
    y = x + mha(block.ln_1(x), block.ln_1(x), block.ln_1(x), need_weights=False)[0]
    mlp = block.mlp
    y = y + mlp[3](nn.functional.gelu(mlp[0](nn.functional.layer_norm(y, (32,), block.ln_2.weight,
                                                                     block.ln_2.bias, 1e-6))))
    assert torch.allclose(block(x), y, atol=1e-5)


def test_attention_maps_are_torch_attention_weights():
    model = _tiny()
    x = torch.randn(2, 1, 28, 28)
    maps = model.get_attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 50, 50)
    assert torch.allclose(maps[1].sum(-1), torch.ones(2, 4, 50))
    block = model.encoder.layers.encoder_layer_0
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    mha.load_state_dict(block.self_attention.state_dict())
    h = block.ln_1(torch.cat([model.class_token.expand(2, -1, -1), model.conv_proj(x)], 1)
                   + model.encoder.pos_embedding)
    _, ref = mha(h, h, h, need_weights=True, average_attn_weights=False)
    assert torch.allclose(maps[0], ref, atol=1e-5)


def test_intermediates_are_token_grids_in_row_major_order():
    model = _tiny(img_size=(16, 8), depth=1)
    x = torch.randn(2, 1, 16, 8)
    maps = model.forward_intermediates(x)
    assert len(maps) == 1 and maps[0].shape == (2, 32, 4, 2)
    # the last map is the encoder output before the final LayerNorm
    tokens = maps[0].flatten(2).transpose(1, 2)
    assert torch.allclose(model.encoder.ln(tokens), model.forward_features(x)[:, 1:], atol=1e-5)
    # with the residual branches silenced, a change in patch (row 2, col 1) moves only map[2, 1]
    block = model.encoder.layers.encoder_layer_0
    for lin in (block.self_attention.out_proj, block.mlp[3]):
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)
    x2 = x.clone()
    x2[:, :, 8:12, 4:8] += 1.0
    diff = model.forward_intermediates(x2)[0] - model.forward_intermediates(x)[0]
    diff = diff.abs().sum((0, 1))
    assert diff[2, 1] > 0 and diff.sum() == diff[2, 1]


def test_contract_head_and_drop_path_schedule():
    model = _tiny(drop_path_rate=0.1, depth=3)
    assert [b.drop_path.p for b in model.encoder.layers] == pytest.approx([0.0, 0.05, 0.1])
    x = torch.randn(2, 1, 28, 28)
    feats = model.forward_features(x)
    assert torch.equal(model.forward_head(feats, pre_logits=True), feats[:, 0])
    assert model.default_cfg.first_conv == "conv_proj"
    assert isinstance(model.get_submodule(model.default_cfg.first_conv), nn.Conv2d)
    assert model.get_classifier() is model.heads.head


def test_vit_b_16_torchvision_manifest_parity():
    if not MANIFEST.exists():
        pytest.skip(f"reference manifest not found at {MANIFEST}")
    ref = json.loads(MANIFEST.read_text())["models"]["vit_b_16"]
    with torch.device("meta"):
        model = create_model("vit_b_16")
        flops = count_flops(model, (3, 224, 224))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == [[k, shape] for k, shape, *_ in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params_total"]
    # written-out attention counts the same matmuls as torch's math SDPA backend
    assert flops == ref["flops"]
