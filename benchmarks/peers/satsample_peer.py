"""satsample: public API only.

T1 ``weighting.rake``, T2 ``weighting.poststratify``, T3/T4 ``estimation.proportion(variance="taylor")``,
T5/T5d ``replicate.bootstrap(materialize=False)`` (lazy Rao-Wu, m_h = n_h - 1) +
``proportion(variance="replicate")``, T6 ``replicate.jackknife(materialize=False)`` (5 PSUs per
agency) + ``proportion``, T6e ``replicate.jackknife(materialize=False)`` on the element design
(R = n, closed form from unit totals) + ``proportion``.  T3-T6e also compute a design effect
(``deff="srswr"``), which no peer does.  T7 (the whole yearly pipeline, design construction
included): ``survey_design`` -> ``replicate.bootstrap(materialize=False)`` ->
``weighting.adjust_nonresponse(classes="agency_id")`` -> ``weighting.rake`` (sex, age) ->
``index.satisfaction_index(by="agency_id", variance="replicate")`` (``reference_22``
questionnaire: the 22 criteria are the compared answer; the index and elements come with them).
T7d: the same calls on ``survey_design(dd.read_parquet(...))`` on a ``dask.distributed``
LocalCluster (``dask_bench.py``); until the Dask backend exists it falls back on
``satsample.distributed.satisfaction_index_dask`` (the index without weighting) and says so.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from workloads import AGE, ITEMS, SC, SEX, H

import satsample.estimation as est
from satsample import replicate, weighting
from satsample.design import survey_design
from satsample.index import satisfaction_index
from satsample.questionnaire import load_questionnaire


def _out(e, by: bool):
    t = e.table
    G = H if by else 1
    return {"est": t["estimate"].to_numpy().reshape(len(SC), G).T if not by else
            t.pivot(index="agency_id", columns="variable", values="estimate")[SC].to_numpy(),
            "se": t["se"].to_numpy().reshape(len(SC), G).T if not by else
            t.pivot(index="agency_id", columns="variable", values="se")[SC].to_numpy()}


def _index_out(res) -> dict:
    """The 22 criteria by agency (``est``, ``se``: 100 x 22) and the index by agency."""
    it = res.items
    ov = res.overall.set_index("agency_id").sort_index()
    return {"est": it.pivot(index="agency_id", columns="item", values="estimate")[ITEMS]
            .to_numpy(),
            "se": it.pivot(index="agency_id", columns="item", values="se")[ITEMS].to_numpy(),
            "index_est": ov["estimate"].to_numpy(), "index_se": ov["se"].to_numpy()}


def _prepare_t7d(meta: dict, reps: int):
    """T7 on Dask: the Parquet set read lazily on a LocalCluster (``dask_bench``).

    ``meta`` holds ``path`` (the set), ``margins`` (list of (column, Series)) and ``dask``
    (workers, threads, memory_gib).  The cluster is started and the kernels compiled on the
    workers by a run on a small set (untimed); each timed call returns the workers' peak
    memory during that call under ``_info``.
    """
    import dask_bench

    q = load_questionnaire("reference_22")
    cluster, client = dask_bench.start_cluster(**meta["dask"])
    meta["_close"] = (client, cluster)
    mem = dask_bench.WorkerMemory(client)
    pipeline = dask_bench.t7_dask
    try:  # warm-up on the small set: compiles the kernels in every worker
        pipeline(meta["warm_path"], meta["margins"], q, reps)
    except Exception as exc:
        meta["fallback_reason"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        pipeline = dask_bench.index_dask
    if pipeline is dask_bench.index_dask:
        dask_bench.index_dask(meta["warm_path"], q, reps)

    def run():
        mem.reset()
        mem.start()
        try:
            if pipeline is dask_bench.t7_dask:
                res, sub, what = pipeline(meta["path"], meta["margins"], q, reps)
            else:
                res, sub, what = pipeline(meta["path"], q, reps)
        finally:
            info = mem.stop()
        out = _index_out(res)
        out["_sub"] = sub
        info.update(pipeline=what, options={k: str(v) for k, v in res.options.items()
                                            if k in ("engine", "replay", "calibrated",
                                                     "partitions", "shuffled")})
        if "fallback_reason" in meta:
            info["fallback_reason"] = meta["fallback_reason"]
        out["_info"] = info
        return out
    return run


def prepare(task: str, df, meta, reps: int):
    pop = meta["pop"]
    if task == "T1":
        d = survey_design(df, strata="agency_id", weights="design_weight")
        margins = [("sex", pd.Series(pop["sex_tot"], index=SEX)),
                   ("age", pd.Series(pop["age_tot"], index=AGE)),
                   ("agency_id", pd.Series(pop["N_h"].astype(float),
                                           index=[f"A{h:03d}" for h in range(H)]))]

        def run():
            return {"w": np.asarray(weighting.rake(d, margins, max_iter=100, epsilon=1e-6).weights)}
        return run
    if task == "T2":
        d = survey_design(df, strata="agency_id", weights="design_weight")
        popc = pd.Series(meta["cell_totals"])

        def run():
            return {"w": np.asarray(weighting.poststratify(d, "cell", popc).weights)}
        return run
    if task in ("T3", "T4"):
        d = survey_design(df, strata="agency_id", weights="w", fpc="N_h")
        by = "agency_id" if task == "T4" else None

        def run():
            return _out(est.proportion(d, SC, by=by, variance="taylor", deff="srswr"), by is not None)
        return run
    if task in ("T5", "T5d"):
        d = survey_design(df, strata="agency_id", weights="w")
        by = "agency_id" if task == "T5d" else None

        def run():
            dl = replicate.bootstrap(d, n_replicates=reps, kind="subbootstrap", rng=11,
                                     materialize=False)
            return _out(est.proportion(dl, SC, by=by, variance="replicate", deff="srswr"),
                        by is not None)
        return run
    if task == "T6":
        d = survey_design(df, ids="psu", strata="agency_id", weights="w")

        def run():
            dj = replicate.jackknife(d, kind="JKn", materialize=False)
            return _out(est.proportion(dj, SC, variance="replicate", deff="srswr"), False)
        return run
    if task == "T6e":
        d = survey_design(df, strata="agency_id", weights="w")  # every response its own PSU

        def run():
            dj = replicate.jackknife(d, kind="JKn", materialize=False)  # R = n, closed form
            return _out(est.proportion(dj, SC, variance="replicate", deff="srswr"), False)
        return run
    if task == "T7":
        data = df[["agency_id", "design_weight", "sex", "age", "responded", *ITEMS]]
        q = load_questionnaire("reference_22")
        margins = [("sex", pd.Series(pop["sex_tot"], index=SEX)),
                   ("age", pd.Series(pop["age_tot"], index=AGE))]

        def run():
            t0 = time.perf_counter()
            d = survey_design(data, strata="agency_id", weights="design_weight")
            t1 = time.perf_counter()
            d = replicate.bootstrap(d, n_replicates=reps, kind="subbootstrap", rng=11,
                                    materialize=False)
            d = weighting.adjust_nonresponse(d, "responded", classes="agency_id")
            d = weighting.rake(d, margins, max_iter=100, epsilon=1e-10)
            t2 = time.perf_counter()
            res = satisfaction_index(d, q, by="agency_id", variance="replicate")
            t3 = time.perf_counter()
            assert res.options["replay"] == "cells"  # the steps were replayed on cell tables
            out = _index_out(res)
            out["_sub"] = {"design": t1 - t0, "weighting": t2 - t1, "index": t3 - t2}
            return out
        return run
    if task == "T7d":
        return _prepare_t7d(meta, reps)
    raise NotImplementedError(task)
