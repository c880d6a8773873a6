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

__all__ = ["RNGLike", "as_generator", "stream_key"]


def as_generator(rng: RNGLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from an int, a SeedSequence or a Generator.

    ``None`` gives fresh OS entropy (a non-reproducible draw); pass an int for
    reproducible results.  A Generator is used as is (and advanced).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if rng is None or isinstance(rng, (int, np.integer)):
        if rng is not None and int(rng) < 0:
            from ._validation import SatsampleError

            raise SatsampleError(f"rng={rng!r}: a seed must be a non-negative integer")
        return np.random.default_rng(rng)
    from ._validation import SatsampleError

    raise SatsampleError(
        f"rng={rng!r} must be None, an int, a numpy.random.SeedSequence or a numpy.random.Generator"
    )


def stream_key(rng: RNGLike) -> np.uint64:
    """Derive one 64-bit key for the counter-based streams of the kernels."""
    gen = as_generator(rng)
    return np.uint64(gen.integers(0, 2**63 - 1, dtype=np.int64))
