"""Deterministic workloads of ../shared/docs/performance.md (T1-T7).

n responses in H = 100 agencies (strata, known N_h, N = 26.0 M, compromise
allocation), 22 Likert items (satisfied = 4 or 5, about 54 %), sex (2) x age
group (6), 5 variance PSUs per agency (T6).  The analysis weight ``w`` is the
design weight raked (numpy IPF, tolerance 1e-10) to the sex, age-group and
agency margins; it varies within strata.  ``responded`` (about 70 %, depending
on agency and age group) is the response indicator of T7.  Everything is a pure function of
(n, seed), so every peer process rebuilds the same data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

H = 100
K = 22
ITEMS = [f"q{j:02d}" for j in range(1, K + 1)]
SEX = ["F", "M"]
AGE = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]


def population(seed: int = 20240611) -> dict:
    rng = np.random.default_rng(seed)
    N_h = rng.lognormal(np.log(200_000), 0.8, H)
    N_h = np.round(N_h / N_h.sum() * 26_000_000).astype(np.int64)
    p_sex = np.array([0.52, 0.48])
    p_age = np.array([0.14, 0.22, 0.21, 0.18, 0.15, 0.10])
    N = N_h.sum()
    return {"N_h": N_h, "sex_tot": p_sex * N, "age_tot": p_age * N}


def allocation(n: int, N_h: np.ndarray) -> np.ndarray:
    """Compromise allocation: half equal, half proportional (largest remainder), n_h >= 10."""
    share = 0.5 / H + 0.5 * N_h / N_h.sum()
    raw = share * n
    n_h = np.floor(raw).astype(np.int64)
    rest = n - n_h.sum()
    n_h[np.argsort(-(raw - n_h))[:rest]] += 1
    return np.maximum(n_h, 10)


def rake_numpy(w, codes, totals, *, tol=1e-10, max_iter=200):
    """Plain numpy IPF on several categorical margins (the T1 baseline)."""
    w = w.copy()
    for it in range(max_iter):
        for c, t in zip(codes, totals):
            cur = np.bincount(c, weights=w, minlength=t.size)
            w *= (t / cur)[c]
        err = max(np.abs(np.bincount(c, weights=w, minlength=t.size) - t).max() / t.max()
                  for c, t in zip(codes, totals))
        if err < tol:
            return w, it + 1
    return w, max_iter


def make_data(n: int, seed: int = 7, *, lean: bool = False) -> tuple[pd.DataFrame, dict]:
    """The sample; ``lean=True`` (huge n) keeps only codes, weights and uint8 items."""
    pop = population()
    n_h = allocation(n, pop["N_h"])
    n = int(n_h.sum())
    rng = np.random.default_rng(seed)
    agency = np.repeat(np.arange(H), n_h)
    sex = rng.choice(2, n, p=[0.55, 0.45]).astype(np.int8)
    age = rng.choice(6, n, p=[0.10, 0.20, 0.22, 0.20, 0.16, 0.12]).astype(np.int8)
    psu5 = np.concatenate([rng.permutation(np.arange(m) % 5) for m in n_h]).astype(np.int8)
    level = rng.normal(0.6, 0.5, H)[agency] + rng.normal(0, 0.8, n)
    items = np.empty((n, K), dtype=np.uint8)
    for j in range(K):
        lat = level + rng.normal(0, 1.0, n) + rng.normal(0, 0.2)
        items[:, j] = np.clip(np.round(3.1 + lat), 1, 5)
    dw = (pop["N_h"] / n_h)[agency]
    codes = [sex.astype(np.int64), age.astype(np.int64), agency]
    totals = [pop["sex_tot"], pop["age_tot"], pop["N_h"].astype(float)]
    w, _ = rake_numpy(dw, codes, totals)
    # response indicator of T7 (about 70 %, by agency and age), from its own stream so that
    # every other column is the same as before it existed
    rr = np.random.default_rng(seed + 1000)
    eta = 0.85 + 0.2 * (age - 2.5) + rr.normal(0.0, 0.4, H)[agency]
    responded = rr.random(n) < 1.0 / (1.0 + np.exp(-eta))
    if lean:
        df = pd.DataFrame({"agency": agency.astype(np.int64), "w": w})
        for j, c in enumerate(ITEMS):
            df[c] = items[:, j]
        return df, {"pop": pop, "n_h": n_h}
    df = pd.DataFrame({
        "rid": np.arange(n, dtype=np.int64),
        "agency": agency.astype(np.int64),
        "agency_id": pd.Categorical.from_codes(agency, [f"A{h:03d}" for h in range(H)]).astype(str),
        "N_h": pop["N_h"][agency],
        "psu": agency * 5 + psu5,
        "sex": np.array(SEX)[sex],
        "age": np.array(AGE)[age],
        "design_weight": dw,
        "w": w,
        "responded": responded,
    })
    for j, c in enumerate(ITEMS):
        df[c] = items[:, j]
    for j, c in enumerate(ITEMS):
        df["s" + c[1:]] = (items[:, j] >= 4).astype(np.int64)
    # post-stratification cells (sex x age) and their population counts
    cell = sex.astype(np.int64) * 6 + age
    cell_tot = np.outer(pop["sex_tot"], pop["age_tot"]).ravel() / pop["N_h"].sum()
    df["cell"] = pd.Series(np.array(SEX)[sex]) + "_" + pd.Series(np.array(AGE)[age])
    meta = {"pop": pop, "n_h": n_h, "codes": codes, "totals": totals, "cell": cell,
            "cell_tot": cell_tot,
            "cell_totals": {f"{SEX[i // 6]}_{AGE[i % 6]}": float(cell_tot[i]) for i in range(12)}}
    return df, meta


SC = ["s" + c[1:] for c in ITEMS]


def satisfied(df: pd.DataFrame) -> np.ndarray:
    """(n, 22) uint8 0/1 satisfied indicators."""
    return (df[ITEMS].to_numpy() >= 4).astype(np.uint8)
