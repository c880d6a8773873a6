"""Rao-Wu rescaling bootstrap drawn on the fly from a counter-based stream.

Nothing of size n x R is stored.  Work is split into tasks, one per block of
replicates (each task writes its own rows of the output, so the result does
not depend on the number of threads nor on the block size).  Within a task,
for every stratum:

1. the multinomial counts of the block's replicates are drawn into a small
   ``(n_h, block)`` buffer (row = PSU, column = replicate);
2. the stratum's rows, grouped by domain, are visited once: row *i* adds
   ``w_i m_h v_ij`` times its PSU's row of counts to the totals of column
   *j* -- a vector operation over the block's replicates.

0/1 columns (satisfaction indicators, usable-answer flags) go through
*pattern buckets*: they are packed into groups of ``group_bits`` columns and,
for a run of rows of one domain, each row adds its count vector to one bucket
per group (indexed by the row's bit pattern in the group); the buckets are
expanded into the column totals once per run (only the buckets a row
touched).  A row then costs one vector addition per group instead of one per
non-zero column.  Other columns are added directly, skipping zeros.

The same pass can also accumulate the replicate *cell table* (each row's
weighted count vector added to its cell's row), from the same draws: the cell
replay of weighting steps (:mod:`satsample.weighting._cell_replay`) takes its
totals by (domain x cell) and its cell table from one pass of this kernel.
Or each row's count vector can be scaled by a factor of the row's class in
each replicate (the cell factors of the replayed steps): the totals of the
replayed weights by domain, in one pass.  The plain bootstrap is the case
without a cell table and without factors.
"""

from __future__ import annotations

import numba
import numpy as np

from ._rng import _draw_index, _stream

# runs of rows of one (stratum, domain) shorter than this (or than the number of
# buckets) skip the buckets
_MIN_BUCKET_RUN = 24


@numba.njit(cache=True)
def _draw_counts(cnt, key, stratum_code, replicate, n_psu):
    """Counts of the ``n_psu - 1`` with-replacement draws among ``n_psu`` PSUs (in ``cnt``)."""
    cnt[:n_psu] = 0
    state = _stream(key, stratum_code, replicate)
    for d in range(n_psu - 1):
        cnt[_draw_index(state, d, n_psu)] += 1


@numba.njit(cache=True, inline="always")
def _block_counts(ct, addr, key, code, nh, rep0, nb):
    """``ct[p, q]`` = count of PSU ``p`` in replicate ``rep0 + q``, ``q < nb``.

    Counts are stored as float32 (exact below 2**24; half the memory traffic
    of float64) and widened to float64 when they are used.

    Columns ``nb..`` of ``ct[:nh]`` are zero.  With one PSU the count is 1
    (multiplier 1: the stratum contributes no variance).  ``addr`` (uint64)
    is scratch space for the flat positions of the draws.
    """
    ct[:nh] = 0.0
    if nh < 2:
        ct[0, :nb] = 1.0
        return
    flat = ct.reshape(-1)
    ncol = np.uint64(ct.shape[1])
    for q in range(nb):
        state = _stream(key, code, rep0 + q)
        uq = np.uint64(q)
        for d in range(nh - 1):  # independent draws: vectorised
            addr[d] = np.uint64(_draw_index(state, d, nh)) * ncol + uq
        for d in range(nh - 1):  # unsigned positions: no negative-index wraparound code
            flat[addr[d]] += np.float32(1.0)


@numba.njit(cache=True, inline="always")
def _copy_block(out, table, acc, tab, rb0, nb):
    """A task's totals (``acc``: key-major rows) and cell table into replicates ``rb0 ..``."""
    n_domains, k, _ = out.shape
    for g in range(n_domains):
        for j in range(k):
            arow = acc[g * k + j]
            for q in range(nb):
                out[g, j, rb0 + q] = arow[q]
    for c in range(table.shape[0]):
        for q in range(nb):
            table[c, rb0 + q] = tab[c, q]


