"""Sampling: logit filters against a sorted-loop numpy reference, greedy decoding against argmax
chained by hand, seeding, cropping, and the drawn distribution against softmax (chi-square)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from archlab.models import create_model
from archlab.models.sampling import filter_logits, generate, next_token

V = 10


def reference_filter(logits: np.ndarray, top_k, top_p) -> np.ndarray:
    """One row, written from the definitions: a token survives iff its value reaches the value
    of the last token the sorted walk keeps (ties with it survive too)."""
    keep = np.ones(logits.shape, dtype=bool)
    if top_k is not None:
        kth = sorted(logits.tolist(), reverse=True)[min(top_k, len(logits)) - 1]
        keep &= logits >= kth
    if top_p is not None:
        masked = np.where(keep, logits, -np.inf)
        probs = np.exp(masked - masked.max())
        probs /= probs.sum()
        mass, nucleus = 0.0, []
        for p in sorted(probs.tolist(), reverse=True):
            if mass >= top_p:
                break
            nucleus.append(p)
            mass += p
        keep &= probs >= min(nucleus)
    return np.where(keep, logits, -np.inf)


CASES = [(None, None), (1, None), (3, None), (V, None), (V + 5, None), (None, 0.05),
         (None, 0.5), (None, 0.9), (None, 1.0), (4, 0.7), (2, 0.999), (7, 0.3)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("top_k,top_p", CASES)
def test_filter_logits_matches_reference(top_k, top_p, ties):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, V, generator=gen, dtype=torch.float64)
    if ties:  # few distinct values: many tokens tie at the top-k / nucleus boundary
        logits = torch.randint(0, 4, (64, V), generator=gen).double()
    out = filter_logits(logits, top_k, top_p)
    expected = np.stack([reference_filter(row, top_k, top_p) for row in logits.numpy()])
    np.testing.assert_array_equal(out.numpy(), expected)
    assert torch.isfinite(out).any(-1).all()  # the most probable token always survives


def test_filter_logits_hand_examples():
    inf = float("-inf")
    x = torch.tensor([3.0, 1.0, 2.0, 2.0])
    assert filter_logits(x, top_k=1).tolist() == [3.0, inf, inf, inf]
    assert filter_logits(x, top_k=2).tolist() == [3.0, inf, 2.0, 2.0]  # tie at the k-th kept
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.6)).tolist() == [True, True, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [True, True, True]
    # top-k first, then the nucleus of the renormalized survivors (0.5/0.8 = 0.625 >= 0.6).
    assert torch.isfinite(filter_logits(logits, top_k=2, top_p=0.6)).tolist() == \
        [True, False, False]


def test_filter_logits_ignores_vocabulary_order():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randint(0, 3, (V,), generator=gen).float()
    perm = torch.randperm(V, generator=gen)
    for top_k, top_p in CASES:
        torch.testing.assert_close(filter_logits(logits[perm], top_k, top_p),
                                   filter_logits(logits, top_k, top_p)[perm])


class FixedLogits(nn.Module):
    """A 'language model' predicting the same distribution everywhere; records context lengths."""

    def __init__(self, logits: torch.Tensor, block_size: int = 4) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)
        self.block_size, self.lengths = block_size, []

    def forward(self, idx):
        self.lengths.append(idx.shape[1])
        return self.logits.expand(idx.shape[0], idx.shape[1], -1)


def _chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    support = probs > 0
    assert counts[~support].sum() == 0, "drew a filtered-out token"
    expected = probs[support] / probs[support].sum() * counts.sum()
    return stats.chisquare(counts[support], expected).pvalue


def test_draws_follow_softmax_at_temperature_one():
    """20 000 draws through generate: a chi-square goodness-of-fit test against softmax(logits)
    (p-value above 1e-3), and every frequency within 4.5 standard errors of its probability
    (sqrt(p(1-p)/n) <= 0.0035 here)."""
    torch.manual_seed(0)
    logits = torch.randn(V)
    model = FixedLogits(logits)
    n = 20_000
    tokens = list(generate(model, torch.tensor([0]), n, generator=torch.Generator().manual_seed(0)))
    counts = np.bincount(tokens, minlength=V)
    probs = logits.softmax(-1).double().numpy()
    assert _chi_square_p(counts, probs) > 1e-3
    se = np.sqrt(probs * (1 - probs) / n)
    assert (np.abs(counts / n - probs) <= 4.5 * se).all()


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.5, None, None), (2.0, None, None),
                                                     (1.0, 4, None), (1.0, None, 0.8),
                                                     (1.5, 6, 0.9)])
def test_draws_follow_filtered_tempered_softmax(temperature, top_k, top_p):
    torch.manual_seed(1)
    logits = torch.randn(V)
    n = 50_000
    draws = next_token(logits.expand(n, V), temperature, top_k, top_p,
                       torch.Generator().manual_seed(0))
    counts = np.bincount(draws.numpy(), minlength=V)
    kept = reference_filter((logits / temperature).double().numpy(), top_k, top_p)
    probs = np.exp(kept - kept.max())
    assert _chi_square_p(counts, probs / probs.sum()) > 1e-3


def small_gpt(block_size=6):
    torch.manual_seed(0)
    return create_model("gpt_char", vocab_size=V, block_size=block_size, depth=2, width=16,
                        num_heads=2)


def greedy_by_hand(model, prompt, steps):
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            context = torch.tensor(tokens[-model.block_size:])[None]
            tokens.append(int(model(context)[0, -1].argmax()))
    return tokens[len(prompt):]


@pytest.mark.parametrize("name", ["gpt_char", "lstm_lm"])
def test_greedy_is_argmax_chained_by_hand(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=V, block_size=6).eval()
    prompt = [1, 2, 3]
    assert list(generate(model, torch.tensor(prompt), 12, temperature=0)) == \
        greedy_by_hand(model, prompt, 12)


def test_prompt_longer_than_block_size_is_cropped():
    model = small_gpt(block_size=6).eval()
    prompt = torch.randint(0, V, (15,))
    tokens = list(generate(model, prompt, 8, temperature=0))
    assert tokens == greedy_by_hand(model, prompt.tolist(), 8)
    assert tokens == list(generate(model, prompt[-6:], 8, temperature=0))  # only the last 6 count
    stub = FixedLogits(torch.zeros(V), block_size=4)
    list(generate(stub, prompt, 5))
    assert stub.lengths == [4] * 5


def test_same_seed_same_tokens_other_seed_other_tokens():
    model = small_gpt()
    prompt = torch.tensor([[1, 2]])  # (1, T0) is accepted too

    def run(seed):
        return list(generate(model, prompt, 40, generator=torch.Generator().manual_seed(seed)))

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_top_k_one_equals_greedy():
    model = small_gpt()
    prompt = torch.tensor([4, 5])
    sampled = generate(model, prompt, 20, temperature=1.3, top_k=1,
                       generator=torch.Generator().manual_seed(0))
    assert list(sampled) == list(generate(model, prompt, 20, temperature=0))


def test_streams_ints_and_leaves_model_and_grad_mode_alone():
    model = small_gpt().train()
    stream = generate(model, torch.tensor([1]), 3)
    for token in stream:
        assert isinstance(token, int) and 0 <= token < V
        assert model.training and torch.is_grad_enabled()  # restored before each yield
    assert list(generate(model, torch.tensor([1]), 0)) == []


@pytest.mark.parametrize("kwargs,name", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(max_new_tokens=2.0), "max_new_tokens"),
    (dict(temperature=-0.1), "temperature"), (dict(temperature=math.nan), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(prompt_ids=torch.tensor([], dtype=torch.long)), "prompt_ids"),
    (dict(prompt_ids=torch.zeros(2, 3, dtype=torch.long)), "prompt_ids"),
    (dict(prompt_ids=torch.zeros(3)), "prompt_ids"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    args = dict(model=FixedLogits(torch.zeros(V)), prompt_ids=torch.tensor([1]),
                max_new_tokens=3) | kwargs
    with pytest.raises(ValueError, match=name):
        generate(**args)  # raised at the call, before the first token is asked for
