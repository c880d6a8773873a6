"""The configuration of one survey year: a TOML file, its schema and its validation.

One file per survey year names the frame, the questionnaire, the design, the field files,
the disposition codes, the data-quality rules, the weighting steps in order, the variance
method, the domains and the outputs.  :func:`load_config` reads it with :mod:`tomllib`,
checks every key against :data:`SCHEMA` (unknown keys, wrong types and values outside the
allowed set raise :class:`~satsample.survey.errors.ConfigError` naming the key and what is
allowed) and fills the defaults.  Relative paths are resolved against the folder of the
configuration file, so a survey folder can be moved as a whole.

Every key is documented in ``docs/your_own_survey.md`` (a test checks that the page names
each key of :data:`SCHEMA`).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

__all__ = ["DISPOSITION_CLASSES", "SCHEMA", "STEP_SCHEMA", "Key", "SurveyConfig", "load_config"]

#: AAPOR disposition classes (see :mod:`satsample.survey.dispositions`).
DISPOSITION_CLASSES: tuple[str, ...] = ("I", "P", "R", "NC", "O", "UH", "UO", "NE")

_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, allowed values and meaning."""

    kind: str
    default: Any = None
    allowed: tuple[Any, ...] | None = None
    doc: str = ""
    low: float | None = None
    high: float | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _k(kind: str, default: Any = None, doc: str = "", *, allowed: tuple[Any, ...] | None = None,
       low: float | None = None, high: float | None = None) -> Key:
    return Key(kind=kind, default=default, allowed=allowed, doc=doc, low=low, high=high)


REQ = _REQUIRED

