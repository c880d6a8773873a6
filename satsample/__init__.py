"""satsample: design, weighting and estimation for surveys of satisfaction with public services.

The public API is re-exported here.  Submodules are imported on first use
(PEP 562 ``__getattr__``), so ``import satsample`` stays light: matplotlib,
scikit-learn and the Numba kernels load only when a function needs them.
"""

import importlib as _importlib

from ._version import __version__

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors and warnings
    "SatsampleError": "_validation",
    "DesignError": "_validation",
    "ConvergenceError": "_validation",
    "SatsampleWarning": "_validation",
    "ConvergenceWarning": "_validation",
    "SmallDomainWarning": "_validation",
    # questionnaires and synthetic data
    "Element": "questionnaire",
    "Questionnaire": "questionnaire",
    "load_questionnaire": "questionnaire",
    "available_questionnaires": "questionnaire",
    "Population": "datasets",
    "PopulationTruth": "datasets",
    "make_population": "datasets",
    "simulate_responses": "datasets",
    # design stage
    "SampleSize": "samplesize",
    "sample_size_proportion": "samplesize",
    "sample_size_mean": "samplesize",
    "domain_sample_sizes": "samplesize",
    "yamane": "samplesize",
    "Allocation": "allocation",
    "allocate": "allocation",
    "allocate_for_precision": "allocation",
    "round_allocation": "allocation",
    "SelectedSample": "selection",
    "SelectionRecord": "selection",
    "Stage": "selection",
    "inclusion_probabilities": "selection",
    "select": "selection",
    "select_multistage": "selection",
    "release_reserves": "selection",
    "use_reserves": "selection",
    # the design object
    "SurveyDesign": "design",
    "ReplicateWeights": "design",
    "WeightStep": "design",
    "survey_design": "design",
    # weighting
    "adjust_nonresponse": "weighting",
    "poststratify": "weighting",
    "rake": "weighting",
    "calibrate": "weighting",
    "make_distance": "weighting",
    "CalibrationDistance": "weighting",
    "trim": "weighting",
    "weight_summary": "weighting",
    "calibration_check": "weighting",
    "totals_from_margins": "weighting",
    # estimation
    "total": "estimation",
    "mean": "estimation",
    "ratio": "estimation",
    "proportion": "estimation",
    "quantile": "estimation",
    "QuantileEstimate": "estimation",
    "contrast": "estimation",
    "with_replicates": "estimation",
    # index
    "satisfaction_index": "estimation",
    # replicate
    "jackknife": "replicate",
    "brr": "replicate",
    "bootstrap": "replicate",
    "declare_replicates": "replicate",
    # intervals
    "confidence_interval": "intervals",
    "CI_METHODS": "intervals",
    # results
    "Estimate": "results",
    "IndexEstimate": "results",
    "Summary": "results",
    # ranking
    "league_table": "outputs.ranking",
    "rank_intervals": "outputs.ranking",
    "LeagueTable": "outputs.ranking",
    # change
    "change": "outputs.change",
    "map_items": "outputs.change",
    "ItemMapping": "outputs.change",
    "Change": "outputs.change",
    "SIPAS_2017_2022_ITEMS": "outputs.change",
    # flags
    "publication_flags": "outputs.flags",
    "flag_estimate": "outputs.flags",
    # plotting
    "plot_index": "outputs.plotting",
    "plot_agency_index": "outputs.plotting",
    "plot_element_heatmap": "outputs.plotting",
    "plot_change": "outputs.plotting",
    "plot_response_rates": "outputs.plotting",
    "plot_ranks": "outputs.plotting",
    "plot_weights": "outputs.plotting",
    "plot_allocation": "outputs.plotting",
    # report
    "build_report": "outputs.report",
    # small-area estimation
    "FayHerriotEstimate": "sae",
    "fay_herriot": "sae",
    "small_area_estimates": "sae",
    "smooth_variances": "sae",
    "model_based_table": "sae",
    "plot_residuals_qq": "sae",
    "plot_shrinkage": "sae",
    "plot_small_area": "sae",
    "battese_harter_fuller": "sae",
    "UnitLevelEstimate": "sae",
    # scale-out (needs the optional dask extra when called)
    "satisfaction_index_dask": "distributed",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'satsample' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (what ``__all__`` lists)."""
    return list(__all__)
