"""Selection of a sample from a frame: stratified, PPS, Poisson, multistage, reserves.

Every draw uses one ``rng`` (int, ``numpy.random.Generator`` or ``SeedSequence``,
see :func:`satsample._random.as_generator`); the same ``rng`` and frame give the
same sample. Strata are processed in sorted order of their labels and, for the
methods that do not depend on the order of the list (all but the systematic
ones), units are taken in the order of their id within a stratum, so that
shuffling the rows of the frame does not change the sample.

Reserve lists
-------------
With ``n_reserve = r_h`` a fixed-size method draws ``k_h = n_h + r_h`` units,
then puts them in a random order (certainty units, π = 1, first); the first
``n_h`` form the main sample and the next ``r_h`` are the ordered reserves
(``reserve_rank`` 1, 2, ...). Releasing the first ``j`` reserves therefore gives
a random subsample of size ``n_h + j`` of a ``k_h``-sample, and the inclusion
probability of every unit then in the sample is

* SRSWOR and systematic: ``π = (n_h + j) / N_h`` (main + first j reserves is an
  SRSWOR of size n_h + j);
* PPS (systematic, Brewer, Sampford): certainty units ``π = 1``, others
  ``π = π_i(k_h) · (n_h + j − c_h) / (k_h − c_h)``, with ``π_i(k_h)`` the
  inclusion probability of the ``k_h``-draw and ``c_h`` the number of certainty
  units; with ``j = r_h`` this is ``π_i(k_h)``, and without reserves it is
  the usual ``π_i(n_h)``;
* SRSWR: every draw is a draw; the weight of a draw is ``N_h / (n_h + j)``
  (Hansen-Hurwitz), ``inclusion_prob`` is ``1 − (1 − 1/N_h)^(n_h + j)``.

Replacing a main-sample unit by a reserve (:func:`use_reserves`) releases the
next reserve of its stratum; the replaced unit stays in ``sample`` with
``replaced=True`` as a selected nonrespondent, so the design weights remain
those of the design actually used (``N_h/(n_h + j)``); a nonresponse
adjustment within the stratum then gives the respondents ``N_h / n_h``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._compat import renamed_keywords
from ._random import RNGLike, check_rng
from ._tables import TableField
from ._validation import (
    DesignError,
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    plain,
)
from .allocation import Allocation

__all__ = [
    "SelectedSample",
    "SelectionRecord",
    "Stage",
    "inclusion_probabilities",
    "release_reserves",
    "select",
    "select_multistage",
    "use_reserves",
]

Method = Literal["srswor", "srswr", "systematic", "pps_systematic", "pps_brewer",
                 "pps_sampford", "poisson", "bernoulli"]
METHODS = ("srswor", "srswr", "systematic", "pps_systematic", "pps_brewer", "pps_sampford",
           "poisson", "bernoulli")
_PPS = ("pps_systematic", "pps_brewer", "pps_sampford", "poisson")
_FIXED_PPS = ("pps_systematic", "pps_brewer", "pps_sampford")
_ORDERED = ("systematic", "pps_systematic")
_OUT_COLS = ("stratum", "inclusion_prob", "design_weight", "fpc", "reserve_rank",
             "selection_order", "replaced")
_EPS = 1e-9


# ---------------------------------------------------------------------------- probabilities


def _check_sizes(a: np.ndarray, labels: Sequence[Any] | None, name: str) -> None:
    bad = ~np.isfinite(a) | (a <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"unit {plain(labels[i])!r}" if labels is not None else f"position {i}"
        raise SatsampleError(f"size measure {name!r}: {int(bad.sum())} value(s) are zero, "
                             f"negative or missing (first {plain(a[i])!r} at {where}); PPS needs "
                             f"positive sizes")


def _pi_capped(a: np.ndarray, n: float) -> np.ndarray:
    """Inclusion probabilities ∝ a with iterative capping at 1 (no validation)."""
    N = len(a)
    if n >= N:
        return np.ones(N)
    pik = n * a / a.sum()
    cert = np.zeros(N, dtype=bool)
    while True:
        over = (pik >= 1.0) & ~cert
        if not over.any():
            break
        cert |= over
        rest = ~cert
        pik[cert] = 1.0
        pik[rest] = (n - cert.sum()) * a[rest] / a[rest].sum()
    return pik


def inclusion_probabilities(size: Any, n: Any, *, strata: Any = None) -> Any:
    """Inclusion probabilities proportional to size, capped at 1 (certainty units).

    Parameters
    ----------
    size : array-like or pandas.Series
        Positive size measure of each unit.
    n : float or mapping
        Sample size (expected size for Poisson); with ``strata``, a mapping or
        Series stratum → n_h (or one number for every stratum).
    strata : array-like, optional
        Stratum of each unit; probabilities are computed within each stratum.

    Returns
    -------
    numpy.ndarray or pandas.Series
        Same shape as ``size`` (a Series keeps its index); sums to n (to n_h per stratum).

    Notes
    -----
    ``π_i = n a_i / Σ a``; units with ``π_i ≥ 1`` get ``π_i = 1`` and the others are
    recomputed as ``(n − #certainty) a_i / Σ_rest a``, until no π exceeds 1
    (R ``sampling::inclusionprobabilities``). If ``n ≥`` the number of units,
    every π is 1.
    """
    idx = size.index if isinstance(size, pd.Series) else None
    a = np.asarray(size, dtype=np.float64)
    if a.ndim != 1:
        raise SatsampleError(f"size must be one-dimensional, got shape {a.shape}")
    _check_sizes(a, list(idx) if idx is not None else None, "size")
    if strata is None:
        nn = float(n)
        if not (np.isfinite(nn) and nn > 0):
            raise SatsampleError(f"n={n!r} must be positive")
        if nn > len(a) + _EPS:
            raise DesignError(f"n={n!r} exceeds the number of units ({len(a)})")
        out = _pi_capped(a, nn)
    else:
        st = np.asarray(strata)
        if st.shape != a.shape:
            raise SatsampleError("strata must have the same length as size")
        codes, uniq = pd.factorize(pd.Series(st))
        if (codes < 0).any():
            raise SatsampleError("strata has missing values")
        nmap = _n_mapping(n, list(uniq), "n")
        out = np.empty_like(a)
        for h, lab in enumerate(uniq):
            pos = np.flatnonzero(codes == h)
            nh = float(nmap[lab])
            if nh > len(pos) + _EPS:
                raise DesignError(f"stratum {lab!r}: n_h={nh:g} exceeds N_h={len(pos)}")
            out[pos] = _pi_capped(a[pos], nh) if nh > 0 else 0.0
    return pd.Series(out, index=idx, name="inclusion_prob") if idx is not None else out


# ---------------------------------------------------------------------------- draw kernels


def _draw_systematic(pi: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Positions selected by systematic sampling along the list (Madow), π fixed."""
    cert = pi >= 1.0 - 1e-12
    rest = np.flatnonzero(~cert)
    V = np.concatenate([[0.0], np.cumsum(pi[rest])])
    total = V[-1]
    if abs(total - round(total)) < 1e-7:
        V[-1] = round(total)
    u = gen.random()
    hit = np.floor(V[1:] - u) > np.floor(V[:-1] - u)
    sel = np.zeros(len(pi), dtype=bool)
    sel[cert] = True
    sel[rest[hit]] = True
    return np.flatnonzero(sel)


def _draw_brewer(pi: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Brewer's draw-by-draw method (exact π); returns positions in draw order."""
    cert = np.flatnonzero(pi >= 1.0 - 1e-12)
    rest = np.flatnonzero((pi < 1.0 - 1e-12) & (pi > 0))
    p = pi[rest]
    n = int(round(p.sum()))
    taken = np.zeros(len(rest), dtype=bool)
    order = []
    acc = 0.0
    for i in range(1, n + 1):
        num = p * ((n - acc) - p)
        den = (n - acc) - p * (n - i + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(taken, 0.0, num / den)
        q = np.maximum(q, 0.0)
        s = q.sum()
        j = int(np.searchsorted(np.cumsum(q / s), gen.random() * (1 - 1e-15), side="right"))
        j = min(j, len(q) - 1)
        while taken[j]:  # guard against float edges
            j -= 1
        taken[j] = True
        acc += p[j]
        order.append(j)
    return np.concatenate([cert, rest[np.asarray(order, dtype=np.int64)]]).astype(np.int64)


def _draw_sampford(pi: np.ndarray, gen: np.random.Generator, max_tries: int = 100_000
                   ) -> np.ndarray:
    """Sampford's rejective method (exact π)."""
    cert = np.flatnonzero(pi >= 1.0 - 1e-12)
    rest = np.flatnonzero((pi < 1.0 - 1e-12) & (pi > 0))
    p = pi[rest]
    n = int(round(p.sum()))
    if n == 0:
        return cert.astype(np.int64)
    first = p / p.sum()
    later = p / (1.0 - p)
    later = later / later.sum()
    for _ in range(max_tries):
        j0 = gen.choice(len(p), p=first)
        others = gen.choice(len(p), size=n - 1, p=later) if n > 1 else np.empty(0, int)
        draw = np.concatenate([[j0], others])
        if len(np.unique(draw)) == n:
            return np.concatenate([cert, rest[draw]]).astype(np.int64)
    raise SatsampleError("Sampford's method did not produce a sample without repeats in "
                         f"{max_tries} tries; use method='pps_brewer'")


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class SelectionRecord:
    """How a sample was drawn.

    Attributes
    ----------
    method : str
        Selection method.
    id, stratum, size : str or None
        Column roles.
    sort : tuple of str
        Sort order (implicit stratification) for the systematic methods.
    N, n, n_reserve : Mapping
        Per stratum: frame count, main sample size, reserve list length.
    released : Mapping
        Per stratum: reserves released so far.
    replaced : tuple
        Ids of units replaced by reserves.
    take_all : tuple
        Strata whose requested n_h exceeded N_h and were taken whole.
    rng : str
        Description of the randomness; ``seed_entropy``/``rng_state`` reproduce it.
    seed_entropy : int or None
        Entropy of the SeedSequence used (int seeds and ``rng=None`` draws).
    rng_state : Mapping or None
        ``bit_generator.state`` before drawing when a Generator was passed.
    stages : tuple
        For multistage selection, one record per stage.
    """

    method: str
    id: str
    stratum: str | None
    size: str | None
    sort: tuple[str, ...]
    N: Mapping[Any, int]
    n: Mapping[Any, float]
    n_reserve: Mapping[Any, int]
    released: Mapping[Any, int]
    replaced: tuple[Any, ...] = ()
    take_all: tuple[Any, ...] = ()
    rng: str = ""
    seed_entropy: int | None = None
    rng_state: Mapping[str, Any] | None = None
    stages: tuple[Any, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False)
class SelectedSample:
    """A drawn sample (a value: never modified; bookkeeping returns new objects).

    Attributes
    ----------
    sample : pandas.DataFrame
        The units in the sample (main sample and released reserves), with the
        frame's columns plus ``stratum``, ``inclusion_prob``, ``design_weight``,
        ``fpc`` (N_h), ``reserve_rank`` (0 main, 1.. released reserves),
        ``selection_order`` and ``replaced``; multistage samples add
        ``psu_stage{s}``, ``prob_stage{s}``, ``fpc_stage{s}``.
    reserves : pandas.DataFrame
        Reserves not yet released, ordered by stratum and ``reserve_rank``.
    record : SelectionRecord
        How the sample was drawn.
    """

    sample: pd.DataFrame = TableField()
    reserves: pd.DataFrame = TableField()
    record: SelectionRecord
    draws: pd.DataFrame = field(default=TableField(), repr=False)

    def __repr__(self) -> str:
        sample = self.sample
        reserves = self.reserves
        return (f"SelectedSample(rows={len(sample)}, reserves={len(reserves)}, "
                f"method={getattr(self.record, 'method', '?')!r}; see .sample, .reserves, "
                ".record)")

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`sample`."""
        return self.sample.copy()


# ---------------------------------------------------------------------------- helpers


def _n_mapping(n: Any, labels: list[Any], name: str) -> dict[Any, float]:
    if isinstance(n, Allocation):
        n = n.sizes
    if isinstance(n, (pd.Series, Mapping)):
        m = dict(n.items()) if isinstance(n, pd.Series) else dict(n)
        extra = [k for k in m if k not in set(labels)]
        if extra:
            raise DesignError(f"{name}: stratum/strata {extra[:5]!r} of the allocation are not "
                              f"in the frame")
        missing = [k for k in labels if k not in m]
        if missing:
            raise DesignError(f"{name}: no sample size for stratum/strata {missing[:5]!r}")
        out = {}
        for k in labels:
            v = m[k]
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise SatsampleError(f"{name}: value {v!r} for stratum {k!r} is not a number"
                                     ) from None
            if not np.isfinite(fv) or fv < 0:
                raise SatsampleError(f"{name}: value {v!r} for stratum {k!r} must be >= 0")
            out[k] = fv
        return out
    try:
        fv = float(n)
    except (TypeError, ValueError):
        raise SatsampleError(f"{name}={n!r} must be a number, a mapping stratum -> n or an "
                             f"Allocation") from None
    if not np.isfinite(fv) or fv < 0:
        raise SatsampleError(f"{name}={n!r} must be >= 0")
    return dict.fromkeys(labels, fv)


def _sorted_labels(values: pd.Series) -> tuple[np.ndarray, list[Any]]:
    try:
        codes, uniq = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniq = pd.factorize(values, sort=False)
    return codes, list(uniq)


def _describe_rng(rng: RNGLike) -> tuple[np.random.Generator, str, int | None, Any]:
    check_rng(rng)
    if isinstance(rng, np.random.Generator):
        state = copy.deepcopy(rng.bit_generator.state)
        return rng, "numpy Generator (state recorded)", None, state
    if isinstance(rng, np.random.SeedSequence):
        return (np.random.default_rng(rng), f"SeedSequence(entropy={rng.entropy}, "
                f"spawn_key={rng.spawn_key})", int(rng.entropy), None)
    if rng is None:
        ss = np.random.SeedSequence()
        return np.random.default_rng(ss), f"fresh SeedSequence(entropy={ss.entropy})", \
            int(ss.entropy), None
    return np.random.default_rng(int(rng)), f"seed {int(rng)}", int(rng), None


def _check_ids(frame: pd.DataFrame, id: str) -> None:
    check_columns(frame, id, role="unit id")
    ids = frame[id]
    if ids.isna().any():
        first = frame.index[ids.isna().to_numpy()][0]
        raise SatsampleError(f"unit id column {id!r} has {int(ids.isna().sum())} missing "
                             f"value(s) (first at row label {first!r})")
    dup = ids.duplicated(keep=False)
    if dup.any():
        vals = pd.unique(ids[dup])
        shown = ", ".join(repr(v) for v in pd.Series(vals[:5]).tolist())
        more = f" and {len(vals) - 5} more" if len(vals) > 5 else ""
        raise SatsampleError(
            f"unit id column {id!r} has {int(dup.sum())} rows with duplicated values: {shown}{more}"
        )


def _stratum_size(lab: Any, n_h: float, r_h: int, N_h: int, method: str,
                  take_all: bool) -> tuple[float, int, bool]:
    """Checked sample and reserve sizes of a stratum, and whether it became take-all."""
    if method in ("poisson", "bernoulli"):
        if r_h:
            raise SatsampleError(f"n_reserve is not available with method={method!r}")
        if n_h > N_h + _EPS:
            raise DesignError(f"stratum {lab!r}: expected size n_h={n_h:g} exceeds N_h={N_h}")
        return n_h, r_h, False
    if n_h != int(n_h):
        raise SatsampleError(f"stratum {lab!r}: n_h={n_h!r} must be an integer for "
                             f"method={method!r}")
    n_h = int(n_h)
    took = False
    if method != "srswr" and n_h > N_h:
        if not take_all:
            raise DesignError(f"stratum {lab!r}: n_h={n_h} exceeds N_h={N_h} "
                              f"(pass take_all=True to take the whole stratum)")
        took, n_h = True, N_h
    if method != "srswr":
        r_h = min(r_h, N_h - n_h)
    return n_h, r_h, took


def _draw_stratum(method: str, N_h: int, n_h: float, k: int, a: np.ndarray | None,
                  gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions drawn among the stratum's ``N_h`` ordered units (``k`` = sample + reserve).

    Returns the positions, their inclusion probabilities (of the sample and its reserve)
    and the indices, among the drawn, of certainty units (PPS).
    """
    none = np.zeros(0, dtype=np.int64)
    if method == "srswor":
        return gen.permutation(N_h)[:k], np.full(k, k / N_h), none
    if method == "srswr":
        chosen = gen.integers(0, N_h, size=k) if k else none
        return chosen, np.full(k, np.nan), none
    if method == "systematic":
        pi = np.full(N_h, k / N_h)
        chosen = _draw_systematic(pi, gen) if k else none
        return chosen, pi[chosen], none
    if method == "bernoulli":
        pi = np.full(N_h, n_h / N_h)
        chosen = np.flatnonzero(gen.random(N_h) < pi)
        return chosen, pi[chosen], none
    pi = _pi_capped(a, float(k)) if k else np.zeros(N_h)
    if method == "poisson":
        chosen = np.flatnonzero(gen.random(N_h) < pi)
    elif k == 0:
        chosen = none
    elif method == "pps_systematic":
        chosen = _draw_systematic(pi, gen)
    elif method == "pps_brewer":
        chosen = _draw_brewer(pi, gen)
    else:
        chosen = _draw_sampford(pi, gen)
    return chosen, pi[chosen], np.flatnonzero(pi[chosen] >= 1.0 - 1e-12)


def _reserve_order(lab: Any, chosen: np.ndarray, pi_full: np.ndarray, cert: np.ndarray,
                   n_h: int, k: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Certainty units first, then a random order of the others (the first n_h are the sample)."""
    is_cert = np.zeros(len(chosen), dtype=bool)
    is_cert[cert] = True
    if is_cert.sum() > n_h:
        raise DesignError(f"stratum {lab!r}: {int(is_cert.sum())} certainty units with "
                          f"n_h + n_reserve = {k} exceed n_h = {n_h}; reduce n_reserve")
    perm = np.concatenate([np.flatnonzero(is_cert),
                           gen.permutation(np.flatnonzero(~is_cert))]).astype(np.int64)
    return chosen[perm], pi_full[perm]


def _draw_table(table: pd.DataFrame, *, id: str, strata: np.ndarray, n: Any, method: str,
                size: str | None, sort: list[str], n_reserve: Any, take_all: bool,
                gen: np.random.Generator) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Draw within each stratum of ``table``; return the drawn rows and bookkeeping."""
    codes, labels = _sorted_labels(pd.Series(strata))
    nmap = _n_mapping(n, labels, "n")
    rmap = _n_mapping(n_reserve, labels, "n_reserve")
    a_all = None
    if method in _PPS:
        if size is None:
            raise SatsampleError(f"method={method!r} needs size= (the size measure column)")
        a_all = pd.to_numeric(table[size], errors="coerce").to_numpy(dtype=np.float64)
        _check_sizes(a_all, list(table[id]), size)
    ids = table[id].to_numpy()
    pieces = []
    Nrec, nrec, rrec, took = {}, {}, {}, []
    for h, lab in enumerate(labels):
        pos = np.flatnonzero(codes == h)
        N_h = len(pos)
        n_h, r_h, whole = _stratum_size(lab, nmap[lab], int(rmap[lab]), N_h, method, take_all)
        if whole:
            took.append(lab)
        Nrec[lab], nrec[lab], rrec[lab] = N_h, n_h, r_h
        # order of the units inside the stratum
        if method in _ORDERED:
            if sort:
                sub = table.iloc[pos].reset_index(drop=True)
                pos = pos[sub.sort_values(sort, kind="stable").index.to_numpy()]
        else:
            pos = pos[pd.Index(ids[pos]).argsort()]
        k = n_h + r_h
        chosen, pi_full, cert = _draw_stratum(method, N_h, n_h, k,
                                              None if a_all is None else a_all[pos], gen)
        if r_h > 0 and method not in ("srswor", "srswr"):
            chosen, pi_full = _reserve_order(lab, chosen, pi_full, cert, n_h, k, gen)
        rows = table.iloc[pos[chosen]].copy()
        rows["stratum"] = lab
        rows["fpc"] = float(N_h)
        n_main = len(chosen) if method in ("poisson", "bernoulli") else n_h
        rows["reserve_rank"] = np.maximum(np.arange(len(chosen)) - n_main + 1, 0)
        rows["selection_order"] = np.arange(1, len(chosen) + 1)
        rows["_pi_full"] = pi_full
        rows["_certainty"] = (pi_full >= 1.0 - 1e-12) if method in _FIXED_PPS else False
        pieces.append(rows)
    drawn = pd.concat(pieces) if pieces else table.iloc[:0].copy()
    info = dict(N=Nrec, n=nrec, n_reserve=rrec, take_all=tuple(took), labels=labels)
    return drawn, info


def _probabilities(draws: pd.DataFrame, record: SelectionRecord) -> pd.DataFrame:
    """Current inclusion probabilities and weights of the units in the sample."""
    out = []
    for lab, grp in draws.groupby("stratum", sort=False, observed=True):
        n_h = record.n[lab]
        r_h = record.n_reserve[lab]
        j = record.released.get(lab, 0)
        N_h = record.N[lab]
        g = grp[grp["reserve_rank"] <= j].copy()
        m = record.method
        if m in ("srswor", "systematic"):
            pi = np.full(len(g), (n_h + j) / N_h)
            w = 1.0 / pi
        elif m == "srswr":
            pi = np.full(len(g), 1.0 - (1.0 - 1.0 / N_h) ** (n_h + j))
            w = np.full(len(g), N_h / (n_h + j))
        elif m in _FIXED_PPS and r_h > 0:
            cert = g["_certainty"].to_numpy(dtype=bool)
            c = int(grp["_certainty"].sum())
            pi = np.where(cert, 1.0, g["_pi_full"].to_numpy() * (n_h + j - c) / (n_h + r_h - c))
            w = 1.0 / pi
        else:
            pi = g["_pi_full"].to_numpy(dtype=float)
            w = 1.0 / pi
        g["inclusion_prob"] = pi
        g["design_weight"] = w
        out.append(g)
    if not out:
        res = draws.iloc[:0].copy()
        res["inclusion_prob"] = []
        res["design_weight"] = []
        return res
    return pd.concat(out)


def _assemble(draws: pd.DataFrame, record: SelectionRecord) -> SelectedSample:
    released = record.released
    rel = draws["stratum"].map(lambda s: released.get(s, 0)).to_numpy()
    in_sample = draws["reserve_rank"].to_numpy() <= rel
    smp = _probabilities(draws, record)
    smp["replaced"] = smp[record.id].isin(set(record.replaced))
    front = [c for c in smp.columns if c not in _OUT_COLS and not c.startswith("_")]
    smp = smp[front + list(_OUT_COLS)].reset_index(drop=True)
    res = draws.loc[~in_sample, [c for c in draws.columns if not c.startswith("_")]]
    res = res.drop(columns=["fpc"]).reset_index(drop=True)
    return SelectedSample(sample=smp, reserves=res, record=record, draws=draws)


# ---------------------------------------------------------------------------- public API


@renamed_keywords(id="ids", stratum="strata")
def select(
    frame: pd.DataFrame,
    *,
    ids: str,
    strata: str | None = None,
    n: Any,
    method: Method = "srswor",
    size: str | None = None,
    sort: str | Sequence[str] | None = None,
    n_reserve: Any = 0,
    take_all: bool = False,
    rng: RNGLike = None,
) -> SelectedSample:
    """Draw a (stratified) sample from a frame of units.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit (service user); never modified.
    ids : str
        Column with a unique, non-missing unit id (the name ``survey_design`` uses;
        formerly ``id=``).
    strata : str, optional
        Stratum column (agency). None: one stratum labelled ``"all"`` (formerly
        ``stratum=``).
    n : int, mapping stratum → n_h, pandas.Series or Allocation
        Sample size; an int is the size *in every stratum* (a fixed quota per
        agency). For ``poisson``/``bernoulli`` it is the expected size.
    method : {"srswor", "srswr", "systematic", "pps_systematic", "pps_brewer", \
"pps_sampford", "poisson", "bernoulli"}, default="srswor"
        Selection method within each stratum.
    size : str, optional
        Size measure column for the PPS methods and ``poisson`` (positive values).
    sort : str or list of str, optional
        Order of the list for ``systematic`` and ``pps_systematic`` (implicit
        stratification); default: the frame's row order.
    n_reserve : int or mapping, default=0
        Length of the ordered reserve list per stratum (truncated to the
        units left); see the module docstring for the probabilities.
    take_all : bool, default=False
        If True a stratum with n_h > N_h is taken whole (recorded); otherwise
        it raises :class:`DesignError`.
    rng : int, Generator, SeedSequence or None
        Randomness; ``None`` draws fresh entropy and records it.

    Returns
    -------
    SelectedSample

    Notes
    -----
    Inclusion probabilities: SRSWOR/systematic/Bernoulli ``π = n_h/N_h``; PPS and
    Poisson ``π_i`` from :func:`inclusion_probabilities` within the stratum
    (certainty units π = 1); SRSWR ``π = 1 − (1 − 1/N_h)^{n_h}`` and weight
    ``N_h/n_h`` per draw (one row per draw). ``design_weight = 1/π`` otherwise.
    PPS systematic follows the list (``sort`` or frame order) with one random
    start: unit i is taken when ``⌊V_i − u⌋ > ⌊V_{i−1} − u⌋``, ``V_i = Σ_{j≤i} π_j``.
    Brewer: draw-by-draw with ``p_k ∝ π_k (n − A − π_k) / (n − A − π_k (n − i + 1))``
    (A = Σπ of the units already drawn, draw i = 1..n); Sampford: rejective
    (first draw ∝ π, the others ∝ π/(1 − π) with replacement, rejected if a
    unit repeats); both have exactly the π_i.
    """
    if not isinstance(frame, pd.DataFrame):
        raise SatsampleError("frame must be a pandas DataFrame")
    check_choice(method, name="method", allowed=METHODS)
    id, stratum = ids, strata  # the record keeps its field names
    _check_ids(frame, id)
    sort_cols = as_column_list(sort)
    check_columns(frame, stratum, role="stratum")
    check_columns(frame, size, role="size measure")
    check_columns(frame, sort_cols, role="sort")
    if sort_cols and method not in _ORDERED:
        raise SatsampleError(f"sort= only applies to systematic methods, not method={method!r}")
    clash = [c for c in _OUT_COLS if c in frame.columns and c != stratum] + [
        c for c in frame.columns if isinstance(c, str) and c.startswith("_pi_full")]
    if clash:
        raise SatsampleError(f"frame already has column(s) {clash!r} that select() creates; "
                             f"rename them")
    table = frame.copy()
    if stratum is not None:
        if table[stratum].isna().any():
            raise SatsampleError(f"stratum column {stratum!r} has "
                                 f"{int(table[stratum].isna().sum())} missing value(s)")
        labels = table[stratum].to_numpy()
    else:
        labels = np.full(len(table), "all", dtype=object)
    gen, desc, entropy, state = _describe_rng(rng)
    drawn, info = _draw_table(table, id=id, strata=labels, n=n, method=method, size=size,
                              sort=sort_cols, n_reserve=n_reserve, take_all=take_all, gen=gen)
    record = SelectionRecord(method=method, id=id, stratum=stratum, size=size,
                             sort=tuple(sort_cols), N=info["N"], n=info["n"],
                             n_reserve=info["n_reserve"], released={},
                             take_all=info["take_all"], rng=desc, seed_entropy=entropy,
                             rng_state=state)
    return _assemble(drawn, record)


def release_reserves(selected: SelectedSample, counts: Mapping[Any, int]) -> SelectedSample:
    """Release the next reserves of some strata into the sample.

    Parameters
    ----------
    selected : SelectedSample
        A sample from :func:`select` (not modified).
    counts : mapping stratum → int
        Number of additional reserves to release in each stratum.

    Returns
    -------
    SelectedSample
        With the released reserves in ``sample`` and every inclusion probability
        and weight of the affected strata recomputed (module docstring).
    """
    rec = selected.record
    if rec.stages:
        raise SatsampleError("reserves are not available for multistage samples")
    released = dict(rec.released)
    for lab, k in counts.items():
        if lab not in rec.N:
            raise DesignError(f"stratum {lab!r} is not in the sample (strata: "
                              f"{list(rec.N)[:10]!r})")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise SatsampleError(f"counts: {k!r} for stratum {lab!r} must be an integer >= 0")
        new = released.get(lab, 0) + int(k)
        if new > rec.n_reserve[lab]:
            raise DesignError(f"stratum {lab!r}: cannot release {new} reserves, the reserve "
                              f"list has {rec.n_reserve[lab]}")
        released[lab] = new
    record = SelectionRecord(**{**rec.__dict__, "released": released})
    return _assemble(selected.draws, record)


def use_reserves(selected: SelectedSample, replaced_ids: Sequence[Any]) -> SelectedSample:
    """Replace sampled units (unreachable, refusals) by the next reserves of their strata.

    Parameters
    ----------
    selected : SelectedSample
        The current sample (not modified).
    replaced_ids : sequence
        Ids of units in ``selected.sample`` to replace.

    Returns
    -------
    SelectedSample
        One reserve released per replaced unit; the replaced units stay in
        ``sample`` with ``replaced=True`` (selected nonrespondents) and all
        probabilities of the stratum are recomputed for ``n_h + j`` units.
    """
    rec = selected.record
    smp = selected.sample
    ids = list(replaced_ids)
    if len(set(ids)) != len(ids):
        raise SatsampleError("replaced_ids has duplicated ids")
    by_id = dict(zip(smp[rec.id], smp["stratum"], strict=True))
    counts: dict[Any, int] = {}
    for u in ids:
        if u not in by_id:
            raise SatsampleError(f"unit {u!r} (column {rec.id!r}) is not in the sample")
        if u in set(rec.replaced):
            raise SatsampleError(f"unit {u!r} was already replaced")
        counts[by_id[u]] = counts.get(by_id[u], 0) + 1
    rel = release_reserves(selected, counts)
    record = SelectionRecord(**{**rel.record.__dict__, "replaced": rec.replaced + tuple(ids)})
    return _assemble(selected.draws, record)


# ---------------------------------------------------------------------------- multistage


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One stage of a multistage selection.

    Attributes
    ----------
    cluster : str, optional
        Column identifying the clusters selected at this stage (district,
        commune...). Exactly one of ``cluster`` and ``unit``.
    unit : str, optional
        Unit id column (last stage only).
    n : int or mapping
        Stage 1: per stratum (int = in every stratum). Later stages: per selected
        parent cluster (int = in every parent, or mapping parent → n).
    method : str, default="srswor"
        As in :func:`select`.
    stratum : str, optional
        Stratum column of the first stage (constant within its clusters).
    size : str, optional
        Size measure: for a cluster stage, the sum of this column over the
        units of the cluster; PPS without ``size`` uses the number of units.
    sort : str or list of str, optional
        Sort order for systematic methods (cluster-level columns: first value).
    take_all : bool, default=False
        Take a whole parent when n exceeds its number of clusters/units.
    """

    cluster: str | None = None
    unit: str | None = None
    n: Any = None
    method: Method = "srswor"
    stratum: str | None = None
    size: str | None = None
    sort: str | Sequence[str] | None = None
    take_all: bool = False


def _check_stages(frame: pd.DataFrame, stages: Sequence[Stage]) -> list[Stage]:
    """The stages of :func:`select_multistage`: each well formed, columns present, nested."""
    if not isinstance(frame, pd.DataFrame):
        raise SatsampleError("frame must be a pandas DataFrame")
    stages = list(stages)
    if not stages:
        raise SatsampleError("stages is empty")
    for s, st in enumerate(stages, start=1):
        if not isinstance(st, Stage):
            raise SatsampleError(f"stage {s}: {st!r} is not a Stage")
        if (st.cluster is None) == (st.unit is None):
            raise SatsampleError(f"stage {s}: give exactly one of cluster= and unit=")
        if st.unit is not None and s != len(stages):
            raise SatsampleError(f"stage {s}: unit= is only allowed at the last stage")
        if st.stratum is not None and s != 1:
            raise SatsampleError(f"stage {s}: stratum= is only allowed at stage 1 (later "
                                 f"stages are stratified by the parent cluster)")
        check_choice(st.method, name=f"stage {s} method", allowed=METHODS)
        if st.method in ("srswr",):
            raise SatsampleError(f"stage {s}: method='srswr' is not supported in multistage")
        if st.n is None:
            raise SatsampleError(f"stage {s}: n= is required")
    if stages[-1].unit is None:
        raise SatsampleError("the last stage must select units (Stage(unit=<id column>, ...))")
    uid = stages[-1].unit
    _check_ids(frame, uid)
    for s, st in enumerate(stages, start=1):
        check_columns(frame, st.cluster, role=f"stage {s} cluster")
        check_columns(frame, st.stratum, role=f"stage {s} stratum")
        check_columns(frame, st.size, role=f"stage {s} size measure")
        check_columns(frame, as_column_list(st.sort), role=f"stage {s} sort")
        if st.cluster is not None and frame[st.cluster].isna().any():
            raise SatsampleError(f"stage {s} cluster column {st.cluster!r} has missing values")
    # nesting checks
    parents: list[str] = []
    if stages[0].stratum is not None:
        parents.append(stages[0].stratum)
    for s, st in enumerate(stages[:-1], start=1):
        if parents:
            nun = frame.groupby(st.cluster, sort=False)[parents[-1]].nunique(dropna=False)
            bad = nun[nun > 1]
            if len(bad):
                raise DesignError(f"stage {s}: cluster {bad.index[0]!r} of column "
                                  f"{st.cluster!r} lies in several {parents[-1]!r} values; "
                                  f"stages must be nested")
        parents.append(st.cluster)
    return stages


def _stage_table(current: pd.DataFrame, st: Stage, s: int, key: str, parent: str | None,
                 sort_cols: list[str]) -> tuple[pd.DataFrame, str | None]:
    """The table stage ``s`` draws from (one row per cluster, or the units) and its size column."""
    if st.cluster is not None:
        grp = current.groupby(key, sort=False)
        table = pd.DataFrame({key: list(grp.groups.keys())})
        if parent is not None:
            table[parent] = grp[parent].first().reindex(table[key]).to_numpy()
        if st.method in _PPS:
            measure = grp[st.size].sum() if st.size is not None else grp.size()
            table["_size"] = measure.reindex(table[key]).to_numpy(dtype=float)
        for c in sort_cols:
            table[c] = grp[c].first().reindex(table[key]).to_numpy()
        size_col = "_size" if st.method in _PPS else None
    else:
        table = current[[c for c in current.columns if not str(c).startswith(
            ("prob_stage", "fpc_stage", "psu_stage", "_stratum1"))]]
        size_col = st.size
        if st.method in _PPS and size_col is None:
            raise SatsampleError(f"stage {s}: method={st.method!r} needs size=")
    return table, size_col


def select_multistage(frame: pd.DataFrame, *, stages: Sequence[Stage],
                      rng: RNGLike = None) -> SelectedSample:
    """Multistage selection (e.g. districts, then communes, then users).

    Parameters
    ----------
    frame : pandas.DataFrame
        Unit-level frame with the cluster columns of every stage; not modified.
    stages : sequence of Stage
        Stage 1 may be stratified; stage s > 1 selects within each cluster
        selected at stage s − 1; the last stage has ``unit=`` the id column.
    rng : int, Generator, SeedSequence or None
        Randomness.

    Returns
    -------
    SelectedSample
        ``sample`` has, per stage s, ``psu_stage{s}`` (cluster or unit id),
        ``prob_stage{s}`` (conditional inclusion probability at that stage),
        ``fpc_stage{s}`` (number of clusters/units at that stage in the
        stratum or selected parent), and ``stratum`` (stage-1 stratum),
        ``inclusion_prob`` = Π prob_stage, ``design_weight`` = Π 1/prob_stage
        (= 1/inclusion_prob), ``fpc`` = fpc_stage1. Pass to a design as
        ``ids=[psu_stage1, ..., psu_stageS]``, ``strata="stratum"``,
        ``fpc=[fpc_stage1, ..., fpc_stageS]``.

    Notes
    -----
    Unconditional ``π_i = Π_s π_{s}(i | selected parent)``; the stage
    probabilities are those of :func:`select` with the cluster table of that
    stage (one row per cluster, sizes summed over its units).
    """
    stages = _check_stages(frame, stages)
    uid = stages[-1].unit
    gen, desc, entropy, state = _describe_rng(rng)
    current = frame.copy()
    stage_recs = []
    n_stages = len(stages)
    for s, st in enumerate(stages, start=1):
        parent = st.stratum if s == 1 else stages[s - 2].cluster
        key = st.cluster if st.cluster is not None else uid
        sort_cols = as_column_list(st.sort)
        table, size_col = _stage_table(current, st, s, key, parent, sort_cols)
        strata = (table[parent].to_numpy() if parent is not None
                  else np.full(len(table), "all", dtype=object))
        drawn, info = _draw_table(table, id=key, strata=strata, n=st.n, method=st.method,
                                  size=size_col, sort=sort_cols, n_reserve=0,
                                  take_all=st.take_all, gen=gen)
        keep = pd.DataFrame({key: drawn[key].to_numpy(),
                             f"psu_stage{s}": drawn[key].to_numpy(),
                             f"prob_stage{s}": drawn["_pi_full"].to_numpy(dtype=float),
                             f"fpc_stage{s}": drawn["fpc"].to_numpy(dtype=float)})
        if s == 1:
            keep["_stratum1"] = drawn["stratum"].to_numpy()
        current = current.merge(keep, on=key, how="inner")
        stage_recs.append(dict(stage=s, cluster=key, method=st.method, N=info["N"],
                               n=info["n"], take_all=info["take_all"]))
    out = current
    prob = np.ones(len(out))
    weight = np.ones(len(out))
    for s in range(1, n_stages + 1):
        ps = out[f"prob_stage{s}"].to_numpy(dtype=float)
        prob = prob * ps
        weight = weight / ps
    out["inclusion_prob"] = prob
    out["design_weight"] = weight
    out["fpc"] = out["fpc_stage1"]
    out["stratum"] = out.pop("_stratum1")
    out = out.sort_values(["stratum", *[f"psu_stage{s}" for s in range(1, n_stages + 1)]],
                          kind="stable")
    out["reserve_rank"] = 0
    out["selection_order"] = np.arange(1, len(out) + 1)
    out["replaced"] = False
    st1 = stages[0]
    record = SelectionRecord(method="multistage", id=uid, stratum=st1.stratum, size=None,
                             sort=(), N=stage_recs[0]["N"], n=stage_recs[0]["n"],
                             n_reserve={}, released={}, rng=desc, seed_entropy=entropy,
                             rng_state=state, stages=tuple(stage_recs))
    return SelectedSample(sample=out.reset_index(drop=True),
                          reserves=out.iloc[:0].copy(), record=record,
                          draws=out.reset_index(drop=True))
