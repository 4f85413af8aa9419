"""Corpus BLEU against sacrebleu.corpus_bleu: score, n-gram precisions, brevity penalty."""

from __future__ import annotations

import random

import pytest

sacrebleu = pytest.importorskip("sacrebleu")
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a  # noqa: E402

from archlab.metrics import build_metric  # noqa: E402
from archlab.metrics.bleu import tokenize_13a  # noqa: E402

HANDWRITTEN = (
    ["The cat sat on the mat.",
     "It costs $3.50, i.e. 3,000 yen - cheap!",
     "He said: \"go (now)\" & left at 10-11pm.",
     "A quick brown fox jumps over the lazy dog"],
    [["The cat is on the mat.", "There is a cat on the mat."],
     ["It costs $3.50, about 3,000 yen; cheap!", "The price is 3.50 dollars."],
     ["He said \"go now\" and left at 10-11 pm.", "\"Go now,\" he said, leaving at 10-11pm."],
     ["The quick brown fox jumped over the lazy dog.", "A fast brown fox leaps over a lazy dog"]],
)


def _random_corpus(seed: int, n: int = 15, vocab: int = 12):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)] + [",", ".", "x-1", "2.5"]
    sent = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))  # noqa: E731
    hyps = [sent() for _ in range(n)]
    refs = [[sent() for _ in range(rng.randint(1, 3))] for _ in range(n)]
    return hyps, refs


CORPORA = {
    "handwritten": HANDWRITTEN,
    "random0": _random_corpus(0),
    "random1": _random_corpus(1, vocab=30),  # sparse matches: some 3/4-gram orders are zero
    "random2": _random_corpus(3, n=25, vocab=2),  # matches at every order, BP < 1
    "short": (["a b", "c"], [["a b c d e"], ["c d"]]),  # no 3-grams at all, BP < 1
    "no_match": (["x y z"], [["a b c"]]),
}


def _streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Per-segment reference lists -> sacrebleu's reference streams (None pads missing ones)."""
    width = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


def _check(ours: dict, ref) -> None:
    assert ours["bleu"] == pytest.approx(ref.score / 100, rel=1e-9, abs=1e-12)
    for n, p in enumerate(ref.precisions, start=1):
        assert ours[f"bleu_p{n}"] == pytest.approx(p / 100, rel=1e-9, abs=1e-12), n
    assert ours["bleu_bp"] == pytest.approx(ref.bp, rel=1e-12)
    assert (ours["bleu_hyp_len"], ours["bleu_ref_len"]) == (ref.sys_len, ref.ref_len)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
@pytest.mark.parametrize("smooth", ["none", "floor", "add-k", "exp"])
def test_bleu_matches_sacrebleu(corpus, smooth):
    hyps, refs = CORPORA[corpus]
    metric = build_metric("bleu", smooth=smooth)
    metric.update(hyps, refs)
    _check(metric.compute(), sacrebleu.corpus_bleu(hyps, _streams(refs), smooth_method=smooth))


@pytest.mark.parametrize("options", [
    {"tokenize": "none"}, {"lowercase": True}, {"effective_order": True},
    {"smooth": "floor", "smooth_value": 0.3}, {"smooth": "add-k", "smooth_value": 2.0},
])
@pytest.mark.parametrize("corpus", ["handwritten", "random1", "short"])
def test_bleu_options_match_sacrebleu(corpus, options):
    hyps, refs = CORPORA[corpus]
    metric = build_metric("bleu", **options)
    metric.update(hyps, refs)
    ref = sacrebleu.corpus_bleu(
        hyps, _streams(refs), smooth_method=options.get("smooth", "exp"),
        smooth_value=options.get("smooth_value"), tokenize=options.get("tokenize", "13a"),
        lowercase=options.get("lowercase", False),
        use_effective_order=options.get("effective_order", False))
    _check(metric.compute(), ref)


def test_pretokenized_input_equals_whitespace_tokenized_strings():
    hyps, refs = CORPORA["random0"]
    tokens = build_metric("bleu")
    tokens.update([h.split() for h in hyps], [[r.split() for r in rs] for rs in refs])
    single = build_metric("bleu")  # one token-list reference per segment
    single.update([h.split() for h in hyps], [rs[0].split() for rs in refs])
    _check(tokens.compute(), sacrebleu.corpus_bleu(hyps, _streams(refs), tokenize="none"))
    _check(single.compute(), sacrebleu.corpus_bleu(hyps, [[rs[0] for rs in refs]],
                                                   tokenize="none"))


@pytest.mark.parametrize("line", [
    "Hello, world. It's 3.14 or 1,000.5!", "x-1 and 10-11 a-b", "&quot;quoted&quot; &amp;lt; tag",
    "line-\nbreak\nnext <skipped> end", "{brackets} [x] (y) @home #tag ~tilde `tick` a/b",
    "trailing dot.", "...", "   ",
])
def test_13a_tokenizer_matches_sacrebleu(line):
    assert tokenize_13a(line) == Tokenizer13a()(line).split()


def test_bleu_input_errors_name_the_problem():
    metric = build_metric("bleu")
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metric.update(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="single string"):
        metric.update("a b", ["a b"])
    with pytest.raises(TypeError, match="segment 0"):
        metric.update([["a", "b"]], ["a b"])
    with pytest.raises(ValueError, match="unknown smooth"):
        build_metric("bleu", smooth="add-one")
