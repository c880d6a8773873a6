"""Replicate weights supplied by a data producer (R's ``svrepdesign``): stored, never generated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._validation import SatsampleError, as_numbers, check_choice, check_columns
from ..design import ReplicateWeights
from ._common import matrix_rank, readonly
from .base import ReplicateScheme

__all__ = ["REPLICATE_KINDS", "Declared", "check_replicate_matrix", "declare_replicates",
           "replicate_scales"]

REPLICATE_KINDS: tuple[str, ...] = ("JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other")


def _replicate_columns(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(n, R) float64 matrix of replicate-weight columns; booleans and text raise, named."""
    if all(pd.api.types.is_float_dtype(t) or pd.api.types.is_integer_dtype(t)
           for t in frame.dtypes):
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.column_stack([as_numbers(frame.iloc[:, j], name=names[j], role="replicate weights")
                            for j in range(frame.shape[1])])


@dataclass(frozen=True, eq=False)
class Declared(ReplicateScheme):
    """Replicate weights declared by a producer; ``kind`` is what the producer says they are."""

    kind: str = "other"

    def __repr__(self) -> str:
        return f"Declared(kind={self.kind!r})"


def check_replicate_matrix(mat: np.ndarray, names: Sequence[str]) -> None:
    """Replicate weights (n, R) must be finite and non-negative (the column is named)."""
    bad = ~np.isfinite(mat)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise SatsampleError(
            f"replicate weights {names[j]!r}: {int(bad[:, j].sum())} value(s) are missing or "
            f"infinite ({int(bad.sum())} in all columns)"
        )
    neg = mat < 0
    if neg.any():
        j = int(np.flatnonzero(neg.any(axis=0))[0])
        raise SatsampleError(
            f"replicate weights {names[j]!r}: {int(neg[:, j].sum())} value(s) are negative"
        )


def replicate_scales(kind: str, n_rep: int, scale: float | None, rscales: Any,
                     fay_rho: float | None) -> tuple[float, np.ndarray]:
    """``scale`` and ``rscales`` of declared replicates, with the defaults of each kind."""
    if scale is None:
        if kind == "BRR":
            scale = 1.0 / n_rep
        elif kind == "Fay":
            if fay_rho is None:
                raise SatsampleError("kind='Fay' needs fay_rho= (or scale=)")
            scale = 1.0 / (n_rep * (1.0 - float(fay_rho)) ** 2)
        elif kind in ("bootstrap", "subbootstrap"):
            scale = 1.0 / (n_rep - 1)
        elif kind == "JKn":
            scale = 1.0
        else:
            raise SatsampleError(
                f"scale= is required for kind={kind!r} (JK1: (1 - f)(n - 1)/n; a producer's "
                "documentation gives it)"
            )
    if rscales is None:
        if kind == "JKn":
            raise SatsampleError("kind='JKn' needs rscales= (one (1 - f_h)(n_h - 1)/n_h per replicate)")
        rs = np.ones(n_rep)
    else:
        rs = np.asarray(rscales, dtype=np.float64).reshape(-1)
        if rs.size != n_rep:
            raise SatsampleError(f"rscales has {rs.size} values for {n_rep} replicates")
    if not np.isfinite(scale) or scale <= 0:
        raise SatsampleError(f"scale={scale!r} must be a positive number")
    return float(scale), rs


def declare_replicates(
    design: Any,
    weights: Sequence[str] | np.ndarray | pd.DataFrame,
    *,
    kind: Literal["JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other"] = "other",
    scale: float | None = None,
    rscales: Sequence[float] | np.ndarray | None = None,
    mse: bool = False,
    degf: int | None = None,
    combined_weights: bool = True,
    fay_rho: float | None = None,
) -> Any:
    """Attach replicate weights supplied by a data producer (R's ``svrepdesign``).

    Parameters
    ----------
    design : SurveyDesign
    weights : list of str, DataFrame or array of shape (n, R)
        Column names of ``design.data``, or one column per replicate with the
        rows of the design (the layout of a producer's file).
    kind : {"JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other"}, default="other"
        Used for the default ``scale`` and recorded in results.
    scale : float, optional
        Overall multiplier.  Defaults: BRR ``1/R``; Fay ``1/(R (1 - rho)^2)``;
        bootstraps ``1/(R - 1)``; required for the other kinds.
    rscales : array-like of shape (R,), optional
        Per-replicate multipliers (default ones; required for ``"JKn"``).
    mse : bool, default=False
        Centre at the full-sample estimate (many producers, e.g. the ACS, use True).
    degf : int, optional
        Degrees of freedom; default the rank of the replicate weights minus
        one, as R.  Give it to skip the rank computation on large files.
    combined_weights : bool, default=True
        ``True``: the columns are replicate *analysis* weights (R's
        ``combined.weights = TRUE``).  ``False``: they are multipliers of the
        design's analysis weights.
    fay_rho : float, optional
        Fay's coefficient (required for ``kind="Fay"`` without ``scale``).

    Returns
    -------
    SurveyDesign

    Notes
    -----
    :math:`v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_r - c)^2`.
    """
    check_choice(kind, name="kind", allowed=REPLICATE_KINDS)
    if type(design).__name__ == "DaskSurveyDesign":  # columns of the frame, read per partition
        from ..distributed.replicates import dask_declare

        return dask_declare(design, weights, kind=kind, scale=scale, rscales=rscales, mse=mse,
                            degf=degf, combined_weights=combined_weights, fay_rho=fay_rho)
    if isinstance(weights, pd.DataFrame):
        names = [str(c) for c in weights.columns]
        mat = _replicate_columns(weights, names)
    elif isinstance(weights, np.ndarray):
        mat = np.asarray(weights, dtype=np.float64)
        if mat.ndim != 2:
            raise SatsampleError(f"replicate weights must be 2-D (n, R), got shape {mat.shape}")
        names = [f"replicate {r + 1}" for r in range(mat.shape[1])]
    else:
        names = [weights] if isinstance(weights, str) else list(weights)
        check_columns(design.data, names, role="replicate weights")
        mat = _replicate_columns(design.data[names], names)
    if mat.shape[0] != design.n:
        raise SatsampleError(
            f"replicate weights have {mat.shape[0]} rows, the design has {design.n} "
            "(give one column per replicate, one row per respondent)"
        )
    n_rep = mat.shape[1]
    if n_rep < 2:
        raise SatsampleError(f"{n_rep} replicate weight column(s): need at least 2")
    check_replicate_matrix(mat, names)
    if not combined_weights:
        mat = mat * design.weights[:, None]
    scale, rs = replicate_scales(kind, n_rep, scale, rscales, fay_rho)
    if degf is None:
        degf = matrix_rank(mat.T) - 1
    rw = ReplicateWeights(
        kind=kind,
        weights=readonly(mat.T),
        scale=scale,
        rscales=rs,
        mse=bool(mse),
        degf=int(degf),
        n_replicates=n_rep,
        fay_rho=None if fay_rho is None else float(fay_rho),
        scheme=Declared(kind=kind),
    )
    return design.with_replicates(rw)
