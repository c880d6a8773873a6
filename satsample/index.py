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

from ._replicate_totals import replicate_totals
from ._validation import SatsampleError, check_choice, check_probability
from ._variance import taylor_variance
from .design import SurveyDesign
from .estimation import (
    _design_summary,
    _domain_df,
    _domains,
    _group_sum,
    _resolve_variance,
    _srs_variance,
)
from .intervals import CI_METHODS, confidence_interval
from .questionnaire import Questionnaire
from .results import IndexEstimate

__all__ = ["satisfaction_index"]


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
    y, d = questionnaire.indicators(design.data, measure=measure)
    w = design.weights
    pos = w > 0
    d = d * pos[:, None]
    y = y * pos[:, None]
    dom = _domains(design, by)
    codes, g = dom.codes, dom.n_domains
    n_items = questionnaire.n_items
    el_idx = questionnaire.element_index()
    n_el = len(questionnaire.elements)
    member = np.zeros((n_items, n_el))
    member[np.arange(n_items), el_idx] = 1.0

    totals = _group_sum(codes, g, w[:, None] * np.concatenate([y, d], axis=1))
    num, den = totals[:, :n_items], totals[:, n_items:]
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
    # z for items (n, K): only rows of the item's domain, zero where no usable answer
    z_item = np.where(present[codes], (y - p0[codes] * d) / den_safe[codes], 0.0)
    z_el = (z_item * a_item[codes]) @ member  # (n, E)
    z_all = np.sum(z_el * b_el[codes], axis=1, keepdims=True)  # (n, 1)
    z = np.concatenate([z_item, z_el, z_all], axis=1)

    est = np.concatenate([p, elem, overall[:, None]], axis=1)  # (G, K + E + 1)
    reps = None
    if variance == "taylor":
        var = taylor_variance(design, w[:, None] * z, domain=codes, n_domains=g)
    else:
        assert design.replicates is not None
        rt = replicate_totals(design, np.concatenate([y, d], axis=1), domain=codes, n_domains=g)
        rp, relem, rall = questionnaire.aggregate(rt[..., :n_items], rt[..., n_items:])
        reps = {"overall": rall, "elements": relem, "items": rp}
        theta_r = np.concatenate([rp, relem, rall[..., None]], axis=2)
        with np.errstate(invalid="ignore"):
            var = design.replicates.variance(theta_r, est)
    se = np.sqrt(var)
    # rows used: items -> usable answer; element -> any usable answer in it; overall -> any
    used_item = d > 0
    used_el = (d @ member) > 0
    used_all = used_item.any(axis=1, keepdims=True)
    used = np.concatenate([used_item, used_el, used_all], axis=1)
    n_obs = _group_sum(codes, g, used.astype(np.float64))
    df = _domain_df(design, used, codes, g)
    vsrs = _srs_variance(w, z, used, codes, g, deff)
    with np.errstate(invalid="ignore", divide="ignore"):
        deff_v = np.where(vsrs > 0, var / np.where(vsrs > 0, vsrs, 1.0), np.nan)
    if ci_method == "mean":
        low, high = confidence_interval(est, se, df, level=level, method="mean")
    else:
        n_design = n_obs if not design.calibrations else np.full(n_obs.shape, float(pos.sum()))
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,
                                        n_design=n_design, n_obs=n_obs)
    # an estimate that is NaN (nothing usable) has no interval either
    low = np.where(np.isnan(est), np.nan, low)
    high = np.where(np.isnan(est), np.nan, high)

    def table(cols: slice, extra: dict[str, np.ndarray]) -> pd.DataFrame:
        k = est[:, cols].shape[1]
        gi = np.repeat(np.arange(g), k)
        ki = np.tile(np.arange(k), g)
        base = dom.levels.iloc[gi].reset_index(drop=True) if dom.by else pd.DataFrame(index=range(gi.size))
        for name, labels in extra.items():
            base[name] = np.asarray(labels, dtype=object)[ki]
        return base.assign(
            estimate=est[:, cols][gi, ki], se=se[:, cols][gi, ki], ci_low=low[:, cols][gi, ki],
            ci_high=high[:, cols][gi, ki], df=df[:, cols][gi, ki], deff=deff_v[:, cols][gi, ki],
            n=n_obs[:, cols][gi, ki].astype(np.int64),
        )

    items_t = table(slice(0, n_items), {"element": np.asarray(questionnaire.element_codes)[el_idx],
                                        "item": np.asarray(questionnaire.items)})
    el_t = table(slice(n_items, n_items + n_el), {"element": np.asarray(questionnaire.element_codes)})
    all_t = table(slice(n_items + n_el, n_items + n_el + 1), {})
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
