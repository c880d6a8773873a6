"""Rao-Wu replicate totals with a per-(cell, replicate) factor: the cell replay of weighting steps.

After weighting steps defined on categorical cells, a lazy Rao-Wu replicate's
weight of row *i* is ``w_i m_ri f[c_i, r]``: the base weight, the replicate
multiplier and the factor of the row's cell in that replicate (see
:mod:`satsample.weighting._cell_replay`).  This kernel is the bootstrap
kernel of :mod:`.bootstrap` with that factor folded into the per-row vector
over the block's replicates: rows are still visited once, grouped by
(stratum, domain), and 0/1 columns still go through the pattern buckets.
"""

from __future__ import annotations

import numba
import numpy as np

from .bootstrap import _MIN_BUCKET_RUN, _binary_flags, _block_counts, _patterns, _runs


@numba.njit(parallel=True, cache=True)
def _raowu_cell_run_totals(key, w, values, cell, fac, pat, grp_col, direct_col, rows, psu_local,
                           strat_code, strat_npsu, strat_run, run_start, run_dom, r0, n_rep,
                           n_domains, block, min_bucket_run):
    """``out[r, g, j] = sum_i w_i m_ri fac[cell_i, r0 + r] values_ij 1{domain_i = g}``.

    Parameters are those of :func:`.bootstrap._raowu_run_totals`, plus
    ``cell`` (n,) int64, the cell of every row, and ``fac`` (C, R_all)
    float64, the factor of each cell in every replicate (columns
    ``r0 .. r0 + n_rep - 1`` are used).

    Returns
    -------
    (n_rep, n_domains, k) float64

    Notes
    -----
    Per row, the vector ``a_q = w_i fac[c_i, r0 + rb0 + q] m_{i, rb0 + q}``
    over the block's replicates is formed once; it is added to one bucket per
    group of 0/1 columns, or times ``values_ij`` to the totals of the other
    non-zero columns.  Each replicate's totals are summed in the same order
    whatever the block size or the number of threads.
    """
    k = values.shape[1]
    n_groups, gbits = grp_col.shape
    n_pat = 1 << gbits
    n_direct = direct_col.shape[0]
    n_strata = strat_npsu.shape[0]
    out = np.zeros((n_rep, n_domains, k))
    max_np = 1
    for h in range(n_strata):
        max_np = max(max_np, strat_npsu[h])
    n_blocks = (n_rep + block - 1) // block
    for b in numba.prange(n_blocks):
        rb0 = b * block
        nb = min(block, n_rep - rb0)
        acc = np.zeros((n_domains * k, block))
        ct = np.zeros((max_np, block), np.float32)
        addr = np.empty(max_np, np.uint64)
        bucket = np.zeros((n_groups * n_pat, block))
        vec = np.zeros(block)
        nzj = np.empty(k, np.int64)
        nzv = np.empty(k)
        for h in range(n_strata):
            if strat_run[h] == strat_run[h + 1]:
                continue
            nh = strat_npsu[h]
            fh = nh / (nh - 1.0) if nh > 1 else 1.0
            _block_counts(ct, addr, key, strat_code[h], nh, r0 + rb0, nb)
            for s in range(strat_run[h], strat_run[h + 1]):
                ab = run_dom[s] * k
                p0 = run_start[s]
                p1 = run_start[s + 1]
                use_buckets = n_groups > 0 and p1 - p0 >= min_bucket_run
                for p in range(p0, p1):
                    i = rows[p]
                    wi = w[i] * fh
                    if wi == 0.0:
                        continue
                    crow = ct[psu_local[i]]
                    frow = fac[cell[i]]
                    for q in range(nb):
                        vec[q] = wi * np.float64(crow[q]) * frow[r0 + rb0 + q]
                    if use_buckets:
                        for t in range(n_groups):
                            brow = bucket[t * n_pat + pat[i, t]]
                            for q in range(block):
                                brow[q] += vec[q]
                        m = 0
                        for t in range(n_direct):
                            j = direct_col[t]
                            v = values[i, j]
                            nzj[m] = j
                            nzv[m] = v
                            m += v != 0
                    else:
                        m = 0
                        for j in range(k):
                            v = values[i, j]
                            nzj[m] = j
                            nzv[m] = v
                            m += v != 0
                    for t in range(m):
                        sv = np.float64(nzv[t])
                        arow = acc[ab + nzj[t]]
                        for q in range(block):
                            arow[q] += sv * vec[q]
                if use_buckets:  # expand the buckets into the column totals
                    for t in range(n_groups):
                        for pt in range(n_pat):
                            brow = bucket[t * n_pat + pt]
                            if pt > 0:
                                for bit in range(gbits):
                                    if (pt >> bit) & 1:
                                        arow = acc[ab + grp_col[t, bit]]
                                        for q in range(block):
                                            arow[q] += brow[q]
                            brow[:] = 0.0
        for g in range(n_domains):
            for j in range(k):
                arow = acc[g * k + j]
                for q in range(nb):
                    out[rb0 + q, g, j] = arow[q]
    return out


