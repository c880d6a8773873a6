"""Small-area estimation: Fay-Herriot fits against R (case H), the MSE formulas against
independent dense-matrix twins and a Monte-Carlo check, smoothing, benchmarking, the
publication table, errors, and a simulation on the synthetic population."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import add_indicator_columns, assert_rel, load_case, load_data

import satsample as ss
from satsample._validation import SatsampleError, SatsampleWarning
from satsample.sae import (
    FayHerriotEstimate,
    battese_harter_fuller,
    fay_herriot,
    model_based_table,
    plot_residuals_qq,
    plot_shrinkage,
    plot_small_area,
    small_area_estimates,
    smooth_variances,
)
from satsample.sae import _fh_core as core

matplotlib.use("Agg")

TOL = 1e-8  # case H tolerance (relative; fits stopped at 1e-12)
MODELS = {"level": ["agency_level"], "prior_level": ["p_prior", "agency_level"]}
METHODS = {"REML": "reml", "ML": "ml", "PM": "fh"}


def _term(r_name: str) -> str:
    """R's coefficient names (agency_leveldistrict) in satsample's spelling."""
    if r_name.startswith("agency_level"):
        return f"agency_level[{r_name[len('agency_level'):]}]"
    return r_name


@pytest.fixture(scope="module")
def case_h():
    return load_case("H_fay_herriot")


@pytest.fixture(scope="module")
def direct_h(case_h):
    return pd.DataFrame(case_h["direct"])


# ---------------------------------------------------------------------------- case H
@pytest.mark.reference
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("r_method", list(METHODS))
def test_case_h_fits(case_h, direct_h, model, r_method):
    ref = case_h["results"][model]["fits"][r_method]
    fit = fay_herriot(direct_h, area="agency_id", covariates=MODELS[model],
                      method=METHODS[r_method], se="se", n="n_d")
    assert_rel(fit.sigma2_v, ref["sigma2_v"], rtol=TOL, what="sigma2_v")
    coef = fit.coefficients.set_index("term")
    names = [_term(k) for k in ref["beta"]]
    assert list(coef.index) == names
    assert_rel(coef.loc[names, "estimate"], list(ref["beta"].values()), rtol=TOL, what="beta")
    assert_rel(coef.loc[names, "se"], list(ref["beta_se"].values()), rtol=TOL, what="beta_se")
    areas = pd.DataFrame(ref["areas"])
    table = fit.to_frame()
    assert list(table["agency_id"]) == list(areas["agency_id"])
    assert_rel(table["direct"], areas["direct"], rtol=0)
    assert_rel(table["psi"], areas["psi"], rtol=0)
    assert_rel(table["gamma"], areas["gamma"], rtol=TOL, what="gamma")
    assert_rel(table["estimate"], areas["eblup"], rtol=TOL, what="eblup")
    if r_method == "REML":
        for g in ("g1", "g2", "g3", "mse"):
            assert_rel(table[g], areas[g], rtol=TOL, what=g)
        assert fit.mse_method == "prasad-rao"


@pytest.mark.reference
def test_case_h_boundary_and_adjusted_likelihood(direct_h):
    for method in ("reml", "ml", "fh"):
        fit = fay_herriot(direct_h, area="agency_id", covariates=MODELS["prior_level"],
                          method=method)
        assert fit.boundary and fit.sigma2_v == 0.0
        t = fit.to_frame()
        np.testing.assert_array_equal(t["estimate"], t["synthetic"])
        assert (t["gamma"] == 0).all()
        assert "boundary" in str(fit.summary())
    # not at the boundary in the other model
    assert not fay_herriot(direct_h, area="agency_id", covariates="agency_level").boundary
    for method in ("amrl", "ampl"):
        with pytest.warns(SatsampleWarning, match="bias correction"):
            fit = fay_herriot(direct_h, area="agency_id", covariates=MODELS["prior_level"],
                              method=method)
        assert fit.sigma2_v > 0 and not fit.boundary
        assert fit.mse_method == "prasad-rao (bias correction dropped)"
        assert (fit.to_frame()["gamma"] > 0).all()
        # the estimate maximises sigma2_v * L(sigma2_v): central difference of the log
        y, psi = direct_h["estimate"].to_numpy(), direct_h["psi"].to_numpy()
        x = np.column_stack([np.ones(len(y)), direct_h["p_prior"],
                             direct_h["agency_level"] == "district",
                             direct_h["agency_level"] == "province"]).astype(float)
        s2, h = fit.sigma2_v, fit.sigma2_v * 1e-4
        deriv = (core.loglik(y, x, psi, s2 + h, method)
                 - core.loglik(y, x, psi, s2 - h, method)) / (2 * h)
        assert abs(deriv) < 1e-4 * abs(core.loglik(y, x, psi, s2, method)) / s2


@pytest.mark.reference
def test_case_h_end_to_end_from_the_survey(case_h, direct_h):
    """Direct estimates by agency from the case A design, psi by the P(1-P)(1-f)/n rule."""
    design = ss.survey_design(add_indicator_columns(load_data("sample_strat")),
                              strata="agency_id", fpc="N_h")
    national = ss.mean(design, "s06", na="drop").table["estimate"].iloc[0]
    by_agency = ss.mean(design, "s06", by="agency_id", na="drop")
    agencies = load_data("agencies")
    fit = small_area_estimates(by_agency, agencies, area="agency_id", covariates="agency_level",
                               variances="proportion", overall=national, population_size="N_h",
                               variable="s06")
    t = fit.to_frame().set_index("agency_id").loc[direct_h["agency_id"]]
    assert_rel(t["direct"], direct_h["estimate"], rtol=1e-12)
    assert_rel(t["direct_se"], direct_h["se"], rtol=1e-10, atol=1e-12)
    assert_rel(t["psi"], direct_h["psi"], rtol=1e-12, what="psi")
    ref = pd.DataFrame(case_h["results"]["level"]["fits"]["REML"]["areas"])
    assert_rel(t["estimate"], ref["eblup"], rtol=TOL)
    assert_rel(t["mse"], ref["mse"], rtol=TOL)
    assert fit.sampling_variances["method"] == "proportion"
    assert "P (1 - P)" in str(fit.summary())
    # the same psi through the public smoother
    sm = smooth_variances(direct_h, method="proportion", overall=national, n="n_d",
                          population_size="N_h", area="agency_id")
    assert_rel(sm["psi"], direct_h["psi"], rtol=1e-12)


# ---------------------------------------------------------------------------- MSE twins
def _dense_twin(y, x, psi, s2, method):
    """MSE terms with explicit D x D matrices (Rao & Molina 2015, sec. 6.2), written apart."""
    d = x.shape[0]
    v = np.diag(s2 + psi)
    vi = np.linalg.inv(v)
    q = np.linalg.inv(x.T @ vi @ x)
    pm = vi - vi @ x @ q @ x.T @ vi
    b = np.diag(psi) @ vi  # B = Psi V^-1
    g1 = np.diag(s2 * np.eye(d) - s2**2 * vi)
    g2 = np.array([(b[i, i] * x[i]) @ q @ (b[i, i] * x[i]) for i in range(d)])
    if method == "fh":
        vbar = 2 * d / np.trace(vi) ** 2
        bias = 2 * (d * np.trace(vi @ vi) - np.trace(vi) ** 2) / np.trace(vi) ** 3
    else:
        vbar = 2 / np.trace(vi @ vi)
        bias = {"reml": 0.0, "ml": -np.trace(q @ x.T @ vi @ vi @ x) / np.trace(vi @ vi)}[method]
    g3 = np.diag(b) ** 2 * vbar / (s2 + psi)
    mse = g1 + g2 + 2 * g3 - np.diag(b) ** 2 * bias
    return {"g1": g1, "g2": g2, "g3": g3, "mse": mse, "P": pm}


@pytest.fixture(scope="module")
def toy():
    gen = np.random.default_rng(3)
    d = 25
    prior = gen.uniform(0.4, 0.9, d)
    level = np.array(["a", "b", "c"])[gen.integers(0, 3, d)]
    psi = gen.uniform(0.004, 0.02, d)
    theta = 0.1 + 0.8 * prior + (level == "b") * 0.05 + gen.normal(0, 0.1, d)
    y = theta + gen.normal(0, np.sqrt(psi))
    return pd.DataFrame({"area": [f"A{i:02d}" for i in range(d)], "estimate": y, "psi": psi,
                         "prior": prior, "level": level, "size": gen.integers(100, 900, d)})


@pytest.mark.parametrize("method", ["reml", "ml", "fh"])
def test_mse_matches_dense_twin(toy, method):
    fit = fay_herriot(toy, area="area", covariates=["prior", "level"], method=method)
    x = np.column_stack([np.ones(len(toy)), toy["prior"], toy["level"] == "b",
                         toy["level"] == "c"]).astype(float)
    twin = _dense_twin(toy["estimate"].to_numpy(), x, toy["psi"].to_numpy(), fit.sigma2_v, method)
    t = fit.to_frame()
    for g in ("g1", "g2", "g3", "mse"):
        assert_rel(t[g], twin[g], rtol=1e-10, what=g)


def test_estimating_equations_hold_at_the_estimate(toy):
    y, psi = toy["estimate"].to_numpy(), toy["psi"].to_numpy()
    x = np.column_stack([np.ones(len(y)), toy["prior"]])
    d, n_terms = x.shape
    fh = fay_herriot(toy, area="area", covariates="prior", method="fh").sigma2_v
    assert fh > 0
    m = core.moments(y, x, psi, fh)
    assert_rel(np.sum(m.resid**2 / (fh + psi)), d - n_terms, rtol=1e-10)  # moment equation
    for method in ("reml", "ml"):
        s2 = fay_herriot(toy, area="area", covariates="prior", method=method).sigma2_v
        h = s2 * 1e-5
        deriv = (core.loglik(y, x, psi, s2 + h, method)
                 - core.loglik(y, x, psi, s2 - h, method)) / (2 * h)
        assert abs(deriv) < 1e-5 * d / s2  # score ~ 0 (on the scale of the score's terms)


def test_out_of_sample_area_gets_the_synthetic_estimate(toy):
    data = toy.copy()
    data.loc[[3, 7], ["estimate", "psi"]] = np.nan
    fit = fay_herriot(data, area="area", covariates=["prior", "level"])
    t = fit.to_frame()
    out = t.loc[[3, 7]]
    assert not out["in_sample"].any() and out["gamma"].eq(0).all()
    coef = fit.coefficients.set_index("term")["estimate"]
    x_out = np.column_stack([np.ones(2), data.loc[[3, 7], "prior"],
                             data.loc[[3, 7], "level"] == "b",
                             data.loc[[3, 7], "level"] == "c"]).astype(float)
    assert_rel(out["estimate"], x_out @ coef.to_numpy(), rtol=1e-12)
    # REML: mse = sigma2_v + x'(X'V^-1X)^-1 x
    keep = data["estimate"].notna().to_numpy()
    x_in = np.column_stack([np.ones(keep.sum()), data.loc[keep, "prior"],
                            data.loc[keep, "level"] == "b",
                            data.loc[keep, "level"] == "c"]).astype(float)
    q = np.linalg.inv(x_in.T @ np.diag(1 / (fit.sigma2_v + data.loc[keep, "psi"])) @ x_in)
    expected = fit.sigma2_v + np.einsum("ij,jk,ik->i", x_out, q, x_out)
    assert_rel(out["mse"], expected, rtol=1e-10)
    assert np.isnan(out["residual"]).all() and np.isnan(out["direct"]).all()
    assert fit.n_sampled == len(toy) - 2 and fit.n_areas == len(toy)


def test_mse_is_second_order_unbiased_in_a_monte_carlo():
    """Under the model, mean estimated MSE ~ empirical MSE of the EBLUP (REML, ML, FH)."""
    gen = np.random.default_rng(2024)
    d, reps = 30, 300
    x = np.column_stack([np.ones(d), np.linspace(0, 1, d)])
    psi = np.linspace(0.5, 2.0, d)
    beta, s2 = np.array([1.0, 2.0]), 1.0
    results = {m: ([], []) for m in ("reml", "ml", "fh")}
    for _ in range(reps):
        theta = x @ beta + gen.normal(0, np.sqrt(s2), d)
        y = theta + gen.normal(0, np.sqrt(psi))
        data = pd.DataFrame({"a": np.arange(d), "estimate": y, "psi": psi, "x": x[:, 1]})
        for method, (emp, est) in results.items():
            t = fay_herriot(data, area="a", covariates="x", method=method).table
            emp.append((t["estimate"].to_numpy() - theta) ** 2)
            est.append(t["mse"].to_numpy())
    for method, (emp, est) in results.items():
        e, m = np.mean(emp), np.mean(est)
        se = np.std(np.mean(emp, axis=1)) / np.sqrt(reps)
        assert abs(m - e) < 3 * se + 0.02 * e, (method, m, e, se)


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_seeded_and_agrees_with_the_analytic_mse(direct_h):
    kw = dict(area="agency_id", covariates="agency_level", mse="bootstrap", n_replicates=300)
    a = fay_herriot(direct_h, rng=5, **kw)
    b = fay_herriot(direct_h, rng=5, **kw)
    c = fay_herriot(direct_h, rng=6, **kw)
    np.testing.assert_array_equal(a.table["mse"], b.table["mse"])
    assert not np.array_equal(a.table["mse"], c.table["mse"])
    assert a.mse_method == "bootstrap (Butar-Lahiri)" and a.options["n_replicates"] == 300
    ratio = a.table["mse"] / a.table["mse_analytic"]
    assert abs(ratio.mean() - 1) < 0.05
    gen = np.random.default_rng(1)
    assert fay_herriot(direct_h, rng=gen, **kw).table["mse"].gt(0).all()


# ---------------------------------------------------------------------------- smoothing
def test_gvf_recovers_an_exact_variance_function():
    n = np.array([10, 12, 15, 20, 25, 30, 40])
    t = pd.DataFrame({"estimate": 0.7, "se": np.sqrt(0.21 / n), "n": n})
    t.loc[2, "se"] = 0.0  # a share of 1: left out of the fit, smoothed like the others
    out = smooth_variances(t, method="gvf")
    assert_rel(out["psi"], 0.21 / n, rtol=1e-12)
    rec = out.attrs["psi_method"]
    assert rec["method"] == "gvf" and rec["n_areas_fitted"] == 6
    assert_rel([rec["b"], rec["smearing"]], [-1.0, 1.0], rtol=1e-12)
    # with the finite-population correction
    big_n = np.array([100, 50, 80, 200, 250, 90, 400])
    t2 = t.assign(N=big_n, se=np.sqrt(0.21 / n * (1 - n / big_n)))
    out2 = smooth_variances(t2, method="gvf", population_size="N")
    assert_rel(out2["psi"], 0.21 / n * (1 - n / big_n), rtol=1e-12)
    assert t.loc[2, "se"] == 0.0 and "psi" not in t.columns  # input not modified


def test_proportion_rule_and_direct_rule():
    t = pd.DataFrame({"a": ["X", "Y"], "estimate": [0.8, 1.0], "se": [0.09, 0.0], "n": [20, 10]})
    out = smooth_variances(t, method="proportion", overall=0.75, deff=1.5)
    assert_rel(out["psi"], 0.75 * 0.25 * 1.5 / np.array([20, 10]), rtol=1e-14)
    default = smooth_variances(t, method="proportion")
    p = (0.8 * 20 + 10) / 30
    assert_rel(default["psi"], p * (1 - p) / np.array([20, 10]), rtol=1e-14)
    with pytest.raises(SatsampleError, match=r"area.*Y.*gvf"):
        smooth_variances(t, method="direct", area="a")
    with pytest.raises(SatsampleError, match="P in"):
        smooth_variances(t, method="proportion", overall=1.0)
    with pytest.raises(SatsampleError, match="at least 3 areas"):
        smooth_variances(t, method="gvf")


# ---------------------------------------------------------------------------- benchmarking
@pytest.mark.parametrize("how", ["ratio", "difference"])
def test_benchmarking_meets_the_target(toy, how):
    fit = fay_herriot(toy, area="area", covariates="prior", benchmark=how,
                      benchmark_weights="size")
    w = toy["size"] / toy["size"].sum()
    t = fit.to_frame()
    target = float(np.sum(w * toy["estimate"]))
    assert_rel(np.sum(w * t["estimate"]), target, rtol=1e-12)
    assert fit.options["benchmark_target"] == pytest.approx(target, rel=1e-14)
    plain = fay_herriot(toy, area="area", covariates="prior").to_frame()
    assert_rel(t["estimate_unbenchmarked"], plain["estimate"], rtol=1e-14)
    if how == "difference":
        # Steorts & Ghosh (2013) g4 as an explicit double sum
        s2, psi = fit.sigma2_v, toy["psi"].to_numpy()
        x = np.column_stack([np.ones(len(toy)), toy["prior"]])
        bb = psi / (s2 + psi)
        q = np.linalg.inv(x.T @ (x / (s2 + psi)[:, None]))
        wv = w.to_numpy()
        g4 = np.sum(wv**2 * bb**2 * (s2 + psi)) - sum(
            wv[i] * wv[j] * bb[i] * bb[j] * x[i] @ q @ x[j]
            for i in range(len(wv)) for j in range(len(wv)))
        assert_rel(t["mse"] - plain["mse"], np.full(len(t), g4), rtol=1e-10)
        shift = t["estimate"] - plain["estimate"]
        assert_rel(shift, np.full(len(t), shift.iloc[0]), rtol=1e-12)
    else:
        assert_rel(t["estimate"] / plain["estimate"], np.full(len(t), t["estimate"].iloc[0]
                                                            / plain["estimate"].iloc[0]),
                   rtol=1e-12)
    assert "benchmarking" in fit.model
    given = fay_herriot(toy, area="area", covariates="prior", benchmark=how,
                        benchmark_weights="size", benchmark_target=0.7)
    assert_rel(np.sum(w * given.to_frame()["estimate"]), 0.7, rtol=1e-12)


# ---------------------------------------------------------------------------- result object
def test_result_is_frozen_and_tables_are_copies(toy):
    before = toy.copy()
    fit = fay_herriot(toy, area="area", covariates=["prior", "level"])
    pd.testing.assert_frame_equal(toy, before)
    assert isinstance(fit, FayHerriotEstimate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.sigma2_v = 1.0  # type: ignore[misc]
    frame = fit.to_frame()
    frame.loc[0, "estimate"] = -1
    assert fit.table.loc[0, "estimate"] != -1
    for col in ("area", "direct", "direct_se", "estimate", "rmse", "gamma", "method",
                "residual", "source", "ci_low", "ci_high"):
        assert col in frame.columns
    assert_rel(frame["rmse"] ** 2, frame["mse"], rtol=1e-14)
    assert (frame["source"] == "model-based").all()
    text = str(fit.summary())
    assert "REML" in text and "prasad-rao" in text and "beta prior" in text
    with pytest.raises(TypeError):
        fit.options["x"] = 1  # type: ignore[index]


def test_summary_html_escapes_area_labels(toy):
    data = toy.assign(area=["<b>bad</b>", *toy["area"][1:]])
    html = fay_herriot(data, area="area", covariates="prior")._repr_html_()
    assert "<b>bad</b>" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_column_and_area(toy):
    bad = toy.copy()
    bad.loc[4, "prior"] = np.nan
    with pytest.raises(SatsampleError, match=r"covariate 'prior' is missing for area\(s\) A04"):
        fay_herriot(bad, area="area", covariates="prior")
    bad = toy.copy()
    bad.loc[5, "psi"] = 0.0
    with pytest.raises(SatsampleError, match=r"'psi'.*A05"):
        fay_herriot(bad, area="area", covariates="prior")
    with pytest.raises(SatsampleError, match=r"collinear.*'prior2'"):
        fay_herriot(toy.assign(prior2=2 * toy["prior"]), area="area",
                    covariates=["prior", "prior2"])
    with pytest.raises(SatsampleError, match="only 2 sampled areas"):
        fay_herriot(toy.head(2), area="area", covariates="prior")
    with pytest.raises(SatsampleError, match=r"A01.*more than one row"):
        fay_herriot(pd.concat([toy, toy.iloc[[1]]]), area="area", covariates="prior")
    with pytest.raises(SatsampleError, match="not found"):
        fay_herriot(toy, area="area", covariates="nope")
    with pytest.raises(SatsampleError, match="method='bayes'"):
        fay_herriot(toy, area="area", covariates="prior", method="bayes")
    with pytest.raises(SatsampleError, match="n_replicates"):
        fay_herriot(toy, area="area", covariates="prior", mse="bootstrap", n_replicates=0)
    with pytest.raises(SatsampleError, match="benchmark_weights"):
        fay_herriot(toy, area="area", covariates="prior", benchmark="ratio")
    with pytest.raises(SatsampleError, match=r"estimate column 'estimate'.*non-numeric"):
        fay_herriot(toy.assign(estimate="high"), area="area", covariates="prior")
    with pytest.raises(SatsampleError, match="'psi' is boolean"):
        fay_herriot(toy.assign(psi=True), area="area", covariates="prior")
    mixed = toy.astype({"area": object})
    mixed.loc[0, "area"] = 7
    with pytest.raises(SatsampleError, match="area column 'area' mixes"):
        fay_herriot(mixed, area="area", covariates="prior")
    new_level = toy.copy()
    new_level.loc[0, ["estimate", "psi"]] = np.nan
    new_level.loc[0, "level"] = "z"
    with pytest.raises(SatsampleError, match=r"'level': area\(s\) A00 have level\(s\) z"):
        fay_herriot(new_level, area="area", covariates="level")


def test_review_odd_inputs_are_named_errors(toy):
    """Odd inputs found in review: each gives a SatsampleError naming the column and area."""
    bad = toy.copy()
    bad.loc[3, "prior"] = np.inf  # was scipy's "function value at x=0.0 is NaN"
    with pytest.raises(SatsampleError, match=r"covariate 'prior' is infinite for area\(s\) A03"):
        fay_herriot(bad, area="area", covariates="prior")
    # one sampled area: too few areas, not "collinear"
    with pytest.raises(SatsampleError, match="2 terms but only 1 sampled areas"):
        fay_herriot(toy.head(1), area="area", covariates="prior")
    # benchmark weights summing to 0 gave NaN estimates for every area, silently
    with pytest.raises(SatsampleError, match="'zero' sums to 0"):
        fay_herriot(toy.assign(zero=0.0), area="area", covariates="prior", benchmark="ratio",
                    benchmark_weights="zero")
    with pytest.raises(SatsampleError, match="tol='a' must be a positive number"):
        fay_herriot(toy, area="area", covariates="prior", tol="a")
    for bad_rng in (True, -1, 1.5):  # refused whether or not the bootstrap draws
        with pytest.raises(SatsampleError, match=r"rng=.*a seed|rng=.* must be None"):
            fay_herriot(toy, area="area", covariates="prior", rng=bad_rng)
    with pytest.raises(SatsampleError, match="deff='2' must be a positive number"):
        smooth_variances(toy.assign(se=0.1, n=20), method="proportion", overall=0.7, deff="2")


def test_small_area_estimates_never_drops_a_direct_estimate(toy):
    """An area with a direct estimate and a missing n was silently made synthetic-only."""
    est = toy[["area", "estimate"]].assign(se=np.sqrt(toy["psi"]), n=20.0)
    est.loc[4, "n"] = np.nan
    with pytest.raises(SatsampleError, match=r"area\(s\) A04 have a direct estimate but a "
                                             "missing 'n'"):
        small_area_estimates(est, toy[["area", "prior"]], area="area", covariates="prior",
                             variances="direct")
    est = est.assign(n=["20"] * len(est))  # numbers as text: read as numbers, not a TypeError
    fit = small_area_estimates(est, toy[["area", "prior"]], area="area", covariates="prior",
                               variances="direct")
    assert fit.n_sampled == len(toy)


def test_small_area_estimates_area_labels_mixing_kinds(toy):
    """1 and "1" in an area column: was pandas' MergeError (area_data) or 'no row for 1, 1'."""
    est = toy[["area", "estimate"]].assign(se=np.sqrt(toy["psi"]), n=20).astype({"area": object})
    cov = toy[["area", "prior"]].astype({"area": object})
    mixed = cov.copy()
    mixed.loc[0, "area"], mixed.loc[1, "area"] = 1, "1"
    with pytest.raises(SatsampleError, match=r"area_data area column 'area' mixes number and "
                                             r"text values \(1 and '1'\)"):
        small_area_estimates(est, mixed, area="area", covariates="prior", variances="direct")
    mixed = est.copy()
    mixed.loc[0, "area"], mixed.loc[1, "area"] = 1, "1"
    with pytest.raises(SatsampleError, match=r"estimates area column 'area' mixes number and "
                                             r"text values \(1 and '1'\)"):
        small_area_estimates(mixed, cov, area="area", covariates="prior", variances="direct")

