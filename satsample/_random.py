"""Randomness: one ``rng`` argument everywhere (SPEC 7), never global state.

Kernels do not draw random numbers from a ``Generator``; they receive a
64-bit key derived here and use a counter-based stream keyed by
(key, stratum, replicate), so their output does not depend on the number of
threads or the order of work.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

RNGLike: TypeAlias = int | np.integer | np.random.Generator | np.random.SeedSequence | None

__all__ = ["RNGLike", "as_generator", "check_rng", "stream_key"]


def check_rng(rng: RNGLike) -> RNGLike:
    """Raise unless ``rng`` is None, a non-negative int, a SeedSequence or a Generator; return it.

    The one validator of every ``rng`` argument.  ``True``/``False`` are not
    seeds (``bool`` is a subclass of ``int`` in Python, but a flag passed as a
    seed is a mistake).
    """
    from ._validation import SatsampleError, plain

    if rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if int(rng) < 0:
            raise SatsampleError(f"rng={plain(rng)!r}: a seed must be a non-negative integer")
        return rng
    raise SatsampleError(
        f"rng={plain(rng)!r} must be None, a non-negative int, a numpy.random.SeedSequence or a "
        "numpy.random.Generator"
    )


def as_generator(rng: RNGLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from an int, a SeedSequence or a Generator.

    ``None`` gives fresh OS entropy (a non-reproducible draw); pass an int for
    reproducible results.  A Generator is used as is (and advanced).  Anything
    else (a bool, a float, a negative int) raises, see :func:`check_rng`.
    """
    check_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def stream_key(rng: RNGLike) -> np.uint64:
    """Derive one 64-bit key for the counter-based streams of the kernels."""
    gen = as_generator(rng)
    return np.uint64(gen.integers(0, 2**63 - 1, dtype=np.int64))