@numba.njit(cache=True, inline="always")
def _expand_buckets(acc, ab, bucket, touched, grp_col):
    """Add the touched pattern buckets of a run to its column totals ``acc[ab + j]``; clear them.

    Bucket ``t * 2**gbits + pt`` holds the summed count vectors of the run's rows whose
    bits in group ``t`` are ``pt``: it adds to every column whose bit is set in ``pt``.
    """
    n_groups, gbits = grp_col.shape
    n_pat = 1 << gbits
    block = bucket.shape[1]
    for t in range(n_groups):
        bucket[t * n_pat] = 0.0  # pattern 0 adds to no column
        touched[t * n_pat] = 0
        for pt in range(1, n_pat):
            if touched[t * n_pat + pt] == 0:
                continue  # an untouched bucket is zero
            touched[t * n_pat + pt] = 0
            brow = bucket[t * n_pat + pt]
            for bit in range(gbits):
                if (pt >> bit) & 1:
                    arow = acc[ab + grp_col[t, bit]]
                    for q in range(block):
                        arow[q] += brow[q]
            brow[:] = 0.0


@numba.njit(cache=True, inline="always")
def _row_vector(rv, wi, crow, factor, fcell, i, rb0, nb, with_factor):
    """``rv[q] = w_i c_iq`` (times the row's factor of replicate ``rb0 + q``, ``q < nb``)."""
    if with_factor:
        frow = factor[fcell[i]]
        for q in range(nb):
            rv[q] = wi * np.float64(crow[q]) * frow[rb0 + q]
    else:
        for q in range(rv.shape[0]):
            rv[q] = wi * np.float64(crow[q])


