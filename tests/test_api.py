"""The public namespace: every exported name resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys

import satsample


def test_every_exported_name_resolves():
    missing = [name for name in satsample.__all__ if not hasattr(satsample, name)]
    assert missing == []


def test_unknown_attribute_raises_attribute_error():
    try:
        satsample.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_does_not_load_matplotlib_or_numba():
    code = "import sys, satsample; print('matplotlib' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
