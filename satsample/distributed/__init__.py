"""Dask as a backend of the same engine: designs, weighting and estimators on data larger than one machine.

Optional extra: ``pip install "satsample[dask]"``.  :func:`satsample.survey_design`
given a Dask DataFrame returns a :class:`DaskSurveyDesign`; the estimators
(``total``, ``mean``, ``ratio``, ``proportion``, ``satisfaction_index``) accept
it and return the same result objects as in memory, with
``options["engine"] = "dask"``.

"Partitions are designs": every pass over the data turns each partition (whole
strata, shuffled once by stratum if needed) into an in-memory design with the
global codes of the whole sample (:func:`partition_design`), runs the
in-memory engine's per-row work on it, and adds the partitions' small results
(:func:`reduce`).  :func:`with_weight_factors` gives a new design with new
analysis weights computed partition by partition (the weighting steps).
"""

from ._legacy import satisfaction_index_dask
from ._reduce import add_results, reduce
from .design import DaskSurveyDesign, partition_design, with_weight_factors

__all__ = [
    "DaskSurveyDesign",
    "add_results",
    "partition_design",
    "reduce",
    "satisfaction_index_dask",
    "with_weight_factors",
]
