"""Sample sizes from a target margin of error: proportions, means, Yamane, per domain.

All functions use the exact normal quantile ``z = Φ⁻¹(1 − (1 − level)/2)``
(1.959963984540054 at 95 %, not 1.96).

Rounding rule (every function, ``rounding="ceil"``): the final quantity is
rounded up, after removing floating-point noise: ``ceil(x − 1e-9·max(1, |x|))``.
So a size that is an integer in exact arithmetic (Yamane with N = 100,
e = 0.05 gives 80, computed as 80.00000000000001) is not pushed to the next
integer, while any genuine excess (> 1e-9 relative) is.
``rounding="round"`` rounds half up, ``"none"`` returns the unrounded float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from ._validation import SatsampleError, check_choice, check_probability

__all__ = [
    "SampleSize",
    "domain_sample_sizes",
    "round_size",
    "sample_size_mean",
    "sample_size_proportion",
    "yamane",
    "z_value",
]

Rounding = Literal["ceil", "round", "none"]
FpcRule = Literal["cochran", "simple"]

_CEIL_TOL = 1e-9


def z_value(level: float = 0.95) -> float:
    """Two-sided normal quantile ``z = Φ⁻¹(1 − (1 − level)/2)`` for a confidence ``level``."""
    check_probability(level, name="level")
    return float(norm.ppf(1.0 - (1.0 - level) / 2.0))


def round_size(x: float, rounding: Rounding = "ceil") -> float | int:
    """Round a sample size by the module's documented rule.

    Parameters
    ----------
    x : float
        Unrounded size.
    rounding : {"ceil", "round", "none"}, default="ceil"
        ``"ceil"``: ``ceil(x − 1e-9·max(1, |x|))`` (up, ignoring float noise);
        ``"round"``: half up; ``"none"``: ``x`` unchanged (float).
    """
    check_choice(rounding, name="rounding", allowed=("ceil", "round", "none"))
    if rounding == "none":
        return float(x)
    if not math.isfinite(x):
        raise SatsampleError(f"sample size {x!r} is not finite; cannot round it")
    if rounding == "ceil":
        return int(math.ceil(x - _CEIL_TOL * max(1.0, abs(x))))
    return int(math.floor(x + 0.5))


@dataclass(frozen=True, kw_only=True)
class SampleSize:
    """A sample size and the steps that produced it.

    Attributes
    ----------
    z : float
        Normal quantile for ``level``.
    n0 : float
        Size for simple random sampling from an infinite population.
    n_deff : float
        ``n0 × deff``.
    n_fpc : float
        Respondents needed after the finite population correction (unrounded).
    n_respondents : int or float
        ``n_fpc`` rounded by ``rounding``.
    n_select : int or float
        Units to select: ``n_fpc / response_rate`` rounded by ``rounding``
        (capped at ``N`` when ``N`` is given; see ``take_all``).
    take_all : bool
        True when the cap at ``N`` binds (the whole population is selected).
    options : Mapping
        The inputs (p or sd, moe, relative, level, deff, N, response_rate, fpc_rule, rounding).
    """

    z: float
    n0: float
    n_deff: float
    n_fpc: float
    n_respondents: int | float
    n_select: int | float
    take_all: bool
    options: Mapping[str, Any] = field(default_factory=dict)

    def __int__(self) -> int:
        return int(math.ceil(self.n_select))


def _check_common(moe: float, deff: float, N: float | None, response_rate: float,
                  fpc_rule: str, rounding: str) -> None:
    if not (np.isfinite(deff) and deff > 0):
        raise SatsampleError(f"deff={deff!r} must be a positive finite number")
    check_probability(response_rate, name="response_rate", closed_high=True)
    check_choice(fpc_rule, name="fpc_rule", allowed=("cochran", "simple"))
    check_choice(rounding, name="rounding", allowed=("ceil", "round", "none"))
    if N is not None and not (np.isfinite(N) and N >= 1):
        raise SatsampleError(f"N={N!r} must be a population size >= 1 (or None for infinite)")


def _finish(n0: float, *, z: float, deff: float, N: float | None, response_rate: float,
            fpc_rule: str, rounding: Rounding, options: dict[str, Any]) -> SampleSize:
    n_deff = n0 * deff
    if N is None:
        n_fpc = n_deff
    elif fpc_rule == "cochran":
        n_fpc = n_deff / (1.0 + (n_deff - 1.0) / N)
    else:
        n_fpc = n_deff / (1.0 + n_deff / N)
    n_sel_exact = n_fpc / response_rate
    take_all = False
    if N is not None and n_sel_exact >= N:
        n_sel_exact = float(N)
        take_all = True
    n_resp = round_size(n_fpc, rounding)
    n_sel = round_size(n_sel_exact, rounding)
    if N is not None and rounding != "none":
        n_sel = min(n_sel, int(N))
    return SampleSize(z=z, n0=n0, n_deff=n_deff, n_fpc=n_fpc, n_respondents=n_resp,
                      n_select=n_sel, take_all=take_all, options=options)


def sample_size_proportion(
    *,
    p: float = 0.5,
    moe: float,
    relative: bool = False,
    level: float = 0.95,
    deff: float = 1.0,
    N: float | None = None,
    response_rate: float = 1.0,
    fpc_rule: FpcRule = "cochran",
    rounding: Rounding = "ceil",
) -> SampleSize:
    """Sample size to estimate a proportion with a given margin of error.

    Parameters
    ----------
    p : float, default=0.5
        Expected proportion, in (0, 1). 0.5 is the conservative choice.
    moe : float
        Margin of error (half-width of the confidence interval), in (0, 1).
        Absolute (``0.05`` = ±5 points) unless ``relative=True``.
    relative : bool, default=False
        If True the margin is ``moe × p``.
    level : float, default=0.95
        Confidence level.
    deff : float, default=1.0
        Design effect multiplying the variance.
    N : float or None, default=None
        Population size; None means infinite (no finite population correction).
    response_rate : float, default=1.0
        Expected response rate in (0, 1]; the number to select is the number of
        respondents divided by it.
    fpc_rule : {"cochran", "simple"}, default="cochran"
        Finite population correction, see Notes.
    rounding : {"ceil", "round", "none"}, default="ceil"
        See :func:`round_size`.

    Returns
    -------
    SampleSize

    Notes
    -----
    With ``z = Φ⁻¹(1 − (1 − level)/2)`` and ``e`` the absolute margin
    (``e = moe·p`` when relative):

    ``n0 = z² p (1 − p) / e²``, ``n_d = deff · n0``,

    * Cochran (1977, eq. 4.2): ``n = n_d / (1 + (n_d − 1)/N)``, the exact
      solution of ``z² · deff · (N − n)/(N − 1) · p(1 − p)/n = e²``;
    * simple: ``n = n_d / (1 + n_d/N)``.

    Units to select: ``n / response_rate``, capped at N (``take_all``).
    Each quantity is rounded separately from the unrounded values.
    """
    check_probability(p, name="p")
    check_probability(moe, name="moe")
    _check_common(moe, deff, N, response_rate, fpc_rule, rounding)
    z = z_value(level)
    e = moe * p if relative else moe
    n0 = z * z * p * (1.0 - p) / (e * e)
    opts = dict(p=p, moe=moe, relative=relative, level=level, deff=deff, N=N,
                response_rate=response_rate, fpc_rule=fpc_rule, rounding=rounding)
    return _finish(n0, z=z, deff=deff, N=N, response_rate=response_rate, fpc_rule=fpc_rule,
                   rounding=rounding, options=opts)


def sample_size_mean(
    *,
    sd: float,
    moe: float,
    mean: float | None = None,
    relative: bool = False,
    level: float = 0.95,
    deff: float = 1.0,
    N: float | None = None,
    response_rate: float = 1.0,
    fpc_rule: FpcRule = "simple",
    rounding: Rounding = "ceil",
) -> SampleSize:
    """Sample size to estimate a mean with a given margin of error.

    Parameters
    ----------
    sd : float
        Population standard deviation ``S`` (divisor N − 1), > 0.
    moe : float
        Margin of error, > 0 (absolute, in the unit of the variable), or in
        (0, 1) as a fraction of ``mean`` when ``relative=True``.
    mean : float or None, default=None
        Expected mean; required when ``relative=True``.
    relative : bool, default=False
        Margin relative to ``mean``.
    level, deff, N, response_rate, rounding
        As in :func:`sample_size_proportion`.
    fpc_rule : {"simple", "cochran"}, default="simple"
        ``"simple"`` is exact for ``S`` with divisor N − 1.

    Returns
    -------
    SampleSize

    Notes
    -----
    ``n0 = z² S² / e²`` with ``e = moe`` (or ``moe·|mean|``), then
    ``n = n_d/(1 + n_d/N)`` (``"simple"``, the solution of
    ``z² deff (1 − n/N) S²/n = e²``) or ``n_d/(1 + (n_d − 1)/N)``.
    """
    if not (np.isfinite(sd) and sd > 0):
        raise SatsampleError(f"sd={sd!r} must be a positive finite number")
    if relative:
        check_probability(moe, name="moe")
        if mean is None or not np.isfinite(mean) or mean == 0:
            raise SatsampleError(f"mean={mean!r}: a non-zero mean is required when relative=True")
        e = moe * abs(mean)
    else:
        if not (np.isfinite(moe) and moe > 0):
            raise SatsampleError(f"moe={moe!r} must be a positive finite number")
        e = moe
    _check_common(moe, deff, N, response_rate, fpc_rule, rounding)
    z = z_value(level)
    n0 = z * z * sd * sd / (e * e)
    opts = dict(sd=sd, mean=mean, moe=moe, relative=relative, level=level, deff=deff, N=N,
                response_rate=response_rate, fpc_rule=fpc_rule, rounding=rounding)
    return _finish(n0, z=z, deff=deff, N=N, response_rate=response_rate, fpc_rule=fpc_rule,
                   rounding=rounding, options=opts)


def yamane(N: Any, *, e: float = 0.05, rounding: Rounding = "ceil") -> Any:
    """Yamane (Slovin) sample size ``n = N / (1 + N e²)``, the SIPAS rule.

    Parameters
    ----------
    N : int, float, array-like or pandas.Series
        Population size(s) (number of users of the service in the period), >= 1.
    e : float, default=0.05
        Margin of error in (0, 1).
    rounding : {"ceil", "round", "none"}, default="ceil"
        See :func:`round_size`; SIPAS plans do not state it, "ceil" is the safe side.

    Returns
    -------
    int, float, numpy.ndarray or pandas.Series
        Same shape as ``N``.

    Notes
    -----
    ``n = N / (1 + N e²)``. It equals Cochran's size for p = 0.5 with
    z ≈ 2 and the simple fpc; the limit for large N is ``1/e²`` (400 at 5 %).
    """
    check_probability(e, name="e")
    check_choice(rounding, name="rounding", allowed=("ceil", "round", "none"))
    arr = np.asarray(N, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr < 1)
    if bad.any():
        first = arr.ravel()[np.flatnonzero(bad.ravel())[0]]
        raise SatsampleError(f"N: population sizes must be finite and >= 1, got {first!r}")
    n = arr / (1.0 + arr * e * e)
    if rounding == "none":
        out = n
    else:
        out = np.array([round_size(float(v), rounding) for v in n.ravel()],
                       dtype=np.int64).reshape(n.shape)
    if isinstance(N, pd.Series):
        return pd.Series(out, index=N.index, name=N.name)
    if out.ndim == 0:
        return out.item()
    return out


def _per_domain(value: Any, index: pd.Index, name: str) -> np.ndarray:
    """Broadcast a scalar, mapping or Series to one float per domain of ``index``."""
    if isinstance(value, (pd.Series, Mapping)):
        s = pd.Series(value) if isinstance(value, Mapping) else value
        missing = [d for d in index if d not in s.index]
        if missing:
            raise SatsampleError(f"{name}: no value for domain(s) {missing[:5]!r}")
        return s.reindex(index).to_numpy(dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(len(index), float(arr))
    if arr.shape != (len(index),):
        raise SatsampleError(f"{name}: expected a scalar or {len(index)} values, got shape {arr.shape}")
    return arr


def domain_sample_sizes(
    frame_counts: pd.Series | pd.DataFrame,
    *,
    moe: float | Any,
    p: float | Any = 0.5,
    deff: float | Any = 1.0,
    response_rate: float | Any = 1.0,
    level: float = 0.95,
    relative: bool = False,
    fpc_rule: FpcRule = "cochran",
    rounding: Rounding = "ceil",
    count: str = "N_h",
) -> pd.DataFrame:
    """Per-domain (per-agency) sample sizes reaching a target margin of error.

    Parameters
    ----------
    frame_counts : pandas.Series or pandas.DataFrame
        Population count ``N_h`` per domain, indexed by domain (a DataFrame
        must hold the column ``count``; its other columns may be named by
        string in ``p``, ``deff``, ``response_rate`` and ``moe``).
    moe : float, Series, mapping or column name
        Target margin of error per domain, in (0, 1).
    p : float, Series, mapping or column name, default=0.5
        Expected proportion per domain (e.g. last year's satisfaction share).
    deff : float, Series, mapping or column name, default=1.0
        Design effect per domain.
    response_rate : float, Series, mapping or column name, default=1.0
        Expected response rate per domain, in (0, 1].
    level : float, default=0.95
        Confidence level.
    relative : bool, default=False
        Margins relative to ``p``.
    fpc_rule : {"cochran", "simple"}, default="cochran"
        See :func:`sample_size_proportion`.
    rounding : {"ceil", "round", "none"}, default="ceil"
        See :func:`round_size`.
    count : str, default="N_h"
        Column of ``frame_counts`` with the counts when it is a DataFrame.

    Returns
    -------
    pandas.DataFrame
        Indexed by domain: ``N_h, p, moe, deff, response_rate, n0, n_deff,
        n_fpc`` (respondents, unrounded), ``n_respondents``, ``n_select``
        (to select; ``n_fpc / response_rate`` rounded and capped at N_h),
        ``take_all`` and ``expected_moe`` (margin expected with ``n_select``
        × response rate respondents).

    Notes
    -----
    For each domain h, :func:`sample_size_proportion` with ``N = N_h``. The
    expected margin is
    ``z √(deff · (N_h − m_h)/(N_h − 1) · p_h(1 − p_h)/m_h)``, ``m_h = n_select,h × rr_h``
    (Cochran's variance; equals the target up to rounding unless take-all binds).
    """
    if isinstance(frame_counts, pd.DataFrame):
        if count not in frame_counts.columns:
            raise SatsampleError(f"count column {count!r} not found in frame_counts")
        df = frame_counts
        counts = df[count]

        def resolve(v: Any) -> Any:
            return df[v] if isinstance(v, str) else v
    elif isinstance(frame_counts, pd.Series):
        counts = frame_counts

        def resolve(v: Any) -> Any:
            if isinstance(v, str):
                raise SatsampleError(f"column name {v!r} given but frame_counts is a Series")
            return v
    else:
        raise SatsampleError("frame_counts must be a pandas Series or DataFrame of N_h by domain")
    index = counts.index
    if index.has_duplicates:
        raise SatsampleError(f"frame_counts: duplicated domain(s) {list(index[index.duplicated()])[:5]!r}")
    N_h = counts.to_numpy(dtype=np.float64)
    p_h = _per_domain(resolve(p), index, "p")
    moe_h = _per_domain(resolve(moe), index, "moe")
    deff_h = _per_domain(resolve(deff), index, "deff")
    rr_h = _per_domain(resolve(response_rate), index, "response_rate")
    rows = []
    for j, dom in enumerate(index):
        try:
            s = sample_size_proportion(p=p_h[j], moe=moe_h[j], relative=relative, level=level,
                                       deff=deff_h[j], N=N_h[j], response_rate=rr_h[j],
                                       fpc_rule=fpc_rule, rounding=rounding)
        except SatsampleError as exc:
            raise SatsampleError(f"domain {dom!r}: {exc}") from None
        m = s.n_select * rr_h[j]
        var = deff_h[j] * (N_h[j] - m) / max(N_h[j] - 1.0, 1.0) * p_h[j] * (1 - p_h[j]) / m
        rows.append(dict(N_h=counts.iloc[j], p=p_h[j], moe=moe_h[j], deff=deff_h[j],
                         response_rate=rr_h[j], n0=s.n0, n_deff=s.n_deff, n_fpc=s.n_fpc,
                         n_respondents=s.n_respondents, n_select=s.n_select,
                         take_all=s.take_all, expected_moe=s.z * math.sqrt(max(var, 0.0))))
    return pd.DataFrame(rows, index=index)
