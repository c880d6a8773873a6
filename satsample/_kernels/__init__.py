"""Private Numba kernels: arrays in, arrays out, no pandas, no global state.

* :mod:`._rng` -- counter-based stream keyed by (key, stratum, replicate, draw).
* :mod:`.bootstrap` -- Rao-Wu rescaling bootstrap totals drawn on the fly
  (counts per block of replicates, 0/1 columns through bit-pattern buckets),
  optionally with the replicate cell table from the same draws.
* :mod:`.totals` -- totals under materialised replicate weights, by domain;
  one-pass column summaries for the exact column compaction.
* :mod:`.jackknife` -- JKn/JK1 variance of ratios in closed form.
* :mod:`.cells` -- totals by domain from totals by (domain x cell) and cell factors
  (the cell replay of weighting steps).
* :mod:`.answers` -- answer codes to classes (valid, unusable, blank, invalid) in one pass.

Every kernel has a plain-numpy twin in ``tests/reference_numpy.py``.
Kernels compile lazily (``cache=True``) on first call.
"""
