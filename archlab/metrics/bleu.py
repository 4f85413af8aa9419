"""Corpus BLEU (Papineni et al. 2002), scored the way sacrebleu (Post 2018) scores it.

BLEU = BP * exp(sum_n w_n log p_n), w_n = 1/N, where p_n is the clipped n-gram precision of the
whole corpus (each hypothesis n-gram counts at most as often as in the reference that has most of
it) and BP = min(1, exp(1 - r/c)) with c the hypothesis length and r the summed length of the
reference closest in length to each hypothesis (ties: the shorter one).

Usage::

    bleu = build_metric("bleu")
    bleu.update(["the cat sat on the mat"], [["the cat is on the mat", "a cat sat on the mat"]])
    bleu.compute()["bleu"]      # in [0, 1]; sacrebleu prints 100x this

Inputs to ``update(hypotheses, references)``, one entry per segment:

* strings: ``hypotheses[i]`` a string, ``references[i]`` a string or a list of strings (several
  references). Strings are tokenized with ``tokenize``: ``"13a"`` (default; the mteval-v13a.pl
  rules WMT and sacrebleu use: punctuation split off, periods and commas kept inside numbers) or
  ``"none"`` (split on whitespace only);
* pre-tokenized: ``hypotheses[i]`` a list of tokens, ``references[i]`` a list of tokens or a list
  of such lists. Used as given (``lowercase`` still applies).

Smoothing (Chen & Cherry 2014, sacrebleu's names), applied to orders with no match:
``"none"``; ``"floor"``: p_n = smooth_value / total_n (default 0.1); ``"add-k"``: p_n = (m_n + k) /
(total_n + k) for n > 1 (default k = 1); ``"exp"`` (sacrebleu's default, mteval's): the k-th
order without a match gets p_n = 1 / (2^k total_n). As in sacrebleu a corpus with no matching
n-gram at all scores 0, and an order with no hypothesis n-grams makes BLEU 0 unless
``effective_order`` (then BLEU uses only the orders that have n-grams).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Optional, Sequence

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, text_segments

SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}
TOKENIZERS = ("13a", "none")

# mteval-v13a.pl, language-dependent part (Western languages):
_PUNCT = re.compile(r"([{-~\[-` -&(-+:-@/])")   # ASCII punctuation and symbols become tokens
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([.,])")  # split unless preceded by a digit
_PERIOD_COMMA_BEFORE = re.compile(r"([.,])([^0-9])")  # split unless followed by a digit
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def tokenize_13a(line: str) -> list[str]:
    """The mteval-v13a tokenization (case preserved), as a token list."""
    # Language-independent part: undo SGML escapes and line-wrapping artefacts.
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            line = line.replace(entity, char)
    line = _PUNCT.sub(r" \1 ", f" {line} ")
    line = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", line)
    line = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", line)
    line = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return line.split()


def ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    """All n-grams of orders 1..max_order as tuples, with counts."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1)
                   for i in range(len(tokens) - n + 1))


def closest_ref_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length nearest to the hypothesis length; ties go to the shorter one."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


@METRICS.register("bleu", inputs="text")
class BLEU(SummedStateMetric):
    """``{"bleu", "bleu_p1".."bleu_pN", "bleu_bp", "bleu_hyp_len", "bleu_ref_len"}``, all floats,
    scores and precisions in [0, 1].

    State: ``stats`` int64 (2 + 2N,) = [hypothesis length, reference length, matches_1..N,
    totals_1..N], the corpus-level sufficient statistics.
    """

    def __init__(self, max_order: int = 4, smooth: str = "exp",
                 smooth_value: Optional[float] = None, tokenize: str = "13a",
                 lowercase: bool = False, effective_order: bool = False) -> None:
        super().__init__()
        if max_order < 1:
            raise ValueError(f"max_order must be >= 1, got {max_order}")
        if smooth not in SMOOTH_DEFAULTS:
            raise ValueError(f"unknown smooth {smooth!r}; choose from {list(SMOOTH_DEFAULTS)}")
        if tokenize not in TOKENIZERS:
            raise ValueError(f"unknown tokenize {tokenize!r}; choose from {list(TOKENIZERS)}")
        self.max_order, self.smooth, self.tokenize = max_order, smooth, tokenize
        self.smooth_value = SMOOTH_DEFAULTS[smooth] if smooth_value is None else smooth_value
        self.lowercase, self.effective_order = lowercase, effective_order
        self.add_state("stats", torch.zeros(2 + 2 * max_order, dtype=torch.int64))

    def _tokens(self, text: str | Sequence[str]) -> list[str]:
        if isinstance(text, str):
            if self.lowercase:
                text = text.lower()
            # sacrebleu strips trailing whitespace before tokenizing.
            return tokenize_13a(text.rstrip()) if self.tokenize == "13a" else text.split()
        return [t.lower() for t in text] if self.lowercase else list(text)

    def update(self, hypotheses: Sequence, references: Sequence) -> None:
        for hyp, refs in zip(*text_segments(hypotheses, references)):
            hyp_tokens = self._tokens(hyp)
            ref_tokens = [self._tokens(r) for r in refs]
            # Clip each n-gram by its largest count in any single reference (Papineni §2.1).
            max_ref = Counter()
            for r in ref_tokens:
                max_ref |= ngram_counts(r, self.max_order)
            seg = [0] * (2 + 2 * self.max_order)
            seg[0] = len(hyp_tokens)
            seg[1] = closest_ref_length(len(hyp_tokens), [len(r) for r in ref_tokens])
            for gram, count in ngram_counts(hyp_tokens, self.max_order).items():
                n = len(gram)
                seg[1 + n] += min(count, max_ref[gram])
                seg[1 + self.max_order + n] += count
            self.stats += torch.tensor(seg, dtype=torch.int64)

    def compute(self) -> dict[str, float]:
        stats = self.stats.tolist()
        hyp_len, ref_len = stats[0], stats[1]
        matches = [float(m) for m in stats[2:2 + self.max_order]]
        totals = [float(t) for t in stats[2 + self.max_order:]]
        bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
        precisions = [0.0] * self.max_order
        orders = self.max_order
        if any(matches):
            exp_factor = 1.0
            for i in range(self.max_order):
                if self.smooth == "add-k" and i > 0:
                    matches[i] += self.smooth_value
                    totals[i] += self.smooth_value
                if totals[i] == 0:
                    break
                if self.effective_order:
                    orders = i + 1
                if matches[i] > 0:
                    precisions[i] = matches[i] / totals[i]
                elif self.smooth == "exp":
                    exp_factor *= 2
                    precisions[i] = 1.0 / (exp_factor * totals[i])
                elif self.smooth == "floor":
                    precisions[i] = self.smooth_value / totals[i]
        used = precisions[:orders]
        score = bp * math.exp(sum(math.log(p) for p in used) / orders) if all(used) else 0.0
        out = {"bleu": score}
        out.update({f"bleu_p{n + 1}": p for n, p in enumerate(precisions)})
        out.update({"bleu_bp": bp, "bleu_hyp_len": float(hyp_len), "bleu_ref_len": float(ref_len)})
        return out

