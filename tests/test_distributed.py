"""satisfaction_index_dask (a deprecated alias of the Dask backend) equals the in-memory index.

The alias is survey_design(ddf) + bootstrap + satisfaction_index; these tests
keep its behaviour for its last release (the backend itself: test_dask_backend.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

import satsample as ss  # noqa: E402
from satsample._validation import DesignError, SatsampleError  # noqa: E402
from satsample.distributed import satisfaction_index_dask  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:satisfaction_index_dask is deprecated:DeprecationWarning")

R = 40
LEVELS = ("overall", "elements", "items")
NUMERIC = ("estimate", "se", "ci_low", "ci_high", "df", "deff", "n")


@pytest.fixture(scope="module")
def sample():
    pop = ss.make_population(n_users=20_000, n_agencies=10, rng=3)
    drawn = ss.select(pop.frame, ids="user_id", strata="agency_id", n=200, method="srswor",
                      rng=4)
    answers = ss.simulate_responses(pop, drawn.sample, rng=5)
    # rows grouped by stratum (200 per stratum) so that partitions can hold whole strata;
    # clusters of 5 rows whose labels are NOT in row order within the stratum
    pdf = answers.sort_values("stratum", kind="stable").reset_index(drop=True)
    rank = pdf.groupby("stratum").cumcount().to_numpy()
    pdf["cluster"] = pdf["stratum"].astype(str) + "-" + pd.Series(
        ((rank // 5) * 7) % 40).map("{:02d}".format)
    return pdf, pop.questionnaire


def _memory(pdf, q, *, by=None, psu=None, rng=7, strata="agency_id", lonely_psu="fail",
            mse=False, **kw):
    design = ss.survey_design(pdf, strata=strata, weights="design_weight", ids=psu,
                              lonely_psu=lonely_psu)
    design = ss.bootstrap(design, n_replicates=R, rng=rng, materialize=False, mse=mse)
    return ss.satisfaction_index(design, q, by=by, **kw)


def _dask(ddf, q, *, by=None, psu=None, rng=7, strata="agency_id", **kw):
    return satisfaction_index_dask(ddf, q, strata=strata, weights="design_weight", by=by,
                                   psu=psu, n_replicates=R, rng=rng, **kw)


def _whole(pdf):
    """Three partitions cut at stratum boundaries (rows 0-599, 600-1399, 1400-1999)."""
    ddf = dd.from_pandas(pdf, npartitions=1)
    return ddf.repartition(divisions=[0, 600, 1400, len(pdf) - 1])


def _assert_same(res, ref, *, rtol=1e-12, exact=False):
    for level in LEVELS:
        a, b = getattr(res, level), getattr(ref, level)
        assert list(a.columns) == list(b.columns)
        label_cols = [c for c in a.columns if c not in NUMERIC]
        pd.testing.assert_frame_equal(a[label_cols], b[label_cols])
        np.testing.assert_array_equal(a["n"].to_numpy(), b["n"].to_numpy())
        for col in ("estimate", "se", "ci_low", "ci_high", "df", "deff"):
            x, y = a[col].to_numpy(), b[col].to_numpy()
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
            if exact:
                np.testing.assert_array_equal(x, y, err_msg=f"{level}.{col}")
            else:
                np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=f"{level}.{col}")
    for key, arr in ref.replicate_estimates.items():
        if exact:
            np.testing.assert_array_equal(res.replicate_estimates[key], arr)
        else:
            np.testing.assert_allclose(res.replicate_estimates[key], arr, rtol=rtol, atol=0)
    assert res.empty_cells == ref.empty_cells
    assert dict(res.design_summary) == dict(ref.design_summary)
    assert res.by == ref.by


def test_alias_is_deprecated(sample):
    pdf, q = sample
    with pytest.warns(DeprecationWarning, match="satisfaction_index_dask is deprecated"):
        _dask(_whole(pdf), q)


# ------------------------------------------------------- equality with memory
@pytest.mark.parametrize("by", [None, "agency_id", ["agency_level", "channel"]])
def test_whole_strata_per_partition(sample, by):
    pdf, q = sample
    ddf = _whole(pdf)
    assert ddf.npartitions == 3
    res = _dask(ddf, q, by=by)
    assert res.options["shuffled"] is False and res.options["engine"] == "dask"
    ref = _memory(pdf, q, by=by)
    # domains = strata: every domain's totals come from one partition, in the same order
    _assert_same(res, ref, exact=by == "agency_id")


@pytest.mark.parametrize("by", [None, "agency_level"])
def test_strata_split_across_partitions_are_shuffled(sample, by):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=3)  # cuts at rows 667, 1334: strata split
    res = _dask(ddf, q, by=by)
    assert res.options["shuffled"] is True
    _assert_same(res, _memory(pdf, q, by=by))


def test_interleaved_rows_keep_their_order_through_the_shuffle(sample):
    # rows of every stratum in every partition: each row's PSU rank (its row order
    # within the stratum, psu=None) must survive the shuffle
    pdf, q = sample
    data = pdf.iloc[np.random.default_rng(1).permutation(len(pdf))].reset_index(drop=True)
    ddf = dd.from_pandas(data, npartitions=4)
    res = _dask(ddf, q, by="channel", strata="stratum")
    _assert_same(res, _memory(data, q, by="channel", strata="stratum"))
    # a different row order is a different (equally valid) draw
    other = _memory(pdf, q, by="channel", strata="stratum")
    assert not np.allclose(res.overall["se"], other.overall["se"], rtol=1e-6)


def test_empty_partitions(sample):
    pdf, q = sample
    ddf = _whole(pdf)
    gone = pdf["stratum"].iloc[:600].unique()  # the strata of partition 0
    assert gone.size == 3
    kept = ddf[~ddf["stratum"].isin(list(gone))]
    sub = pdf[~pdf["stratum"].isin(gone)].reset_index(drop=True)
    res = _dask(kept, q, by="agency_level", psu="cluster")
    assert res.options["shuffled"] is False and res.design_summary["n"] == 1400
    _assert_same(res, _memory(sub, q, by="agency_level", psu="cluster"))
    # more partitions than strata: the shuffle leaves some partitions empty
    many = _dask(dd.from_pandas(pdf, npartitions=12), q, by="agency_level")
    assert many.options["shuffled"] is True
    _assert_same(many, _memory(pdf, q, by="agency_level"))


@pytest.mark.parametrize("split", [False, True])
def test_clusters(sample, split):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=3) if split else _whole(pdf)
    res = _dask(ddf, q, by="agency_level", psu="cluster")
    ref = _memory(pdf, q, by="agency_level", psu="cluster")
    assert ref.design_summary["psu"] == 400
    _assert_same(res, ref)


def test_options_mse_logit_and_no_deff(sample):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=2)
    res = _dask(ddf, q, by="agency_id", mse=True, ci_method="logit", level=0.9)
    _assert_same(res, _memory(pdf, q, by="agency_id", mse=True, ci_method="logit", level=0.9))
    assert res.options["mse"] is True
    lean = _dask(_whole(pdf), q, by="agency_id", deff=None)
    assert lean.options["deff"] is None
    assert lean.overall["deff"].isna().all()
    full = _dask(_whole(pdf), q, by="agency_id")
    np.testing.assert_array_equal(lean.items["se"], full.items["se"])


def test_mean_score(sample):
    pdf, q = sample
    res = _dask(_whole(pdf), q, by="agency_level", measure="mean_score")
    _assert_same(res, _memory(pdf, q, by="agency_level", measure="mean_score"))
    assert res.overall["estimate"].between(1, 5).all()


def test_generator_rng_draws_the_key_as_bootstrap_does(sample):
    pdf, q = sample
    res = _dask(_whole(pdf), q, rng=np.random.default_rng(123))
    _assert_same(res, _memory(pdf, q, rng=np.random.default_rng(123)))


# ---------------------------------------------------------------- schedulers
@pytest.mark.parametrize("split", [False, True])
def test_synchronous_and_threaded_schedulers_agree_exactly(sample, split):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=3) if split else _whole(pdf)
    # tasks shuffle: a session's distributed client (tests/conftest.py) would make dask pick
    # its P2P shuffle, which only runs on the distributed scheduler
    with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
        a = _dask(ddf, q, by="agency_level")
    with dask.config.set({"scheduler": "threads", "num_workers": 3,
                          "dataframe.shuffle.method": "tasks"}):
        b = _dask(ddf, q, by="agency_level")
    for level in LEVELS:
        pd.testing.assert_frame_equal(getattr(a, level), getattr(b, level), check_exact=True)
    for key in a.replicate_estimates:
        np.testing.assert_array_equal(a.replicate_estimates[key], b.replicate_estimates[key])


def test_input_not_modified(sample):
    pdf, q = sample
    before = pdf.copy()
    ddf = dd.from_pandas(pdf, npartitions=3)
    seen = ddf.compute()
    _dask(ddf, q)
    pd.testing.assert_frame_equal(ddf.compute(), seen)
    assert list(ddf.columns) == list(before.columns)
    pd.testing.assert_frame_equal(pdf, before)


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kw", "name"), [
    ({"strata": "no_such_stratum"}, "no_such_stratum"),
    ({"weights": "wt"}, "wt"),
    ({"by": "region"}, "region"),
    ({"psu": "school"}, "school"),
])
def test_missing_column_is_named(sample, kw, name):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=2)
    args = {"strata": "agency_id", "weights": "design_weight", **kw}
    with pytest.raises(SatsampleError, match=rf"column\(s\) '{name}' not found"):
        satisfaction_index_dask(ddf, q, n_replicates=R, rng=1, **args)


def test_missing_item_column(sample):
    pdf, q = sample
    ddf = dd.from_pandas(pdf.drop(columns="q07"), npartitions=2)
    with pytest.raises(SatsampleError, match=r"item column\(s\) 'q07' .*not found"):
        _dask(ddf, q)


def test_missing_strata_values(sample):
    pdf, q = sample
    data = pdf.assign(stratum=pdf["stratum"].where(pdf.index % 500 != 3))
    with pytest.raises(SatsampleError, match=r"partition 0: strata column 'stratum' has 2 missing"):
        _dask(dd.from_pandas(data, npartitions=2), q, strata="stratum")


def test_invalid_answer_names_partition_and_column(sample):
    pdf, q = sample
    data = pdf.copy()
    data.loc[1500, "q05"] = 42.0
    with pytest.raises(SatsampleError, match=r"partition 2: .*'q05': 1 row\(s\) with invalid"):
        _dask(_whole(data), q)


def test_zero_weight(sample):
    pdf, q = sample
    data = pdf.copy()
    data.loc[10, "design_weight"] = 0.0
    with pytest.raises(SatsampleError, match=r"partition 0: weights 'design_weight': 1 value"):
        _dask(_whole(data), q)


def test_lonely_psu(sample):
    pdf, q = sample
    data = pdf.copy()
    first = data["stratum"] == data["stratum"].iloc[0]
    data.loc[first, "cluster"] = "solo"
    with pytest.raises(DesignError, match=r"only one PSU"):
        _dask(_whole(data), q, psu="cluster")
    res = _dask(_whole(data), q, psu="cluster", lonely_psu="remove", by="agency_id")
    ref = _memory(data, q, psu="cluster", lonely_psu="remove", by="agency_id")
    _assert_same(res, ref)


def test_clusters_not_nested(sample):
    pdf, q = sample
    data = pdf.copy()
    data.loc[[0, 1999], "cluster"] = "shared"  # first and last strata, different partitions
    with pytest.raises(DesignError, match=r"'shared' of column 'cluster' appears in 2 different"):
        _dask(_whole(data), q, psu="cluster")
    data.loc[[0, 1999], "cluster"] = ["shared", "x"]
    data.loc[[0, 590], "cluster"] = "shared"  # two strata of partition 0
    with pytest.raises(DesignError, match=r"cluster 'shared' of column 'cluster' appears in 2"):
        _dask(_whole(data), q, psu="cluster")


def test_bad_arguments(sample):
    pdf, q = sample
    ddf = dd.from_pandas(pdf, npartitions=2)
    with pytest.raises(SatsampleError, match=r"dask\.dataframe\.DataFrame"):
        satisfaction_index_dask(pdf, q, strata="agency_id", weights="design_weight")
    with pytest.raises(SatsampleError, match="replicates=1"):
        satisfaction_index_dask(ddf, q, strata="agency_id", weights="design_weight",
                                n_replicates=1)
    with pytest.raises(SatsampleError, match="deff"):
        _dask(ddf, q, deff="srs")