#: section -> key -> Key.  Kinds: str, path, int, float, number, bool, list[str], table,
#: list[list[str]], responses, steps, int_or_float, e.
SCHEMA: dict[str, dict[str, Key]] = {
    "survey": {
        "name": _k("str", REQ, "Name of the survey round, shown in reports."),
        "year": _k("int", None, "Survey year (recorded in the outputs)."),
        "seed": _k("int", REQ, "Seed of the sample draw and of the replicates.", low=0),
    },
    "frame": {
        "file": _k("path", REQ, "Frame file: one row per service user."),
        "sheet": _k("str", None, "Excel sheet of the frame (default: the first)."),
        "id": _k("str", REQ, "Column with the unique id of each service user."),
        "agency": _k("str", REQ, "Column with the agency (the stratum)."),
        "agency_name": _k("str", None, "Column with the agency's name (field lists, reports)."),
        "tier": _k("str", None, "Column with the agency tier (province/district/commune)."),
        "strata": _k("str", None, "Column dividing each agency into sampling strata."),
        "size": _k("str", None, "Size measure column (needed by the PPS methods)."),
        "auxiliary": _k("list[str]", (), "Columns used for weighting and domains."),
        "contact": _k("list[str]", (), "Columns printed on the field lists (name, phone...)."),
    },
    "questionnaire": {
        "name": _k("str", None, "Built-in questionnaire (sipas_2017, sipas_2022, ...)."),
        "file": _k("path", None, "JSON questionnaire definition (instead of name)."),
        "value_labels": _k("table", {}, "Extra answer labels -> codes, e.g. \"Rất hài lòng\" = 5."),
        "blank_labels": _k("list[str]", (), "Texts read as a blank answer (e.g. \"-\")."),
    },
    "design": {
        "method": _k("str", "srswor", "Selection method within each agency.",
                     allowed=("srswor", "systematic", "pps_systematic", "pps_brewer",
                              "pps_sampford")),
        "allocation": _k("str", "precision", "Allocation rule across agencies.",
                         allowed=("precision", "proportional", "equal", "neyman", "fixed")),
        "moe": _k("float", 0.10, "Target margin of error of each agency's index (precision), "
                  "as a share on the 0-1 scale (0.10 = 10 points on the 0-100 scale).",
                  low=0.0, high=1.0),
        "p": _k("float", 0.8, "Expected satisfied share (precision, neyman).", low=0.0, high=1.0),
        "deff": _k("float", 1.0, "Expected design effect (precision).", low=0.0),
        "expected_response": _k("float", 0.7, "Expected response rate.", low=0.0, high=1.0),
        "min_respondents": _k("int", 30, "Publication minimum of respondents per agency.",
                              low=0),
        "min_effective_n": _k("float", None,
                              "Publication minimum of effective sample size per agency "
                              "(planned as min_effective_n x deff expected respondents).",
                              low=0.0),
        "n": _k("int", None, "Total sample size (proportional, equal, neyman).", low=1),
        "n_per_agency": _k("int", None, "Sample size of every agency (fixed).", low=1),
        "reserves": _k("int_or_float", 0.5,
                       "Reserve list per agency: an integer count or a share of n_h.", low=0.0),
        "level": _k("float", 0.95, "Confidence level of the margins.", low=0.0, high=1.0),
        "sort": _k("list[str]", (), "Sort order of the list for the systematic methods."),
    },
    "field": {
        "responses": _k("responses", REQ, "Returned questionnaires: [[field.responses]] files."),
        "id": _k("str", None, "Id column of the response files (default: frame.id)."),
        "disposition": _k("str", None, "Disposition column (default: derived from answers)."),
        "agency": _k("str", None, "Agency column of the response files (checked)."),
        "releases": _k("path", None, "File agency,released: reserves released per agency."),
        "columns": _k("table", {}, "Item -> column of the response files, when they differ."),
    },
    "dispositions": {
        "codes": _k("table", {}, "Office codes -> AAPOR classes or AAPOR codes."),
        "not_returned": _k("str", "UO", "Class of a sampled case with no row in the files.",
                           allowed=DISPOSITION_CLASSES),
        "e": _k("e", "proportional", "Eligible share among unknown eligibility."),
        "respondents": _k("list[str]", ("I", "P"), "Classes that count as respondents."),
        "complete_min": _k("float", 0.8, "Share of items answered for a complete.",
                           low=0.0, high=1.0),
        "partial_min": _k("float", 0.5, "Share of items answered for a partial.",
                          low=0.0, high=1.0),
    },
    "checks": {
        "straightlining_min_items": _k("int", 10, "Items answered for the straight-line check.",
                                       low=2),
        "straightlining_max_share": _k("float", 0.10, "Largest acceptable straight-line share.",
                                       low=0.0, high=1.0),
        "on_error": _k("str", "stop", "What run does with failing error checks.",
                       allowed=("stop", "resolve")),
    },
    "weighting": {
        "eligibility_classes": _k("list[str]", None,
                                  "Classes of the unknown-eligibility step (default: agency)."),
        "steps": _k("steps", (), "Weighting steps in order: [[weighting.steps]]."),
    },
    "variance": {
        "method": _k("str", "bootstrap", "Variance method.",
                     allowed=("bootstrap", "jackknife", "taylor")),
        "replicates": _k("int", 500, "Rao-Wu bootstrap replicates.", low=2),
        "level": _k("float", 0.95, "Confidence level of the intervals.", low=0.0, high=1.0),
        "ci_method": _k("str", "mean", "Interval method.",
                        allowed=("mean", "logit", "likelihood", "asin", "beta", "xlogit",
                                 "wilson")),
    },
    "estimation": {
        "measure": _k("str", "satisfied", "Per-item quantity.",
                      allowed=("satisfied", "mean_score", "top_two_box")),
        "domains": _k("list[list[str]]", None,
                      "Domain sets reported besides the whole survey (default: agency, tier)."),
        "rank_by": _k("str", None, "Domain of the league table (default: frame.agency)."),
    },
    "flags": {
        "min_n": _k("int", 30, "Suppress below this many respondents.", low=0),
        "max_rse": _k("float", 0.30, "Suppress above this relative standard error.", low=0.0),
        "min_effective_n": _k("float", 30.0, "Suppress below this effective n.", low=0.0),
        "min_df": _k("float", 8.0, "Review below these degrees of freedom.", low=0.0),
    },
    "ranking": {
        "top_k": _k("int", 5, "Size of the top list.", low=1),
        "bottom_k": _k("int", 5, "Size of the bottom list.", low=1),
        "adjust": _k("str", "holm", "Multiplicity adjustment of comparisons.",
                     allowed=("holm", "bonferroni", "none")),
    },
    "small_area": {
        "enabled": _k("bool", None, "Publish model-based (Fay-Herriot) estimates for agencies "
                      "below min_n (default: true when the section is present)."),
        "covariates": _k("list[str]", (), "Agency covariates: columns of small_area.file, "
                         "frame columns constant within an agency (e.g. the tier) or numeric "
                         "(agency mean), or \"column:level\" (share of the agency's frame "
                         "users at that level)."),
        "file": _k("path", None, "Agency covariate table: one row per agency, keyed by the "
                   "frame.agency column (e.g. last year's index)."),
        "method": _k("str", "reml", "Estimator of the area-effect variance sigma2_v.",
                     allowed=("reml", "ml", "fh", "amrl", "ampl")),
        "variance": _k("str", None, "Sampling variances psi_d of the direct estimates "
                       "(required when enabled).", allowed=("gvf", "proportion", "direct")),
        "deff": _k("float", None, "Design effect of variance = \"proportion\" "
                   "(default: design.deff).", low=0.0),
        "mse": _k("str", "analytic", "MSE of the model-based estimates.",
                  allowed=("analytic", "bootstrap")),
        "replicates": _k("int", 200, "Parametric bootstrap replicates (mse = \"bootstrap\").",
                         low=10),
        "min_n": _k("int", None, "Agencies with fewer respondents get the model-based "
                    "estimate (default: flags.min_n).", low=1),
    },
    "output": {
        "folder": _k("path", REQ, "Output folder: plan/, validation/ and results/ go here."),
        "language": _k("str", "vi", "Language of reports and field lists.", allowed=("vi", "en")),
        "scale": _k("number", 100, "Scale of published indices.", allowed=(1, 100)),
    },
}

