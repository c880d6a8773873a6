"""Weighting steps on a Dask design (LocalCluster, 2 worker processes) equal to in memory.

Case C of tests/reference (post-stratification, raking with R's stopping rule
and tight, linear/raking/logit calibration with bounds; see
tests/test_weighting_reference.py), plus nonresponse adjustment by classes,
calibration on a numeric variable and trimming, on frames partitioned
against the strata (strata split over partitions and shuffled, rows
interleaved, whole strata with empty partitions).  The in-memory reference
is the design of the same rows in the frame's global row order.  Checked to
1e-12 relative: the weights row by row, the history records, estimates and
SEs of proportions, means and the satisfaction index with Taylor variance
(calibration residuals: residualizers run partition by partition on summed
cross-products) and with lazy Rao-Wu and JKn replicates (every step replayed
on replicate cell tables), covariances on the scale of their variances.
Non-convergence and bad input raise the in-memory SatsampleError with the
same message.  The demo pipeline (nonresponse by agency, raking on four
margins, lazy Rao-Wu, index by agency) runs on Dask with the in-memory
numbers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import _case_c as case_c
import numpy as np
import pandas as pd
import pytest
from conftest import add_indicator_columns

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import satsample as ss  # noqa: E402
from satsample._validation import (  # noqa: E402
    ConvergenceError,
    ConvergenceWarning,
    SatsampleError,
)
from satsample.design import survey_design  # noqa: E402
from satsample.distributed import DaskSurveyDesign  # noqa: E402
from satsample.distributed.design import ROW, WEIGHT  # noqa: E402
from satsample.replicate import bootstrap, jackknife  # noqa: E402
from satsample.weighting import (  # noqa: E402
    _dask,
    adjust_nonresponse,
    calibrate,
    poststratify,
    rake,
    trim,
)

pytestmark = pytest.mark.usefixtures("dask_client")

REF = Path(__file__).resolve().parent / "reference"
VARS = case_c.VARS
S_ITEMS = ["s01", "s02", "s05", "s14", "s22"]
TOL = 1e-12


# ------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def df():
    out = add_indicator_columns(pd.read_csv(REF / "data" / "sample_strat.csv"))
    rng = np.random.default_rng(2024)
    out["responded"] = rng.random(len(out)) < 0.8
    out["visits"] = rng.poisson(3.0, len(out)).astype(np.float64) + 1.0  # a numeric variable
    out["dom"] = (out["sex"] == "M").astype(np.int64) + 2 * (out["channel"] == "online")
    return out


@pytest.fixture(scope="module")
def controls(df):
    return {
        **case_c.controls(),
        # totals of ~ sex + visits: the sample's design-weighted totals, visits up 4%
        "numeric": pd.Series({"(Intercept)": 10964.0, "sexM": 5440.0,
                              "visits": 1.04 * float((df["design_weight"] * df["visits"]).sum())}),
    }


def frame_of(pdf: pd.DataFrame, layout: str, *, seed: int = 0):
    """A Dask frame of ``pdf`` cut against its strata, and the same rows in memory (in order).

    ``"split"``: 4 contiguous partitions (strata cut in two: the frame is
    shuffled); ``"interleaved"``: rows in random order in 3 partitions;
    ``"whole"``: whole strata in 3 partitions with 2 empty ones (no shuffle).
    """
    n = len(pdf)
    rng = np.random.default_rng(seed)
    if layout == "split":
        pieces = np.array_split(np.arange(n), 4)
    elif layout == "interleaved":
        pieces = np.array_split(rng.permutation(n), 3)
    elif layout == "whole":
        codes = pd.factorize(pdf["agency_id"])[0] % 3
        idx = [np.flatnonzero(codes == k) for k in range(3)]
        pieces = [idx[0], idx[0][:0], idx[1], idx[2], idx[2][:0]]
    else:  # pragma: no cover
        raise ValueError(layout)
    parts = [pdf.iloc[i].reset_index(drop=True) for i in pieces]
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=pdf.iloc[:0], verify_meta=False)
    return ddf, pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def bases(df):
    out = {}
    for layout in ("split", "interleaved", "whole"):
        ddf, rows = frame_of(df, layout)
        mem = survey_design(rows, strata="agency_id", fpc="N_h")
        dsk = survey_design(ddf, strata="agency_id", fpc="N_h")
        assert isinstance(dsk, DaskSurveyDesign)
        assert dsk.shuffled == (layout != "whole")
        out[layout] = (mem, persisted(dsk), rows)
    return out


def persisted(design):
    """The design with its (shuffled) frame held by the workers: the shuffle runs once."""
    return replace(design, frame=design.frame.persist())


def weighted(method: str, design, controls):
    """Case C's steps and the others, on a design in memory or on Dask."""
    c = controls
    if method == "nonresponse":
        return adjust_nonresponse(design, "responded", classes="agency_id")
    if method.startswith("calibrate_numeric"):
        dist = method.rsplit("_", 1)[1]
        bounds = (0.5, 2.0) if dist in ("logit", "bounded") else None
        return calibrate(design, c["numeric"], variables=["sex", "visits"],
                         distance="logit" if dist == "logit" else "linear", bounds=bounds,
                         epsilon=1e-13, max_iter=200)
    if method == "calibrate_logit_warn":  # replicates that miss the bounds are kept (warned)
        return case_c.weighted("calibrate_logit_bounded_0.5_2", design, c,
                               tolerant_replicates=True)
    if method == "trim":
        return trim(design, upper=1.3, relative=True)
    if method == "trim_strict":
        return trim(design, lower=0.8, upper=1.2, relative=True, strict=True,
                    redistribute="proportional")
    if method == "chain_numeric":  # then unbounded linear calibration on a numeric variable
        d = adjust_nonresponse(design, "responded", classes="agency_id")
        d = rake(d, c["margins"], max_iter=50, epsilon=1e-10)
        return calibrate(d, c["numeric"], variables=["sex", "visits"])
    if method == "chain":  # nonresponse, raking, calibration: three steps, two residualizers
        d = adjust_nonresponse(design, "responded", classes="agency_id")
        d = rake(d, c["margins"], max_iter=50, epsilon=1e-10)
        return calibrate(d, c["totals"], variables=VARS, distance="logit", bounds=(0.4, 2.5),
                         epsilon=1e-13, max_iter=200)
    return case_c.weighted(method, design, c)  # case C's own steps (ValueError for others)