def test_model_based_table_matches_area_labels_of_either_kind(toy):
    """Integer agency codes in the table, text in the fit: rows were duplicated, none replaced."""
    fit = fay_herriot(toy.assign(area=[str(i) for i in range(len(toy))]), area="area",
                      covariates="prior")
    direct = toy[["estimate"]].assign(area=range(len(toy)), se=np.sqrt(toy["psi"]),
                                      n=[12, 45] * 12 + [50])
    out = model_based_table(direct, fit)
    assert len(out) == len(toy)
    # an area of the fit without a row in the table is appended, as a number like the others
    with_new = fay_herriot(pd.concat([toy.assign(area=[str(i) for i in range(len(toy))]),
                                      pd.DataFrame({"area": ["99"], "prior": [0.6]})]),
                           area="area", covariates="prior")
    out = model_based_table(direct, with_new)
    assert out["area"].tolist() == [*range(len(toy)), 99] and out["area"].dtype == np.int64
    assert out["source"].iloc[-1] == "model-based" and out["n"].iloc[-1] == 0
    out = model_based_table(direct, fit)
    small = direct["n"].to_numpy() < 30
    assert (out["source"] == np.where(small, "model-based", "direct")).all()
    t = fit.to_frame()
    np.testing.assert_array_equal(out.loc[small, "estimate"], t.loc[small, "estimate"])
    np.testing.assert_array_equal(out.loc[small, "se"], t.loc[small, "rmse"])
    np.testing.assert_array_equal(out.loc[~small, "estimate"], direct.loc[~small, "estimate"])
    # labels that match nowhere are an error, not a table of appended rows
    with pytest.raises(SatsampleError, match=r"no area of the fit \(0, 1, 2, 3, 4 \(and 20 "
                                             r"more\)\) is in column 'area'"):
        model_based_table(direct.assign(area=[f"X{i}" for i in range(len(toy))]), fit)


