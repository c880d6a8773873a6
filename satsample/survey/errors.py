"""Errors of the file-driven survey layer, one class per exit status of the CLI."""

from __future__ import annotations

from .._validation import SatsampleError

__all__ = ["ConfigError", "DataError", "OutputError"]


class ConfigError(SatsampleError):
    """The configuration file is malformed: the message names the key and the allowed values."""


class DataError(SatsampleError):
    """An input file is missing, unreadable or holds values that cannot be used.

    The message names the file, the column, the value and the first row numbers.
    """


class OutputError(SatsampleError):
    """An output folder exists and may not be overwritten, or cannot be written."""
