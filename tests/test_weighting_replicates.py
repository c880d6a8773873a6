"""Replicate propagation: every weighting step is applied to each replicate weight row."""

from __future__ import annotations

from pathlib import Path

import _case_c
import numpy as np
import pandas as pd
import pytest

from satsample.design import ReplicateWeights, WeightStep, survey_design
from satsample.variance.taylor import taylor_variance
from satsample.weighting import (
    adjust_nonresponse,
    calibrate,
    poststratify,
    rake,
    trim,
)

REF = Path(__file__).resolve().parent / "reference"
ITEMS = [f"q{i:02d}" for i in range(1, 23)]
VARS = _case_c.VARS


def jkn(design):
    """JKn replicates of a stratified element design (R's as.svrepdesign(type="JKn"))."""
    st = design.strata
    n = design.n
    n_h = np.bincount(st)[st].astype(float)
    pop = design.stages[0].popsize
    f_h = np.zeros(n) if pop is None else n_h / pop
    same = st[None, :] == st[:, None]
    mult = np.where(same, n_h[None, :] / (n_h[None, :] - 1.0), 1.0)
    np.fill_diagonal(mult, 0.0)
    reps = ReplicateWeights(kind="JKn", weights=np.ascontiguousarray(design.weights * mult),
                            scale=1.0, rscales=(1.0 - f_h) * (n_h - 1.0) / n_h,
                            degf=design.degf, n_replicates=n)
    return design.with_replicates(reps)


# ------------------------------------------------------------------ case C
@pytest.fixture(scope="module")
def case_c():
    df = pd.read_csv(REF / "data" / "sample_strat.csv")
    base = survey_design(df, strata="agency_id", fpc="N_h")
    y = df[ITEMS].to_numpy(dtype=float)
    n_ = np.isin(y, [4, 5]).astype(float)
    d_ = np.isin(y, [1, 2, 3, 4, 5]).astype(float)
    return base, n_, d_


def taylor_se(design, n_, d_):
    w = design.weights
    num, den = w @ n_, w @ d_
    z = (n_ - num / den * d_) / den
    return np.sqrt(taylor_variance(design, w[:, None] * z)[0])


def replicate_se(design, n_, d_):
    rw = design.replicates.weights
    theta_r = (rw @ n_) / (rw @ d_)
    theta = (design.weights @ n_) / (design.weights @ d_)
    return np.sqrt(design.replicates.variance(theta_r, theta))


@pytest.mark.parametrize("kind", ["linear", "raking", "logit", "poststratify"])
def test_replicate_se_after_calibration_tracks_taylor(case_c, kind):
    base, n_, d_ = case_c
    rep = jkn(base)
    if kind == "poststratify":
        cells = _case_c.controls()["cells"]

        def step(d):
            return poststratify(d, ["sex", "age_group"], cells)
    else:
        totals = _case_c.controls()["totals"]
        bounds = (0.4, 2.5) if kind == "logit" else None

        def step(d):
            return calibrate(d, totals, variables=VARS, distance=kind, bounds=bounds)

    cal_rep = step(rep)
    cal_taylor = step(base)
    np.testing.assert_allclose(cal_rep.weights, cal_taylor.weights, rtol=1e-13)
    se_rep_uncal = replicate_se(rep, n_, d_)
    se_rep_cal = replicate_se(cal_rep, n_, d_)
    se_tay_uncal = taylor_se(base, n_, d_)
    se_tay_cal = taylor_se(cal_taylor, n_, d_)
    # without weighting, JKn reproduces the Taylor SE closely
    assert np.max(np.abs(se_rep_uncal / se_tay_uncal - 1)) < 1e-3
    # the calibrated replicate SEs differ from the uncalibrated ones...
    assert np.min(np.abs(se_rep_cal / se_rep_uncal - 1)) > 0.02
    # ...and are closer to the Taylor calibration SE, item by item
    assert np.all(np.abs(se_rep_cal - se_tay_cal) < np.abs(se_rep_uncal - se_tay_cal))
    assert np.max(np.abs(se_rep_cal / se_tay_cal - 1)) < 0.05
    # every replicate reproduces the controls
    if kind == "poststratify":
        codes = pd.factorize(base.data["sex"] + "/" + base.data["age_group"], sort=True)[0]
        sums = np.stack([np.bincount(codes, weights=r) for r in cal_rep.replicates.weights])
        np.testing.assert_allclose(sums, np.broadcast_to(sums[0], sums.shape), rtol=1e-12)
    else:
        from satsample.weighting import model_matrix

        mm = model_matrix(base.data, VARS).matrix
        got = cal_rep.replicates.weights @ mm
        expected = totals.set_index("term")["total"].to_numpy()
        assert np.max(np.abs(got / expected - 1)) < 1e-6


# ------------------------------------------------------------------ numpy twin
@pytest.fixture
def small():
    rng = np.random.default_rng(11)
    n = 60
    df = pd.DataFrame({
        "stratum": np.repeat(["A", "B", "C"], n // 3),
        "sex": rng.choice(["F", "M"], n),
        "age": rng.choice(["young", "old"], n),
        "resp": rng.random(n) < 0.8,
        "w": rng.uniform(5, 15, n),
    })
    base = survey_design(df, strata="stratum", weights="w")
    return base, jkn(base)


MARGINS = pd.DataFrame({"variable": ["sex", "sex", "age", "age"],
                        "level": ["F", "M", "old", "young"],
                        "Freq": [330.0, 300.0, 280.0, 350.0]})


STEPS = {
    "poststratify": lambda d: poststratify(d, "age", pd.Series({"old": 280.0, "young": 350.0})),
    "rake_one_pass": lambda d: rake(d, MARGINS, epsilon=1e9),
    "linear": lambda d: calibrate(d, MARGINS),
    "raking": lambda d: calibrate(d, MARGINS, distance="raking", epsilon=1e-12),
    "logit": lambda d: calibrate(d, MARGINS, distance="logit", bounds=(0.2, 5.0), epsilon=1e-12),
    "bounded": lambda d: calibrate(d, MARGINS, bounds=(0.5, 2.0), epsilon=1e-12),
    "trim": lambda d: trim(d, upper=14.0),
    "nonresponse": lambda d: adjust_nonresponse(d, "resp", classes="sex"),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_vectorised_replicates_equal_one_at_a_time(small, name):
    base, rep = small
    before = rep.replicates.weights.copy()
    out = STEPS[name](rep)
    assert out.replicates.weights.shape == (base.n, base.n)
    np.testing.assert_allclose(out.weights, STEPS[name](base).weights, rtol=1e-13)
    for r in [0, 7, 25, 59]:
        row = rep.replicates.weights[r]
        single = base.with_weights(row, step=WeightStep.from_weights("replicate", row))
        expected = STEPS[name](single).weights
        np.testing.assert_allclose(out.replicates.weights[r], expected, rtol=1e-10, atol=1e-12)
        assert out.replicates.weights[r][r] == 0.0  # the deleted unit stays deleted
    np.testing.assert_array_equal(rep.replicates.weights, before)  # input untouched
