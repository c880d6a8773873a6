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
    "as_numbers",
    "check_choice",
    "check_columns",
    "check_grouping",
    "check_no_missing",
    "check_positive_int",
    "check_probability",
    "check_weights",
    "plain",
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


def plain(value: Any) -> Any:
    """Return numpy scalars as plain Python values (``np.int64(3)`` -> ``3``), for messages.

    Tuples and lists are converted element by element; anything else is returned unchanged.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    return value


def _shown(values: Iterable[Any], limit: int = 5) -> str:
    vals = list(values)
    text = ", ".join(repr(plain(v)) for v in vals[:limit])
    return text + (f" and {len(vals) - limit} more" if len(vals) > limit else "")


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def as_numbers(values: Any, *, name: str, role: str) -> np.ndarray:
    """Return a column as float64 (missing -> NaN), refusing booleans and text.

    ``True``/``False`` are not numbers here: a boolean column (numpy ``bool``,
    pandas ``boolean``) or Python booleans in an object column raise, as does
    text that is not a number (``"3"`` is read as 3, ``"abc"`` raises).

    Parameters
    ----------
    values : pandas.Series or array-like of shape (n,)
        The column.
    name : str
        Column name, used in the message.
    role : str
        What the column is (``"weights"``, ``"item"``...), used in the message.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return np.asarray(values, dtype=np.float64)
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object)
                                                               .reshape(-1))
    if pd.api.types.is_bool_dtype(s.dtype):
        raise SatsampleError(f"{role} column {name!r} is boolean (True/False); expected numbers")
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.infer_dtype(s, skipna=True) not in ("integer", "floating", "string", "empty",
                                                          "mixed-integer-float", "decimal"):
        is_bool = s.map(_is_bool).to_numpy(dtype=bool)
        if is_bool.any():
            raise SatsampleError(
                f"{role} column {name!r} holds {int(is_bool.sum())} boolean value(s) (True/False, "
                f"first at row label {plain(s.index[is_bool][0])!r}); expected numbers"
            )
    conv = pd.to_numeric(s, errors="coerce")
    not_number = conv.isna().to_numpy() & s.notna().to_numpy()
    if not_number.any():
        bad = pd.unique(s[not_number].astype(str))
        raise SatsampleError(
            f"{role} column {name!r}: {int(not_number.sum())} row(s) hold non-numeric "
            f"value(s) {_shown(bad)} (first at row label {plain(s.index[not_number][0])!r})"
        )
    return conv.to_numpy(dtype=np.float64, na_value=np.nan)


_ONE_KIND = frozenset({"string", "integer", "floating", "mixed-integer-float", "decimal",
                       "boolean", "empty", "date", "datetime", "datetime64", "time", "period",
                       "timedelta", "timedelta64", "interval", "bytes", "complex"})


