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
            it = res.items
            out = {"est": it.pivot(index="agency_id", columns="item", values="estimate")[ITEMS]
                   .to_numpy(),
                   "se": it.pivot(index="agency_id", columns="item", values="se")[ITEMS]
                   .to_numpy()}
            assert res.options["replay"] == "cells"  # the steps were replayed on cell tables
            out["_sub"] = {"design": t1 - t0, "weighting": t2 - t1, "index": t3 - t2}
            return out
        return run
    raise NotImplementedError(task)
