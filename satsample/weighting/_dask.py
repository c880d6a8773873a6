"""Weighting steps on a Dask design (private; see :mod:`satsample.distributed`)."""

from __future__ import annotations

from typing import Any


def dispatch(design: Any, step: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``step`` on a Dask design; ``None`` when ``design`` is not one."""
    return None
