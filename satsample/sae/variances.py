"""Sampling variances for area-level models: direct, GVF-smoothed or P(1-P) deff / n.

The Fay-Herriot model treats the sampling variances :math:`\\psi_d` of the direct
estimates as known.  Raw Taylor variances are unusable for that in small agencies: they
are 0 where every answer is satisfied and very unstable for :math:`n_d < 30`.
:func:`smooth_variances` offers two smoothed alternatives; the choice is explicit and is
recorded in the result (``psi_method`` / the ``sampling_variances`` option of
:class:`~satsample.sae.FayHerriotEstimate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._validation import SatsampleError, as_numbers, check_choice, check_columns, plain

__all__ = ["VARIANCE_METHODS", "smooth_variances"]

VARIANCE_METHODS: tuple[str, ...] = ("direct", "gvf", "proportion")


def _areas(labels: pd.Series, mask: np.ndarray, limit: int = 5) -> str:
    shown = [str(v) for v in labels.to_numpy()[mask][:limit]]
    more = int(mask.sum()) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _numeric(table: pd.DataFrame, column: str, *, role: str) -> np.ndarray:
    values = as_numbers(table[column], name=column, role=role)
    if np.isinf(values).any():
        raise SatsampleError(f"{role} column {column!r} has {int(np.isinf(values).sum())} "
                             "infinite value(s)")
    return values


def compute_psi(
    table: pd.DataFrame,
    *,
    method: str,
    area: str | None,
    estimate: str = "estimate",
    se: str = "se",
    n: str = "n",
    population_size: str | None = None,
    overall: float | None = None,
    deff: float = 1.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Sampling variances (NaN for rows without a direct estimate) and a record of the rule."""
    check_choice(method, name="variances", allowed=VARIANCE_METHODS)
    labels = table[area] if area is not None else pd.Series(np.arange(len(table)))
    y = _numeric(table, estimate, role="estimate")
    has = np.isfinite(y)
    if method == "direct":
        check_columns(table, se, role="se")
        s = _numeric(table, se, role="se")
        psi = np.where(has, s**2, np.nan)
        bad = has & ~(psi > 0)
        if bad.any():
            raise SatsampleError(
                f"variances='direct': the direct SE (column {se!r}) is zero or missing for "
                f"area(s) {_areas(labels, bad)}; a model with known sampling variances cannot "
                "use them: choose variances='gvf' or 'proportion' (smoothed variances)"
            )
        return psi, {"method": "direct", "formula": f"psi = {se}^2"}

    check_columns(table, n, role="n")
    nn = _numeric(table, n, role="n")
    small = has & ~(nn >= 1)
    if small.any():
        raise SatsampleError(f"column {n!r}: area(s) {_areas(labels, small)} have a direct "
                             "estimate but fewer than 1 respondent")
    if population_size is not None:
        check_columns(table, population_size, role="population_size")
        big_n = _numeric(table, population_size, role="population_size")
        bad = has & ~(big_n >= nn)
        if bad.any():
            raise SatsampleError(
                f"population_size column {population_size!r} is missing or below {n!r} for "
                f"area(s) {_areas(labels, bad)}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            fpc = np.where(has, 1.0 - nn / big_n, np.nan)
        fpc_text = f" (1 - {n}/{population_size})"
    else:
        fpc = np.ones(len(table))
        fpc_text = ""

    if method == "proportion":
        if isinstance(deff, bool) or not isinstance(deff, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(deff) and deff > 0):
            raise SatsampleError(f"deff={plain(deff)!r} must be a positive number")
        if overall is None:
            p = float(np.sum(y[has] * nn[has]) / np.sum(nn[has]))
            source = f"mean of the direct estimates weighted by {n!r}"
        else:
            p = float(overall)
            source = "given"
        if not 0 < p < 1:
            raise SatsampleError(
                f"variances='proportion' needs an overall share P in (0, 1), got {plain(p)!r}; it is "
                "for shares (satisfied, top-two-box, the 0-1 index), not mean scores"
            )
        psi = np.where(has, p * (1 - p) * deff * fpc / np.where(has, nn, 1.0), np.nan)
        zero = has & ~(psi > 0)
        if zero.any():
            raise SatsampleError(
                f"variances='proportion': psi is 0 for area(s) {_areas(labels, zero)} "
                f"(a census: n equals {population_size!r}); drop them or use their direct value"
            )
        return psi, {"method": "proportion",
                     "formula": f"psi = P (1 - P) deff{fpc_text} / {n}",
                     "P": p, "P_source": source, "deff": float(deff)}

    # generalized variance function: log(se^2 / fpc) = a + b log(n), fitted across areas
    check_columns(table, se, role="se")
    s = _numeric(table, se, role="se")
    with np.errstate(invalid="ignore", divide="ignore"):
        target = np.log(s**2 / fpc)
    use = has & np.isfinite(target) & (nn >= 2)
    if int(use.sum()) < 3:
        raise SatsampleError(
            f"variances='gvf' needs at least 3 areas with a positive direct variance and n >= 2 "
            f"to fit log(se^2) on log(n); found {int(use.sum())}"
        )
    z = np.column_stack([np.ones(int(use.sum())), np.log(nn[use])])
    if np.ptp(z[:, 1]) == 0:
        raise SatsampleError(
            "variances='gvf': every area used in the fit has the same n, so the slope on log(n) "
            "cannot be estimated; use variances='proportion'"
        )
    coef, *_ = np.linalg.lstsq(z, target[use], rcond=None)
    resid = target[use] - z @ coef
    smearing = float(np.mean(np.exp(resid)))  # Duan's smearing for the log scale
    r2 = 1.0 - float(np.sum(resid**2)) / float(np.sum((target[use] - target[use].mean()) ** 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = np.where(has, fpc * np.exp(coef[0] + coef[1] * np.log(np.where(has, nn, 1.0)))
                       * smearing, np.nan)
    zero = has & ~(psi > 0)
    if zero.any():
        raise SatsampleError(f"variances='gvf': psi is 0 for area(s) {_areas(labels, zero)} "
                             "(a census: n equals the population size)")
    if population_size is not None:
        formula = (f"log({se}^2 / (1 - {n}/{population_size})) = a + b log({n}); "
                   f"psi = (1 - {n}/{population_size}) exp(a + b log {n}) x smearing")
    else:
        formula = f"log({se}^2) = a + b log({n}); psi = exp(a + b log {n}) x smearing"
    return psi, {"method": "gvf", "formula": formula,
                 "a": float(coef[0]), "b": float(coef[1]), "smearing": smearing,
                 "r_squared": r2, "n_areas_fitted": int(use.sum())}


def describe_psi(record: Mapping[str, Any]) -> str:
    """One line describing how the sampling variances were obtained."""
    method = record.get("method", "given")
    if method == "direct":
        return f"direct (raw) design variances: {record['formula']}"
    if method == "proportion":
        return (f"smoothed, {record['formula']} with P = {record['P']:.6g} ({record['P_source']}), "
                f"deff = {record['deff']:g}")
    if method == "gvf":
        return (f"smoothed by a generalized variance function fitted across "
                f"{record['n_areas_fitted']} areas: {record['formula']}; a = {record['a']:.4g}, "
                f"b = {record['b']:.4g}, smearing = {record['smearing']:.4g}, "
                f"R^2 = {record['r_squared']:.3f}")
    return str(record.get("formula", "as given"))


def smooth_variances(
    table: Any,
    *,
    method: Literal["direct", "gvf", "proportion"],
    estimate: str = "estimate",
    se: str = "se",
    n: str = "n",
    area: str | None = None,
    population_size: str | None = None,
    overall: float | None = None,
    deff: float = 1.0,
) -> pd.DataFrame:
    """Sampling variances psi_d of area direct estimates, raw or smoothed across areas.

    Parameters
    ----------
    table : pandas.DataFrame or result with ``to_frame()``
        One row per area with the direct ``estimate``, its ``se`` and the number ``n`` of
        usable answers (the ``overall``/``items`` tables of
        :func:`~satsample.satisfaction_index` by agency have these columns).  Not modified.
    method : {"direct", "gvf", "proportion"}
        ``"direct"``: :math:`\\psi_d = se_d^2` (refused where it is 0).
        ``"gvf"``: a generalized variance function fitted across areas by least squares,
        :math:`\\log(se_d^2/f_d) = a + b \\log n_d`, then
        :math:`\\psi_d = f_d\\, e^{a + b\\log n_d}\\, s` with Duan's smearing factor
        :math:`s = \\overline{e^{\\text{residual}}}` and :math:`f_d = 1 - n_d/N_d` (1 without
        ``population_size``).
        ``"proportion"``: :math:`\\psi_d = P(1-P)\\,\\text{deff}\\, f_d / n_d` with
        :math:`P` the overall share.
        No default: the choice changes the estimates and must be made explicitly.
    estimate, se, n : str
        Column names.
    area : str or None, default=None
        Column naming the areas, used in error messages (row positions without it).
    population_size : str or None, default=None
        Column with the area population sizes :math:`N_d` for the finite-population
        correction :math:`f_d`.
    overall : float or None, default=None
        :math:`P` for ``"proportion"``: pass the direct estimate of the whole population
        (e.g. the national share).  None uses the ``n``-weighted mean of the area estimates.
    deff : float, default=1.0
        Design effect for ``"proportion"``.

    Returns
    -------
    pandas.DataFrame
        A copy of the table with a column ``psi`` (NaN where there is no direct estimate);
        ``attrs["psi_method"]`` records the rule and its fitted constants.

    Raises
    ------
    SatsampleError
        A missing column, a zero direct variance with ``"direct"``, fewer than three usable
        areas for the GVF, :math:`P` outside (0, 1).

    Notes
    -----
    Both smoothers are standard practice for Fay-Herriot models of shares (Rao & Molina 2015,
    sec. 6.4; the U.S. SAIPE and many national statistical offices).  The ``"proportion"``
    rule reproduces reference case H (R) exactly with ``overall`` = the national direct
    estimate and ``population_size`` = the agency sizes.

    Examples
    --------
    >>> import pandas as pd
    >>> from satsample.sae import smooth_variances
    >>> t = pd.DataFrame({"agency_id": ["A", "B"], "estimate": [0.8, 1.0],
    ...                   "se": [0.09, 0.0], "n": [20, 15]})
    >>> smooth_variances(t, method="proportion", overall=0.75)["psi"].round(5).tolist()
    [0.00938, 0.0125]
    """
    if hasattr(table, "to_frame") and not isinstance(table, pd.DataFrame):
        table = table.to_frame()
    if not isinstance(table, pd.DataFrame):
        raise SatsampleError(f"table must be a DataFrame, got {type(table).__name__}")
    check_columns(table, [estimate, *([area] if area else [])], role="smooth_variances")
    psi, record = compute_psi(table, method=method, area=area, estimate=estimate, se=se, n=n,
                              population_size=population_size, overall=overall, deff=deff)
    out = table.copy()
    out["psi"] = psi
    out.attrs["psi_method"] = record
    return out
