"""Weighted totals under every replicate, by domain: the replicate hot path.

``replicate_totals`` is what every replicate-variance estimator calls.  It
dispatches to the Numba kernels of :mod:`satsample._kernels` when they are
available for the design's replicate kind, and otherwise uses the plain numpy
implementation below (which is also the reference the kernels are tested
against).
"""

from __future__ import annotations

import numpy as np

from .design import SurveyDesign

__all__ = ["replicate_totals", "replicate_totals_numpy"]


def replicate_totals_numpy(
    rep_weights: np.ndarray, values: np.ndarray, domain: np.ndarray, n_domains: int
) -> np.ndarray:
    """Plain numpy: ``out[r, g, j] = sum_i W[r, i] * values[i, j] * 1{domain_i = g}``.

    Parameters
    ----------
    rep_weights : ndarray of shape (R, n)
    values : ndarray of shape (n, k)
    domain : ndarray of int64 of shape (n,)
        Domain codes in ``0..n_domains-1``; ``-1`` excludes the row.
    n_domains : int

    Returns
    -------
    ndarray of shape (R, n_domains, k)
    """
    keep = domain >= 0
    order = np.argsort(domain[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    g_sorted = domain[rows]
    out = np.zeros((rep_weights.shape[0], n_domains, values.shape[1]))
    if rows.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    present = g_sorted[starts]
    v = values[rows]
    for r in range(rep_weights.shape[0]):
        out[r, present] = np.add.reduceat(rep_weights[r, rows][:, None] * v, starts, axis=0)
    return out


def replicate_totals(
    design: SurveyDesign,
    values: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
) -> np.ndarray:
    """Replicate totals of ``values`` (unweighted; the replicate weights are applied here).

    Returns
    -------
    ndarray of shape (R, n_domains, k)
    """
    reps = design.replicates
    if reps is None:
        raise ValueError("the design has no replicate weights")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if domain is None:
        domain = np.zeros(design.n, dtype=np.int64)
        n_domains = 1
    domain = np.asarray(domain, dtype=np.int64)
    if reps.weights is None:
        raise NotImplementedError("replicates generated on the fly need the Numba kernels")
    return replicate_totals_numpy(reps.weights, values, domain, n_domains)
