"""Plain vectorised numpy baseline (bincount / reduceat / BLAS), written for this benchmark.

T7: the weighting steps replayed on blocks of 50 materialised replicate weights (numpy
Rao-Wu draws), the same stopping rule for raking as satsample and R (passes of the full
sample on every replicate), then per-agency BLAS totals.
"""

from __future__ import annotations

import numpy as np
from workloads import SC, H, rake_numpy


def _taylor(w, y, strata, fpc_f, n_h, domain=None):
    """Stratified Taylor SE of ratio means (element PSUs), overall or by domain = stratum."""
    _n, k = y.shape
    if domain is None:
        tw = w.sum()
        p = (w @ y) / tw
        z = w[:, None] * (y - p) / tw
        s1 = np.zeros((H, k))
        np.add.at(s1, strata, z) if False else None
        s1 = np.stack([np.bincount(strata, z[:, j], H) for j in range(k)], axis=1)
        s2 = np.stack([np.bincount(strata, z[:, j] ** 2, H) for j in range(k)], axis=1)
        ss = s2 - s1**2 / n_h[:, None]
        v = ((1 - fpc_f) * n_h / (n_h - 1))[:, None] * ss
        return p[None, :], np.sqrt(v.sum(axis=0))[None, :]
    # domains are the strata: only the domain's own stratum contributes
    tw = np.bincount(strata, w, H)
    num = np.stack([np.bincount(strata, w * y[:, j], H) for j in range(k)], axis=1)
    p = num / tw[:, None]
    z = w[:, None] * (y - p[strata]) / tw[strata][:, None]
    s1 = np.stack([np.bincount(strata, z[:, j], H) for j in range(k)], axis=1)
    s2 = np.stack([np.bincount(strata, z[:, j] ** 2, H) for j in range(k)], axis=1)
    ss = s2 - s1**2 / n_h[:, None]
    v = ((1 - fpc_f) * n_h / (n_h - 1))[:, None] * ss
    return p, np.sqrt(v)


def _raowu(w, y, n_h, reps, by):
    """Per stratum: (R, n_h) counts from bincount of uniform draws, then one matmul."""
    rng = np.random.default_rng(11)
    k = y.shape[1]
    starts = np.r_[0, np.cumsum(n_h)]
    tot = np.empty((reps, H, k + 1))
    for h in range(H):
        m = n_h[h]
        idx = rng.integers(0, m, (reps, m - 1)) + (np.arange(reps) * m)[:, None]
        cnt = np.bincount(idx.ravel(), minlength=reps * m).reshape(reps, m) * (m / (m - 1))
        sl = slice(starts[h], starts[h + 1])
        wy = np.empty((m, k + 1))
        wy[:, :k] = w[sl, None] * y[sl]
        wy[:, k] = w[sl]
        tot[:, h] = cnt @ wy
    full = np.zeros((H, k + 1))
    for h in range(H):
        sl = slice(starts[h], starts[h + 1])
        full[h, :k] = w[sl] @ y[sl]
        full[h, k] = w[sl].sum()
    if not by:
        tot = tot.sum(axis=1, keepdims=True)
        full = full.sum(axis=0, keepdims=True)
    pr = tot[..., :k] / tot[..., k:]
    p = full[:, :k] / full[:, k:]
    v = ((pr - pr.mean(axis=0)) ** 2).sum(axis=0) / (reps - 1)
    return p, np.sqrt(v)


def _jkn(w, y, strata, psu_codes, n_h_psu):
    """Closed-form JKn of ratio means from PSU totals (overall)."""
    k = y.shape[1]
    P = int(psu_codes.max()) + 1
    wy = np.concatenate([w[:, None] * y, w[:, None]], axis=1)
    t = np.stack([np.bincount(psu_codes, wy[:, j], P) for j in range(k + 1)], axis=1)
    psu_stratum = np.zeros(P, dtype=np.int64)
    psu_stratum[psu_codes] = strata
    T_h = np.stack([np.bincount(psu_stratum, t[:, j], H) for j in range(k + 1)], axis=1)
    T = T_h.sum(axis=0)
    nh = n_h_psu[psu_stratum].astype(float)[:, None]
    rep = T[None, :] + (nh / (nh - 1) - 1) * T_h[psu_stratum] - nh / (nh - 1) * t
    pr = rep[:, :k] / rep[:, k:]
    p = T[:k] / T[k]
    rs = ((nh - 1) / nh)
    v = (rs * (pr - pr.mean(axis=0)) ** 2).sum(axis=0)
    return p[None, :], np.sqrt(v)[None, :]


