"""Variance backends: Taylor linearisation (:mod:`.taylor`) and replicate weights (:mod:`.replicate`).

The estimation engine (:mod:`satsample.estimation.engine`) hands a backend
either weighted linearised scores (Taylor) or per-row values whose replicate
totals it needs (replicate); the design decides which.
"""
