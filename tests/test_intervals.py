"""Interval methods: hand formulas, limits, edge cases (the R comparisons are in test_reference_cases)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from satsample._validation import SatsampleError
from satsample.intervals import CI_METHODS, confidence_interval, t_quantile


def test_wilson_reduces_to_classical_wilson():
    p, n = 0.3, 50
    se = np.sqrt(p * (1 - p) / n)
    low, high = confidence_interval(p, se, 1e12, method="wilson")
    z = stats.norm.ppf(0.975)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert low == pytest.approx(centre - half, rel=1e-9)
    assert high == pytest.approx(centre + half, rel=1e-9)


def test_t_quantile_used_and_df_below_one():
    assert t_quantile(0.95, 10) == pytest.approx(stats.t.ppf(0.975, 10))
    low, high = confidence_interval(0.5, 0.1, 0, method="mean")
    assert np.isnan(low) and np.isnan(high)


@pytest.mark.parametrize("method", CI_METHODS)
def test_vectorised_and_ordered(method):
    p = np.array([0.1, 0.5, 0.93])
    se = np.array([0.02, 0.05, 0.01])
    df = np.array([30, 100, 12])
    low, high = confidence_interval(p, se, df, method=method, n_design=np.array([60, 120, 20]),
                                    n_obs=np.array([60, 120, 20]))
    assert low.shape == (3,)
    assert np.all(low < p) and np.all(p < high)
    if method != "mean":
        assert np.all(low >= 0) and np.all(high <= 1)
    for i in range(3):
        lo1, hi1 = confidence_interval(p[i], se[i], df[i], method=method, n_design=[60, 120, 20][i],
                                       n_obs=[60, 120, 20][i])
        assert lo1 == pytest.approx(low[i], rel=1e-12) and hi1 == pytest.approx(high[i], rel=1e-12)


def test_zero_se_and_boundary_shares():
    for method in ("mean", "logit", "xlogit", "asin", "likelihood"):
        low, high = confidence_interval(1.0, 0.0, 20, method=method)
        assert (low, high) == (1.0, 1.0)
    low, high = confidence_interval(1.0, 0.0, 20, method="beta", n_design=25)
    assert high == 1.0 and low == pytest.approx(stats.beta.ppf(0.025, 25, 1))
    low, high = confidence_interval(0.0, 0.0, 20, method="wilson", n_design=25)
    assert low == 0.0 and 0 < high < 0.2


def test_errors():
    with pytest.raises(SatsampleError, match="ci_method='bogus'"):
        confidence_interval(0.5, 0.1, 10, method="bogus")  # type: ignore[arg-type]
    with pytest.raises(SatsampleError, match="n_design"):
        confidence_interval(0.5, 0.1, 10, method="beta")
    with pytest.raises(SatsampleError, match="outside"):
        confidence_interval(1.5, 0.1, 10, method="logit")
    with pytest.raises(SatsampleError, match="level"):
        confidence_interval(0.5, 0.1, 10, level=0)


def test_likelihood_is_between_wald_variants_and_asymmetric():
    low, high = confidence_interval(0.9, 0.03, 50, method="likelihood", n_obs=100)
    assert (0.9 - low) > (high - 0.9)  # skewed towards 0.5
