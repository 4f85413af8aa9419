"""Statistics for comparing configurations over seeds: Student-t intervals, Welch's t-test,
Hedges' g, a seeded bootstrap and Holm's correction.

Written with numpy and ``math`` only, so the library does not need scipy at run time; every
number is checked against ``scipy.stats`` in tests/studies/test_stats.py.

Conventions: standard deviations use ddof=1 (the unbiased sample variance); intervals are
two-sided at ``confidence`` (0.95 by default); an undefined quantity (a std of one value, a
test with fewer than two values per side, zero variance on both sides) is ``nan``, never 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

NAN = float("nan")


# ---------------------------------------------------------------------- Student's t distribution
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function evaluated with the modified Lentz
    # method (Press et al., Numerical Recipes, 3rd ed., eq. 6.4.5); converges fast for
    # x < (a + 1) / (a + b + 2), which the caller guarantees by symmetry.
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete beta needs 0 <= x <= 1, got x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)  (Abramowitz & Stegun 26.7.1)
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (inverse of :func:`student_t_cdf`), by bisection."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # bisection to machine precision of the bracket
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------- per-group summary
@dataclass(frozen=True)
class Summary:
    """Mean, spread and Student-t confidence interval of one metric over seeds."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    min: float
    max: float

    def as_dict(self) -> dict:
        return asdict(self)


def _values(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {arr.shape}")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """n, mean, std (ddof=1) and the t interval mean ± t_{(1+c)/2, n-1} · std / sqrt(n)."""
    _check_confidence(confidence)
    x = _values(values, "values")
    n = len(x)
    if n == 0:
        return Summary(0, NAN, NAN, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, NAN, NAN, NAN, float(x[0]), float(x[0]))
    std = float(x.std(ddof=1))
    half = student_t_ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, float(x.min()), float(x.max()))


# ---------------------------------------------------------------------- two-sample comparison
@dataclass(frozen=True)
class Comparison:
    """Group a minus group b: difference of means with Welch's interval and test, Hedges' g."""

    n_a: int
    n_b: int
    diff: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float
    hedges_g: float

    def as_dict(self) -> dict:
        return asdict(self)


def welch_t_test(a: Sequence[float], b: Sequence[float],
                 confidence: float = 0.95) -> Comparison:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (two-sided), its confidence
    interval with Welch–Satterthwaite degrees of freedom, and Hedges' g."""
    _check_confidence(confidence)
    x, y = _values(a, "a"), _values(b, "b")
    na, nb = len(x), len(y)
    diff = float(x.mean() - y.mean()) if na and nb else NAN
    if na < 2 or nb < 2:
        return Comparison(na, nb, diff, NAN, NAN, NAN, NAN, NAN, NAN)
    va, vb = x.var(ddof=1) / na, y.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:  # both sides constant: no test is defined
        return Comparison(na, nb, diff, NAN, NAN, NAN, NAN, NAN, NAN)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    t = diff / se
    p = min(1.0, 2.0 * student_t_cdf(-abs(t), df))
    half = student_t_ppf(0.5 + confidence / 2.0, df) * se
    return Comparison(na, nb, diff, diff - half, diff + half, float(t), float(df), float(p),
                      hedges_g(x, y))


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g: Cohen's d with the pooled (ddof=1) standard deviation, times the exact
    small-sample bias correction J(m) = Γ(m/2) / (sqrt(m/2) Γ((m-1)/2)), m = n_a + n_b - 2
    (Hedges 1981). With 2-5 seeds per group the correction matters (J(2) ≈ 0.56)."""
    x, y = _values(a, "a"), _values(b, "b")
    na, nb = len(x), len(y)
    m = na + nb - 2
    if na < 2 or nb < 2:
        return NAN
    pooled = math.sqrt(((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / m)
    if pooled == 0.0:
        return NAN
    j = math.exp(math.lgamma(m / 2.0) - math.lgamma((m - 1) / 2.0)) / math.sqrt(m / 2.0)
    return float((x.mean() - y.mean()) / pooled * j)


def bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000,
                      seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), each group resampled with
    replacement independently. Draw order (fixed by ``seed``): all of a's index rows
    ``(resamples, n_a)``, then b's ``(resamples, n_b)``, from ``np.random.default_rng(seed)``."""
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"bootstrap resamples must be >= 1, got {resamples}")
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) == 0 or len(y) == 0:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    idx_a = rng.integers(0, len(x), size=(resamples, len(x)))
    idx_b = rng.integers(0, len(y), size=(resamples, len(y)))
    diffs = x[idx_a].mean(axis=1) - y[idx_b].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control for several comparisons
    against one baseline); nan entries are left out of the family and stay nan."""
    p = list(p_values)
    valid = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m, running = len(valid), 0.0
    out = [NAN] * len(p)
    for rank, (v, i) in enumerate(valid):
        running = max(running, min(1.0, (m - rank) * v))
        out[i] = running
    return out
