"""The ``[small_area]`` step of ``satsample run``: model-based estimates for small agencies.

Agencies with fewer respondents than ``small_area.min_n`` (default ``flags.min_n``) are
published with the Fay-Herriot EBLUP of their overall index (:func:`satsample.sae.
small_area_estimates`) and its root MSE, labelled ``"model-based"`` (status, ``source`` and
``model`` columns); every other agency keeps its direct estimate.  The covariates are
agency-level values known for every agency: columns of a covariate file
(``small_area.file``, e.g. last year's index), frame columns constant within an agency (the
tier), means of numeric frame columns, or shares ``"column:level"`` of the agency's frame
users (e.g. ``"channel:online"``).

Nothing is dropped silently: an agency with a missing covariate is left out of the fit and,
when it is below the minimum, stays unpublished with that reason; an agency without a
respondent gets the synthetic estimate :math:`x_d'\\hat\\beta` (status ``"model-based"``,
``n = 0``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError, SatsampleWarning
from .config import SurveyConfig
from .errors import ConfigError, DataError
from .io import normalise_ids, read_table, require_columns, rows_text

__all__ = ["SmallAreaStep", "agency_covariates", "apply_small_area"]

#: Column of the agency table holding the number of frame users (finite-population correction
#: of the smoothed sampling variances).
POPULATION = "frame_users"


@dataclass(frozen=True, kw_only=True, eq=False)
class SmallAreaStep:
    """What the small-area step did: the fit and the agencies it concerned.

    Attributes
    ----------
    fit : FayHerriotEstimate
        The Fay-Herriot fit (its ``table`` holds the direct estimates: not for publication).
    min_n : int
        Agencies with fewer respondents were given the model-based estimate.
    covariates : tuple of str
        The covariates as written in the configuration.
    model_based : tuple of str
        Agencies published with the model-based estimate (EBLUP or synthetic).
    synthetic : tuple of str
        Those among them without any respondent (synthetic estimate).
    no_covariates : Mapping[str, tuple[str, ...]]
        Agency -> covariates it is missing: left out of the model.
    notes : tuple of str
        Warnings of the fit (e.g. sigma2_v at its boundary 0).
    """

    fit: Any
    min_n: int
    covariates: tuple[str, ...]
    model_based: tuple[str, ...]
    synthetic: tuple[str, ...]
    no_covariates: Mapping[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        """A JSON-ready record of the step (written to ``run.json``)."""
        fit = self.fit
        return {
            "model": fit.model, "method": fit.method, "sigma2_v": fit.sigma2_v,
            "boundary": fit.boundary, "mse": fit.mse_method, "covariates": list(self.covariates),
            "coefficients": fit.coefficients[["term", "estimate", "se"]].to_dict("records"),
            "sampling_variances": dict(fit.sampling_variances), "min_n": self.min_n,
            "model_based": list(self.model_based), "synthetic": list(self.synthetic),
            "no_covariates": {k: list(v) for k, v in self.no_covariates.items()},
            "notes": list(self.notes),
        }


def _numeric(s: pd.Series, *, what: str) -> pd.Series | None:
    """The column as numbers when every non-missing value is one (files read as text).

    None for a text column; a column mixing numbers and text (``"n/a"`` in last year's
    index) is a :class:`DataError` naming the value, not a factor with one level per agency.
    """
    if pd.api.types.is_bool_dtype(s.dtype):
        return None
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype(float)
    num = pd.to_numeric(s, errors="coerce")
    bad = (num.isna() & s.notna()).to_numpy()
    if not bad.any():
        return num.astype(float)
    if bad.all() or not num.notna().any():
        return None
    raise DataError(f"{what}, column {s.name!r}: value {s[bad].iloc[0]!r} is not a number "
                    f"while {int(num.notna().sum())} other values are ({int(bad.sum())} such "
                    "value(s)); leave a missing value empty")


def _read_covariate_file(cfg: SurveyConfig, agencies: pd.Index) -> pd.DataFrame | None:
    path = cfg["small_area"]["file"]
    if path is None:
        return None
    agency = cfg["frame"]["agency"]
    df, _ = read_table(path, what="small-area covariate file")
    name = Path(path).name
    require_columns(df, {"frame.agency": agency}, what="small-area covariate file", file=name)
    keys = normalise_ids(df[agency])
    miss = keys.isna().to_numpy()
    if miss.any():
        raise DataError(f"small-area covariate file {name!r}, column {agency!r}: "
                        f"{int(miss.sum())} empty agency value(s) "
                        f"({rows_text(df.loc[miss, '_row'])})")
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        first = keys[dup].iloc[0]
        raise DataError(f"small-area covariate file {name!r}, column {agency!r}: agency "
                        f"{first!r} appears more than once "
                        f"({rows_text(df.loc[(keys == first).to_numpy(), '_row'])})")
    unknown = ~keys.isin(agencies)
    if unknown.any():
        raise DataError(f"small-area covariate file {name!r}, column {agency!r}: agency "
                        f"{keys[unknown].iloc[0]!r} is not in the frame "
                        f"({rows_text(df.loc[unknown.to_numpy(), '_row'])})")
    out = df.drop(columns=[c for c in ("_file", "_row") if c in df.columns])
    return out.set_index(keys.to_numpy()).drop(columns=agency)


def agency_covariates(cfg: SurveyConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per agency of the frame: its covariates and the number of its frame users.

    Parameters
    ----------
    cfg : SurveyConfig
        The configuration (``[small_area]`` and ``[frame]``).
    frame : pandas.DataFrame
        The frame as read by ``satsample run`` (agency codes as text).

    Returns
    -------
    pandas.DataFrame
        Index: the agency codes (text); one column per entry of ``small_area.covariates``
        (named as written there; NaN where the value is missing) and ``frame_users``.

    Raises
    ------
    ConfigError
        A covariate that is neither a column of the covariate file nor of the frame, a
        text frame column that varies within agencies (use ``"column:level"``), a level
        that no frame user has.
    DataError
        A bad covariate file (missing agency column, an agency twice or not in the frame).
    """
    sa, fr = cfg["small_area"], cfg["frame"]
    agency = fr["agency"]
    if POPULATION in sa["covariates"]:
        raise ConfigError(f"key small_area.covariates: {POPULATION!r} is the name satsample "
                          "gives the number of frame users of each agency; rename the column")
    keys = frame[agency].astype(str)
    counts = keys.value_counts(sort=False)
    order = pd.Index(pd.unique(keys), name=agency)
    out = pd.DataFrame(index=order)
    out[POPULATION] = counts.reindex(order).to_numpy(dtype=float)
    file = _read_covariate_file(cfg, order)
    where = "the frame" + (f" nor of small-area file {Path(sa['file']).name!r}"
                           if file is not None else "")
    for spec in sa["covariates"]:
        if file is not None and spec in file.columns:
            col = file[spec].reindex(order)
            num = _numeric(col, what=f"small-area covariate file {Path(sa['file']).name!r}")
            out[spec] = num if num is not None else col.astype(object)
            continue
        name, sep, level = spec.partition(":")
        if sep:
            if name not in frame.columns:
                raise ConfigError(f"key small_area.covariates: {spec!r}: column {name!r} is not "
                                  f"a column of {where}")
            text = frame[name].astype(str).where(frame[name].notna())
            levels = sorted(set(text.dropna()))
            if level not in levels:
                raise ConfigError(f"key small_area.covariates: {spec!r}: no frame user has "
                                  f"{name} = {level!r}; levels: "
                                  f"{', '.join(map(repr, levels[:10]))}")
            share = (text == level).groupby(keys, sort=False).mean()
            out[spec] = share.reindex(order).to_numpy(dtype=float)
            continue
        if spec not in frame.columns:
            raise ConfigError(f"key small_area.covariates: {spec!r} is not a column of {where}")
        col = frame[spec]
        num = _numeric(col, what="frame")
        if num is not None:
            out[spec] = num.groupby(keys, sort=False).mean().reindex(order).to_numpy()
            continue
        text = col.astype(str).where(col.notna())
        varies = text.groupby(keys, sort=False).nunique()
        if (varies > 1).any():
            levels = sorted(set(text.dropna()))
            raise ConfigError(
                f"key small_area.covariates: frame column {spec!r} varies within agencies "
                f"(agency {varies.index[(varies > 1).to_numpy()][0]!r}); a covariate is one "
                f"value per agency: write \"{spec}:<level>\" for the share of the agency's "
                f"users at a level (levels: {', '.join(map(repr, levels[:10]))})"
            )
        out[spec] = text.groupby(keys, sort=False).first().reindex(order).astype(object)
    return out


