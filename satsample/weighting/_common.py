"""Helpers shared by the weighting steps (private)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

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


class ReplicateStep(Protocol):
    """A weighting step that can be replayed on blocks of replicate weights.

    ``apply(block (b, n), replicate_index (b,)) -> (b, n)`` turns replicate
    analysis weights before the step into the weights after it, row by row
    (a row's result does not depend on the other rows of the block).
    """

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Return the block of replicate weights after the step."""
        ...


def check_block(block: np.ndarray, replicate_index: np.ndarray, n: int, step: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a block of replicate weights (b, n) and its replicate numbers (b,)."""
    w = np.asarray(block, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != n:
        raise SatsampleError(f"{step}: block of replicate weights has shape {w.shape}; "
                             f"expected (b, {n})")
    idx = np.asarray(replicate_index, dtype=np.int64).reshape(-1)
    if idx.shape[0] != w.shape[0]:
        raise SatsampleError(f"{step}: replicate_index has {idx.shape[0]} entries for a block "
                             f"of {w.shape[0]} replicate(s)")
    return w, idx


def frozen(a: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """A read-only C-contiguous copy (arrays held by replay steps)."""
    out = np.array(a, dtype=dtype, copy=True, order="C")
    out.setflags(write=False)
    return out


def replicate_labels(replicate_index: np.ndarray, limit: int = 10) -> str:
    """``"3, 17, 40"`` (the first ``limit`` replicate numbers, 0-based)."""
    shown = ", ".join(str(int(i)) for i in replicate_index[:limit])
    return shown + ("" if replicate_index.size <= limit else f" and {replicate_index.size - limit} more")


def nonconvergence(on: str, message: str) -> None:
    """Raise ConvergenceError or warn ConvergenceWarning, as asked."""
    if on == "error":
        raise ConvergenceError(message + "; pass on_nonconvergence='warn' to accept the weights")
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def check_on(on: str) -> str:
    return check_choice(on, name="on_nonconvergence", allowed=NONCONVERGENCE)


def finish(design: SurveyDesign, weights: np.ndarray, *, method: str, params: dict[str, Any],
           converged: bool | None = None, n_iter: int | None = None, message: str = "",
           calibration: Any | None = None, replicate_step: ReplicateStep | None = None
           ) -> SurveyDesign:
    """Record the step and return the new design.

    Materialised replicate weights go through ``replicate_step.apply`` all at
    once; replicates generated on the fly get ``replicate_step`` appended to
    ``replicates.steps``, to be replayed block by block.
    """
    step = WeightStep.from_weights(method, weights, params=params, converged=converged,
                                   n_iter=n_iter, message=message)
    reps = design.replicates
    if reps is None:
        return design.with_weights(weights, step=step, calibration=calibration)
    if replicate_step is None:  # pragma: no cover - every step builds one
        raise SatsampleError(f"{method}: no replicate step to apply to the replicate weights")
    if reps.weights is None:
        return design.with_weights(weights, step=step, calibration=calibration,
                                   replicate_step=replicate_step)
    rep_w = replicate_step.apply(reps.weights, np.arange(reps.n_replicates, dtype=np.int64))
    return design.with_weights(weights, step=step, calibration=calibration,
                               replicate_weights=rep_w)


@dataclass(frozen=True, kw_only=True, eq=False)
class StepResult:
    """What a weighting step computed on a set of rows, before it is recorded.

    The in-memory steps compute it on the design's rows and pass it to
    :func:`finish`; the Dask backend (:mod:`satsample.weighting._dask`) computes
    it on the table of weighted cells (``counts`` rows per cell), maps the
    factors ``weights / old`` of the cells onto the partitions and records the
    step there.
    """

    weights: np.ndarray
    method: str
    params: dict[str, Any]
    converged: bool | None = None
    n_iter: int | None = None
    message: str = ""
    calibration: Any | None = None
    replicate_step: ReplicateStep | None = None


def finish_result(design: SurveyDesign, res: StepResult) -> SurveyDesign:
    """:func:`finish` with the fields of a :class:`StepResult`."""
    return finish(design, res.weights, method=res.method, params=res.params,
                  converged=res.converged, n_iter=res.n_iter, message=res.message,
                  calibration=res.calibration, replicate_step=res.replicate_step)


def row_count(mask: np.ndarray, counts: np.ndarray | None = None) -> int:
    """Rows behind ``mask``: ``mask.sum()``, or the summed ``counts`` when the rows are cells."""
    m = np.asarray(mask, dtype=bool)
    return int(m.sum()) if counts is None else int(np.asarray(counts)[m].sum())


def group_sums(codes: np.ndarray, n_groups: int, weights: np.ndarray) -> np.ndarray:
    """Sum ``weights`` (n,) or (R, n) by ``codes`` -> (n_groups,) or (R, n_groups)."""
    if weights.ndim == 1:
        return np.bincount(codes, weights=weights, minlength=n_groups)
    r = weights.shape[0]
    flat = (np.arange(r, dtype=np.int64)[:, None] * n_groups + codes[None, :]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=r * n_groups).reshape(r, n_groups)
