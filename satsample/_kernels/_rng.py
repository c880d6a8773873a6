"""Counter-based random stream (splitmix64 finaliser) used by the replicate kernels.

A draw is a pure function of ``(key, stratum, replicate, draw index)``: there
is no state to carry between threads, so a kernel gives the same result for
any number of threads, any order of work and any partition of the strata.

Stream definition (all arithmetic modulo 2**64)::

    mix(z)      = splitmix64 finaliser of z
    s_h         = mix(key + (stratum + 1) * GOLDEN)
    s_hr        = mix(s_h ^ ((replicate + 1) * REP))
    u_d         = mix(s_hr + (d + 1) * GOLDEN)              d = 0, 1, ...
    index_d     = ((u_d >> 32) * n_h) >> 32                 in 0 .. n_h - 1

The index uses the top 32 bits of ``u_d`` (Lemire's multiply-shift), whose
bias is below ``n_h / 2**32``.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
REP = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ONE = np.uint64(1)


@numba.njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _stream(key, stratum, replicate):
    """State of the stream of (key, stratum, replicate); all uint64."""
    s_h = _mix(key + (np.uint64(stratum) + _ONE) * GOLDEN)
    return _mix(s_h ^ ((np.uint64(replicate) + _ONE) * REP))


@numba.njit(cache=True, inline="always")
def _draw_index(state, d, n):
    """Draw number ``d`` of the stream, as an index in ``0 .. n - 1``."""
    u = _mix(state + (np.uint64(d) + _ONE) * GOLDEN)
    return np.int64(((u >> _S32) * np.uint64(n)) >> _S32)
