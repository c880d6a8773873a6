"""The former module paths of the outputs (satsample.ranking, ...) for one release.

The modules moved to ``satsample.outputs``; the old paths give the same objects with a
DeprecationWarning that names the new path.  This is the one place the old paths are used
(pyproject.toml turns that warning into an error everywhere else).
"""

from __future__ import annotations

import importlib
import sys

import pytest

import satsample
import satsample._compat

MOVED = ["ranking", "change", "flags", "plotting", "report"]


@pytest.fixture(autouse=True)
def _forget_old_paths():
    """Importing ``satsample.change`` binds the module to the name ``satsample.change`` (the
    function of the public API): undo it, so later tests see the package as before."""
    before = dict(vars(satsample))
    yield
    for name in MOVED:
        sys.modules.pop(f"satsample.{name}", None)
        if name in before:
            setattr(satsample, name, before[name])
        else:
            vars(satsample).pop(name, None)


@pytest.mark.parametrize("name", MOVED)
def test_old_path_gives_the_same_objects_with_a_deprecation_warning(name):
    old = importlib.import_module(f"satsample.{name}")
    new = importlib.import_module(f"satsample.outputs.{name}")
    assert new.__all__
    for public in new.__all__:
        with pytest.warns(DeprecationWarning,
                          match=rf"^satsample\.{name} has moved to satsample\.outputs\.{name}: "
                                rf"import {public} from satsample\.outputs\.{name}") as rec:
            value = getattr(old, public)
        assert value is getattr(new, public)
        assert len(rec) == 1
        # attributed to the code that asked for the name, not to satsample
        assert rec[0].filename == __file__
    assert dir(old) == sorted(new.__all__)


@pytest.mark.parametrize("name", MOVED)
def test_from_import_and_star_import_of_an_old_path_warn(name):
    new = importlib.import_module(f"satsample.outputs.{name}")
    public = new.__all__[0]
    with pytest.warns(DeprecationWarning, match=f"satsample.outputs.{name}"):
        ns: dict = {}
        exec(f"from satsample.{name} import {public}", ns)
    assert ns[public] is getattr(new, public)
    with pytest.warns(DeprecationWarning, match=f"satsample.outputs.{name}") as rec:
        ns = {}
        exec(f"from satsample.{name} import *", ns)
    assert sorted(k for k in ns if not k.startswith("__")) == sorted(new.__all__)
    assert len(rec) == len(new.__all__)


def test_old_path_private_names_are_forwarded_silently_and_unknown_names_raise():
    import warnings

    import satsample.outputs.plotting
    import satsample.plotting

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert satsample.plotting._axes is satsample.outputs.plotting._axes
        with pytest.raises(AttributeError, match="no_such_name"):
            satsample.plotting.no_such_name  # noqa: B018
        with pytest.raises(AttributeError):
            satsample.plotting.__wrapped__  # noqa: B018


def test_top_level_names_come_from_the_outputs_package_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for public, module in satsample._EXPORTS.items():
            if module.startswith("outputs."):
                obj = getattr(satsample, public)
                target = importlib.import_module(f"satsample.{module}")
                assert obj is getattr(target, public)
    assert sum(m.startswith("outputs.") for m in satsample._EXPORTS.values()) == 19
    assert all(m not in MOVED for m in satsample._EXPORTS.values())


def test_moved_module_helper_names_both_paths():
    getattr_, dir_ = satsample._compat.moved_module("satsample.old", "satsample.outputs.flags")
    with pytest.warns(DeprecationWarning, match="satsample.old will be removed"):
        assert getattr_("flag_estimate") is satsample.flag_estimate
    assert "flag_estimate" in dir_()
