"""Positional encodings and masks against their formulas computed element by element."""

import math

import pytest
import torch

from archlab.layers.positional import (LearnedPositionalEmbedding, RelativePositionBias,
                                       SinusoidalPositionalEncoding, local_attention_mask,
                                       sinusoidal_encoding)


@pytest.mark.parametrize("dim", [6, 7])
def test_sinusoidal_matches_vaswani_formula(dim):
    length = 50
    table = sinusoidal_encoding(length, dim)
    for pos in range(length):
        for j in range(dim):
            i = j // 2  # PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
            angle = pos / 10000 ** (2 * i / dim)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[pos, j].item() == pytest.approx(expected, abs=1e-6)


def test_sinusoidal_module_adds_table_with_offset_and_has_no_state():
    module = SinusoidalPositionalEncoding(8, max_len=16)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(module(x, offset=3), x + sinusoidal_encoding(16, 8)[3:8])
    assert len(module.state_dict()) == 0
    with pytest.raises(ValueError, match="max_len"):
        module(torch.zeros(1, 17, 8))


def test_learned_positions_add_rows_and_train_only_used_ones():
    module = LearnedPositionalEmbedding(4, max_len=10)
    x = torch.randn(2, 3, 4)
    out = module(x, offset=2)
    torch.testing.assert_close(out, x + module.weight[2:5])
    out.sum().backward()
    used = module.weight.grad.abs().sum(1) > 0
    assert used.tolist() == [False, False, True, True, True] + [False] * 5


def test_relative_bias_is_indexed_by_clipped_distance():
    torch.manual_seed(0)
    heads, max_distance = 3, 2
    module = RelativePositionBias(heads, max_distance)
    torch.nn.init.normal_(module.bias.weight)
    table = module.bias.weight  # (2 * max_distance + 1, heads)
    out = module(4, 6)
    assert out.shape == (heads, 4, 6)
    for h in range(heads):
        for i in range(4):
            for j in range(6):
                distance = max(-max_distance, min(max_distance, j - i))
                assert out[h, i, j] == table[distance + max_distance, h]


def test_local_mask_matches_window_definition():
    length, window = 7, 2
    mask = local_attention_mask(length, window)
    causal = local_attention_mask(length, window, causal=True)
    for i in range(length):
        for j in range(length):
            assert mask[i, j].item() == (abs(i - j) <= window)
            assert causal[i, j].item() == (abs(i - j) <= window and j <= i)
    assert torch.equal(local_attention_mask(length, length), torch.ones(length, length).bool())
    with pytest.raises(ValueError, match="window"):
        local_attention_mask(3, -1)
