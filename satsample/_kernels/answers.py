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
_CHUNK = 4096  # rows per chunk (each column of a chunk read in order)


@numba.njit(cache=True)
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
    for c in range(n_chunks):  # serial: a block of rows is too little work to share
        i0 = c * _CHUNK
        i1 = min(n, i0 + _CHUNK)
        for k in range(n_items):
            for i in range(i0, i1):
                v = x[i, k]
                t = v - lo
                c = INVALID
                if t >= 0.0 and t < m:  # False for NaN
                    ti = np.int64(t)
                    if ti == t:  # an integer code
                        c = lut[ti]
                elif v != v:
                    c = BLANK
                out[i, k] = c
    return out