@numba.njit(parallel=True, cache=True)
def _raowu_run_totals(key, w, values, pat, grp_col, direct_col, rows, psu_local, strat_code,
                      strat_npsu, strat_run, run_start, run_dom, cell, n_cells, fcell, factor,
                      r0, n_rep, n_domains, block, min_bucket_run):
    """Replicate totals by key and, optionally, the replicate cell table, in one pass.

    ``out[g, j, r] = sum_i w_i m_ri f_ri values_ij 1{key_i = g}`` and
    ``table[c, r] = sum_i w_i m_ri f_ri 1{cell_i = c}``, with the row factor
    ``f_ri = factor[fcell_i, r]`` (1 when ``factor`` has no row).

    Parameters
    ----------
    key : uint64
        Key of the stream.
    w : (n,) float64
        Weights the multipliers apply to.
    values : (n, k)
        Values (any real dtype).
    pat : (n, n_groups) uint8
        Bit patterns of the 0/1 columns, ``group_bits`` columns per group.
    grp_col : (n_groups, group_bits) int64
        Column of each bit of each group (``-1``: padding).
    direct_col : (k_direct,) int64
        Columns added directly (not 0/1).
    rows : (m,) int64
        The rows visited, sorted by stratum then key.
    psu_local : (n,) int64
        Rank of the row's PSU within its stratum.
    strat_code, strat_npsu : (H,) int64
        Stratum code (stream component) and number of PSUs.
    strat_run : (H + 1,) int64
        Runs ``strat_run[h]:strat_run[h + 1]`` belong to stratum ``h``.
    run_start : (S + 1,) int64, run_dom : (S,) int64
        Run ``s`` is ``rows[run_start[s]:run_start[s + 1]]``, all of key ``run_dom[s]``
        (``-1``: rows that only weigh in the cell table).
    cell : (n,) int64, n_cells : int
        Cell of each row, ``0 .. n_cells - 1``; ``n_cells = 0``: no cell table
        (``cell`` is not read; the plain bootstrap).
    fcell : (n,) int64, factor : (n_fcells, n_rep) float64
        Factor of each row in each replicate, by the row's class ``fcell``
        (the cell factors of weighting steps replayed on cells, see
        :mod:`satsample.weighting._cell_replay`); ``n_fcells = 0``: no factor
        (``fcell`` is not read).
    r0, n_rep : int
        Replicates ``r0 .. r0 + n_rep - 1``.
    n_domains, block, min_bucket_run : int
        Number of keys, replicates per task, shortest run that uses the buckets.

    Returns
    -------
    out : (n_domains, k, n_rep) float64
        Key-major: ``out[g, j, r]`` (a task copies whole rows of its block).
    table : (n_cells, n_rep) float64

    Notes
    -----
    ``m_ri = c_ri n_h / (n_h - 1)`` with ``c_ri`` the Rao-Wu count of the PSU
    of row ``i`` in replicate ``r0 + r`` (``m = 1`` in a stratum with one
    PSU); the counts of a (stratum, block of replicates) are drawn once and
    serve both outputs.  Every operation is elementwise across the replicates
    of a block, so each replicate's totals are summed in the same order
    whatever the block size or the number of threads.  A row's weighted
    count vector ``w_i m_ri`` (times ``f_ri``) is formed once and added to the
    cell table and the pattern buckets; the other columns add ``v_ij`` times it
    (``(w_i v_ij) m_ri`` without a factor).
    """
    k = values.shape[1]
    n_groups, gbits = grp_col.shape
    n_pat = 1 << gbits
    n_direct = direct_col.shape[0]
    n_strata = strat_npsu.shape[0]
    with_factor = factor.shape[0] > 0
    out = np.zeros((n_domains, k, n_rep))  # key-major: each task writes whole runs of r
    table = np.zeros((n_cells, n_rep))
    max_np = 1
    for h in range(n_strata):
        max_np = max(max_np, strat_npsu[h])
    n_blocks = (n_rep + block - 1) // block
    for b in numba.prange(n_blocks):
        rb0 = b * block
        nb = min(block, n_rep - rb0)
        acc = np.zeros((n_domains * k, block))
        tab = np.zeros((n_cells, block))
        ct = np.zeros((max_np, block), np.float32)
        addr = np.empty(max_np, np.uint64)
        bucket = np.zeros((n_groups * n_pat, block))
        touched = np.zeros(n_groups * n_pat, np.uint8)
        nzj = np.empty(k, np.int64)
        nzs = np.empty(k)
        rv = np.zeros(block)  # the row's w_i m_ri (f_ri) over the block's replicates
        for h in range(n_strata):
            if strat_run[h] == strat_run[h + 1]:
                continue
            nh = strat_npsu[h]
            fac = nh / (nh - 1.0) if nh > 1 else 1.0
            _block_counts(ct, addr, key, strat_code[h], nh, r0 + rb0, nb)
            for s in range(strat_run[h], strat_run[h + 1]):
                dom = run_dom[s]
                p0 = run_start[s]
                p1 = run_start[s + 1]
                if dom < 0:  # rows in no key: the cell table only
                    for p in range(p0, p1):
                        i = rows[p]
                        wi = w[i] * fac
                        if wi == 0.0:
                            continue
                        _row_vector(rv, wi, ct[psu_local[i]], factor, fcell, i, rb0, nb,
                                    with_factor)
                        trow = tab[cell[i]]
                        for q in range(block):
                            trow[q] += rv[q]
                    continue
                ab = dom * k
                use_buckets = n_groups > 0 and p1 - p0 >= min_bucket_run
                for p in range(p0, p1):
                    i = rows[p]
                    wi = w[i] * fac
                    if wi == 0.0:
                        continue
                    crow = ct[psu_local[i]]
                    _row_vector(rv, wi, crow, factor, fcell, i, rb0, nb, with_factor)
                    if n_cells > 0:
                        trow = tab[cell[i]]
                        for q in range(block):
                            trow[q] += rv[q]
                    # the row's non-zero columns outside the buckets: (j, w_i v_ij) or (j, v_ij)
                    vw = 1.0 if with_factor else wi
                    m = 0
                    if use_buckets:
                        for t in range(n_groups):
                            bi = t * n_pat + pat[i, t]
                            touched[bi] = 1
                            brow = bucket[bi]
                            for q in range(block):
                                brow[q] += rv[q]
                        for t in range(n_direct):
                            j = direct_col[t]
                            v = values[i, j]
                            nzj[m] = j
                            nzs[m] = vw * v
                            m += v != 0
                    else:
                        for j in range(k):
                            v = values[i, j]
                            nzj[m] = j
                            nzs[m] = vw * v
                            m += v != 0
                    for t in range(m):
                        sv = nzs[t]
                        arow = acc[ab + nzj[t]]
                        if with_factor:
                            for q in range(block):
                                arow[q] += sv * rv[q]
                        else:
                            for q in range(block):
                                arow[q] += sv * np.float64(crow[q])
                if use_buckets:
                    _expand_buckets(acc, ab, bucket, touched, grp_col)
        _copy_block(out, table, acc, tab, rb0, nb)
    return out, table


@numba.njit(cache=True)
def _binary_flags(values):
    """``flag[j]``: every value of column ``j`` is 0 or 1 (one row-major pass)."""
    n, k = values.shape
    bad = np.zeros(k, np.int64)
    for i in range(n):
        for j in range(k):
            x = values[i, j]
            bad[j] += (x != 0) & (x != 1)
    return bad == 0


