"""Weighting: nonresponse adjustment, post-stratification, raking, calibration, trimming.

Every step takes a :class:`~satsample.design.SurveyDesign` and returns a new
one (the input is never modified) with new analysis weights, one more
:class:`~satsample.design.WeightStep` in ``design.history`` and, when the step
changes the Taylor variance of estimators, a residualizer in
``design.calibrations`` (R ``survey``'s rules).  When the design carries
materialised replicate weights, the same step is applied to every replicate,
so replicate standard errors include the weighting.  When the replicates are
generated on the fly (``replicates.weights is None``), the step is recorded in
``replicates.steps`` as a replay object (:class:`NonresponseStep`,
:class:`PostStratifyStep`, :class:`RakeStep`, :class:`CalibrationStep`,
:class:`TrimStep`) whose ``apply(block, replicate_index)`` does the same
computation on a block of replicate weights.
"""

from __future__ import annotations

from .calibrate import (
    LINEAR,
    LOGIT,
    RAKING,
    CalibrationDistance,
    CalibrationStep,
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
from .nonresponse import NonresponseStep, adjust_nonresponse, response_propensity
from .poststratify import PostStratifyStep, PostStratResidualizer, poststratify
from .rake import RakeResidualizer, RakeStep, rake
from .trim import TrimStep, trim

__all__ = [
    "LINEAR",
    "LOGIT",
    "RAKING",
    "CalibrationDistance",
    "CalibrationStep",
    "GregResidualizer",
    "ModelMatrix",
    "NonresponseStep",
    "PostStratResidualizer",
    "PostStratifyStep",
    "RakeResidualizer",
    "RakeStep",
    "TrimStep",
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