#: Keys of the [[field.responses]] entries.
RESPONSE_SCHEMA: dict[str, Key] = {
    "file": _k("path", REQ, "A response file (.csv, .xlsx, .parquet, .sav, .dta)."),
    "sheet": _k("str", None, "Excel sheet (default: the first)."),
    "mode": _k("str", None, "Collection mode recorded for these forms (paper, online...)."),
}

#: Keys of the [[weighting.steps]] entries, per step type.
STEP_SCHEMA: dict[str, dict[str, Key]] = {
    "nonresponse": {
        "classes": _k("list[str]", None, "Weighting classes (default: agency)."),
        "method": _k("str", "classes", "Classes or propensity classes.",
                     allowed=("classes", "propensity")),
        "covariates": _k("list[str]", (), "Propensity model covariates."),
        "n_classes": _k("int", 5, "Number of propensity classes.", low=1),
    },
    "rake": {
        "margins": _k("list[str]", REQ, "Raking variables, in order."),
        "file": _k("path", None, "Margins file variable,level,Freq (default: frame counts)."),
        "rescale": _k("bool", True, "Rescale margins to the estimated eligible total."),
        "max_iter": _k("int", 50, "Maximum raking passes.", low=1),
        "epsilon": _k("float", 1e-7, "Convergence tolerance (relative when < 1).", low=0.0),
    },
    "poststratify": {
        "variables": _k("list[str]", REQ, "Post-stratification variables."),
        "file": _k("path", None, "Cell counts file (variables + Freq; default: frame)."),
        "rescale": _k("bool", True, "Rescale counts to the estimated eligible total."),
    },
    "calibrate": {
        "variables": _k("list[str]", REQ, "Calibration variables (main effects)."),
        "file": _k("path", None, "Totals file variable,level,Freq (default: frame counts)."),
        "distance": _k("str", "raking", "Calibration distance.",
                       allowed=("linear", "raking", "logit")),
        "bounds": _k("list[float]", None, "Bounds on the g-weights [low, high]."),
        "rescale": _k("bool", True, "Rescale totals to the estimated eligible total."),
        "max_iter": _k("int", 50, "Maximum iterations.", low=1),
    },
    "trim": {
        "lower": _k("float", None, "Lower bound of the weights.", low=0.0),
        "upper": _k("float", None, "Upper bound of the weights.", low=0.0),
        "relative": _k("bool", True, "Bounds are multiples of the mean weight."),
        "strict": _k("bool", False, "Repeat until no weight is outside the bounds."),
    },
}


