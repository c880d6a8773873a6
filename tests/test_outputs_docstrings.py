"""The Examples sections of the output modules run as written (doctest)."""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import satsample.allocation
import satsample.flags
import satsample.plotting
import satsample.report


@pytest.mark.parametrize("module", [satsample.flags, satsample.plotting, satsample.allocation,
                                    satsample.report], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    plt.close("all")
    assert result.attempted > 0
    assert result.failed == 0