@numba.njit(parallel=True, cache=True)
def _raowu_cell_table(key, w, cell, n_cells, order, psu_local, strat_start, strat_code, strat_npsu,
                      r0, n_rep, block):
    """Replicate cell table ``table[r, c] = sum_i w_i m_ri 1{cell_i = c}``, (n_rep, n_cells).

    Parameters
    ----------
    key : uint64
    w : (n,) float64
        Base weights.
    cell : (n,) int64
        Cell of each row (``0 .. n_cells - 1``).
    n_cells : int
    order, psu_local, strat_start, strat_code, strat_npsu : layout arrays
        As :func:`.bootstrap._raowu_totals` (rows grouped by stratum).
    r0, n_rep, block : int
        Replicates ``r0 .. r0 + n_rep - 1``, ``block`` per task.

    Notes
    -----
    The counts are those of every other Rao-Wu kernel (same stream); rows are
    visited in stratum order and each adds its count vector, times
    ``w_i n_h / (n_h - 1)``, to its cell's row of the task's table.
    """
    n_strata = strat_npsu.shape[0]
    out = np.zeros((n_rep, n_cells))
    max_np = 1
    for h in range(n_strata):
        max_np = max(max_np, strat_npsu[h])
    n_blocks = (n_rep + block - 1) // block
    for b in numba.prange(n_blocks):
        rb0 = b * block
        nb = min(block, n_rep - rb0)
        acc = np.zeros((n_cells, block))
        ct = np.zeros((max_np, block), np.float32)
        addr = np.empty(max_np, np.uint64)
        for h in range(n_strata):
            if strat_start[h] == strat_start[h + 1]:
                continue
            nh = strat_npsu[h]
            fh = nh / (nh - 1.0) if nh > 1 else 1.0
            _block_counts(ct, addr, key, strat_code[h], nh, r0 + rb0, nb)
            for p in range(strat_start[h], strat_start[h + 1]):
                i = order[p]
                wi = w[i] * fh
                if wi == 0.0:
                    continue
                crow = ct[psu_local[i]]
                arow = acc[cell[i]]
                for q in range(block):
                    arow[q] += wi * np.float64(crow[q])
        for c in range(n_cells):
            for q in range(nb):
                out[rb0 + q, c] = acc[c, q]
    return out


def _prepare(values, domain, order, strat_start, strat_npsu, group_bits=5):
    """Row runs and bit patterns of ``values`` for :func:`_raowu_cell_run_totals` (done once)."""
    values = np.ascontiguousarray(values)
    k = values.shape[1]
    rows, strat_run, run_start, run_dom = _runs(np.asarray(domain, np.int64), order, strat_start)
    if strat_npsu.size and int(np.max(strat_npsu)) >= 2**24:
        raise ValueError("a stratum has 2**24 PSUs or more: counts would not be exact in float32")
    binary = (np.flatnonzero(_binary_flags(values)) if group_bits > 0 and values.shape[0]
              else np.zeros(0, np.int64))
    if binary.size:
        group_bits = min(group_bits, binary.size)
        pat, grp_col = _patterns(values, binary, group_bits)
    else:
        pat = np.zeros((values.shape[0], 0), dtype=np.uint8)
        grp_col = np.zeros((0, max(group_bits, 1)), dtype=np.int64)
    direct_col = np.setdiff1d(np.arange(k), binary).astype(np.int64)
    return {"values": values, "pat": pat, "grp_col": grp_col, "direct_col": direct_col,
            "rows": rows, "strat_run": strat_run, "run_start": run_start, "run_dom": run_dom,
            "min_bucket_run": max(_MIN_BUCKET_RUN, grp_col.shape[0] << grp_col.shape[1])}


def _run_prepared(prep, key, w, cell, fac, psu_local, strat_code, strat_npsu, r0, n_rep,
                  n_domains, block):
    """Call :func:`_raowu_cell_run_totals` on runs prepared by :func:`_prepare`."""
    return _raowu_cell_run_totals(
        np.uint64(key), np.ascontiguousarray(w, np.float64), prep["values"], cell, fac,
        prep["pat"], prep["grp_col"], prep["direct_col"], prep["rows"],
        np.ascontiguousarray(psu_local, np.int64), np.ascontiguousarray(strat_code, np.int64),
        np.ascontiguousarray(strat_npsu, np.int64), prep["strat_run"], prep["run_start"],
        prep["run_dom"], int(r0), int(n_rep), int(n_domains), int(block), prep["min_bucket_run"])


def _raowu_cell_totals(key, w, values, domain, cell, fac, order, psu_local, strat_start,
                       strat_code, strat_npsu, r0, n_rep, n_domains, block=48, *, group_bits=5):
    """Rao-Wu replicate totals with cell factors, ``(n_rep, n_domains, k)``: arrays in, array out.

    ``out[r, g, j] = sum_i w_i m_ri fac[cell_i, r0 + r] values_ij 1{domain_i = g}`` with
    ``m_ri`` the Rao-Wu multiplier of row *i* in replicate ``r0 + r`` (the stream of
    :mod:`._rng`, as :func:`.bootstrap._raowu_totals`).  ``fac`` is (C, R_all) with
    ``R_all >= r0 + n_rep``; ``domain`` ``-1`` excludes a row.
    """
    cell = np.ascontiguousarray(cell, dtype=np.int64)
    fac = np.ascontiguousarray(fac, dtype=np.float64)
    if fac.shape[1] < r0 + n_rep or (cell.size and (cell.min() < 0 or cell.max() >= fac.shape[0])):
        raise ValueError("cell codes or replicate range outside the factor table")
    prep = _prepare(values, domain, order, strat_start, strat_npsu, group_bits)
    return _run_prepared(prep, key, w, cell, fac, psu_local, strat_code, strat_npsu, r0, n_rep,
                         n_domains, block)
