"""Weighting diagnostics: the history table and achieved totals against controls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._validation import SatsampleError, as_column_list
from ..design import SurveyDesign
from ._common import check_design
from .controls import cell_codes, margins_from_table, model_matrix, totals_vector

__all__ = ["calibration_check", "weight_summary"]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def weight_summary(design: SurveyDesign) -> pd.DataFrame:
    """One row per weighting step of the design's history.

    Parameters
    ----------
    design : SurveyDesign or DaskSurveyDesign

    Returns
    -------
    pandas.DataFrame
        Columns ``step`` (0 = declared design), ``method``, ``params`` (text),
        ``converged``, ``n_iter``, ``n_rows`` (rows with a positive weight),
        ``weight_sum``, ``weight_min``, ``weight_max``, ``weight_ratio``
        (max/min), ``kish_deff``, ``effective_n``, ``message``.

    Notes
    -----
    Kish's design effect of unequal weights is
    :math:`n \\sum w_i^2 / (\\sum w_i)^2` and the effective sample size
    :math:`(\\sum w_i)^2 / \\sum w_i^2`, over the rows with a positive weight.
    """
    if type(design).__name__ != "DaskSurveyDesign":  # a Dask design has the same history
        design = check_design(design, "weight_summary")
    rows = []
    for k, st in enumerate(design.history):
        rows.append({
            "step": k, "method": st.method,
            "params": "; ".join(f"{n}={_fmt(v)}" for n, v in st.params),
            "converged": st.converged, "n_iter": st.n_iter, "n_rows": st.n_rows,
            "weight_sum": st.weight_sum, "weight_min": st.weight_min,
            "weight_max": st.weight_max,
            "weight_ratio": st.weight_max / st.weight_min if st.weight_min > 0 else np.nan,
            "kish_deff": st.kish_deff, "effective_n": st.effective_n, "message": st.message,
        })
    return pd.DataFrame(rows)


def calibration_check(design: SurveyDesign, controls: pd.DataFrame | pd.Series | dict, *,
                      variables: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Compare the weighted totals of the design with population controls.

    Parameters
    ----------
    design : SurveyDesign
    controls : DataFrame, Series or dict
        A tidy margin table (``variable, level, Freq``); a cell table (the
        ``variables`` columns + ``Freq``); or a model-matrix vector (Series,
        dict or ``term, total`` table) with ``variables`` giving the terms.
    variables : str or sequence of str, optional
        Required for a cell table or a model-matrix vector.

    Returns
    -------
    pandas.DataFrame
        Columns ``term`` (level, cell or model-matrix column), ``control``,
        ``achieved`` (:math:`\\sum_i w_i x_i`), ``difference`` (achieved minus
        control) and ``relative_difference``.

    Notes
    -----
    A Dask design (:class:`~satsample.distributed.DaskSurveyDesign`) is
    checked on its table of weighted cells of the variables involved (one
    reduction over the partitions): the same sums of weights by level.
    """
    from ._dask import dispatch

    if (out := dispatch(design, "calibration_check", controls, variables=variables)
            ) is not None:
        return out
    design = check_design(design, "calibration_check")
    w = np.asarray(design.weights, dtype=np.float64)
    terms: list[str] = []
    ctl: list[float] = []
    ach: list[float] = []
    names = as_column_list(variables)
    if isinstance(controls, pd.DataFrame) and {"variable", "level"} <= set(controls.columns):
        for var, margin in margins_from_table(controls):
            codes, cells = cell_codes(design.data, var, role="control")
            sums = np.bincount(codes, weights=w, minlength=len(cells))
            got = {c[0]: s for c, s in zip(cells, sums, strict=True)}
            for level, f in margin.items():
                terms.append(f"{var}={level}")
                ctl.append(float(f))
                ach.append(float(got.get(level, 0.0)))
            for level in got:
                if level not in margin.index:
                    terms.append(f"{var}={level}")
                    ctl.append(np.nan)
                    ach.append(float(got[level]))
    elif isinstance(controls, pd.DataFrame) and names and set(names) <= set(controls.columns):
        from .controls import population_cells

        pop = population_cells(controls, names)
        codes, cells = cell_codes(design.data, names, role="control")
        sums = np.bincount(codes, weights=w, minlength=len(cells))
        got = dict(zip(cells, sums, strict=True))
        for cell in list(pop) + [c for c in got if c not in pop]:
            terms.append(", ".join(f"{v}={c}" for v, c in zip(names, cell, strict=True)))
            ctl.append(pop.get(cell, np.nan))
            ach.append(float(got.get(cell, 0.0)))
    else:
        if not names:
            raise SatsampleError(
                "calibration_check: give variables=[...] with a model-matrix vector of controls"
            )
        mm = model_matrix(design.data, names)
        tot = totals_vector(controls, columns=mm.columns)
        terms = list(mm.columns)
        ctl = tot.tolist()
        ach = (w @ mm.matrix).tolist()
    out = pd.DataFrame({"term": terms, "control": ctl, "achieved": ach})
    out["difference"] = out["achieved"] - out["control"]
    out["relative_difference"] = out["difference"] / out["control"].abs()
    return out