def _type_name(v: Any) -> str:
    return {str: "text", int: "integer", float: "number", bool: "true/false", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


def _check(where: str, key: str, spec: Key, value: Any, base: Path) -> Any:
    name = f"{where}.{key}" if where else key
    kind = spec.kind

    def bad(expect: str) -> ConfigError:
        return ConfigError(f"key {name} = {value!r} ({_type_name(value)}): expected {expect}")

    if kind in ("str", "path"):
        if not isinstance(value, str) or not value.strip():
            raise bad("a non-empty text")
        if spec.allowed is not None and value not in spec.allowed:
            raise ConfigError(f"key {name} = {value!r} is not allowed; allowed values: "
                              f"{', '.join(map(repr, spec.allowed))}")
        if kind == "path":
            p = Path(value).expanduser()
            return (p if p.is_absolute() else base / p)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind in ("int", "float", "number", "int_or_float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number" if kind != "int" else "an integer")
        if kind == "int" and not isinstance(value, int):
            raise bad("an integer")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad("a finite number")
        if spec.allowed is not None and value not in spec.allowed:
            raise ConfigError(f"key {name} = {value!r} is not allowed; allowed values: "
                              f"{', '.join(map(repr, spec.allowed))}")
        lo, hi = spec.low, spec.high
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None
                   else f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            hint = (f"; a margin of error is a share on the 0-1 scale (0.10 = ±10 points on "
                    f"the 0-100 scale): write {value / 100:g} for ±{value:g} points"
                    if name == "design.moe" and value > hi else "")
            raise ConfigError(f"key {name} = {value!r} is out of range: it must be {rng}{hint}")
        if kind == "float":
            return float(value)
        return value
    if kind == "e":
        if value == "proportional":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"key {name} = {value!r}: expected \"proportional\" or a number "
                              "between 0 and 1")
        return float(value)
    if kind in ("list[str]", "list[float]"):
        if not isinstance(value, list):
            raise bad("a list, e.g. [\"a\", \"b\"]")
        out = []
        for v in value:
            if kind == "list[str]" and (not isinstance(v, str) or not v):
                raise ConfigError(f"key {name}: element {v!r} is not a non-empty text")
            if kind == "list[float]" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(f"key {name}: element {v!r} is not a number")
            out.append(v if kind == "list[str]" else float(v))
        if len(set(map(str, out))) != len(out):
            raise ConfigError(f"key {name} lists a value twice: {value!r}")
        return tuple(out)
    if kind == "list[list[str]]":
        if not isinstance(value, list):
            raise bad("a list of lists of column names, e.g. [[\"agency\"], [\"tier\"]]")
        out2 = []
        for v in value:
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not v or not all(isinstance(c, str) and c for c in v):
                raise ConfigError(f"key {name}: element {v!r} is not a list of column names")
            out2.append(tuple(v))
        return tuple(out2)
    if kind == "table":
        if not isinstance(value, dict):
            raise bad("a table, e.g. {\"text\" = 5}")
        return MappingProxyType(dict(value))
    raise AssertionError(kind)  # pragma: no cover


