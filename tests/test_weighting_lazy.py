"""Weighting steps on replicates generated on the fly (lazy Rao-Wu bootstrap).

A weighting step on a lazy design keeps the full-sample weights of the
ordinary step and appends a replay object to ``replicates.steps``.  Replaying
it on blocks of the lazy replicate weights must give the replicate weights of
the same step applied to the materialised replicate matrix (1e-12), for every
step and for a chain of steps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import _case_c as case_c
import numpy as np
import pandas as pd
import pytest

from satsample._validation import ConvergenceError, ConvergenceWarning, DesignError, SatsampleError
from satsample.design import WeightStep, survey_design
from satsample.replicate import bootstrap
from satsample.variance.replicate import iter_replicate_weight_blocks
from satsample.weighting import (
    CalibrationStep,
    NonresponseStep,
    PostStratifyStep,
    RakeStep,
    TrimStep,
    adjust_nonresponse,
    calibrate,
    poststratify,
    rake,
    trim,
)

REF = Path(__file__).resolve().parent / "reference"

VARS = case_c.VARS
R = 20
BLOCK = 7  # does not divide R: the last block is short


@pytest.fixture(scope="module")
def controls():
    return case_c.controls()


@pytest.fixture(scope="module")
def base():
    """Case C's stratified sample, with a made-up response indicator (about 80%)."""
    df = pd.read_csv(REF / "data" / "sample_strat.csv")
    df["responded"] = np.random.default_rng(2024).random(len(df)) < 0.8
    return survey_design(df, strata="agency_id", fpc="N_h")


@pytest.fixture(scope="module")
def lazy(base):
    return bootstrap(base, n_replicates=R, rng=17, materialize=False)


def materialised(design):
    """The same design with its lazy replicate weights stored as a (R, n) matrix."""
    w = np.vstack(list(iter_replicate_weight_blocks(design, block=BLOCK)))
    return design.with_replicates(replace(design.replicates, weights=w))


def replay(design, step):
    """``step.apply`` on the lazy replicate weights of ``design``, block by block."""
    out, r0 = [], 0
    for block in iter_replicate_weight_blocks(design, block=BLOCK):
        idx = np.arange(r0, r0 + block.shape[0])
        out.append(step.apply(block, idx))
        r0 += block.shape[0]
    assert r0 == R
    return np.vstack(out)


def assert_close(a, b, tol=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b))


