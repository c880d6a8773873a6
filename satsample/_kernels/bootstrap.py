"""Rao-Wu rescaling bootstrap drawn on the fly from a counter-based stream.

Nothing of size n x R is stored: per stratum and replicate the kernel draws
the multinomial counts of the stratum's PSUs and adds the rescaled weighted
values of the stratum's rows into the replicate's totals.
"""

from __future__ import annotations

import numba
import numpy as np

from ._rng import _draw_index, _stream


@numba.njit(cache=True)
def _draw_counts(cnt, key, stratum_code, replicate, n_psu):
    """Counts of the ``n_psu - 1`` with-replacement draws among ``n_psu`` PSUs (in ``cnt``)."""
    cnt[:n_psu] = 0
    state = _stream(key, stratum_code, replicate)
    for d in range(n_psu - 1):
        cnt[_draw_index(state, d, n_psu)] += 1


@numba.njit(parallel=True, cache=True)
def _raowu_totals(key, w, values, domain, order, psu_local, strat_start, strat_code,
                  strat_npsu, r0, n_rep, n_domains, block):
    """Replicate totals ``out[r, g, j] = sum_i w_i m_ri values_ij 1{domain_i = g}``.

    ``m_ri = c_ri n_h / (n_h - 1)`` with ``c_ri`` the Rao-Wu count of the PSU
    of row ``i`` in replicate ``r0 + r`` (``m = 1`` in a stratum with one PSU).
    Rows of stratum ``h`` are ``order[strat_start[h]:strat_start[h + 1]]``;
    ``psu_local[i]`` is the rank of row ``i``'s PSU in its stratum.  Tasks
    are blocks of replicates, each writing its own rows of ``out``.
    """
    k = values.shape[1]
    n_strata = strat_npsu.shape[0]
    out = np.zeros((n_rep, n_domains, k))
    max_np = 1
    for h in range(n_strata):
        max_np = max(max_np, strat_npsu[h])
    n_blocks = (n_rep + block - 1) // block
    for b in numba.prange(n_blocks):
        cnt = np.zeros(max_np, np.int64)
        rb1 = min(n_rep, (b + 1) * block)
        for h in range(n_strata):
            nh = strat_npsu[h]
            fac = nh / (nh - 1.0) if nh > 1 else 1.0
            for r in range(b * block, rb1):
                if nh > 1:
                    _draw_counts(cnt, key, strat_code[h], r0 + r, nh)
                for p in range(strat_start[h], strat_start[h + 1]):
                    i = order[p]
                    g = domain[i]
                    if g < 0:
                        continue
                    c = cnt[psu_local[i]] if nh > 1 else 1
                    if c == 0:
                        continue
                    a = (c * fac) * w[i]
                    for j in range(k):
                        out[r, g, j] += a * values[i, j]
    return out


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
