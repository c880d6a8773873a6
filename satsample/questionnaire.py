"""Questionnaire definitions: elements, criteria (items), answer codes and the aggregation rule.

A definition is *data*: the built-in layouts live in ``satsample/questionnaires/*.json`` and
any user-defined layout can be written in the same format (:meth:`Questionnaire.from_json`)
or built in code.  The definition knows how to turn raw answers into the per-item numerator
and denominator of the satisfaction share (:meth:`Questionnaire.indicators`) and how to
aggregate item shares into element indices and the overall index
(:meth:`Questionnaire.aggregate`).

Answer coding (defaults, configurable per definition):

* valid codes ``1..5`` (very dissatisfied ... very satisfied);
* satisfied codes ``4, 5``;
* unusable codes ``9`` (explicit "no opinion"); a blank cell (NaN / NA) is always unusable;
* any other value is an error (never silently dropped).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._validation import SatsampleError, as_numbers, check_choice

__all__ = [
    "AGGREGATION_RULES",
    "AggregationRule",
    "Element",
    "MeanOfMeans",
    "Questionnaire",
    "available_questionnaires",
    "load_questionnaire",
]

Measure = Literal["satisfied", "mean_score", "top_two_box"]
Aggregation = Literal["mean_of_means"]

_MEASURES: tuple[str, ...] = ("satisfied", "mean_score", "top_two_box")
_PACKAGE_DIR = "questionnaires"


def _as_codes(values: Any, *, name: str, owner: str) -> tuple[int, ...]:
    """Return answer codes as a tuple of distinct ints, raising on anything else."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = (values,)
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer, float, np.floating)):
            raise SatsampleError(f"{owner}: {name} must be integers, got {v!r}")
        if not float(v).is_integer():
            raise SatsampleError(f"{owner}: {name} must be integers, got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        raise SatsampleError(f"{owner}: {name} lists code(s) {dup} more than once")
    return tuple(out)


def _in_codes(x: np.ndarray, codes: Iterable[int]) -> np.ndarray:
    """Boolean mask ``x in codes`` (a few equality tests; faster than np.isin on floats)."""
    mask = np.zeros(x.shape, dtype=bool)
    for c in codes:
        mask |= x == c
    return mask


def _as_names(values: Any, *, name: str, owner: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise SatsampleError(f"{owner}: {name} must be a list of names, got {values!r}")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise SatsampleError(f"{owner}: {name} must be non-empty strings, got {v!r}")
    return out


class AggregationRule:
    """How item shares become element indices and the overall index: value *and* gradient.

    A rule is one class with two methods; :mod:`satsample.estimation.index` uses
    the value for point and replicate estimates and the gradient for the Taylor
    linearisation (and, when ``linear`` is True, for the closed-form jackknife).
    Adding a rule is one edit: a subclass here and its name in
    :data:`AGGREGATION_RULES`.
    """

    name: str = ""
    linear: bool = False  # outputs are linear in the shares (coefficients depend on presence only)

    def value(self, p: np.ndarray, element_index: np.ndarray,
              n_elements: int) -> tuple[np.ndarray, np.ndarray]:
        """Element indices (..., E) and overall index (...) from item shares p (..., K), NaN = no answer."""
        raise NotImplementedError

    def gradient(self, p: np.ndarray, element_index: np.ndarray, n_elements: int) -> np.ndarray:
        """Derivatives (..., E + 1, K) of the E element indices and the overall index wrt the shares."""
        raise NotImplementedError


class MeanOfMeans(AggregationRule):
    """``"mean_of_means"``: elements average their defined shares, the index averages its elements.

    Notes
    -----
    :math:`E_e = \\frac{1}{|K_e^+|}\\sum_{k \\in K_e^+} p_k`,
    :math:`I = \\frac{1}{|\\mathcal{E}^+|}\\sum_{e \\in \\mathcal{E}^+} E_e`, so
    :math:`\\partial E_e/\\partial p_k = 1/|K_e^+|` for :math:`k \\in K_e^+` and
    :math:`\\partial I/\\partial p_k = \\partial E_e/\\partial p_k / |\\mathcal{E}^+|`.
    """

    name = "mean_of_means"
    linear = True

    @staticmethod
    def _counts(p: np.ndarray, element_index: np.ndarray, n_elements: int):
        present = ~np.isnan(p)
        member = np.zeros((element_index.size, n_elements))
        member[np.arange(element_index.size), element_index] = 1.0
        k_plus = present.astype(np.float64) @ member  # (..., E) criteria left per element
        el_present = k_plus > 0
        e_plus = el_present.sum(axis=-1)  # (...)
        return present, member, k_plus, el_present, e_plus

    def value(self, p, element_index, n_elements):
        present, member, k_plus, el_present, e_plus = self._counts(p, element_index, n_elements)
        sums = np.where(present, p, 0.0) @ member
        with np.errstate(invalid="ignore", divide="ignore"):
            elements = np.where(el_present, sums / np.where(el_present, k_plus, 1.0), np.nan)
            index = np.where(e_plus > 0, np.where(el_present, elements, 0.0).sum(axis=-1)
                             / np.maximum(e_plus, 1), np.nan)
        return elements, index

    def gradient(self, p, element_index, n_elements):
        present, member, k_plus, el_present, e_plus = self._counts(p, element_index, n_elements)
        a_item = np.where(present, 1.0 / np.where(k_plus > 0, k_plus, 1.0)[..., element_index], 0.0)
        b_el = np.where(el_present, 1.0 / np.maximum(e_plus, 1)[..., None], 0.0)  # (..., E)
        d_el = a_item[..., None, :] * member.T  # (..., E, K)
        d_all = (a_item * b_el[..., element_index])[..., None, :]  # (..., 1, K)
        return np.concatenate([d_el, d_all], axis=-2)


AGGREGATION_RULES: Mapping[str, AggregationRule] = MappingProxyType(
    {"mean_of_means": MeanOfMeans()}
)


@dataclass(frozen=True, kw_only=True)
class Element:
    """One element (yếu tố) of a questionnaire: a labelled group of criteria.

    Parameters
    ----------
    code : str
        Short code, e.g. ``"E1"``.
    label : str
        Human-readable label, e.g. ``"Access to services"``.
    items : tuple of str
        Column names of the criteria of the element, in questionnaire order.  Lists are
        accepted and stored as tuples.
    label_vi : str, default=""
        Vietnamese name of the element (optional).
    """

    code: str
    label: str
    items: tuple[str, ...]
    label_vi: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code:
            raise SatsampleError(f"element code must be a non-empty string, got {self.code!r}")
        items = _as_names(self.items, name="items", owner=f"element {self.code!r}")
        if not items:
            raise SatsampleError(f"element {self.code!r} is empty: it has no item")
        seen: set[str] = set()
        for item in items:
            if item in seen:
                raise SatsampleError(f"item {item!r} appears twice in element {self.code!r}")
            seen.add(item)
        object.__setattr__(self, "items", items)


@dataclass(frozen=True, kw_only=True)
class Questionnaire:
    """A versioned questionnaire layout and its scoring rule.

    Parameters
    ----------
    name : str
        Name of the definition (``"sipas_2017"``...).
    elements : tuple of Element
        The elements, in order; their items are column names of the answer data.
    valid_codes : tuple of int, default=(1, 2, 3, 4, 5)
        Codes of the answer scale, lowest (worst) to highest (best).
    satisfied_codes : tuple of int, default=(4, 5)
        Codes counted as "satisfied"; must be valid codes.
    unusable_codes : tuple of int, default=(9,)
        Explicit codes that are not an opinion ("no opinion"); they count in no denominator.
        Blank cells (NaN / NA) are always unusable.
    aggregation : {"mean_of_means"}, default="mean_of_means"
        How item shares become indices; see Notes.
    item_labels : mapping of str to str, default empty
        Optional text of each criterion (stored read-only).
    scale_labels : mapping of int to str, default empty
        Optional labels of the answer codes (stored read-only).
    source : str, default=""
        Provenance of the definition.
    reconstructed : bool, default=False
        True when the item list is not confirmed by an official text.

    Notes
    -----
    For respondent :math:`i` and criterion :math:`k`, :meth:`indicators` gives
    :math:`d_{ik} = 1\\{x_{ik} \\in \\text{valid}\\}` and (measure ``"satisfied"``)
    :math:`y_{ik} = 1\\{x_{ik} \\in \\text{satisfied}\\}`.  With weights :math:`w_i`, the
    ``"mean_of_means"`` rule (:meth:`aggregate`) is

    .. math::

        p_k = \\frac{\\sum_i w_i y_{ik}}{\\sum_i w_i d_{ik}}, \\qquad
        E_e = \\frac{1}{|K_e^+|} \\sum_{k \\in K_e^+} p_k, \\qquad
        I = \\frac{1}{|\\mathcal{E}^+|} \\sum_{e \\in \\mathcal{E}^+} E_e,

    where :math:`K_e^+` are the criteria of element :math:`e` with
    :math:`\\sum_i w_i d_{ik} > 0` and :math:`\\mathcal{E}^+` the elements with at least one
    such criterion (an empty criterion or element is left out, not counted as 0).
    """

    name: str
    elements: tuple[Element, ...]
    valid_codes: tuple[int, ...] = (1, 2, 3, 4, 5)
    satisfied_codes: tuple[int, ...] = (4, 5)
    unusable_codes: tuple[int, ...] = (9,)
    aggregation: Aggregation = "mean_of_means"
    item_labels: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    scale_labels: Mapping[int, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    source: str = ""
    reconstructed: bool = False

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SatsampleError(
                f"questionnaire name must be a non-empty string, got {self.name!r}"
            )
        owner = f"questionnaire {self.name!r}"
        elements = tuple(self.elements) if isinstance(self.elements, Iterable) else ()
        if not elements:
            raise SatsampleError(f"{owner} is empty: it has no element")
        for el in elements:
            if not isinstance(el, Element):
                raise SatsampleError(f"{owner}: elements must be Element objects, got {el!r}")
        codes = [el.code for el in elements]
        dup_codes = sorted({c for c in codes if codes.count(c) > 1})
        if dup_codes:
            raise SatsampleError(f"{owner}: element code(s) {dup_codes} used more than once")
        where: dict[str, str] = {}
        for el in elements:
            for item in el.items:
                if item in where:
                    raise SatsampleError(
                        f"{owner}: item {item!r} appears twice (in elements "
                        f"{where[item]!r} and {el.code!r})"
                    )
                where[item] = el.code
        valid = _as_codes(self.valid_codes, name="valid_codes", owner=owner)
        satisfied = _as_codes(self.satisfied_codes, name="satisfied_codes", owner=owner)
        unusable = _as_codes(self.unusable_codes, name="unusable_codes", owner=owner)
        if len(valid) < 2:
            raise SatsampleError(f"{owner}: valid_codes needs at least 2 codes, got {valid}")
        if list(valid) != sorted(valid):
            raise SatsampleError(
                f"{owner}: valid_codes must be in increasing order (worst to best), got {valid}"
            )
        if not satisfied:
            raise SatsampleError(f"{owner}: satisfied_codes is empty")
        outside = [c for c in satisfied if c not in valid]
        if outside:
            raise SatsampleError(
                f"{owner}: satisfied code(s) {outside} are not valid codes {list(valid)}"
            )
        overlap = sorted(set(valid) & set(unusable))
        if overlap:
            raise SatsampleError(
                f"{owner}: code(s) {overlap} are both valid and unusable codes"
            )
        check_choice(self.aggregation, name="aggregation", allowed=tuple(AGGREGATION_RULES))
        labels = dict(self.item_labels)
        unknown = [k for k in labels if k not in where]
        if unknown:
            raise SatsampleError(f"{owner}: item_labels names unknown item(s) {unknown}")
        scale = {int(k): str(v) for k, v in dict(self.scale_labels).items()}
        bad_scale = [k for k in scale if k not in valid and k not in unusable]
        if bad_scale:
            raise SatsampleError(f"{owner}: scale_labels names unknown code(s) {bad_scale}")
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "valid_codes", valid)
        object.__setattr__(self, "satisfied_codes", satisfied)
        object.__setattr__(self, "unusable_codes", unusable)
        object.__setattr__(self, "item_labels", MappingProxyType(labels))
        object.__setattr__(self, "scale_labels", MappingProxyType(scale))
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "reconstructed", bool(self.reconstructed))

    # ------------------------------------------------------------------ structure
    @property
    def items(self) -> tuple[str, ...]:
        """All criteria (column names) in element order."""
        return tuple(item for el in self.elements for item in el.items)

    @property
    def item_element(self) -> dict[str, str]:
        """Mapping item -> element code."""
        return {item: el.code for el in self.elements for item in el.items}

    @property
    def element_codes(self) -> tuple[str, ...]:
        """Element codes in order."""
        return tuple(el.code for el in self.elements)

    @property
    def n_items(self) -> int:
        """Number of criteria."""
        return sum(len(el.items) for el in self.elements)

    def element_of(self, item: str) -> str:
        """Return the code of the element holding ``item``."""
        mapping = self.item_element
        if item not in mapping:
            raise SatsampleError(
                f"item {item!r} is not in questionnaire {self.name!r} "
                f"(items {', '.join(self.items)})"
            )
        return mapping[item]

    def element(self, code: str) -> Element:
        """Return the element with this code."""
        for el in self.elements:
            if el.code == code:
                return el
        raise SatsampleError(
            f"element {code!r} is not in questionnaire {self.name!r} "
            f"(elements {', '.join(self.element_codes)})"
        )

    def element_index(self) -> np.ndarray:
        """Position of each item's element, int64 array of shape (n_items,) in ``items`` order."""
        return np.repeat(
            np.arange(len(self.elements), dtype=np.int64),
            [len(el.items) for el in self.elements],
        )

    def with_codes(
        self,
        *,
        satisfied_codes: Iterable[int] | None = None,
        unusable_codes: Iterable[int] | None = None,
        valid_codes: Iterable[int] | None = None,
    ) -> Questionnaire:
        """Return a copy with other answer codes (``None`` keeps the current ones)."""
        changes: dict[str, Any] = {}
        if satisfied_codes is not None:
            changes["satisfied_codes"] = tuple(satisfied_codes)
        if unusable_codes is not None:
            changes["unusable_codes"] = tuple(unusable_codes)
        if valid_codes is not None:
            changes["valid_codes"] = tuple(valid_codes)
        return replace(self, **changes)

    def select_elements(self, codes: Iterable[str], *, name: str | None = None) -> Questionnaire:
        """Return the definition restricted to the elements ``codes`` (in the given order)."""
        chosen = tuple(self.element(c) for c in codes)
        keep = {item for el in chosen for item in el.items}
        labels = {k: v for k, v in self.item_labels.items() if k in keep}
        return replace(
            self,
            name=name if name is not None else self.name,
            elements=chosen,
            item_labels=labels,
        )

    # ------------------------------------------------------------------ scoring
    def _answer_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """Float64 matrix (n, K) of the item columns; NA -> NaN; non-numbers raise."""
        if not isinstance(data, pd.DataFrame):
            raise SatsampleError(
                f"answers must be a pandas DataFrame, got {type(data).__name__}"
            )
        missing = [c for c in self.items if c not in data.columns]
        if missing:
            raise SatsampleError(
                f"item column(s) {', '.join(map(repr, missing))} of questionnaire "
                f"{self.name!r} not found in the data"
            )
        n = len(data)
        out = np.empty((n, self.n_items), dtype=np.float64, order="F")
        for k, item in enumerate(self.items):
            out[:, k] = as_numbers(data[item], name=item, role="item")  # no booleans, no text
        return out

    def _classes(self, x: np.ndarray, numerator: Iterable[int] = ()) -> np.ndarray:
        """Class of every answer (uint8, (n, K)): see :mod:`satsample._kernels.answers`.

        Two low bits: 0 invalid, 1 valid code, 2 unusable code, 3 blank (NaN);
        bit 2: a valid code of ``numerator``.  Equal to the tests ``x == code``.
        """
        from ._kernels.answers import _answer_classes

        codes = (*self.valid_codes, *self.unusable_codes)
        lo, hi = min(codes), max(codes)
        if hi - lo >= 2**16:  # a sparse code list: one equality test per code
            cls = np.where(np.isnan(x), 3, 0).astype(np.uint8)
            cls[_in_codes(x, self.valid_codes)] = 1
            cls[_in_codes(x, self.unusable_codes)] = 2
            num = [c for c in numerator if c in self.valid_codes]
            cls[_in_codes(x, num)] |= 4
            return cls
        lut = np.zeros(hi - lo + 1, dtype=np.uint8)
        lut[np.asarray(self.valid_codes, dtype=np.int64) - lo] = 1
        lut[np.asarray(self.unusable_codes, dtype=np.int64) - lo] = 2
        for c in numerator:
            if c in self.valid_codes:
                lut[c - lo] |= 4
        return _answer_classes(x, float(lo), lut)

    def _masks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kind = self._classes(x) & 3
        return kind == 1, kind >= 2, kind == 0

    def indicators(
        self, data: pd.DataFrame, *, measure: Measure = "satisfied"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the numerator ``y`` and denominator ``d`` indicators of every criterion.

        Parameters
        ----------
        data : pandas.DataFrame
            Answers, one row per respondent, with a column per item of :attr:`items`
            (codes as numbers; blanks as NaN / NA).  Not modified.
        measure : {"satisfied", "mean_score", "top_two_box"}, default="satisfied"
            ``"satisfied"``: :math:`y_{ik} = 1\\{x_{ik} \\in \\text{satisfied\\_codes}\\}`;
            ``"mean_score"``: :math:`y_{ik} = x_{ik}` (so :math:`\\sum y / \\sum d` is the mean
            score); ``"top_two_box"``: :math:`y_{ik} = 1\\{x_{ik}` is one of the two highest
            valid codes :math:`\\}`.

        Returns
        -------
        y, d : numpy.ndarray of shape (n_rows, n_items), float64
            In :attr:`items` order.  :math:`d_{ik} = 1` when the answer is a valid code and 0
            when it is unusable (an unusable code or blank); :math:`y_{ik} = 0` when unusable.

        Raises
        ------
        SatsampleError
            When an item column is missing, or holds a value that is neither a valid nor an
            unusable code (the message names the column, the codes and the row count).

        Notes
        -----
        The item share of a domain is :math:`p_k = \\sum_i w_i y_{ik} / \\sum_i w_i d_{ik}`
        (a ratio / domain mean over the respondents who answered item :math:`k`, item by
        item; no complete-case deletion across items).
        """
        y, d = self._indicator_masks(data, measure)
        return y.astype(np.float64), d.astype(np.float64)

    def _indicator_masks(self, data: pd.DataFrame,
                         measure: Measure = "satisfied") -> tuple[np.ndarray, np.ndarray]:
        """:meth:`indicators` as ``(y, d)`` with ``d`` bool and ``y`` bool (float64 for mean scores)."""
        check_choice(measure, name="measure", allowed=_MEASURES)
        x = self._answer_matrix(data)
        numerator: tuple[int, ...] = ()
        if measure == "satisfied":
            numerator = self.satisfied_codes
        elif measure == "top_two_box":
            numerator = tuple(sorted(self.valid_codes)[-2:])
        cls = self._classes(x, numerator)
        kind = cls & 3
        invalid = kind == 0
        if invalid.any():
            problems = []
            for k in np.flatnonzero(invalid.any(axis=0)):
                bad_rows = invalid[:, k]
                codes = np.unique(x[bad_rows, k])
                shown = ", ".join(f"{c:g}" for c in codes[:10])
                more = f" (and {codes.size - 10} more)" if codes.size > 10 else ""
                problems.append(
                    f"column {self.items[k]!r}: {int(bad_rows.sum())} row(s) with invalid "
                    f"code(s) {shown}{more}"
                )
            raise SatsampleError(
                f"invalid answer codes ({'; '.join(problems)}); valid codes are "
                f"{list(self.valid_codes)}, unusable codes {list(self.unusable_codes)} or blank"
            )
        d = kind == 1
        if measure == "mean_score":
            return np.where(d, x, 0.0), d
        return (cls & 4) != 0, d

    def validate_answers(self, data: pd.DataFrame) -> pd.DataFrame:
        """Report, per item, how many answers are valid, unusable, blank or invalid.

        Parameters
        ----------
        data : pandas.DataFrame
            Answers with one column per item.  Not modified; invalid codes do not raise here.

        Returns
        -------
        pandas.DataFrame
            Indexed by item (in :attr:`items` order), columns ``element``, ``n_rows``,
            ``n_valid``, ``n_satisfied``, one ``n_code_<c>`` per unusable code, ``n_blank``,
            ``n_unusable`` (unusable codes + blanks), ``n_invalid`` and ``invalid_codes``
            (text listing the distinct invalid values, ``""`` when none).
            ``n_valid + n_unusable + n_invalid == n_rows`` on every row.
        """
        x = self._answer_matrix(data)
        valid, unusable, invalid = self._masks(x)
        satisfied = _in_codes(x, self.satisfied_codes) & valid
        table: dict[str, Any] = {
            "element": [self.element_of(i) for i in self.items],
            "n_rows": np.full(self.n_items, x.shape[0], dtype=np.int64),
            "n_valid": valid.sum(axis=0).astype(np.int64),
            "n_satisfied": satisfied.sum(axis=0).astype(np.int64),
        }
        for code in self.unusable_codes:
            table[f"n_code_{code}"] = (x == code).sum(axis=0).astype(np.int64)
        table["n_blank"] = np.isnan(x).sum(axis=0).astype(np.int64)
        table["n_unusable"] = unusable.sum(axis=0).astype(np.int64)
        table["n_invalid"] = invalid.sum(axis=0).astype(np.int64)
        table["invalid_codes"] = [
            ", ".join(f"{c:g}" for c in np.unique(x[invalid[:, k], k])) for k in range(self.n_items)
        ]
        return pd.DataFrame(table, index=pd.Index(list(self.items), name="item"))

    def aggregate(
        self, numerators: np.ndarray, denominators: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Turn item totals into item shares, element indices and the overall index.

        Parameters
        ----------
        numerators, denominators : array-like of shape (..., n_items)
            Weighted totals :math:`\\sum_i w_i y_{ik}` and :math:`\\sum_i w_i d_{ik}` per item
            (in :attr:`items` order), optionally for several domains along leading axes.

        Returns
        -------
        items : numpy.ndarray of shape (..., n_items)
            :math:`p_k`, NaN where the denominator is 0.
        elements : numpy.ndarray of shape (..., n_elements)
            :math:`E_e`, NaN when no criterion of the element has a usable answer.
        index : numpy.ndarray of shape (...)
            :math:`I`, NaN when no element is left.

        Notes
        -----
        ``"mean_of_means"``: see the class Notes.  Shares are on the 0-1 scale (multiply by
        100 for the published percentages).
        """
        num = np.asarray(numerators, dtype=np.float64)
        den = np.asarray(denominators, dtype=np.float64)
        if num.shape != den.shape or num.shape[-1:] != (self.n_items,):
            raise SatsampleError(
                f"numerators {num.shape} and denominators {den.shape} must have the same shape "
                f"ending in n_items={self.n_items}"
            )
        present = den > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(present, num / np.where(present, den, 1.0), np.nan)
        elements, index = self.aggregation_rule.value(p, self.element_index(), len(self.elements))
        return p, elements, index

    @property
    def aggregation_rule(self) -> AggregationRule:
        """The object behind :attr:`aggregation`: its value and its gradient (see :class:`AggregationRule`)."""
        return AGGREGATION_RULES[self.aggregation]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the format of the built-in ``questionnaires/*.json``)."""
        elements = []
        for el in self.elements:
            entry: dict[str, Any] = {"code": el.code, "label": el.label}
            if el.label_vi:
                entry["label_vi"] = el.label_vi
            entry["items"] = [
                {"id": item, "label": self.item_labels[item]}
                if item in self.item_labels
                else {"id": item}
                for item in el.items
            ]
            elements.append(entry)
        return {
            "name": self.name,
            "source": self.source,
            "reconstructed": self.reconstructed,
            "valid_codes": list(self.valid_codes),
            "satisfied_codes": list(self.satisfied_codes),
            "unusable_codes": list(self.unusable_codes),
            "aggregation": self.aggregation,
            "scale_labels": {str(k): v for k, v in self.scale_labels.items()},
            "elements": elements,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Questionnaire:
        """Build a definition from a dict (see :meth:`to_dict`).

        Each element is ``{"code", "label", "label_vi"?, "items"}``; ``items`` is a list of
        column names or of ``{"id": ..., "label": ...}`` objects.  Top-level keys other than
        the dataclass fields (and ``description``, ``notes``) are rejected, so a typo is
        not silently ignored.
        """
        if not isinstance(d, Mapping):
            raise SatsampleError(f"a questionnaire definition must be a mapping, got {d!r}")
        allowed = {
            "name", "elements", "valid_codes", "satisfied_codes", "unusable_codes",
            "aggregation", "item_labels", "scale_labels", "source", "reconstructed",
            "description", "notes",
        }
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise SatsampleError(
                f"questionnaire definition has unknown key(s) {unknown}; "
                f"allowed: {sorted(allowed)}"
            )
        if "name" not in d or "elements" not in d:
            raise SatsampleError("questionnaire definition needs 'name' and 'elements'")
        labels: dict[str, str] = dict(d.get("item_labels", {}) or {})
        elements = []
        for raw in d["elements"]:
            if not isinstance(raw, Mapping):
                raise SatsampleError(f"element must be a mapping, got {raw!r}")
            bad = sorted(set(raw) - {"code", "label", "label_vi", "items"})
            if bad:
                raise SatsampleError(
                    f"element {raw.get('code')!r} has unknown key(s) {bad}"
                )
            items = []
            for it in raw.get("items", []):
                if isinstance(it, Mapping):
                    if "id" not in it:
                        raise SatsampleError(
                            f"element {raw.get('code')!r}: item entry {dict(it)!r} has no 'id'"
                        )
                    items.append(it["id"])
                    if "label" in it:
                        labels[it["id"]] = it["label"]
                else:
                    items.append(it)
            elements.append(
                Element(
                    code=raw.get("code", ""),
                    label=raw.get("label", ""),
                    label_vi=raw.get("label_vi", ""),
                    items=tuple(items),
                )
            )
        kwargs: dict[str, Any] = {
            "name": d["name"],
            "elements": tuple(elements),
            "item_labels": labels,
        }
        for key in ("valid_codes", "satisfied_codes", "unusable_codes"):
            if key in d:
                kwargs[key] = tuple(d[key])
        for key in ("aggregation", "source", "reconstructed"):
            if key in d:
                kwargs[key] = d[key]
        if "scale_labels" in d:
            kwargs["scale_labels"] = {int(k): v for k, v in dict(d["scale_labels"]).items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> Questionnaire:
        """Read a definition from a JSON file (UTF-8)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SatsampleError(f"cannot read questionnaire file {str(p)!r}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SatsampleError(f"questionnaire file {str(p)!r} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_json(self, path: str | Path) -> Path:
        """Write the definition as UTF-8 JSON and return the path."""
        p = Path(path)
        p.write_text(
            json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return p


def available_questionnaires() -> tuple[str, ...]:
    """Names of the built-in definitions (files ``satsample/questionnaires/*.json``)."""
    folder = resources.files("satsample").joinpath(_PACKAGE_DIR)
    return tuple(
        sorted(
            entry.name[: -len(".json")]
            for entry in folder.iterdir()
            if entry.name.endswith(".json")
        )
    )


def load_questionnaire(name: str) -> Questionnaire:
    """Load a built-in definition by name.

    Parameters
    ----------
    name : str
        One of :func:`available_questionnaires`: ``"sipas_2017"`` (2017-2021 layout, 22
        criteria, reconstructed), ``"sipas_2022"`` (2022+ service block, 19 items, columns
        ``s01..s19``, secondary source), ``"reference_22"`` (layout of the R reference cases).
    """
    names = available_questionnaires()
    if name not in names:
        raise SatsampleError(
            f"questionnaire {name!r} is not built in; available: {', '.join(names)}"
        )
    resource = resources.files("satsample").joinpath(_PACKAGE_DIR, f"{name}.json")
    return Questionnaire.from_dict(json.loads(resource.read_text(encoding="utf-8")))