def _section(where: str, schema: Mapping[str, Key], raw: Any, base: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table of keys, got {_type_name(raw)}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; allowed keys in [{where}]: "
                          f"{', '.join(schema)}")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if key in raw:
            if spec.kind == "responses":
                out[key] = _responses(f"{where}.{key}", raw[key], base)
            elif spec.kind == "steps":
                out[key] = _steps(f"{where}.{key}", raw[key], base)
            else:
                out[key] = _check(where, key, spec, raw[key], base)
        elif spec.required:
            raise ConfigError(f"missing key {where}.{key} ({spec.doc})")
        else:
            d = spec.default
            out[key] = MappingProxyType(dict(d)) if isinstance(d, dict) else d
    return out


def _responses(name: str, raw: Any, base: Path) -> tuple[Mapping[str, Any], ...]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"key {name}: expected one or more [[{name}]] tables with a file key")
    return tuple(MappingProxyType(_section(f"{name}[{i + 1}]", RESPONSE_SCHEMA, r, base))
                 for i, r in enumerate(raw))


def _steps(name: str, raw: Any, base: Path) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"key {name}: expected [[{name}]] tables, each with a type key")
    out = []
    for i, r in enumerate(raw):
        where = f"{name}[{i + 1}]"
        if not isinstance(r, dict) or "type" not in r:
            raise ConfigError(f"{where}: missing key type; allowed types: "
                              f"{', '.join(STEP_SCHEMA)}")
        kind = r["type"]
        if kind not in STEP_SCHEMA:
            raise ConfigError(f"key {where}.type = {kind!r} is not allowed; allowed values: "
                              f"{', '.join(map(repr, STEP_SCHEMA))}")
        body = {k: v for k, v in r.items() if k != "type"}
        sec = _section(f"{where} ({kind})", STEP_SCHEMA[kind], body, base)
        sec["type"] = kind
        out.append(MappingProxyType(sec))
    return tuple(out)


@dataclass(frozen=True, kw_only=True, eq=False)
class SurveyConfig:
    """A validated survey configuration.

    Attributes
    ----------
    path : pathlib.Path
        The configuration file.
    sections : Mapping[str, Mapping[str, Any]]
        Every section of :data:`SCHEMA` with its keys, defaults filled in and paths
        resolved against the configuration's folder.
    sha256 : str
        Hash of the file's bytes (recorded in every output).
    text : str
        The file's text (copied into the outputs).
    """

    path: Path
    sections: Mapping[str, Mapping[str, Any]]
    sha256: str
    text: str = field(repr=False)

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.sections[section]

    @property
    def folder(self) -> Path:
        """The output folder."""
        return Path(self.sections["output"]["folder"])

    @property
    def domains(self) -> tuple[tuple[str, ...], ...]:
        """Domain sets reported besides the whole survey."""
        dom = self.sections["estimation"]["domains"]
        if dom is not None:
            return dom
        fr = self.sections["frame"]
        out = [(fr["agency"],)]
        if fr["tier"]:
            out.append((fr["tier"],))
        return tuple(out)


def load_config(path: str | Path) -> SurveyConfig:
    """Read and validate a survey configuration file (TOML).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.toml`` file.

    Returns
    -------
    SurveyConfig

    Raises
    ------
    ConfigError
        The file cannot be read, is not valid TOML, has an unknown section or key, a
        missing required key, or a value of the wrong type or outside the allowed values;
        the message names the key and what is allowed.

    Examples
    --------
    >>> from importlib import resources
    >>> from satsample.survey import load_config
    >>> cfg = load_config(resources.files("satsample") / "survey/examples/survey.toml")
    >>> cfg["design"]["allocation"]
    'precision'
    """
    p = Path(path)
    try:
        raw_bytes = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"configuration file {str(p)!r} cannot be read: "
                          f"{exc.strerror or exc}") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {str(p)!r} is not UTF-8 text (byte "
                          f"{exc.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {str(p)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] in {str(p)!r}; allowed sections: "
                          f"{', '.join(SCHEMA)}")
    base = p.resolve().parent
    sections: dict[str, Mapping[str, Any]] = {}
    for name, schema in SCHEMA.items():
        if name not in raw and any(k.required for k in schema.values()):
            raise ConfigError(f"missing section [{name}] in {str(p)!r}")
        sec = _section(name, schema, raw.get(name, {}), base)
        if name == "small_area" and sec["enabled"] is None:
            sec["enabled"] = "small_area" in raw  # writing the section turns it on
        sections[name] = MappingProxyType(sec)
    _cross_checks(sections)
    return SurveyConfig(path=p, sections=MappingProxyType(sections),
                        sha256=hashlib.sha256(raw_bytes).hexdigest(), text=text)


