"""Tutorial notebooks: committed executed (the docs show their outputs), and they still run.

The committed outputs are what the documentation site shows (mkdocs-jupyter with
``execute: false``); the slow test executes every notebook again so that a change of the
API that breaks a notebook fails CI.  To refresh the committed outputs:
``jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_executed_with_their_tables_and_figures():
    """The docs site shows the committed outputs (mkdocs-jupyter, execute: false)."""
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_"]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        # executed top to bottom in one run
        assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1)), \
            f"{path.name}: not executed in order"
        outputs = [o for c in code for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], path.name
        kinds = {k for o in outputs for k in o.get("data", {})}
        assert "text/html" in kinds, f"{path.name}: no table shown"
        assert "image/png" in kinds, f"{path.name}: no figure shown"
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            assert "satsample._" not in src, f"{path.name} uses a private module"
            # outputs written by this machine's paths or temporary folders are not committed
        text = path.read_text(encoding="utf-8")
        assert "/work/" not in text and "/tmp/" not in text, path.name


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
