"""The satisfaction index: criterion shares, element indices and the overall index, by domain.

An adapter on the estimation engine (:mod:`satsample.estimation.engine`):
the per-row inputs are the questionnaire's indicators (satisfied ``y`` and
usable ``d`` per criterion), the ratios are the criterion shares, and the
:class:`IndexCombination` is the questionnaire's aggregation rule, which
supplies both the element and overall values and their gradient.  One
engine call gives every criterion, element and overall index of every
domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._validation import SatsampleError, check_choice, check_probability
from ..design import SurveyDesign
from ..intervals import CI_METHODS, confidence_interval
from ..questionnaire import Questionnaire
from ..results import IndexEstimate
from . import engine
from .domains import ROW_BLOCK, Domains
from .engine import Combination, Fit, Inputs
from .statistics import design_summary, fit_design, is_dask_design, n_positive, options

__all__ = ["IndexCombination", "indicators", "satisfaction_index"]

MEASURES: tuple[str, ...] = ("satisfied", "mean_score", "top_two_box")


class IndexCombination(Combination):
    """Criterion shares, element indices and the overall index from the criterion shares.

    Outputs (L = K + E + 1): the K shares, the E element indices, the
    overall index.  Values and gradient come from the questionnaire's
    aggregation rule (:class:`satsample.questionnaire.AggregationRule`).
    """

    keeps_ratios = True

    def __init__(self, questionnaire: Questionnaire) -> None:
        self.rule = questionnaire.aggregation_rule
        self.el_idx = questionnaire.element_index()
        self.n_el = len(questionnaire.elements)
        self.k = questionnaire.n_items
        self.n_out = self.k + self.n_el + 1
        self.linear = bool(self.rule.linear)

    def value(self, r: np.ndarray) -> np.ndarray:
        el, overall = self.rule.value(r, self.el_idx, self.n_el)
        return np.concatenate([r, el, overall[..., None]], axis=-1)

    def gradient(self, r: np.ndarray) -> np.ndarray:
        return self.rule.gradient(r, self.el_idx, self.n_el)

    def depends(self) -> np.ndarray:
        dep = np.zeros((self.k, self.n_out), dtype=bool)
        dep[:, :self.k] = np.eye(self.k, dtype=bool)
        dep[np.arange(self.k), self.k + self.el_idx] = True
        dep[:, -1] = True
        return dep


def indicators(frame: pd.DataFrame, questionnaire: Questionnaire,
               measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Numerator ``y`` (uint8 when lossless, else float64) and usable-answer ``d`` (bool), (n, K).

    Computed as :meth:`Questionnaire.indicators` (its boolean masks) on blocks of rows, so that no
    float64 (n, K) matrix of the whole sample is held; an invalid answer
    re-runs the check on all rows so the error message counts every row.
    """
    n, n_items = len(frame), questionnaire.n_items
    small = measure != "mean_score" or all(
        float(c).is_integer() and 0 <= c <= 255 for c in questionnaire.valid_codes)
    y = np.empty((n, n_items), dtype=np.uint8 if small else np.float64)
    d = np.empty((n, n_items), dtype=bool)
    for r0 in range(0, max(n, 1), ROW_BLOCK):
        r1 = min(n, r0 + ROW_BLOCK)
        block = frame if (r0 == 0 and r1 == n) else frame.iloc[r0:r1]
        try:
            yb, db = questionnaire._indicator_masks(block, measure)  # type: ignore[arg-type]
        except SatsampleError:
            if block is not frame:
                questionnaire.indicators(frame, measure=measure)  # type: ignore[arg-type]
            raise
        y[r0:r1] = yb
        d[r0:r1] = db
    return y, d


