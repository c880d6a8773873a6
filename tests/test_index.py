"""Satisfaction index: hand checks, constant answers, measures, replicates, interval coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satsample._validation import SatsampleError
from satsample.design import survey_design
from satsample.estimation import mean, satisfaction_index
from satsample.questionnaire import Element, Questionnaire
from satsample.replicate import jackknife

Q = Questionnaire(
    name="toy",
    elements=(Element(code="A", label="a", items=("i1", "i2", "i3")),
              Element(code="B", label="b", items=("i4", "i5"))),
)


def _answers(seed: int, n: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "h": np.repeat(["s1", "s2", "s3", "s4"], n // 4),
        "N": np.repeat([300, 160, 200, 140], n // 4),
        "g": rng.choice(["x", "y"], n),
    })
    for item in Q.items:
        codes = rng.choice([1, 2, 3, 4, 5, 9, np.nan], n, p=[.1, .1, .15, .3, .25, .05, .05])
        df[item] = codes
    return df


def test_index_equals_hand_aggregation_and_item_means():
    df = _answers(0)
    d = survey_design(df, strata="h", fpc="N")
    res = satisfaction_index(d, Q, by="g")
    w = d.weights
    for lev in ("x", "y"):
        m = (df["g"] == lev).to_numpy()
        p = []
        for item in Q.items:
            usable = df[item].isin([1, 2, 3, 4, 5]).to_numpy() & m
            p.append((w * df[item].isin([4, 5]))[usable].sum() / w[usable].sum())
        e_a, e_b = np.mean(p[:3]), np.mean(p[3:])
        ov = res.overall.set_index("g").loc[lev]
        assert ov["estimate"] == pytest.approx((e_a + e_b) / 2, rel=1e-13)
        el = res.elements[res.elements["g"] == lev].set_index("element")
        assert el.loc["A", "estimate"] == pytest.approx(e_a, rel=1e-13)
    # item SEs equal the per-item domain mean SEs (s_k with NaN for unusable)
    s = df.assign(**{f"s_{i}": np.where(df[i].isin([1, 2, 3, 4, 5]), df[i].isin([4, 5]).astype(float), np.nan)
                     for i in Q.items})
    ds = survey_design(s, strata="h", fpc="N")
    est = mean(ds, [f"s_{i}" for i in Q.items], by="g", na="drop").table
    items = res.items.sort_values(["g", "item"]).reset_index(drop=True)
    np.testing.assert_allclose(items["se"], est.sort_values(["g", "variable"])["se"], rtol=1e-12)
    np.testing.assert_array_equal(items["n"], est.sort_values(["g", "variable"])["n"])
    assert set(res.items.columns) >= {"g", "element", "item", "estimate", "se", "ci_low", "ci_high",
                                      "df", "deff", "n"}
    assert res.to_frame("element").shape[0] == 4 and res.to_frame().shape[0] == 2


def test_delta_method_equals_linear_combination_for_one_item_per_element():
    """With one criterion per element, I is the mean of two ratios: the SE follows by hand."""
    q2 = Questionnaire(name="two", elements=(Element(code="A", label="a", items=("i1",)),
                                              Element(code="B", label="b", items=("i4",))))
    df = _answers(1)
    d = survey_design(df, strata="h", fpc="N")
    res = satisfaction_index(d, q2)
    from satsample.variance.taylor import taylor_variance

    w = d.weights
    z = np.zeros(len(df))
    for item in ("i1", "i4"):
        dk = df[item].isin([1, 2, 3, 4, 5]).to_numpy().astype(float)
        yk = df[item].isin([4, 5]).to_numpy().astype(float)
        p = (w * yk).sum() / (w * dk).sum()
        z += 0.5 * (yk - p * dk) / (w * dk).sum()
    assert res.overall["se"].iloc[0] == pytest.approx(np.sqrt(taylor_variance(d, w * z)[0]), rel=1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([1, 2, 3, 4, 5]), st.integers(0, 1000))
def test_constant_answer_gives_zero_or_one_with_zero_se(code, seed):
    df = _answers(seed)
    for item in Q.items:
        df[item] = np.where(df[item].isin([9]) | df[item].isna(), df[item], code)
    d = survey_design(df, strata="h", fpc="N")
    expected = 1.0 if code >= 4 else 0.0
    for design in (d, jackknife(d)):
        res = satisfaction_index(design, Q, by="g")
        for table in (res.overall, res.elements, res.items.dropna(subset=["estimate"])):
            np.testing.assert_array_equal(table["estimate"], expected)
            np.testing.assert_allclose(table["se"], 0.0, atol=1e-15)
    res = satisfaction_index(d, Q, ci_method="wilson")
    lo, hi = res.overall[["ci_low", "ci_high"]].iloc[0]
    assert (hi == 1.0 and lo < 1.0) if expected == 1.0 else (lo == 0.0 and hi > 0.0)


def test_measures_mean_score_and_top_two_box():
    df = _answers(2)
    d = survey_design(df, strata="h", fpc="N")
    ms = satisfaction_index(d, Q, measure="mean_score")
    w = d.weights
    usable = df["i1"].isin([1, 2, 3, 4, 5]).to_numpy()
    assert ms.items["estimate"].iloc[0] == pytest.approx((w * df["i1"].fillna(0))[usable].sum() / w[usable].sum())
    top = satisfaction_index(d, Q, measure="top_two_box")
    sat = satisfaction_index(d, Q)
    np.testing.assert_allclose(top.overall["estimate"], sat.overall["estimate"])  # codes 4, 5 both
    with pytest.raises(SatsampleError, match="mean_score"):
        satisfaction_index(d, Q, measure="mean_score", ci_method="logit")
    assert ms.options["measure"] == "mean_score"


def test_criterion_without_answer_is_left_out():
    df = _answers(3)
    df.loc[df["g"] == "x", "i5"] = 9
    d = survey_design(df, strata="h", fpc="N")
    res = satisfaction_index(d, Q, by="g")
    it = res.items.set_index(["g", "item"])
    assert np.isnan(it.loc[("x", "i5"), "estimate"]) and it.loc[("x", "i5"), "n"] == 0
    el = res.elements.set_index(["g", "element"])
    assert el.loc[("x", "B"), "estimate"] == pytest.approx(it.loc[("x", "i4"), "estimate"])
    assert np.isfinite(el.loc[("x", "B"), "se"])


def test_bad_answer_code_names_column():
    df = _answers(4)
    df.loc[[1, 2], "i3"] = 7
    d = survey_design(df, strata="h", fpc="N")
    with pytest.raises(SatsampleError, match=r"'i3': 2 row\(s\) with invalid code\(s\) 7"):
        satisfaction_index(d, Q)


def test_replicate_index_close_to_taylor():
    df = _answers(5, n=200)
    d = survey_design(df, strata="h", fpc="N")
    t = satisfaction_index(d, Q, by="g")
    r = satisfaction_index(jackknife(d), Q, by="g")
    np.testing.assert_allclose(r.overall["estimate"], t.overall["estimate"], rtol=1e-14)
    np.testing.assert_allclose(r.overall["se"], t.overall["se"], rtol=0.05)
    assert r.replicate_estimates["items"].shape == (200, 2, 5)
    assert r.summary(table="item").as_text().startswith("Satisfaction index (item)")


@pytest.mark.slow
def test_interval_coverage_on_synthetic_population():
    """95 % intervals of agency indices cover the true values 92-98 % of the time."""
    from satsample.datasets import make_population

    pop = make_population(n_users=12_000, n_agencies=10, rng=11)
    frame = pop.frame.reset_index(drop=True)
    codes = pop.codes.astype(np.float64)
    codes[codes == 0] = np.nan  # blank
    truth = pop.truth.agencies["index"]
    rng = np.random.default_rng(2024)
    agency = frame["agency_id"].to_numpy()
    groups = {a: np.flatnonzero(agency == a) for a in truth.index}
    n_h = {a: min(40, len(idx) - 1) for a, idx in groups.items()}
    hits = []
    for _ in range(150):
        rows = np.concatenate([rng.choice(idx, n_h[a], replace=False) for a, idx in groups.items()])
        sample = frame.iloc[rows][["agency_id"]].copy()
        sample["N_h"] = sample["agency_id"].map(pop.truth.agencies["N_h"])
        for k, item in enumerate(pop.questionnaire.items):
            sample[item] = codes[rows, k]
        d = survey_design(sample, strata="agency_id", fpc="N_h")
        res = satisfaction_index(d, pop.questionnaire, by="agency_id").overall
        tv = truth.loc[res["agency_id"]].to_numpy()
        hits.append((res["ci_low"].to_numpy() <= tv) & (tv <= res["ci_high"].to_numpy()))
    coverage = np.mean(np.concatenate(hits))
    assert 0.92 <= coverage <= 0.98, coverage