CELLS = ["nonresponse", "poststratify", "rake_default", "rake_tight", "calibrate_linear",
         "calibrate_raking", "calibrate_linear_bounded_0.5_2", "calibrate_logit_bounded_0.4_2.5",
         "chain"]
NUMERIC = ["calibrate_numeric_linear", "calibrate_numeric_bounded", "calibrate_numeric_logit"]
TRIM = ["trim", "trim_strict"]


def by_row(design) -> pd.DataFrame:
    """The Dask frame, computed, in global row order."""
    return design.frame.compute().sort_values(ROW).reset_index(drop=True)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    scale = np.maximum(np.abs(b), np.max(np.abs(b)) * 1e-3)
    return float(np.max(np.abs(a - b) / scale)) if b.size else 0.0


def same_record(a, b) -> None:
    """Two history records agree: texts and counts exactly, numbers to 1e-12."""
    assert (a.method, a.converged, a.n_iter, a.n_rows) == (b.method, b.converged, b.n_iter,
                                                          b.n_rows)
    pa, pb = dict(a.params), dict(b.params)
    assert pa.keys() == pb.keys()
    for k in pa:
        same_value(pa[k], pb[k], k)
    for f in ("kish_deff", "effective_n", "weight_min", "weight_max", "weight_sum"):
        assert rel(getattr(b, f), getattr(a, f)) < TOL, f
    assert strip_numbers(a.message) == strip_numbers(b.message)


