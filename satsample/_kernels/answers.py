"""Answer codes to classes in one pass: the masks behind the questionnaire's indicators.

``cls[i, k]`` holds, in its two low bits, the class of answer ``x[i, k]``
(``INVALID`` 0, ``VALID`` 1, ``UNUSABLE`` 2, ``BLANK`` 3 for NaN) and, in bit
2 (``NUMERATOR``), whether the answer is a valid code of the numerator set
(satisfied codes, or the two highest codes).  A code is found by a lookup in
a table indexed by ``x - lo``, for integer-valued ``x`` in the table's range;
every other value is ``INVALID``.  So ``cls`` equals the equality tests
``x == c`` over the codes, in one pass instead of one per code.
"""

from __future__ import annotations

import numba
import numpy as np

INVALID, VALID, UNUSABLE, BLANK, NUMERATOR = 0, 1, 2, 3, 4
_CHUNK = 4096  # rows per task


@numba.njit(parallel=True, cache=True)
def _answer_classes(x, lo, lut):
    """``cls[i, k] = lut[x_ik - lo]`` (integer ``x_ik`` in range), ``BLANK`` (NaN) or ``INVALID``.

    Parameters
    ----------
    x : (n, K) float64
        Answers (any memory order).
    lo : float
        The smallest code.
    lut : (m,) uint8
        Class (and numerator bit) of the codes ``lo .. lo + m - 1``; 0 for a
        number in the range that is not a code.

    Returns
    -------
    (n, K) uint8
    """
    n, n_items = x.shape
    m = lut.shape[0]
    out = np.empty((n, n_items), np.uint8)
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in numba.prange(n_chunks):
        i0 = c * _CHUNK
        i1 = min(n, i0 + _CHUNK)
        for k in range(n_items):
            for i in range(i0, i1):
                v = x[i, k]
                if v != v:
                    out[i, k] = BLANK
                    continue
                t = v - lo
                if t >= 0.0 and t < m and t == np.floor(t):
                    out[i, k] = lut[np.int64(t)]
                else:
                    out[i, k] = INVALID
    return out
