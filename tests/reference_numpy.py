"""Plain-numpy twins of the Numba kernels of ``satsample._kernels`` (tests only).

Vectorised where possible; written independently of the kernels so that the
tests compare two implementations of the same definitions.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_REP = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def raowu_counts(key: int, stratum_code: int, n_psu: int, r0: int, n_rep: int) -> np.ndarray:
    """Counts ``(n_rep, n_psu)`` of the ``n_psu - 1`` draws, from the documented stream."""
    k = np.array([key], dtype=np.uint64)
    h = np.array([stratum_code + 1], dtype=np.uint64)
    s_h = _mix(k + h * _GOLDEN)
    r = np.arange(r0 + 1, r0 + n_rep + 1, dtype=np.uint64)
    s_hr = _mix(s_h ^ (r * _REP))  # (n_rep,)
    d = np.arange(1, n_psu, dtype=np.uint64)  # n_psu - 1 draws
    u = _mix(s_hr[:, None] + d[None, :] * _GOLDEN)
    idx = (((u >> np.uint64(32)) * np.uint64(n_psu)) >> np.uint64(32)).astype(np.int64)
    flat = idx + (np.arange(n_rep) * n_psu)[:, None]
    return np.bincount(flat.ravel(), minlength=n_rep * n_psu).reshape(n_rep, n_psu)


def raowu_multipliers(key, order, psu_local, strat_start, strat_code, strat_npsu, r0, n_rep, n):
    """Twin of ``_raowu_multipliers``: (n_rep, n)."""
    out = np.ones((n_rep, n))
    for h in range(strat_npsu.size):
        nh = int(strat_npsu[h])
        if nh < 2:
            continue
        rows = order[strat_start[h]:strat_start[h + 1]]
        cnt = raowu_counts(key, int(strat_code[h]), nh, r0, n_rep)
        out[:, rows] = cnt[:, psu_local[rows]] * (nh / (nh - 1.0))
    return out


def dense_replicate_totals(rep_weights, values, domain, n_domains):
    """Twin of ``_dense_replicate_totals`` via a one-hot domain matrix and einsum."""
    onehot = (domain[:, None] == np.arange(n_domains)[None, :]).astype(np.float64)
    return np.einsum("ri,ig,ij->rgj", rep_weights, onehot, values.astype(np.float64))


def raowu_totals(key, w, values, domain, order, psu_local, strat_start, strat_code, strat_npsu,
                 r0, n_rep, n_domains, *, cell=None, n_cells=0, fcell=None, factor=None):
    """Twin of ``_raowu_totals``: materialise the multipliers, then one einsum.

    With ``cell``, also the replicate cell table ``table[r, c] = sum_i w_i m_ri 1{cell_i = c}``
    of every row, returned as ``(totals, table)``.  With ``fcell`` and ``factor``
    ((F, n_rep)), the multipliers are scaled by ``factor[fcell_i, r]`` first.
    """
    m = raowu_multipliers(key, order, psu_local, strat_start, strat_code, strat_npsu, r0, n_rep,
                          w.size)
    if factor is not None:
        m = m * np.asarray(factor)[np.asarray(fcell)].T
    out = dense_replicate_totals(m * w[None, :], values, domain, n_domains)
    if cell is None:
        return out
    onehot = (np.asarray(cell)[:, None] == np.arange(n_cells)[None, :]).astype(np.float64)
    return out, (m * w[None, :]) @ onehot


def combine_pairs(u, f, p_cell, p_dom, n_domains):
    """Twin of ``_combine_pairs`` (key-major: u (P, k, R), f (C, R), out (G, k, R)):
    scale each pair's totals by its cell's factor, add by domain."""
    scaled = u * f[p_cell][:, None, :]
    onehot = (np.asarray(p_dom)[:, None] == np.arange(n_domains)[None, :]).astype(np.float64)
    return np.einsum("pjr,pg->gjr", scaled, onehot)


def jkn_multipliers(strata: np.ndarray, psu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Materialised JKn multipliers (R, n), replicates ordered by (stratum, PSU); and their stratum."""
    mults, rep_stratum = [], []
    for h in np.unique(strata):
        in_h = strata == h
        psus = np.unique(psu[in_h])
        nh = psus.size
        if nh < 2:
            continue
        for p in psus:
            m = np.ones(strata.size)
            m[in_h] = nh / (nh - 1.0)
            m[psu == p] = 0.0
            mults.append(m)
            rep_stratum.append(h)
    return np.array(mults), np.array(rep_stratum)


def ratio_estimates(weights, num, den, coef, domain, n_domains):
    """``theta[r, g, l] = sum_k coef[g, l, k] N_rgk / D_rgk`` for weights (R, n)."""
    onehot = (domain[:, None] == np.arange(n_domains)[None, :]).astype(np.float64)
    N = np.einsum("ri,ig,ik->rgk", weights, onehot, num)
    D = np.einsum("ri,ig,ik->rgk", weights, onehot, np.broadcast_to(den, num.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = N / D
    coef = np.broadcast_to(coef, (n_domains, *coef.shape[-2:]))
    out = np.zeros((weights.shape[0], n_domains, coef.shape[1]))
    for g in range(n_domains):
        for lin in range(coef.shape[1]):
            used = coef[g, lin] != 0
            out[:, g, lin] = (coef[g, lin, used] * ratio[:, g, used]).sum(axis=1)
    return out


def answer_classes(x, valid_codes, unusable_codes, numerator_codes):
    """Twin of ``_answer_classes``: one equality test per code (0 invalid, 1 valid,
    2 unusable, 3 blank; + 4 for a valid code of the numerator set)."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isin(x, np.asarray(valid_codes, dtype=np.float64))
    unusable = np.isin(x, np.asarray(unusable_codes, dtype=np.float64))
    num = np.isin(x, np.asarray(numerator_codes, dtype=np.float64)) & valid
    cls = np.where(np.isnan(x), 3, np.where(valid, 1, np.where(unusable, 2, 0)))
    return (cls + 4 * num).astype(np.uint8)
