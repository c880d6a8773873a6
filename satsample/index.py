"""The satisfaction index: criterion shares, element indices and the overall index, by domain.

One pass builds the weighted totals of every criterion's numerator and
denominator for every domain; one Taylor variance call (or one replicate-total
call) gives the uncertainty of all criteria, elements and overall indices of
all domains at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from ._replicate_totals import replicate_ratio_variance, replicate_totals
from ._validation import SatsampleError, check_choice, check_probability
from ._variance import taylor_variance
from .design import SurveyDesign
from .estimation import (
    _ROW_BLOCK,
    _blockwise_moments,
    _deff_ratio,
    _design_summary,
    _domain_df,
    _domains,
    _Groups,
    _lazy_jackknife,
    _replicate_storage,
    _resolve_variance,
    _srs_from_moments,
)
from .intervals import CI_METHODS, confidence_interval
from .questionnaire import Questionnaire
from .results import IndexEstimate

__all__ = ["satisfaction_index"]


def _indicators(design: SurveyDesign, questionnaire: Questionnaire,
                measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Numerator ``y`` (uint8 when lossless, else float64) and usable-answer ``d`` (bool), (n, K).

    Computed by :meth:`Questionnaire.indicators` on blocks of rows, so that no
    float64 (n, K) matrix of the whole sample is held; an invalid answer
    re-runs the check on all rows so the error message counts every row.
    """
    n, n_items = design.n, questionnaire.n_items
    small = measure != "mean_score" or all(
        float(c).is_integer() and 0 <= c <= 255 for c in questionnaire.valid_codes)
    y = np.empty((n, n_items), dtype=np.uint8 if small else np.float64)
    d = np.empty((n, n_items), dtype=bool)
    data = design.data
    for r0 in range(0, max(n, 1), _ROW_BLOCK):
        r1 = min(n, r0 + _ROW_BLOCK)
        block = data if (r0 == 0 and r1 == n) else data.iloc[r0:r1]
        try:
            yb, db = questionnaire.indicators(block, measure=measure)  # type: ignore[arg-type]
        except SatsampleError:
            if block is not data:
                questionnaire.indicators(data, measure=measure)  # type: ignore[arg-type]
            raise
        y[r0:r1] = yb
        d[r0:r1] = db > 0
    return y, d


