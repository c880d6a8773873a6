"""Small-area estimation: model-based estimates for agencies with few respondents.

The area-level Fay-Herriot model (:func:`fay_herriot`, :func:`small_area_estimates`) borrows
strength from agency covariates to give every agency an estimate with an honest mean
squared error; the results are labelled "model-based" wherever they are published
(:func:`model_based_table`).  See the documentation page "Small-area estimation".
matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from .fay_herriot import FayHerriotEstimate, fay_herriot, small_area_estimates
from .plots import plot_residuals_qq, plot_shrinkage, plot_small_area
from .publication import model_based_table
from .variances import smooth_variances

__all__ = [
    "FayHerriotEstimate",
    "fay_herriot",
    "model_based_table",
    "plot_residuals_qq",
    "plot_shrinkage",
    "plot_small_area",
    "small_area_estimates",
    "smooth_variances",
]
