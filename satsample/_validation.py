"""Errors, warnings and the input checks shared by every module.

Every message names the column, the value or the option that is wrong, and
the values that would be accepted.  Checks never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ConvergenceError",
    "ConvergenceWarning",
    "DesignError",
    "SatsampleError",
    "SatsampleWarning",
    "SmallDomainWarning",
    "as_column_list",
    "check_choice",
    "check_columns",
    "check_no_missing",
    "check_positive_int",
    "check_probability",
    "check_weights",
]


class SatsampleError(ValueError):
    """Base class of satsample's errors about user input."""


class DesignError(SatsampleError):
    """The survey design (strata, PSUs, weights, fpc, sizes) is inconsistent."""


class ConvergenceError(SatsampleError):
    """An iterative weighting step (raking, calibration) did not converge."""


class SatsampleWarning(UserWarning):
    """Base class of satsample's warnings."""


class ConvergenceWarning(SatsampleWarning):
    """An iterative step stopped before convergence and the caller accepted it."""


class SmallDomainWarning(SatsampleWarning):
    """A domain has too few respondents or PSUs for a reliable estimate."""


def as_column_list(columns: str | Sequence[str] | None) -> list[str]:
    """Return ``columns`` as a list of names (``None`` gives ``[]``)."""
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return list(columns)


def check_columns(data: pd.DataFrame, columns: str | Iterable[str] | None, *, role: str) -> None:
    """Raise if any of ``columns`` is not in ``data``.

    Parameters
    ----------
    data : pandas.DataFrame
        The table that must hold the columns.
    columns : str or iterable of str or None
        Column names to look for.
    role : str
        What the columns are for, used in the message (``"strata"``, ``"weights"``...).
    """
    if columns is None:
        return
    names = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in names if c not in data.columns]
    if missing:
        shown = ", ".join(map(repr, list(data.columns)[:20]))
        more = "" if data.shape[1] <= 20 else f" (and {data.shape[1] - 20} more)"
        raise SatsampleError(
            f"{role} column(s) {', '.join(map(repr, missing))} not found in the data; "
            f"available columns: {shown}{more}"
        )


def check_no_missing(data: pd.DataFrame, column: str, *, role: str) -> None:
    """Raise if ``data[column]`` has missing values, with their count."""
    n_missing = int(data[column].isna().sum())
    if n_missing:
        raise SatsampleError(
            f"{role} column {column!r} has {n_missing} missing value(s) "
            f"(first at row label {data.index[data[column].isna().to_numpy()][0]!r})"
        )


def check_weights(values: Any, *, name: str, allow_zero: bool = True) -> np.ndarray:
    """Return weights as a float64 array, raising on NaN, infinite or negative values.

    Parameters
    ----------
    values : array-like of shape (n,)
        The weights.
    name : str
        Name used in the message (a column name, or ``"weights"``).
    allow_zero : bool, default=True
        Whether a weight of exactly 0 is acceptable.
    """
    w = np.asarray(values, dtype=np.float64)
    bad_nan = ~np.isfinite(w)
    if bad_nan.any():
        raise SatsampleError(
            f"weights {name!r}: {int(bad_nan.sum())} value(s) are missing or infinite "
            f"(first at position {int(np.flatnonzero(bad_nan)[0])})"
        )
    neg = w < 0
    if neg.any():
        raise SatsampleError(
            f"weights {name!r}: {int(neg.sum())} value(s) are negative "
            f"(smallest {w.min():g} at position {int(np.argmin(w))})"
        )
    if not allow_zero and (w == 0).any():
        raise SatsampleError(f"weights {name!r}: {int((w == 0).sum())} value(s) are zero")
    return w


def check_choice(value: Any, *, name: str, allowed: Iterable[Any]) -> Any:
    """Raise unless ``value`` is one of ``allowed``; return it."""
    options = tuple(allowed)
    if value not in options:
        raise SatsampleError(
            f"{name}={value!r} is not one of {', '.join(map(repr, options))}"
        )
    return value


def check_probability(value: float, *, name: str, closed_low: bool = False,
                      closed_high: bool = False) -> float:
    """Raise unless ``value`` lies in (0, 1) (ends included when asked); return it."""
    v = float(value)
    low_ok = v >= 0 if closed_low else v > 0
    high_ok = v <= 1 if closed_high else v < 1
    if not (np.isfinite(v) and low_ok and high_ok):
        lo = "[" if closed_low else "("
        hi = "]" if closed_high else ")"
        raise SatsampleError(f"{name}={value!r} must lie in {lo}0, 1{hi}")
    return v


def check_positive_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``minimum``; return it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SatsampleError(f"{name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise SatsampleError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)
