"""The README's code runs as written, and its two set-up commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_tour_runs(capsys):
    (code,) = _blocks("python")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    # the tour prints what it computes and says that the 2017 layout is reconstructed
    assert "criteria list reconstructed, not confirmed by an official text: True" in printed
    assert "national index " in printed and "true value" in printed
    assert "publish" in printed and "rank_low" in printed
    est = namespace["est"]
    pop = namespace["pop"]
    national = namespace["national"]
    assert len(est.overall) == len(pop.agencies)
    truth = pop.truth.overall_index
    row = national.iloc[0]
    assert row["ci_low"] <= truth <= row["ci_high"]
    assert set(namespace["flags"]["status"]) <= {"publish", "review", "suppress"}


def test_ci_runs_the_readme_test_command():
    commands = [b.strip() for b in _blocks("bash")]
    assert any("satsample demo --out" in c for c in commands)
    test_cmd = next(c for c in commands if "pytest" in c).splitlines()[-1]
    assert test_cmd == 'pip install -e ".[test]" && python -m pytest'
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install --quiet -e ".[test]"' in ci
    assert "python -m pytest" in ci
    assert "set -euo pipefail" in ci  # pytest's exit 5 (no test collected) fails CI


def test_user_guide_home_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/index.md", "exec"), namespace)
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "report.xlsx").stat().st_size > 0
    assert len(namespace["lt"].to_frame()) == len(namespace["pop"].agencies)
