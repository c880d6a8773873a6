"""Command-line behaviour: bad input gives one line on stderr and a non-zero status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from satsample.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_option_is_one_line_error(capsys, tmp_path):
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--frobnicate")
    assert code == 2
    assert "unrecognized arguments: --frobnicate" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_out_is_reported(capsys):
    code, _, err = _run(capsys, "demo")
    assert code == 2
    assert "--out" in err


@pytest.mark.parametrize("value", ["-3", "abc"])
def test_bad_seed(capsys, tmp_path, value):
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--seed", value)
    assert code == 2
    assert "--seed" in err and value in err


def test_out_folder_that_cannot_be_created(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "demo", "--out", str(blocker / "sub"))
    assert code == 2
    assert "cannot be created" in err
    assert str(blocker / "sub") in err
    assert not (blocker.parent / "sub").exists()


def test_out_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "demo", "--out", str(blocker))
    assert code == 2
    assert "is not a folder" in err


def test_moe_out_of_range(capsys, tmp_path):
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--moe", "1.5")
    assert code == 2
    assert "--moe" in err and "(0, 1)" in err


@pytest.mark.parametrize(
    ("elements", "needle"),
    [
        ([{"code": "E1", "label": "a", "items": ["q1", "q2"]},
          {"code": "E2", "label": "b", "items": ["q2"]}], "q2"),
        ([{"code": "E1", "label": "a", "items": ["q1"]},
          {"code": "E2", "label": "b", "items": []}], "E2"),
    ],
    ids=["item-named-twice", "empty-element"],
)
def test_bad_questionnaire_definition(capsys, tmp_path, elements, needle):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"name": "bad", "elements": elements}))
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, "demo", "--out", str(out_dir), "--questionnaire", str(path),
                        "--n-users", "2000", "--quiet")
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert needle in err
    assert not any(out_dir.glob("*.csv"))


def test_unknown_questionnaire_name(capsys, tmp_path):
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path / "o"), "--questionnaire", "nope")
    assert code == 2
    assert "'nope'" in err and "sipas_2017" in err


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "satsample", "demo", "--out", str(tmp_path),
                           "--bogus"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "unrecognized arguments: --bogus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version_matches_the_package(capsys):
    import satsample

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"satsample {satsample.__version__}"


def test_reference_cases_travel_with_the_repository():
    """Every case of the shared R set is in tests/reference, so no R comparison can skip."""
    from conftest import REFERENCE_DIR

    cases = {p.name for p in (REFERENCE_DIR / "cases").iterdir()}
    assert {"A_stratified_srs.json", "F_ci_proportions.json", "G_quantiles_contrasts.json",
            "H_fay_herriot.json"} <= cases
    assert (REFERENCE_DIR / "data" / "sample_strat.csv").is_file()
