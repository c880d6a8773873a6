"""Allocation of a sample across strata (agencies).

Rules: proportional, equal, Neyman, optimal with per-stratum costs (fixed
total n, fixed cost budget or fixed variance), power allocation (Bankier),
with per-stratum minimum and maximum, never more than N_h (take-all strata,
the surplus redistributed), and integer rounding that keeps the total.

:func:`allocate_for_precision` gives the smallest sample such that every
stratum (agency) reaches a target margin of error, optionally with a
national target and a total budget.

Bounded allocation (all rules)
------------------------------
Every rule has a score ``a_h`` and, without bounds, ``n_h = n a_h / Σ a``.
With bounds ``L_h ≤ n_h ≤ U_h`` (``L_h = min(min_n, N_h)``,
``U_h = min(max_n, N_h)``) the allocation is ``n_h = clip(λ a_h, L_h, U_h)``
with the single ``λ`` for which the total (or the cost ``Σ c_h n_h``) is met.
This is what the iterative "cap at N_h and reallocate the rest with the same
rule" of R ``sampling``/SAS gives, and it is the exact minimiser of
``Σ a_h² / n_h`` (the variance for Neyman scores) under the bounds, so the
result does not depend on the order in which violations are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._compat import renamed_keywords
from ._validation import DesignError, SatsampleError, check_choice, check_probability, plain
from .samplesize import z_value

__all__ = ["Allocation", "allocate", "allocate_for_precision", "round_allocation"]

Rule = Literal["proportional", "equal", "neyman", "optimal", "power"]
AllocRounding = Literal["hamilton", "ceil", "none"]

_TOL = 1e-9


@dataclass(frozen=True, kw_only=True, eq=False)
class Allocation:
    """An allocation of a sample to strata (a result value; arrays are read-only).

    Attributes
    ----------
    strata : pandas.Index
        Stratum labels, in the order of the input.
    N_h : numpy.ndarray
        Population count per stratum.
    n_h : numpy.ndarray
        Allocated (rounded unless ``rounding="none"``) sample size per stratum:
        the number of units to select.
    n_exact : numpy.ndarray
        Unrounded allocation.
    lower, upper : numpy.ndarray
        Bounds used (``min(min_n, N_h)``, ``min(max_n, N_h)``).
    constraints : Mapping[str, numpy.ndarray]
        Boolean arrays telling which constraint binds in each stratum:
        ``min``, ``max``, ``take_all``, ``budget``, ``national``.
    sd : numpy.ndarray or None
        Unit standard deviation ``S_h`` used by the rule (``√(p(1 − p))`` from ``p``).
    cost : numpy.ndarray or None
        Cost per unit.
    expected_moe : numpy.ndarray or None
        Expected margin of error of the stratum mean/proportion (when ``sd`` or ``p`` given).
    target_moe : numpy.ndarray or None
        Target margins (:func:`allocate_for_precision`).
    rule : str
        Name of the rule.
    options : Mapping
        All options, for the record.
    n : float
        Total sample size (sum of ``n_h``).
    total_cost : float or None
        ``Σ c_h n_h`` when costs were given.
    national_variance, national_moe : float or None
        Variance and margin of error of the stratified mean/proportion
        (``W_h = N_h / N``) at ``n_h``.
    """

    strata: pd.Index
    N_h: np.ndarray
    n_h: np.ndarray
    n_exact: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    constraints: Mapping[str, np.ndarray]
    rule: str
    options: Mapping[str, Any] = field(default_factory=dict)
    sd: np.ndarray | None = None
    cost: np.ndarray | None = None
    expected_moe: np.ndarray | None = None
    target_moe: np.ndarray | None = None
    n: float = 0.0
    total_cost: float | None = None
    national_variance: float | None = None
    national_moe: float | None = None

    def __repr__(self) -> str:
        n_h = np.asarray(self.n_h)
        rng = f"{int(n_h.min())}..{int(n_h.max())}" if n_h.size else "-"
        return (f"Allocation(rule={self.rule!r}, n={int(n_h.sum())}, strata={n_h.size}, "
                f"n_h={rng}; see .to_frame())")

    @property
    def sizes(self) -> pd.Series:
        """Allocated sizes as a Series indexed by stratum (what :func:`select` uses)."""
        return pd.Series(self.n_h.copy(), index=self.strata.copy(), name="n_h")

    def to_frame(self) -> pd.DataFrame:
        """One row per stratum: N_h, n_h, n_exact, bounds, margins and binding constraints."""
        out = pd.DataFrame({"N_h": self.N_h, "n_h": self.n_h, "n_exact": self.n_exact,
                            "lower": self.lower, "upper": self.upper}, index=self.strata.copy())
        out.index.name = self.strata.name or "stratum"
        if self.sd is not None:
            out["sd"] = self.sd
        if self.cost is not None:
            out["cost"] = self.cost
        rr = np.asarray(self.options.get("response_rate", 1.0), dtype=float)
        out["expected_respondents"] = np.asarray(self.n_h, dtype=float) * rr
        needed = self.options.get("respondents_needed")
        if needed is not None:
            out["respondents_needed"] = np.asarray(needed, dtype=float)
            out["publishable"] = (out["expected_respondents"].to_numpy()
                                  >= out["respondents_needed"].to_numpy() * (1 - 1e-9))
        if self.expected_moe is not None:
            out["expected_moe"] = self.expected_moe
        if self.target_moe is not None:
            out["target_moe"] = self.target_moe
            out["target_met"] = self.expected_moe <= self.target_moe * (1 + 1e-9)
        names = list(self.constraints)
        for k in names:
            out[f"bind_{k}" if k != "take_all" else "take_all"] = self.constraints[k]
        out["binds"] = [",".join(k for k in names if self.constraints[k][i])
                        for i in range(len(self.strata))]
        return out


# ---------------------------------------------------------------------------- helpers


def _as_counts(strata_sizes: Any) -> pd.Series:
    if isinstance(strata_sizes, Mapping):
        strata_sizes = pd.Series(strata_sizes)
    if not isinstance(strata_sizes, pd.Series):
        raise SatsampleError("strata_sizes must be a pandas Series of N_h indexed by stratum")
    if len(strata_sizes) == 0:
        raise SatsampleError("strata_sizes is empty")
    if strata_sizes.index.has_duplicates:
        dup = list(strata_sizes.index[strata_sizes.index.duplicated()])
        raise SatsampleError(f"strata_sizes: duplicated stratum label(s) {dup[:5]!r}")
    vals = pd.to_numeric(strata_sizes, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals) | (vals < 1) | (vals != np.round(vals))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SatsampleError(f"strata_sizes: N_h of stratum {plain(strata_sizes.index[i])!r} is "
                             f"{plain(strata_sizes.iloc[i])!r}; it must be an integer >= 1")
    return pd.Series(vals.astype(np.int64), index=strata_sizes.index.copy(), name="N_h")


def _per_stratum(value: Any, index: pd.Index, name: str, *, positive: bool = False,
                 nonneg: bool = False) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, (pd.Series, Mapping)):
        s = pd.Series(value) if isinstance(value, Mapping) else value
        missing = [h for h in index if h not in s.index]
        if missing:
            raise SatsampleError(f"{name}: no value for stratum/strata {missing[:5]!r}")
        extra = [h for h in s.index if h not in index]
        if extra:
            raise SatsampleError(f"{name}: stratum/strata {extra[:5]!r} are not in strata_sizes")
        arr = pd.to_numeric(s.reindex(index), errors="coerce").to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(len(index), float(arr))
        elif arr.shape != (len(index),):
            raise SatsampleError(f"{name}: expected a scalar or {len(index)} values, got shape "
                                 f"{arr.shape}")
    bad = ~np.isfinite(arr)
    if positive:
        bad |= arr <= 0
    if nonneg:
        bad |= arr < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        req = " (must be > 0)" if positive else (" (must be >= 0)" if nonneg else "")
        raise SatsampleError(f"{name}: value {plain(arr[i])!r} for stratum {plain(index[i])!r} is invalid{req}")
    return arr


def _clip_solve(a: np.ndarray, L: np.ndarray, U: np.ndarray, c: np.ndarray,
                total: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve ``Σ c_h clip(λ a_h, L_h, U_h) = total`` for the allocation.

    Returns the allocation and the masks of strata fixed at their lower and upper bound.
    """
    base = float(np.sum(c * L))
    top = float(np.sum(c * U))
    scale = max(1.0, abs(total))
    if total < base - _TOL * scale or total > top + _TOL * scale:
        raise AssertionError("infeasible total reached _clip_solve")  # checked by callers
    pos = a > 0
    at_low = ~pos
    at_up = np.zeros_like(pos)
    if total >= top - 1e-12 * scale:
        return U.astype(float).copy(), np.zeros_like(pos), np.ones_like(pos)
    if pos.any():
        bps = np.unique(np.concatenate([L[pos] / a[pos], U[pos] / a[pos]]))
        g = np.array([np.sum(c * np.clip(b * a, L, U)) for b in bps])
        # interval [bps[k], bps[k+1]] containing the root; below bps[0] all at L
        k = int(np.searchsorted(g, total, side="right")) - 1
        if k < 0:
            lam_mid = bps[0] / 2.0
        elif k >= len(bps) - 1:
            lam_mid = bps[-1] * 2.0 + 1.0
        else:
            lam_mid = 0.5 * (bps[k] + bps[k + 1])
        at_low = (lam_mid * a <= L) | ~pos
        at_up = (lam_mid * a >= U) & pos & ~at_low
    free = ~(at_low | at_up)
    n = np.where(at_low, L, U).astype(float)
    rem = total - float(np.sum(c[~free] * n[~free]))
    denom = float(np.sum(c[free] * a[free]))
    if free.any() and denom > 0:
        n[free] = rem * a[free] / denom
    return n, at_low & (L < U), at_up


