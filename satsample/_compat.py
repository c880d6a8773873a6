"""Renamed keywords and moved modules: the old name still works for one release, with a
DeprecationWarning."""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ._validation import SatsampleError

__all__ = ["confidence_level_keywords", "moved_module", "renamed_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**old_to_new: str) -> Callable[[F], F]:
    """Accept ``old=`` as ``new=`` (DeprecationWarning); giving both is an error.

    The wrapped function keeps its signature (only the new names), so help,
    IDEs and the documentation show one word per concept.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise SatsampleError(
                            f"{fn.__name__}: give {new}= only ({old}= is its former name)")
                    warnings.warn(
                        f"{fn.__name__}({old}=...) is now {fn.__name__}({new}=...); the old "
                        "name will be removed in the next release",
                        DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def confidence_level_keywords(*, table: bool = False, alpha: bool = False,
                              conf_level: bool = False) -> Callable[[F], F]:
    """``level`` is the confidence level everywhere; accept the former spellings for a release.

    * ``table=True``: a text ``level=`` (``"overall"``, ``"element"``, ``"item"``) was the
      index table and becomes ``table=``;
    * ``alpha=True``: ``alpha=a`` becomes ``level=1 - a``;
    * ``conf_level=True``: ``conf_level=c`` becomes ``level=c``.

    Each old spelling gives a DeprecationWarning; giving the old and the new one is an error.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__

        def _move(kwargs: dict[str, Any], old: str, new: str, value: Any) -> None:
            if new in kwargs:
                raise SatsampleError(f"{name}: give {new}= only ({old}= is its former name)")
            warnings.warn(
                f"{name}({old}=...) is now {name}({new}=...); the old name will be removed "
                "in the next release", DeprecationWarning, stacklevel=3)
            kwargs[new] = value

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if table and isinstance(kwargs.get("level"), str):
                _move(kwargs, "level", "table", kwargs.pop("level"))
            if alpha and "alpha" in kwargs:
                a = kwargs.pop("alpha")
                _move(kwargs, "alpha", "level",
                      1.0 - a if isinstance(a, (int, float)) and not isinstance(a, bool) else a)
            if conf_level and "conf_level" in kwargs:
                _move(kwargs, "conf_level", "level", kwargs.pop("conf_level"))
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def moved_module(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` (PEP 562) of module ``old``, which moved to ``new``.

    For one release the old module forwards every name to the new one, so
    ``from old import name`` gives the same object.  A public name gives a
    DeprecationWarning naming the new path (at every access, attributed to the code
    that asked for it); a private name is forwarded silently (not part of the API).
    """

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            return list(importlib.import_module(new).__all__)
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), name)
        if not name.startswith("_"):
            warnings.warn(
                f"{old} has moved to {new}: import {name} from {new} (or from satsample); "
                f"the old path {old} will be removed in the next release",
                DeprecationWarning, stacklevel=2)
        return value

    def __dir__() -> list[str]:
        return sorted(importlib.import_module(new).__all__)

    return __getattr__, __dir__
