"""Case C of tests/reference (R survey's postStratify, rake and calibrate) shared by the tests.

``controls()`` reads the three control tables; ``weighted(method, design, controls)`` applies
one of the case's weighting steps by name, as tests/test_weighting_reference.py checks them
against R.  The test modules that replay these steps (on lazy replicates, cell tables, Dask)
import both from here, so every module runs the same step for the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from satsample.weighting import calibrate, poststratify, rake

REF = Path(__file__).resolve().parent / "reference"
VARS = ["sex", "age_group", "channel"]  # the calibration variables (calib_totals.csv)
BOUNDS = {"0.5_2": (0.5, 2.0), "0.4_2.5": (0.4, 2.5), "0.8_1.25": (0.8, 1.25)}


def controls() -> dict[str, pd.DataFrame]:
    """Case C's control tables: population cells of sex x age, raking margins, totals."""
    return {
        "cells": pd.read_csv(REF / "data" / "controls_sex_age.csv"),
        "margins": pd.read_csv(REF / "data" / "margins.csv"),
        "totals": pd.read_csv(REF / "data" / "calib_totals.csv"),
    }


def weighted(method: str, design: Any, controls: dict[str, Any], *,
             tolerant_replicates: bool = False) -> Any:
    """Apply case C's weighting step ``method`` to ``design``.

    ``method`` is ``"none"``, ``"poststratify"``, ``"rake_default"``, ``"rake_tight"``,
    ``"calibrate_linear"``, ``"calibrate_raking"`` or ``"calibrate_<linear|logit>_bounded_<lo>_<hi>"``
    with ``<lo>_<hi>`` a key of :data:`BOUNDS`.  ``tolerant_replicates=True`` keeps the
    replicates that cannot meet the bounds (``on_nonconvergence="warn"``, R's ``force=TRUE``);
    the default raises, as the ordinary step does.
    """
    if method == "none":
        return design
    if method == "poststratify":
        return poststratify(design, ["sex", "age_group"], controls["cells"])
    if method == "rake_default":
        return rake(design, controls["margins"])
    if method == "rake_tight":
        return rake(design, controls["margins"], max_iter=1000, epsilon=1e-13)
    if method == "calibrate_linear":
        return calibrate(design, controls["totals"], variables=VARS)
    if method == "calibrate_raking":
        return calibrate(design, controls["totals"], variables=VARS, distance="raking",
                         epsilon=1e-13, max_iter=100)
    distance, bounded, bounds = method.removeprefix("calibrate_").partition("_bounded_")
    if not method.startswith("calibrate_") or not bounded or distance not in ("linear", "logit"):
        raise ValueError(f"not a case C weighting step: {method!r}")
    options = {"on_nonconvergence": "warn"} if tolerant_replicates else {}
    return calibrate(design, controls["totals"], variables=VARS, distance=distance,
                     bounds=BOUNDS[bounds], epsilon=1e-13, max_iter=200, **options)
