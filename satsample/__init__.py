"""satsample: design, weighting and estimation for surveys of satisfaction with public services."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