def test_non_convergence_is_an_error(toy):
    with pytest.raises(ss.ConvergenceError, match=r"method='reml'.*1 iterations"):
        fay_herriot(toy, area="area", covariates="prior", max_iter=1)


def test_small_area_estimates_synthetic_for_areas_without_direct_estimate(toy):
    est = toy[["area", "estimate"]].assign(se=np.sqrt(toy["psi"]), n=20)
    est.loc[2, "n"] = 0  # an empty domain
    cov = pd.concat([toy[["area", "prior"]],
                     pd.DataFrame({"area": ["NEW"], "prior": [0.6]})], ignore_index=True)
    before = (est.copy(), cov.copy())
    fit = small_area_estimates(est.drop(index=5), cov, area="area", covariates="prior",
                               variances="direct")
    pd.testing.assert_frame_equal(est, before[0])
    pd.testing.assert_frame_equal(cov, before[1])
    t = fit.to_frame().set_index("area")
    assert list(t.index) == list(cov["area"])  # the rows of area_data, in order
    assert not t.loc[["A02", "A05", "NEW"], "in_sample"].any()
    assert_rel(t.loc[["A02", "A05", "NEW"], "estimate"], t.loc[["A02", "A05", "NEW"], "synthetic"])
    assert t["in_sample"].sum() == len(toy) - 2
    assert fit.sampling_variances["method"] == "direct"


