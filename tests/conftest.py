"""Shared fixtures: loaders of the R reference cases in ``tests/reference``.

The cases travel with the repository (see ``tests/reference/README.md`` for their
provenance), so the tests that compare with R never skip for want of data.
Fixtures return fresh objects (callers may not modify the cached JSON: they get a
deep copy).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
ITEMS = tuple(f"q{i:02d}" for i in range(1, 23))


@cache
def _json(name: str) -> dict[str, Any]:
    with open(REFERENCE_DIR / "cases" / name, encoding="utf-8") as fh:
        return json.load(fh)


@cache
def _csv(relpath: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE_DIR / relpath)


def load_case(name: str) -> dict[str, Any]:
    """The JSON of a reference case (e.g. ``"A_stratified_srs"``), as a fresh dict."""
    return copy.deepcopy(_json(f"{name}.json"))


def load_data(name: str) -> pd.DataFrame:
    """A CSV of ``reference/data`` (e.g. ``"sample_strat"``), as a fresh DataFrame."""
    return _csv(f"data/{name}.csv").copy()


def load_case_csv(name: str) -> pd.DataFrame:
    """A CSV of ``reference/cases`` (e.g. ``"D_small_repweights_jkn"``)."""
    return _csv(f"cases/{name}.csv").copy()


def add_indicator_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with ``s_k`` (1/0/NaN satisfied), ``n_k`` and ``d_k`` columns for q01..q22."""
    out = df.copy()
    for item in ITEMS:
        k = item[1:]
        q = out[item]
        sat = q.isin([4, 5])
        usable = q.isin([1, 2, 3, 4, 5])
        out[f"s{k}"] = np.where(usable, sat.astype(float), np.nan)
        out[f"n{k}"] = sat.astype(float)
        out[f"d{k}"] = usable.astype(float)
    return out


def assert_rel(actual: Any, expected: Any, *, rtol: float = 1e-10, atol: float = 0.0,
               what: str = "") -> None:
    """``|a - e| <= rtol |e| + atol`` elementwise, NaN matching NaN (README tolerance rule)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


@pytest.fixture
def reference_dir() -> Path:
    """Path of ``tests/reference``."""
    return REFERENCE_DIR


@pytest.fixture
def sample_strat() -> pd.DataFrame:
    """``sample_strat.csv`` (case A sample: 717 respondents, 28 agencies)."""
    return load_data("sample_strat")


@pytest.fixture
def sample_twostage() -> pd.DataFrame:
    """``sample_twostage.csv`` (case B two-stage sample)."""
    return load_data("sample_twostage")


@pytest.fixture
def sample_twostage_lonely() -> pd.DataFrame:
    """``sample_twostage_lonely.csv`` (case B with a lonely PSU in DIS04)."""
    return load_data("sample_twostage_lonely")


@pytest.fixture
def reference_questionnaire():
    """The 22-item, 5-element questionnaire of the reference cases."""
    from satsample.questionnaire import load_questionnaire

    return load_questionnaire("reference_22")


@pytest.fixture(scope="session")
def dask_client():
    """A ``dask.distributed`` LocalCluster of 2 worker processes (1 thread each), once per session.

    Worker processes inherit ``PYTHONPATH``, so they import the same ``satsample``.
    While the client is open it is dask's default scheduler.
    """
    distributed = pytest.importorskip("dask.distributed")
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=":0") as cluster,
          distributed.Client(cluster) as client):
        yield client
