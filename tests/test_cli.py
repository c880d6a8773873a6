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


@pytest.mark.parametrize("value", ["0.10", "0", "-5", "60", "nan"])
def test_moe_is_in_points_on_the_0_100_scale(capsys, tmp_path, value):
    """One rule: --moe is in points (1 to 50); a share such as 0.10 is refused, not guessed."""
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--moe", value)
    assert code == 2
    assert "--moe" in err and "points on the 0-100 scale" in err and "from 1 to 50" in err
    if value == "0.10":
        assert "--moe 10 for ±10 points" in err
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_moe_help_names_the_scale(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "in points on the 0-100 scale of the outputs" in text and "±10 points" in text


def test_moe_points_become_the_configuration_share(tmp_path):
    """--moe 12 plans for a ±12-point margin: design.moe = 0.12 in the written survey.toml."""
    import tomllib

    from satsample.demo import _config_text

    text = _config_text(seed=1, q_line='name = "sipas_2017"', moe=12.0, n_replicates=10)
    assert tomllib.loads(text)["design"]["moe"] == pytest.approx(0.12, abs=1e-15)


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
