"""Tables held by frozen results and designs are handed out as copies.

A frozen dataclass cannot have its attributes rebound, but a pandas DataFrame
attribute could still be edited in place (``est.overall.loc[0, "estimate"] = 1``
or ``design.data["w"] = 0``), changing the result, or the estimates later
computed from the design.  A :class:`TableField` stores the table privately
and returns a new DataFrame object on every access:

* with Copy-on-Write (always on in pandas 3, optional in pandas 2) a shallow
  copy suffices -- it shares the memory, costs microseconds whatever the size,
  and any edit of it copies the edited columns first, leaving the stored table
  unchanged (its numpy views are read-only);
* without Copy-on-Write (pandas 2 default) a deep copy is returned.

The table given to the constructor is stored the same way, so editing the
caller's frame afterwards does not change the result either.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["TableField"]

_PANDAS3 = int(pd.__version__.split(".")[0]) >= 3


def _copy_on_write() -> bool:
    return _PANDAS3 or pd.get_option("mode.copy_on_write") is True


def _handed_out(table: Any) -> Any:
    if isinstance(table, (pd.DataFrame, pd.Series)):
        return table.copy(deep=not _copy_on_write())
    return table


class TableField:
    """Data descriptor for a DataFrame field of a frozen dataclass (copy in, copy out).

    Declare it as the field's value: ``table: pd.DataFrame = TableField()``.  The
    field stays required (no default) and keeps its name in the constructor.  With
    ``field(default=TableField(optional=True), ...)`` the field is optional and
    defaults to an empty DataFrame.
    """

    def __init__(self, *, optional: bool = False) -> None:
        self._optional = optional

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._slot = f"_{name}_table"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:  # class access: tell dataclasses there is no default
            raise AttributeError(self._name)
        return _handed_out(obj.__dict__[self._slot])

    def __set__(self, obj: Any, value: Any) -> None:
        if isinstance(value, TableField):  # the field was declared with field(default=...)
            if not self._optional:
                raise TypeError(f"missing required keyword argument: {self._name!r}")
            value = pd.DataFrame()
        obj.__dict__[self._slot] = _handed_out(value)