def round_allocation(x: Any, total: int | None = None, *, rounding: AllocRounding = "hamilton",
                     upper: Any = None) -> np.ndarray:
    """Round an allocation to integers.

    Parameters
    ----------
    x : array-like of float
        Unrounded allocation.
    total : int or None, default=None
        Total to keep with ``"hamilton"``; default ``round(Σ x)``.
    rounding : {"hamilton", "ceil", "none"}, default="hamilton"
        Largest remainder, ceiling, or no rounding.
    upper : array-like or None
        Integer upper bounds never exceeded by the +1 steps.

    Returns
    -------
    numpy.ndarray
        int64 (float64 for ``"none"``).

    Notes
    -----
    Hamilton: ``n_h = ⌊x_h⌋``, then +1 to the ``total − Σ⌊x_h⌋`` strata with the
    largest fractional parts ``x_h − ⌊x_h⌋``; ties go to the stratum that comes
    first in the input (stable sort). Values within 1e-9 (relative) of an
    integer are taken as that integer (float noise), in both rules.
    """
    check_choice(rounding, name="rounding", allowed=("hamilton", "ceil", "none"))
    x = np.asarray(x, dtype=np.float64)
    if rounding == "none":
        return x.copy()
    tol = _TOL * np.maximum(1.0, np.abs(x))
    if rounding == "ceil":
        return np.ceil(x - tol).astype(np.int64)
    fl = np.floor(x + tol)
    frac = np.maximum(x - fl, 0.0)
    if total is None:
        total = round(float(np.sum(x)))
    r = int(round(total - float(np.sum(fl))))
    if r < 0 or r > len(x):
        raise SatsampleError(f"cannot round the allocation to the total {total} (sum of floors "
                             f"{int(np.sum(fl))})")
    cap = np.full(len(x), np.inf) if upper is None else np.asarray(upper, dtype=float)
    order = np.argsort(-frac, kind="stable")
    order = order[fl[order] + 1 <= cap[order] + 1e-9]
    out = fl.copy()
    out[order[:r]] += 1
    return out.astype(np.int64)


