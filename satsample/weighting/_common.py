"""Helpers shared by the weighting steps (private)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._validation import (
    ConvergenceError,
    ConvergenceWarning,
    SatsampleError,
    check_choice,
)
from ..design import SurveyDesign, WeightStep

NONCONVERGENCE = ("error", "warn")


def check_design(design: Any, step: str) -> SurveyDesign:
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(
            f"{step}: design must be a SurveyDesign (see satsample.survey_design), not "
            f"{type(design).__name__}"
        )
    return design


def replicate_matrix(design: SurveyDesign, step: str) -> np.ndarray | None:
    """A writable copy of the replicate analysis weights (R, n), or None."""
    reps = design.replicates
    if reps is None:
        return None
    if reps.weights is None:
        raise SatsampleError(
            f"{step}: the design's {reps.n_replicates} {reps.kind} replicates are generated on "
            "the fly and cannot be re-weighted; build them with materialize=True so the "
            "weighting step can be applied to every replicate"
        )
    return np.array(reps.weights, dtype=np.float64, copy=True, order="C")


def nonconvergence(on: str, message: str) -> None:
    """Raise ConvergenceError or warn ConvergenceWarning, as asked."""
    if on == "error":
        raise ConvergenceError(message + "; pass on_nonconvergence='warn' to accept the weights")
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def check_on(on: str) -> str:
    return check_choice(on, name="on_nonconvergence", allowed=NONCONVERGENCE)


def finish(design: SurveyDesign, weights: np.ndarray, *, method: str, params: dict[str, Any],
           converged: bool | None = None, n_iter: int | None = None, message: str = "",
           calibration: Any | None = None, replicate_weights: np.ndarray | None = None
           ) -> SurveyDesign:
    step = WeightStep.from_weights(method, weights, params=params, converged=converged,
                                   n_iter=n_iter, message=message)
    return design.with_weights(weights, step=step, calibration=calibration,
                               replicate_weights=replicate_weights)


def group_sums(codes: np.ndarray, n_groups: int, weights: np.ndarray) -> np.ndarray:
    """Sum ``weights`` (n,) or (R, n) by ``codes`` -> (n_groups,) or (R, n_groups)."""
    if weights.ndim == 1:
        return np.bincount(codes, weights=weights, minlength=n_groups)
    r = weights.shape[0]
    flat = (np.arange(r, dtype=np.int64)[:, None] * n_groups + codes[None, :]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=r * n_groups).reshape(r, n_groups)
