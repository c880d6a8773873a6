"""Deterministic synthetic SIPAS-like data: a population of service users with known truth.

:func:`make_population` builds one province with provincial departments, district one-stop
shops and commune one-stop shops, the list of their service users (the sampling frame) and
every user's *potential* answers to every criterion of a questionnaire.  Because all answers
exist, the satisfaction indices of the finite population are known exactly
(:attr:`Population.truth`).  :func:`simulate_responses` then plays the field work for a drawn
sample: who responds (depending on age, channel, sex and level) and what they answer.

Everything is vectorised numpy and seeded through one ``rng`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._random import RNGLike, as_generator
from ._tables import TableField
from ._validation import SatsampleError, check_columns, check_positive_int
from .questionnaire import Questionnaire, load_questionnaire

__all__ = [
    "AGE_GROUPS",
    "CHANNELS",
    "LEVELS",
    "PROCEDURE_FIELDS",
    "SEXES",
    "Population",
    "PopulationTruth",
    "make_population",
    "response_propensity",
    "simulate_responses",
]

LEVELS: tuple[str, ...] = ("province", "district", "commune")
SEXES: tuple[str, ...] = ("F", "M")
AGE_GROUPS: tuple[str, ...] = ("18-29", "30-44", "45-59", "60+")
CHANNELS: tuple[str, ...] = ("in_person", "online", "postal")
PROCEDURE_FIELDS: tuple[str, ...] = (
    "civil_status",
    "land",
    "authentication",
    "construction",
    "business_registration",
    "labour_social",
    "transport",
    "justice",
    "other",
)
PROVINCE = "P01"

# ---------------------------------------------------------------- generative model constants
_LEVEL_SHARE = (0.20, 0.15)  # provincial departments, district shops; communes take the rest
_LEVEL_SIZE = np.array([3.0, 2.5, 1.0])  # relative mean number of users per agency
_SIZE_SIGMA = 0.6  # log-normal spread of agency sizes
_P_FEMALE = 0.52
_P_AGE = np.array([0.22, 0.36, 0.27, 0.15])
# channel logits (in_person, online, postal) by level, plus shifts by age group
_CHANNEL_LEVEL = np.array([[0.0, -0.3, -1.2], [0.0, -0.8, -1.3], [0.0, -1.5, -1.8]])
_CHANNEL_AGE = np.array([[0.0, 0.8, -0.3], [0.0, 0.4, -0.1], [0.0, -0.2, 0.1], [0.0, -1.0, 0.4]])
# procedure field distribution by level (province: department specialty, see _fields)
_FIELD_DISTRICT = np.array([0.05, 0.30, 0.05, 0.20, 0.15, 0.15, 0.0, 0.05, 0.05])
_FIELD_COMMUNE = np.array([0.40, 0.10, 0.30, 0.0, 0.0, 0.10, 0.0, 0.05, 0.05])
_DEPARTMENT_FIELDS = (
    "business_registration", "construction", "transport", "land", "labour_social", "justice",
    "other",
)
_DEPARTMENTS = (
    "Department of Justice", "Department of Planning and Investment",
    "Department of Construction", "Department of Transport",
    "Department of Natural Resources and Environment",
    "Department of Labour, Invalids and Social Affairs", "Department of Health",
    "Department of Education and Training", "Department of Agriculture and Rural Development",
    "Department of Industry and Trade", "Department of Finance",
    "Department of Information and Communications",
    "Department of Culture, Sports and Tourism", "Department of Science and Technology",
    "Department of Home Affairs", "Department of Foreign Affairs", "Ethnic Affairs Committee",
    "Industrial Zones Authority", "Provincial Tax Department", "Provincial Social Insurance",
)
# satisfaction (latent scale of the cumulative logit)
_LEVEL_EFFECT = np.array([-0.10, 0.0, 0.20])
_AGENCY_SD = 0.45
_AGENCY_ELEMENT_SD = 0.25
_ITEM_SD = 0.15
_USER_SD = 0.7
_ELEMENT_EFFECT_5 = np.array([0.10, 0.0, 0.15, 0.05, -0.30])
_SEX_EFFECT = np.array([0.05, 0.0])
_AGE_EFFECT = np.array([-0.35, -0.10, 0.10, 0.35])
_CHANNEL_EFFECT = np.array([0.0, -0.30, 0.20])
_BASE_PROBS_5 = np.array([0.02, 0.04, 0.10, 0.46, 0.38])  # answer distribution at eta = 0
# unusable answers
_P_BLANK = 0.02
_P_NO_OPINION = 0.04
_P_NO_OPINION_FEEDBACK = 0.25  # element "E5" (feedback handling)
_NO_OPINION_AGE = np.array([0.8, 1.0, 1.1, 1.4])
# unit nonresponse (logit of the response probability)
_RESPONSE_BASE = 0.6
_RESPONSE_AGE = np.array([0.5, 0.25, 0.0, -0.6])
_RESPONSE_CHANNEL = np.array([0.0, 0.6, -0.8])
_RESPONSE_SEX = np.array([0.15, 0.0])
_RESPONSE_LEVEL = np.array([0.1, 0.0, -0.1])

_CHUNK = 1 << 15  # rows per generation chunk (keeps temporaries in cache)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _draw_categories(probs: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index per unit: ``probs[rows[i]]`` is unit i's distribution, ``u`` its uniform."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    out = np.zeros(u.shape[0], dtype=np.int8)
    for j in range(probs.shape[1] - 1):
        out += u >= cum[rows, j]
    return out


def _categorical(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(categories))


@dataclass(frozen=True, kw_only=True)
class PopulationTruth:
    """Finite-population values of the satisfaction index definition (shares on 0-1).

    Attributes
    ----------
    overall_index : float
        :math:`I` of the whole population (item shares pooled over all users).
    overall_elements : pandas.Series
        :math:`E_e` of the whole population, indexed by element code.
    overall_items : pandas.Series
        :math:`p_k` of the whole population, indexed by item.
    agencies : pandas.DataFrame
        One row per agency (index ``agency_id``): ``N_h``, ``index`` and one column per
        element code.
    agency_items : pandas.DataFrame
        :math:`p_k` per agency (rows) and item (columns); NaN when no user of the agency has a
        usable answer to the item.
    mean_of_agencies : float
        Unweighted mean of the agency indices (the "average of units" alternative to the
        pooled :attr:`overall_index`).
    measure : str
        The indicator (``"satisfied"``).
    """

    overall_index: float
    overall_elements: pd.Series
    overall_items: pd.Series
    agencies: pd.DataFrame = TableField()
    agency_items: pd.DataFrame = TableField()
    mean_of_agencies: float
    measure: str = "satisfied"


@dataclass(frozen=True, kw_only=True, eq=False)
class Population:
    """A synthetic population of service users, their potential answers and the truth.

    Attributes
    ----------
    frame : pandas.DataFrame
        The sampling frame, one row per service user, sorted by agency:
        ``user_id`` (int64, equal to row position + 1), ``province``, ``district_id``,
        ``commune_id``, ``agency_id``, ``agency_name``, ``agency_level``,
        ``procedure_field``, ``channel``, ``sex``, ``age_group`` (categoricals).
        ``district_id`` is NaN for provincial departments, ``commune_id`` is NaN except
        for users of commune one-stop shops.
    agencies : pandas.DataFrame
        One row per agency (= stratum): ``agency_id``, ``name``, ``level``,
        ``district_id``, ``commune_id``, ``N_h`` (users in the frame), ``p_prior`` (a
        noisy prior satisfied share, as if from last year, for allocation) and
        ``latent_effect`` (the agency's effect on the latent satisfaction scale).
    questionnaire : Questionnaire
        The definition whose items were generated.
    codes : numpy.ndarray of shape (n_users, n_items), uint8, read-only
        Every user's potential answer codes (0 = blank), items in ``questionnaire.items``
        order.  Use :meth:`answers` for a float table with NaN blanks.
    truth : PopulationTruth
        Finite-population index values computed from :attr:`codes`.
    seed : int or None
        The integer seed when ``rng`` was an int, else None.
    """

    frame: pd.DataFrame = TableField()
    agencies: pd.DataFrame = TableField()
    questionnaire: Questionnaire
    codes: np.ndarray
    truth: PopulationTruth
    seed: int | None = None

    @property
    def n_users(self) -> int:
        """Number of service users."""
        return int(self.codes.shape[0])

    @property
    def items(self) -> tuple[str, ...]:
        """Item columns of the answers."""
        return self.questionnaire.items

    def answers(self, rows: Any = None) -> pd.DataFrame:
        """Return potential answers as a float64 table (blanks NaN), one column per item.

        Parameters
        ----------
        rows : array-like of int or None, default=None
            Row positions in :attr:`frame` (``user_id - 1``); None gives every user.

        Returns
        -------
        pandas.DataFrame
            Index = the row positions, columns = :attr:`items`.
        """
        if rows is None:
            idx = np.arange(self.n_users)
            block = self.codes
        else:
            idx = np.asarray(rows)
            if idx.dtype.kind not in "iu":
                raise SatsampleError(f"rows must be integer positions, got dtype {idx.dtype}")
            bad = (idx < 0) | (idx >= self.n_users)
            if bad.any():
                raise SatsampleError(
                    f"rows: {int(bad.sum())} position(s) outside 0..{self.n_users - 1}"
                )
            block = self.codes[idx]
        values = block.astype(np.float64)
        values[block == 0] = np.nan
        return pd.DataFrame(values, index=idx, columns=list(self.items))

    def true_values(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Finite-population index, element indices and item shares, overall or by domain.

        Parameters
        ----------
        by : str or sequence of str or None, default=None
            Frame column(s) defining domains; None gives one row (``"all"``).  A missing
            value (e.g. ``district_id`` of provincial departments) is a domain of its own.

        Returns
        -------
        pandas.DataFrame
            One row per domain: ``N`` (users), ``index``, one column per element code, then
            one column per item (shares on 0-1; NaN when empty).

        Notes
        -----
        Same rule as :meth:`Questionnaire.aggregate` with all weights 1 over the full
        population answers :attr:`codes`.
        """
        q = self.questionnaire
        if by is None:
            group = np.zeros(self.n_users, dtype=np.int64)
            labels = pd.Index(["all"], name="domain")
        else:
            cols = [by] if isinstance(by, str) else list(by)
            check_columns(self.frame, cols, role="by")
            grouped = self.frame[cols].groupby(cols, observed=True, sort=True, dropna=False)
            group = grouped.ngroup().to_numpy(dtype=np.int64)
            labels = grouped.size().index
        num, den, n = _count_totals(self.codes, group, int(len(labels)), q)
        return _truth_table(num, den, n, labels, q)


def _count_totals(
    codes: np.ndarray, group: np.ndarray, n_groups: int, q: Questionnaire
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group and item: number satisfied, number usable; and group sizes."""
    sat_lut = np.zeros(256, dtype=np.float64)
    sat_lut[list(q.satisfied_codes)] = 1.0
    val_lut = np.zeros(256, dtype=np.float64)
    val_lut[list(q.valid_codes)] = 1.0
    k = codes.shape[1]
    num = np.empty((n_groups, k))
    den = np.empty((n_groups, k))
    base = group * 256
    for j in range(k):
        table = np.bincount(base + codes[:, j], minlength=n_groups * 256).reshape(n_groups, 256)
        num[:, j] = table @ sat_lut
        den[:, j] = table @ val_lut
    sizes = np.bincount(group, minlength=n_groups).astype(np.int64)
    return num, den, sizes


def _truth_table(
    num: np.ndarray, den: np.ndarray, sizes: np.ndarray, labels: pd.Index, q: Questionnaire
) -> pd.DataFrame:
    p, elements, index = q.aggregate(num, den)
    out = pd.DataFrame({"N": sizes, "index": index}, index=labels)
    for e, code in enumerate(q.element_codes):
        out[code] = elements[:, e]
    items = pd.DataFrame(p, index=labels, columns=list(q.items))
    return pd.concat([out, items], axis=1)


def _check_codes_for_generation(q: Questionnaire) -> None:
    codes = (*q.valid_codes, *q.unusable_codes)
    bad = [c for c in codes if not 1 <= c <= 255]
    if bad:
        raise SatsampleError(
            f"questionnaire {q.name!r}: the generator stores codes in 1..255 (0 = blank); "
            f"code(s) {bad} do not fit"
        )


def _thresholds(n_categories: int) -> np.ndarray:
    """Cut points of the cumulative logit giving the base answer distribution at eta = 0."""
    if n_categories == 5:
        probs = _BASE_PROBS_5
    else:
        probs = np.exp(0.5 * np.arange(n_categories))
        probs = probs / probs.sum()
    cum = np.cumsum(probs)[:-1]
    return np.log(cum / (1.0 - cum))


def make_population(
    *,
    n_users: int = 200_000,
    n_agencies: int = 100,
    questionnaire: str | Questionnaire = "sipas_2017",
    rng: RNGLike = 20240611,
) -> Population:
    """Build a deterministic synthetic SIPAS-like population of service users.

    Parameters
    ----------
    n_users : int, default=200_000
        Number of service users (frame rows); at least ``2 * n_agencies``.
    n_agencies : int, default=100
        Number of agencies (at least 3): about 20 % provincial departments, 15 % district
        one-stop shops (one per district) and the rest commune one-stop shops, nested in the
        districts of one province.
    questionnaire : str or Questionnaire, default="sipas_2017"
        Definition (or built-in name) whose items are generated.
    rng : int, numpy.random.Generator or numpy.random.SeedSequence, default=20240611
        Source of randomness; the same int gives the identical population.

    Returns
    -------
    Population

    Notes
    -----
    *Agencies.*  Sizes :math:`N_h = 2 + ` largest-remainder rounding of
    :math:`(N - 2H) s_h / \\sum s_h`, :math:`s_h = m_{\\text{level}} e^{\\sigma Z_h}`,
    :math:`\\sigma = 0.6`.  Communes are nested in districts in contiguous blocks.

    *Users.*  Sex F with probability 0.52; age group 18-29/30-44/45-59/60+ with
    probabilities 0.22/0.36/0.27/0.15; channel from a multinomial logit by level and age
    (the young use online more, the old postal more, commune shops are mostly in person);
    procedure field by level (each provincial department has a specialty field, 80 %).

    *Answers* (cumulative logit).  For user :math:`i` of agency :math:`h` and criterion
    :math:`k` of element :math:`e`,

    .. math::

        \\eta_{ik} = a_h + b_{he} + \\beta_e + c_k + \\gamma_{\\text{sex}(i)}
        + \\delta_{\\text{age}(i)} + \\kappa_{\\text{channel}(i)} + u_i,
        \\qquad
        x_{ik} = \\text{valid}_{1 + \\#\\{j : \\theta_j < \\eta_{ik} + \\varepsilon_{ik}\\}}

    with :math:`a_h \\sim N(\\text{level effect}, 0.45^2)`, :math:`b_{he} \\sim N(0, 0.25^2)`,
    :math:`c_k \\sim N(0, 0.15^2)`, :math:`u_i \\sim N(0, 0.7^2)` (correlates a user's items),
    :math:`\\varepsilon_{ik}` standard logistic, element effects (0.10, 0, 0.15, 0.05, -0.30),
    age effects (-0.35, -0.10, 0.10, 0.35) (older users are more satisfied), channel effects
    in person 0, online -0.30, postal +0.20, women +0.05; cut points :math:`\\theta_j` give
    the distribution (0.02, 0.04, 0.10, 0.46, 0.38) at :math:`\\eta = 0`.  Then each answer
    is independently replaced by a blank (probability 0.02) or by the first unusable code,
    "no opinion" (probability 0.04, 0.25 in element ``E5``, times 0.8/1.0/1.1/1.4 by age
    group).

    *Truth.*  With :math:`y_{ik} = 1\\{x_{ik} \\in \\text{satisfied}\\}` and
    :math:`d_{ik} = 1\\{x_{ik} \\in \\text{valid}\\}`, per agency (and for all users)
    :math:`p_k = \\sum_i y_{ik} / \\sum_i d_{ik}`, :math:`E_e` = mean of :math:`p_k` over
    the element, :math:`I` = mean of the :math:`E_e` (:meth:`Questionnaire.aggregate`).
    These are exact finite-population values of the stored answers, not model expectations.
    """
    gen = as_generator(rng)
    n_users = check_positive_int(n_users, name="n_users")
    n_agencies = check_positive_int(n_agencies, name="n_agencies", minimum=3)
    if n_users < 2 * n_agencies:
        raise SatsampleError(
            f"n_users={n_users} must be at least 2 * n_agencies = {2 * n_agencies}"
        )
    if isinstance(questionnaire, str):
        q = load_questionnaire(questionnaire)
    elif isinstance(questionnaire, Questionnaire):
        q = questionnaire
    else:
        raise SatsampleError(
            f"questionnaire must be a name or a Questionnaire, got {type(questionnaire).__name__}"
        )
    _check_codes_for_generation(q)

    # the draws from gen happen in this order: agencies, users, answers, prior
    lay = _agency_layout(n_agencies)
    effects = _draw_agencies(gen, lay.level, n_users, q)
    users = _draw_users(gen, lay.level, effects.n_h, n_users)
    codes = _draw_answers(gen, q, users, effects)
    frame = _frame(lay, users)
    num, den, sizes = _count_totals(codes, users.agency.astype(np.int64), n_agencies, q)
    table = _truth_table(num, den, sizes, pd.Index(lay.agency_ids, name="agency_id"), q)
    truth = _truth(num, den, sizes, table, n_users, q)
    prior = np.clip(table["index"].to_numpy() + 0.04 * gen.standard_normal(n_agencies), 0.05, 0.99)
    agencies = pd.DataFrame(
        {
            "agency_id": lay.agency_ids,
            "name": lay.names,
            "level": [LEVELS[lv] for lv in lay.level],
            "district_id": pd.array(lay.district, dtype="str"),
            "commune_id": pd.array(lay.commune, dtype="str"),
            "N_h": effects.n_h,
            "p_prior": np.round(prior, 2),
            "latent_effect": effects.agency,
        }
    )
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    return Population(
        frame=frame, agencies=agencies, questionnaire=q, codes=codes, truth=truth, seed=seed
    )


@dataclass(frozen=True)
class _Layout:
    """Agencies of the synthetic province: level codes, labels and where they sit."""

    level: np.ndarray  # 0 province, 1 district, 2 commune
    agency_ids: list[str]
    dist_ids: list[str]
    comm_ids: list[str]
    names: list[str]
    district: list[str | None]  # district of each agency (None for a department)
    commune: list[str | None]  # commune of each agency (None above the commune tier)


@dataclass(frozen=True)
class _Effects:
    """Random agency sizes and the agency, element and item terms of the answer model."""

    n_h: np.ndarray
    agency: np.ndarray
    agency_element: np.ndarray
    element: np.ndarray
    item: np.ndarray


@dataclass(frozen=True)
class _Users:
    """Codes of the users' agency, level, sex, age group, channel and procedure field."""

    agency: np.ndarray
    level: np.ndarray
    sex: np.ndarray
    age: np.ndarray
    channel: np.ndarray
    field: np.ndarray


def _agency_layout(n_agencies: int) -> _Layout:
    """Split the agencies by level, label them and nest the communes in the districts."""
    n_prov = max(1, round(_LEVEL_SHARE[0] * n_agencies))
    n_dist = max(1, round(_LEVEL_SHARE[1] * n_agencies))
    n_comm = n_agencies - n_prov - n_dist
    if n_comm < 1:
        n_prov, n_dist, n_comm = n_agencies - 2, 1, 1
    level = np.repeat(np.arange(3, dtype=np.int8), [n_prov, n_dist, n_comm])
    w_prov, w_dist, w_comm = (max(2, len(str(n))) for n in (n_prov, n_dist, n_comm))
    dist_ids = [f"DIS{i + 1:0{w_dist}d}" for i in range(n_dist)]
    comm_ids = [f"COM{i + 1:0{w_comm}d}" for i in range(n_comm)]
    agency_ids = [f"PRV{i + 1:0{w_prov}d}" for i in range(n_prov)] + dist_ids + comm_ids
    commune_district = (np.arange(n_comm) * n_dist) // n_comm
    names = [
        _DEPARTMENTS[i] if i < len(_DEPARTMENTS) else f"Provincial agency {i + 1}"
        for i in range(n_prov)
    ]
    names += [f"One-stop shop of district {d}" for d in dist_ids]
    names += [
        f"One-stop shop of commune {c} ({dist_ids[commune_district[j]]})"
        for j, c in enumerate(comm_ids)
    ]
    agency_district = [None] * n_prov + dist_ids + [dist_ids[d] for d in commune_district]
    agency_commune = [None] * (n_prov + n_dist) + comm_ids
    return _Layout(level=level, agency_ids=agency_ids, dist_ids=dist_ids, comm_ids=comm_ids,
                   names=names, district=agency_district, commune=agency_commune)


def _draw_agencies(gen: np.random.Generator, level: np.ndarray, n_users: int,
                   q: Questionnaire) -> _Effects:
    """Draw the agency sizes (largest remainder, at least 2 each) and the model's effects."""
    n_agencies = level.size
    size = _LEVEL_SIZE[level] * np.exp(_SIZE_SIGMA * gen.standard_normal(n_agencies))
    share = (n_users - 2 * n_agencies) * size / size.sum()
    n_h = np.floor(share).astype(np.int64)
    remainder = n_users - 2 * n_agencies - int(n_h.sum())
    if remainder:
        n_h[np.argsort(-(share - n_h), kind="stable")[:remainder]] += 1
    n_h += 2
    agency_effect = _LEVEL_EFFECT[level] + _AGENCY_SD * gen.standard_normal(n_agencies)
    n_el = len(q.elements)
    agency_element = _AGENCY_ELEMENT_SD * gen.standard_normal((n_agencies, n_el))
    if n_el == 5:
        element_effect = _ELEMENT_EFFECT_5
    else:
        element_effect = 0.15 * gen.standard_normal(n_el)
    item_effect = _ITEM_SD * gen.standard_normal(q.n_items)
    return _Effects(n_h=n_h, agency=agency_effect, agency_element=agency_element,
                    element=element_effect, item=item_effect)


def _draw_users(gen: np.random.Generator, level: np.ndarray, n_h: np.ndarray,
                n_users: int) -> _Users:
    """Draw every user's sex, age group, channel and procedure field."""
    n_agencies = level.size
    agency = np.repeat(np.arange(n_agencies, dtype=np.int32), n_h)
    user_level = level[agency]
    sex = (gen.random(n_users) >= _P_FEMALE).astype(np.int8)
    age = _draw_categories(_P_AGE[None, :], np.zeros(n_users, np.int8), gen.random(n_users))
    channel_probs = _softmax_rows(_CHANNEL_LEVEL[:, None, :] + _CHANNEL_AGE[None, :, :])
    channel_probs = channel_probs.reshape(12, 3)  # row = level * 4 + age
    channel = _draw_categories(channel_probs, user_level * 4 + age, gen.random(n_users))
    field_probs = np.empty((n_agencies, len(PROCEDURE_FIELDS)))
    other = PROCEDURE_FIELDS.index("other")
    for h in range(n_agencies):
        if level[h] == 0:
            probs = np.zeros(len(PROCEDURE_FIELDS))
            probs[other] = 0.2
            probs[PROCEDURE_FIELDS.index(_DEPARTMENT_FIELDS[h % len(_DEPARTMENT_FIELDS)])] += 0.8
        else:
            probs = _FIELD_DISTRICT if level[h] == 1 else _FIELD_COMMUNE
        field_probs[h] = probs
    field = _draw_categories(field_probs, agency, gen.random(n_users))
    return _Users(agency=agency, level=user_level, sex=sex, age=age, channel=channel,
                  field=field)


def _draw_answers(gen: np.random.Generator, q: Questionnaire, users: _Users,
                  effects: _Effects) -> np.ndarray:
    """Draw every user's answer codes (read-only, users x items) by chunks of rows."""
    n_users = users.agency.size
    agency, age = users.agency, users.age
    thresholds = _thresholds(len(q.valid_codes)).astype(np.float32)
    valid_lut = np.asarray(q.valid_codes, dtype=np.uint8)
    el_idx = q.element_index()
    p_noop_el = np.array(
        [_P_NO_OPINION_FEEDBACK if el.code == "E5" else _P_NO_OPINION for el in q.elements]
    )[el_idx].astype(np.float32)
    noop_code = np.uint8(q.unusable_codes[0]) if q.unusable_codes else None
    user_eta = (
        effects.agency[agency]
        + _SEX_EFFECT[users.sex]
        + _AGE_EFFECT[age]
        + _CHANNEL_EFFECT[users.channel]
        + _USER_SD * gen.standard_normal(n_users)
    ).astype(np.float32)
    cell_eta = (effects.agency_element[:, el_idx] + (effects.element[el_idx] + effects.item)[None, :])
    cell_eta = cell_eta.astype(np.float32)  # (n_agencies, n_items)
    k = q.n_items
    codes = np.empty((n_users, k), dtype=np.uint8, order="F")
    for start in range(0, n_users, _CHUNK):
        stop = min(start + _CHUNK, n_users)
        m = stop - start
        u = gen.random((m, k), dtype=np.float32)
        np.clip(u, np.float32(1e-7), np.float32(1 - 1e-7), out=u)
        latent = np.log(u)
        latent -= np.log1p(-u)
        latent += user_eta[start:stop, None]
        latent += cell_eta[agency[start:stop]]
        cat = np.zeros((m, k), dtype=np.uint8)
        for t in thresholds:
            cat += latent > t
        block = valid_lut[cat]
        v = gen.random((m, k), dtype=np.float32)
        if noop_code is not None:
            p_noop = p_noop_el[None, :] * _NO_OPINION_AGE[age[start:stop]].astype(np.float32)[
                :, None
            ]
            block[(v >= _P_BLANK) & (v < _P_BLANK + p_noop)] = noop_code
        block[v < _P_BLANK] = 0
        codes[start:stop] = block
    codes.flags.writeable = False
    return codes


def _frame(lay: _Layout, users: _Users) -> pd.DataFrame:
    """The sampling frame: one row per user with categorical design and profile columns."""
    n_users = users.agency.size
    agency = users.agency
    district_codes = np.array(
        [-1 if d is None else lay.dist_ids.index(d) for d in lay.district], dtype=np.int32
    )
    commune_codes = np.array(
        [-1 if c is None else lay.comm_ids.index(c) for c in lay.commune], dtype=np.int32
    )
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "province": _categorical(np.zeros(n_users, np.int8), [PROVINCE]),
            "district_id": _categorical(district_codes[agency], lay.dist_ids),
            "commune_id": _categorical(commune_codes[agency], lay.comm_ids),
            "agency_id": _categorical(agency, lay.agency_ids),
            "agency_name": _categorical(agency, lay.names),
            "agency_level": _categorical(users.level, LEVELS),
            "procedure_field": _categorical(users.field, PROCEDURE_FIELDS),
            "channel": _categorical(users.channel, CHANNELS),
            "sex": _categorical(users.sex, SEXES),
            "age_group": _categorical(users.age, AGE_GROUPS),
        }
    )


def _truth(num: np.ndarray, den: np.ndarray, sizes: np.ndarray, table: pd.DataFrame,
           n_users: int, q: Questionnaire) -> PopulationTruth:
    """The exact indices of the population, overall and per agency (``table``)."""
    overall = _truth_table(
        num.sum(axis=0, keepdims=True), den.sum(axis=0, keepdims=True),
        np.array([n_users]), pd.Index(["all"], name="domain"), q,
    )
    element_cols = list(q.element_codes)
    return PopulationTruth(
        overall_index=float(overall["index"].iloc[0]),
        overall_elements=overall[element_cols].iloc[0].rename("all"),
        overall_items=overall[list(q.items)].iloc[0].rename("all"),
        agencies=table[["index", *element_cols]].assign(N_h=sizes)[
            ["N_h", "index", *element_cols]
        ],
        agency_items=table[list(q.items)],
        mean_of_agencies=float(np.nanmean(table["index"].to_numpy())),
    )


def response_propensity(population: Population, rows: np.ndarray) -> np.ndarray:
    """True response probability of the users at frame positions ``rows``.

    Notes
    -----
    :math:`\\pi_i = \\operatorname{logit}^{-1}(0.6 + \\alpha_{\\text{age}} +
    \\lambda_{\\text{channel}} + \\sigma_{\\text{sex}} + \\ell_{\\text{level}})` with age
    effects 18-29 +0.5, 30-44 +0.25, 45-59 0, 60+ -0.6; channel in person 0, online +0.6,
    postal -0.8; women +0.15; level province +0.1, district 0, commune -0.1.  Young and online
    users respond more, older and postal users less; since the old and postal users are also
    more satisfied, unweighted respondent means are biased low and weighting on age and
    channel corrects them (nonresponse is missing at random given these variables).
    """
    f = population.frame
    age = f["age_group"].cat.codes.to_numpy()[rows]
    channel = f["channel"].cat.codes.to_numpy()[rows]
    sex = f["sex"].cat.codes.to_numpy()[rows]
    level = f["agency_level"].cat.codes.to_numpy()[rows]
    eta = (
        _RESPONSE_BASE
        + _RESPONSE_AGE[age]
        + _RESPONSE_CHANNEL[channel]
        + _RESPONSE_SEX[sex]
        + _RESPONSE_LEVEL[level]
    )
    return _sigmoid(eta)


def simulate_responses(
    population: Population,
    sample: pd.DataFrame,
    *,
    id: str = "user_id",
    rng: RNGLike,
    keep_propensity: bool = False,
) -> pd.DataFrame:
    """Play the field work for a drawn sample: who responds, and what they answer.

    Parameters
    ----------
    population : Population
        The population the sample was drawn from.
    sample : pandas.DataFrame
        Drawn units, with the column ``id`` holding population ``user_id`` values (duplicates
        allowed, e.g. with-replacement draws: each row is treated independently).  Not
        modified.
    id : str, default="user_id"
        Column of ``sample`` with the user ids.
    rng : int, numpy.random.Generator or numpy.random.SeedSequence
        Source of randomness for the response indicators (required, for reproducibility).
    keep_propensity : bool, default=False
        Also return the true response probability in a column ``response_propensity``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``sample`` (same index and row order) plus ``responded`` (bool) and one
        float64 column per questionnaire item: the user's answer codes for respondents (NaN
        for blanks), NaN for every item of a nonrespondent.  Nonrespondents are kept.

    Notes
    -----
    Unit response is Bernoulli with probability :func:`response_propensity` (depends on age,
    channel, sex and agency level, not on the answers given those).  The answers are the
    population's stored potential answers, so a census with full response reproduces
    :attr:`Population.truth` exactly.
    """
    if not isinstance(population, Population):
        raise SatsampleError(
            f"population must be a Population, got {type(population).__name__}"
        )
    if not isinstance(sample, pd.DataFrame):
        raise SatsampleError(f"sample must be a pandas DataFrame, got {type(sample).__name__}")
    check_columns(sample, id, role="id")
    clash = [c for c in ("responded", *population.items) if c in sample.columns]
    if keep_propensity and "response_propensity" in sample.columns:
        clash.append("response_propensity")
    if clash:
        raise SatsampleError(
            f"sample already has column(s) {', '.join(map(repr, clash))}; drop or rename them "
            "before simulating responses"
        )
    gen = as_generator(rng)
    ids = sample[id]
    if ids.isna().any():
        raise SatsampleError(f"id column {id!r} has {int(ids.isna().sum())} missing value(s)")
    if not pd.api.types.is_integer_dtype(ids.dtype):
        raise SatsampleError(
            f"id column {id!r} must hold the integer user_id of the population, got {ids.dtype}"
        )
    rows = ids.to_numpy(dtype=np.int64) - 1
    outside = (rows < 0) | (rows >= population.n_users)
    if outside.any():
        raise SatsampleError(
            f"id column {id!r}: {int(outside.sum())} value(s) are not user_ids of the "
            f"population (1..{population.n_users}), e.g. {int(ids.to_numpy()[outside][0])}"
        )
    propensity = response_propensity(population, rows)
    responded = gen.random(rows.shape[0]) < propensity
    block = population.codes[rows].astype(np.float64)
    block[population.codes[rows] == 0] = np.nan
    block[~responded] = np.nan
    added = pd.DataFrame(block, index=sample.index, columns=list(population.items))
    added.insert(0, "responded", responded)
    if keep_propensity:
        added.insert(1, "response_propensity", propensity)
    return pd.concat([sample.copy(), added], axis=1)
