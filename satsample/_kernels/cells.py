"""Replicate totals by domain from totals by (domain x cell) and per-cell factors.

The cell replay of weighting steps (:mod:`satsample.weighting._cell_replay`)
writes a replicate weight as ``w_i m_ri f[r, c_i]``: the base weight, the
replicate multiplier and the factor of the row's combined cell.  One pass of
the Rao-Wu kernel (:func:`.bootstrap._raowu_totals` with a cell table) gives
the totals ``u[r, p, j]`` of every (domain, cell) pair ``p`` under
``w_i m_ri``; the totals by domain are then

    out[r, g, j] = sum_{p in g} f[r, cell_p] u[r, p, j],

small-table algebra done here.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _combine_pairs(u, f, p_cell, p_dom, n_domains):
    """``out[r, g, j] = sum_{p : p_dom[p] = g} f[r, p_cell[p]] u[r, p, j]``.

    Parameters
    ----------
    u : (R, P, k) float64
        Replicate totals of each (domain, cell) pair.
    f : (R, C) float64
        Factor of each cell in each replicate.
    p_cell, p_dom : (P,) int64
        Cell and domain of each pair.
    n_domains : int

    Returns
    -------
    (R, n_domains, k) float64

    Notes
    -----
    One task per replicate; the pairs are added in their order, so the result
    does not depend on the number of threads.
    """
    n_rep, n_pairs, k = u.shape
    out = np.zeros((n_rep, n_domains, k))
    for r in numba.prange(n_rep):
        for p in range(n_pairs):
            fr = f[r, p_cell[p]]
            g = p_dom[p]
            for j in range(k):
                out[r, g, j] += fr * u[r, p, j]
    return out
