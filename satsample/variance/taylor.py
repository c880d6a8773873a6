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

__all__ = ["taylor_finish", "taylor_pieces", "taylor_variance", "taylor_vcov",
           "taylor_vcov_finish", "taylor_vcov_pieces"]

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
) -> np.ndarray:
    """Variance contribution of one stage, (n_domains, k) (before the "average" factor)."""
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
    return contrib


def _sparse_pieces(design: SurveyDesign, x: np.ndarray, domain: np.ndarray,
                   n_domains: int) -> dict[str, np.ndarray]:
    """Additive pieces of the variance (sums over strata): stage 1, later stages, strata counts."""
    first, later = _by_stage(design, _stage_contrib, x, domain, n_domains)
    n_all, n_lonely = _average_counts(design, domain, n_domains)
    return {"first": first, "later": later, "n_all": n_all, "n_lonely": n_lonely}


def _by_stage(design: SurveyDesign, contrib, x: np.ndarray, domain: np.ndarray,
              n_domains: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1's contribution and the sum of the later stages' (each times the earlier fractions)."""
    first = later = None
    parent_fraction = np.ones(design.n)
    for s, stage in enumerate(design.stages):
        c = contrib(x, domain, n_domains, stage, parent_fraction, design.lonely_psu)
        if s == 0:
            first, later = c, np.zeros_like(c)
        else:
            later += c
        parent_fraction = parent_fraction * stage.sampling_fraction
    return first, later


def _average_counts(design: SurveyDesign, domain: np.ndarray,
                    n_domains: int) -> tuple[np.ndarray, np.ndarray]:
    """Per domain, the strata present and those with a lonely PSU (rule "average", else zeros)."""
    if design.lonely_psu != "average":
        return np.zeros(n_domains), np.zeros(n_domains)
    return _average_strata(design.stages[0], domain, n_domains, domain >= 0)


def taylor_finish(pieces: dict[str, np.ndarray]) -> np.ndarray:
    """Variances (G, k) from the (summed) pieces of :func:`taylor_pieces`.

    Stage 1 is multiplied by the "average" factor of each domain: strata
    present over strata without a lonely PSU (1 when no stratum is lonely).
    """
    factor = _average_factor(pieces["n_all"], pieces["n_lonely"])
    return pieces["first"] * factor[:, None] + pieces["later"]


def _residualize(design: SurveyDesign, x: np.ndarray) -> np.ndarray:
    for cal in design.calibrations:
        x = cal.residualize(x)
    return x


def dense_blocks(n_domains: int, k: int, block: int = _BLOCK):
    """(domains, columns, pair indices) of the dense domain columns, block by block.

    A calibrated design's scores are residualised on dense columns, one per
    (domain g, column j) pair (pair index ``g k + j``), ``block`` pairs at a time.
    """
    g_all = np.repeat(np.arange(n_domains), k)
    j_all = np.tile(np.arange(k), n_domains)
    for start in range(0, g_all.size, block):
        yield (g_all[start:start + block], j_all[start:start + block],
               np.arange(start, min(start + block, g_all.size)))


def dense_columns(x: np.ndarray, domain: np.ndarray, gs: np.ndarray, js: np.ndarray) -> np.ndarray:
    """``x[:, j]`` in domain ``g`` (zero elsewhere) for every pair of a block."""
    return np.where(domain[:, None] == gs[None, :], x[:, js], 0.0)


def _memory_residualizers(design: SurveyDesign):
    """The design's residualizers as ``f(x, pairs)`` (in memory the pairs do not matter)."""
    return tuple((lambda x, pairs, cal=cal: cal.residualize(x)) for cal in design.calibrations)


def taylor_pieces(design: SurveyDesign, x: np.ndarray, *, domain: np.ndarray | None = None,
                  n_domains: int = 1, residualize=None) -> dict[str, np.ndarray]:
    """Additive pieces of :func:`taylor_variance`: sums over the strata of ``design``.

    Parameters
    ----------
    design, x, domain, n_domains
        As :func:`taylor_variance`.
    residualize : sequence of callables, optional
        ``f(dense, pairs) -> residuals`` applied in order to the dense domain
        columns of a calibrated design (``pairs``: their (domain, column) pair
        indices, see :func:`dense_blocks`); default: the design's calibrations.

    Returns
    -------
    dict
        ``first`` and ``later`` (G, k): stage-1 and later-stage contributions;
        ``n_all``, ``n_lonely`` (G,): strata present and lonely strata per
        domain (rule "average").  Pieces of designs holding disjoint sets of
        whole strata add up; :func:`taylor_finish` turns the sum into variances.
    """
    x, domain, n_domains = _scores_and_domains(design, x, domain, n_domains)
    resid = _memory_residualizers(design) if residualize is None else tuple(residualize)
    if not resid:
        return _sparse_pieces(design, x, domain, n_domains)
    k = x.shape[1]
    out = {"first": np.zeros((n_domains, k)), "later": np.zeros((n_domains, k))}
    zero_domain = np.zeros(design.n, dtype=np.int64)
    for gs, js, pairs in dense_blocks(n_domains, k):
        dense = dense_columns(x, domain, gs, js)
        for f in resid:
            dense = f(dense, pairs)
        p = _sparse_pieces(design, dense, zero_domain, 1)
        out["first"][gs, js] = p["first"][0]
        out["later"][gs, js] = p["later"][0]
    n_all, n_lonely = _average_counts(design, zero_domain, 1)
    out["n_all"] = np.repeat(n_all, n_domains)
    out["n_lonely"] = np.repeat(n_lonely, n_domains)
    return out


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
    out = taylor_finish(taylor_pieces(design, x, domain=domain, n_domains=n_domains))
    return out[:, 0] if squeeze else out


def _average_strata(stage: Stage, domain: np.ndarray, n_domains: int,
                    keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per domain, the strata present and the strata with a lonely PSU among them (float64).

    R's svyby/subset drops the rows outside a domain, so the strata and the
    lonely strata are counted among the strata present in each domain.
    """
    lonely_row = stage.n_sampled == 1
    if stage.popsize is not None:
        lonely_row = lonely_row & (stage.popsize > 1)
    n_strata_codes = int(stage.stratum.max()) + 1 if stage.stratum.size else 1
    is_lonely = np.zeros(n_strata_codes, dtype=bool)
    is_lonely[stage.stratum[lonely_row]] = True
    pres = np.unique(stage.stratum[keep] * n_domains + domain[keep])
    p_stratum, p_domain = pres // n_domains, pres % n_domains
    n_all = np.bincount(p_domain, minlength=n_domains).astype(np.float64)
    n_lonely = np.bincount(p_domain[is_lonely[p_stratum]], minlength=n_domains).astype(np.float64)
    return n_all, n_lonely


def _average_factor(n_all: np.ndarray, n_lonely: np.ndarray) -> np.ndarray:
    """R's ``"average"`` factor per domain: strata present over strata without a lonely PSU.

    1 where no stratum of the domain is lonely (and for the other rules, whose counts are 0).
    """
    n_ok = n_all - n_lonely
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n_ok > 0, n_all / np.maximum(n_ok, 1), np.nan)
    return np.where(n_lonely > 0, f, 1.0)


def _dense_codes(codes: np.ndarray) -> np.ndarray:
    """Codes renumbered ``0..m-1`` in their order when some codes below the maximum are absent."""
    seen = np.bincount(codes) > 0 if codes.size else np.zeros(0, dtype=bool)
    if bool(seen.all()):
        return codes
    return (np.cumsum(seen) - 1)[codes]


def _stage_cov(x: np.ndarray, domain: np.ndarray, n_domains: int, stage: Stage,
               parent_fraction: np.ndarray, lonely_psu: str) -> np.ndarray:
    """Covariance contribution of one stage, (G k, G k), columns ordered (domain, column).

    Before the "average" factor (applied to the sum, :func:`taylor_vcov_finish`).
    """
    from scipy import sparse

    k = x.shape[1]
    n_cols = n_domains * k
    keep = domain >= 0
    rows = np.flatnonzero(keep)
    cluster = _dense_codes(stage.cluster)  # a Dask partition holds some of the global codes
    n_clusters = int(cluster.max()) + 1
    # cluster totals T (clusters x G k), sparse: a row adds x[i, j] to column g_i k + j
    coo = sparse.coo_matrix(
        (x[rows].ravel(), (np.repeat(cluster[rows], k),
                           (domain[rows][:, None] * k + np.arange(k)[None, :]).ravel())),
        shape=(n_clusters, n_cols))
    t = coo.tocsr()
    t.sum_duplicates()
    n_strata_codes = int(stage.stratum.max()) + 1
    n_h, f_h = _per_stratum(stage, n_strata_codes)
    mult = np.ones(n_strata_codes)
    mult[stage.stratum] = parent_fraction
    cluster_stratum = np.zeros(n_clusters, dtype=np.int64)
    cluster_stratum[cluster] = stage.stratum
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
    return np.asarray((centred.T @ (s @ centred)).todense())


def taylor_vcov_pieces(design: SurveyDesign, x: np.ndarray, *, domain: np.ndarray | None = None,
                       n_domains: int = 1, residualize=None) -> dict[str, np.ndarray]:
    """Additive pieces of :func:`taylor_vcov` (sums over the strata of ``design``).

    As :func:`taylor_pieces`: ``first``, ``later`` (G k, G k) and the strata
    counts ``n_all``, ``n_lonely`` per column (G k,); ``residualize`` as there
    (applied to all dense columns at once, pairs ``0..G k - 1``).
    """
    x, domain, n_domains = _scores_and_domains(design, x, domain, n_domains)
    k = x.shape[1]
    resid = _memory_residualizers(design) if residualize is None else tuple(residualize)
    if resid:
        keep = domain >= 0
        dense = np.zeros((design.n, n_domains * k))
        rows = np.flatnonzero(keep)
        cols = domain[rows][:, None] * k + np.arange(k)[None, :]
        dense[rows[:, None], cols] = x[rows]
        pairs = np.arange(n_domains * k)
        for f in resid:
            dense = f(dense, pairs)
        x = dense
        domain = np.zeros(design.n, dtype=np.int64)
        n_domains, k = 1, x.shape[1]
    first, later = _by_stage(design, _stage_cov, x, domain, n_domains)
    n_all, n_lonely = _average_counts(design, domain, n_domains)
    return {"first": first, "later": later, "n_all": np.repeat(n_all, k),
            "n_lonely": np.repeat(n_lonely, k)}


def taylor_vcov_finish(pieces: dict[str, np.ndarray]) -> np.ndarray:
    """Covariance matrix from the (summed) pieces of :func:`taylor_vcov_pieces` (exactly symmetric)."""
    f = np.sqrt(_average_factor(pieces["n_all"], pieces["n_lonely"]))
    out = pieces["first"] * f[:, None] * f[None, :] + pieces["later"]
    return (out + out.T) / 2.0


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
    return taylor_vcov_finish(taylor_vcov_pieces(design, x, domain=domain, n_domains=n_domains))
