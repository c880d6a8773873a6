"""Every tutorial notebook executes without error (outputs written to a temporary folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


# committed with their outputs, executed top to bottom (the docs render them as they are)
EXECUTED = {"04_small_area.ipynb"}


def test_the_notebooks_outputs_stripped_or_executed_in_order():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_"]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        counts = []
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                if path.name in EXECUTED:
                    counts.append(cell.get("execution_count"))
                    assert not [o for o in cell.get("outputs", [])
                                if o.get("output_type") == "error"], path.name
                else:
                    assert cell.get("outputs", []) == [], f"{path.name}: outputs not stripped"
                    assert cell.get("execution_count") is None, path.name
            src = "".join(cell["source"])
            assert "satsample._" not in src, f"{path.name} uses a private module"
        if path.name in EXECUTED:
            assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run in order"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    work = tmp_path / path.stem
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    nbformat.write(nb, work / f"executed_{path.name}")
    if path.name.startswith("03_"):
        assert (work / "satsample_report.html").stat().st_size > 10_000
        assert (work / "satsample_report.xlsx").exists()