def test_small_area_estimates_errors(toy):
    est = toy[["area", "estimate"]].assign(se=np.sqrt(toy["psi"]), n=20)
    cov = toy[["area", "prior"]]
    with pytest.raises(SatsampleError, match=r"no row \(no covariates\) for area\(s\) A03"):
        small_area_estimates(est, cov.drop(index=3), area="area", covariates="prior",
                             variances="direct")
    with pytest.raises(SatsampleError, match="variances='magic'"):
        small_area_estimates(est, cov, area="area", covariates="prior", variances="magic")
    with pytest.raises(SatsampleError, match="several rows"):
        small_area_estimates(pd.concat([est, est]), cov, area="area", covariates="prior",
                             variances="direct")


# ---------------------------------------------------------------------------- outputs
def test_model_based_table_and_publication_flags(toy):
    direct = toy[["area", "estimate"]].assign(se=np.sqrt(toy["psi"]), n=[12, 45] * 12 + [50],
                                              df=30)
    model_in = direct.assign(psi=direct["se"] ** 2, prior=toy["prior"])
    extra = pd.DataFrame({"area": ["NEW"], "estimate": [np.nan], "se": [np.nan], "n": [0],
                          "df": [np.nan], "psi": [np.nan], "prior": [0.7]})
    fit = fay_herriot(pd.concat([model_in, extra], ignore_index=True), area="area",
                      covariates="prior")
    flags = ss.publication_flags(direct, max_rse=None, min_effective_n=None)
    out = ss.publication_flags(direct, max_rse=None, min_effective_n=None, small_area=fit)
    replaced = (flags["status"] == "suppress").to_numpy()
    assert replaced.sum() == 12
    body = out.iloc[: len(direct)]
    assert (body.loc[replaced, "source"] == "model-based").all()
    assert (body.loc[~replaced, "source"] == "direct").all()
    assert (body.loc[replaced, "status"] == "model-based").all()
    m = fit.table.set_index("area")
    assert_rel(body.loc[replaced, "estimate"], m.loc[body.loc[replaced, "area"], "estimate"])
    assert_rel(body.loc[replaced, "se"], m.loc[body.loc[replaced, "area"], "rmse"])
    assert_rel(body.loc[replaced, "direct_estimate"], direct.loc[replaced, "estimate"])
    assert_rel(body.loc[~replaced, "estimate"], direct.loc[~replaced, "estimate"])
    assert (body.loc[replaced, "model"].str.startswith("Fay-Herriot")).all()
    assert (body.loc[~replaced, "model"] == "").all()
    last = out.iloc[-1]
    assert last["area"] == "NEW" and last["source"] == "model-based" and last["n"] == 0
    assert out.attrs["model"] == fit.model and "flag_options" in out.attrs
    # without status: the n rule
    plain = model_based_table(direct, fit, include_unsampled=False)
    assert len(plain) == len(direct) and (plain["source"] == "model-based").sum() == 12
    with pytest.raises(SatsampleError, match="status"):
        model_based_table(direct.drop(columns="n"), fit)


