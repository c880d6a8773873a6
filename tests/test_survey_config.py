"""The survey configuration: every key documented, errors naming the key and allowed values."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from satsample.survey import ConfigError, load_config
from satsample.survey.config import RESPONSE_SCHEMA, SCHEMA, STEP_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = resources.files("satsample") / "survey" / "examples" / "survey.toml"


def test_example_configuration_loads_with_defaults_and_resolved_paths():
    cfg = load_config(EXAMPLE)
    assert cfg["design"]["allocation"] == "precision"
    assert cfg["variance"]["level"] == 0.95  # a default
    assert Path(cfg["frame"]["file"]).is_absolute() and Path(cfg["frame"]["file"]).exists()
    assert cfg.domains == (("agency_id",), ("agency_level",))
    assert [s["type"] for s in cfg["weighting"]["steps"]] == ["nonresponse", "rake"]
    assert len(cfg.sha256) == 64


def test_every_key_is_documented():
    doc = (ROOT / "docs" / "your_own_survey.md").read_text(encoding="utf-8")
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in doc, section
        for key in keys:
            assert re.search(rf"`{key}`|`{section}\.{key}`", doc), f"{section}.{key}"
    for key in RESPONSE_SCHEMA:
        assert f"`{key}`" in doc
    for kind, keys in STEP_SCHEMA.items():
        assert f'type = "{kind}"' in doc
        for key in keys:
            assert f"`{key}`" in doc, f"{kind}.{key}"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda t: t.replace('method = "srswor"', 'method = "cluster"'),
     r"design\.method = 'cluster' is not allowed; allowed values: 'srswor', 'systematic'"),
    (lambda t: t.replace("[design]", "[design]\nmoee = 0.1"),
     r"unknown key design\.moee; allowed keys in \[design\]: method, allocation, moe"),
    (lambda t: t.replace("seed = 2025", 'seed = "x"'), r"survey\.seed = 'x' \(text\): expected an integer"),
    (lambda t: t.replace("moe = 0.12", "moe = 1.5"), r"design\.moe = 1\.5 is out of range"),
    (lambda t: t.replace('language = "vi"', 'language = "fr"'),
     r"output\.language = 'fr' is not allowed; allowed values: 'vi', 'en'"),
    (lambda t: t.replace('file = "frame.csv"\n', ""), r"missing key frame\.file"),
    (lambda t: t + "\n[extra]\nx = 1\n", r"unknown section \[extra\]"),
    (lambda t: t.replace('type = "rake"', 'type = "raking"'),
     r"weighting\.steps\[2\]\.type = 'raking' is not allowed; allowed values: 'nonresponse'"),
    (lambda t: t.replace('e = "proportional"', "e = 1.2"), r"dispositions\.e = 1\.2"),
    (lambda t: t.replace('not_returned = "UO"', 'not_returned = "X"'),
     r"dispositions\.not_returned = 'X' is not allowed; allowed values: 'I', 'P'"),
    (lambda t: t.replace('allocation = "precision"', 'allocation = "fixed"'),
     r"needs design\.n_per_agency"),
    (lambda t: t.replace('name = "sipas_2017"', 'name = "sipas_2017"\nfile = "q.json"'),
     r"exactly one of questionnaire\.name or questionnaire\.file"),
    (lambda t: t.replace("scale = 100", "scale = 10"), r"output\.scale = 10 is not allowed"),
    (lambda t: t.replace("[survey]", "[survey\n"), r"not valid TOML"),
    (lambda t: t.replace('margins = ["agency_id"', 'margins = [1'), r"element 1 is not"),
])
def test_configuration_errors_name_the_key_and_allowed_values(tmp_path, edit, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(_write(tmp_path, edit(BASE)))


def test_unreadable_configuration(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.toml")
    p = tmp_path / "latin.toml"
    p.write_bytes("name = 'Hà'".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_a_margin_of_error_in_points_is_refused_with_the_scale_explained(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace("moe = 0.12", "moe = 10")
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"design\.moe = 10 is out of range.*0-1 scale.*"
                                          r"write 0\.1 for ±10 points"):
        load_config(path)
