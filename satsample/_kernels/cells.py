"""Replicate totals by domain from totals by (domain x cell) and per-cell factors.

The cell replay of weighting steps (:mod:`satsample.weighting._cell_replay`)
writes a replicate weight as ``w_i m_ri f[r, c_i]``: the base weight, the
replicate multiplier and the factor of the row's combined cell.  One pass of
the Rao-Wu kernel (:func:`.bootstrap._raowu_totals` with a cell table) gives
the totals ``u[p, j, r]`` of every (domain, cell) pair ``p`` under
``w_i m_ri``; the totals by domain are then

    out[g, j, r] = sum_{p in g} f[cell_p, r] u[p, j, r],

small-table algebra done here.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _combine_pairs(u, f, p_cell, p_dom, n_domains):
    """``out[g, j, r] = sum_{p : p_dom[p] = g} f[p_cell[p], r] u[p, j, r]``.

    Parameters
    ----------
    u : (P, k, R) float64
        Replicate totals of each (domain, cell) pair (key-major, as the kernel writes them).
    f : (C, R) float64
        Factor of each cell in each replicate.
    p_cell, p_dom : (P,) int64
        Cell and domain of each pair, pairs sorted by domain.
    n_domains : int

    Returns
    -------
    (n_domains, k, R) float64

    Notes
    -----
    One task per domain; its pairs are added in their order, elementwise over
    the replicates, so the result does not depend on the number of threads.
    """
    n_pairs, k, n_rep = u.shape
    out = np.zeros((n_domains, k, n_rep))
    starts = np.zeros(n_pairs + 1, np.int64)
    n_seg = 0
    for p in range(n_pairs):
        if p == 0 or p_dom[p] != p_dom[p - 1]:
            starts[n_seg] = p
            n_seg += 1
    starts[n_seg] = n_pairs
    for s in numba.prange(n_seg):
        for p in range(starts[s], starts[s + 1]):
            g = p_dom[p]
            frow = f[p_cell[p]]
            for j in range(k):
                urow = u[p, j]
                orow = out[g, j]
                for r in range(n_rep):
                    orow[r] += frow[r] * urow[r]
    return out
