"""ROUGE-N and ROUGE-L (Lin 2004), as Google's ``rouge_score`` package computes them.

Per (prediction, reference) pair:

* ROUGE-N: overlap = sum over n-grams of min(count in prediction, count in reference);
  precision = overlap / #prediction n-grams, recall = overlap / #reference n-grams;
* ROUGE-L: the longest common subsequence (LCS) of the two token sequences;
  precision = LCS / len(prediction), recall = LCS / len(reference);

F = 2PR / (P + R) (0 when P + R = 0). A pair with an empty side scores 0. With several
references, each ROUGE type takes the reference with the highest F (``score_multi``). The
corpus value is the mean over pairs, which is what ``rouge_score``'s aggregator reports.

``update(predictions, references)`` takes the same shapes as BLEU: strings (a reference string or
a list of them) or pre-tokenized token lists. Strings are tokenized like ``rouge_score`` without
stemming: lower-cased, every run of characters outside ``[a-z0-9]`` is a separator.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, text_segments

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
ROUGE_TYPES = ("rouge1", "rouge2", "rouge3", "rouge4", "rougeL")


def tokenize_rouge(text: str) -> list[str]:
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, O(len(a) len(b)) dynamic programme."""
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def _prf(overlap: int, pred_total: int, ref_total: int) -> tuple[float, float, float]:
    p = overlap / pred_total if pred_total else 0.0
    r = overlap / ref_total if ref_total else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def rouge_pair(rouge_type: str, pred: Sequence[str], ref: Sequence[str]) -> tuple[float, ...]:
    """(precision, recall, F) of one ROUGE type for one tokenized pair."""
    if rouge_type == "rougeL":
        if not pred or not ref:
            return 0.0, 0.0, 0.0
        return _prf(lcs_length(ref, pred), len(pred), len(ref))
    n = int(rouge_type[len("rouge"):])
    pred_grams = Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
    ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    overlap = sum((pred_grams & ref_grams).values())
    return _prf(overlap, sum(pred_grams.values()), sum(ref_grams.values()))


@METRICS.register("rouge", inputs="text")
class ROUGE(SummedStateMetric):
    """``{"rouge1_precision", "rouge1_recall", "rouge1_fmeasure", ..., "rougeL_fmeasure"}``,
    means over all pairs seen, in [0, 1].

    State: ``sums`` float64 (len(rouge_types), 3) of per-pair (P, R, F) and ``count`` (int64).
    """

    def __init__(self, rouge_types: Sequence[str] = ("rouge1", "rouge2", "rougeL")) -> None:
        super().__init__()
        unknown = [t for t in rouge_types if t not in ROUGE_TYPES]
        if unknown or not rouge_types:
            raise ValueError(f"unknown rouge_types {unknown or '[]'}; choose from {ROUGE_TYPES}")
        self.rouge_types = tuple(rouge_types)
        self.add_state("sums", torch.zeros(len(self.rouge_types), 3, dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, predictions: Sequence, references: Sequence) -> None:
        preds, refs = text_segments(predictions, references)
        batch = torch.zeros_like(self.sums)
        for pred, many in zip(preds, refs):
            pred_tokens = tokenize_rouge(pred) if isinstance(pred, str) else list(pred)
            ref_tokens = [tokenize_rouge(r) if isinstance(r, str) else r for r in many]
            for i, rouge_type in enumerate(self.rouge_types):
                scores = [rouge_pair(rouge_type, pred_tokens, r) for r in ref_tokens]
                # Best reference by F; the first one wins ties (numpy argmax in rouge_score).
                batch[i] += torch.tensor(max(scores, key=lambda s: s[2]), dtype=torch.float64)
        self.sums += batch
        self.count += len(preds)

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("rouge: compute() called before any update()")
        means = (self.sums / self.count).tolist()
        return {f"{t}_{m}": v for t, row in zip(self.rouge_types, means)
                for m, v in zip(("precision", "recall", "fmeasure"), row)}
