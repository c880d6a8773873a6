"""Alias of :mod:`satsample.estimation.index` (the satisfaction index moved there)."""

from .estimation.index import satisfaction_index

__all__ = ["satisfaction_index"]
