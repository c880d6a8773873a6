"""Case C of ../shared/reference: post-stratification, raking and calibration equal to R survey.

Point estimates and Taylor SEs are computed here by hand linearisation on top of
``satsample.variance.taylor.taylor_variance`` (which applies the residualizers stored by
the weighting steps), so these tests check the weights *and* the variance rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import _case_c as case_c
import numpy as np
import pandas as pd
import pytest

from satsample._validation import ConvergenceError, ConvergenceWarning
from satsample.design import survey_design
from satsample.variance.taylor import taylor_variance
from satsample.weighting import (
    calibrate,
    calibration_check,
    model_matrix,
    weight_summary,
)

REF = Path(__file__).resolve().parent / "reference"
pytestmark = [
    pytest.mark.reference,
]

VARS = case_c.VARS
ITEMS = [f"q{i:02d}" for i in range(1, 23)]
ELEMENTS = {"E1": ITEMS[0:5], "E2": ITEMS[5:10], "E3": ITEMS[10:14], "E4": ITEMS[14:18],
            "E5": ITEMS[18:22]}
BOUNDED = {"calibrate_linear_bounded_0.5_2", "calibrate_logit_bounded_0.5_2",
           "calibrate_linear_bounded_0.4_2.5", "calibrate_logit_bounded_0.4_2.5"}
METHODS = ["poststratify", "rake_default", "rake_tight", "calibrate_linear", "calibrate_raking",
           *sorted(BOUNDED)]


@pytest.fixture(scope="module")
def ref():
    with open(REF / "cases" / "C_calibration.json") as fh:
        return json.load(fh)["results"]


@pytest.fixture(scope="module")
def data():
    df = pd.read_csv(REF / "data" / "sample_strat.csv")
    weights = pd.read_csv(REF / "cases" / "C_calibration_weights.csv")
    return df, weights


@pytest.fixture(scope="module")
def base(data):
    return survey_design(data[0], strata="agency_id", fpc="N_h")


@pytest.fixture(scope="module")
def controls():
    return case_c.controls()


@pytest.fixture(scope="module")
def designs(base, controls):
    return {m: case_c.weighted(m, base, controls) for m in ["none", *METHODS]}


def rel_err(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def tol(method):
    return 1e-8 if method in BOUNDED else 1e-10


# ----------------------------------------------------------- hand estimators
def indicators(df):
    y = df[ITEMS].to_numpy(dtype=float)
    return np.isin(y, [4, 5]).astype(float), np.isin(y, [1, 2, 3, 4, 5]).astype(float)


def item_estimates(design, n_, d_, domain=None, n_domains=1):
    """p_k and Taylor SE per domain; returns (G, K) arrays."""
    w = design.weights
    dom = np.zeros(design.n, dtype=np.int64) if domain is None else domain
    num = np.zeros((n_domains, n_.shape[1]))
    den = np.zeros_like(num)
    np.add.at(num, dom, w[:, None] * n_)
    np.add.at(den, dom, w[:, None] * d_)
    p = num / den
    z = (n_ - p[dom] * d_) / den[dom]
    var = taylor_variance(design, w[:, None] * z, domain=dom, n_domains=n_domains)
    return p, np.sqrt(var), num, den


def index_estimates(design, n_, d_, domain=None, n_domains=1):
    """Element and overall indices with SEs by the delta method (linearised z)."""
    w = design.weights
    dom = np.zeros(design.n, dtype=np.int64) if domain is None else domain
    p, _, _, den = item_estimates(design, n_, d_, dom, n_domains)
    zk = (n_ - p[dom] * d_) / den[dom]  # (n, K)
    cols, est = [], {}
    for e, items in ELEMENTS.items():
        idx = [ITEMS.index(i) for i in items]
        est[e] = p[:, idx].mean(axis=1)
        cols.append(zk[:, idx].mean(axis=1))
    est["index"] = np.mean([est[e] for e in ELEMENTS], axis=0)
    cols.append(np.mean(cols, axis=0))
    z = np.column_stack(cols)
    se = np.sqrt(taylor_variance(design, w[:, None] * z, domain=dom, n_domains=n_domains))
    names = [*ELEMENTS, "index"]
    return {k: est[k] for k in names}, {k: se[:, j] for j, k in enumerate(names)}


# ----------------------------------------------------------- weights
@pytest.mark.parametrize("method", METHODS)
def test_weights_row_by_row(method, ref, data, designs):
    df, wref = data
    r = ref[method]
    assert (wref["user_id"].to_numpy() == df["user_id"].to_numpy()).all()
    des = designs[method]
    assert rel_err(des.weights, wref[r["weights_column"]]) < tol(method)
    g = des.weights / des.design_weights
    assert rel_err([g.min(), g.max()], r["g_range"]) < tol(method)
    assert rel_err(des.weights.sum(), r["sum_weights"]) < 1e-12
    if r["n_g_at_lower"] is not None:
        params = dict(des.history[-1].params)
        assert params["n_at_lower"] == r["n_g_at_lower"]
        assert params["n_at_upper"] == r["n_g_at_upper"]


@pytest.mark.parametrize("method", ["none", *METHODS])
def test_achieved_totals(method, ref, controls, designs):
    des = designs[method]
    mm = model_matrix(des.data, VARS)
    achieved = des.weights @ mm.matrix
    expected = np.array([ref[method]["achieved_totals"][c] for c in mm.columns])
    assert np.max(np.abs(achieved - expected) / expected) < 1e-10
    if method.startswith("calibrate") or method == "rake_tight":
        chk = calibration_check(des, controls["totals"], variables=VARS)
        assert np.max(np.abs(chk["relative_difference"])) < 1e-10
        chk = calibration_check(des, controls["margins"])
        assert chk.shape[0] == 9
        assert np.max(np.abs(chk["relative_difference"])) < 1e-10


def test_rake_passes_and_stopping_rule(designs):
    default, tight = designs["rake_default"].history[-1], designs["rake_tight"].history[-1]
    assert (default.n_iter, default.converged) == (3, True)
    assert (tight.n_iter, tight.converged) == (11, True)
    assert dict(default.params)["tolerance"] == 1.0
    assert dict(tight.params)["tolerance"] == pytest.approx(1e-13 * 10964, rel=1e-12)
    # the IPF fixed point is the raking calibration
    w_rake = designs["rake_tight"].weights
    w_cal = designs["calibrate_raking"].weights
    assert np.max(np.abs(w_rake / w_cal - 1)) < 1e-12


# ----------------------------------------------------------- standard errors
@pytest.mark.parametrize("method", ["none", *METHODS])
def test_items_and_index(method, ref, data, designs):
    df, _ = data
    n_, d_ = indicators(df)
    des = designs[method]
    r = ref[method]
    p, se, _, _ = item_estimates(des, n_, d_)
    items = pd.DataFrame(r["items"])
    assert list(items["item"]) == ITEMS
    assert rel_err(p[0], items["estimate"]) < tol(method)
    assert rel_err(se[0], items["se"]) < tol(method)
    assert (np.sum(d_, axis=0) == items["n"].to_numpy()).all()
    est, ses = index_estimates(des, n_, d_)
    for key in [*ELEMENTS, "index"]:
        assert rel_err(est[key][0], r["index"][key]) < tol(method)
        assert rel_err(ses[key][0], r["index"][f"{key}_se"]) < tol(method)


@pytest.mark.parametrize("method", ["none", "poststratify", "rake_default", "calibrate_linear",
                                    "calibrate_logit_bounded_0.5_2"])
def test_domains_by_agency_level(method, ref, data, designs):
    df, _ = data
    n_, d_ = indicators(df)
    des = designs[method]
    codes, labels = pd.factorize(df["agency_level"])
    p, se, _, _ = item_estimates(des, n_, d_, codes, len(labels))
    got = pd.DataFrame({
        "domain": np.repeat(labels, len(ITEMS)), "item": ITEMS * len(labels),
        "estimate": p.ravel(), "se": se.ravel()})
    exp = pd.DataFrame(ref[method]["by_agency_level"]["items"])
    m = exp.merge(got, on=["domain", "item"], suffixes=("_r", "_py"))
    assert len(m) == len(exp) == 66
    assert rel_err(m["estimate_py"], m["estimate_r"]) < tol(method)
    assert rel_err(m["se_py"], m["se_r"]) < tol(method)
    est, ses = index_estimates(des, n_, d_, codes, len(labels))
    for rec in ref[method]["by_agency_level"]["index"]:
        g = list(labels).index(rec["domain"])
        for key in [*ELEMENTS, "index"]:
            assert rel_err(est[key][g], rec[key]) < tol(method)
            assert rel_err(ses[key][g], rec[f"{key}_se"]) < tol(method)


@pytest.mark.parametrize("method", ["none", *METHODS])
def test_total_n01_and_se_of_calibration_totals(method, ref, data, designs):
    df, _ = data
    n_, _ = indicators(df)
    des = designs[method]
    r = ref[method]
    x = des.weights * n_[:, 0]
    assert rel_err(x.sum(), r["totals_n01"]["estimate"]) < tol(method)
    assert rel_err(np.sqrt(taylor_variance(des, x)), r["totals_n01"]["se"]) < tol(method)
    names, cols = [], []
    for v in VARS:
        for level in sorted(df[v].unique()):
            names.append(f"{v}{level}")
            cols.append((df[v] == level).to_numpy(dtype=float))
    se = np.sqrt(np.maximum(taylor_variance(des, des.weights[:, None] * np.column_stack(cols))[0],
                            0.0))
    for name, s in zip(names, se, strict=True):
        expected = r["se_of_calibration_totals"][name]
        if expected < 1e-6:  # zero in exact arithmetic: absolute, scale of the total (1e4)
            assert s < 1e-9 * 1e4
        else:
            assert abs(s - expected) <= tol(method) * expected


# ----------------------------------------------------------- failures
@pytest.mark.parametrize("distance", ["linear", "logit"])
def test_infeasible_bounds_raise(distance, base, controls):
    with pytest.raises(ConvergenceError, match=r"Calibration failed.*bounds \(0\.8, 1\.25\)"):
        calibrate(base, controls["totals"], variables=VARS, distance=distance,
                  bounds=(0.8, 1.25))
    if distance == "logit":  # R's step halving leaves non-finite g: never accepted
        with pytest.raises(ConvergenceError, match="not finite"):
            calibrate(base, controls["totals"], variables=VARS, distance=distance,
                      bounds=(0.8, 1.25), on_nonconvergence="warn")
        return
    with pytest.warns(ConvergenceWarning, match="Calibration failed"):
        out = calibrate(base, controls["totals"], variables=VARS, distance=distance,
                        bounds=(0.8, 1.25), on_nonconvergence="warn")
    step = out.history[-1]
    assert step.converged is False and step.n_iter == 51
    assert "Calibration failed" in step.message


def test_weight_summary_records_history(designs):
    des = designs["rake_default"]
    tab = weight_summary(des)
    assert list(tab["method"]) == ["design", "rake"]
    w = des.weights
    assert tab["kish_deff"].iloc[1] == pytest.approx(w.size * (w @ w) / w.sum() ** 2, rel=1e-12)
    assert tab["effective_n"].iloc[1] == pytest.approx(w.sum() ** 2 / (w @ w), rel=1e-12)
    assert tab["n_iter"].iloc[1] == 3
    assert tab["weight_max"].iloc[1] == pytest.approx(w.max(), rel=1e-15)


# ----------------------------------------------------------- public estimators
@pytest.mark.parametrize("method", ["poststratify", "rake_default", "calibrate_linear",
                                    "calibrate_logit_bounded_0.4_2.5"])
def test_public_index_estimator_on_weighted_designs(method, ref, designs):
    index = pytest.importorskip("satsample.estimation")
    from satsample.questionnaire import load_questionnaire

    q = load_questionnaire("reference_22")
    des = designs[method]
    r = ref[method]
    res = index.satisfaction_index(des, q, variance="taylor")
    overall = res.overall.iloc[0]
    assert rel_err(overall["estimate"], r["index"]["index"]) < tol(method)
    assert rel_err(overall["se"], r["index"]["index_se"]) < tol(method)
    items = res.items.set_index("item").loc[ITEMS]
    exp = pd.DataFrame(r["items"]).set_index("item")
    assert rel_err(items["se"], exp["se"]) < tol(method)
    by = index.satisfaction_index(des, q, by="agency_level", variance="taylor").overall
    for rec in r["by_agency_level"]["index"]:
        row = by[by["agency_level"] == rec["domain"]].iloc[0]
        assert rel_err(row["estimate"], rec["index"]) < tol(method)
        assert rel_err(row["se"], rec["index_se"]) < tol(method)
