"""League tables with uncertainty: ranks, rank intervals, top/bottom-k probabilities.

Every year SIPAS-type results are published as a ranking of agencies or provinces
(descending index, rank 1 = most satisfied; ``shared/docs/sipas.md`` section 4.5).  A rank is
a statistic like any other: :func:`league_table` gives, for each domain of an
:class:`~satsample.results.IndexEstimate`, its rank, an interval for the rank from the
replicate distribution, the probability of being in the top and bottom *k*, and a test of the
difference between the domain and the overall (reference) index.  :func:`rank_intervals`
does the rank part on plain arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._compat import confidence_level_keywords
from .._tables import TableField
from .._validation import (
    SatsampleError,
    SmallDomainWarning,
    check_choice,
    check_positive_int,
    check_probability,
    plain,
)

__all__ = ["LeagueTable", "league_table", "rank_intervals"]

Ties = Literal["min", "max", "average", "dense", "ordinal"]
Level = Literal["overall", "element", "item"]
Adjust = Literal["holm", "bonferroni", "none"]

_TIES: tuple[str, ...] = ("min", "max", "average", "dense", "ordinal")
_LEVELS: tuple[str, ...] = ("overall", "element", "item")
_REP_KEYS = {"overall": "overall", "element": "elements", "item": "items"}
_GROUP_COL = {"overall": None, "element": "element", "item": "item"}
_BUILD_REPLICATES = (
    "build a replicate design first, e.g. "
    "design = satsample.replicate.bootstrap(design, n_replicates=500, rng=...), "
    "then re-estimate with satsample.index.satisfaction_index(design, ...)"
)


# --------------------------------------------------------------------------- result access
def _by_columns(estimate: Any, table: pd.DataFrame, group_col: str | None) -> list[str]:
    """Domain columns of a result table (``estimate.by`` when present)."""
    by = getattr(estimate, "by", None)
    if by is None:
        stat_cols = {"estimate", "se", "ci_low", "ci_high", "df", "deff", "n", "variable",
                     "element", "item"}
        cols = [c for c in table.columns if c not in stat_cols]
        return cols
    if isinstance(by, str):
        return [by]
    return [str(b) for b in by]


def _domain_labels(table: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """One text label per row: the by value(s), joined by `` / ``; ``"all"`` without by."""
    if not by:
        return pd.Series(["all"] * len(table), index=table.index, dtype=object)
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise SatsampleError(f"result table has no domain column(s) {missing}")
    parts = [table[c].astype(object).map(lambda v: "NA" if pd.isna(v) else str(v)) for c in by]
    out = parts[0]
    for p in parts[1:]:
        out = out + " / " + p
    return out.astype(object)


def _result_table(estimate: Any, which: str) -> pd.DataFrame:
    """The per-domain table of ``estimate`` at ``which`` (a copy)."""
    check_choice(which, name="table", allowed=_LEVELS)
    if hasattr(estimate, "to_frame"):
        try:
            tab = estimate.to_frame(which)
        except TypeError:
            tab = None
        if tab is not None:
            return pd.DataFrame(tab).copy()
    attr = {"overall": "overall", "element": "elements", "item": "items"}[which]
    tab = getattr(estimate, attr, None)
    if tab is None:
        raise SatsampleError(
            f"estimate of type {type(estimate).__name__} has no {which!r} table "
            f"(expected an IndexEstimate with .{attr})"
        )
    return pd.DataFrame(tab).copy()


def _level_data(estimate: Any, which: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Rows of ``which`` with a ``domain`` label column, and replicates aligned to the rows.

    Returns
    -------
    table : DataFrame
        The result table plus ``domain`` (text label), in the result's row order.
    replicates : ndarray of shape (R, n_rows) or None
    """
    tab = _result_table(estimate, which)
    group_col = _GROUP_COL[which]
    if group_col is not None and group_col not in tab.columns:
        raise SatsampleError(f"the {which!r} table has no {group_col!r} column")
    by = _by_columns(estimate, tab, group_col)
    tab.insert(0, "domain", _domain_labels(tab, by).to_numpy())
    reps = getattr(estimate, "replicate_estimates", None)
    if reps is None:
        return tab.reset_index(drop=True), None
    if isinstance(reps, Mapping):
        arr = reps.get(_REP_KEYS[which])
        if arr is None:
            return tab.reset_index(drop=True), None
    else:
        arr = reps if which == "overall" else None
        if arr is None:
            return tab.reset_index(drop=True), None
    arr = np.asarray(arr, dtype=np.float64)
    tab = tab.reset_index(drop=True)
    if which == "overall":
        if arr.ndim != 2 or arr.shape[1] != len(tab):
            raise SatsampleError(
                f"replicate_estimates['overall'] has shape {arr.shape}, expected "
                f"(R, {len(tab)}) to match the overall table"
            )
        return tab, arr
    # element / item: replicates are (R, G, E|K); G in overall-table order
    overall = _result_table(estimate, "overall")
    dom_order = list(pd.unique(_domain_labels(overall, _by_columns(estimate, overall, None))))
    q = getattr(estimate, "questionnaire", None)
    if q is not None:
        keys = list(q.element_codes if which == "element" else q.items)
    else:
        keys = list(pd.unique(tab[group_col].astype(str)))
    if arr.ndim != 3 or arr.shape[1] != len(dom_order) or arr.shape[2] != len(keys):
        raise SatsampleError(
            f"replicate_estimates[{_REP_KEYS[which]!r}] has shape {arr.shape}, expected "
            f"(R, {len(dom_order)}, {len(keys)})"
        )
    g_pos = {d: i for i, d in enumerate(dom_order)}
    k_pos = {k: i for i, k in enumerate(keys)}
    try:
        gi = np.array([g_pos[d] for d in tab["domain"]], dtype=np.int64)
        ki = np.array([k_pos[str(k)] for k in tab[group_col]], dtype=np.int64)
    except KeyError as exc:
        raise SatsampleError(
            f"row {exc.args[0]!r} of the {which!r} table is not in the replicate layout"
        ) from None
    return tab, arr[:, gi, ki]