def _variance_terms(N: np.ndarray, sd: np.ndarray, from_p: bool, deff: np.ndarray,
                    rr: np.ndarray) -> np.ndarray:
    """Unit variance ``S²_h`` (times deff, per respondent) such that V_h = K_h (1/m − 1/N)."""
    S2 = sd**2 * (N / np.maximum(N - 1.0, 1.0) if from_p else 1.0)
    return deff * S2


def _stratum_var(n: np.ndarray, N: np.ndarray, K: np.ndarray, rr: np.ndarray) -> np.ndarray:
    m = np.asarray(n, dtype=float) * rr
    with np.errstate(divide="ignore", invalid="ignore"):
        v = K * (1.0 / m - 1.0 / N)
    v = np.where(m > 0, np.maximum(v, 0.0), np.inf)
    return v


def _bounds(N: np.ndarray, index: pd.Index, min_n: Any, max_n: Any) -> tuple[np.ndarray, ...]:
    mn = _per_stratum(min_n, index, "min_n", nonneg=True)
    mx = _per_stratum(max_n, index, "max_n", nonneg=True)
    Nf = N.astype(float)
    L = np.zeros(len(N)) if mn is None else np.minimum(mn, Nf)
    U = Nf.copy() if mx is None else np.minimum(mx, Nf)
    if mn is not None and mx is not None:
        bad = mn > mx
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SatsampleError(f"min_n={mn[i]:g} > max_n={mx[i]:g} for stratum {plain(index[i])!r}")
    return L, U, mn, mx


# ---------------------------------------------------------------------------- allocate


def _bisect(ok: Any, lo: float, hi: float, *, rel: float = 0.0, absolute: float = 0.0) -> float:
    """Smallest ``x`` in ``(lo, hi]`` (to the tolerance) with ``ok(x)``; ``ok`` is monotone, ``ok(hi)``.

    Stops after 200 halvings or when ``hi - lo <= absolute + rel * hi``.
    """
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ok(mid):
            hi = mid
        else:
            lo = mid
        if hi - lo <= absolute + rel * hi:
            break
    return hi


