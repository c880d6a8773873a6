"""Deprecated alias of :mod:`satsample.outputs.plotting` (moved there in 0.2.0).

``import satsample.plotting`` still gives the same objects for one release; each public name
taken from here gives a DeprecationWarning naming the new path.
"""

from . import _compat

__getattr__, __dir__ = _compat.moved_module(__name__, "satsample.outputs.plotting")