def check_index_options(questionnaire: Any, *, measure: str, level: float, ci_method: str,
                        deff: str | None) -> None:
    """Validate the options shared by :func:`satisfaction_index` and the Dask path."""
    if not isinstance(questionnaire, Questionnaire):
        raise SatsampleError(
            f"questionnaire must be a Questionnaire, got {type(questionnaire).__name__}"
        )
    check_probability(level, name="level")
    check_choice(measure, name="measure", allowed=MEASURES)
    check_choice(ci_method, name="ci_method", allowed=CI_METHODS)
    if deff is not None:
        check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    if measure == "mean_score" and ci_method != "mean":
        raise SatsampleError(
            f"ci_method={ci_method!r} is for shares; measure='mean_score' needs ci_method='mean'"
        )


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
    if not isinstance(design, SurveyDesign) and not is_dask_design(design):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    check_index_options(questionnaire, measure=measure, level=level, ci_method=ci_method,
                        deff=deff)
    variance = engine.resolve_variance(design, variance)
    combo = IndexCombination(questionnaire)
    src, dom, fitted, excluded, _inputs = fit_design(
        design, partial(_index_inputs, questionnaire, measure), by, combo, variance, deff,
        "used")
    n_design = None if not design.calibrations else float(n_positive(design))
    opts = options(design, fitted, measure=measure, level=level, ci_method=ci_method,
                   deff=deff, aggregation=questionnaire.aggregation)

    def covariance(outputs: np.ndarray) -> np.ndarray:
        return engine.vcov_source(src, combo, dom.n_domains, variance, fitted, den="used",
                                  outputs=outputs)

    return index_estimate(questionnaire, dom, fitted, level=level, ci_method=ci_method,
                          options=opts, excluded=excluded, n_design=n_design,
                          design_summary=design_summary(design), vcov_fn=covariance)


def _index_inputs(questionnaire: Questionnaire, measure: str,
                  design: SurveyDesign) -> tuple[Inputs, dict[str, int]]:
    """The index's per-row inputs (satisfied ``y``, usable ``d``) and the zero-weight rows."""
    y, d = indicators(design.data, questionnaire, measure)
    n_zero = int(np.count_nonzero(design.weights <= 0))
    return Inputs(num=y, den="used", ok=d), ({"zero weight": n_zero} if n_zero else {})


def index_estimate(questionnaire: Questionnaire, dom: Domains, fitted: Fit, *, level: float,
                   ci_method: str, options: dict[str, Any], excluded: dict[str, int],
                   n_design: float | None, design_summary: dict[str, Any],
                   vcov_fn: Any = None) -> IndexEstimate:
    """Intervals and the item/element/overall tables of a fitted index (in memory or Dask)."""
    est, se, df, n_obs = fitted.estimate, fitted.se, fitted.df, fitted.n
    if ci_method == "mean":
        low, high = confidence_interval(est, se, df, level=level, method="mean")
    else:
        nd = n_obs if n_design is None else np.full(n_obs.shape, n_design)
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,  # type: ignore[arg-type]
                                        n_design=nd, n_obs=n_obs)
    # an estimate that is NaN (nothing usable) has no interval either
    low = np.where(np.isnan(est), np.nan, low)
    high = np.where(np.isnan(est), np.nan, high)
    items_t, el_t, all_t = _index_tables(
        questionnaire, dom.levels if dom.by else None, est=est, se=se, low=low, high=high,
        df=df, deff=fitted.deff, n_obs=n_obs)
    reps = None
    if fitted.replicates is not None:
        k, n_el = questionnaire.n_items, len(questionnaire.elements)
        rt = fitted.replicates
        reps = {"overall": np.ascontiguousarray(rt[..., -1]),
                "elements": np.ascontiguousarray(rt[..., k:k + n_el]),
                "items": np.ascontiguousarray(rt[..., :k])}
    return IndexEstimate(
        overall=all_t,
        elements=el_t,
        items=items_t,
        questionnaire=questionnaire,
        by=dom.by,
        options=options,
        excluded=excluded,
        empty_cells=int(dom.n_possible - dom.n_domains),
        replicate_estimates=reps,
        design_summary=design_summary,
        vcov_fn=vcov_fn,
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