def test_figures_return_axes(toy):
    fit = fay_herriot(toy, area="area", covariates="prior")
    import matplotlib.pyplot as plt

    for fn in (plot_residuals_qq, plot_shrinkage, plot_small_area):
        ax = fn(fit)
        assert ax.__class__.__name__ == "Axes"
        plt.close(ax.figure)
    ax = plot_small_area(fit, areas=["A01", "A02"])
    assert any("model-based" in t.get_text() for t in ax.get_legend().get_texts())
    assert len(ax.get_yticks()) == 2
    plt.close(ax.figure)
    with pytest.raises(SatsampleError, match="not in the result: ZZ"):
        plot_small_area(fit, areas=["ZZ"])
    with pytest.raises(SatsampleError, match="FayHerriotEstimate"):
        plot_shrinkage(toy)


def test_exports():
    for name in ("fay_herriot", "small_area_estimates", "smooth_variances", "model_based_table",
                 "FayHerriotEstimate", "plot_shrinkage", "plot_residuals_qq", "plot_small_area"):
        assert getattr(ss, name) is getattr(ss.sae, name)


# ---------------------------------------------------------------------------- simulation
def _commune_draws(n_draws: int, seed: int, *, bootstrap_every: int = 0):
    """Repeated samples of 10-30 respondents in every commune of the synthetic province."""
    pop = ss.make_population()
    q = pop.questionnaire
    ag = pop.agencies
    com = ag[ag["level"] == "commune"].reset_index(drop=True)
    starts = dict(zip(ag["agency_id"], np.r_[0, np.cumsum(ag["N_h"].to_numpy())][:-1]))
    truth = pop.truth.agencies.loc[com["agency_id"], "index"].to_numpy()
    size = com["N_h"].to_numpy()
    gen = np.random.default_rng(seed)
    out = []
    for r in range(n_draws):
        nd = gen.integers(10, 31, size=len(com))
        rows = np.concatenate([starts[a] + gen.choice(big, k, replace=False)
                               for a, big, k in zip(com["agency_id"], size, nd)])
        data = pd.DataFrame({"agency_id": np.repeat(com["agency_id"].to_numpy(), nd),
                             "N_h": np.repeat(size, nd)})
        data = pd.concat([data, pop.answers(rows).reset_index(drop=True)], axis=1)
        design = ss.survey_design(data, strata="agency_id", fpc="N_h")
        est = ss.satisfaction_index(design, q, by="agency_id")
        boot = bootstrap_every and r % bootstrap_every == 0
        fit = small_area_estimates(
            est, com[["agency_id", "p_prior", "N_h"]], area="agency_id", covariates="p_prior",
            variances="gvf", population_size="N_h",
            **(dict(mse="bootstrap", n_replicates=200, rng=r) if boot else {}))
        t = fit.table.set_index("agency_id").loc[com["agency_id"]]
        out.append((t, bool(boot)))
    return truth, out


