"""Nonresponse adjustment: weighting classes and response-propensity classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import (
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    check_grouping,
    check_positive_int,
    plain,
)
from ..design import SurveyDesign
from ._common import (
    StepResult,
    check_block,
    check_design,
    finish_result,
    frozen,
    group_sums,
    row_count,
)
from .controls import _cell_label, cell_codes

__all__ = ["NonresponseStep", "adjust_nonresponse", "response_propensity"]


def _class_factors(codes: np.ndarray, n_groups: int, responded: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """Sampled over responding weight per class, for (n,) or (R, n) weights (0 if none)."""
    sampled = group_sums(codes, n_groups, weights)
    resp = group_sums(codes, n_groups, weights * responded)
    return np.divide(sampled, resp, out=np.zeros_like(sampled), where=resp > 0)


@dataclass(frozen=True, kw_only=True, eq=False)
class NonresponseStep:
    """The nonresponse adjustment, replayed on blocks of replicate weights.

    Attributes
    ----------
    codes : ndarray of int64, shape (n,)
        Weighting (or propensity) class of each row, as in the full sample.
    n_groups : int
        Number of classes.
    responded : ndarray of bool, shape (n,)
        Respondent indicator.

    Notes
    -----
    In every replicate *r* and class *c*,
    :math:`w_{ri} = d_{ri} \\sum_{j \\in s_c} d_{rj} / \\sum_{j \\in r_c} d_{rj}`
    for respondents and 0 for nonrespondents (a class with no responding
    weight in the replicate gets 0).  The classes are not re-formed per
    replicate (the propensity model is not refitted).
    """

    codes: np.ndarray
    n_groups: int
    responded: np.ndarray

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Adjust a block (b, n) of replicate weights; returns a new (b, n) array."""
        w, _ = check_block(block, replicate_index, self.codes.shape[0], "adjust_nonresponse")
        fac = _class_factors(self.codes, self.n_groups, self.responded, w)
        return np.where(self.responded[None, :], w * fac[:, self.codes], 0.0)


def _responded(design: SurveyDesign, responded: str, counts: np.ndarray | None = None
               ) -> np.ndarray:
    check_columns(design.data, responded, role="response indicator")
    col = design.data[responded]
    if col.isna().any():
        raise SatsampleError(f"response indicator {responded!r} has "
                             f"{row_count(col.isna().to_numpy(), counts)} missing value(s)")
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=bool)
    vals = set(pd.unique(col))
    if vals <= {0, 1}:
        return col.to_numpy().astype(bool)
    raise SatsampleError(
        f"response indicator {responded!r} must be boolean (or 0/1); found values "
        f"{sorted(map(str, vals))[:5]}"
    )


def response_propensity(design: SurveyDesign, responded: str, covariates: str | Sequence[str], *,
                        weighted: bool = True) -> np.ndarray:
    """Estimated response propensities from a logistic regression (scikit-learn).

    Parameters
    ----------
    design : SurveyDesign
        Design holding respondents and nonrespondents.
    responded : str
        Boolean (or 0/1) column: True for respondents.
    covariates : str or sequence of str
        Predictors; non-numeric columns are one-hot coded (first level dropped).
    weighted : bool, default=True
        Fit with the current weights as sample weights.

    Returns
    -------
    ndarray of float64, shape (n,)
        :math:`\\hat\\rho_i = \\operatorname{expit}(x_i'\\hat\\beta)`, fitted without
        penalty.
    """
    from sklearn.linear_model import LogisticRegression

    r = _responded(design, responded)
    names = as_column_list(covariates)
    if not names:
        raise SatsampleError("response_propensity: give at least one covariate")
    check_columns(design.data, names, role="propensity covariate")
    x = design.data[names]
    if x.isna().any().any():
        bad = [c for c in names if x[c].isna().any()]
        raise SatsampleError(f"propensity covariate(s) {bad} have missing values")
    for c in names:
        check_grouping(x[c], name=c, role="propensity covariate")
        if x[c].nunique(dropna=False) < 2:
            raise SatsampleError(
                f"propensity covariate {c!r} is constant (every row is {plain(x[c].iloc[0])!r}); "
                "it carries no information about response: leave it out of covariates="
            )
    xm = pd.get_dummies(x, drop_first=True, dtype=np.float64).to_numpy(dtype=np.float64)
    if r.all() or not r.any():
        raise SatsampleError(
            f"response indicator {responded!r}: everyone {'responded' if r.all() else 'failed'}; "
            "a propensity model needs both respondents and nonrespondents"
        )
    # unpenalised maximum likelihood, solved to a tight tolerance (sklearn's default tol=1e-4
    # leaves the fitted propensities ~1e-4 off the MLE); weights scaled to mean 1, which
    # leaves the MLE unchanged and keeps the objective well scaled
    model = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    sw = None
    if weighted:
        sw = np.asarray(design.weights, dtype=np.float64)
        sw = sw / sw.mean()
    model.fit(xm, r.astype(int), sample_weight=sw)
    return model.predict_proba(xm)[:, 1].astype(np.float64)