def _cross_checks(s: Mapping[str, Mapping[str, Any]]) -> None:
    q = s["questionnaire"]
    if (q["name"] is None) == (q["file"] is None):
        raise ConfigError("give exactly one of questionnaire.name or questionnaire.file")
    for label, code in q["value_labels"].items():
        if isinstance(code, bool) or not isinstance(code, int):
            raise ConfigError(f"key questionnaire.value_labels.{label!r} = {code!r}: expected "
                              "an integer answer code")
    d = s["design"]
    alloc = d["allocation"]
    if alloc in ("proportional", "equal", "neyman") and d["n"] is None:
        raise ConfigError(f"design.allocation = {alloc!r} needs design.n (the total sample size)")
    if alloc == "fixed" and d["n_per_agency"] is None:
        raise ConfigError("design.allocation = 'fixed' needs design.n_per_agency")
    if d["method"].startswith("pps") and s["frame"]["size"] is None:
        raise ConfigError(f"design.method = {d['method']!r} needs frame.size (the size measure)")
    if d["sort"] and d["method"] not in ("systematic", "pps_systematic"):
        raise ConfigError("design.sort applies to design.method = 'systematic' or "
                          "'pps_systematic' only")
    disp = s["dispositions"]
    for c in disp["respondents"]:
        if c not in ("I", "P"):
            raise ConfigError(f"key dispositions.respondents: {c!r} is not allowed; allowed "
                              "values: 'I', 'P'")
    if "I" not in disp["respondents"]:
        raise ConfigError("key dispositions.respondents must include 'I' (complete interviews)")
    if disp["partial_min"] > disp["complete_min"]:
        raise ConfigError(f"dispositions.partial_min = {disp['partial_min']} is above "
                          f"dispositions.complete_min = {disp['complete_min']}")
    for code, cls in disp["codes"].items():
        if not isinstance(cls, str):
            raise ConfigError(f"key dispositions.codes.{code!r} = {cls!r}: expected an AAPOR "
                              f"class ({', '.join(DISPOSITION_CLASSES)}) or an AAPOR code "
                              "such as \"2.11\"")
    sa = s["small_area"]
    if sa["enabled"]:
        if not sa["covariates"]:
            raise ConfigError("small_area.enabled = true needs small_area.covariates (agency "
                              "covariates of the model, e.g. [\"agency_level\"])")
        if sa["variance"] is None:
            raise ConfigError("small_area.enabled = true needs small_area.variance: the "
                              "sampling variances of the direct estimates change the estimates "
                              "and are chosen explicitly; allowed values: 'gvf', 'proportion', "
                              "'direct'")
        for c in sa["covariates"]:
            col, sep, level = c.partition(":")
            if sep and (not col.strip() or not level.strip()):
                raise ConfigError(f"key small_area.covariates: element {c!r} is not a column "
                                  "name or \"column:level\" (e.g. \"channel:online\")")
    for st in s["weighting"]["steps"]:
        if st["type"] == "trim" and st["lower"] is None and st["upper"] is None:
            raise ConfigError("a weighting step of type 'trim' needs lower or upper")
        if st["type"] == "calibrate" and st["bounds"] is not None and len(st["bounds"]) != 2:
            raise ConfigError(f"key weighting.steps (calibrate).bounds = {list(st['bounds'])}: "
                              "expected [low, high]")
        if st["type"] == "nonresponse" and st["method"] == "propensity" and not st["covariates"]:
            raise ConfigError("a nonresponse step with method = 'propensity' needs covariates")