@pytest.mark.slow
def test_simulation_on_the_synthetic_province():
    """200 draws, 65 communes with 10-30 respondents: EBLUP beats direct, honest intervals,
    bootstrap MSE agrees with the analytic one."""
    truth, draws = _commune_draws(200, seed=20240611, bootstrap_every=20)
    est = np.array([t["estimate"].to_numpy() for t, _ in draws])
    mse = np.array([t["mse"].to_numpy() for t, _ in draws])
    direct = np.array([t["direct"].to_numpy() for t, _ in draws])
    direct_var = np.array([t["direct_se"].to_numpy() ** 2 for t, _ in draws])
    assert np.all(np.array([t["n"].to_numpy() for t, _ in draws]) >= 10)
    # average MSE of the EBLUP below the average direct variance (estimated and empirical)
    assert mse.mean() < 0.8 * direct_var.mean()
    assert np.mean((est - truth) ** 2) < 0.8 * np.mean((direct - truth) ** 2)
    # the estimated MSE is honest: close to the empirical MSE
    assert abs(mse.mean() / np.mean((est - truth) ** 2) - 1) < 0.15
    # 95 % intervals from the MSE cover 90-98 %
    z = 1.959963984540054
    coverage = np.mean(np.abs(est - truth) <= z * np.sqrt(mse))
    assert 0.90 <= coverage <= 0.98, coverage
    # parametric bootstrap (Butar-Lahiri) vs analytic, within Monte-Carlo error
    ratios = np.array([t["mse"].mean() / t["mse_analytic"].mean() for t, b in draws if b])
    assert ratios.size == 10
    mc_se = ratios.std(ddof=1) / np.sqrt(ratios.size)
    assert abs(ratios.mean() - 1) < 3 * mc_se + 0.01, (ratios.mean(), mc_se)


