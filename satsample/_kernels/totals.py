"""Weighted totals under materialised replicate weights, by domain, in one pass."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _dense_replicate_totals(rep_weights, values, domain, n_domains, block, chunk):
    """``out[r, g, j] = sum_i W[r, i] values[i, j] 1{domain_i = g}``; shape (R, G, k).

    Tasks are blocks of ``block`` replicates (each writes its own rows of
    ``out``); rows are visited in chunks of ``chunk`` so that a chunk of
    ``values`` stays in cache while the block's replicates read it.  Rows
    with domain ``-1`` or a zero replicate weight are skipped (values must be
    finite).
    """
    n_rep, n = rep_weights.shape
    k = values.shape[1]
    out = np.zeros((n_rep, n_domains, k))
    n_blocks = (n_rep + block - 1) // block
    for b in numba.prange(n_blocks):
        rb1 = min(n_rep, (b + 1) * block)
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            for r in range(b * block, rb1):
                for i in range(c0, c1):
                    g = domain[i]
                    a = rep_weights[r, i]
                    if g < 0 or a == 0.0:
                        continue
                    for j in range(k):
                        out[r, g, j] += a * values[i, j]
    return out