@numba.njit(cache=True)
def _pack_patterns(values, grp_col):
    """``pat[i, t]`` = bits ``values[i, grp_col[t, b]] != 0`` (b = 0, 1, ...), uint8."""
    n = values.shape[0]
    n_groups, gbits = grp_col.shape
    pat = np.zeros((n, n_groups), np.uint8)
    for i in range(n):
        for t in range(n_groups):
            code = 0
            for bit in range(gbits):
                j = grp_col[t, bit]
                if j >= 0 and values[i, j] != 0:
                    code |= 1 << bit
            pat[i, t] = code
    return pat


def _patterns(values: np.ndarray, binary: np.ndarray, group_bits: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Pack the 0/1 columns ``binary`` into ``group_bits``-bit patterns, (n, n_groups) uint8."""
    n_groups = -(-binary.size // group_bits)
    grp_col = np.full((n_groups, group_bits), -1, dtype=np.int64)
    grp_col.ravel()[:binary.size] = binary
    return _pack_patterns(values, grp_col), grp_col


def _stable_order(minor: np.ndarray, major: np.ndarray) -> np.ndarray:
    """Stable order of the rows by ``(major, minor)`` (both >= -1): ``np.lexsort`` without its cost.

    Two stable radix sorts of 16-bit keys when the codes fit, else ``np.lexsort``
    (the same permutation).
    """
    if minor.size and int(minor.max()) < 2**16 - 1 and int(major.max()) < 2**16 - 1:
        o = np.argsort((minor + 1).astype(np.uint16), kind="stable")
        return o[np.argsort((major[o] + 1).astype(np.uint16), kind="stable")]
    return np.lexsort((minor, major))


def _runs(domain: np.ndarray, order: np.ndarray, strat_start: np.ndarray, *,
          all_rows: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (stratum, domain) and their runs.

    Rows with ``domain >= 0``, or every row if ``all_rows`` (those with ``domain
    -1`` then form runs of key -1, first in their stratum).
    Returns ``rows``, ``strat_run`` (H + 1), ``run_start`` (S + 1), ``run_dom`` (S).
    Rows of one domain keep their order within a stratum.
    """
    H = strat_start.size - 1
    stratum = np.repeat(np.arange(H, dtype=np.int64), np.diff(strat_start))
    dom = domain[order]
    rows = order
    if not all_rows:
        keep = dom >= 0
        rows, stratum, dom = order[keep], stratum[keep], dom[keep]
    if dom.size > 1:
        brk = (dom[1:] < dom[:-1]) & (stratum[1:] == stratum[:-1])
        if brk.any():  # domains interleaved within a stratum: group them
            o = _stable_order(dom, stratum)
            rows, stratum, dom = rows[o], stratum[o], dom[o]
    if dom.size:
        new = np.r_[True, (dom[1:] != dom[:-1]) | (stratum[1:] != stratum[:-1])]
        starts = np.flatnonzero(new)
    else:
        starts = np.zeros(0, dtype=np.int64)
    run_start = np.r_[starts, dom.size].astype(np.int64)
    run_dom = dom[starts].astype(np.int64)
    strat_run = np.searchsorted(stratum[starts], np.arange(H + 1)).astype(np.int64)
    return np.ascontiguousarray(rows, dtype=np.int64), strat_run, run_start, run_dom


def _prepare(values, domain, order, psu_local, strat_start, strat_npsu, group_bits=5, *,
             all_rows=False):
    """Row runs and bit patterns of ``values`` for :func:`_raowu_run_totals`."""
    values = np.ascontiguousarray(values)
    k = values.shape[1]
    psu_local = np.ascontiguousarray(psu_local, np.int64)
    rows, strat_run, run_start, run_dom = _runs(np.asarray(domain, np.int64), order, strat_start,
                                                all_rows=all_rows)
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
            "psu_local": psu_local}