def satisfaction_index(
    design: SurveyDesign,
    questionnaire: Questionnaire,
    *,
    by: str | Sequence[str] | None = None,
    measure: Literal["satisfied", "mean_score", "top_two_box"] = "satisfied",
    level: float = 0.95,
    variance: Literal["auto", "taylor", "replicate"] = "auto",
    ci_method: Literal["mean", "logit", "likelihood", "asin", "beta", "xlogit", "wilson"] = "mean",
    deff: Literal["srswor", "srswr"] = "srswor",
) -> IndexEstimate:
    """Estimate the satisfaction index, its elements and criteria, overall or by domain.

    Parameters
    ----------
    design : SurveyDesign
        Its data hold one column per item of ``questionnaire``.
    questionnaire : Questionnaire
        Elements, items, answer codes (see :mod:`satsample.questionnaire`).
    by : str or list of str, optional
        Domain column(s) (agency, province, level...); the full design is kept.
    measure : {"satisfied", "mean_score", "top_two_box"}, default="satisfied"
        Per-criterion quantity: share satisfied, mean score, or share in the
        two highest codes, always over the usable answers of that criterion.
    level : float, default=0.95
    variance : {"auto", "taylor", "replicate"}, default="auto"
        Taylor linearisation (delta method) or replicate weights, which
        recompute the whole composite in every replicate.
    ci_method : str, default="mean"
        Interval for every level: the t interval ``"mean"``, or a proportion
        method of :func:`satsample.intervals.confidence_interval` (only for the
        share measures).
    deff : {"srswor", "srswr"}, default="srswor"
        Reference variance of the design effect (see :func:`satsample.estimation.total`).

    Returns
    -------
    IndexEstimate

    Raises
    ------
    SatsampleError
        A missing item column, an answer outside the questionnaire's codes
        (message names the column and the row count), a domain column with
        missing values.

    Notes
    -----
    For criterion :math:`k` of element :math:`e` in domain :math:`g`:
    :math:`p_k = \\sum w y_k / \\sum w d_k` (:math:`d_k` = usable answer),
    :math:`E_e = \\frac{1}{K_e^+}\\sum_{k \\in e^+} p_k` over the criteria with a usable
    answer in the domain, :math:`I = \\frac{1}{E^+}\\sum_{e^+} E_e` over the elements
    left.  Taylor SE (delta method on the totals :math:`\\sum w y_k, \\sum w d_k`):
    the SE of the weighted total of the linearised variable

    .. math:: z_i = \\sum_k c_k \\frac{y_{ik} - p_k d_{ik}}{\\hat D_k} 1\\{i \\in g\\},

    with :math:`c_k = 1/(E^+ K_e^+)` for :math:`I`, :math:`1/K_e^+` for
    :math:`E_e` and 1 for :math:`p_k`.  Replicate SE:
    :math:`v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_r - c)^2` with
    :math:`\\theta_r` the composite recomputed from the replicate totals.
    Degrees of freedom: PSUs minus strata among the domain's rows with a usable
    answer (for a criterion: to that criterion).  A criterion with no usable
    answer in a domain has NaN estimate and ``n = 0``.
    """
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    if not isinstance(questionnaire, Questionnaire):
        raise SatsampleError(
            f"questionnaire must be a Questionnaire, got {type(questionnaire).__name__}"
        )
    check_probability(level, name="level")
    check_choice(ci_method, name="ci_method", allowed=CI_METHODS)
    check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    if measure == "mean_score" and ci_method != "mean":
        raise SatsampleError(
            f"ci_method={ci_method!r} is for shares; measure='mean_score' needs ci_method='mean'"
        )
    variance = _resolve_variance(design, variance)
    y, d = _indicators(design, questionnaire, measure)
    w = design.weights
    pos = w > 0
    if not pos.all():
        d &= pos[:, None]
        y *= pos[:, None]
    dom = _domains(design, by)
    codes, g = dom.codes, dom.n_domains
    grp = _Groups(codes, g, w)
    n_items = questionnaire.n_items
    el_idx = questionnaire.element_index()
    n_el = len(questionnaire.elements)
    member = np.zeros((n_items, n_el))
    member[np.arange(n_items), el_idx] = 1.0

    num, den = grp.sum(y), grp.sum(d)
    p, elem, overall = questionnaire.aggregate(num, den)

    # coefficients of the linearisation, per domain
    present = den > 0  # (G, K)
    k_plus = present.astype(np.float64) @ member  # (G, E) criteria left per element
    el_present = k_plus > 0
    e_plus = el_present.sum(axis=1)  # (G,)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_item = np.where(present, 1.0 / np.where(k_plus > 0, k_plus, 1.0)[:, el_idx], 0.0)  # (G, K)
        b_el = np.where(el_present, 1.0 / np.maximum(e_plus, 1)[:, None], 0.0)  # (G, E)
        p0 = np.where(present, p, 0.0)
        den_safe = np.where(present, den, 1.0)

    def per_row(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return a[0] if g == 1 else a[c]

    def scores(rows: slice) -> np.ndarray:
        """z (rows, K + E + 1): items (zero without a usable answer), elements, overall."""
        c = codes[rows]
        yb = y[rows]
        z_item = yb - per_row(p0, c) * d[rows]
        z_item /= per_row(den_safe, c)
        if not present.all():
            z_item = np.where(per_row(present, c), z_item, 0.0)
        z_el = (z_item * per_row(a_item, c)) @ member  # (rows, E)
        z_all = np.sum(z_el * per_row(b_el, c), axis=1, keepdims=True)  # (rows, 1)
        return np.concatenate([z_item, z_el, z_all], axis=1)

    est = np.concatenate([p, elem, overall[:, None]], axis=1)  # (G, K + E + 1)
    reps = None
    s1 = s2 = None
    if variance == "taylor":
        z = scores(slice(None))
        s1 = grp.sum(z)
        s2 = grp.sum(z * z)
        z *= w[:, None]
        var = taylor_variance(design, z, domain=codes, n_domains=g)
        del z
    elif _lazy_jackknife(design):
        # closed-form jackknife of the linear combinations of item ratios (O(n) memory)
        coef = np.concatenate([
            np.broadcast_to(np.eye(n_items), (g, n_items, n_items)),
            a_item[:, None, :] * member.T[None, :, :],
            (a_item * b_el[:, el_idx])[:, None, :],
        ], axis=1)
        var = replicate_ratio_variance(design, y, d, coef, domain=codes, n_domains=g)
    else:
        assert design.replicates is not None
        vals = np.concatenate([y, d.astype(y.dtype)], axis=1)
        rt = replicate_totals(design, vals, domain=codes, n_domains=g)
        del vals
        rp, relem, rall = questionnaire.aggregate(rt[..., :n_items], rt[..., n_items:])
        reps = {"overall": rall, "elements": relem, "items": rp}
        theta_r = np.concatenate([rp, relem, rall[..., None]], axis=2)
        with np.errstate(invalid="ignore"):
            var = design.replicates.variance(theta_r, est)
    se = np.sqrt(var)
    # rows used: items -> usable answer; element -> any usable answer in it; overall -> any
    used = np.empty((design.n, n_items + n_el + 1), dtype=bool)
    used[:, :n_items] = d
    for e in range(n_el):
        np.any(d[:, el_idx == e], axis=1, out=used[:, n_items + e])
    np.any(d, axis=1, out=used[:, -1])
    n_obs = grp.sum(used, weighted=False)
    big_n = grp.sum(used)
    df = _domain_df(design, used, codes, g)
    if s1 is None:
        # the scores have a weighted mean of 0 in their domain: one pass of sums of z, z^2
        s1, s2 = _blockwise_moments(scores, codes, g, w, est.shape)
    deff_v = _deff_ratio(var, _srs_from_moments(big_n, n_obs, s1, s2, deff))
    if ci_method == "mean":
        low, high = confidence_interval(est, se, df, level=level, method="mean")
    else:
        n_design = n_obs if not design.calibrations else np.full(n_obs.shape, float(pos.sum()))
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,
                                        n_design=n_design, n_obs=n_obs)
    # an estimate that is NaN (nothing usable) has no interval either
    low = np.where(np.isnan(est), np.nan, low)
    high = np.where(np.isnan(est), np.nan, high)

    items_t, el_t, all_t = _index_tables(
        questionnaire, dom.levels if dom.by else None, est=est, se=se, low=low, high=high,
        df=df, deff=deff_v, n_obs=n_obs)
    reps_opt = design.replicates if variance == "replicate" else None
    n_zero = int((~pos).sum())
    excluded = {"zero weight": n_zero} if n_zero else {}
    options = {
        "measure": measure,
        "variance": variance,
        "level": level,
        "ci_method": ci_method,
        "lonely_psu": design.lonely_psu,
        "replicate_kind": None if reps_opt is None else reps_opt.kind,
        "mse": None if reps_opt is None else reps_opt.mse,
        "deff": deff,
        "calibrated": bool(design.calibrations),
        "aggregation": questionnaire.aggregation,
        "replicate_estimates": _replicate_storage(design, variance),
    }
    return IndexEstimate(
        overall=all_t,
        elements=el_t,
        items=items_t,
        questionnaire=questionnaire,
        by=dom.by,
        options=options,
        excluded=excluded,
        empty_cells=int(dom.n_possible - g),
        replicate_estimates=reps,
        design_summary=_design_summary(design),
    )


