"""``satisfaction_index_dask``: the former Dask entry point, a deprecated alias of the backend.

It equals

.. code-block:: python

    design = survey_design(ddf, strata=strata, ids=psu, weights=weights, lonely_psu=lonely_psu)
    satisfaction_index(bootstrap(design, n_replicates=R, rng=rng, mse=mse), questionnaire, by=by)

and will be removed in the next release.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from .._compat import renamed_keywords
from .._random import RNGLike
from .._validation import SatsampleError, check_choice
from ..questionnaire import Questionnaire
from ..results import IndexEstimate

__all__ = ["satisfaction_index_dask"]


@renamed_keywords(replicates="n_replicates")
def satisfaction_index_dask(
    ddf: Any,
    questionnaire: Questionnaire,
    *,
    strata: str,
    weights: str,
    by: str | Sequence[str] | None = None,
    psu: str | None = None,
    n_replicates: int = 500,
    rng: RNGLike = None,
    mse: bool = False,
    measure: Literal["satisfied", "mean_score", "top_two_box"] = "satisfied",
    level: float = 0.95,
    ci_method: Literal["mean", "logit", "likelihood", "asin", "beta", "xlogit", "wilson"] = "mean",
    deff: Literal["srswor", "srswr"] | None = "srswor",
    lonely_psu: Literal["fail", "remove", "certainty", "adjust", "average"] = "fail",
) -> IndexEstimate:
    """Satisfaction index with Rao-Wu bootstrap SEs on a Dask DataFrame (deprecated alias).

    Deprecated: declare the design with :func:`satsample.survey_design` (which
    accepts a Dask DataFrame; ``psu`` is its ``ids``), add replicates with
    :func:`satsample.bootstrap` and call :func:`satsample.satisfaction_index`:
    the same numbers, and weighting, Taylor variance and the other estimators
    become available.  ``deff=None`` now only blanks the design effects (they
    are computed in the same pass as the moments).

    Returns
    -------
    IndexEstimate

    Examples
    --------
    >>> import satsample as ss  # doctest: +SKIP
    >>> design = ss.bootstrap(ss.survey_design(ddf, strata="agency_id", weights="w"),
    ...                       n_replicates=500, rng=1)  # doctest: +SKIP
    >>> ss.satisfaction_index(design, questionnaire, by="agency_id")  # doctest: +SKIP
    """
    from ..design import survey_design
    from ..estimation.index import satisfaction_index
    from ..replicate.bootstrap import bootstrap
    from .design import is_dask_frame

    warnings.warn(
        "satisfaction_index_dask is deprecated and will be removed in the next release: use "
        "satisfaction_index(bootstrap(survey_design(ddf, strata=..., ids=psu, weights=...), "
        "n_replicates=..., rng=...), questionnaire, by=...)",
        DeprecationWarning, stacklevel=3)
    if not is_dask_frame(ddf):
        raise SatsampleError(f"ddf must be a dask.dataframe.DataFrame, got {type(ddf).__name__}")
    if deff is not None:
        check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    design = survey_design(ddf, strata=strata, ids=psu, weights=weights, lonely_psu=lonely_psu)
    design = bootstrap(design, n_replicates=n_replicates, rng=rng, mse=mse)
    res = satisfaction_index(design, questionnaire, by=by, measure=measure, level=level,
                             ci_method=ci_method, deff=deff or "srswor")
    if deff is not None:
        return res
    return replace(res, overall=res.overall.assign(deff=np.nan),
                   elements=res.elements.assign(deff=np.nan),
                   items=res.items.assign(deff=np.nan), options={**res.options, "deff": None})
