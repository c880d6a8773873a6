"""Running a real year's survey from its files: configuration, readers, dispositions, checks.

The subpackage is the file-driven layer on top of the estimation API.  Each module has
one job:

* :mod:`~satsample.survey.config` -- the TOML configuration of a survey year: schema,
  defaults and validation (errors name the key and the allowed values);
* :mod:`~satsample.survey.io` -- readers for CSV, Excel, Parquet, SPSS ``.sav`` and Stata
  ``.dta`` files, value-label mapping, safe writers (no spreadsheet formulas from data);
* :mod:`~satsample.survey.dispositions` -- AAPOR final disposition classes and outcome
  rates (RR1-RR6, COOP1-COOP4, REF1-REF3, CON1-CON3);
* :mod:`~satsample.survey.quality` -- the data-quality checks of ``satsample validate``;
* :mod:`~satsample.survey.pipeline` -- the ``plan``, ``validate`` and ``run`` steps.

The command line (:mod:`satsample.cli`) calls :func:`plan`, :func:`validate` and
:func:`run`; Python code can call them too.
"""

from __future__ import annotations

from .config import SurveyConfig, load_config
from .dispositions import CLASSES, classify_dispositions, outcome_rates
from .errors import ConfigError, DataError, OutputError
from .pipeline import plan, run, validate

__all__ = [
    "CLASSES",
    "ConfigError",
    "DataError",
    "OutputError",
    "SurveyConfig",
    "classify_dispositions",
    "load_config",
    "outcome_rates",
    "plan",
    "run",
    "validate",
]
