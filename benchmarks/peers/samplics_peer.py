"""samplics 0.6.1: documented public calls only (SampleWeight, TaylorEstimator, Replicate*).

How samplics is driven (see ../../shared/docs/performance.md, "Pitfalls met on the way"):

* samplics estimates one outcome per call, so T3-T6 loop over the 22 items; the
  replicate weights are converted to one numpy array per run (timed) and shared
  by the 22 calls, so samplics does not re-convert the n x R frame 22 times.
* Proportions use ``PopParam.prop`` (both levels of the 0/1 indicator), as svy's
  ``estimation.prop``; the level-1 estimate and SE are compared.
* T1/T2 use ``tol = ctrl_tol = 1e-6`` (the satsample and svy adapters use 1e-6 too) and
  integer-coded margins (samplics is ~15x slower on string arrays).
* T5/T5d: ``ReplicateWeight(RepMethod.bootstrap)`` with element PSUs is Rao-Wu
  with m_h = n_h - 1 and no fpc; ``rep_coefs`` stays at its default 1/R (the
  variance divides by R where satsample divides by R - 1: 0.1 % at R = 500).
* T6: samplics' ``ReplicateEstimator.estimate(rep_coefs=None)`` silently replaces
  the per-stratum JKn coefficients (G_h - 1)/G_h = 0.8 by (R - 1)/R, which makes
  the SEs 11.7 % too large here; ``rep_coefs=rw.rep_coefs`` is passed.
* T5d: the domain loop multiplies the n x R matrix by a mask per domain and
  item, which takes > 300 s at 50k; run.py's per-cell timeout and predicted-time
  skip handle it.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from workloads import SC, H

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # "samplics is archived" on import
    from samplics import (
        PopParam,
        ReplicateEstimator,
        ReplicateWeight,
        RepMethod,
        SampleWeight,
        TaylorEstimator,
    )


def _level1(est, by: bool, domains=None):
    """Level-1 proportion (estimate, SE) out of a samplics estimator, shape (G, 1)."""
    if not by:
        return est.point_est[1], est.stderror[1]
    p = np.array([est.point_est[d][1] for d in domains])
    s = np.array([est.stderror[d][1] for d in domains])
    return p, s


def prepare(task: str, df, meta, reps: int):
    pop = meta["pop"]
    agency = df["agency"].to_numpy()
    if task == "T1":
        # integer codes, not the string columns: samplics compares ``domain == level``
        # for every level of every margin at each iteration, which is ~15x slower on
        # object arrays (2 s instead of 0.15 s at 50k)
        dw = df["design_weight"].to_numpy()
        codes = meta["codes"]  # sex, age group, agency (int64)
        margins = {"sex": codes[0], "age": codes[1], "agency": codes[2]}
        control = {
            "sex": dict(enumerate(pop["sex_tot"].tolist())),
            "age": dict(enumerate(pop["age_tot"].tolist())),
            "agency": dict(enumerate(pop["N_h"].astype(float).tolist())),
        }

        def run():
            w = SampleWeight().rake(samp_weight=dw, margins=margins, control=control,
                                    tol=1e-6, ctrl_tol=1e-6, max_iter=100)
            return {"w": w}
        return run
    if task == "T2":
        dw = df["design_weight"].to_numpy()
        cell = meta["cell"]  # sex x age cell codes 0..11 (same reason as T1)
        control = dict(enumerate(meta["cell_tot"].tolist()))

        def run():
            return {"w": SampleWeight().poststratify(samp_weight=dw, control=control, domain=cell)}
        return run
    w = df["w"].to_numpy()
    ys = [df[c].to_numpy() for c in SC]
    by = task in ("T4", "T5d")
    G = H if by else 1
    if task in ("T3", "T4"):
        n_h = meta["n_h"]
        fpc = {h: float(1 - n_h[h] / pop["N_h"][h]) for h in range(H)}
        dom = agency if by else None

        def run():
            out = []
            for y in ys:
                e = TaylorEstimator(PopParam.prop)
                e.estimate(y=y, samp_weight=w, stratum=agency, fpc=fpc, domain=dom)
                out.append(e)
            est = np.empty((G, len(SC)))
            se = np.empty_like(est)
            for j, e in enumerate(out):
                est[:, j], se[:, j] = _level1(e, by, range(H))
            return {"est": est, "se": se}
        return run
    if task in ("T5", "T5d", "T6"):
        jk = task == "T6"
        psu = df["psu"].to_numpy() if jk else df["rid"].to_numpy()
        method = RepMethod.jackknife if jk else RepMethod.bootstrap
        dom = agency if by else None

        def run():
            t0 = time.perf_counter()
            if jk:
                rw = ReplicateWeight(method, strat=True)
            else:
                rw = ReplicateWeight(method, strat=True, nb_reps=reps, rand_seed=11)
            rdf = rw.replicate(samp_weight=w, psu=psu, stratum=agency)
            cols = [c for c in rdf.columns if c.startswith(("_jk_wgt_", "_boot_wgt_"))]
            repw = rdf[cols].to_numpy()
            if not np.array_equal(rdf["_samp_weight"].to_numpy(), w):
                raise RuntimeError("samplics reordered the rows of the replicate frame")
            t1 = time.perf_counter()
            coefs = np.asarray(rw.rep_coefs) if jk else None  # pitfall: see module docstring
            out = []
            for y in ys:
                e = ReplicateEstimator(method, PopParam.prop)
                e.estimate(y=y, samp_weight=w, rep_weights=repw, rep_coefs=coefs, domain=dom)
                out.append(e)
            t2 = time.perf_counter()
            est = np.empty((G, len(SC)))
            se = np.empty_like(est)
            for j, e in enumerate(out):
                est[:, j], se[:, j] = _level1(e, by, range(H))
            return {"est": est, "se": se,
                    "_sub": {"create_reps": t1 - t0, "estimate": t2 - t1}}
        return run
    raise NotImplementedError(task)