def _rake_passes(w, codes, totals, tol, max_iter=100):
    """IPF with R's stopping rule on the cross-table of the margins; returns w and the passes."""
    cross = codes[0] * 6 + codes[1]
    old = np.bincount(cross, w, 12)
    for it in range(1, max_iter + 1):
        for c, t in zip(codes, totals):
            w = w * (t / np.bincount(c, w, t.size))[c]
        new = np.bincount(cross, w, 12)
        if np.max(np.abs(new - old)) < tol:
            return w, it
        old = new
    return w, max_iter


def _t7(dw, resp, codes, totals, y, n_h, reps, block=50):
    """T7 in plain numpy: NR adjustment by agency, rake (sex, age), on every replicate block."""
    k = y.shape[1]
    starts = np.r_[0, np.cumsum(n_h)]
    agency = np.repeat(np.arange(H), n_h)
    # full sample
    fac = np.bincount(agency, dw, H) / np.bincount(agency, dw * resp, H)
    w0 = np.where(resp, dw * fac[agency], 0.0)
    w, passes = _rake_passes(w0, codes, totals, 1e-10 * w0.sum())
    yd = np.concatenate([y, np.ones((y.shape[0], 1))], axis=1)  # numerators, denominator
    full = np.stack([w[starts[h]:starts[h + 1]] @ yd[starts[h]:starts[h + 1]] for h in range(H)])
    # replicates, in blocks of `block` (weights materialised per block)
    rng = np.random.default_rng(11)
    tot = np.empty((reps, H, k + 1))
    rf = resp.astype(np.float64)
    for r0 in range(0, reps, block):
        nb = min(block, reps - r0)
        W = np.empty((nb, dw.size))
        for h in range(H):
            m = n_h[h]
            idx = rng.integers(0, m, (nb, m - 1)) + (np.arange(nb) * m)[:, None]
            cnt = np.bincount(idx.ravel(), minlength=nb * m).reshape(nb, m) * (m / (m - 1))
            W[:, starts[h]:starts[h + 1]] = cnt * dw[starts[h]:starts[h + 1]]
        samp = np.add.reduceat(W, starts[:-1], axis=1)
        W *= rf
        W *= np.repeat(samp / np.add.reduceat(W, starts[:-1], axis=1), n_h, axis=1)
        flat = np.arange(nb)[:, None]
        for _ in range(passes):
            for c, t in zip(codes, totals):
                s = np.bincount((flat * t.size + c[None, :]).ravel(), W.ravel(),
                                nb * t.size).reshape(nb, t.size)
                W *= (t[None, :] / s)[:, c]
        for h in range(H):
            sl = slice(starts[h], starts[h + 1])
            tot[r0:r0 + nb, h] = W[:, sl] @ yd[sl]
    pr = tot[..., :k] / tot[..., k:]
    p = full[:, :k] / full[:, k:]
    v = ((pr - pr.mean(axis=0)) ** 2).sum(axis=0) / (reps - 1)
    return p, np.sqrt(v)


def prepare(task: str, df, meta, reps: int):
    strata = df["agency"].to_numpy()
    n_h = meta["n_h"]
    if task == "T1":
        dw = df["design_weight"].to_numpy()

        def run():
            return {"w": rake_numpy(dw, meta["codes"], meta["totals"], tol=1e-8)[0]}
        return run
    if task == "T2":
        dw = df["design_weight"].to_numpy()
        cell = meta["cell"]

        def run():
            cur = np.bincount(cell, dw, 12)
            return {"w": dw * (meta["cell_tot"] / cur)[cell]}
        return run
    if task == "T7":
        dw = df["design_weight"].to_numpy()
        resp = df["responded"].to_numpy()
        codes = meta["codes"][:2]  # sex, age
        totals = meta["totals"][:2]
        y7 = df[SC].to_numpy(dtype=np.float64)

        def run():
            p, se = _t7(dw, resp, codes, totals, y7, n_h, reps)
            return {"est": p, "se": se}
        return run
    w = df["w"].to_numpy()
    y = df[SC].to_numpy(dtype=np.float64)
    if task in ("T3", "T4"):
        f = n_h / meta["pop"]["N_h"]

        def run():
            p, se = _taylor(w, y, strata, f, n_h.astype(float), strata if task == "T4" else None)
            return {"est": p, "se": se}
        return run
    if task in ("T5", "T5d"):
        def run():
            p, se = _raowu(w, y, n_h, reps, task == "T5d")
            return {"est": p, "se": se}
        return run
    if task == "T6":
        psu = df["psu"].to_numpy()
        n5 = np.full(H, 5)

        def run():
            p, se = _jkn(w, y, strata, psu, n5)
            return {"est": p, "se": se}
        return run
    if task == "T6e":
        rid = np.arange(len(df))

        def run():
            p, se = _jkn(w, y, strata, rid, n_h)
            return {"est": p, "se": se}
        return run
    raise NotImplementedError(task)
