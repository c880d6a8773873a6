"""The survey design: one object that records how the sample was drawn (R's ``svydesign``).

* :mod:`.objects` -- :class:`SurveyDesign`, :class:`Stage`, :class:`WeightStep`,
  :class:`ReplicateWeights` (frozen);
* :mod:`.build` -- :func:`survey_design` (validation, codes, nesting, fpc, lonely PSUs).

Replicate schemes live in :mod:`satsample.replicate`, weighting steps in
:mod:`satsample.weighting`, estimators in :mod:`satsample.estimation`.
"""

from .build import check_design_weights, nested_codes, survey_design
from .objects import (
    LONELY_PSU_RULES,
    LonelyPSU,
    ReplicateWeights,
    Residualizer,
    Stage,
    SurveyDesign,
    WeightStep,
)

__all__ = [
    "LONELY_PSU_RULES",
    "LonelyPSU",
    "ReplicateWeights",
    "Residualizer",
    "Stage",
    "SurveyDesign",
    "WeightStep",
    "check_design_weights",
    "nested_codes",
    "survey_design",
]
