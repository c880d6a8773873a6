"""Weighting: nonresponse adjustment, post-stratification, raking, calibration, trimming.

Every step takes a :class:`~satsample.design.SurveyDesign` and returns a new
one (the input is never modified) with new analysis weights, one more
:class:`~satsample.design.WeightStep` in ``design.history`` and, when the step
changes the Taylor variance of estimators, a residualizer in
``design.calibrations`` (R ``survey``'s rules).  When the design carries
materialised replicate weights, the same step is applied to every replicate,
so replicate standard errors include the weighting.
"""

from __future__ import annotations

from .calibrate import (
    LINEAR,
    LOGIT,
    RAKING,
    CalibrationDistance,
    GregResidualizer,
    calibrate,
    make_distance,
)
from .controls import (
    ModelMatrix,
    margins_from_table,
    model_matrix,
    totals_from_margins,
    totals_vector,
)
from .diagnostics import calibration_check, weight_summary
from .nonresponse import adjust_nonresponse, response_propensity
from .poststratify import PostStratResidualizer, poststratify
from .rake import RakeResidualizer, rake
from .trim import trim

__all__ = [
    "LINEAR",
    "LOGIT",
    "RAKING",
    "CalibrationDistance",
    "GregResidualizer",
    "ModelMatrix",
    "PostStratResidualizer",
    "RakeResidualizer",
    "adjust_nonresponse",
    "calibrate",
    "calibration_check",
    "make_distance",
    "margins_from_table",
    "model_matrix",
    "poststratify",
    "rake",
    "response_propensity",
    "totals_from_margins",
    "totals_vector",
    "trim",
    "weight_summary",
]
