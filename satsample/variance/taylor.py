"""Taylor-linearisation variance of weighted totals, for all columns and domains at once.

This is the engine behind every Taylor standard error.  Input: a matrix of
*weighted* scores ``x`` (n rows, k columns; ``x_i = w_i z_i`` with ``z`` the
linearised variable of an estimator) and, optionally, a domain code per row.
Output: the variance of the total of every column in every domain, where a
row contributes to its own domain only (units outside a domain score zero,
but strata, PSU counts and fpc stay those of the whole sample).

Rows are grouped once per stage with a sort and ``np.add.reduceat``; no Python
loop runs over domains, strata or columns.
"""

from __future__ import annotations

import numpy as np

from ..design import Stage, SurveyDesign

__all__ = ["taylor_variance", "taylor_vcov"]

_BLOCK = 64  # columns per block on the dense (calibrated) path


def _group_sums(keys: np.ndarray, values: np.ndarray,
                n_keys: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum rows of ``values`` by ``keys``; returns (present keys sorted, sums, row counts).

    Keys below a small ``n_keys`` (at most about 4 per row) are summed with a
    sparse indicator matrix (a counting sort, no comparison sort); others are
    sorted (stable) and summed with ``add.reduceat``.
    """
    if keys.size == 0:
        return keys, values[:0], keys
    if n_keys is not None and n_keys <= 4 * keys.size + 1024:
        from scipy import sparse

        counts = np.bincount(keys, minlength=n_keys)
        present = np.flatnonzero(counts)
        n = keys.size
        if n < 2 or bool(np.all(keys[1:] >= keys[:-1])):  # grouped already: no reordering
            ind = sparse.csr_matrix((np.ones(n), np.arange(n), np.r_[0, np.cumsum(counts)]),
                                    shape=(n_keys, n))
        else:  # counting sort of the rows (stable)
            ind = sparse.coo_matrix((np.ones(n), (keys, np.arange(n))),
                                    shape=(n_keys, n)).tocsr()
        sums = np.asarray(ind[present] @ values)
        return present, sums, counts[present]
    order = np.argsort(keys, kind="stable")
    k_sorted = keys[order]
    new = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
    if new.all():  # every key unique (one row per PSU): nothing to add up
        return k_sorted, values[order], np.ones(k_sorted.size, dtype=np.int64)
    starts = np.flatnonzero(new)
    sums = np.add.reduceat(values[order], starts, axis=0)
    return k_sorted[starts], sums, np.diff(np.r_[starts, keys.size])


def _per_stratum(stage: Stage, n_strata_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stratum code: sampled clusters and sampling fraction (0 without fpc)."""
    n_h = np.zeros(n_strata_codes, dtype=np.float64)
    n_h[stage.stratum] = stage.n_sampled
    f_h = np.zeros(n_strata_codes, dtype=np.float64)
    if stage.popsize is not None:
        pop = np.full(n_strata_codes, np.inf)
        pop[stage.stratum] = stage.popsize
        f_h = n_h / pop
    return n_h, f_h


def _stage_contrib(
    x: np.ndarray,
    domain: np.ndarray,
    n_domains: int,
    stage: Stage,
    parent_fraction: np.ndarray,
    lonely_psu: str,
    first_stage: bool,
) -> np.ndarray:
    """Variance contribution of one stage, (n_domains, k)."""
    k = x.shape[1]
    n_strata_codes = int(stage.stratum.max()) + 1
    n_h, f_h = _per_stratum(stage, n_strata_codes)
    # multiplier inherited from earlier stages (product of their sampling fractions)
    mult = np.ones(n_strata_codes)
    mult[stage.stratum] = parent_fraction

    keep = domain >= 0
    if keep.all():
        cl, g, xk = stage.cluster, domain, x
    else:
        cl, g, xk = stage.cluster[keep], domain[keep], x[keep]
    n_cluster_codes = int(stage.cluster.max()) + 1
    if n_cluster_codes == stage.cluster.size:  # one row per cluster: the rows are the totals
        u_cluster, u_domain, totals = cl, g, xk
    else:
        ukey, totals, _ = _group_sums(cl * n_domains + g, xk, n_cluster_codes * n_domains)
        u_cluster = ukey // n_domains
        u_domain = ukey % n_domains
    # stratum of each cluster
    cluster_stratum = np.empty(n_cluster_codes, dtype=np.int64)
    cluster_stratum[stage.cluster] = stage.stratum
    u_stratum = cluster_stratum[u_cluster]

    n_cells = n_strata_codes * n_domains
    key2 = u_stratum * n_domains + u_domain
    skey, s1, present = _group_sums(key2, totals, n_cells)
    s_stratum = skey // n_domains
    s_domain = skey % n_domains
    nh = n_h[s_stratum]
    fh = f_h[s_stratum]
    lonely = nh == 1
    centre = lonely_psu != "adjust"
    mean = s1 / nh[:, None]
    if not centre:
        mean = np.where(lonely[:, None], 0.0, mean)
    # centred sum of squares, counting the PSUs absent from the domain as zeros
    idx = np.searchsorted(skey, key2)
    dev = totals - mean[idx]
    dev *= dev
    ss = _group_sums(key2, dev, n_cells)[1]
    ss += (nh - present)[:, None] * mean * mean

    scale = (1.0 - fh) * np.where(lonely, 1.0, nh / np.maximum(nh - 1.0, 1.0))
    scale = np.where(1.0 - fh < 1e-7, 0.0, scale)  # certainty strata contribute nothing
    if lonely_psu in ("remove", "certainty", "average"):
        scale = np.where(lonely, 0.0, scale)
    scale = scale * mult[s_stratum]
    contrib = np.zeros((n_domains, k))
    np.add.at(contrib, s_domain, scale[:, None] * ss)

    if lonely_psu == "average" and first_stage:
        factor = _average_factor(stage, domain, n_domains, keep)
        if factor is not None:
            contrib *= factor[:, None]
    return contrib


def _sparse_variance(design: SurveyDesign, x: np.ndarray, domain: np.ndarray,
                     n_domains: int) -> np.ndarray:
    total = np.zeros((n_domains, x.shape[1]))
    parent_fraction = np.ones(design.n)
    for s, stage in enumerate(design.stages):
        total += _stage_contrib(x, domain, n_domains, stage, parent_fraction,
                                design.lonely_psu, first_stage=(s == 0))
        parent_fraction = parent_fraction * stage.sampling_fraction
    return total


def _residualize(design: SurveyDesign, x: np.ndarray) -> np.ndarray:
    for cal in design.calibrations:
        x = cal.residualize(x)
    return x


def _scores_and_domains(design: SurveyDesign, x: np.ndarray, domain: np.ndarray | None,
                        n_domains: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores as float64 (n, k) and domain codes (one domain when ``domain`` is None)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if domain is None:
        return x, np.zeros(design.n, dtype=np.int64), 1
    return x, np.asarray(domain, dtype=np.int64), int(n_domains)


def taylor_variance(
    design: SurveyDesign,
    x: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
) -> np.ndarray:
    """Variance of the weighted totals of every column in every domain.

    Parameters
    ----------
    design : SurveyDesign
        The design (its stages, lonely-PSU rule and calibrations are used).
    x : ndarray of shape (n,) or (n, k)
        Weighted scores, ``w_i z_i``.
    domain : ndarray of int of shape (n,), optional
        Domain code of each row in ``0..n_domains-1``; ``-1`` puts the row in
        no domain.  ``None``: one domain holding every row.
    n_domains : int, default=1
        Number of domain codes.

    Returns
    -------
    ndarray of shape (n_domains, k)

    Notes
    -----
    For each stage, stratum *h* and domain *g*, with cluster totals
    :math:`t_{hig} = \\sum_{j \\in hi} x_j 1\\{g_j = g\\}`,

    .. math::

        V_g = \\sum_h F_h (1 - f_h) \\frac{n_h}{n_h - 1}
              \\sum_{i=1}^{n_h} (t_{hig} - \\bar t_{hg})^2

    where clusters with no row in the domain count as :math:`t = 0`,
    :math:`f_h = n_h/N_h` and :math:`F_h` is the product of the sampling
    fractions of the earlier stages (1 at stage 1).  After calibration the
    scores are first replaced by their calibration residuals, on dense
    domain columns processed in blocks.
    """
    squeeze = np.ndim(x) == 1
    x, domain, n_domains = _scores_and_domains(design, x, domain, n_domains)
    if not design.calibrations:
        out = _sparse_variance(design, x, domain, n_domains)
    else:
        k = x.shape[1]
        out = np.zeros((n_domains, k))
        # dense columns (domain g, column j), in blocks of pairs, built in one vectorised step
        g_all = np.repeat(np.arange(n_domains), k)
        j_all = np.tile(np.arange(k), n_domains)
        zero_domain = np.zeros(design.n, dtype=np.int64)
        for start in range(0, g_all.size, _BLOCK):
            gs, js = g_all[start:start + _BLOCK], j_all[start:start + _BLOCK]
            dense = np.where(domain[:, None] == gs[None, :], x[:, js], 0.0)
            dense = _residualize(design, dense)
            out[gs, js] = _sparse_variance(design, dense, zero_domain, 1)[0]
    return out[:, 0] if squeeze else out


def _average_factor(stage: Stage, domain: np.ndarray, n_domains: int,
                    keep: np.ndarray) -> np.ndarray | None:
    """Per domain, R's ``"average"`` factor: strata present over strata without a lonely PSU.

    R's svyby/subset drops the rows outside a domain, so the strata and the
    lonely strata are counted among the strata present in each domain.
    ``None`` when no stratum is lonely.
    """
    lonely_row = stage.n_sampled == 1
    if stage.popsize is not None:
        lonely_row = lonely_row & (stage.popsize > 1)
    if not lonely_row.any():
        return None
    n_strata_codes = int(stage.stratum.max()) + 1
    is_lonely = np.zeros(n_strata_codes, dtype=bool)
    is_lonely[stage.stratum[lonely_row]] = True
    pres = np.unique(stage.stratum[keep] * n_domains + domain[keep])
    p_stratum, p_domain = pres // n_domains, pres % n_domains
    n_all = np.bincount(p_domain, minlength=n_domains)
    n_lonely = np.bincount(p_domain[is_lonely[p_stratum]], minlength=n_domains)
    n_ok = n_all - n_lonely
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_ok > 0, n_all / np.maximum(n_ok, 1), np.nan)


def _stage_cov(x: np.ndarray, domain: np.ndarray, n_domains: int, stage: Stage,
               parent_fraction: np.ndarray, lonely_psu: str, first_stage: bool) -> np.ndarray:
    """Covariance contribution of one stage, (G k, G k), columns ordered (domain, column)."""
    from scipy import sparse

    k = x.shape[1]
    n_cols = n_domains * k
    keep = domain >= 0
    rows = np.flatnonzero(keep)
    n_clusters = int(stage.cluster.max()) + 1
    # cluster totals T (clusters x G k), sparse: a row adds x[i, j] to column g_i k + j
    coo = sparse.coo_matrix(
        (x[rows].ravel(), (np.repeat(stage.cluster[rows], k),
                           (domain[rows][:, None] * k + np.arange(k)[None, :]).ravel())),
        shape=(n_clusters, n_cols))
    t = coo.tocsr()
    t.sum_duplicates()
    n_strata_codes = int(stage.stratum.max()) + 1
    n_h, f_h = _per_stratum(stage, n_strata_codes)
    mult = np.ones(n_strata_codes)
    mult[stage.stratum] = parent_fraction
    cluster_stratum = np.zeros(n_clusters, dtype=np.int64)
    cluster_stratum[stage.cluster] = stage.stratum
    lonely = n_h == 1
    scale = (1.0 - f_h) * np.where(lonely, 1.0, n_h / np.maximum(n_h - 1.0, 1.0))
    scale = np.where(1.0 - f_h < 1e-7, 0.0, scale)  # certainty strata contribute nothing
    if lonely_psu in ("remove", "certainty", "average"):
        scale = np.where(lonely, 0.0, scale)
    scale = scale * mult
    # stratum means M (strata x G k); "adjust" centres a lonely PSU at 0
    a = sparse.csr_matrix((np.ones(n_clusters), (cluster_stratum, np.arange(n_clusters))),
                          shape=(n_strata_codes, n_clusters))
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_n = np.where(n_h > 0, 1.0 / np.maximum(n_h, 1.0), 0.0)
    if lonely_psu == "adjust":
        inv_n = np.where(lonely, 0.0, inv_n)
    m = sparse.diags(inv_n) @ (a @ t)
    centred = t - a.T @ m  # T_i - m_h(i)
    s = sparse.diags(scale[cluster_stratum])
    cov = np.asarray((centred.T @ (s @ centred)).todense())
    if lonely_psu == "average" and first_stage:
        factor = _average_factor(stage, domain, n_domains, keep)
        if factor is not None:
            f = np.sqrt(np.repeat(factor, k))
            cov = cov * f[:, None] * f[None, :]
    return cov


def taylor_vcov(
    design: SurveyDesign,
    x: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
) -> np.ndarray:
    """Covariance matrix of the weighted totals of every column in every domain.

    Parameters
    ----------
    design : SurveyDesign
    x : ndarray of shape (n, k)
        Weighted scores, ``w_i z_i``.
    domain : ndarray of int of shape (n,), optional
        Domain code of each row (``-1``: no domain); ``None``: one domain.
    n_domains : int, default=1

    Returns
    -------
    ndarray of shape (n_domains * k, n_domains * k)
        Rows and columns ordered domain-major: ``g * k + j``.

    Notes
    -----
    With :math:`t_{hi}` the vector of cluster totals of every (domain,
    column) pair, each stage adds

    .. math:: \\sum_h F_h (1 - f_h) \\frac{n_h}{n_h - 1}
              \\sum_i (t_{hi} - \\bar t_h)(t_{hi} - \\bar t_h)^T,

    whose diagonal is :func:`taylor_variance` (R's ``svyrecvar`` on the
    influence functions of all domains, ``svyby(..., covmat = TRUE)``).  Lonely
    PSUs follow the design's rule; for ``"average"`` the per-domain factor
    :math:`c_g` of :func:`taylor_variance` scales entry :math:`(g, g')` by
    :math:`\\sqrt{c_g c_{g'}}`, so the diagonal equals the variances.  After
    calibration the scores are first replaced by their calibration residuals.
    """
    x, domain, n_domains = _scores_and_domains(design, x, domain, n_domains)
    k = x.shape[1]
    if design.calibrations:
        keep = domain >= 0
        dense = np.zeros((design.n, n_domains * k))
        rows = np.flatnonzero(keep)
        cols = domain[rows][:, None] * k + np.arange(k)[None, :]
        dense[rows[:, None], cols] = x[rows]
        x = _residualize(design, dense)
        domain = np.zeros(design.n, dtype=np.int64)
        n_domains, k = 1, x.shape[1]
    out = np.zeros((n_domains * k, n_domains * k))
    parent_fraction = np.ones(design.n)
    for s, stage in enumerate(design.stages):
        out += _stage_cov(x, domain, n_domains, stage, parent_fraction, design.lonely_psu,
                          first_stage=(s == 0))
        parent_fraction = parent_fraction * stage.sampling_fraction
    return (out + out.T) / 2.0  # exactly symmetric
