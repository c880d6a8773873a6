"""The Examples sections of the output modules run as written (doctest)."""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import satsample.allocation
import satsample.outputs.flags
import satsample.outputs.plotting
import satsample.outputs.report


@pytest.mark.parametrize("module", [satsample.outputs.flags, satsample.outputs.plotting, satsample.allocation,
                                    satsample.outputs.report], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    plt.close("all")
    assert result.attempted > 0
    assert result.failed == 0