def same_value(x, y, key) -> None:
    if isinstance(x, dict):
        assert x.keys() == y.keys()
        for k in x:
            same_value(x[k], y[k], key)
    elif isinstance(x, float):
        if key == "last_change":  # a difference of nearly equal tables: absolute scale
            assert abs(x - y) < 1e-9
        else:
            assert rel(y, x) < TOL, key
    else:
        assert x == y, key


def strip_numbers(text: str) -> str:
    import re

    return re.sub(r"\d+\.\d+(e-?\d+)?", "#", text)


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("method", [*CELLS, *NUMERIC, *TRIM])
def test_weights_and_record_equal_in_memory(method, bases, controls):
    mem, dsk, _rows = bases["split"]
    a, b = weighted(method, mem, controls), weighted(method, dsk, controls)
    got = by_row(b)
    assert rel(got[WEIGHT], a.weights) < TOL
    assert len(b.history) == len(a.history)
    for ha, hb in zip(a.history[1:], b.history[1:], strict=True):
        same_record(ha, hb)
    assert len(b.calibrations) == len(a.calibrations)


@pytest.mark.parametrize(("method", "layout"), [
    ("calibrate_logit_bounded_0.4_2.5", "interleaved"), ("calibrate_numeric_logit", "whole"),
    ("trim_strict", "interleaved"),
])
def test_weights_under_other_partitionings(method, layout, bases, controls):
    mem, dsk, _rows = bases[layout]
    a, b = weighted(method, mem, controls), weighted(method, dsk, controls)
    assert rel(by_row(b)[WEIGHT], a.weights) < TOL
    same_record(a.history[-1], b.history[-1])


def test_rake_iterates_on_one_table_of_cells(bases, controls, monkeypatch):
    """Raking costs one reduction (the table of cells) whatever the number of passes."""
    _mem, dsk, _rows = bases["whole"]
    calls = []
    real = _dask._dist

    class Counting:
        def __getattr__(self, name):
            got = getattr(real(), name)
            if name == "reduce":
                def counted(*args, **kwargs):
                    calls.append(name)
                    return got(*args, **kwargs)
                return counted
            return got

    monkeypatch.setattr(_dask, "_dist", Counting)
    out = rake(dsk, controls["margins"], max_iter=1000, epsilon=1e-13)
    assert out.history[-1].n_iter == 11
    assert calls == ["reduce"]  # + the step diagnostics pass of with_weight_factors


# ------------------------------------------------------------------ Taylor
def same_estimate(a, b, tol=TOL) -> None:
    """Two estimates agree: the same table, numbers to ``tol`` relative."""
    ta, tb = a.table, b.table
    assert list(ta.columns) == list(tb.columns) and len(ta) == len(tb)
    for col in ta.columns:
        if pd.api.types.is_float_dtype(ta[col]):
            x, y = ta[col].to_numpy(), tb[col].to_numpy()
            assert np.array_equal(np.isnan(x), np.isnan(y)), col
            ok = ~np.isnan(x)
            assert rel(x[ok], y[ok]) < tol, col
        else:
            assert (ta[col].astype(str) == tb[col].astype(str)).all(), col


@pytest.mark.parametrize(("method", "layout"), [
    ("poststratify", "split"), ("calibrate_numeric_bounded", "split"),
    ("rake_tight", "whole"), ("chain", "interleaved"),
])
def test_taylor_with_calibration_residuals(method, layout, bases, controls):
    """Taylor SEs after calibration: the residualizers on Dask equal the in-memory ones."""
    mem0, dsk0, _rows = bases[layout]
    mem, dsk = weighted(method, mem0, controls), weighted(method, dsk0, controls)
    same_estimate(ss.proportion(dsk, S_ITEMS, na="drop"),
                  ss.proportion(mem, S_ITEMS, na="drop"))
    same_estimate(ss.mean(dsk, S_ITEMS[:2], by="channel", na="drop"),
                  ss.mean(mem, S_ITEMS[:2], by="channel", na="drop"))