STEPS = {
    "nonresponse_classes": (
        NonresponseStep, lambda d, c: adjust_nonresponse(d, "responded", classes="agency_id")),
    "nonresponse_propensity": (
        NonresponseStep,
        lambda d, c: adjust_nonresponse(d, "responded", method="propensity",
                                        covariates=["sex", "age_group"], n_classes=4)),
    "poststratify": (
        PostStratifyStep, lambda d, c: poststratify(d, ["sex", "age_group"], c["cells"])),
    "rake": (RakeStep, lambda d, c: rake(d, c["margins"])),
    "rake_tight": (RakeStep, lambda d, c: rake(d, c["margins"], max_iter=100, epsilon=1e-10)),
    "calibrate_linear": (
        CalibrationStep, lambda d, c: calibrate(d, c["totals"], variables=VARS)),
    "calibrate_linear_bounded": (
        CalibrationStep,
        lambda d, c: calibrate(d, c["totals"], variables=VARS, bounds=(0.4, 2.5),
                               epsilon=1e-12, max_iter=200)),
    "calibrate_raking": (
        CalibrationStep,
        lambda d, c: calibrate(d, c["totals"], variables=VARS, distance="raking",
                               epsilon=1e-12, max_iter=100)),
    "calibrate_logit": (
        CalibrationStep,
        lambda d, c: calibrate(d, c["totals"], variables=VARS, distance="logit",
                               bounds=(0.4, 2.5), epsilon=1e-12, max_iter=200)),
    "trim_equal": (TrimStep, lambda d, c: trim(d, upper=1.2, relative=True)),
    "trim_proportional_strict": (
        TrimStep,
        lambda d, c: trim(d, lower=0.7, upper=2.2, relative=True, redistribute="proportional",
                          strict=True)),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_replayed_step_equals_materialised_path(name, base, lazy, controls):
    cls, step = STEPS[name]
    out = step(lazy, controls)
    mat = step(materialised(lazy), controls)

    # full-sample weights are those of the ordinary step (bit for bit)
    np.testing.assert_array_equal(out.weights, step(base, controls).weights)
    np.testing.assert_array_equal(out.weights, mat.weights)
    assert out.history[-1] == mat.history[-1]
    assert len(out.calibrations) == len(mat.calibrations)

    # the replicates stay lazy, with one replay step and the base weights recorded
    reps = out.replicates
    assert reps.weights is None and reps.seed == lazy.replicates.seed
    assert len(reps.steps) == 1 and type(reps.steps[0]) is cls
    np.testing.assert_array_equal(reps.base_weights, lazy.weights)
    assert lazy.replicates.steps == () and lazy.replicates.base_weights is None

    # block-by-block replay == the materialised replicate weights
    got = replay(lazy, reps.steps[0])
    assert_close(got, mat.replicates.weights)
    # the step changed the replicates (the comparison is not vacuous)
    before = materialised(lazy).replicates.weights
    assert np.max(np.abs(got - before)) > 1e-3 * np.max(before)
    # one replicate row does not depend on the other rows of its block
    one = reps.steps[0].apply(before[5:6], np.array([5]))
    assert_close(one, mat.replicates.weights[5:6])


def test_chain_of_steps_replays_in_order(base, lazy, controls):
    def chain(d):
        d = adjust_nonresponse(d, "responded", classes="agency_id")
        d = rake(d, controls["margins"], max_iter=50, epsilon=1e-9)
        d = calibrate(d, controls["totals"], variables=VARS, distance="logit",
                      bounds=(0.4, 2.5), epsilon=1e-12, max_iter=200)
        return trim(d, upper=1.5, relative=True)

    out = chain(lazy)
    mat = chain(materialised(lazy))
    np.testing.assert_array_equal(out.weights, chain(base).weights)
    reps = out.replicates
    assert [type(s) for s in reps.steps] == [NonresponseStep, RakeStep, CalibrationStep, TrimStep]
    # the multipliers apply to the weights before the first step
    np.testing.assert_array_equal(reps.base_weights, base.weights)
    mult = np.vstack(list(iter_replicate_weight_blocks(out, block=BLOCK, multipliers=True)))
    blocks = mult * reps.base_weights
    assert_close(blocks, materialised(lazy).replicates.weights, tol=1e-15)
    got = []
    for r0 in range(0, R, BLOCK):
        w = blocks[r0:r0 + BLOCK]
        idx = np.arange(r0, r0 + w.shape[0])
        for s in reps.steps:
            w = s.apply(w, idx)
        got.append(w)
    assert_close(np.vstack(got), mat.replicates.weights)
    # every replicate keeps the population total of the calibration (trimming keeps totals)
    np.testing.assert_allclose(np.vstack(got).sum(axis=1), 10964, rtol=1e-9)


def test_steps_hold_read_only_inputs_and_do_not_modify_blocks(lazy, controls):
    out = calibrate(poststratify(lazy, ["sex", "age_group"], controls["cells"]),
                    controls["totals"], variables=VARS, distance="raking")
    ps, cal = out.replicates.steps
    assert not ps.codes.flags.writeable and not ps.population.flags.writeable
    assert not cal.matrix.flags.writeable and not cal.totals.flags.writeable
    block = next(iter_replicate_weight_blocks(lazy, block=BLOCK))
    keep = block.copy()
    cal.apply(ps.apply(block, np.arange(BLOCK)), np.arange(BLOCK))
    np.testing.assert_array_equal(block, keep)


def test_replicate_nonconvergence_names_the_replicates(lazy, controls):
    out = calibrate(lazy, controls["totals"], variables=VARS, distance="raking")
    step = replace(out.replicates.steps[0], max_iter=1, epsilon=1e-15)
    block = next(iter_replicate_weight_blocks(lazy, block=3))
    with pytest.raises(ConvergenceError, match=r"3 of 3 replicates \(replicate\(s\) 10, 11, 12;"):
        step.apply(block, np.array([10, 11, 12]))
    warn = replace(step, on_nonconvergence="warn")
    with pytest.warns(ConvergenceWarning, match="Calibration failed for 3 of 3"):
        g = warn.apply(block, np.array([10, 11, 12]))
    assert g.shape == block.shape

    t = trim(lazy, lower=0.9, upper=1.1, relative=True, strict=True).replicates.steps[0]
    t1 = replace(t, max_iter=1)
    with pytest.raises(ConvergenceError, match=r"still outside .* \(replicate\(s\) 4, 5"):
        t1.apply(next(iter_replicate_weight_blocks(lazy, block=2)), np.array([4, 5]))


def test_apply_checks_the_block(lazy, controls):
    step = poststratify(lazy, ["sex", "age_group"], controls["cells"]).replicates.steps[0]
    with pytest.raises(SatsampleError, match=r"shape \(2, 5\); expected \(b, 717\)"):
        step.apply(np.ones((2, 5)), np.arange(2))
    with pytest.raises(SatsampleError, match="replicate_index has 3 entries for a block of 2"):
        step.apply(np.ones((2, lazy.n)), np.arange(3))


def test_with_weights_on_lazy_replicates_needs_a_replicate_step(lazy):
    rec = WeightStep.from_weights("custom", lazy.weights)
    with pytest.raises(DesignError, match="replicate_step="):
        lazy.with_weights(lazy.weights, step=rec)
    with pytest.raises(DesignError, match="replicate_step="):
        lazy.with_weights(lazy.weights, step=rec, replicate_weights=np.ones((R, lazy.n)),
                          replicate_step=object())
