"""Time-free checks of the Parquet benchmark data (``parquet_data.py``).

    python -m pytest benchmarks/test_parquet_data.py -q

Not part of the main ``tests/`` suite (testpaths = tests).  A small set written to Parquet and
read back (pandas, Dask) equals the in-memory frame; the deterministic parts (allocation,
N_h, design weights, PSU sizes) equal those of ``workloads.make_data``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import parquet_data as pq_data  # noqa: E402
from workloads import AGE, ITEMS, SEX, H, make_data  # noqa: E402

N = 3000

# dask 2026.8 calls DataFrame.reset_index(inplace=True), deprecated in pandas 3.1
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return pq_data.write(N, d, seed=5), d


def test_roundtrip_pandas_equals_in_memory(written):
    path, _ = written
    df, _ = pq_data.make_frame(N, seed=5)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)  # values, dtypes, row order
    assert list(df.columns) == pq_data.COLUMNS


def test_roundtrip_dask_equals_in_memory(written):
    dd = pytest.importorskip("dask.dataframe")
    path, _ = written
    df, _ = pq_data.make_frame(N, seed=5)
    ddf = dd.read_parquet(str(path), split_row_groups=False)
    assert ddf.npartitions == H  # one partition per agency: whole strata
    parts = ddf.to_delayed()
    first = parts[3].compute()
    assert set(first["agency_id"]) == {"A003"}
    back = ddf.compute(scheduler="synchronous").reset_index(drop=True)
    # Dask reads strings as its own string dtype (pd.NA); the values are the same
    for c in ("agency_id", "sex", "age"):
        assert back[c].isna().sum() == 0
        back[c] = back[c].astype("str")
    pd.testing.assert_frame_equal(back, df)


def test_deterministic_and_seeded():
    a, _ = pq_data.make_frame(1000, seed=1)
    b, _ = pq_data.make_frame(1000, seed=1)
    c, _ = pq_data.make_frame(1000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a[ITEMS].equals(c[ITEMS])
    p = pq_data.plan(1000, seed=1)
    # an agency alone is the same rows as in the whole frame
    h = 17
    rows = a[a["agency_id"] == f"A{h:03d}"].reset_index(drop=True)
    pd.testing.assert_frame_equal(pq_data.agency_frame(p, h), rows)


def test_same_design_as_make_data(written):
    path, _ = written
    df, margins = pq_data.make_frame(N, seed=5)
    ref, meta = make_data(N)
    assert len(df) == len(ref)
    # allocation, N_h and design weights are the same by agency
    pd.testing.assert_series_equal(df["agency_id"].value_counts().sort_index(),
                                   ref["agency_id"].value_counts().sort_index(),
                                   check_index_type=False)
    for col in ("N_h", "design_weight"):
        np.testing.assert_array_equal(df.groupby("agency_id")[col].first().to_numpy(),
                                      ref.groupby("agency_id")[col].first().to_numpy())
    # 5 variance PSUs per agency, balanced as in make_data
    sizes = df.groupby(["agency_id", "psu"]).size()
    ref_sizes = ref.groupby(["agency_id", "psu"]).size()
    np.testing.assert_array_equal(sizes.to_numpy(), ref_sizes.to_numpy())
    # frame margins of the rake: the population totals of workloads
    pop = meta["pop"]
    assert margins["sex"] == dict(zip(SEX, pop["sex_tot"].tolist()))
    assert margins["age"] == dict(zip(AGE, pop["age_tot"].tolist()))
    assert sum(margins["agency_id"].values()) == int(pop["N_h"].sum())
    assert json.loads((path / "_margins.json").read_text()) == margins
    meta_w = json.loads((path / "_meta.json").read_text())
    assert meta_w["n"] == len(df) and meta_w["files"] == H
    assert sum(meta_w["rows_per_file"]) == len(df)


def test_same_distribution_as_make_data():
    """Categorical shares within 5 binomial SDs of make_data's probabilities (n = 20,000)."""
    df, _ = pq_data.make_frame(20_000, seed=3)
    n = len(df)

    def near(share, p):
        return abs(share - p) < 5 * np.sqrt(p * (1 - p) / n)

    assert near((df["sex"] == "F").mean(), 0.55)
    for a, p in zip(AGE, [0.10, 0.20, 0.22, 0.20, 0.16, 0.12]):
        assert near((df["age"] == a).mean(), p)
    items = df[ITEMS].to_numpy()
    assert items.min() == 1 and items.max() == 5
    assert 0.6 < df["responded"].mean() < 0.8  # about 70 %


def test_existing_set_is_reused(written):
    path, d = written
    stamp = (path / "_meta.json").stat().st_mtime_ns
    assert pq_data.write(N, d, seed=5) == path
    assert (path / "_meta.json").stat().st_mtime_ns == stamp