def test_index_with_calibration_residuals(bases, controls, reference_questionnaire):
    mem0, dsk0, _rows = bases["split"]
    mem, dsk = weighted("chain", mem0, controls), weighted("chain", dsk0, controls)
    a = ss.satisfaction_index(dsk, reference_questionnaire, by="agency_level")
    b = ss.satisfaction_index(mem, reference_questionnaire, by="agency_level")
    for name in ("overall", "elements", "items"):
        same_estimate(_Table(getattr(a, name)), _Table(getattr(b, name)))
    assert a.options["calibrated"] and a.options["engine"] == "dask"


class _Table:
    def __init__(self, table):
        self.table = table


# ------------------------------------------------------------------ replicates
@pytest.mark.parametrize(("method", "layout", "scheme"), [
    ("poststratify", "split", "raowu"), ("calibrate_logit_warn", "split", "raowu"),
    ("chain", "interleaved", "raowu"), ("chain_numeric", "whole", "raowu"),
    ("rake_default", "whole", "jkn"),
])
def test_replicates_replay_the_steps(method, layout, scheme, bases, controls):
    """Lazy Rao-Wu / JKn replicates with every step replayed on cells: equal to in memory."""
    mem0, dsk0, _rows = bases[layout]
    if scheme == "raowu":
        mem_b = bootstrap(mem0, n_replicates=20, rng=5, materialize=False)
        dsk_b = bootstrap(dsk0, n_replicates=20, rng=5)
        assert dsk_b.replicates.seed == mem_b.replicates.seed
    else:
        mem_b = jackknife(mem0, kind="JKn", materialize=False)
        dsk_b = jackknife(dsk0, kind="JKn")
    if method == "calibrate_logit_warn":  # some replicates miss the bounds: the same ones
        mem = weighted(method, mem_b, controls)
        with pytest.warns(ConvergenceWarning) as w_dsk:  # the replay is prepared by the step
            dsk = weighted(method, dsk_b, controls)
        with pytest.warns(ConvergenceWarning) as w_mem:  # ... in memory, by the estimator
            est_m = ss.proportion(mem, S_ITEMS, by="dom", na="drop")
        assert [str(w.message) for w in w_dsk] == [str(w.message) for w in w_mem]
        assert "Calibration failed for" in str(w_mem[0].message)
    else:
        mem, dsk = weighted(method, mem_b, controls), weighted(method, dsk_b, controls)
        est_m = ss.proportion(mem, S_ITEMS, by="dom", na="drop")
    est_d = ss.proportion(dsk, S_ITEMS, by="dom", na="drop")
    same_estimate(est_d, est_m)
    assert est_m.options["replay"] == "cells"
    assert est_d.options["replay"] in ("cells", "partitions")  # the engine's label on Dask
    # covariances on the scale of their variances (a covariance near 0 has no relative digits)
    va, vb = est_d.vcov().to_numpy(), est_m.vcov().to_numpy()
    scale = np.sqrt(np.outer(np.diag(vb), np.diag(vb)))
    assert np.max(np.abs(va - vb) / scale) < TOL


def test_replay_refused_where_the_cell_path_cannot_go(bases, controls):
    _mem0, dsk0, _rows = bases["whole"]
    for reps in (bootstrap(dsk0, n_replicates=5, rng=1), jackknife(dsk0, kind="JKn")):
        for method in ("trim", "calibrate_numeric_bounded", "calibrate_numeric_logit"):
            with pytest.raises(SatsampleError, match="replicate variance is unavailable"):
                weighted(method, reps, controls)
        d = weighted("calibrate_numeric_linear", reps, controls)  # replayed through x, x v
        with pytest.raises(SatsampleError, match="after a calibration on numeric variables"):
            poststratify(d, ["sex", "age_group"], controls["cells"])


