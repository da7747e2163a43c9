"""The gate's statistics, deterministically."""

import numpy as np
import pytest

from convcore.bench.stats import (
    Verdict,
    bootstrap_ci,
    judge,
    median_of_minima,
    nested_ratio_ci,
    paired_ratios,
)


def test_paired_ratios_divide_round_by_round():
    np.testing.assert_allclose(paired_ratios([1.0, 2.0, 4.0], [1.5, 2.0, 2.0]), [1.5, 1.0, 0.5])


def test_median_of_paired_ratios_cancels_a_drift_shared_by_both_sides():
    # the machine slows down over the rounds; new is 25% slower in every round
    drift = np.linspace(1.0, 3.0, 11)
    ratios = paired_ratios(drift, 1.25 * drift)
    assert np.median(ratios) == pytest.approx(1.25)
    # the ratio of the medians would be the same here, but the paired ratios have no spread
    assert bootstrap_ci(ratios) == pytest.approx((1.25, 1.25))


@pytest.mark.parametrize(
    "old, new, match",
    [([1.0, 2.0], [1.0], "pair up"), ([], [], "non-empty"), ([1.0, 0.0], [1.0, 1.0], "positive")],
)
def test_paired_ratios_reject_bad_samples(old, new, match):
    with pytest.raises(ValueError, match=match):
        paired_ratios(old, new)


def test_bootstrap_ci_of_a_constant_is_that_constant():
    assert bootstrap_ci([1.1] * 7) == (pytest.approx(1.1), pytest.approx(1.1))


def test_bootstrap_ci_is_deterministic_and_brackets_the_median():
    samples = np.random.default_rng(3).lognormal(0.0, 0.1, size=25)
    lo, hi = bootstrap_ci(samples)
    assert (lo, hi) == bootstrap_ci(samples)
    assert lo < np.median(samples) < hi
    # the interval's ends are medians of resamples, so they lie within the data
    assert samples.min() <= lo and hi <= samples.max()


def test_bootstrap_ci_narrows_with_lower_level_and_more_samples():
    rng = np.random.default_rng(4)
    few, many = rng.normal(1.0, 0.05, 10), rng.normal(1.0, 0.05, 1000)
    lo95, hi95 = bootstrap_ci(few)
    lo50, hi50 = bootstrap_ci(few, level=0.5)
    assert lo95 <= lo50 < hi50 <= hi95
    lo_many, hi_many = bootstrap_ci(many)
    assert hi_many - lo_many < (hi95 - lo95) / 3


def test_bootstrap_ci_detects_a_shift_beyond_its_noise():
    ratios = 1.25 * np.random.default_rng(5).lognormal(0.0, 0.03, size=15)
    lo, hi = bootstrap_ci(ratios)
    assert 1.15 < lo < 1.25 < hi < 1.35


def test_bootstrap_ci_rejects_a_bad_level():
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_median_of_minima_ignores_one_odd_process():
    # three processes; the second is persistently 30% faster than the other two
    groups = [[1.0, 1.2, 1.1], [0.7, 0.8, 0.75], [1.05, 1.0, 1.3]]
    assert median_of_minima(groups) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one group"):
        median_of_minima([])


def test_nested_ratio_ci():
    same = [[2.0] * 5, [2.0] * 5, [2.0] * 5]
    assert nested_ratio_ci(same, [[2.5] * 4] * 3) == (pytest.approx(1.25), pytest.approx(1.25))
    rng = np.random.default_rng(6)
    old = [rng.normal(1.0, 0.02, 5) for _ in range(3)]
    new = [rng.normal(1.3, 0.02, 5) for _ in range(3)]
    lo, hi = nested_ratio_ci(old, new)
    assert lo <= median_of_minima(new) / median_of_minima(old) <= hi
    assert 1.2 < lo and hi < 1.4
    assert (lo, hi) == nested_ratio_ci(old, new)


@pytest.mark.parametrize(
    "ratio, ci, slower",
    [
        (1.25, (1.2, 1.3), True),  # beyond the threshold and distinguishable from 1
        (1.05, (1.02, 1.08), False),  # real but within the threshold
        (1.25, (0.9, 1.6), False),  # too noisy to tell
        (0.8, (0.75, 0.85), False),  # faster
    ],
)
def test_judge(ratio, ci, slower):
    assert judge(ratio, ci, threshold=0.1) is slower


def test_judge_rejects_a_negative_threshold():
    with pytest.raises(ValueError, match="threshold"):
        judge(1.0, (1.0, 1.0), -0.1)


def test_verdict_change():
    assert Verdict("c", 1.0, 1.25, 1.25, (1.2, 1.3), True).change == pytest.approx(0.25)