# ---------------------------------------------------------------------------- unit level (BHF)
def _nested_data(seed: int, d: int = 12, s2v: float = 0.25, s2e: float = 1.0):
    gen = np.random.default_rng(seed)
    nd = gen.integers(4, 20, d)
    names = [f"A{i:02d}" for i in range(d)]
    area = np.repeat(names, nd)
    online = gen.integers(0, 2, area.size).astype(float)
    age = gen.normal(0, 1, area.size)
    v = gen.normal(0, np.sqrt(s2v), d)
    y = 3.5 + 0.4 * online + 0.2 * age + np.repeat(v, nd) + gen.normal(0, np.sqrt(s2e), area.size)
    sample = pd.DataFrame({"area": area, "y": y, "online": online, "age": age})
    pop = pd.DataFrame({"area": [*names, "OUT"], "N": [*(nd * 10), 150],
                        "online": gen.uniform(0.3, 0.6, d + 1), "age": gen.normal(0, 0.2, d + 1)})
    return sample, pop


def _dense_reml(theta, y, x, groups):
    s2v, s2e = theta
    a = 0
    b = 0
    parts = []
    for gval in np.unique(groups):
        m = groups == gval
        v = s2e * np.eye(m.sum()) + s2v
        vi = np.linalg.inv(v)
        a = a + x[m].T @ vi @ x[m]
        b = b + x[m].T @ vi @ y[m]
        parts.append((m, vi, np.linalg.slogdet(v)[1]))
    beta = np.linalg.solve(a, b)
    value = np.linalg.slogdet(a)[1]
    for m, vi, logdet in parts:
        r = y[m] - x[m] @ beta
        value += logdet + r @ vi @ r
    return 0.5 * value


def _dense_bhf_twin(sample, pop, s2v, s2e):
    """EBLUP and Prasad-Rao MSE of the finite-population means as a general linear mixed model
    with explicit n x n matrices; g3 from numerical derivatives of b' = m'GZ'V^-1."""
    y = sample["y"].to_numpy()
    x = np.column_stack([np.ones(len(sample)), sample[["online", "age"]].to_numpy()])
    names = list(pop["area"][:-1])
    z = (sample["area"].to_numpy()[:, None] == np.array(names)[None, :]).astype(float)

    def parts(sv, se):
        v = se * np.eye(len(y)) + sv * z @ z.T
        vi = np.linalg.inv(v)
        return v, vi, np.linalg.inv(x.T @ vi @ x)

    v, vi, q = parts(s2v, s2e)
    beta = q @ x.T @ vi @ y
    info = 0.5 * np.array([[np.trace(vi @ vr @ vi @ vs) for vs in (z @ z.T, np.eye(len(y)))]
                           for vr in (z @ z.T, np.eye(len(y)))])
    vbar = np.linalg.inv(info)
    est, mse = [], []
    for k, name in enumerate(names):
        m = np.zeros(len(names))
        m[k] = 1
        rows = sample["area"].to_numpy() == name
        n, big_n = rows.sum(), pop.loc[k, "N"]
        xpop = np.r_[1.0, pop.loc[k, ["online", "age"]].to_numpy(float)]
        xr = (big_n * xpop - x[rows].sum(axis=0)) / (big_n - n)

        def bvec(sv, se, m=m):
            return (sv * m) @ z.T @ parts(sv, se)[1]

        b = bvec(s2v, s2e)
        f = n / big_n
        est.append(f * y[rows].mean() + (1 - f) * (xr @ beta + b @ (y - x @ beta)))
        g1 = s2v - (s2v * m) @ z.T @ vi @ z @ (s2v * m)
        dvec = xr - b @ x
        g2 = dvec @ q @ dvec
        h = 1e-6
        db = np.array([(bvec(s2v + h, s2e) - bvec(s2v - h, s2e)) / (2 * h),
                       (bvec(s2v, s2e + h) - bvec(s2v, s2e - h)) / (2 * h)])
        g3 = np.trace(db @ v @ db.T @ vbar)
        mse.append((1 - f) ** 2 * (g1 + g2 + 2 * g3 + s2e / (big_n - n)))
    return np.array(est), np.array(mse), beta, q


def test_bhf_variance_components_match_an_independent_reml_fit():
    from scipy import optimize

    from satsample.sae.unit_level import _neg_reml

    sample, pop = _nested_data(2)
    fit = battese_harter_fuller(sample, pop, y="y", area="area", covariates=["online", "age"],
                                population_size="N")
    y = sample["y"].to_numpy()
    x = np.column_stack([np.ones(len(y)), sample[["online", "age"]].to_numpy()])
    groups = sample["area"].to_numpy()
    ref = optimize.minimize(lambda t: _dense_reml(np.exp(t), y, x, groups), np.log([0.2, 1.0]),
                            method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 4000})
    assert_rel([fit.sigma2_v, fit.sigma2_e], np.exp(ref.x), rtol=1e-5)
    assert not fit.boundary
    # the closed-form REML objective equals the dense one
    codes, uniq = pd.factorize(groups)
    nd = np.bincount(codes).astype(float)
    xbar = np.array([x[codes == k].mean(axis=0) for k in range(len(uniq))])
    ybar = np.array([y[codes == k].mean() for k in range(len(uniq))])
    for theta in ([0.3, 0.9], [0.0, 1.2]):
        assert_rel(_neg_reml(np.array(theta), nd, xbar, ybar, x.T @ x, x.T @ y, float(y @ y)),
                   _dense_reml(theta, y, x, groups), rtol=1e-12)


