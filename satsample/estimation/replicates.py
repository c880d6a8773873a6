"""Any statistic computed from weights, with its replicate variance (R's ``withReplicates``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError, check_positive_int, check_probability
from ..design import SurveyDesign
from ..intervals import confidence_interval
from ..results import Estimate
from ..variance.replicate import iter_replicate_weight_blocks
from .statistics import design_summary

__all__ = ["with_replicates"]


def _as_vector(value: Any, what: str) -> tuple[np.ndarray, list[str] | None]:
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=np.float64), [str(i) for i in value.index]
    if isinstance(value, Mapping):
        return np.array([float(v) for v in value.values()]), [str(k) for k in value]
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SatsampleError(
            f"with_replicates: the statistic returned {type(value).__name__} for {what}; "
            "return a number, an array, a dict or a pandas Series of numbers") from exc
    return arr, None


def with_replicates(
    design: SurveyDesign,
    statistic: Callable[[np.ndarray, pd.DataFrame], Any],
    *,
    level: float = 0.95,
    mse: bool | None = None,
    block: int = 50,
) -> Estimate:
    """Any statistic of the weights, with the replicate variance (R's ``withReplicates``).

    Parameters
    ----------
    design : SurveyDesign
        A design with replicate weights (stored or generated on the fly; weighting
        steps replayed).
    statistic : callable
        ``statistic(weights, data)`` with ``weights`` an ndarray of shape (n,)
        and ``data`` the design's data (do not modify it); returns a number, an
        array, a dict or a Series of numbers (the same length every time).
    level : float, default=0.95
        Confidence level of the t interval (replicate degrees of freedom).
    mse : bool, optional
        Centre at the full-sample value; default: the design's replicate setting.
    block : int, default=50
        Replicates generated at a time (memory ``block x n``).

    Returns
    -------
    Estimate
        ``statistic="with_replicates"``; ``variable`` holds the names the
        statistic returned (``theta1``... for an array); ``replicate_estimates``
        the (R, m) replicate values; ``vcov()`` their replicate covariance.

    Notes
    -----
    :math:`\\hat\\theta = t(w)`, :math:`\\hat\\theta_r = t(w^{(r)})`,
    :math:`v = \\text{scale}\\sum_r \\text{rscales}_r(\\hat\\theta_r - c)^2` with
    :math:`c` the mean of the :math:`\\hat\\theta_r` (or :math:`\\hat\\theta` when
    ``mse``); degrees of freedom those of the replicate design.

    Examples
    --------
    >>> import numpy as np
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=2_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=50, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.bootstrap(ss.survey_design(answers, strata="agency_id",
    ...                                   weights="design_weight"), n_replicates=20, rng=3)
    >>> def share_q01(w, data):
    ...     return {"q01>=4": np.sum(w * data["q01"].isin([4, 5])) / np.sum(w)}
    >>> ss.with_replicates(d, share_q01).table["variable"].tolist()
    ['q01>=4']
    """
    if type(design).__name__ == "DaskSurveyDesign":
        raise SatsampleError(
            "with_replicates is not available on a Dask design: it calls a Python function "
            "on the whole data once per replicate; use the estimators (total, mean, ratio, "
            "proportion, satisfaction_index), which run partition by partition")
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    if not callable(statistic):
        raise SatsampleError("statistic must be a callable statistic(weights, data)")
    check_probability(level, name="level")
    block = check_positive_int(block, name="block")
    reps = design.replicates
    if reps is None:
        raise SatsampleError(
            "with_replicates needs a design with replicate weights; create them with "
            "jackknife(), brr(), bootstrap() or declare_replicates()")
    data = design.data
    theta, names = _as_vector(statistic(np.array(design.weights), data), "the full sample")
    m = theta.size
    theta_r = np.empty((reps.n_replicates, m))
    r = 0
    for wb in iter_replicate_weight_blocks(design, block):
        for row in wb:
            val, _ = _as_vector(statistic(row, data), f"replicate {r + 1}")
            if val.size != m:
                raise SatsampleError(
                    f"with_replicates: the statistic returned {val.size} value(s) for "
                    f"replicate {r + 1} and {m} for the full sample")
            theta_r[r] = val
            r += 1
    centre_mse = reps.mse if mse is None else bool(mse)
    from dataclasses import replace

    rw = replace(reps, mse=centre_mse)
    with np.errstate(invalid="ignore"):
        var = rw.variance(theta_r, theta)
    se = np.sqrt(var)
    df = np.full(m, float(reps.degf))
    low, high = confidence_interval(theta, se, df, level=level, method="mean")
    labels = names or [f"theta{j + 1}" for j in range(m)]
    table = pd.DataFrame({"variable": np.asarray(labels, dtype=object), "estimate": theta,
                          "se": se, "ci_low": low, "ci_high": high, "df": df})
    theta_r.setflags(write=False)
    return Estimate(
        statistic="with_replicates", table=table, variables=tuple(labels),
        options={"variance": "replicate", "level": level, "ci_method": "mean",
                 "replicate_kind": reps.kind, "mse": centre_mse,
                 "lonely_psu": design.lonely_psu, "calibrated": bool(design.calibrations),
                 "replicate_estimates": "stored"},
        replicate_estimates=theta_r, design_summary=design_summary(design),
        vcov_fn=lambda: rw.covariance(theta_r, theta),
    )
