"""svy (Rust core): documented public calls only (Sample.weighting / Sample.estimation)."""

from __future__ import annotations

import numpy as np
import polars as pl
import svy
from workloads import AGE, ITEMS, SEX, H

SC = ["s" + c[1:] for c in ITEMS]


def _props(est_list, by: bool):
    est = np.empty((H if by else 1, len(SC)))
    se = np.empty_like(est)
    for j, e in enumerate(est_list):
        t = e.to_polars()
        t = t.filter(pl.col(SC[j]) == 1)
        if by:
            t = t.sort("agency_id")
        est[:, j] = t["est"].to_numpy()
        se[:, j] = t["se"].to_numpy()
    return {"est": est, "se": se}


def prepare(task: str, df, meta, reps: int):
    cols = ["rid", "agency_id", "psu", "N_h", "w", "design_weight", "sex", "age", *SC]
    pdf = pl.from_pandas(df[cols])
    if task in ("T1", "T2"):
        s = svy.Sample(pdf, svy.Design(stratum="agency_id", wgt="design_weight"))
        pop = meta["pop"]
        if task == "T1":
            controls = {
                "sex": dict(zip(SEX, pop["sex_tot"].tolist())),
                "age": dict(zip(AGE, pop["age_tot"].tolist())),
                "agency_id": {f"A{h:03d}": float(pop["N_h"][h]) for h in range(H)},
            }

            def run():
                out = s.weighting.rake(controls=controls, tol=1e-6, max_iter=100)
                return {"w": out.data["rk_wgt"].to_numpy()}
        else:
            df2 = df.assign(cell=df["sex"] + "_" + df["age"])
            pdf2 = pl.from_pandas(df2[["agency_id", "design_weight", "cell"]])
            s = svy.Sample(pdf2, svy.Design(stratum="agency_id", wgt="design_weight"))
            controls = {k: float(v) for k, v in meta["cell_totals"].items()}

            def run():
                out = s.weighting.poststratify(controls=controls, cells="cell")
                return {"w": out.data["ps_wgt"].to_numpy()}
        return run
    if task in ("T3", "T4"):
        s = svy.Sample(pdf, svy.Design(stratum="agency_id", wgt="w", pop_size="N_h"))
        by = "agency_id" if task == "T4" else None

        def run():
            return _props(s.estimation.prop(SC, by=by, method="taylor"), by is not None)
        return run
    if task in ("T5", "T5d"):
        base = svy.Sample(pdf, svy.Design(stratum="agency_id", psu="rid", wgt="w"))
        by = "agency_id" if task == "T5d" else None

        def run():
            s = base.weighting.create_bs_wgts(reps, kind="rao-wu", rstate=11)
            return _props(s.estimation.prop(SC, by=by, method="replication"), by is not None)
        return run
    if task == "T6":
        base = svy.Sample(pdf, svy.Design(stratum="agency_id", psu="psu", wgt="w"))

        def run():
            s = base.weighting.create_jk_wgts()
            return _props(s.estimation.prop(SC, method="replication"), False)
        return run
    if task == "T7":
        # the same pipeline through svy's API: Sample (design) -> Rao-Wu bootstrap weights ->
        # nonresponse adjustment by agency (replicates adjusted alongside) -> rake on sex and
        # age (every replicate raked) -> proportions by agency with replicate SEs
        pdf7 = pl.from_pandas(df[["rid", "agency_id", "design_weight", "sex", "age", *SC]]
                              .assign(status=np.where(df["responded"], "rr", "nr")))
        pop = meta["pop"]
        controls = {"sex": dict(zip(SEX, pop["sex_tot"].tolist())),
                    "age": dict(zip(AGE, pop["age_tot"].tolist()))}

        def run():
            s = svy.Sample(pdf7, svy.Design(stratum="agency_id", psu="rid", wgt="design_weight"))
            s = s.weighting.create_bs_wgts(reps, kind="rao-wu", rstate=11)
            s = s.weighting.adjust("status", cells="agency_id")
            s = s.weighting.rake(controls=controls, tol=1e-10, max_iter=100)
            return _props(s.estimation.prop(SC, by="agency_id", method="replication"), True)
        return run
    raise NotImplementedError(task)
