"""Control totals: tidy margin tables, post-stratification tables and model-matrix vectors.

Three formats of population controls are accepted by the weighting steps:

* a **tidy margin table** with columns ``variable, level, Freq`` (one row per
  level of each margin, as ``margins.csv``), for :func:`~satsample.weighting.rake`
  and :func:`~satsample.weighting.calibrate`;
* a **cell table** with one column per stratifying variable and a ``Freq``
  column (``controls_sex_age.csv``), or a Series indexed by the levels, for
  :func:`~satsample.weighting.poststratify` and the margins of ``rake``;
* a **model-matrix vector**: a Series indexed by the column names of R's
  ``model.matrix(~ a + b + ...)`` with treatment coding (``"(Intercept)"``,
  ``"sexM"``, ``"age_group30-44"``...), or a two-column table ``term, total``
  (``calib_totals.csv``), for ``calibrate``.

Levels are matched as text (``str(value)``), so a level read from a CSV as
``"1"`` matches the integer ``1`` in the data.  Every mismatch (a level in the
sample but not in the controls or the reverse, a negative or missing control)
raises :class:`~satsample.SatsampleError` naming the variable and the level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import SatsampleError, as_column_list, check_columns, check_grouping

__all__ = [
    "ModelMatrix",
    "cell_codes",
    "margins_from_table",
    "model_matrix",
    "totals_from_margins",
    "totals_vector",
]

INTERCEPT = "(Intercept)"


# ---------------------------------------------------------------- levels
def _levels(series: pd.Series) -> list[str]:
    """Factor levels as R's ``factor()`` orders them: categories, else sorted values."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return [str(c) for c in series.cat.categories]
    values = series.dropna().unique()
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    out: list[str] = []
    for v in values:
        s = str(v)
        if s not in out:
            out.append(s)
    return out


def _is_numeric(series: pd.Series) -> bool:
    return (
        not isinstance(series.dtype, pd.CategoricalDtype)
        and pd.api.types.is_numeric_dtype(series.dtype)
        and not pd.api.types.is_bool_dtype(series.dtype)
    )


# rows behind each row of the data when the data are a table of weighted cells (Dask backend):
# the counts of missing values in messages are then counts of rows, as in memory
_ROWS_BEHIND: ContextVar[np.ndarray | None] = ContextVar("rows_behind", default=None)


@contextmanager
def rows_behind(counts: np.ndarray) -> Iterator[None]:
    """Within the block, data rows are cells standing for ``counts`` rows each (messages)."""
    token = _ROWS_BEHIND.set(np.asarray(counts))
    try:
        yield
    finally:
        _ROWS_BEHIND.reset(token)


def _as_text(series: pd.Series, name: str, role: str) -> np.ndarray:
    if series.isna().any():
        counts = _ROWS_BEHIND.get()
        missing = series.isna().to_numpy()
        n_missing = int(missing.sum() if counts is None else counts[missing].sum())
        raise SatsampleError(
            f"{role} variable {name!r} has {n_missing} missing value(s); "
            "weighting variables must be complete (impute or drop those rows first)"
        )
    return series.astype(str).to_numpy(dtype=object)


def _check_freq(values: pd.Series, labels: Sequence[str], what: str) -> np.ndarray:
    freq = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    for i, f in enumerate(freq):
        if not np.isfinite(f):
            raise SatsampleError(f"{what}: control for {labels[i]} is missing or not a number")
        if f < 0:
            raise SatsampleError(f"{what}: control for {labels[i]} is negative ({f:g})")
    return freq