# ------------------------------------------------------------------ errors
def _same_error(fn, mem, dsk, exc=SatsampleError):
    with pytest.raises(exc) as a:
        fn(mem)
    with pytest.raises(exc) as b:
        fn(dsk)
    assert type(a.value) is type(b.value)
    assert str(b.value) == str(a.value)
    return str(a.value)


def test_nonconvergence_gives_the_same_error(bases, controls):
    mem, dsk, _rows = bases["split"]
    msg = _same_error(lambda d: rake(d, controls["margins"], max_iter=2, epsilon=1e-13),
                      mem, dsk, ConvergenceError)
    assert "did not converge in 2 passes" in msg
    msg = _same_error(lambda d: calibrate(d, controls["totals"], variables=VARS,
                                          distance="logit", bounds=(0.9, 1.1), max_iter=20),
                      mem, dsk, ConvergenceError)
    assert "Calibration failed" in msg
    _same_error(lambda d: trim(d, lower=0.95, upper=1.05, relative=True, strict=True,
                               max_iter=1), mem, dsk, ConvergenceError)
    with pytest.warns(ConvergenceWarning):
        a = rake(mem, controls["margins"], max_iter=2, epsilon=1e-13, on_nonconvergence="warn")
    with pytest.warns(ConvergenceWarning):
        b = rake(dsk, controls["margins"], max_iter=2, epsilon=1e-13, on_nonconvergence="warn")
    assert rel(by_row(b)[WEIGHT], a.weights) < TOL
    same_record(a.history[-1], b.history[-1])


@pytest.fixture(scope="module")
def holes(df):
    """Case C's data with missing values in a class variable, on Dask and in memory."""
    rows = df.copy()
    rows["region"] = np.where(np.arange(len(rows)) % 50 == 7, None, rows["sex"])
    rows["visits"] = np.where(np.arange(len(rows)) % 90 == 3, np.nan, rows["visits"])
    ddf, rows = frame_of(rows, "split")
    return (survey_design(rows, strata="agency_id", fpc="N_h"),
            persisted(survey_design(ddf, strata="agency_id", fpc="N_h")))


@pytest.mark.parametrize("case", [
    "missing_column", "missing_values", "missing_numeric", "empty_cell", "absent_level",
    "bounds", "trim_bounds", "margins_disagree", "bad_response",
])
def test_bad_input_gives_the_same_error(case, holes, controls):
    mem, dsk = holes
    c = controls
    fns = {
        "missing_column": lambda d: adjust_nonresponse(d, "responded", classes="nope"),
        "missing_values": lambda d: poststratify(d, ["region"], pd.DataFrame(
            {"region": ["F", "M"], "Freq": [5524, 5440]})),
        "missing_numeric": lambda d: calibrate(d, c["numeric"], variables=["sex", "visits"]),
        "empty_cell": lambda d: poststratify(d, ["sex", "age_group"], pd.concat(
            [c["cells"], pd.DataFrame({"sex": ["X"], "age_group": ["18-29"], "Freq": [10]})])),
        "absent_level": lambda d: poststratify(d, ["sex", "age_group"], c["cells"].iloc[1:]),
        "bounds": lambda d: calibrate(d, c["totals"], variables=VARS, distance="logit"),
        "trim_bounds": lambda d: trim(d, lower=3.0, upper=4.0, relative=True),
        "margins_disagree": lambda d: rake(d, [("sex", pd.Series({"F": 1.0, "M": 2.0})),
                                               ("channel", pd.Series({"in_person": 1.0,
                                                                      "online": 1.0,
                                                                      "postal": 2.0}))]),
        "bad_response": lambda d: adjust_nonresponse(d, "sex"),
    }
    msg = _same_error(fns[case], mem, dsk)
    if case == "missing_values":
        assert "has 15 missing value(s)" in msg  # rows, not cells