def _raowu_totals(key, w, values, domain, order, psu_local, strat_start, strat_code, strat_npsu,
                  r0, n_rep, n_domains, block=48, *, group_bits=5, cell=None, n_cells=0,
                  fcell=None, factor=None, min_bucket_run=None, key_major=False):
    """Rao-Wu replicate totals ``(n_rep, n_domains, k)``: arrays in, array out.

    ``out[r, g, j] = sum_i w_i m_ri values_ij 1{domain_i = g}`` with ``m_ri``
    the multiplier of row *i* in replicate ``r0 + r``.  Rows of stratum *h*
    are ``order[strat_start[h]:strat_start[h + 1]]``; ``psu_local[i]`` is the
    rank of row *i*'s PSU in its stratum; ``domain`` ``-1`` excludes a row.

    With ``cell`` ((n,) codes ``0 .. n_cells - 1``), returns ``(out, table)``
    with the replicate cell table ``table[r, c] = sum_i w_i m_ri 1{cell_i = c}``
    (times ``f_ri`` below, if given)
    of every row (whatever its domain), from the same draws in the same pass.

    With ``fcell`` ((n,) codes) and ``factor`` ((F, n_rep): the factors of
    replicates ``r0 ..``), every row's multiplier is scaled by
    ``factor[fcell_i, r]`` (the weights of steps replayed on cells).

    Prepares the row runs and bit patterns, then calls
    :func:`_raowu_run_totals` (``group_bits = 0`` disables the buckets;
    ``min_bucket_run``: shortest run of one (stratum, domain) that uses them,
    default ``max(24, number of buckets)``).  ``key_major``: return the
    kernel's own layout, ``(n_domains, k, n_rep)`` and ``(n_cells, n_rep)``.
    """
    with_cells = cell is not None
    if with_cells:
        cell = np.ascontiguousarray(cell, dtype=np.int64)
        n_cells = int(n_cells)
        if cell.size and (cell.min() < 0 or cell.max() >= n_cells):
            raise ValueError("cell codes outside 0 .. n_cells - 1")
    else:
        cell = np.zeros(0, dtype=np.int64)
        n_cells = 0
    if factor is None:
        fcell, factor = np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    else:
        fcell = np.ascontiguousarray(fcell, dtype=np.int64)
        factor = np.ascontiguousarray(factor, dtype=np.float64)
        if factor.ndim != 2 or factor.shape[1] != n_rep:
            raise ValueError("factor must be (classes, n_rep)")
        if fcell.size and (fcell.min() < 0 or fcell.max() >= factor.shape[0]):
            raise ValueError("fcell codes outside 0 .. factor.shape[0] - 1")
    prep = _prepare(values, domain, order, psu_local, strat_start, strat_npsu, group_bits,
                    all_rows=with_cells)
    grp_col = prep["grp_col"]
    if min_bucket_run is None:
        min_bucket_run = max(_MIN_BUCKET_RUN, grp_col.shape[0] << grp_col.shape[1])
    out, table = _raowu_run_totals(
        np.uint64(key), np.ascontiguousarray(w, np.float64), prep["values"], prep["pat"], grp_col,
        prep["direct_col"], prep["rows"], prep["psu_local"],
        np.ascontiguousarray(strat_code, np.int64), np.ascontiguousarray(strat_npsu, np.int64),
        prep["strat_run"], prep["run_start"], prep["run_dom"], cell, n_cells, fcell, factor,
        int(r0), int(n_rep),
        int(n_domains), int(block), int(min_bucket_run))
    if not key_major:
        out = np.ascontiguousarray(out.transpose(2, 0, 1))
        table = np.ascontiguousarray(table.T)
    return (out, table) if with_cells else out


@numba.njit(parallel=True, cache=True)
def _raowu_multipliers(key, order, psu_local, strat_start, strat_code, strat_npsu, r0, n_rep, n):
    """Rao-Wu multipliers ``(n_rep, n)`` of replicates ``r0 .. r0 + n_rep - 1`` (same stream)."""
    out = np.ones((n_rep, n))
    n_strata = strat_npsu.shape[0]
    max_np = 1
    for h in range(n_strata):
        max_np = max(max_np, strat_npsu[h])
    for r in numba.prange(n_rep):
        cnt = np.zeros(max_np, np.int64)
        for h in range(n_strata):
            nh = strat_npsu[h]
            if nh < 2:
                continue
            fac = nh / (nh - 1.0)
            _draw_counts(cnt, key, strat_code[h], r0 + r, nh)
            for p in range(strat_start[h], strat_start[h + 1]):
                i = order[p]
                out[r, i] = cnt[psu_local[i]] * fac
    return out
