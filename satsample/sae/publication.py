"""Publication tables that show model-based estimates, labelled, where direct ones are suppressed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError, check_columns
from .area_level import FayHerriotEstimate, _show
from .unit_level import UnitLevelEstimate

__all__ = ["model_based_table"]


def model_based_table(
    table: Any,
    small_area: FayHerriotEstimate | UnitLevelEstimate,
    *,
    area: str | None = None,
    min_n: int | None = 30,
    include_unsampled: bool = True,
) -> pd.DataFrame:
    """Replace suppressed direct estimates by labelled model-based (Fay-Herriot) estimates.

    Parameters
    ----------
    table : pandas.DataFrame or result with ``to_frame()``
        Direct estimates by area with ``estimate`` and ``se`` (and ``ci_low``, ``ci_high``,
        ``n``), typically the output of :func:`~satsample.publication_flags`.  Not modified.
    small_area : FayHerriotEstimate or UnitLevelEstimate
        Model-based estimates of the same quantity for the same areas.
    area : str or None, default=None
        Area column of ``table``; None uses ``small_area.area``.
    min_n : int or None, default=30
        Without a ``status`` column, rows with ``n < min_n`` are replaced.  With a
        ``status`` column (from :func:`~satsample.publication_flags`) the rows with status
        ``"suppress"`` are replaced and ``min_n`` is not used.
    include_unsampled : bool, default=True
        Append the areas of ``small_area`` that have no row in ``table`` (synthetic
        estimates for agencies without a sample).

    Returns
    -------
    pandas.DataFrame
        A copy of the table where replaced rows carry the model-based ``estimate``, ``se``
        (its root MSE), ``ci_low``/``ci_high`` (estimate ± z·RMSE), plus the columns
        ``direct_estimate`` and ``direct_se`` (the original values), ``source``
        (``"direct"`` or ``"model-based"``) and ``model`` (the model statement, empty for
        direct rows).  Replaced rows get status ``"model-based"`` when there is a status
        column.  ``attrs["model"]`` holds the model statement for a methods section.

    Raises
    ------
    SatsampleError
        Missing columns; neither a ``status`` column nor ``n`` with ``min_n``.

    Notes
    -----
    The model-based interval is :math:`\\hat\\theta_d \\pm z_{1-\\alpha/2}\\sqrt{\\text{mse}_d}`
    at ``small_area.level``.  Direct rows are unchanged.  An area suppressed in the direct
    table but absent from ``small_area`` stays suppressed with source ``"direct"``.

    Examples
    --------
    >>> import pandas as pd
    >>> from satsample.sae import fay_herriot, model_based_table
    >>> d = pd.DataFrame({"area": list("ABCDEF"), "estimate": [0.62, 0.71, 0.55, 0.80, 0.66, 0.7],
    ...                   "se": [0.1, 0.11, 0.095, 0.12, 0.105, 0.1], "n": [12, 40, 15, 35, 50, 14],
    ...                   "prior": [0.60, 0.70, 0.58, 0.75, 0.65, 0.70]})
    >>> fit = fay_herriot(d.assign(psi=d["se"] ** 2), area="area", covariates="prior")
    >>> model_based_table(d, fit)["source"].tolist()
    ['model-based', 'direct', 'model-based', 'direct', 'direct', 'model-based']
    """
    if not isinstance(small_area, (FayHerriotEstimate, UnitLevelEstimate)):
        raise SatsampleError(f"small_area must be a FayHerriotEstimate or UnitLevelEstimate, got "
                             f"{type(small_area).__name__}")
    if hasattr(table, "to_frame") and not isinstance(table, pd.DataFrame):
        table = table.to_frame()
    if not isinstance(table, pd.DataFrame):
        raise SatsampleError(f"table must be a DataFrame, got {type(table).__name__}")
    area = small_area.area if area is None else area
    check_columns(table, [area, "estimate", "se"], role="model_based_table")
    if "status" in table.columns:
        replace = (table["status"] == "suppress").to_numpy()
    elif min_n is not None and "n" in table.columns:
        replace = (pd.to_numeric(table["n"], errors="coerce").fillna(0) < min_n).to_numpy()
    else:
        raise SatsampleError("model_based_table needs a 'status' column (publication_flags) or "
                             "an 'n' column with min_n to know which rows to replace")
    # areas are matched on their text, as small_area_estimates matches the estimates with
    # area_data (an agency 7 in one table is agency "7" in the other)
    fitted = small_area.table
    model = fitted.set_index(fitted[small_area.area].astype(str).rename("_key"))
    keys = table[area]
    text_keys = keys.astype(str)
    known = text_keys.isin(model.index).to_numpy()
    sampled = model.index[fitted["in_sample"].to_numpy()]
    if len(table) and len(sampled) and not known.any():
        raise SatsampleError(
            f"no area of the fit ({_show(sampled)}) is in column {area!r} of the table "
            f"({_show(keys.unique())}): are they the same areas, labelled the same way?"
        )
    replace = replace & known
    out = table.copy()
    out["direct_estimate"] = out["estimate"]
    out["direct_se"] = out["se"]
    for col in ("ci_low", "ci_high"):
        if col not in out.columns:
            out[col] = np.nan
    idx = text_keys[replace]
    out.loc[replace, "estimate"] = model.loc[idx, "estimate"].to_numpy()
    out.loc[replace, "se"] = model.loc[idx, "rmse"].to_numpy()
    out.loc[replace, "ci_low"] = model.loc[idx, "ci_low"].to_numpy()
    out.loc[replace, "ci_high"] = model.loc[idx, "ci_high"].to_numpy()
    statement = small_area.model
    out["source"] = np.where(replace, "model-based", "direct")
    out["model"] = np.where(replace, statement, "")
    if "status" in out.columns:
        out.loc[replace, "status"] = "model-based"
    if include_unsampled:
        extra = model.loc[~model.index.isin(text_keys)].reset_index(drop=True)
        if len(extra):
            labels = extra[small_area.area]
            if pd.api.types.is_numeric_dtype(keys.dtype) and not pd.api.types.is_numeric_dtype(
                    labels.dtype):
                # the table codes areas as numbers, the fit as text: append them as numbers
                as_num = pd.to_numeric(labels, errors="coerce")
                if as_num.notna().all():
                    labels = as_num.astype(keys.dtype)
            add = pd.DataFrame({
                area: labels.to_numpy(),
                "estimate": extra["estimate"].to_numpy(),
                "se": extra["rmse"].to_numpy(),
                "ci_low": extra["ci_low"].to_numpy(),
                "ci_high": extra["ci_high"].to_numpy(),
                "direct_estimate": extra["direct"].to_numpy(),
                "direct_se": np.where(extra["in_sample"], extra["direct_se"], np.nan),
                "source": "model-based",
                "model": statement,
            })
            if "n" in out.columns:
                add["n"] = 0
            if "status" in out.columns:
                add["status"] = "model-based"
            if "reason" in out.columns:
                add["reason"] = "no respondent"
            out = pd.concat([out, add], ignore_index=True)
    out.attrs = dict(table.attrs)
    out.attrs["model"] = statement
    return out
