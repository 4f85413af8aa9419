"""archlab.layers.attention against torch's own attention implementations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

D, H = 16, 4


def _pair(seed: int = 0) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(seed)
    ours = MultiHeadAttention(D, H).double()
    ref = nn.MultiheadAttention(D, H, batch_first=True).double()
    nn.init.normal_(ours.in_proj_bias)  # non-zero biases so their placement is checked too
    nn.init.normal_(ours.out_proj.bias)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours.eval(), ref.eval()


def test_state_dict_keys_match_torch():
    ours, ref = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_torch(causal):
    ours, ref = _pair()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    mask = causal_mask(5) if causal else None
    out, weights = ours(x, attn_mask=mask, key_padding_mask=padding, need_weights=True)
    # torch's boolean attn_mask marks *disallowed* positions: the complement of ours.
    ref_out, ref_weights = ref(x, x, x, key_padding_mask=padding,
                               attn_mask=None if mask is None else ~mask, need_weights=True)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.last_attn.mean(1), weights, rtol=0, atol=1e-12)


def test_cross_attention_matches_torch():
    ours, ref = _pair(1)
    q = torch.randn(2, 3, D, dtype=torch.float64)
    memory = torch.randn(2, 6, D, dtype=torch.float64)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    out, weights = ours(q, memory, memory, key_padding_mask=padding, need_weights=True)
    ref_out, ref_weights = ref(q, memory, memory, key_padding_mask=padding, need_weights=True)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-12)
    assert torch.all(weights[1, :, 4:] == 0)  # padded keys get no weight


def test_additive_bias_matches_torch_float_mask():
    ours, ref = _pair(2)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    bias = torch.randn(H, 5, 5, dtype=torch.float64)  # per head, shared over the batch
    out, _ = ours(x, attn_bias=bias)
    # torch's float attn_mask is added to the scores; 3-d form is (B * H, L, S), batch-major.
    ref_out, _ = ref(x, x, x, attn_mask=bias.repeat(2, 1, 1), need_weights=False)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)


def test_sdpa_matches_torch_with_bool_mask_and_bias():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, H, 4, 8, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 4, 4) > 0.3
    mask |= torch.eye(4, dtype=torch.bool)  # no empty rows
    bias = torch.randn(H, 4, 4, dtype=torch.float64)
    out, _ = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               rtol=0, atol=1e-12)
    out, _ = scaled_dot_product_attention(q, k, v, attn_bias=bias)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                               rtol=0, atol=1e-12)


def test_sdpa_causal_matches_torch_is_causal():
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, H, 6, 8, dtype=torch.float64) for _ in range(3))
    out, weights = scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=0, atol=1e-12)
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 6, dtype=torch.float64))
