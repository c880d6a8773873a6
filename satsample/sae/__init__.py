"""Small-area estimation: model-based estimates for agencies with few respondents.

The area-level Fay-Herriot model (:func:`fay_herriot`, :func:`small_area_estimates`) borrows
strength from agency covariates to give every agency an estimate with an honest mean
squared error; the unit-level Battese-Harter-Fuller model (:func:`battese_harter_fuller`,
fitted with statsmodels' mixed models) uses respondent-level covariates whose population
means are known from the frame; the results are labelled "model-based" wherever they are published
(:func:`model_based_table`).  See the documentation page "Small-area estimation".
matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from .area_level import FayHerriotEstimate, fay_herriot, small_area_estimates
from .plots import plot_residuals_qq, plot_shrinkage, plot_small_area
from .publication import model_based_table
from .unit_level import UnitLevelEstimate, battese_harter_fuller
from .variances import smooth_variances

__all__ = [
    "FayHerriotEstimate",
    "UnitLevelEstimate",
    "battese_harter_fuller",
    "fay_herriot",
    "model_based_table",
    "plot_residuals_qq",
    "plot_shrinkage",
    "plot_small_area",
    "small_area_estimates",
    "smooth_variances",
]
