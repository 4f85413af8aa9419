"""ROUGE-1/2/L against Google's rouge_score.RougeScorer (no stemming)."""

from __future__ import annotations

import random

import numpy as np
import pytest

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

from archlab.metrics import build_metric  # noqa: E402
from archlab.metrics.rouge import lcs_length  # noqa: E402

TYPES = ("rouge1", "rouge2", "rougeL")

PAIRS = [  # (prediction, reference)
    ("The cat sat on the mat.", "The cat was sitting on the mat!"),
    ("police kill the gunman", "police killed the gunman"),
    ("the gunman kill police", "police killed the gunman"),
    ("Café prices rose 3.5% in Q2; analysts, surprised, said so.", "Prices rose 3.5 percent in Q2"),
    ("a a a b", "a b a b a"),
    ("", "nothing predicted"),
    ("!!!", "only punctuation"),
    ("Completely different words", "no overlap here at all"),
]


def _random_pairs(seed: int, n: int = 10):
    rng = random.Random(seed)
    words = "a b c d e f The, x-y 42".split()
    sent = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(0, 15)))  # noqa: E731
    return [(sent(), sent()) for _ in range(n)]


def _reference_means(pairs, scorer):
    scores = [scorer.score(ref, pred) for pred, ref in pairs]  # rouge_score: (target, prediction)
    return {f"{t}_{m}": np.mean([getattr(s[t], m) for s in scores])
            for t in TYPES for m in ("precision", "recall", "fmeasure")}


@pytest.mark.parametrize("pairs", [PAIRS, _random_pairs(0), _random_pairs(1)],
                         ids=["handwritten", "random0", "random1"])
def test_rouge_matches_rouge_score(pairs):
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)
    metric = build_metric("rouge", rouge_types=TYPES)
    metric.update([p for p, _ in pairs], [r for _, r in pairs])
    out = metric.compute()
    ref = _reference_means(pairs, scorer)
    assert out.keys() == ref.keys()
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0 < out["rougeL_fmeasure"] < 1


def test_each_pair_matches_rouge_score():
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)
    for pred, ref in PAIRS:
        metric = build_metric("rouge")
        metric.update([pred], [ref])
        out = metric.compute()
        for t, s in scorer.score(ref, pred).items():
            assert (out[f"{t}_precision"], out[f"{t}_recall"], out[f"{t}_fmeasure"]) == \
                pytest.approx((s.precision, s.recall, s.fmeasure), abs=1e-12), (pred, t)


def test_multiple_references_match_score_multi():
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)
    preds = [p for p, _ in PAIRS[:4]]
    refs = [[r, PAIRS[-1 - i][1], p[::-1]] for i, (p, r) in enumerate(PAIRS[:4])]
    metric = build_metric("rouge")
    metric.update(preds, refs)
    out = metric.compute()
    multi = [scorer.score_multi(rs, p) for p, rs in zip(preds, refs)]
    for t in TYPES:
        assert out[f"{t}_fmeasure"] == pytest.approx(np.mean([m[t].fmeasure for m in multi]))
        assert out[f"{t}_recall"] == pytest.approx(np.mean([m[t].recall for m in multi]))


def test_pretokenized_input_is_used_verbatim():
    metric = build_metric("rouge", rouge_types=("rouge1", "rougeL"))
    metric.update([["The", "Cat", "sat"]], [["the", "Cat", "sat", "down"]])
    out = metric.compute()  # "The" != "the": no lower-casing of token lists
    assert out["rouge1_precision"] == pytest.approx(2 / 3)
    assert out["rougeL_recall"] == pytest.approx(2 / 4)


def test_lcs_length_on_known_cases():
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # CLRS 15.4 example
    assert lcs_length("", "abc") == 0
    assert lcs_length("abc", "abc") == 3


def test_unknown_rouge_type_is_rejected():
    with pytest.raises(ValueError, match="rougeLsum"):
        build_metric("rouge", rouge_types=("rougeLsum",))
