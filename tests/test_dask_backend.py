"""The Dask backend on a LocalCluster (2 worker processes) equals the in-memory engine.

Partitions are cut against the strata: strata split over partitions, rows
interleaved, empty partitions.  The in-memory reference is the design of
``ddf.compute()`` (the same rows in the same order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import add_indicator_columns, load_data

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import satsample as ss  # noqa: E402
from satsample._validation import DesignError, SatsampleError  # noqa: E402
from satsample.design import WeightStep  # noqa: E402
from satsample.distributed import (  # noqa: E402
    DaskSurveyDesign,
    reduce,
    with_weight_factors,
)
from satsample.variance.taylor import taylor_variance  # noqa: E402

pytestmark = pytest.mark.usefixtures("dask_client")


def frame_of(pdf: pd.DataFrame, layout: str, *, seed: int = 0):
    """A Dask frame of ``pdf`` cut against its strata; returns (ddf, the same rows in memory).

    ``"split"``: 5 contiguous partitions of equal size (strata cut in two);
    ``"interleaved"``: rows in random order, 4 partitions; ``"empty"``: 6
    partitions, two of them empty, rows in random order; ``"whole"``: one
    stratum column's groups in 3 partitions (no shuffle needed).
    """
    n = len(pdf)
    rng = np.random.default_rng(seed)
    if layout == "split":
        pieces = np.array_split(np.arange(n), 5)
    elif layout == "interleaved":
        pieces = np.array_split(rng.permutation(n), 4)
    elif layout == "empty":
        cut = np.array_split(rng.permutation(n), 4)
        pieces = [cut[0], cut[1][:0], cut[1], cut[2], cut[3][:0], cut[3]]
    else:
        raise ValueError(layout)
    parts = [pdf.iloc[idx].reset_index(drop=True) for idx in pieces]
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=pdf.iloc[:0], verify_meta=False)
    return ddf, pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def strat():
    return add_indicator_columns(load_data("sample_strat"))


@pytest.fixture(scope="module")
def twostage():
    return load_data("sample_twostage")


# ------------------------------------------------------------------ the design
@pytest.mark.parametrize("layout", ["split", "interleaved", "empty"])
def test_design_matches_memory(strat, layout):
    ddf, pdf = frame_of(strat, layout)
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    mem = ss.survey_design(pdf, strata="agency_id", fpc="N_h")
    assert isinstance(d, DaskSurveyDesign)
    assert d.shuffled
    assert (d.n, d.n_strata, d.n_psu, d.degf) == (mem.n, mem.n_strata, mem.n_psu, mem.degf)
    np.testing.assert_array_equal(d.strata_labels, mem.strata_labels)
    assert d.history[0].method == "design"
    assert d.history[0].n_rows == mem.history[0].n_rows
    np.testing.assert_allclose(d.history[0].kish_deff, mem.history[0].kish_deff, rtol=1e-12)
    # the Taylor variance of a total: the sum of the partitions' (whole strata)
    y = "n01"
    v = reduce(d, lambda p: taylor_variance(p, p.weights * p.data[y].to_numpy(float)))
    ref = taylor_variance(mem, mem.weights * pdf[y].to_numpy(float))
    np.testing.assert_allclose(v, ref, rtol=1e-12)


def test_partition_designs_have_global_codes(twostage):
    ddf, pdf = frame_of(twostage, "interleaved", seed=3)
    kw = dict(ids=["commune_id", "user_id"], strata="district_id", fpc=["M_h", "N_hi"])
    d = ss.survey_design(ddf, **kw)
    mem = ss.survey_design(pdf, **kw)

    def codes(p):
        return {"rows": p.data["__satsample_row__"].to_numpy(), "strata": p.strata, "psu": p.psu,
                "n_strata": p.n_strata}

    parts = reduce(d, lambda p: [codes(p)], combine=lambda a, b: (a or []) + (b or []))
    rows = np.concatenate([c["rows"] for c in parts])
    assert np.array_equal(np.sort(rows), np.arange(mem.n))  # every row once
    for c in parts:
        np.testing.assert_array_equal(c["strata"], mem.strata[c["rows"]])
        np.testing.assert_array_equal(c["psu"], mem.psu[c["rows"]])
        assert c["n_strata"] == mem.n_strata
        assert np.all(np.diff(c["rows"]) > 0)  # global row order within a partition
    v = reduce(d, lambda p: taylor_variance(p, p.weights * p.data["q01"].fillna(0).to_numpy(float)))
    ref = taylor_variance(mem, mem.weights * pdf["q01"].fillna(0).to_numpy(float))
    np.testing.assert_allclose(v, ref, rtol=1e-12)


def test_whole_strata_are_not_shuffled(strat):
    pdf = strat.sort_values("agency_id", kind="stable").reset_index(drop=True)
    codes = pd.factorize(pdf["agency_id"], sort=True)[0]
    cut = [np.flatnonzero(codes < 10), np.flatnonzero((codes >= 10) & (codes < 20)),
           np.flatnonzero(codes >= 20)]
    ddf = dd.from_delayed([dask.delayed(pdf.iloc[c]) for c in cut], meta=pdf.iloc[:0])
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    assert not d.shuffled and d.n_partitions == 3


# --------------------------------------------------------------- bad input
def _raises_like_memory(pdf, ddf, match, exc=SatsampleError, **kw):
    with pytest.raises(exc, match=match):
        ss.survey_design(pdf, **kw)
    with pytest.raises(exc, match=match):
        ss.survey_design(ddf, **kw)


def test_bad_input_same_errors(strat, twostage):
    ddf, pdf = frame_of(strat, "interleaved")
    _raises_like_memory(pdf, ddf, "strata column.*'nope'.*not found", strata="nope")
    bad = strat.assign(w=1.0)
    bad.loc[5, "w"] = np.nan
    ddf, pdf = frame_of(bad, "split")
    _raises_like_memory(pdf, ddf, "weights 'w': 1 value", strata="agency_id", weights="w")
    with pytest.raises(SatsampleError, match="partition 0: weights 'w'"):
        ss.survey_design(ddf, strata="agency_id", weights="w")
    neg = strat.assign(w=1.0)
    neg.loc[700, "w"] = -1.0
    ddf, pdf = frame_of(neg, "split")
    _raises_like_memory(pdf, ddf, "negative", strata="agency_id", weights="w")
    zero = strat.assign(w=1.0)
    zero.loc[3, "w"] = 0.0
    ddf, pdf = frame_of(zero, "empty")
    _raises_like_memory(pdf, ddf, "are zero", strata="agency_id", weights="w")
    fpc = strat.copy()
    fpc.loc[0, "N_h"] = fpc.loc[0, "N_h"] + 1
    ddf, pdf = frame_of(fpc, "interleaved")
    _raises_like_memory(pdf, ddf, "varies within stratum", DesignError, strata="agency_id",
                        fpc="N_h")
    # clusters not nested, lonely PSU
    ddf, pdf = frame_of(twostage, "interleaved")
    _raises_like_memory(pdf, ddf, "not nested", DesignError, ids="commune_id", strata="sex",
                        weights="design_weight")
    lonely = load_data("sample_twostage_lonely")
    ddf, pdf = frame_of(lonely, "split")
    _raises_like_memory(pdf, ddf, "has only one PSU", DesignError, ids="commune_id",
                        strata="district_id", weights="design_weight")
    ag = sorted(strat["agency_id"].unique())
    one = pd.concat([strat[strat["agency_id"] == ag[0]], strat[strat["agency_id"] == ag[1]].head(1)])
    ddf, pdf = frame_of(one, "split")
    _raises_like_memory(pdf, ddf, "has only one PSU", DesignError, strata="agency_id",
                        fpc="N_h")


# ------------------------------------------------------------ weight columns
def test_with_weight_factors(strat):
    ddf, pdf = frame_of(strat, "empty")
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    mem = ss.survey_design(pdf, strata="agency_id", fpc="N_h")
    fac = np.where(pdf["sex"].to_numpy() == pdf["sex"].iloc[0], 1.5, 0.5)
    sex0 = pdf["sex"].iloc[0]

    def factors(part):
        return np.where(part.data["sex"].to_numpy() == sex0, 1.5, 0.5)

    step = WeightStep(method="test", params=(("what", "factors"),))
    d2 = with_weight_factors(d, factors, step=step)
    assert d2.history[-1].method == "test" and len(d.history) == 1
    ref = WeightStep.from_weights("test", mem.weights * fac)
    assert d2.history[-1].n_rows == ref.n_rows
    np.testing.assert_allclose(
        [d2.history[-1].weight_sum, d2.history[-1].kish_deff, d2.history[-1].weight_max],
        [ref.weight_sum, ref.kish_deff, ref.weight_max], rtol=1e-12)
    got = reduce(d2, lambda p: [(p.data["__satsample_row__"].to_numpy(), p.weights,
                                 p.design_weights)], combine=lambda a, b: (a or []) + (b or []))
    rows = np.concatenate([g[0] for g in got])
    w = np.empty(mem.n)
    w[rows] = np.concatenate([g[1] for g in got])
    np.testing.assert_array_equal(w, mem.weights * fac)
    dw = np.empty(mem.n)
    dw[rows] = np.concatenate([g[2] for g in got])
    np.testing.assert_array_equal(dw, mem.weights)

    def negative(part):
        return -np.ones(part.n)

    with pytest.raises(SatsampleError, match=r"partition \d: weights .* negative"):
        with_weight_factors(d, negative, step=step)