def test_propensity_classes_are_refused_on_dask(bases):
    _mem, dsk, _rows = bases["whole"]
    with pytest.raises(SatsampleError, match="not available on a Dask design"):
        adjust_nonresponse(dsk, "responded", method="propensity", covariates=["sex"])


# ------------------------------------------------------------------ demo pipeline
@pytest.fixture(scope="module")
def demo():
    from satsample.datasets import make_population, simulate_responses
    from satsample.questionnaire import load_questionnaire
    from satsample.selection import select

    q = load_questionnaire("sipas_2017")
    pop = make_population(n_users=6_000, questionnaire=q, rng=3)
    drawn = select(pop.frame, ids="user_id", strata="agency_id", n=25, method="srswor", rng=4,
                   take_all=True)
    fielded = simulate_responses(pop, drawn.sample, rng=5).reset_index(drop=True)
    margins = [(v, pop.frame[v].value_counts().rename("Freq").rename_axis(v).reset_index())
               for v in ("agency_id", "sex", "age_group", "channel")]
    return q, fielded, margins


def test_demo_pipeline_on_dask(demo):
    """Nonresponse by agency, raking on four margins, lazy Rao-Wu, index by agency."""
    q, fielded, margins = demo
    ddf, rows = frame_of(fielded, "interleaved", seed=7)
    mem = survey_design(rows, strata="agency_id", weights="design_weight", fpc="fpc")
    dsk = persisted(survey_design(ddf, strata="agency_id", weights="design_weight", fpc="fpc"))
    mem = bootstrap(mem, n_replicates=20, rng=6, materialize=False)
    dsk = bootstrap(dsk, n_replicates=20, rng=6)

    def pipeline(d):
        d = adjust_nonresponse(d, "responded", classes="agency_id")
        return rake(d, margins, max_iter=50, epsilon=1e-8)

    mem, dsk = pipeline(mem), pipeline(dsk)
    assert rel(by_row(dsk)[WEIGHT], mem.weights) < TOL
    for ha, hb in zip(mem.history[1:], dsk.history[1:], strict=True):
        same_record(ha, hb)
    a = ss.satisfaction_index(dsk, q, by="agency_id")
    b = ss.satisfaction_index(mem, q, by="agency_id")
    assert b.options["replay"] == "cells" and a.options["replay"] in ("cells", "partitions")
    for name in ("overall", "elements"):
        same_estimate(_Table(getattr(a, name)), _Table(getattr(b, name)))


def test_diagnostics_on_dask(bases, controls):
    mem0, dsk0, _rows = bases["split"]
    mem, dsk = weighted("chain", mem0, controls), weighted("chain", dsk0, controls)
    a, b = ss.weight_summary(dsk), ss.weight_summary(mem)
    assert list(a["method"]) == list(b["method"]) and list(a["n_rows"]) == list(b["n_rows"])
    assert rel(a["kish_deff"], b["kish_deff"]) < TOL
    for ctl, var in ((controls["margins"], None), (controls["totals"], VARS),
                     (controls["cells"], ["sex", "age_group"])):
        ca = ss.calibration_check(dsk, ctl, variables=var)
        cb = ss.calibration_check(mem, ctl, variables=var)
        assert list(ca["term"]) == list(cb["term"])
        assert rel(ca["achieved"], cb["achieved"]) < TOL


def test_declared_replicate_weights_are_not_reweighted_on_dask(df, controls):
    rows = df.copy()
    rng = np.random.default_rng(9)
    names = [f"rw{r}" for r in range(4)]
    for c in names:
        rows[c] = rows["design_weight"] * rng.uniform(0.5, 1.5, len(rows))
    ddf, _ = frame_of(rows, "whole")
    d = ss.declare_replicates(survey_design(ddf, strata="agency_id", fpc="N_h"), names,
                              kind="bootstrap")
    with pytest.raises(SatsampleError, match="cannot be applied to them on Dask"):
        poststratify(d, ["sex", "age_group"], controls["cells"])