def check_grouping(values: pd.Series, *, name: str, role: str) -> None:
    """Raise if a grouping column mixes kinds of values (``1`` and ``"1"``).

    A column that codes domains, classes, strata or margins must hold one kind
    of value: numbers, text, booleans, or dates.  Mixed kinds either give two
    groups printed alike (``1`` and ``"1"``) or depend on how each function
    turns labels into text, so they are refused; the message names the column
    and one value of each kind.  Object columns and the categories of a
    categorical column are inspected (other typed columns hold one kind by
    construction); missing values are ignored.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(np.asarray(values.cat.categories, dtype=object))
    if values.dtype != object:
        return
    if pd.api.types.infer_dtype(values, skipna=True) in _ONE_KIND:  # fast, no Python loop
        return
    uniq = pd.unique(values.dropna())
    if uniq.size < 2:
        return
    first: dict[str, Any] = {}
    for v in uniq:
        if _is_bool(v):
            kind = "boolean"
        elif isinstance(v, (int, float, np.integer, np.floating)):
            kind = "number"
        elif isinstance(v, str):
            kind = "text"
        else:
            kind = type(v).__name__
        first.setdefault(kind, v)
        if len(first) > 1:
            (k1, v1), (k2, v2) = list(first.items())[:2]
            raise SatsampleError(
                f"{role} column {name!r} mixes {k1} and {k2} values ({plain(v1)!r} and "
                f"{plain(v2)!r}); use one type for the column (e.g. .astype(str))"
            )


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
            f"(first at row label {plain(data.index[data[column].isna().to_numpy()][0])!r})"
        )


def check_weights(values: Any, *, name: str, allow_zero: bool = True) -> np.ndarray:
    """Return weights as a float64 array; raise on text, booleans, NaN, infinite or negative values.

    Weights must also be computable with: a positive weight below the smallest
    normal float64 (about 2.2e-308), or weights whose sum of squares overflows
    or underflows float64, are refused with a suggestion to rescale (they would
    give NaN, infinite or division-by-zero results downstream).

    Parameters
    ----------
    values : pandas.Series or array-like of shape (n,)
        The weights.
    name : str
        Name used in the message (a column name, or ``"weights"``).
    allow_zero : bool, default=True
        Whether a weight of exactly 0 is acceptable.
    """
    w = as_numbers(values, name=name, role="weights")
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
    tiny = np.finfo(np.float64).tiny
    subnormal = (w > 0) & (w < tiny)
    if subnormal.any():
        i = int(np.flatnonzero(subnormal)[0])
        raise SatsampleError(
            f"weights {name!r}: {int(subnormal.sum())} positive value(s) are below {tiny:.3g}, "
            f"the smallest normal float64 (first {w[i]:g} at position {i}); they cannot be "
            "computed with: rescale the weights or set those to 0"
        )
    if w.size:
        with np.errstate(over="ignore", under="ignore"):
            sum_sq = float(np.dot(w, w))
        if not np.isfinite(sum_sq):
            raise SatsampleError(
                f"weights {name!r}: too large to compute with (largest {w.max():g}; the sum of "
                "squared weights overflows float64): rescale the weights, e.g. divide them by "
                "a power of 10"
            )
        if w.max() > 0 and sum_sq < tiny:
            raise SatsampleError(
                f"weights {name!r}: too small to compute with (largest {w.max():g}; the sum of "
                "squared weights underflows float64): rescale the weights, e.g. multiply them "
                "by a power of 10"
            )
    return w


def check_choice(value: Any, *, name: str, allowed: Iterable[Any]) -> Any:
    """Raise unless ``value`` is one of ``allowed``; return it."""
    options = tuple(allowed)
    if value not in options:
        raise SatsampleError(
            f"{name}={plain(value)!r} is not one of {', '.join(repr(plain(o)) for o in options)}"
        )
    return value


def check_probability(value: float, *, name: str, closed_low: bool = False,
                      closed_high: bool = False) -> float:
    """Raise unless ``value`` is a number in (0, 1) (ends included when asked); return it.

    Text, booleans and ``None`` are refused (``"0.95"`` and ``True`` are not probabilities).
    """
    lo = "[" if closed_low else "("
    hi = "]" if closed_high else ")"
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise SatsampleError(f"{name}={plain(value)!r} must be a number in {lo}0, 1{hi}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SatsampleError(f"{name}={plain(value)!r} must be a number in {lo}0, 1{hi}") from None
    low_ok = v >= 0 if closed_low else v > 0
    high_ok = v <= 1 if closed_high else v < 1
    if not (np.isfinite(v) and low_ok and high_ok):
        raise SatsampleError(f"{name}={plain(value)!r} must lie in {lo}0, 1{hi}")
    return v


def check_positive_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``minimum``; return it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SatsampleError(f"{name}={plain(value)!r} must be an integer >= {minimum}")
    if value < minimum:
        raise SatsampleError(f"{name}={plain(value)!r} must be an integer >= {minimum}")
    return int(value)
