"""Delete-one-PSU jackknife (JKn, JK1) of ratio estimators in closed form.

A replicate that deletes PSU *i* of stratum *h* changes a domain total only
through that stratum: ``T' = T + (m_h - 1) T_h - m_h t_hi`` with
``m_h = n_h / (n_h - 1)``, ``T_h`` the stratum's total and ``t_hi`` the
PSU's.  So every replicate estimate follows from PSU and stratum totals,
and the variance is accumulated without storing the replicates: element
JKn (R = n) runs in O(n) memory.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _jkn_ratio_variance(n_full, d_full, coef, dom_start, grp_nh, grp_rs, grp_n, grp_d,
                        cell_start, cell_n, cell_d):
    """Sums over JKn replicates of ``theta_gl = sum_k coef[g, l, k] N_gk / D_gk``.

    Parameters
    ----------
    n_full, d_full : (G, K) full-sample numerator and denominator totals.
    coef : (G, L, K) coefficients (zero entries are skipped, so an undefined
        ratio with coefficient 0 does not propagate).
    dom_start : (G + 1,) groups ``dom_start[g]:dom_start[g + 1]`` are the
        (domain g, stratum h) pairs with at least one row of the domain.
    grp_nh, grp_rs : (Q,) PSUs in the stratum and its rscale.
    grp_n, grp_d : (Q, K) stratum totals within the domain.
    cell_start : (Q + 1,) cells of each group: PSUs with rows in the domain.
    cell_n, cell_d : (C, K) PSU totals within the domain.

    Returns
    -------
    theta, s1, s2, m : (G, L) full estimate, ``sum_r rs_r d_r``,
        ``sum_r rs_r d_r**2`` and ``sum_r d_r`` with ``d_r = theta_r - theta``
        over the replicates of the strata that touch the domain (the others
        have ``d_r = 0``).
    """
    n_dom, n_lin, k = coef.shape
    theta = np.zeros((n_dom, n_lin))
    s1 = np.zeros((n_dom, n_lin))
    s2 = np.zeros((n_dom, n_lin))
    msum = np.zeros((n_dom, n_lin))
    for g in numba.prange(n_dom):
        dr = np.empty(k)
        a = np.empty(k)
        bb = np.empty(k)
        for lin in range(n_lin):
            t = 0.0
            for j in range(k):
                c = coef[g, lin, j]
                if c != 0.0:
                    t += c * (n_full[g, j] / d_full[g, j])
            theta[g, lin] = t
        for q in range(dom_start[g], dom_start[g + 1]):
            nh = grp_nh[q]
            if nh < 2:
                continue
            mh = nh / (nh - 1.0)
            rs = grp_rs[q]
            n_cells = cell_start[q + 1] - cell_start[q]
            # the PSUs of the stratum with no row in the domain (t = 0), then each PSU present
            for cc in range(cell_start[q] - 1, cell_start[q + 1]):
                absent = cc < cell_start[q]
                mult = nh - n_cells if absent else 1
                if mult == 0:
                    continue
                for j in range(k):
                    tn = 0.0 if absent else cell_n[cc, j]
                    td = 0.0 if absent else cell_d[cc, j]
                    # changes of the totals, and the replicate denominator (exactly 0 when
                    # the deleted PSU held the domain's whole denominator)
                    a[j] = mh * (grp_n[q, j] - tn) - grp_n[q, j]
                    bb[j] = mh * (grp_d[q, j] - td) - grp_d[q, j]
                    den = d_full[g, j]
                    den_r = (den - grp_d[q, j]) + mh * (grp_d[q, j] - td)
                    if den_r == 0.0:
                        dr[j] = np.nan  # the replicate ratio is undefined (0/0)
                    else:
                        dr[j] = (a[j] * den - n_full[g, j] * bb[j]) / (den * den_r)
                for lin in range(n_lin):
                    dv = 0.0
                    for j in range(k):
                        c = coef[g, lin, j]
                        if c != 0.0:
                            dv += c * dr[j]
                    s1[g, lin] += mult * rs * dv
                    s2[g, lin] += mult * rs * dv * dv
                    msum[g, lin] += mult * dv
    return theta, s1, s2, msum