def apply_small_area(cfg: SurveyConfig, estimate: Any, frame: pd.DataFrame,
                     rng: Any) -> tuple[Any, SmallAreaStep]:
    """Replace the overall index of agencies below ``min_n`` by its Fay-Herriot EBLUP.

    Parameters
    ----------
    cfg : SurveyConfig
    estimate : IndexEstimate
        The flagged index by agency (``by`` = ``frame.agency``).
    frame : pandas.DataFrame
    rng : SeedSequence
        Randomness of the parametric bootstrap (``mse = "bootstrap"``).

    Returns
    -------
    estimate : IndexEstimate
        A new estimate whose ``overall`` rows of the agencies below the minimum carry the
        model-based estimate, its root MSE as ``se``, the interval estimate ± z·RMSE,
        status and ``source`` ``"model-based"`` and the model statement in ``model``
        (empty on direct rows); ``df``, ``deff`` and ``effective_n`` (properties of the
        direct estimator) are NaN on those rows.  Elements and items are unchanged.
    step : SmallAreaStep
    """
    from ..sae import small_area_estimates

    sa, fr = cfg["small_area"], cfg["frame"]
    agency = fr["agency"]
    min_n = int(sa["min_n"] if sa["min_n"] is not None else cfg["flags"]["min_n"])
    covs = list(sa["covariates"])
    area = agency_covariates(cfg, frame)
    missing = area[covs].isna()
    complete = ~missing.any(axis=1).to_numpy()
    no_cov = {str(a): tuple(c for c in covs if missing.loc[a, c])
              for a in area.index[~complete]}
    if not complete.any():
        raise DataError("small_area: no agency has every covariate "
                        f"({', '.join(covs)}); the model cannot be fitted")
    ov = estimate.overall
    keys = ov[agency].astype(str)
    direct = ov.loc[keys.isin(area.index[complete]).to_numpy(), [agency, "estimate", "se", "n"]]
    direct = direct.assign(**{agency: direct[agency].astype(str)})
    data = area.loc[complete].rename_axis(agency).reset_index()
    deff = float(sa["deff"] if sa["deff"] is not None else cfg["design"]["deff"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SatsampleWarning)
        try:
            fit = small_area_estimates(
                direct, data, area=agency, covariates=covs, variances=sa["variance"],
                population_size=POPULATION, deff=deff, method=sa["method"], mse=sa["mse"],
                n_replicates=sa["replicates"], rng=rng, level=cfg["variance"]["level"])
        except SatsampleError as exc:
            raise DataError(f"small_area: the Fay-Herriot model cannot be fitted: {exc}") from None
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, SatsampleWarning))
    for w in caught:  # warnings of other libraries keep their way to the user
        if not issubclass(w.category, SatsampleWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    tab = fit.table.set_index(fit.table[agency].astype(str))
    n = pd.to_numeric(ov["n"], errors="coerce").fillna(0).to_numpy()
    below = n < min_n
    modelled = below & keys.isin(tab.index).to_numpy()
    out = ov.copy()
    rows = keys[modelled].to_numpy()
    out.loc[modelled, "estimate"] = tab.loc[rows, "estimate"].to_numpy()
    out.loc[modelled, "se"] = tab.loc[rows, "rmse"].to_numpy()
    out.loc[modelled, "ci_low"] = tab.loc[rows, "ci_low"].to_numpy()
    out.loc[modelled, "ci_high"] = tab.loc[rows, "ci_high"].to_numpy()
    for c in ("df", "deff", "effective_n"):
        if c in out.columns:
            out.loc[modelled, c] = np.nan
    if "rse" in out.columns:
        out.loc[modelled, "rse"] = (out.loc[modelled, "se"] / out.loc[modelled, "estimate"].abs())
    out["status"] = out["status"].astype(object)
    out.loc[modelled, "status"] = "model-based"
    out["source"] = out["source"].astype(object).where(~modelled, "model-based")
    kind = tab["method"].reindex(keys.to_numpy()).to_numpy()
    out["model"] = np.where(modelled, [f"{k}: {fit.model}" for k in kind], "")
    # an agency below the minimum that the model could not cover says why
    uncovered = below & ~modelled & (out["status"] == "suppress").to_numpy()
    if uncovered.any():
        reason = out["reason"].astype(object).fillna("").to_numpy().copy()
        for i in np.flatnonzero(uncovered):
            lack = no_cov.get(keys.iloc[i], ())
            why = (f"missing covariate(s) {', '.join(lack)}" if lack
                   else "no row in the small-area model")
            reason[i] = "; ".join(filter(None, [reason[i], f"no model-based estimate: {why}"]))
        out["reason"] = reason
    options = dict(getattr(estimate, "options", {}) or {})
    options["small_area"] = fit.model
    new = dataclasses.replace(estimate, overall=out, options=options)
    synthetic = tuple(a for a in rows if not bool(tab.loc[a, "in_sample"]))
    step = SmallAreaStep(fit=fit, min_n=min_n, covariates=tuple(covs),
                         model_based=tuple(str(a) for a in rows), synthetic=synthetic,
                         no_covariates=MappingProxyType(no_cov), notes=notes)
    return new, step
