"""The study statistics against scipy.stats (an independent implementation) and against the
formulas written out directly."""

from __future__ import annotations

import math

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")
from scipy.special import gamma  # noqa: E402

from archlab.studies.stats import (bootstrap_diff_ci, hedges_g, holm_adjust,  # noqa: E402
                                   regularized_incomplete_beta, student_t_cdf, student_t_ppf,
                                   summarize, welch_t_test)

A = [0.912, 0.905, 0.921, 0.899, 0.915]
B = [0.871, 0.902, 0.884]


@pytest.mark.parametrize("df", [1, 2, 3.7, 9, 30, 250.5])
def test_student_t_cdf_and_ppf_match_scipy(df):
    for t in (-40.0, -3.1, -0.2, 0.0, 0.7, 2.5, 12.0):
        assert student_t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)
    for q in (1e-4, 0.025, 0.3, 0.5, 0.9, 0.975, 0.9995):
        assert student_t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9,
                                                     abs=1e-12)


def test_incomplete_beta_matches_scipy():
    from scipy.special import betainc

    for a, b, x in [(0.5, 0.5, 0.3), (2.0, 5.0, 0.9), (15.0, 0.5, 0.97), (3.3, 1.2, 0.01)]:
        assert regularized_incomplete_beta(a, b, x) == pytest.approx(betainc(a, b, x), abs=1e-13)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_summary_is_mean_std_and_student_t_interval(confidence):
    s = summarize(A, confidence)
    x = np.array(A)
    low, high = scipy_stats.t.interval(confidence, len(x) - 1, loc=x.mean(),
                                       scale=scipy_stats.sem(x))
    assert s.n == 5 and s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(x.std(ddof=1))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    assert (s.min, s.max) == (min(A), max(A))


def test_summary_of_one_or_no_value_is_undefined_not_zero():
    one = summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


def test_welch_matches_scipy_ttest_ind_unequal_variances():
    c = welch_t_test(A, B)
    ref = scipy_stats.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert c.t == pytest.approx(ref.statistic, rel=1e-12)
    assert c.df == pytest.approx(ref.df, rel=1e-12)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert (c.ci_low, c.ci_high) == (pytest.approx(ci.low, rel=1e-9),
                                     pytest.approx(ci.high, rel=1e-9))
    # The test is symmetric: swapping the groups flips the sign, not the p-value.
    swapped = welch_t_test(B, A)
    assert swapped.t == pytest.approx(-c.t) and swapped.p_value == pytest.approx(c.p_value)


def test_welch_undefined_cases_are_nan():
    assert math.isnan(welch_t_test([0.9], B).p_value)
    assert math.isnan(welch_t_test([0.9, 0.9], [0.8, 0.8]).p_value)


def test_hedges_g_is_cohens_d_times_the_exact_correction():
    x, y = np.array(A), np.array(B)
    m = len(x) + len(y) - 2
    pooled = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / m)
    d = (x.mean() - y.mean()) / pooled
    j_exact = gamma(m / 2) / (math.sqrt(m / 2) * gamma((m - 1) / 2))
    assert hedges_g(A, B) == pytest.approx(d * j_exact, rel=1e-12)
    # Hedges' familiar approximation J ≈ 1 - 3 / (4 m - 1) agrees to within 1%.
    assert hedges_g(A, B) == pytest.approx(d * (1 - 3 / (4 * m - 1)), rel=1e-2)
    assert welch_t_test(A, B).hedges_g == pytest.approx(hedges_g(A, B))


def test_bootstrap_equals_direct_numpy_resampling_with_the_same_seed():
    low, high = bootstrap_diff_ci(A, B, resamples=4000, seed=7, confidence=0.9)
    rng = np.random.default_rng(7)
    a, b = np.array(A), np.array(B)
    ia = rng.integers(0, len(a), size=(4000, len(a)))
    ib = rng.integers(0, len(b), size=(4000, len(b)))
    diffs = a[ia].mean(1) - b[ib].mean(1)
    assert (low, high) == (np.quantile(diffs, 0.05), np.quantile(diffs, 0.95))
    assert bootstrap_diff_ci(A, B, resamples=4000, seed=7, confidence=0.9) == (low, high)
    assert bootstrap_diff_ci(A, B, resamples=4000, seed=8, confidence=0.9) != (low, high)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.3, 40), rng.normal(0.8, 0.5, 30)
    ours = bootstrap_diff_ci(a, b, resamples=20000, seed=1)
    ref = scipy_stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                                n_resamples=20000, method="percentile", rng=2,
                                vectorized=True).confidence_interval
    # Different random draws: the endpoints agree to Monte-Carlo accuracy.
    assert ours[0] == pytest.approx(ref.low, abs=0.02)
    assert ours[1] == pytest.approx(ref.high, abs=0.02)


def test_holm_adjustment_by_hand():
    # Sorted p: 0.01 (x3) -> 0.03, 0.02 (x2) -> 0.04, 0.04 (x1) -> 0.04 (monotone), nan stays.
    assert holm_adjust([0.04, 0.01, float("nan"), 0.02]) == pytest.approx(
        [0.04, 0.03, float("nan"), 0.04], nan_ok=True)
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="confidence"):
        summarize(A, confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_diff_ci(A, B, resamples=0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_cdf(1.0, 0)
