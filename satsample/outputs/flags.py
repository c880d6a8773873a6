"""Publication (reliability) flags for domain estimates.

:func:`publication_flags` applies minimum-sample-size, relative-standard-error,
Korn-Graubard effective-sample-size and degrees-of-freedom rules to every row of a table of
domain estimates, adds one flag column per rule, an overall ``status`` and a readable
``reason``.  Defaults follow the NCHS data presentation standards for proportions (Parker et
al. 2017), see :func:`publication_flags`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .._compat import confidence_level_keywords
from .._validation import SatsampleError, check_columns, check_probability

__all__ = ["flag_estimate", "publication_flags", "published"]

#: Columns :func:`flag_estimate` adds to every table of an estimate.
FLAG_COLUMNS: tuple[str, ...] = ("effective_n", "status", "reason", "source")


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else str(x)


@confidence_level_keywords(conf_level=True)
def publication_flags(
    table: Any,
    *,
    estimate: str = "estimate",
    se: str = "se",
    n: str | None = "n",
    df: str | None = "df",
    min_n: int | None = 30,
    max_rse: float | None = 0.30,
    min_effective_n: float | None = 30.0,
    min_df: float | None = 8.0,
    max_ci_width: float | None = None,
    level: float = 0.95,
    proportion: bool | None = None,
    small_area: Any = None,
) -> pd.DataFrame:
    """Add reliability flags, a status and a reason to a table of domain estimates.

    Parameters
    ----------
    table : pandas.DataFrame or result with ``to_frame()``
        One row per domain estimate, with at least the ``estimate`` and ``se`` columns
        (``n`` and ``df`` for the rules that use them).  Not modified.
    estimate, se, n, df : str
        Column names; ``n`` = respondents with a usable value in the domain, ``df`` = design
        degrees of freedom of the domain.  ``n=None`` / ``df=None`` turn off the rules that
        need them.
    min_n : int or None, default=30
        Suppress when ``n < min_n`` (too few respondents).
    max_rse : float or None, default=0.30
        Suppress when the relative standard error ``se / |estimate|`` exceeds it.
    min_effective_n : float or None, default=30
        Suppress when the Korn-Graubard effective sample size is below it (proportions only).
    min_df : float or None, default=8
        Mark for review (not suppression) when ``df < min_df``.
    max_ci_width : float or None, default=None
        Optional: suppress when the Korn-Graubard (Clopper-Pearson on ``n_eff``) interval is
        wider than this (NCHS uses 0.30 for proportions); off by default.
    level : float, default=0.95
        Level of the t quantiles in the effective sample size and of the interval width rule.
    proportion : bool or None, default=None
        Whether estimates are proportions on 0-1 (satisfaction shares and indices); None
        decides from the data (all finite estimates in [0, 1]).  The effective-n and CI-width
        rules apply to proportions only.
    small_area : FayHerriotEstimate or None, default=None
        Model-based estimates of the same quantity by area: rows that would be suppressed
        get the model-based estimate instead, labelled (columns ``source`` and ``model``,
        status ``"model-based"``), see :func:`satsample.sae.model_based_table`.

    Returns
    -------
    pandas.DataFrame
        A copy of the table plus ``rse``, ``effective_n``, ``flag_n``, ``flag_rse``,
        ``flag_effective_n``, ``flag_df``, ``flag_ci_width``, ``status`` (``"publish"``,
        ``"review"`` or ``"suppress"``) and ``reason`` (``"; "``-joined text, empty when
        publishable; each cause once: since :math:`n_{\\text{eff}} \\le n`, the effective-n
        reason is not repeated when ``n < min_n`` already suppresses the row, although
        ``flag_effective_n`` is still True).

    Notes
    -----
    For an estimate :math:`p` with standard error :math:`s`, domain size :math:`n` and
    design degrees of freedom :math:`\\nu`, the Korn-Graubard effective sample size (as in
    R's ``svyciprop(method="beta")``, reference case F) is

    .. math::

        n_{\\text{eff}} = \\min\\Bigl(n,\\; \\frac{p(1-p)}{s^2}
        \\Bigl(\\frac{t_{n-1,\\alpha/2}}{t_{\\nu,\\alpha/2}}\\Bigr)^2\\Bigr),

    capped at :math:`n` and set to :math:`n` when :math:`s = 0` (NCHS rule; R does not cap).
    Without ``n`` the cap and the first t quantile are dropped (normal quantile).  The
    relative standard error is :math:`s/|p|`.

    Defaults (documented choices): ``min_n=30`` and ``min_effective_n=30`` are the NCHS
    minimum for proportions; ``min_df=8`` is the NCHS "flag for review" threshold;
    ``max_rse=0.30`` is the classic NCHS/CDC rule for means and rates (a 95 % interval
    then spans about ±60 % of the estimate).  For satisfaction shares near 80 % the RSE rule
    rarely binds and the effective-n rule does the work, which is why both are on.  The
    Korn-Graubard rule is applied to composite indices (means of item shares on 0-1) as an
    approximation: :math:`p(1-p)/s^2` is then the size of a simple random sample giving the
    same precision for a share equal to the index.

    References
    ----------
    Parker JD, Talih M, Malec DJ, et al. (2017). National Center for Health Statistics data
    presentation standards for proportions. Vital Health Stat 2(175).
    Korn EL, Graubard BI (1998). Confidence intervals for proportions with small expected
    number of positive counts estimated from survey data. Survey Methodology 24:193-201.
    """
    out = _flag_input(table, estimate=estimate, se=se, n=n, df=df, level=level,
                      limits={"min_n": min_n, "max_rse": max_rse,
                              "min_effective_n": min_effective_n, "min_df": min_df,
                              "max_ci_width": max_ci_width})
    p = out[estimate].to_numpy(dtype=np.float64)
    s = out[se].to_numpy(dtype=np.float64)
    nn = out[n].to_numpy(dtype=np.float64) if n is not None else np.full(p.size, np.nan)
    dd = out[df].to_numpy(dtype=np.float64) if df is not None else np.full(p.size, np.inf)
    if proportion is None:
        fin = p[np.isfinite(p)]
        proportion = bool(fin.size) and bool(np.all((fin >= 0) & (fin <= 1)))
    alpha = 1 - level
    rse, neff = _rse_and_effective_n(p, s, nn, dd, alpha=alpha, proportion=proportion)
    out["rse"] = rse
    out["effective_n"] = neff
    flag_n = (nn < min_n) if (min_n is not None and n is not None) else np.zeros(p.size, bool)
    flag_rse = (rse > max_rse) if max_rse is not None else np.zeros(p.size, bool)
    flag_eff = (neff < min_effective_n) if (min_effective_n is not None and proportion) \
        else np.zeros(p.size, bool)
    flag_df = (dd < min_df) if (min_df is not None and df is not None) else np.zeros(p.size,
                                                                                      bool)
    width, flag_w = _ci_width_flags(p, neff, alpha=alpha, max_ci_width=max_ci_width,
                                    proportion=proportion)
    out["flag_n"] = flag_n
    out["flag_rse"] = flag_rse
    out["flag_effective_n"] = flag_eff
    out["flag_df"] = flag_df
    out["flag_ci_width"] = flag_w
    out["status"], out["reason"] = _status_and_reasons(
        bad_value=~np.isfinite(p) | ~np.isfinite(s),
        flags={"n": flag_n, "rse": flag_rse, "effective_n": flag_eff, "ci_width": flag_w,
               "df": flag_df},
        values={"n": nn, "rse": rse, "effective_n": neff, "ci_width": width, "df": dd},
        limits={"min_n": min_n, "max_rse": max_rse, "min_effective_n": min_effective_n,
                "max_ci_width": max_ci_width, "min_df": min_df})
    out.attrs["flag_options"] = {
        "min_n": min_n, "max_rse": max_rse, "min_effective_n": min_effective_n,
        "min_df": min_df, "max_ci_width": max_ci_width, "level": level,
        "proportion": proportion,
    }
    if small_area is not None:
        from ..sae import model_based_table

        out = model_based_table(out, small_area)
    return out


# --------------------------------------------------------------------------- flag steps
def _flag_input(table: Any, *, estimate: str, se: str, n: str | None, df: str | None,
                level: float, limits: dict[str, float | None]) -> pd.DataFrame:
    """Check the table and the limits of :func:`publication_flags`; return a copy of the table."""
    if hasattr(table, "to_frame") and not isinstance(table, pd.DataFrame):
        table = table.to_frame()
    if not isinstance(table, pd.DataFrame):
        raise SatsampleError(f"table must be a DataFrame, got {type(table).__name__}")
    out = table.copy()
    need = [estimate, se] + [c for c in (n, df) if c is not None]
    check_columns(out, need, role="publication_flags")
    check_probability(level, name="level")
    for name, val in limits.items():
        if val is not None and not (np.isfinite(val) and val >= 0):
            raise SatsampleError(f"{name}={val!r} must be a non-negative number or None")
    return out


def _rse_and_effective_n(p: np.ndarray, s: np.ndarray, nn: np.ndarray, dd: np.ndarray, *,
                         alpha: float, proportion: bool) -> tuple[np.ndarray, np.ndarray]:
    """Relative SE of every row and, for proportions, the Korn-Graubard effective n."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rse = s / np.abs(p)
        if proportion:
            t_n = np.where(np.isfinite(nn) & (nn > 1),
                           stats.t.ppf(alpha / 2, np.where(nn > 1, nn - 1, 1.0)),
                           stats.norm.ppf(alpha / 2))
            ok_df = np.isfinite(dd) & (dd > 0)
            t_d = np.where(ok_df, stats.t.ppf(alpha / 2, np.where(ok_df, dd, 1.0)),
                           stats.norm.ppf(alpha / 2))
            raw = p * (1 - p) / s**2 * (t_n / t_d) ** 2
            neff = np.where(s > 0, raw, nn)
            neff = np.where(np.isfinite(nn), np.fmin(neff, nn), neff)
        else:
            neff = np.full(p.size, np.nan)
    return rse, neff


def _ci_width_flags(p: np.ndarray, neff: np.ndarray, *, alpha: float,
                    max_ci_width: float | None, proportion: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Width of the Korn-Graubard interval (NaN when not used) and its flag."""
    width = np.full(p.size, np.nan)
    if max_ci_width is not None and proportion:
        with np.errstate(invalid="ignore", divide="ignore"):
            x = neff * p
            lo = np.where(x > 0, stats.beta.ppf(alpha / 2, x, neff - x + 1), 0.0)
            hi = np.where(neff - x > 0, stats.beta.ppf(1 - alpha / 2, x + 1, neff - x), 1.0)
        width = hi - lo
        flag_w = width > max_ci_width
    else:
        flag_w = np.zeros(p.size, bool)
    return width, flag_w


def _status_and_reasons(*, bad_value: np.ndarray, flags: dict[str, np.ndarray],
                        values: dict[str, np.ndarray], limits: dict[str, Any]
                        ) -> tuple[list[str], list[str]]:
    """The status of every row (suppress, review, publish) and its reasons in words."""
    reasons: list[str] = []
    status: list[str] = []
    for i in range(bad_value.size):
        r: list[str] = []
        if bad_value[i]:
            r.append("no estimate (empty domain)")
        if flags["n"][i]:
            r.append(f"too few respondents: n = {int(values['n'][i])} < {limits['min_n']}")
        if flags["rse"][i]:
            r.append(f"relative SE too high: {values['rse'][i]:.2f} > {limits['max_rse']:.2f}")
        if flags["effective_n"][i] and not flags["n"][i]:
            # n_eff <= n, so n < min_n already implies this rule: state the reason once
            r.append(f"Korn-Graubard effective n too small: {_fmt(values['effective_n'][i])} < "
                     f"{_fmt(float(limits['min_effective_n'] or 0))}")
        if flags["ci_width"][i]:
            r.append(f"confidence interval too wide: {values['ci_width'][i]:.2f} > "
                     f"{limits['max_ci_width']:.2f}")
        suppress = bool(r)
        if flags["df"][i]:
            r.append(f"few degrees of freedom: df = {_fmt(values['df'][i])} < "
                     f"{_fmt(float(limits['min_df'] or 0))}")
        status.append("suppress" if suppress else ("review" if r else "publish"))
        reasons.append("; ".join(r))
    return status, reasons


@confidence_level_keywords(conf_level=True)
def flag_estimate(
    estimate: Any,
    *,
    min_n: int | None = 30,
    max_rse: float | None = 0.30,
    min_effective_n: float | None = 30.0,
    min_df: float | None = 8.0,
    max_ci_width: float | None = None,
    level: float = 0.95,
    source: str = "direct",
) -> Any:
    """Make publication a property of an index estimate: flag every row of every table.

    Parameters
    ----------
    estimate : IndexEstimate
        Result of :func:`satsample.index.satisfaction_index` (any ``by``).  Not modified.
    min_n, max_rse, min_effective_n, min_df, max_ci_width, level
        The rules of :func:`publication_flags` (same defaults).
    source : str, default="direct"
        Written to the ``source`` column of rows that do not have one yet (the design-based
        direct estimate).  A model-based small-area estimate can replace a suppressed row
        (:func:`satsample.sae.model_based_table`: ``source="model-based"``, status
        ``"model-based"``); every output shows such a row, marked as model-based.

    Returns
    -------
    IndexEstimate
        A new estimate whose ``overall``, ``elements`` and ``items`` tables carry the
        columns ``effective_n``, ``status`` (``"publish"``, ``"review"``, ``"suppress"``),
        ``reason`` and ``source``; ``options["publication_rule"]`` records the rules.
        Every output of satsample (:func:`satsample.outputs.ranking.league_table`, the figures of
        :mod:`satsample.outputs.plotting`, :func:`satsample.outputs.report.build_report`) honours
        ``status``: a suppressed value is not printed, plotted, ranked or counted in
        P(top k) / P(bottom k); it is listed with its reason and ``n``.

    Notes
    -----
    The rules are those of :func:`publication_flags`, applied to each table separately: an
    agency can be published overall and have a criterion suppressed.  Rows already flagged
    (a ``status`` column present) keep their flags, so flagging twice changes nothing.

    Examples
    --------
    >>> import satsample as ss
    >>> from satsample.outputs.flags import flag_estimate
    >>> pop = ss.make_population(n_users=3000, n_agencies=6, rng=1)
    >>> sel = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    >>> d = ss.survey_design(ss.simulate_responses(pop, sel.sample, rng=3),
    ...                      strata="agency_id", weights="design_weight", fpc="fpc")
    >>> d = ss.adjust_nonresponse(d, "responded", classes="agency_id")
    >>> est = flag_estimate(ss.satisfaction_index(d, pop.questionnaire, by="agency_id"))
    >>> sorted(set(est.overall["status"]) | {"publish"})[-1]
    'suppress'
    """
    import dataclasses

    if not dataclasses.is_dataclass(estimate) or not all(
            hasattr(estimate, a) for a in ("overall", "elements", "items")):
        raise SatsampleError(
            f"flag_estimate needs an IndexEstimate, got {type(estimate).__name__}; for a "
            "plain table use publication_flags(table)"
        )
    rule = {"min_n": min_n, "max_rse": max_rse, "min_effective_n": min_effective_n,
            "min_df": min_df, "max_ci_width": max_ci_width, "level": level}

    def one(tab: pd.DataFrame) -> pd.DataFrame:
        if "status" in tab.columns:
            out = tab.copy()
        else:
            has_n = "n" in tab.columns
            has_df = "df" in tab.columns
            flagged = publication_flags(tab, n="n" if has_n else None,
                                        df="df" if has_df else None, **rule)
            out = tab.copy()
            for c in ("effective_n", "status", "reason"):
                out[c] = flagged[c].to_numpy()
        if "source" not in out.columns:
            out["source"] = source
        else:
            out["source"] = out["source"].fillna(source)
        return out

    opts = dict(getattr(estimate, "options", {}) or {})
    opts.setdefault("publication_rule", rule)
    return dataclasses.replace(estimate, overall=one(estimate.overall),
                               elements=one(estimate.elements), items=one(estimate.items),
                               options=opts)


def published(table: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows of a flagged table whose value may be shown.

    Rows without a ``status`` column are all shown (the table was not flagged); otherwise
    every row whose status is not ``"suppress"`` (``"review"`` is shown, marked).
    """
    if "status" not in table.columns:
        return np.ones(len(table), dtype=bool)
    return (table["status"].astype(str) != "suppress").to_numpy()


def _model_based(tab: pd.DataFrame) -> pd.Series:
    """Rows whose value is not the direct (design-based) estimate, e.g. ``"model-based"``."""
    if "source" not in tab.columns:
        return pd.Series(False, index=tab.index)
    src = tab["source"].astype(object).fillna("direct").astype(str)
    return ~src.isin(("direct", "design-based", "nan"))


def _unranked_model_rows(flagged: Any) -> Any:
    """The estimate with model-based overall rows marked "suppress" for the ranking only.

    A rank interval needs the joint (replicate) distribution of every ranked estimate; a
    model-based estimate has only its MSE, and shrinkage pulls it to its synthetic value, so
    it is not ranked with the direct ones (it is shown, labelled, everywhere else).
    """
    ov = getattr(flagged, "overall", None)
    if ov is None or "status" not in ov.columns:
        return flagged
    model = _model_based(ov).to_numpy()
    if not model.any():
        return flagged
    ov = ov.copy()
    ov["status"] = ov["status"].astype(object)
    ov.loc[model, "status"] = "suppress"
    return dataclasses.replace(flagged, overall=ov)
