"""Properties, hand calculations and bad input of the weighting steps (small synthetic data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from satsample._validation import ConvergenceError, ConvergenceWarning, SatsampleError
from satsample.design import survey_design
from satsample.variance.taylor import taylor_variance
from satsample.weighting import (
    GregResidualizer,
    PostStratResidualizer,
    RakeResidualizer,
    adjust_nonresponse,
    calibrate,
    calibration_check,
    make_distance,
    margins_from_table,
    model_matrix,
    poststratify,
    rake,
    totals_vector,
    trim,
    weight_summary,
)
from satsample.weighting.calibrate import LINEAR


def make_data(n=120, seed=3):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "stratum": np.repeat(["A", "B", "C"], n // 3),
        "sex": rng.choice(["F", "M"], n),
        "age": rng.choice(["young", "mid", "old"], n, p=[0.3, 0.4, 0.3]),
        "region": rng.choice(["north", "south"], n),
        "y": rng.normal(10, 3, n),
    })
    df["w"] = np.where(df["stratum"] == "A", 5.0, np.where(df["stratum"] == "B", 8.0, 12.0))
    df["w"] *= rng.uniform(0.8, 1.2, n)
    df["resp"] = rng.random(n) < 0.75
    return df


MARGINS = pd.DataFrame({
    "variable": ["sex", "sex", "age", "age", "age", "region", "region"],
    "level": ["F", "M", "mid", "old", "young", "north", "south"],
    "Freq": [520.0, 480.0, 380.0, 320.0, 300.0, 450.0, 550.0],
})


@pytest.fixture
def df():
    return make_data()


@pytest.fixture
def design(df):
    return survey_design(df, strata="stratum", weights="w")


def mean_se(des, y):
    w = des.weights
    m = (w @ y) / w.sum()
    z = (y - m) / w.sum()
    return m, float(np.sqrt(taylor_variance(des, w * z)[0]))


# ------------------------------------------------------------- properties
def test_rake_equals_raking_calibration_at_fixed_point(design):
    raked = rake(design, MARGINS, max_iter=500, epsilon=1e-13)
    cal = calibrate(design, MARGINS, distance="raking", epsilon=1e-12)
    assert np.max(np.abs(raked.weights / cal.weights - 1)) < 1e-10


def test_rake_on_one_margin_equals_poststratification(design):
    pop = pd.DataFrame({"age": ["mid", "old", "young"], "Freq": [380.0, 320.0, 300.0]})
    raked = rake(design, [("age", pop)])
    ps = poststratify(design, "age", pop)
    assert np.max(np.abs(raked.weights / ps.weights - 1)) < 1e-14
    assert raked.history[-1].n_iter == 2  # the second pass changes nothing
    # two-variable margins are post-stratification on the cross-classification
    cells = pd.DataFrame({"sex": ["F", "F", "M", "M"], "region": ["north", "south"] * 2,
                          "Freq": [240.0, 280.0, 210.0, 270.0]})
    r2 = rake(design, [(["sex", "region"], cells)])
    p2 = poststratify(design, ["sex", "region"], cells)
    assert np.max(np.abs(r2.weights / p2.weights - 1)) < 1e-14


@pytest.mark.parametrize("kw", [{}, {"distance": "raking"},
                                {"distance": "logit", "bounds": (0.3, 3.0)},
                                {"bounds": (0.5, 2.5)}])
def test_calibrated_weights_reproduce_controls(design, kw):
    cal = calibrate(design, MARGINS, epsilon=1e-12, **kw)
    chk = calibration_check(cal, MARGINS)
    assert np.max(np.abs(chk["difference"])) < 1e-8
    g = cal.weights / design.weights
    if "bounds" in kw:
        lo, hi = kw["bounds"]
        assert g.min() >= lo - 1e-12 and g.max() <= hi + 1e-12


@pytest.mark.parametrize("step", ["poststratify", "rake", "linear", "raking"])
def test_scaling_all_weights_changes_nothing(df, step):
    a = survey_design(df, strata="stratum", weights="w")
    df3 = df.assign(w=df["w"] * 7.5)
    b = survey_design(df3, strata="stratum", weights="w")
    y = df["y"].to_numpy()
    m_a, se_a = mean_se(a, y)
    m_b, se_b = mean_se(b, y)
    assert m_a == pytest.approx(m_b, rel=1e-13) and se_a == pytest.approx(se_b, rel=1e-12)

    def apply(d):
        if step == "poststratify":
            return poststratify(d, "age", pd.DataFrame({"age": ["mid", "old", "young"],
                                                        "Freq": [380.0, 320.0, 300.0]}))
        if step == "rake":
            return rake(d, MARGINS, max_iter=100, epsilon=1e-12)
        return calibrate(d, MARGINS, distance=step, epsilon=1e-12)

    ca, cb = apply(a), apply(b)
    assert np.max(np.abs(ca.weights / cb.weights - 1)) < 1e-9
    m_a, se_a = mean_se(ca, y)
    m_b, se_b = mean_se(cb, y)
    assert m_a == pytest.approx(m_b, rel=1e-10) and se_a == pytest.approx(se_b, rel=1e-8)


def test_inputs_are_not_modified(df, design):
    before_df = df.copy()
    w0 = design.weights.copy()
    out = poststratify(design, "sex", pd.Series({"F": 520.0, "M": 480.0}))
    out = calibrate(out, MARGINS)
    out = trim(out, upper=2.0, relative=True)
    pd.testing.assert_frame_equal(df, before_df)
    np.testing.assert_array_equal(design.weights, w0)
    assert len(design.history) == 1 and design.calibrations == ()
    assert [s.method for s in out.history] == ["design", "poststratify", "calibrate", "trim"]
    assert len(out.calibrations) == 2
    tab = weight_summary(out)
    assert tab.shape[0] == 4 and tab["weight_sum"].iloc[-1] == pytest.approx(1000.0, rel=1e-12)


# ------------------------------------------------------------- residualizers vs formulas
def test_residualizers_match_their_formulas(df, design):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(design.n, 3))
    d = design.weights
    # GREG: w = d g, residual g d (z - X B), B from the d-weighted regression
    cal = calibrate(design, MARGINS)
    g = cal.weights / d
    x_mat = model_matrix(df, ["sex", "age", "region"]).matrix
    b = np.linalg.solve(x_mat.T @ (d[:, None] * x_mat), x_mat.T @ (d[:, None] * z))
    expected = (g * d)[:, None] * (z - x_mat @ b)
    res = cal.calibrations[-1]
    assert isinstance(res, GregResidualizer)
    np.testing.assert_allclose(res.residualize(cal.weights[:, None] * z), expected,
                               rtol=1e-10, atol=1e-12)
    # post-stratification: centre at the d-weighted cell mean, times the new weights
    ps = poststratify(design, "age", pd.DataFrame({"age": ["mid", "old", "young"],
                                                   "Freq": [380.0, 320.0, 300.0]}))
    res = ps.calibrations[-1]
    assert isinstance(res, PostStratResidualizer)
    w = ps.weights
    exp = np.empty_like(z)
    for level in ["mid", "old", "young"]:
        m = (df["age"] == level).to_numpy()
        exp[m] = w[m, None] * (z[m] - (d[m] @ z[m]) / d[m].sum())
    np.testing.assert_allclose(res.residualize(w[:, None] * z), exp, rtol=1e-12, atol=1e-12)
    # raking: R's ten rounds of unweighted centring of x / w_m
    rk = rake(design, MARGINS)
    res = rk.calibrations[-1]
    assert isinstance(res, RakeResidualizer) and len(res.margins) == 3
    x = rk.weights[:, None] * z
    for _ in range(10):
        for codes, _, wm in res.margins:
            ratio = x / wm[:, None]
            means = pd.DataFrame(ratio).groupby(codes).transform("mean").to_numpy()
            x = x - wm[:, None] * means
    np.testing.assert_allclose(res.residualize(rk.weights[:, None] * z), x, rtol=1e-10,
                               atol=1e-12)


# ------------------------------------------------------------- trim
def test_trim_follows_r_trimweights():
    df = pd.DataFrame({"s": ["a"] * 6, "w": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0]})
    des = survey_design(df, weights="w")
    out = trim(des, upper=8.0)
    # 10 -> 8 and 20 -> 8 trim 14, shared equally by the four others (R's rule)
    np.testing.assert_allclose(out.weights, [4.5, 5.5, 6.5, 7.5, 8.0, 8.0])
    assert out.weights.sum() == pytest.approx(40.0)
    prop = trim(des, upper=8.0, redistribute="proportional")
    np.testing.assert_allclose(prop.weights[:4], np.array([1, 2, 3, 4]) * (1 + 14 / 10))
    strict = trim(des, upper=8.0, redistribute="proportional", strict=True)
    assert strict.weights.max() <= 8.0 + 1e-9
    assert strict.weights.sum() == pytest.approx(40.0)
    rel = trim(des, upper=1.2, relative=True)  # 1.2 x mean 6.667 = 8
    np.testing.assert_allclose(rel.weights, out.weights)
    assert dict(out.history[-1].params)["n_trimmed"] == 2
    with pytest.raises(SatsampleError, match="exclude the mean weight"):
        trim(des, upper=5.0)
    with pytest.raises(SatsampleError, match="lower=, upper="):
        trim(des)


# ------------------------------------------------------------- nonresponse
def test_weighting_class_adjustment_by_hand(df):
    des = survey_design(df, strata="stratum", weights="w")
    out = adjust_nonresponse(des, "resp", classes="region")
    w, r = df["w"].to_numpy(), df["resp"].to_numpy()
    for reg in ["north", "south"]:
        m = (df["region"] == reg).to_numpy()
        f = w[m].sum() / w[m & r].sum()
        np.testing.assert_allclose(out.weights[m & r], w[m & r] * f, rtol=1e-14)
    assert (out.weights[~r] == 0).all()
    assert out.weights.sum() == pytest.approx(w.sum(), rel=1e-13)
    p = dict(out.history[-1].params)
    assert p["n_nonrespondents"] == int((~r).sum())
    assert out.history[-1].n_rows == int(r.sum())


def test_propensity_classes(df):
    des = survey_design(df, strata="stratum", weights="w")
    out = adjust_nonresponse(des, "resp", method="propensity", covariates=["sex", "region"],
                             n_classes=3)
    assert out.weights.sum() == pytest.approx(des.weights.sum(), rel=1e-13)
    assert (out.weights[~df["resp"].to_numpy()] == 0).all()
    p = dict(out.history[-1].params)
    assert 1 <= p["n_classes"] <= 3
    assert all(0 < v < 1 for v in p["mean_propensity"])


def test_class_without_respondents_is_named(df):
    df = df.copy()
    df.loc[df["region"] == "north", "resp"] = False
    des = survey_design(df, strata="stratum", weights="w")
    with pytest.raises(SatsampleError, match="region='north'"):
        adjust_nonresponse(des, "resp", classes="region")


# ------------------------------------------------------------- bad input
def test_level_mismatches_are_named(design):
    no_old = MARGINS[MARGINS["level"] != "old"].copy()
    no_old.loc[no_old["level"] == "mid", "Freq"] = 700.0
    with pytest.raises(SatsampleError, match="'old'"):
        calibrate(design, no_old)
    extra = pd.concat([MARGINS, pd.DataFrame({"variable": ["age"], "level": ["baby"],
                                              "Freq": [5.0]})], ignore_index=True)
    extra.loc[extra["level"].isin(["F", "north"]), "Freq"] += 5.0
    with pytest.raises(SatsampleError, match=r"'baby'.*no row in the sample"):
        calibrate(design, extra)
    with pytest.raises(SatsampleError, match="absent from the population"):
        rake(design, no_old)
    with pytest.raises(SatsampleError, match=r"age_groupX"):
        totals_vector(pd.Series({"(Intercept)": 1.0, "age_groupX": 2.0}),
                      columns=["(Intercept)", "sexM"])


def test_bad_controls(design):
    neg = MARGINS.assign(Freq=MARGINS["Freq"].where(MARGINS["level"] != "M", -1.0))
    with pytest.raises(SatsampleError, match=r"sex='M'.*negative"):
        margins_from_table(neg)
    miss = MARGINS.assign(Freq=MARGINS["Freq"].where(MARGINS["level"] != "north", np.nan))
    with pytest.raises(SatsampleError, match=r"region='north'.*missing"):
        rake(design, miss)
    bad_total = MARGINS.assign(Freq=MARGINS["Freq"].where(MARGINS["level"] != "F", 600.0))
    with pytest.raises(SatsampleError, match="same population total"):
        rake(design, bad_total)
    with pytest.raises(SatsampleError, match="missing"):
        calibrate(design, pd.Series({"(Intercept)": 1000.0, "sexM": np.nan}), variables="sex")


def test_empty_poststratum(df):
    df = df[~((df["sex"] == "M") & (df["age"] == "old"))]
    des = survey_design(df, strata="stratum", weights="w")
    pop = pd.DataFrame({"sex": ["F", "F", "F", "M", "M", "M"],
                        "age": ["mid", "old", "young"] * 2,
                        "Freq": [190.0, 160.0, 150.0, 190.0, 160.0, 150.0]})
    with pytest.raises(SatsampleError, match=r"sex='M', age='old'.*partial=True"):
        poststratify(des, ["sex", "age"], pop)
    with pytest.warns(UserWarning, match="ignored"):
        out = poststratify(des, ["sex", "age"], pop, partial=True)
    assert out.weights.sum() == pytest.approx(1000.0 - 160.0)
    with pytest.raises(SatsampleError, match="appears more than once"):
        poststratify(des, ["sex", "age"], pd.concat([pop, pop.iloc[:1]]))


def test_rake_nonconvergence(design):
    with pytest.raises(ConvergenceError, match="did not converge in 2 passes"):
        rake(design, MARGINS, max_iter=2, epsilon=1e-12)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        out = rake(design, MARGINS, max_iter=2, epsilon=1e-12, on_nonconvergence="warn")
    assert out.history[-1].converged is False and out.history[-1].n_iter == 2


def test_distance_options(design):
    with pytest.raises(SatsampleError, match="finite bounds"):
        calibrate(design, MARGINS, distance="logit")
    with pytest.raises(SatsampleError, match="distance='chi2'"):
        calibrate(design, MARGINS, distance="chi2")
    with pytest.raises(SatsampleError, match="bounds"):
        calibrate(design, MARGINS, bounds=(1.5, 2.0))
    custom = make_distance(LINEAR.fm1, LINEAR.dfm1, "my linear")
    a = calibrate(design, MARGINS, distance=custom, epsilon=1e-12)
    b = calibrate(design, MARGINS)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-10)
    assert dict(a.history[-1].params)["distance"] == "my linear"


@pytest.mark.parametrize(("n_vars", "n_levels"), [(1, 4), (3, 5), (3, 50), (8, 300)])
def test_cell_codes_order_cells_as_sorted_text_tuples(n_vars, n_levels):
    """Cells are the sorted text tuples of the variables (the int64 mixed-radix path, dense
    ranks by bincount (few combinations) or by sorting (3 x 50: 125,000 combinations for 500
    rows), and the fallback for more combinations than an int64 holds give the same codes)."""
    from satsample.weighting.controls import cell_codes

    rng = np.random.default_rng(n_vars)
    df = pd.DataFrame({f"v{i}": rng.integers(0, n_levels, 500) for i in range(n_vars)})
    df["v0"] = pd.Categorical(df["v0"].astype(str))
    codes, cells = cell_codes(df, list(df.columns))
    texts = [df[c].astype(str).to_numpy(dtype=object) for c in df.columns]
    keys = [tuple(t[i] for t in texts) for i in range(len(df))]
    expected_cells = sorted(set(keys))
    assert cells == expected_cells
    assert [cells[c] for c in codes] == keys


def test_cell_codes_of_no_rows():
    from satsample.weighting.controls import cell_codes

    codes, cells = cell_codes(pd.DataFrame({"a": pd.Series([], dtype=str),
                                            "b": pd.Series([], dtype=str)}), ["a", "b"])
    assert codes.shape == (0,) and cells == []


def test_propensity_model_and_classes_by_hand(df):
    """Propensities equal an independent weighted logistic fit (statsmodels GLM with
    frequency-style variance weights, which gives the same score equations as sklearn's
    sample weights); the adjustment is the weighting-class adjustment within propensity
    quantile classes."""
    import statsmodels.api as sm

    from satsample.weighting import response_propensity

    des = survey_design(df, strata="stratum", weights="w")
    rho = response_propensity(des, "resp", covariates=["sex", "region"])
    x = pd.get_dummies(df[["sex", "region"]], drop_first=True, dtype=float)
    fit = sm.GLM(df["resp"].astype(float), sm.add_constant(x), family=sm.families.Binomial(),
                 var_weights=df["w"].to_numpy()).fit(tol=1e-12)
    np.testing.assert_allclose(rho, fit.fittedvalues.to_numpy(), rtol=1e-7)

    out = adjust_nonresponse(des, "resp", method="propensity", covariates=["sex", "region"],
                             n_classes=3)
    cls = pd.qcut(rho, q=3, labels=False, duplicates="drop")
    w, r = df["w"].to_numpy(), df["resp"].to_numpy(dtype=bool)
    expected = np.zeros_like(w)
    for c in np.unique(cls):
        m = cls == c
        expected[m & r] = w[m & r] * w[m].sum() / w[m & r].sum()
    np.testing.assert_allclose(out.weights, expected, rtol=1e-12)