def test_bhf_eblup_and_mse_match_a_dense_mixed_model_twin():
    sample, pop = _nested_data(1, d=8)
    fit = battese_harter_fuller(sample, pop, y="y", area="area", covariates=["online", "age"],
                                population_size="N")
    est, mse, beta, q = _dense_bhf_twin(sample, pop, fit.sigma2_v, fit.sigma2_e)
    t = fit.to_frame()
    assert_rel(fit.coefficients["estimate"], beta, rtol=1e-10)
    assert_rel(t["estimate"][:-1], est, rtol=1e-10)
    assert_rel(t["mse"][:-1], mse, rtol=1e-6)  # g3 from numerical derivatives
    out = t.iloc[-1]
    assert not out["in_sample"] and out["n"] == 0
    assert out["estimate"] == pytest.approx(out["synthetic"], rel=1e-14)
    xo = np.r_[1.0, pop.iloc[-1][["online", "age"]].to_numpy(float)]
    assert out["estimate"] == pytest.approx(xo @ beta, rel=1e-10)
    assert out["mse"] == pytest.approx(fit.sigma2_v + xo @ q @ xo + fit.sigma2_e / 150, rel=1e-10)
    assert_rel(fit.coefficients["se"], np.sqrt(np.diag(q)), rtol=1e-10)


def test_bhf_inputs_errors_and_labels():
    sample, pop = _nested_data(3)
    sample.loc[[0, 5], "y"] = np.nan
    before = sample.copy()
    fit = battese_harter_fuller(sample, pop, y="y", area="area", covariates=["online", "age"],
                                population_size="N")
    pd.testing.assert_frame_equal(sample, before)
    assert fit.options["excluded_missing_y"] == 2
    assert "2 without a usable value" in str(fit.summary())
    assert fit.model.startswith("Battese-Harter-Fuller")
    table = model_based_table(fit.to_frame().assign(se=lambda t: t["direct_se"],
                                                    estimate=lambda t: t["direct"]),
                              fit, min_n=10)
    assert set(table["source"]) == {"direct", "model-based"}
    with pytest.raises(SatsampleError, match=r"population has no row for area.*A00"):
        battese_harter_fuller(sample, pop.iloc[1:], y="y", area="area", covariates="online",
                              population_size="N")
    with pytest.raises(SatsampleError, match="'online' must be numeric"):
        battese_harter_fuller(sample.assign(online="yes"), pop, y="y", area="area",
                              covariates="online", population_size="N")
    small = pop.assign(N=2)
    with pytest.raises(SatsampleError, match="below the number of respondents"):
        battese_harter_fuller(sample, small, y="y", area="area", covariates="online",
                              population_size="N")
    with pytest.raises(SatsampleError, match=r"collinear.*'twice'"):
        battese_harter_fuller(sample.assign(twice=2 * sample["online"]),
                              pop.assign(twice=2 * pop["online"]), y="y", area="area",
                              covariates=["online", "twice"], population_size="N")



def test_bhf_infinite_covariate_is_named():
    """An infinite covariate: was 'collinear' (sample) or an infinite estimate (population)."""
    sample, pop = _nested_data(3)
    bad = sample.copy()
    bad.loc[0, "online"] = np.inf
    with pytest.raises(SatsampleError, match=r"sample covariate 'online' is infinite for "
                                             rf"area\(s\) {sample.loc[0, 'area']}$"):
        battese_harter_fuller(bad, pop, y="y", area="area", covariates="online",
                              population_size="N")
    bad = pop.copy()
    bad.loc[2, "online"] = -np.inf
    with pytest.raises(SatsampleError, match=r"population covariate 'online' is infinite for "
                                             rf"area\(s\) {pop.loc[2, 'area']}$"):
        battese_harter_fuller(sample, bad, y="y", area="area", covariates="online",
                              population_size="N")

@pytest.mark.slow
def test_bhf_mse_is_honest_in_a_monte_carlo():
    """Finite populations generated from the model: mean MSE ~ empirical MSE, coverage ~95 %."""
    gen = np.random.default_rng(7)
    d, reps = 15, 60
    big_n = np.full(d, 120)
    pop_x = [gen.normal(0, 1, n) for n in big_n]
    names = [f"A{i:02d}" for i in range(d)]
    means = pd.DataFrame({"area": names, "N": big_n, "x1": [px.mean() for px in pop_x]})
    emp, est_mse, cover = [], [], []
    for _ in range(reps):
        v = gen.normal(0, 0.5, d)
        pop_y = [1 + 0.5 * px + v[k] + gen.normal(0, 1, px.size) for k, px in enumerate(pop_x)]
        rows = []
        for k in range(d):
            idx = gen.choice(big_n[k], gen.integers(3, 15), replace=False)
            rows.append(pd.DataFrame({"area": names[k], "y": pop_y[k][idx], "x1": pop_x[k][idx]}))
        fit = battese_harter_fuller(pd.concat(rows, ignore_index=True), means, y="y",
                                    area="area", covariates="x1", population_size="N")
        truth = np.array([py.mean() for py in pop_y])
        t = fit.table
        emp.append((t["estimate"].to_numpy() - truth) ** 2)
        est_mse.append(t["mse"].to_numpy())
        cover.append((t["ci_low"] <= truth) & (truth <= t["ci_high"]))
    e, m = np.mean(emp), np.mean(est_mse)
    se = np.std(np.mean(emp, axis=1)) / np.sqrt(reps)
    assert abs(m - e) < 3 * se + 0.05 * e, (m, e, se)
    assert 0.90 <= np.mean(cover) <= 0.98


def test_docstring_examples_run():
    import doctest

    from satsample.sae import area_level, publication, unit_level, variances

    for module in (area_level, publication, unit_level, variances):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
