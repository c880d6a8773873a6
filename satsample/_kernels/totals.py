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


@numba.njit(cache=True)
def _column_summary(values):
    """One row-major pass over ``values`` (n, k): per column a signature, min, max, fractional flag.

    The signature is ``sum_i u_i values_ij`` with fixed pseudo-random
    ``u_i`` in [0, 1) (a splitmix64 hash of ``i``): equal columns have equal
    signatures, so only columns with equal signatures need an exact
    comparison.  ``frac[j]`` is True when a value is not an integer (or NaN).
    """
    n, k = values.shape
    sig = np.zeros(k)
    lo = np.full(k, np.inf)
    hi = np.full(k, -np.inf)
    fsum = np.zeros(k)  # sum of |x - floor(x)|: NaN or inf make it NaN
    for i in range(n):
        z = np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        for j in range(k):
            x = np.float64(values[i, j])
            sig[j] += u * x
            lo[j] = min(lo[j], x)
            hi[j] = max(hi[j], x)
            fsum[j] += abs(x - np.floor(x))
    return sig, lo, hi, ~(fsum == 0.0)


@numba.njit(cache=True)
def _columns_equal(values, a, b):
    """``eq[t]``: columns ``a[t]`` and ``b[t]`` of ``values`` are equal element by element.

    One row-major pass for all the pairs (columns are strided in ``values``).
    """
    m = a.shape[0]
    eq = np.ones(m, np.bool_)
    n_open = m
    for i in range(values.shape[0]):
        if n_open == 0:
            break
        for t in range(m):
            if eq[t] and values[i, a[t]] != values[i, b[t]]:
                eq[t] = False
                n_open -= 1
    return eq


@numba.njit(cache=True)
def _take_columns_uint8(values, cols):
    """``values[:, cols]`` as uint8 (the caller checked the cast is exact)."""
    n = values.shape[0]
    m = cols.shape[0]
    out = np.empty((n, m), np.uint8)
    for i in range(n):
        for t in range(m):
            out[i, t] = np.uint8(values[i, cols[t]])
    return out