def _index_tables(
    questionnaire: Questionnaire,
    levels: pd.DataFrame | None,
    *,
    est: np.ndarray,
    se: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    df: np.ndarray,
    deff: np.ndarray,
    n_obs: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The item, element and overall tables from (G, K + E + 1) arrays of results.

    Columns of the arrays: the K criteria, the E elements, the overall index;
    rows: the domains, labelled by ``levels`` (one row per domain, the ``by``
    columns), or one unlabelled row when ``levels`` is None.
    """
    g = est.shape[0]
    n_items = questionnaire.n_items
    n_el = len(questionnaire.elements)
    el_codes = np.asarray(questionnaire.element_codes)

    def table(cols: slice, extra: dict[str, np.ndarray]) -> pd.DataFrame:
        k = est[:, cols].shape[1]
        gi = np.repeat(np.arange(g), k)
        ki = np.tile(np.arange(k), g)
        base = (levels.iloc[gi].reset_index(drop=True) if levels is not None
                else pd.DataFrame(index=range(gi.size)))
        for name, labels in extra.items():
            base[name] = np.asarray(labels, dtype=object)[ki]
        return base.assign(
            estimate=est[:, cols][gi, ki], se=se[:, cols][gi, ki], ci_low=low[:, cols][gi, ki],
            ci_high=high[:, cols][gi, ki], df=df[:, cols][gi, ki], deff=deff[:, cols][gi, ki],
            n=n_obs[:, cols][gi, ki].astype(np.int64),
        )

    items_t = table(slice(0, n_items), {"element": el_codes[questionnaire.element_index()],
                                        "item": np.asarray(questionnaire.items)})
    el_t = table(slice(n_items, n_items + n_el), {"element": el_codes})
    all_t = table(slice(n_items + n_el, n_items + n_el + 1), {})
    return items_t, el_t, all_t
