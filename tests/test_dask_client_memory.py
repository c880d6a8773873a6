"""The client's memory for the replicates of a Dask design does not grow with the PSUs.

Element sampling (every row its own PSU, as SIPAS): the schemes are built from the design's
stratum tables, so the client allocates O(R + H) for Rao-Wu (O(R) for a jackknife's rscales),
and the replicates equal those of the same design in memory.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

import satsample as ss  # noqa: E402

N = 200_000


@pytest.fixture(scope="module")
def designs():
    rng = np.random.default_rng(3)
    h = np.repeat(np.arange(20), rng.multinomial(N - 20_000, np.full(20, 0.05)) + 1_000)
    df = pd.DataFrame({"h": h, "w": 1.0 + rng.random(N), "N_h": 50_000})
    df.loc[h == 0, "N_h"] = int((h == 0).sum())  # a stratum sampled with certainty
    # one partition per stratum (no shuffle: the local scheduler runs every pass)
    ddf = dd.concat([dd.from_pandas(g, npartitions=1) for _, g in df.groupby("h")])
    with dask.config.set(scheduler="sync"):
        lazy = ss.survey_design(ddf, strata="h", weights="w", fpc="N_h")
    assert not lazy.shuffled
    return lazy, ss.survey_design(df, strata="h", weights="w", fpc="N_h")


def _traced(call):
    call()  # imports and compilations first: the second call's allocations are traced
    tracemalloc.start()
    try:
        out = call()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_rao_wu_client_memory_independent_of_n(designs):
    lazy, mem = designs
    with dask.config.set(scheduler="sync"):
        got, peak = _traced(lambda: ss.bootstrap(lazy, n_replicates=300, rng=7,
                                                 materialize=False))
    # R x PSUs above the rank limit: degf R - 1 (as in memory), and nothing per PSU: a
    # per-PSU design took > 100 bytes per row (20 MB here)
    assert peak < 1_000_000, peak
    ref = ss.bootstrap(mem, n_replicates=300, rng=7, materialize=False).replicates
    reps = got.replicates
    assert (reps.degf, reps.scale, reps.seed, reps.n_replicates) == (
        ref.degf, ref.scale, ref.seed, ref.n_replicates)
    np.testing.assert_array_equal(reps.rscales, ref.rscales)


def test_jackknife_client_memory_is_its_rscales(designs):
    lazy, mem = designs
    with dask.config.set(scheduler="sync"):
        got, peak = _traced(lambda: ss.jackknife(lazy, materialize=False))
    ref = ss.jackknife(mem, materialize=False).replicates
    reps = got.replicates
    assert reps.n_replicates == ref.n_replicates == N - int((lazy.frame["h"] == 0).sum()
                                                            .compute(scheduler="sync"))
    # rscales (8 bytes per replicate) and one temporary; a per-PSU design took > 200 bytes
    assert peak < 24 * reps.n_replicates, peak
    assert (reps.degf, reps.scale) == (ref.degf, ref.scale)
    np.testing.assert_array_equal(reps.rscales, ref.rscales)