# ---------------------------------------------------------------- cells
def cell_codes(data: pd.DataFrame, variables: str | Sequence[str], *,
               role: str = "weighting") -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Code the cells of the cross-classification of ``variables``.

    Parameters
    ----------
    data : pandas.DataFrame
        The design's data.
    variables : str or sequence of str
        Classification variables.
    role : str, default="weighting"
        Used in error messages.

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Cell code of each row.
    cells : list of tuple of str
        The level combination (as text) of each code, in sorted order.
    """
    names = as_column_list(variables)
    check_columns(data, names, role=role)
    # factorize each variable on its own values (fast for categoricals and numbers) and rank its
    # few levels by their text; the cells are then the distinct rows of the rank matrix, in
    # lexicographic order, which is the order of the text tuples
    ranks: list[np.ndarray] = []
    level_texts: list[np.ndarray] = []
    for v in names:
        series = data[v]
        if series.isna().any():
            _as_text(series, v, role)  # raises, naming the variable and the count
        check_grouping(series, name=v, role=role)
        raw_codes, raw_levels = pd.factorize(series, sort=False)
        texts = pd.Index(raw_levels).astype(str).to_numpy(dtype=object)
        order = np.argsort(texts, kind="stable")
        sorted_texts = texts[order]
        # 1 and "1" are one level (an empty column has no level)
        first = np.r_[True, sorted_texts[1:] != sorted_texts[:-1]][:len(texts)]
        rank = np.empty(len(texts), dtype=np.int64)
        rank[order] = np.cumsum(first) - 1
        level_texts.append(sorted_texts[first])
        ranks.append(rank[raw_codes])
    radix = [len(lv) for lv in level_texts]
    if float(np.prod(np.asarray(radix, dtype=np.float64))) < 2.0**62:
        combined = np.zeros(len(data), dtype=np.int64)  # mixed radix keeps the order
        for r, n_levels in zip(ranks, radix, strict=True):
            combined = combined * n_levels + r
        size = int(np.prod(np.asarray(radix, dtype=np.int64)))
        if size <= 4 * combined.size + 1024:  # few combinations: no sort
            seen = np.bincount(combined, minlength=size) > 0
            uniq = np.flatnonzero(seen)
            codes = (np.cumsum(seen) - 1)[combined]
        else:
            uniq, codes = np.unique(combined, return_inverse=True)
        uniq_rows = np.empty((uniq.size, len(radix)), dtype=np.int64)
        for j in range(len(radix) - 1, -1, -1):
            uniq, uniq_rows[:, j] = np.divmod(uniq, radix[j])
    else:  # too many level combinations for one int64
        uniq_rows, codes = np.unique(np.stack(ranks, axis=1), axis=0, return_inverse=True)
    cells = [tuple(str(level_texts[j][r]) for j, r in enumerate(row)) for row in uniq_rows.tolist()]
    return codes.astype(np.int64).reshape(-1), cells


def _cell_label(variables: Sequence[str], cell: tuple[str, ...]) -> str:
    return ", ".join(f"{v}={c!r}" for v, c in zip(variables, cell, strict=True))


def population_cells(population: pd.DataFrame | pd.Series, variables: Sequence[str]
                     ) -> dict[tuple[str, ...], float]:
    """Read a cell table (variables + ``Freq``) or a Series into ``{cell: count}``.

    Parameters
    ----------
    population : DataFrame or Series
        A DataFrame with one column per variable and a ``Freq`` column (or
        exactly one other numeric column), or a Series indexed by the levels
        (a MultiIndex for several variables).
    variables : sequence of str
        The classification variables, in order.

    Returns
    -------
    dict
        Cell (tuple of level texts) -> population count.
    """
    names = list(variables)
    what = f"population table for {'×'.join(names)}"
    if isinstance(population, pd.Series):
        idx = population.index
        if isinstance(idx, pd.MultiIndex):
            if idx.nlevels != len(names):
                raise SatsampleError(
                    f"{what}: the Series index has {idx.nlevels} levels, expected {len(names)}"
                )
            cells = [tuple(str(x) for x in t) for t in idx]
        else:
            if len(names) != 1:
                raise SatsampleError(
                    f"{what}: give a DataFrame with columns {names} + 'Freq' "
                    "(or a Series with a MultiIndex) for several variables"
                )
            cells = [(str(x),) for x in idx]
        values = population.reset_index(drop=True)
    elif isinstance(population, pd.DataFrame):
        missing = [v for v in names if v not in population.columns]
        if missing:
            raise SatsampleError(
                f"{what}: column(s) {missing} not found; columns are {list(population.columns)}"
            )
        others = [c for c in population.columns if c not in names]
        if "Freq" in population.columns:
            freq_col = "Freq"
        elif len(others) == 1:
            freq_col = others[0]
        else:
            raise SatsampleError(
                f"{what}: cannot tell the count column among {others}; name it 'Freq'"
            )
        for v in names:
            if population[v].isna().any():
                raise SatsampleError(f"{what}: column {v!r} has missing levels")
        cells = [tuple(str(x) for x in row)
                 for row in population[names].itertuples(index=False, name=None)]
        values = population[freq_col].reset_index(drop=True)
    else:
        raise SatsampleError(
            f"{what}: population must be a pandas DataFrame or Series, not "
            f"{type(population).__name__}"
        )
    labels = [_cell_label(names, c) for c in cells]
    freq = _check_freq(values, labels, what)
    out: dict[tuple[str, ...], float] = {}
    for c, f, lab in zip(cells, freq, labels, strict=True):
        if c in out:
            raise SatsampleError(f"{what}: cell {lab} appears more than once")
        out[c] = float(f)
    return out


def margins_from_table(table: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Split a tidy margin table (``variable, level, Freq``) into one margin per variable.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``variable``, ``level`` and ``Freq`` (``total`` or ``N`` are
        accepted for the count).

    Returns
    -------
    list of (str, pandas.Series)
        ``(variable, Series of counts indexed by level text)`` in order of first
        appearance of the variables.
    """
    if not isinstance(table, pd.DataFrame):
        raise SatsampleError(
            f"margin table must be a DataFrame with columns variable, level, Freq, "
            f"not {type(table).__name__}"
        )
    freq_col = next((c for c in ("Freq", "total", "N") if c in table.columns), None)
    if freq_col is None or "variable" not in table.columns or "level" not in table.columns:
        raise SatsampleError(
            "margin table needs columns 'variable', 'level' and 'Freq'; got "
            f"{list(table.columns)}"
        )
    if table["variable"].isna().any() or table["level"].isna().any():
        raise SatsampleError("margin table: 'variable' and 'level' must not be missing")
    out = []
    for var in pd.unique(table["variable"]):
        sub = table[table["variable"] == var]
        levels = [str(x) for x in sub["level"]]
        labels = [f"{var}={lv!r}" for lv in levels]
        freq = _check_freq(sub[freq_col], labels, "margin table")
        if len(set(levels)) != len(levels):
            dup = next(lv for lv in levels if levels.count(lv) > 1)
            raise SatsampleError(f"margin table: level {var}={dup!r} appears more than once")
        out.append((str(var), pd.Series(freq, index=pd.Index(levels, name=str(var)),
                                        name="Freq")))
    check_equal_totals([(v, float(s.sum())) for v, s in out], what="margin table")
    return out