def _check_unit_interval(arr: np.ndarray, index: pd.Index, name: str, *, closed: bool,
                         hint: str = "") -> None:
    """``arr`` in [0, 1] (``closed``) or in (0, 1); the error names the stratum and value."""
    bad = ((arr < 0) | (arr > 1)) if closed else ((arr <= 0) | (arr >= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = "[0, 1]" if closed else "(0, 1)"
        raise SatsampleError(f"{name}: value {plain(arr[i])!r} for stratum {plain(index[i])!r} "
                             f"must lie in {where}{hint if arr[i] >= 1 else ''}")


def _check_response_rate(rr: np.ndarray, index: pd.Index) -> None:
    if (rr > 1).any():
        i = int(np.flatnonzero(rr > 1)[0])
        raise SatsampleError(f"response_rate: value {plain(rr[i])!r} for stratum "
                             f"{plain(index[i])!r} must lie in (0, 1]")


def _rule_scores(rule: str, Nf: np.ndarray, S: np.ndarray | None, c: np.ndarray | None,
                 power: float) -> np.ndarray:
    """Scores ``a_h`` of a rule (``n_h ∝ a_h`` before bounds); see :func:`allocate`."""
    if rule in ("neyman", "optimal") and S is None:
        raise SatsampleError(f"rule={rule!r} needs sd= (or p=) per stratum")
    if rule == "optimal" and c is None:
        raise SatsampleError("rule='optimal' needs cost= per stratum")
    if not np.isfinite(power):
        raise SatsampleError(f"power={power!r} must be a finite number")
    if rule == "proportional":
        return Nf.copy()
    if rule == "equal":
        return np.ones(len(Nf))
    if rule == "neyman":
        return Nf * S
    if rule == "optimal":
        return Nf * S / np.sqrt(c)
    return (S if S is not None else 1.0) * Nf**power


def _total_for_variance(a: np.ndarray, L: np.ndarray, U: np.ndarray, Nf: np.ndarray,
                        K: np.ndarray, rr: np.ndarray, target_variance: float,
                        rounding: str) -> float:
    """Smallest total n whose bounded allocation gives a national variance <= the target."""
    if not (np.isfinite(target_variance) and target_variance > 0):
        raise SatsampleError(f"target_variance={target_variance!r} must be a positive number")
    W = Nf / Nf.sum()
    Ucap = np.minimum(U, Nf)

    def vtot(tot: float) -> float:
        x, _, _ = _clip_solve(a, L, Ucap, np.ones(len(Nf)), tot)
        return float(np.sum(W**2 * _stratum_var(x, Nf, K, rr)))

    lo, hi = float(np.sum(L)), float(np.sum(Ucap))
    if vtot(hi) > target_variance:
        raise SatsampleError(f"target_variance={target_variance!r} cannot be reached even "
                             f"with the largest allocation (variance {vtot(hi):.6g} at n={hi:g})")
    hi = _bisect(lambda t: vtot(t) <= target_variance, lo, hi, absolute=1e-9)
    target = float(math.ceil(hi - 1e-9)) if rounding != "none" else hi
    return min(target, float(np.sum(Ucap)))


def _check_minimum_affordable(target: float, low_tot: float, n_strata: int, min_n: Any,
                              budget: float | None) -> None:
    """A total (or budget) below what the per-stratum minimums cost: say what they cost."""
    if target >= low_tot - _TOL * max(1.0, target):
        return
    unit = "costs" if budget is not None else "needs"
    scalar = isinstance(min_n, (int, float, np.number)) and not isinstance(min_n, bool)
    shown_min = f"min_n={plain(min_n)!r}" if scalar else "min_n per stratum"
    raise SatsampleError(
        f"{'budget' if budget is not None else 'n'}={target:g} cannot give each of the "
        f"{n_strata} strata its minimum sample ({shown_min}, capped at N_h): the minimum {unit} "
        f"{low_tot:g}" + (" (sum of cost x minimum)" if budget is not None else " units")
        + "; raise it, or lower min_n= (min_n=None allows strata with no sample and "
        "no variance estimate)"
    )


def _round_within_budget(x: np.ndarray, U: np.ndarray, c: np.ndarray, budget: float) -> np.ndarray:
    """Hamilton rounding under a cost budget: +1 steps by largest remainder while affordable."""
    tol = _TOL * np.maximum(1.0, x)
    fl = np.floor(x + tol)
    frac = np.maximum(x - fl, 0.0)
    spent = float(np.sum(c * fl))
    for i in np.argsort(-frac, kind="stable"):
        if frac[i] <= 0:
            break
        if fl[i] + 1 <= U[i] and spent + c[i] <= budget * (1 + 1e-12):
            fl[i] += 1
            spent += c[i]
    return fl.astype(np.int64)




@renamed_keywords(variance="target_variance")
def allocate(
    strata_sizes: pd.Series | Mapping[Any, int],
    n: int | None = None,
    *,
    rule: Rule = "proportional",
    sd: Any = None,
    p: Any = None,
    cost: Any = None,
    budget: float | None = None,
    target_variance: float | None = None,
    power: float = 0.5,
    min_n: Any = 2,
    max_n: Any = None,
    take_all: bool = True,
    rounding: AllocRounding = "hamilton",
    deff: Any = 1.0,
    response_rate: Any = 1.0,
    level: float = 0.95,
) -> Allocation:
    """Allocate a sample of size ``n`` (or a budget, or a variance target) to strata.

    Parameters
    ----------
    strata_sizes : pandas.Series or mapping
        Population count ``N_h`` per stratum, indexed by stratum label.
    n : int or None
        Total sample size (units to select). Omit when ``budget`` or
        ``variance`` is given.
    rule : {"proportional", "equal", "neyman", "optimal", "power"}, default="proportional"
        Allocation rule; see Notes.
    sd : scalar, Series or mapping, optional
        Standard deviation ``S_h`` of the study variable per stratum (divisor N − 1).
        Required by "neyman" and "optimal" unless ``p`` is given.
    p : scalar, Series or mapping, optional
        Expected proportion per stratum; gives ``S_h = √(p_h(1 − p_h))`` and the
        exact variance of a proportion (factor ``N_h/(N_h − 1)``).
    cost : scalar, Series or mapping, optional
        Cost per sampled unit in each stratum ("optimal"; also totals a budget).
    budget : float, optional
        Total cost ``Σ c_h n_h`` to spend (rule "optimal" with ``n=None``).
    target_variance : float, optional
        Target variance of the stratified mean (rule "neyman"/"optimal" with
        ``n=None``): the smallest total reaching it is used.
    power : float, default=0.5
        Exponent ``q`` of power allocation.
    min_n : scalar, Series or mapping or None, default=2
        Smallest sample per stratum (capped at ``N_h``; a ``min_n`` above
        ``N_h`` means take-all).  The default 2 gives every stratum a
        variance estimate; an ``n`` or ``budget`` that cannot pay for it
        raises :class:`SatsampleError` saying what the minimum costs.
        ``None`` (or 0) allows empty strata.
    max_n : scalar, Series or mapping, optional
        Largest sample per stratum.
    take_all : bool, default=True
        Cap at ``N_h`` and redistribute the surplus. If False, a stratum whose
        allocation would exceed ``N_h`` raises :class:`DesignError`.
    rounding : {"hamilton", "ceil", "none"}, default="hamilton"
        Integer rounding (see :func:`round_allocation`). Hamilton keeps the
        total exactly; "ceil" may exceed it; "none" keeps real numbers.
        With a cost budget, Hamilton adds the +1 steps only while the cost
        stays within the budget.
    deff, response_rate : scalar, Series or mapping, default=1.0
        Used for the expected margins of error (respondents ``n_h × rr_h``).
    level : float, default=0.95
        Confidence level of the expected margins.

    Returns
    -------
    Allocation

    Notes
    -----
    Scores ``a_h`` (``n_h ∝ a_h`` before bounds):

    * proportional: ``a_h = N_h``; equal: ``a_h = 1``;
    * neyman: ``a_h = N_h S_h``;
    * optimal: ``a_h = N_h S_h / √c_h``; with a budget C,
      ``n_h = C · N_h S_h/√c_h / Σ_k N_k S_k √c_k``;
    * power (Bankier 1988): ``a_h = S_h N_h^q`` (``S_h = 1`` if no sd/p),
      minimising ``Σ N_h^{2q} S_h²/n_h``: q = 1 is Neyman, q = 0 equalises
      the precision of the strata, q = 0.5 is the usual compromise.

    Bounds: ``n_h = clip(λ a_h, L_h, U_h)`` (module docstring), which is the
    iterative capping of R ``sampling`` with the surplus redistributed.

    Expected variance of the stratum mean (``m_h = n_h × rr_h`` respondents):
    ``V_h = deff_h S*_h² (1/m_h − 1/N_h)`` with ``S*_h² = S_h²`` for ``sd`` and
    ``p_h(1 − p_h) N_h/(N_h − 1)`` for ``p``; ``moe_h = z √V_h``. National:
    ``V = Σ W_h² V_h``, ``W_h = N_h/N``.

    Fixed variance target: the smallest total n whose (bounded) allocation gives
    ``V ≤ variance`` (found by bisection on n; the total is then rounded up).
    """
    counts = _as_counts(strata_sizes)
    index = counts.index
    N = counts.to_numpy()
    Nf = N.astype(float)
    check_choice(rule, name="rule", allowed=("proportional", "equal", "neyman", "optimal", "power"))
    check_choice(rounding, name="rounding", allowed=("hamilton", "ceil", "none"))
    if sd is not None and p is not None:
        raise SatsampleError("give either sd= or p=, not both")
    p_arr = _per_stratum(p, index, "p")
    if p_arr is not None:
        _check_unit_interval(p_arr, index, "p", closed=True)
    S = np.sqrt(p_arr * (1 - p_arr)) if p_arr is not None else _per_stratum(
        sd, index, "sd", nonneg=True)
    c = _per_stratum(cost, index, "cost", positive=True)
    deff_a = _per_stratum(deff, index, "deff", positive=True)
    rr = _per_stratum(response_rate, index, "response_rate", positive=True)
    _check_response_rate(rr, index)
    a = _rule_scores(rule, Nf, S, c, power)

    L, U, mn, mx = _bounds(N, index, min_n, max_n)
    if sum(x is not None for x in (n, budget, target_variance)) != 1:
        raise SatsampleError("give exactly one of n=, budget= or target_variance=")
    if budget is not None and c is None:
        raise SatsampleError("budget= needs cost= per stratum")
    if target_variance is not None and S is None:
        raise SatsampleError("target_variance= needs sd= (or p=) per stratum")

    cons_c = c if budget is not None else np.ones(len(N))
    if target_variance is not None:
        K = _variance_terms(Nf, S, p_arr is not None, deff_a, rr)
        target = _total_for_variance(a, L, U, Nf, K, rr, target_variance, rounding)
    elif budget is not None:
        if not (np.isfinite(budget) and budget > 0):
            raise SatsampleError(f"budget={budget!r} must be a positive number")
        target = float(budget)
    else:
        if rounding != "none" and (isinstance(n, bool) or not float(n).is_integer()):
            raise SatsampleError(f"n={n!r} must be an integer (or use rounding='none')")
        if not (np.isfinite(float(n)) and float(n) > 0):
            raise SatsampleError(f"n={n!r} must be positive")
        target = float(n)

    _check_minimum_affordable(target, float(np.sum(cons_c * L)), len(N), min_n, budget)
    if not take_all:
        # allocate as if N_h did not cap, then refuse any stratum above N_h
        big = float(np.sum(Nf)) + target + 1.0
        U_free = np.full(len(N), big) if mx is None else np.maximum(mx.astype(float), L)
        x_unb, _, _ = _clip_solve(a, L, U_free, cons_c, target)
        over = x_unb > Nf * (1 + _TOL)
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise DesignError(f"stratum {plain(index[i])!r}: allocated n_h={x_unb[i]:.6g} exceeds "
                              f"N_h={N[i]} and take_all=False")
    top_tot = float(np.sum(cons_c * U))
    if target > top_tot + _TOL * max(1.0, target):
        raise SatsampleError(f"{'cost' if budget is not None else 'n'}={target:g} exceeds what "
                             f"the strata can take (N_h or max_n): {top_tot:g}")
    x, at_low, at_up = _clip_solve(a, L, U, cons_c, min(target, top_tot))

    if rounding == "none":
        n_h = x.copy()
    elif rounding == "ceil":
        n_h = round_allocation(x, rounding="ceil")
    elif budget is not None:
        n_h = _round_within_budget(x, U, c, budget)
    else:
        n_h = round_allocation(x, int(round(min(target, top_tot))), rounding="hamilton", upper=U)

    cons = {
        "min": at_low & (mn is not None) & (L > 0),
        "max": at_up & (Nf > U),
        "take_all": np.asarray(n_h, dtype=float) >= Nf,
    }
    opts = dict(rule=rule, n=n, budget=budget, target_variance=target_variance, power=power,
                min_n=min_n, max_n=max_n, take_all=take_all, rounding=rounding, level=level,
                response_rate=float(rr[0]) if np.all(rr == rr[0]) else None, deff=deff,
                sd_from="p" if p_arr is not None else ("sd" if S is not None else None))
    return _make_allocation(index, N, n_h, x, L, U, cons, rule, opts, S, p_arr is not None, c,
                            deff_a, rr, level, None)

def _fmt_num(x: float) -> str:
    return f"{x:g}"


def _make_allocation(index: pd.Index, N: np.ndarray, n_h: np.ndarray, x: np.ndarray,
                     L: np.ndarray, U: np.ndarray, cons: dict[str, np.ndarray], rule: str,
                     opts: dict[str, Any], S: np.ndarray | None, from_p: bool,
                     c: np.ndarray | None, deff: np.ndarray, rr: np.ndarray, level: float,
                     target: np.ndarray | None) -> Allocation:
    Nf = N.astype(float)
    moe = nat_v = nat_moe = None
    if S is not None:
        K = _variance_terms(Nf, S, from_p, deff, rr)
        v = _stratum_var(n_h, Nf, K, rr)
        z = z_value(level)
        moe = z * np.sqrt(v)
        W = Nf / Nf.sum()
        nat_v = float(np.sum(W**2 * v))
        nat_moe = z * math.sqrt(nat_v)
    arrays = [N, n_h, x, L, U, S, c, moe, target]
    for arr in arrays:
        if arr is not None:
            arr.setflags(write=False)
    for arr in cons.values():
        arr.setflags(write=False)
    opts["response_rate"] = rr.copy() if not np.all(rr == rr[0]) else float(rr[0])
    return Allocation(strata=index.copy(), N_h=N, n_h=n_h, n_exact=x, lower=L, upper=U,
                      constraints=cons, rule=rule, options=opts, sd=S, cost=c,
                      expected_moe=moe, target_moe=target, n=float(np.sum(n_h)),
                      total_cost=None if c is None else float(np.sum(c * n_h)),
                      national_variance=nat_v, national_moe=nat_moe)


# ---------------------------------------------------------------------------- precision


def _publication_floor(min_respondents: float | None, min_effective_n: float | None,
                       deff: np.ndarray, rr: np.ndarray, Nf: np.ndarray,
                       index: pd.Index) -> tuple[np.ndarray | None, np.ndarray]:
    """Respondents needed per stratum (``max(a, b deff_h)``) and the units to select for them.

    Warns (:class:`SmallDomainWarning`) naming the strata that a census at their expected
    response rate cannot bring to the minimum.
    """
    for name, val in (("min_respondents", min_respondents),
                      ("min_effective_n", min_effective_n)):
        if val is not None and not (isinstance(val, (int, float, np.integer, np.floating))
                                    and np.isfinite(val) and val >= 0):
            raise SatsampleError(f"{name}={val!r} must be a non-negative number or None")
    if min_respondents is None and min_effective_n is None:
        return None, np.zeros(len(Nf))
    needed = np.maximum(float(min_respondents or 0.0), float(min_effective_n or 0.0) * deff)
    x_pub = needed / rr
    floor = np.minimum(np.ceil(x_pub - _TOL * np.maximum(1.0, x_pub)), Nf)
    short = Nf * rr < needed * (1 - 1e-12)
    if short.any():
        import warnings

        from ._validation import SmallDomainWarning

        names = [str(index[i]) for i in np.flatnonzero(short)]
        warnings.warn(
            f"{len(names)} stratum/strata cannot reach the publication minimum of "
            f"{_fmt_num(needed[short].max())} respondents even with a census at the "
            f"expected response rate (planned as take-all): {names[:10]}"
            + (" ..." if len(names) > 10 else ""),
            SmallDomainWarning, stacklevel=3)
    return needed, floor


@dataclass(frozen=True, kw_only=True, eq=False)
class _PrecisionPlan:
    """The designs of :func:`allocate_for_precision` for a relaxation factor ``r`` of the targets."""

    Nf: np.ndarray
    moe: np.ndarray
    pq: np.ndarray
    deff: np.ndarray
    rr: np.ndarray
    K: np.ndarray
    cost: np.ndarray
    lower: np.ndarray
    z: float
    national_moe: float | None

    def selected_exact(self, r: float) -> np.ndarray:
        """Units to select (real) for margins ``r e_h``: Cochran's ``m_h`` over ``rr_h``."""
        e = r * self.moe
        d = self.deff * self.z * self.z * self.pq / (e * e)
        return d / (1.0 + (d - 1.0) / self.Nf) / self.rr

    def requirement(self, r: float) -> np.ndarray:
        n_sel = self.selected_exact(r)
        n_int = np.ceil(n_sel - _TOL * np.maximum(1.0, n_sel))
        return np.maximum(np.minimum(n_int, self.Nf), self.lower)

    def national_var(self, n_h: np.ndarray) -> float:
        W = self.Nf / self.Nf.sum()
        return float(np.sum(W**2 * _stratum_var(n_h, self.Nf, self.K, self.rr)))

    def total_cost(self, n_h: np.ndarray) -> float:
        return float(np.sum(self.cost * n_h))

    def design(self, r: float) -> tuple[np.ndarray, np.ndarray]:
        """(allocation, per-stratum requirement) for the targets relaxed by ``r``."""
        base = self.requirement(r)
        if self.national_moe is None:
            return base, base
        vt = (r * self.national_moe / self.z) ** 2
        if self.national_var(base) <= vt:
            return base, base
        if self.national_var(self.Nf) > vt:
            return self.Nf.copy(), base  # census of every stratum still short (nonresponse)
        W = self.Nf / self.Nf.sum()
        a = W * np.sqrt(self.K) / np.sqrt(self.cost)

        def top(lam: float) -> np.ndarray:
            x = np.minimum(np.maximum(base, lam * a), self.Nf)
            return np.ceil(x - _TOL * np.maximum(1.0, x))

        hi = 1.0
        while self.national_var(top(hi)) > vt:
            hi *= 2.0
        return top(_bisect(lambda lam: self.national_var(top(lam)) <= vt, 0.0, hi,
                           rel=1e-12)), base

    def relaxation(self, budget: float) -> float:
        """Smallest ``r >= 1`` whose design costs at most ``budget`` (1 if the targets fit)."""
        def fits(r: float) -> bool:
            return self.total_cost(self.design(r)[0]) <= budget * (1 + 1e-12)

        if fits(1.0):
            return 1.0
        floor_cost = self.total_cost(self.lower)
        if floor_cost > budget * (1 + 1e-12):
            raise SatsampleError(f"budget={budget:g} is below the cost of the minimum sizes "
                                 f"(min_n per stratum): {floor_cost:g}")
        hi = 2.0
        while not fits(hi) and hi <= 1e12:
            hi *= 2.0
        return _bisect(fits, 1.0, hi, rel=1e-12)




def allocate_for_precision(
    strata_sizes: pd.Series | Mapping[Any, int],
    *,
    moe: Any,
    p: Any = 0.5,
    deff: Any = 1.0,
    response_rate: Any = 1.0,
    level: float = 0.95,
    budget: float | None = None,
    national_moe: float | None = None,
    cost: Any = None,
    min_n: Any = 2,
    min_respondents: float | None = None,
    min_effective_n: float | None = None,
) -> Allocation:
    """Smallest allocation giving every stratum (agency) a target margin of error.

    Parameters
    ----------
    strata_sizes : pandas.Series or mapping
        ``N_h`` per stratum.
    moe : float, Series or mapping
        Target margin of error of each stratum's proportion (index), in (0, 1): the 0-1
        scale of the results (``moe=0.10`` is 10 points on the published 0-100 scale).
    p : float, Series or mapping, default=0.5
        Expected proportion per stratum (e.g. last year's satisfied share).
    deff : float, Series or mapping, default=1.0
        Design effect per stratum.
    response_rate : float, Series or mapping, default=1.0
        Expected response rate per stratum, in (0, 1].
    level : float, default=0.95
        Confidence level.
    budget : float, optional
        Maximum total cost ``Σ c_h n_h`` (number of units selected when no cost).
    national_moe : float, optional
        Target margin of error of the national (stratified) proportion,
        ``W_h = N_h / N``.
    cost : scalar, Series or mapping, optional
        Cost per selected unit (default 1).
    min_n : scalar, Series or mapping, default=2
        Minimum number selected per stratum (capped at N_h).
    min_respondents : float or None, default=None
        The publication minimum: respondents an agency needs for its estimate to be
        published (``min_n`` of :func:`satsample.outputs.flags.publication_flags`, 30 by
        default there).  Every stratum is then planned to at least
        ``⌈needed_h / rr_h⌉`` selected units (capped at ``N_h``), so that the expected
        respondents reach it; see Notes.  None: no publication minimum.
    min_effective_n : float or None, default=None
        The Korn-Graubard effective-sample-size rule of the publication flags
        (``min_effective_n``, 30 there).  Under the planning model the effective sample
        size is ``m_h / deff_h``, so it asks for ``min_effective_n · deff_h`` expected
        respondents.  None: not planned for.

    Returns
    -------
    Allocation
        ``rule="precision"``; ``target_moe`` holds the targets, ``expected_moe`` the
        margins expected at ``n_h``, ``options["relaxation"]`` the factor ``r``.  With a
        publication minimum, ``to_frame()`` adds ``respondents_needed`` and
        ``publishable`` (expected respondents reach the minimum) and the constraint
        ``"publication"`` marks the strata it raised.

    Warns
    -----
    SmallDomainWarning
        When some strata cannot reach the publication minimum even with a census at their
        expected response rate (they are planned as take-all and named in the message).

    Notes
    -----
    *Per-stratum requirement.* With ``n0_h = z² p_h(1 − p_h)/e_h²`` and
    ``d_h = deff_h n0_h``, the respondents needed are Cochran's
    ``m_h = d_h / (1 + (d_h − 1)/N_h)`` (the exact solution of
    ``z² deff_h (N_h − m)/(N_h − 1) p_h(1 − p_h)/m = e_h²``) and the units to
    select ``n_h = ⌈m_h / rr_h⌉``, capped at ``N_h`` (take-all; if even the
    census cannot reach the target because of nonresponse, ``target_met`` is
    False) and raised to ``min_n``.

    *National target.* If the stratified proportion's margin
    ``z √(Σ W_h² V_h)`` still exceeds ``national_moe``, strata are raised to
    ``max(n_h, λ a_h)`` with cost-optimal scores ``a_h = W_h S*_h / √c_h``
    (``S*_h² = deff_h p_h(1 − p_h) N_h/(N_h − 1)/rr_h``) and the smallest λ meeting
    the national target (then rounded up): the cheapest top-up, Neyman-like.

    *Budget compromise (minimax).* If the cost of this design exceeds
    ``budget``, every target (agency and national) is multiplied by the same
    relaxation factor ``r > 1``, the smallest for which the design above costs
    at most ``budget`` (bisection on r; the cost is non-increasing in r).
    This minimises the largest ratio achieved / target margin over all
    agencies and the national estimate, so the shortfall is shared equally
    in relative terms: no agency is sacrificed to save the others, which is
    the fairness requirement of an index that ranks agencies. Strata
    constrained by take-all or ``min_n`` may do better than ``r``.
    If the budget exceeds what the targets need, the surplus is not spent
    (the result is the smallest design) and is reported in ``options``.

    *Publication minimum.* With ``min_respondents`` = a and ``min_effective_n`` = b,
    stratum h needs ``q_h = max(a, b deff_h)`` expected respondents, so its lower bound
    becomes ``L_h = min(N_h, max(min_n_h, ⌈q_h / rr_h⌉))``.  The bound is part of every
    design above (also under a budget), so no agency is planned
    below what its publication needs; a budget below the cost of the bounds raises.
    Realised response varies around :math:`rr_h`, so an agency planned at the minimum
    can still fall short; plan a margin by raising ``min_respondents``.

    Examples
    --------
    >>> import pandas as pd
    >>> from satsample.allocation import allocate_for_precision
    >>> N_h = pd.Series({"A": 2000, "B": 120, "C": 60})
    >>> plan = allocate_for_precision(N_h, moe=0.10, p=0.9, response_rate=0.6,
    ...                               min_respondents=30)
    >>> plan.to_frame()[["n_h", "expected_respondents", "publishable", "binds"]]  # doctest: +NORMALIZE_WHITESPACE
             n_h  expected_respondents  publishable        binds
    stratum
    A         57                  34.2         True
    B         50                  30.0         True  publication
    C         50                  30.0         True  publication
    """
    counts = _as_counts(strata_sizes)
    index = counts.index
    N = counts.to_numpy()
    Nf = N.astype(float)
    p_arr = _per_stratum(p, index, "p")
    moe_arr = _per_stratum(moe, index, "moe")
    _check_unit_interval(p_arr, index, "p", closed=False)
    _check_unit_interval(moe_arr, index, "moe", closed=False,
                         hint="; margins of error are on the 0-1 scale of the results "
                              "(moe=0.10 is 10 points on the published 0-100 scale)")
    deff_a = _per_stratum(deff, index, "deff", positive=True)
    rr = _per_stratum(response_rate, index, "response_rate", positive=True)
    _check_response_rate(rr, index)
    c = _per_stratum(cost, index, "cost", positive=True)
    mn = _per_stratum(min_n, index, "min_n", nonneg=True)
    Lmin = np.minimum(np.ceil(np.zeros(len(N)) if mn is None else mn), Nf)
    needed, pub_floor = _publication_floor(min_respondents, min_effective_n, deff_a, rr, Nf,
                                           index)
    Lmin = np.maximum(Lmin, pub_floor)
    if national_moe is not None:
        check_probability(national_moe, name="national_moe")
    if budget is not None and not (np.isfinite(budget) and budget > 0):
        raise SatsampleError(f"budget={budget!r} must be a positive number")
    S = np.sqrt(p_arr * (1 - p_arr))
    plan = _PrecisionPlan(Nf=Nf, moe=moe_arr, pq=p_arr * (1 - p_arr), deff=deff_a, rr=rr,
                          K=_variance_terms(Nf, S, True, deff_a, rr),
                          cost=np.ones(len(N)) if c is None else c, lower=Lmin,
                          z=z_value(level), national_moe=national_moe)
    r = 1.0 if budget is None else plan.relaxation(budget)
    n_h, base = plan.design(r)
    n_int = n_h.astype(np.int64)
    exact_base = plan.selected_exact(1.0)
    cons = {
        "min": (n_int == Lmin) & (Lmin > 0) & (Lmin > np.minimum(exact_base, Nf) + _TOL),
        "max": np.zeros(len(N), dtype=bool),
        "take_all": n_int >= N,
        "budget": np.full(len(N), r > 1.0) & (n_int < N),
        "national": n_h > base,
    }
    if needed is not None:
        req = np.minimum(np.ceil(np.minimum(exact_base, Nf) - _TOL), Nf)
        cons["publication"] = (n_int == pub_floor) & (pub_floor > req)
        cons["min"] = cons["min"] & ~cons["publication"]
    opts = dict(rule="precision", moe=moe, p=p, deff=deff, level=level, budget=budget,
                national_moe=national_moe, cost=cost, min_n=min_n, relaxation=r,
                min_respondents=min_respondents, min_effective_n=min_effective_n,
                respondents_needed=None if needed is None else needed.copy(),
                budget_unused=None if budget is None else budget - plan.total_cost(n_h),
                required_cost_unconstrained=plan.total_cost(plan.design(1.0)[0]))
    return _make_allocation(index, N, n_int, np.minimum(exact_base, Nf), Lmin, Nf, cons,
                            "precision", opts, S, True, c, deff_a, rr, level, moe_arr.copy())