def adjust_nonresponse(design: SurveyDesign, responded: str, *,
                       classes: str | Sequence[str] | None = None, method: str = "classes",
                       covariates: str | Sequence[str] | None = None, n_classes: int = 5,
                       weighted: bool = True) -> SurveyDesign:
    """Adjust the weights of respondents for nonresponse within classes.

    Parameters
    ----------
    design : SurveyDesign
        Design declared on the whole sample (respondents and nonrespondents);
        it is not modified.
    responded : str
        Boolean (or 0/1) column: True for respondents.
    classes : str or sequence of str, optional
        Weighting-class variables (``method="classes"``); ``None``: one class.
    method : {"classes", "propensity"}, default="classes"
        ``"propensity"``: fit :func:`response_propensity` on ``covariates`` and
        form ``n_classes`` classes at the quantiles of the estimated propensity.
    covariates : str or sequence of str, optional
        Propensity model predictors (``method="propensity"``).
    n_classes : int, default=5
        Number of propensity classes (quintiles; fewer when quantiles tie).
    weighted : bool, default=True
        Fit the propensity model with the current weights.

    Returns
    -------
    SurveyDesign
        A new design with the same rows: respondents' weights adjusted,
        **nonrespondents' weights set to 0** (so they stay in the variance
        computation as sampled units with zero scores, and their count is in
        the history record).  Replicate weights, if any, are adjusted with
        the same classes (the propensity model is not refitted per replicate);
        replicates generated on the fly get a :class:`NonresponseStep` in
        ``replicates.steps``, replayed block by block.

    Raises
    ------
    SatsampleError
        A class with sampled units but no respondent (named), a missing
        response indicator.

    Notes
    -----
    In class :math:`c`, with :math:`s_c` the sampled and :math:`r_c` the
    responding units,

    .. math:: w_i = d_i \\frac{\\sum_{j \\in s_c} d_j}{\\sum_{j \\in r_c} d_j}
              \\quad (i \\in r_c), \\qquad w_i = 0 \\quad (i \\notin r).

    The adjusted weights are treated as fixed by the Taylor variance (no
    residualizer); replicate variances include the adjustment.  On a Dask
    design (``method="classes"`` only) the class totals are one reduction over
    the partitions (:mod:`satsample.weighting._dask`).
    """
    from ._dask import dispatch

    if (out := dispatch(design, "adjust_nonresponse", responded, classes=classes, method=method,
                        covariates=covariates, n_classes=n_classes, weighted=weighted)
            ) is not None:
        return out
    design = check_design(design, "adjust_nonresponse")
    return finish_result(design, _nonresponse_result(
        design, responded, classes=classes, method=method, covariates=covariates,
        n_classes=n_classes, weighted=weighted))


def _nonresponse_result(design: SurveyDesign, responded: str, *,
                        classes: str | Sequence[str] | None, method: str,
                        covariates: str | Sequence[str] | None, n_classes: int, weighted: bool,
                        counts: np.ndarray | None = None) -> StepResult:
    """The adjustment on the design's rows (``counts``: rows behind each, when they are cells)."""
    check_choice(method, name="method", allowed=("classes", "propensity"))
    r = _responded(design, responded, counts)
    d = np.array(design.weights, dtype=np.float64)
    info: dict[str, object] = {"responded": responded, "method": method}
    if method == "classes":
        names = as_column_list(classes)
        if names:
            codes, cells = cell_codes(design.data, names, role="nonresponse class")
            labels = [_cell_label(names, c) for c in cells]
        else:
            codes, labels = np.zeros(design.n, dtype=np.int64), ["all rows"]
        info["classes"] = tuple(names)
    else:
        if covariates is None:
            raise SatsampleError("adjust_nonresponse: method='propensity' needs covariates=")
        n_classes = check_positive_int(n_classes, name="n_classes")
        rho = response_propensity(design, responded, covariates, weighted=weighted)
        cut = pd.qcut(rho, q=n_classes, labels=False, duplicates="drop")
        # quantile bins left empty by ties (many classes, few distinct propensities) are not
        # classes: number the non-empty ones 0..n_made-1, in propensity order
        _, codes = np.unique(np.asarray(cut, dtype=np.int64), return_inverse=True)
        codes = codes.astype(np.int64).reshape(-1)
        n_made = int(codes.max()) + 1
        count = np.bincount(codes, minlength=n_made)
        low = np.full(n_made, np.inf)
        high = np.full(n_made, -np.inf)
        np.minimum.at(low, codes, rho)
        np.maximum.at(high, codes, rho)
        labels = [f"propensity class {k + 1} ({low[k]:.3g}-{high[k]:.3g})" for k in range(n_made)]
        info["covariates"] = tuple(as_column_list(covariates))
        info["n_classes"] = n_made
        info["n_classes_requested"] = n_classes
        info["mean_propensity"] = tuple(
            (np.bincount(codes, weights=rho, minlength=n_made) / count).tolist())
    n_groups = len(labels)
    sampled = group_sums(codes, n_groups, d)
    resp = group_sums(codes, n_groups, d * r)
    n_sampled = np.bincount(codes, weights=counts, minlength=n_groups)
    bad = np.flatnonzero((n_sampled > 0) & (resp <= 0) & (sampled > 0))
    if bad.size:
        names_bad = "; ".join(labels[k] for k in bad[:10])
        raise SatsampleError(
            f"adjust_nonresponse: {bad.size} class(es) have sampled units but no respondent "
            f"with a positive weight: {names_bad}; collapse them with a neighbouring class"
        )
    fac = _class_factors(codes, n_groups, r, d)
    w = np.where(r, d * fac[codes], 0.0)
    replay = NonresponseStep(codes=frozen(codes, np.int64), n_groups=n_groups,
                             responded=frozen(r, bool))
    n_resp, n_non = row_count(r, counts), row_count(~r, counts)
    info["n_respondents"] = n_resp
    info["n_nonrespondents"] = n_non
    info["adjustment_factors"] = dict(zip(labels, fac.tolist(), strict=True))
    msg = (f"{n_non} nonrespondent row(s) kept with weight 0; "
           f"{n_resp} respondents; factors {fac.min():.4g}-{fac.max():.4g}")
    return StepResult(weights=w, method="nonresponse", params=info, message=msg,
                      replicate_step=replay)