def check_equal_totals(totals: Sequence[tuple[str, float]], *, what: str) -> None:
    """Raise unless every margin sums to the same population total (relative 1e-9).

    Margins of one population with different totals cannot all be met: raking
    would stop on its change criterion with some margins missed.

    Parameters
    ----------
    totals : sequence of (str, float)
        ``(margin name, total of its population counts)``, in order.
    what : str
        Where the margins come from, used in the message.
    """
    if not totals:
        return
    name0, first = totals[0]
    for name, t in totals[1:]:
        if abs(t - first) > 1e-9 * max(abs(first), 1.0):
            raise SatsampleError(
                f"{what}: the margins do not sum to the same population total "
                f"({name0!r}: {first:g}, {name!r}: {t:g}); margins of one population must "
                "agree before raking"
            )


# ---------------------------------------------------------------- model matrix
@dataclass(frozen=True, kw_only=True, eq=False)
class ModelMatrix:
    """R's ``model.matrix(~ v1 + v2 + ...)`` with treatment coding.

    Attributes
    ----------
    matrix : ndarray of float64, shape (n, p)
        The design matrix (first column the intercept when present).
    columns : tuple of str
        Column names as R writes them (``"(Intercept)"``, ``"sexM"``...).
    variables : tuple of str
        The variables, in order.
    levels : dict
        Variable -> tuple of level texts (the first is the reference level);
        numeric variables map to ``None``.
    """

    matrix: np.ndarray
    columns: tuple[str, ...]
    variables: tuple[str, ...]
    levels: dict[str, tuple[str, ...] | None]


def model_matrix(data: pd.DataFrame, variables: str | Sequence[str], *,
                 intercept: bool = True) -> ModelMatrix:
    """Build the treatment-coded model matrix of ``~ variables`` as R does.

    Parameters
    ----------
    data : pandas.DataFrame
        The design's data.
    variables : str or sequence of str
        Main-effect terms.  Numeric columns enter as they are; any other
        column is a factor whose levels are its categories (for a
        ``Categorical``) or its sorted distinct values (R's ``factor()``); the
        first level is the reference.
    intercept : bool, default=True
        Include the ``"(Intercept)"`` column.

    Returns
    -------
    ModelMatrix

    Notes
    -----
    Column names are ``variable + level`` for factor levels after the first,
    and the variable name for a numeric column, as in R.
    """
    names = as_column_list(variables)
    check_columns(data, names, role="calibration")
    n = data.shape[0]
    cols: list[np.ndarray] = []
    colnames: list[str] = []
    levels: dict[str, tuple[str, ...] | None] = {}
    if intercept:
        cols.append(np.ones(n))
        colnames.append(INTERCEPT)
    for v in names:
        s = data[v]
        if _is_numeric(s):
            vals = s.to_numpy(dtype=np.float64)
            if not np.isfinite(vals).all():
                raise SatsampleError(f"calibration variable {v!r} has missing or infinite values")
            cols.append(vals)
            colnames.append(v)
            levels[v] = None
            continue
        text = _as_text(s, v, "calibration")
        check_grouping(s, name=v, role="calibration")
        lv = _levels(s)
        levels[v] = tuple(lv)
        start = 1 if intercept or len(levels) > 1 else 0
        for level in lv[start:]:
            cols.append((text == level).astype(np.float64))
            colnames.append(f"{v}{level}")
    mat = np.column_stack(cols) if cols else np.empty((n, 0))
    return ModelMatrix(matrix=np.ascontiguousarray(mat), columns=tuple(colnames),
                       variables=tuple(names), levels=levels)