# --------------------------------------------------------------------------- rank machinery
def _alpha(level: float) -> float:
    """``1 - level``, rounded so that ``level=0.95`` gives exactly ``0.05`` (quantile positions)."""
    return round(1.0 - float(level), 12)


def _rank(values: np.ndarray, *, descending: bool, ties: str, axis: int = -1) -> np.ndarray:
    v = -values if descending else values
    return stats.rankdata(v, method=ties, axis=axis).astype(np.float64)


def _k_membership(values: np.ndarray, k: int, *, best: bool, descending: bool) -> np.ndarray:
    """Share of the first ``k`` places held by each domain, replicate by replicate.

    A tie group occupying places ``a..b`` that straddles ``k`` shares the places left
    (``k - a + 1``) equally, so the memberships of a replicate always sum to ``min(k, G)``.
    """
    towards_best = descending if best else not descending
    v = -values if towards_best else values
    lo = stats.rankdata(v, method="min", axis=-1)
    hi = stats.rankdata(v, method="max", axis=-1)
    size = hi - lo + 1
    return np.clip(k - (lo - 1), 0, size) / size


@confidence_level_keywords(alpha=True)
def rank_intervals(
    estimates: Any,
    replicate_estimates: Any,
    *,
    descending: bool = True,
    level: float = 0.95,
    ties: Ties = "min",
    top_k: int = 5,
    bottom_k: int = 5,
    labels: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Ranks, rank intervals and top/bottom-k probabilities from replicate estimates.

    Parameters
    ----------
    estimates : array-like of shape (G,)
        Full-sample estimates of the G domains (no NaN).
    replicate_estimates : array-like of shape (R, G)
        Replicate (bootstrap, jackknife, BRR...) estimates of the same domains.  Replicates
        with a NaN for any domain are left out and counted (column attrs
        ``n_replicates_used``/``n_replicates_excluded`` of the result).
    descending : bool, default=True
        Rank 1 goes to the largest estimate (SIPAS ranks descending).
    level : float, default=0.95
        Confidence level of the rank intervals: with :math:`\\alpha = 1 - \\text{level}`
        the rank interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles of the domain's
        replicate ranks.
    ties : {"min", "max", "average", "dense", "ordinal"}, default="min"
        Rule for tied estimates (as :func:`scipy.stats.rankdata`); ``"min"`` gives tied
        domains the same, best, rank ("1, 2, 2, 4").
    top_k, bottom_k : int, default=5
        Sizes of the published top and bottom lists.
    labels : sequence or None, default=None
        Domain labels (index of the result); ``0..G-1`` when None.

    Returns
    -------
    pandas.DataFrame
        One row per domain: ``estimate``, ``rank``, ``rank_low``, ``rank_high``,
        ``p_top``, ``p_bottom``.  ``attrs`` holds the replicate counts.

    Notes
    -----
    With :math:`\\hat\\theta_{rg}` the replicate estimates, the replicate rank of domain
    :math:`g` is :math:`r_{rg} = \\operatorname{rank}(\\hat\\theta_{r\\cdot})_g` (same ties
    rule).  The rank interval is

    .. math:: [Q_{\\alpha/2}(r_{\\cdot g}),\\; Q_{1-\\alpha/2}(r_{\\cdot g})],

    with :math:`Q_p` the inverted empirical distribution function (the smallest observed
    rank whose empirical CDF reaches :math:`p`), so the bounds are observed ranks.  The
    probability of the top :math:`k` is the share of replicates in which the domain holds
    one of the first :math:`k` places; a tie group straddling place :math:`k` shares the
    places left equally, so that :math:`\\sum_g P_g(\\text{top } k) = \\min(k, G)` exactly.
    Well-separated domains (no replicate changes the order) get intervals of width 0 and
    probabilities 0 or 1; identical domains share their ranks.

    Replicate ranks treat the replicate distribution of the estimates as an approximation
    of their sampling distribution (a parametric-free bootstrap view); with jackknife or
    BRR replicates, whose spread is scaled by the variance factor rather than being a
    sample from the sampling distribution, the intervals are too narrow (jackknife) and a
    bootstrap design (``satsample.replicate.bootstrap``) is recommended.
    """
    est = np.asarray(estimates, dtype=np.float64)
    reps = np.asarray(replicate_estimates, dtype=np.float64)
    check_probability(level, name="level")
    alpha = _alpha(level)
    check_choice(ties, name="ties", allowed=_TIES)
    check_positive_int(top_k, name="top_k")
    check_positive_int(bottom_k, name="bottom_k")
    if est.ndim != 1 or est.size == 0:
        raise SatsampleError(f"estimates must be a non-empty 1-d array, got shape {est.shape}")
    if np.isnan(est).any():
        bad = np.flatnonzero(np.isnan(est)).tolist()
        raise SatsampleError(f"estimates: domain position(s) {bad} are NaN; drop them first")
    if reps.ndim != 2 or reps.shape[1] != est.size:
        raise SatsampleError(
            f"replicate_estimates must have shape (R, {est.size}), got {reps.shape}"
        )
    keep = ~np.isnan(reps).any(axis=1)
    n_excl = int((~keep).sum())
    reps = reps[keep]
    if reps.shape[0] < 2:
        raise SatsampleError(
            f"rank intervals need at least 2 replicates without NaN, got {reps.shape[0]} "
            f"({n_excl} excluded for NaN)"
        )
    rank = _rank(est, descending=descending, ties=ties)
    rep_rank = _rank(reps, descending=descending, ties=ties, axis=1)
    low = np.quantile(rep_rank, alpha / 2, axis=0, method="inverted_cdf")
    high = np.quantile(rep_rank, 1 - alpha / 2, axis=0, method="inverted_cdf")
    p_top = _k_membership(reps, top_k, best=True, descending=descending).mean(axis=0)
    p_bottom = _k_membership(reps, bottom_k, best=False, descending=descending).mean(axis=0)
    index = pd.Index(range(est.size) if labels is None else list(labels), name="domain")
    if len(index) != est.size:
        raise SatsampleError(f"labels has {len(index)} entries for {est.size} domains")
    out = pd.DataFrame(
        {"estimate": est, "rank": rank, "rank_low": low, "rank_high": high,
         "p_top": p_top, "p_bottom": p_bottom},
        index=index,
    )
    out.attrs["n_replicates_used"] = int(reps.shape[0])
    out.attrs["n_replicates_excluded"] = n_excl
    return out


# --------------------------------------------------------------------------- variance of contrasts
def _replicate_variance_fn(
    estimate: Any, replicates: Any, reps: np.ndarray, est: np.ndarray, se: np.ndarray
) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]:
    """A function ``(theta_r (R, m), theta (m,)) -> variance (m,)`` and how it was obtained.

    Order of preference: an explicit ``replicates`` (ReplicateWeights or a design with
    ``.replicates``); ``estimate.replicates``; replicate options stored in
    ``estimate.options`` (``replicate_scale``, ``rscales``, ``mse``); finally a common factor
    inferred from the reported standard errors (valid when all replicates have the same
    multiplier, as for bootstrap, JK1, BRR and Fay).
    """
    for cand in (replicates, getattr(estimate, "replicates", None)):
        if cand is None:
            continue
        rw = getattr(cand, "replicates", cand)
        if rw is not None and hasattr(rw, "variance"):
            if int(getattr(rw, "n_replicates", reps.shape[0]) or reps.shape[0]) != reps.shape[0]:
                raise SatsampleError(
                    f"replicates has {rw.n_replicates} replicates but the estimate has "
                    f"{reps.shape[0]}"
                )
            return rw.variance, f"replicate ({getattr(rw, 'kind', 'given')})"
    opts = dict(getattr(estimate, "options", {}) or {})
    if "replicate_scale" in opts and "rscales" in opts:
        scale = float(opts["replicate_scale"])
        rscales = np.asarray(opts["rscales"], dtype=np.float64)
        mse = bool(opts.get("mse", False))

        def var_opts(theta_r: np.ndarray, theta: np.ndarray) -> np.ndarray:
            centre = theta if mse else theta_r.mean(axis=0)
            return scale * np.sum(rscales[:, None] * (theta_r - centre) ** 2, axis=0)

        return var_opts, "replicate (options)"
    # infer a common multiplier from the reported SEs
    ok = np.isfinite(se) & (se > 0)
    for mse in (False, True):
        centre = est if mse else reps.mean(axis=0)
        ss = np.sum((reps - centre) ** 2, axis=0)
        good = ok & (ss > 0)
        if not good.any():
            continue
        factors = se[good] ** 2 / ss[good]
        f = float(np.median(factors))
        if np.all(np.abs(factors - f) <= 1e-6 * f):

            def var_inferred(theta_r: np.ndarray, theta: np.ndarray, _f: float = f,
                             _mse: bool = mse) -> np.ndarray:
                c = theta if _mse else theta_r.mean(axis=0)
                return _f * np.sum((theta_r - c) ** 2, axis=0)

            return var_inferred, "replicate (multiplier inferred from the SEs)"
    raise SatsampleError(
        "cannot tell the replicate variance multipliers of this estimate (they differ "
        "between replicates, e.g. JKn); pass replicates=design (the replicate design the "
        "estimate was computed on)"
    )


def _holm(p: np.ndarray) -> np.ndarray:
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adj[j] = running
    return adj


def _adjust(p: np.ndarray, method: str) -> np.ndarray:
    ok = ~np.isnan(p)
    out = np.full_like(p, np.nan)
    if method == "none":
        out[ok] = p[ok]
    elif method == "bonferroni":
        out[ok] = np.minimum(1.0, p[ok] * ok.sum())
    else:
        out[ok] = _holm(p[ok])
    return out


# --------------------------------------------------------------------------- league table
@dataclass(frozen=True, kw_only=True, eq=False)
class LeagueTable:
    """A ranking of domains with its uncertainty (result of :func:`league_table`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per domain (per element or item and domain at those levels), in rank order:
        ``domain`` (text label), [``element``/``item``], ``estimate``, ``se``, ``n`` (when
        the estimate reports it), ``rank``, ``rank_low``, ``rank_high``, ``p_top``,
        ``p_bottom``, ``reference``, ``diff``, ``diff_se``, ``df``, ``p_value``,
        ``p_adjusted``, ``significant`` (``"above"``, ``"below"`` or ``""``).
        Rank-interval columns are NaN when ``rank_intervals=False``.
    options : Mapping
        Every option used (table: ``"overall"``, ``"element"`` or ``"item"``; level,
        descending, top_k, bottom_k, ties, reference, adjust,
        variance method of the contrasts, replicate counts, ``n_excluded``).
    excluded : pandas.DataFrame
        Domains left out of the ranking because they have no usable estimate (no usable
        answer): ``domain``, [``element``/``item``], ``n`` (when reported) and ``reason``.
        Empty when every domain is ranked.
    suppressed : pandas.DataFrame
        Domains left out of the ranking because the estimate flags them ``"suppress"``
        (:func:`satsample.outputs.flags.flag_estimate`): ``domain``, [``element``/``item``], ``n``,
        ``reason``.  They have no rank, are not counted in P(top k) / P(bottom k) nor in
        the mean of domains, and their value is not in :attr:`table`.
    """

    table: pd.DataFrame = TableField()
    options: Any = field(default_factory=dict)
    excluded: pd.DataFrame = field(default=TableField(optional=True), repr=False)
    suppressed: pd.DataFrame = field(default=TableField(optional=True), repr=False)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    @property
    def top(self) -> pd.DataFrame:
        """Rows ranked within the first ``top_k`` places."""
        t = self.table
        return t[t["rank"] <= self.options["top_k"]].copy()

    @property
    def bottom(self) -> pd.DataFrame:
        """Rows ranked within the last ``bottom_k`` places (per group at element/item level)."""
        t = self.table
        group = _GROUP_COL[self.options["table"]]
        if group is None:
            last = t["rank"].max()
            return t[t["rank"] > last - self.options["bottom_k"]].copy()
        parts = [g[g["rank"] > g["rank"].max() - self.options["bottom_k"]]
                 for _, g in t.groupby(group, sort=False)]
        return pd.concat(parts).copy()

    def __repr__(self) -> str:
        return (f"LeagueTable(table={self.options['table']!r}, domains={self.table['domain'].nunique()}, "
                f"top_k={self.options['top_k']}, bottom_k={self.options['bottom_k']}"
                + (f", excluded={len(self.excluded)}" if len(self.excluded) else "") + ")")


@confidence_level_keywords(table=True, alpha=True)
def league_table(
    estimate: Any,
    *,
    table: Level = "overall",
    descending: bool = True,
    top_k: int = 5,
    bottom_k: int = 5,
    level: float = 0.95,
    ties: Ties = "min",
    reference: Literal["mean_of_domains"] | float | Any = "mean_of_domains",
    adjust: Adjust = "holm",
    rank_intervals: bool = True,
    replicates: Any = None,
) -> LeagueTable:
    """Rank the domains of an index estimate, with rank intervals and comparisons.

    Parameters
    ----------
    estimate : IndexEstimate
        Result of :func:`satsample.index.satisfaction_index` with ``by=`` domains.  Rank
        intervals and top/bottom probabilities need its ``replicate_estimates`` (a replicate
        design).  When its tables carry publication flags
        (:func:`satsample.outputs.flags.flag_estimate`), the domains flagged ``"suppress"`` are
        not ranked: they are left out of the ranks, the rank intervals, P(top k),
        P(bottom k) and the mean of domains, and listed in ``LeagueTable.suppressed``;
        ``"review"`` rows are ranked and keep their ``status`` column.
    table : {"overall", "element", "item"}, default="overall"
        Which index to rank; at ``"element"``/``"item"`` the domains are ranked within each
        element/item.
    descending : bool, default=True
        Rank 1 = highest index (SIPAS convention).
    top_k, bottom_k : int, default=5
        Sizes of the top and bottom lists (SIPAS publishes top 5 and bottom 5).
    level : float, default=0.95
        Confidence level: rank intervals cover ``level`` and the comparisons with the
        reference are tested at ``alpha = 1 - level``.
    ties : {"min", "max", "average", "dense", "ordinal"}, default="min"
        Rule for tied estimates; the default gives tied domains the same rank, computed at
        full precision (sipas.md section 7: higher precision first, then a shared rank).
    reference : "mean_of_domains", float or IndexEstimate, default="mean_of_domains"
        What "the overall index" is.  ``"mean_of_domains"``: the unweighted mean of the
        domain indices in the table (SIPAS's "trung bình cả nước"); a float: a fixed value
        (treated as known, e.g. a published target); an IndexEstimate without ``by`` on the
        same replicate design: the pooled index (needs replicates; see Notes).
    adjust : {"holm", "bonferroni", "none"}, default="holm"
        Multiplicity adjustment of the p-values over the domains (within each element/item
        group); ``significant`` uses the adjusted p-values.
    rank_intervals : bool, default=True
        Compute rank intervals and top/bottom probabilities; with False, a Taylor estimate
        is enough and those columns are NaN.
    replicates : SurveyDesign, ReplicateWeights or None, default=None
        The replicate design of the estimate, needed only when its replicate multipliers
        differ between replicates (JKn) and are not recorded in the estimate.

    Returns
    -------
    LeagueTable

    Raises
    ------
    SatsampleError
        When rank intervals are asked for an estimate without replicate estimates (the
        message says how to build a replicate design), for a pooled reference without
        replicates, or for bad options.

    Notes
    -----
    Ranks and rank intervals: see :func:`rank_intervals`.

    Comparison with the reference.  For domain :math:`g` the difference is
    :math:`\\Delta_g = \\hat I_g - \\hat I_{\\text{ref}}`.

    * ``"mean_of_domains"``: :math:`\\hat I_{\\text{ref}} = G^{-1}\\sum_h \\hat I_h`, so
      :math:`\\Delta_g = \\sum_h c_{gh} \\hat I_h` with :math:`c_{gh} = 1\\{g=h\\} - 1/G`.
      With replicates, :math:`\\Delta_{g,r}` is formed in each replicate and its variance is
      the replicate variance of the design, which carries every covariance between domains.
      Without replicates (Taylor), :math:`v(\\Delta_g) = c_g^T V c_g` with :math:`V` the
      Taylor covariance of the domain estimates (``estimate.vcov(table)``, which carries
      the covariances of domains cutting across strata).  A result without a covariance
      (built by hand) falls back to independent domains,
      :math:`v(\\Delta_g) = (1 - 1/G)^2 v_g + G^{-2}\\sum_{h \\ne g} v_h`, exact only when
      each domain is a union of strata.  ``options["contrast_variance"]`` says which was
      used.
    * float: :math:`v(\\Delta_g) = v_g`.
    * pooled IndexEstimate: :math:`\\Delta_{g,r} = \\hat I_{g,r} - \\hat I_r` per replicate
      (both estimates must come from the same replicate design: same number of replicates).
      With Taylor the covariance of a domain with the pooled index would need the
      linearised scores, which results do not keep, so this raises.

    Test statistic :math:`t_g = \\Delta_g / \\sqrt{v(\\Delta_g)}` referred to Student's t
    with the domain's ``df`` (normal when ``df`` is missing or infinite); two-sided
    p-values are adjusted by ``adjust`` and ``significant`` is ``"above"``/``"below"`` when
    the adjusted p-value is below ``alpha``.
    """
    alpha = _check_league_options(table=table, ties=ties, adjust=adjust, level=level,
                                  top_k=top_k, bottom_k=bottom_k)
    which = table
    group_col = _GROUP_COL[which]
    tab, reps, suppressed, excluded = _rows_to_rank(estimate, which,
                                                    rank_intervals=rank_intervals)
    groups = [np.arange(len(tab))] if group_col is None else [
        np.flatnonzero((tab[group_col] == g).to_numpy()) for g in pd.unique(tab[group_col])
    ]
    ref = _reference(reference, which, reps)
    est_all = tab["estimate"].to_numpy(dtype=np.float64)
    se_all = tab["se"].to_numpy(dtype=np.float64)
    df_all = (tab["df"].to_numpy(dtype=np.float64) if "df" in tab.columns
              else np.full(len(tab), np.inf))
    cv = _contrast_variance(estimate, replicates, which, reps, ref.kind, est_all, se_all)

    cols: dict[str, np.ndarray] = {k: np.full(len(tab), np.nan) for k in (
        "rank", "rank_low", "rank_high", "p_top", "p_bottom", "reference", "diff", "diff_se",
        "p_value")}
    n_used = n_excl = 0
    for rows in groups:
        rep_g = reps[:, rows] if reps is not None else None
        ranks = _group_ranks(est_all[rows], rep_g, descending=descending, level=level,
                             ties=ties, top_k=top_k, bottom_k=bottom_k,
                             rank_intervals=rank_intervals)
        for c, values in ranks.items():
            if c == "n_replicates_used":
                n_used = values
            elif c == "n_replicates_excluded":
                n_excl = max(n_excl, values)
            else:
                cols[c][rows] = values
        contrast = _group_contrast(rows, est_all[rows], se_all[rows], df_all[rows], rep_g,
                                   ref=ref, cv=cv, tab=tab, group_col=group_col)
        for c, values in contrast.items():
            cols[c][rows] = values
    p_adj, sig = _adjusted_significance(cols, groups, adjust=adjust, alpha=alpha)
    out = _league_frame(tab, group_col, cols, df_all, p_adj, sig)
    options = MappingProxyType({
        "descending": bool(descending), "top_k": int(top_k), "bottom_k": int(bottom_k),
        "level": float(level), "table": which, "ties": ties, "reference": ref.kind,
        "adjust": adjust, "rank_intervals": bool(rank_intervals),
        "contrast_variance": cv.method,
        "n_replicates_used": int(n_used), "n_replicates_excluded": int(n_excl),
        "n_excluded": len(excluded), "n_suppressed": len(suppressed),
    })
    return LeagueTable(table=out, options=options, excluded=excluded,
                       suppressed=suppressed)


# --------------------------------------------------------------------------- league table steps
def _check_league_options(*, table: str, ties: str, adjust: str, level: float, top_k: int,
                          bottom_k: int) -> float:
    """Validate the options of :func:`league_table`; return ``alpha = 1 - level``."""
    check_choice(table, name="table", allowed=_LEVELS)
    check_choice(ties, name="ties", allowed=_TIES)
    check_choice(adjust, name="adjust", allowed=("holm", "bonferroni", "none"))
    check_probability(level, name="level")
    alpha = _alpha(level)
    check_positive_int(top_k, name="top_k")
    check_positive_int(bottom_k, name="bottom_k")
    return alpha


def _rows_to_rank(estimate: Any, which: str, *, rank_intervals: bool
                  ) -> tuple[pd.DataFrame, np.ndarray | None, pd.DataFrame, pd.DataFrame]:
    """The rows and replicates to rank, without the suppressed and the unusable rows."""
    tab, reps = _level_data(estimate, which)
    tab, reps, suppressed = _drop_suppressed(tab, reps, _GROUP_COL[which])
    for col in ("estimate", "se"):
        if col not in tab.columns:
            raise SatsampleError(f"the {which!r} table of the estimate has no {col!r} column")
    # the warning of a left-out row names the caller of league_table (one frame further up)
    tab, reps, excluded = _drop_unusable(tab, reps, _GROUP_COL[which], stacklevel=4)
    if rank_intervals and reps is None:
        options = getattr(estimate, "options", {}) or {}
        why = ("it was computed with Taylor variance" if options.get("variance") != "replicate"
               else "a closed-form jackknife of lazy replicates keeps no replicate estimates; "
               "use jackknife(..., materialize=True) or a bootstrap")
        raise SatsampleError(
            "rank intervals need replicate estimates, but this estimate has none "
            f"(replicate_estimates is None: {why}); "
            f"{_BUILD_REPLICATES}; or call league_table(..., rank_intervals=False)"
        )
    return tab, reps, suppressed, excluded


@dataclass(frozen=True)
class _Reference:
    """What the domains are compared with: its kind and, if pooled, its table and replicates."""

    kind: str
    value: float = np.nan
    tab: pd.DataFrame | None = None
    reps: np.ndarray | None = None


def _reference(reference: Any, which: str, reps: np.ndarray | None) -> _Reference:
    """Read the ``reference`` option: the mean of domains, a fixed value or a pooled index."""
    if isinstance(reference, str):
        check_choice(reference, name="reference", allowed=("mean_of_domains",))
        return _Reference(kind="mean_of_domains")
    if isinstance(reference, (int, float, np.floating, np.integer)) and not isinstance(
            reference, bool):
        return _Reference(kind="fixed", value=float(reference))
    ref_tab, ref_reps = _level_data(reference, which)
    if ref_tab["domain"].nunique() != 1:
        raise SatsampleError(
            "reference must be an IndexEstimate without by= (one domain), got "
            f"{ref_tab['domain'].nunique()} domains"
        )
    if reps is None or ref_reps is None:
        raise SatsampleError(
            "comparing domains with a pooled reference index needs replicate estimates "
            "for both (the Taylor covariance between a domain and the pooled index is "
            f"not kept in the results); {_BUILD_REPLICATES}; or use "
            "reference='mean_of_domains'"
        )
    if ref_reps.shape[0] != reps.shape[0]:
        raise SatsampleError(
            f"reference has {ref_reps.shape[0]} replicates, the estimate {reps.shape[0]}: "
            "both must be computed on the same replicate design"
        )
    return _Reference(kind="pooled", tab=ref_tab, reps=ref_reps)


@dataclass(frozen=True)
class _ContrastVariance:
    """How the variance of a difference from the reference is computed (one of three ways)."""

    method: str
    var_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    cov: np.ndarray | None = None


def _contrast_variance(estimate: Any, replicates: Any, which: str, reps: np.ndarray | None,
                       ref_kind: str, est_all: np.ndarray, se_all: np.ndarray
                       ) -> _ContrastVariance:
    """Choose the variance of the contrasts: replicates, Taylor covariance or the domain's own."""
    if reps is not None and ref_kind != "fixed":
        var_fn, method = _replicate_variance_fn(estimate, replicates, reps, est_all, se_all)
        return _ContrastVariance(method=method, var_fn=var_fn)
    if ref_kind == "mean_of_domains":
        cov = _covariance(estimate, which, len(est_all))
        return _ContrastVariance(
            method=("taylor (covariance of the domains)" if cov is not None
                    else "taylor (domains taken as independent)"), cov=cov)
    return _ContrastVariance(method="domain variance (fixed reference)")


def _group_ranks(est: np.ndarray, rep_g: np.ndarray | None, *, descending: bool, level: float,
                 ties: str, top_k: int, bottom_k: int, rank_intervals: bool
                 ) -> dict[str, Any]:
    """Ranks of one group's domains and, with replicates, their intervals and P(top/bottom k)."""
    out: dict[str, Any] = {"rank": _rank(est, descending=descending, ties=ties)}
    if rank_intervals and rep_g is not None:
        ri = _rank_intervals_impl(est, rep_g, descending=descending, level=level, ties=ties,
                                  top_k=top_k, bottom_k=bottom_k)
        for c in ("rank_low", "rank_high", "p_top", "p_bottom"):
            out[c] = ri[c].to_numpy()
        out["n_replicates_used"] = ri.attrs["n_replicates_used"]
        out["n_replicates_excluded"] = ri.attrs["n_replicates_excluded"]
    return out


def _group_contrast(rows: np.ndarray, est: np.ndarray, se: np.ndarray, df: np.ndarray,
                    rep_g: np.ndarray | None, *, ref: _Reference, cv: _ContrastVariance,
                    tab: pd.DataFrame, group_col: str | None) -> dict[str, Any]:
    """Difference of one group's domains from the reference, its SE and two-sided p-value."""
    G = rows.size
    if ref.kind == "mean_of_domains":
        ref_value = float(est.mean())
        diff = est - ref_value
        if rep_g is not None and cv.var_fn is not None:
            d_r = rep_g - rep_g.mean(axis=1, keepdims=True)
            v = cv.var_fn(d_r, diff)
        elif cv.cov is not None:
            c = np.eye(G) - 1.0 / G
            v = np.einsum("gh,hk,gk->g", c, cv.cov[np.ix_(rows, rows)], c)
        else:
            v = (1 - 1 / G) ** 2 * se**2 + (np.sum(se**2) - se**2) / G**2
    elif ref.kind == "fixed":
        ref_value = ref.value
        diff = est - ref_value
        v = se**2
    else:
        assert ref.tab is not None and ref.reps is not None and rep_g is not None
        if group_col is None:
            ref_row = 0
        else:
            key = tab[group_col].iloc[rows[0]]
            match = np.flatnonzero((ref.tab[group_col] == key).to_numpy())
            if match.size != 1:
                raise SatsampleError(f"reference has no {group_col} {key!r}")
            ref_row = int(match[0])
        ref_value = float(ref.tab["estimate"].iloc[ref_row])
        diff = est - ref_value
        d_r = rep_g - ref.reps[:, [ref_row]]
        assert cv.var_fn is not None
        v = cv.var_fn(d_r, diff)
    dse = np.sqrt(np.maximum(v, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / dse
    finite_df = np.isfinite(df) & (df > 0)
    p = np.where(finite_df, 2 * stats.t.sf(np.abs(t), np.where(finite_df, df, 1.0)),
                 2 * stats.norm.sf(np.abs(t)))
    p = np.where(dse > 0, p, np.nan)
    return {"reference": ref_value, "diff": diff, "diff_se": dse, "p_value": p}


def _adjusted_significance(cols: Mapping[str, np.ndarray], groups: list[np.ndarray], *,
                           adjust: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Adjust the p-values within each group; mark the significant rows above/below."""
    p_adj = np.full(len(cols["p_value"]), np.nan)
    for rows in groups:
        p_adj[rows] = _adjust(cols["p_value"][rows], adjust)
    sig = np.where(p_adj < alpha, np.where(cols["diff"] > 0, "above", "below"), "")
    return p_adj, sig


def _league_frame(tab: pd.DataFrame, group_col: str | None, cols: Mapping[str, np.ndarray],
                  df_all: np.ndarray, p_adj: np.ndarray, sig: np.ndarray) -> pd.DataFrame:
    """The table of :class:`LeagueTable`: its columns, in rank order within each group."""
    keep = ["domain"] + ([group_col] if group_col else []) + ["estimate", "se"]
    keep += [c for c in ("n", "status", "reason", "source") if c in tab.columns]
    out = tab[keep].copy()
    for c in ("rank", "rank_low", "rank_high", "p_top", "p_bottom", "reference", "diff",
              "diff_se"):
        out[c] = cols[c]
    out["df"] = df_all
    out["p_value"] = cols["p_value"]
    out["p_adjusted"] = p_adj
    out["significant"] = sig
    sort_cols = ([group_col] if group_col else []) + ["rank", "domain"]
    if group_col:
        order = {g: i for i, g in enumerate(pd.unique(tab[group_col]))}
        out = out.assign(_g=out[group_col].map(order)).sort_values(
            ["_g", "rank", "domain"], kind="stable").drop(columns="_g")
    else:
        out = out.sort_values(sort_cols, kind="stable")
    return out.reset_index(drop=True)


def _drop_unusable(tab: pd.DataFrame, reps: np.ndarray | None, group_col: str | None, *,
                   stacklevel: int = 3) -> tuple[pd.DataFrame, np.ndarray | None, pd.DataFrame]:
    """Leave out the rows with no estimate (a domain without a usable answer), with a note."""
    est = tab["estimate"].to_numpy(dtype=np.float64)
    bad = np.isnan(est)
    keys = ["domain"] + ([group_col] if group_col else []) + (["n"] if "n" in tab.columns else [])
    excluded = tab.loc[bad, keys].reset_index(drop=True)
    if "n" in tab.columns:
        n_bad = tab.loc[bad, "n"].to_numpy(dtype=np.float64)
        reason = np.where(n_bad == 0, "no usable answer (n = 0): estimate is NaN",
                          "estimate is NaN")
    else:
        reason = np.full(int(bad.sum()), "estimate is NaN")
    excluded["reason"] = reason
    if not bad.any():
        return tab, reps, excluded
    if bad.all():
        raise SatsampleError("league_table: no domain has a usable estimate (all are NaN)")
    names = ", ".join(repr(plain(d)) for d in excluded["domain"].tolist()[:10])
    more = "" if len(excluded) <= 10 else f" and {len(excluded) - 10} more"
    warnings.warn(
        f"league_table: {len(excluded)} row(s) left out of the ranking because they have no "
        f"usable estimate: domain(s) {names}{more} (see LeagueTable.excluded)",
        SmallDomainWarning, stacklevel=stacklevel)
    tab = tab.loc[~bad].reset_index(drop=True)
    return tab, (None if reps is None else reps[:, ~bad]), excluded


def _drop_suppressed(tab: pd.DataFrame, reps: np.ndarray | None, group_col: str | None
                     ) -> tuple[pd.DataFrame, np.ndarray | None, pd.DataFrame]:
    """Remove the rows flagged ``"suppress"`` (and their replicate columns); list them."""
    cols = ["domain"] + ([group_col] if group_col else []) + ["n", "reason"]
    if "status" not in tab.columns:
        empty = pd.DataFrame({c: pd.Series(dtype=float if c == "n" else object) for c in cols})
        return tab, reps, empty
    drop = (tab["status"].astype(str) == "suppress").to_numpy()
    listed = tab.loc[drop, [c for c in cols if c in tab.columns]].reset_index(drop=True)
    if not drop.any():
        return tab, reps, listed
    if drop.all():
        raise SatsampleError(
            f"every one of the {len(tab)} domain estimates is flagged 'suppress': there is "
            "nothing to rank"
        )
    keep = ~drop
    return (tab.loc[keep].reset_index(drop=True),
            None if reps is None else reps[:, keep], listed)


_rank_intervals_impl = rank_intervals


def _covariance(estimate: Any, which: str, n_rows: int) -> np.ndarray | None:
    """Covariance of the rows of ``which`` (in table order) when the estimate carries it."""
    if getattr(estimate, "vcov_fn", None) is None:
        return None
    v = estimate.vcov(which) if which != "overall" or hasattr(estimate, "questionnaire") \
        else estimate.vcov()
    v = np.asarray(v, dtype=np.float64)
    return v if v.shape == (n_rows, n_rows) else None
