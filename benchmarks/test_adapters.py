"""Time-free checks of the benchmark harness and of every installed peer adapter.

    python -m pytest benchmarks/test_adapters.py -q

Not part of the main ``tests/`` suite (testpaths = tests).  Each adapter runs
in-process on a small sample and its answer must pass run.py's check against
satsample's answer; balance runs through run.py's child in its own interpreter
(skipped when ``SATSAMPLE_BALANCE_PYTHON`` is not usable).  No timing assertions.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import run  # noqa: E402
from workloads import make_data  # noqa: E402

N = 6000
REPS = 40


@pytest.fixture(scope="module")
def data():
    return make_data(N)


_cache: dict = {}


def _answer(peer: str, task: str, data) -> dict:
    key = (peer, task)
    if key not in _cache:
        df, meta = data
        mod = importlib.import_module(f"peers.{run.MODULES[peer]}")
        res = mod.prepare(task, df, meta, REPS)()
        res.pop("_sub", None)
        c = {"result": {k: np.asarray(v, dtype=np.float64) for k, v in res.items()}}
        if "w" in res:
            c["margin_err"] = run.margin_error(c["result"]["w"], task, meta)
        _cache[key] = c
    return _cache[key]


def test_margin_error_by_hand():
    meta = {"codes": [np.array([0, 0, 1]), np.array([0, 1, 1])],
            "totals": [np.array([4.0, 2.0]), np.array([2.0, 5.0])]}
    w = np.array([1.0, 3.0, 2.0])
    # margin 1: totals (4, 2) exact; margin 2: (1, 5) vs (2, 5) -> |1 - 2| / 2 = 0.5
    assert run.margin_error(w, "T1", meta) == pytest.approx(0.5)
    meta2 = {"cell": np.array([0, 1, 1]), "cell_tot": np.array([2.0, 4.0])}
    assert run.margin_error(w, "T2", meta2) == pytest.approx(0.5)  # (1, 5) vs (2, 4)


def test_skip_reason():
    args = SimpleNamespace(timeout=300.0, max_rss_gib=20.0)
    ok = {"status": "ok", "median": 100.0, "rss_gib": 1.0}
    assert run.skip_reason([], 50_000, args) is None
    assert run.skip_reason([(50_000, ok)], 100_000, args) is None  # 200 s predicted
    assert run.skip_reason([(50_000, ok)], 200_000, args) == "skip (>400 s pred.)"
    big = {"status": "ok", "median": 1.0, "rss_gib": 6.0}
    assert run.skip_reason([(50_000, big)], 200_000, args) == "skip (>24.0 GiB pred.)"
    dead = {"status": "timeout > 300 s", "timeout": True}
    assert run.skip_reason([(50_000, dead)], 200_000, args) == "skip (timed out at n=50,000)"
    assert run.skip_reason([(50_000, dead), (200_000, {"status": "skip", "skipped": True})],
                           1_000_000, args) == "skip (timed out at n=50,000)"
    fat = {"status": "killed: RSS > 20 GiB", "timeout": True}
    assert run.skip_reason([(50_000, fat)], 200_000, args) == "skip (RSS limit at n=50,000)"


def test_check_detects_wrong_answers():
    ref = {"result": {"est": np.full((1, 3), 0.5), "se": np.full((1, 3), 0.01)}}
    bad = {"result": {"est": np.full((1, 3), 0.5), "se": np.full((1, 3), 0.01117)}}
    assert not run.check("x", "T6", bad, ref, "satsample", 500)[1]  # samplics' 11.7 % pitfall
    assert run.check("x", "T6", ref, ref, "satsample", 500)[1]
    w = {"result": {"w": np.array([1.0, 2.0])}, "margin_err": 1e-12}
    w2 = {"result": {"w": np.array([1.0, 2.5])}, "margin_err": 1e-12}
    assert not run.check("x", "T2", w2, w, "satsample", 500)[1]
    assert run.check("weightipy", "T2", w2, w, "satsample", 500)[1]  # emulated: margins only


CASES = [(p, t) for p in ("svy", "samplics", "weightipy", "numpy") for t in run.TASKS
         if t in run.SUPPORT[p] and (p, t) not in run.INFEASIBLE]


# samplics 0.6.1 calls DataFrame.sort_values(inplace=True), deprecated in pandas 3.1
@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
@pytest.mark.parametrize(("peer", "task"), CASES)
def test_adapter_answer_matches_satsample(peer, task, data):
    if importlib.util.find_spec(run.PACKAGES[peer]) is None:
        pytest.skip(f"{peer} not installed")
    ref = _answer("satsample", task, data)
    c = _answer(peer, task, data)
    text, ok = run.check(peer, task, c, ref, "satsample", REPS)
    assert ok, text


@pytest.mark.parametrize("task", ["T1", "T2"])
def test_balance_through_its_interpreter(task, data, tmp_path):
    why = run.availability("balance")
    if why is not None:
        pytest.skip(why)
    args = SimpleNamespace(out=str(tmp_path), replicates=REPS, runs=0, timeout=300.0,
                           warmup_only_after=100.0, max_rss_gib=12.0)
    c = run.run_cell("balance", task, N, args)
    assert c["status"] == "ok", c["status"]
    text, ok = run.check("balance", task, c, _answer("satsample", task, data), "satsample", REPS)
    assert ok, text


def test_compare_dask_by_hand():
    base = {"est": np.array([[0.5, 0.25]]), "se": np.array([[0.1, np.nan]]),
            "index_est": np.array([60.0]), "index_se": np.array([2.0])}
    mem = {"result": base, "median": 4.0}
    other = {k: v.copy() for k, v in base.items()}
    other["est"][0, 1] = 0.25 * (1 + 3e-13)
    other["index_se"][0] = 2.0 * (1 - 1e-14)
    c = {"result": other, "median": 10.0}
    text, ok, info = run.compare_dask(c, mem)
    assert "time x2.50" in text
    assert ok
    assert info["ratio_to_memory"] == pytest.approx(2.5)
    assert info["max_rel_diff"]["est"] == pytest.approx(3e-13, rel=1e-3)
    assert info["max_rel_diff"]["se"] == 0.0  # NaN in both places counts as equal
    assert info["max_rel_diff"]["index_se"] == pytest.approx(1e-14, rel=1e-2)
    other["se"][0, 0] = 0.1 * (1 + 1e-8)
    assert not run.compare_dask(c, mem)[1]
    other["se"][0, 0] = 0.1
    other["se"][0, 1] = 0.2  # a NaN on one side only
    assert not run.compare_dask(c, mem)[1]