def totals_vector(totals: pd.Series | pd.DataFrame | dict, *, columns: Sequence[str] | None = None
                  ) -> pd.Series:
    """Normalise a model-matrix vector of totals to a float Series.

    Parameters
    ----------
    totals : Series, dict or DataFrame
        A Series or dict ``{column name: total}``, or a two-column table
        ``term, total`` (as ``calib_totals.csv``).
    columns : sequence of str, optional
        The model-matrix columns the totals must cover; when given, the
        result is reordered to them and any missing or extra name raises.

    Returns
    -------
    pandas.Series of float64
    """
    if isinstance(totals, dict):
        s = pd.Series(totals, dtype=np.float64)
    elif isinstance(totals, pd.Series):
        s = pd.Series(pd.to_numeric(totals, errors="coerce").to_numpy(dtype=np.float64),
                      index=[str(i) for i in totals.index])
    elif isinstance(totals, pd.DataFrame):
        if totals.shape[1] != 2:
            raise SatsampleError(
                "a table of calibration totals must have two columns (term, total); got "
                f"{list(totals.columns)}"
            )
        s = pd.Series(pd.to_numeric(totals.iloc[:, 1], errors="coerce").to_numpy(np.float64),
                      index=[str(x) for x in totals.iloc[:, 0]])
    else:
        raise SatsampleError(
            f"calibration totals must be a Series, dict or DataFrame, not {type(totals).__name__}"
        )
    for name, val in s.items():
        if not np.isfinite(val):
            raise SatsampleError(f"calibration total {name!r} is missing or not a number")
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()][0]
        raise SatsampleError(f"calibration total {dup!r} is given more than once")
    if columns is not None:
        cols = list(columns)
        missing = [c for c in cols if c not in s.index]
        extra = [c for c in s.index if c not in cols]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"model-matrix column(s) {missing} have no total")
            if extra:
                parts.append(f"total(s) {extra} match no model-matrix column "
                             "(a level absent from the sample, or a misspelt name)")
            raise SatsampleError("calibration totals do not match the sample: "
                                 + "; ".join(parts) + f"; the model matrix has {cols}")
        s = s.reindex(cols)
    return s


def totals_from_margins(table: pd.DataFrame, mm: ModelMatrix) -> pd.Series:
    """Turn a tidy margin table into the model-matrix vector of ``mm``.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``variable, level, Freq``; must hold every factor variable of
        ``mm`` with exactly the levels present in the sample.
    mm : ModelMatrix
        The model matrix built on the sample.

    Returns
    -------
    pandas.Series
        Totals indexed by ``mm.columns``; the intercept is the common total of
        the margins.
    """
    margins = dict(margins_from_table(table))
    out: dict[str, float] = {}
    grand = None
    for v in mm.variables:
        lv = mm.levels[v]
        if lv is None:
            raise SatsampleError(
                f"calibration variable {v!r} is numeric: give its total in a model-matrix vector"
            )
        if v not in margins:
            raise SatsampleError(f"margin table has no rows for calibration variable {v!r}")
        m = margins[v]
        m = m[(m > 0) | m.index.isin(list(lv))]  # a zero control for an absent level is harmless
        _match_levels(v, list(lv), list(m.index))
        grand = float(m.sum())
    extra = [v for v in margins if v not in mm.variables]
    if extra:
        raise SatsampleError(f"margin table has variable(s) {extra} not in the calibration formula")
    for col in mm.columns:
        if col == INTERCEPT:
            if grand is None:
                raise SatsampleError("cannot derive the intercept total without a factor margin")
            out[col] = grand
    for v in mm.variables:
        lv = mm.levels[v]
        assert lv is not None
        start = 0 if (f"{v}{lv[0]}" in mm.columns) else 1
        for level in lv[start:]:
            out[f"{v}{level}"] = float(margins[v][level])
    return pd.Series(out).reindex(list(mm.columns))


def _match_levels(variable: str, sample_levels: list[str], control_levels: list[str]) -> None:
    only_sample = [lv for lv in sample_levels if lv not in control_levels]
    only_control = [lv for lv in control_levels if lv not in sample_levels]
    if only_sample:
        raise SatsampleError(
            f"variable {variable!r}: level(s) {only_sample} present in the sample are absent "
            f"from the controls (control levels: {control_levels})"
        )
    if only_control:
        raise SatsampleError(
            f"variable {variable!r}: level(s) {only_control} of the controls have no row in "
            f"the sample (sample levels: {sample_levels}); collapse them or drop the control"
        )
