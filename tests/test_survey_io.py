"""Readers (CSV, Excel, Parquet, SPSS, Stata), value labels and formula-safe writers."""

from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat
import pytest

from satsample import load_questionnaire
from satsample.survey import ConfigError, DataError
from satsample.survey.io import (
    answers_to_codes,
    label_mapping,
    normalise_ids,
    read_table,
    require_columns,
    safe_cell,
    write_csv,
    write_excel,
)

DATA = pd.DataFrame({"id": [101, 102, 103], "agency": ["A", "B", "A"],
                     "q1": [5.0, np.nan, 3.0]})


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".parquet", ".sav", ".dta"])
def test_every_format_reads_the_same_table(tmp_path, ext):
    path = tmp_path / f"t{ext}"
    if ext == ".csv":
        DATA.to_csv(path, index=False)
    elif ext == ".xlsx":
        write_excel({"s": DATA}, path)
    elif ext == ".parquet":
        DATA.to_parquet(path)
    elif ext == ".sav":
        pyreadstat.write_sav(DATA, str(path))
    else:
        pyreadstat.write_dta(DATA, str(path))
    df, _ = read_table(path)
    assert list(df.columns) == ["id", "agency", "q1", "_file", "_row"]
    assert normalise_ids(df["id"]).tolist() == ["101", "102", "103"]
    assert df["agency"].tolist() == ["A", "B", "A"]
    codes, bad = answers_to_codes(df["q1"], {})
    np.testing.assert_array_equal(codes, [5.0, np.nan, 3.0])
    assert not bad.any()
    # rows as a person sees them: header is line 1 in CSV and Excel, cases count from 1
    assert df["_row"].tolist() == ([2, 3, 4] if ext in (".csv", ".xlsx") else [1, 2, 3])
    assert set(df["_file"]) == {path.name}


def test_spss_value_labels_map_to_the_questionnaire_codes(tmp_path):
    q = load_questionnaire("sipas_2017")
    df = pd.DataFrame({"q01": [21.0, 25.0, 29.0, np.nan, 22.0]})
    labels = {21: "Rất không hài lòng", 22: "không  HÀI lòng", 25: "Rất hài lòng",
              29: "Không ý kiến"}
    path = tmp_path / "w.sav"
    pyreadstat.write_sav(df, str(path), variable_value_labels={"q01": labels})
    got, meta = read_table(path)
    assert meta["q01"][25.0] == "Rất hài lòng"
    codes, bad = answers_to_codes(got["q01"], label_mapping(q))
    np.testing.assert_array_equal(codes, [1.0, 5.0, 9.0, np.nan, 2.0])
    assert not bad.any()


def test_labels_from_the_questionnaire_and_the_configuration():
    q = load_questionnaire("sipas_2017")
    m = label_mapping(q, {"HL": 4}, blanks=["-"])
    vals = pd.Series(["very satisfied", "RẤT HÀI LÒNG ", "hl", "-", "5", 4, "hơi hài lòng"],
                     dtype=object)
    codes, bad = answers_to_codes(vals, m)
    np.testing.assert_array_equal(codes[:6], [5, 5, 4, np.nan, 5, 4])
    assert bad.tolist() == [False] * 6 + [True]
    with pytest.raises(ConfigError, match=r"value_labels\.'X' = 7: code 7 is not in"):
        label_mapping(q, {"X": 7})


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"frame '.*nope\.csv' does not exist"):
        read_table(tmp_path / "nope.csv", what="frame")
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match=r"unknown file type '\.json'"):
        read_table(bad)
    latin = tmp_path / "l.csv"
    latin.write_bytes("id,tên\n1,Hà\n".encode("cp1258"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(latin)
    dup = tmp_path / "d.csv"
    dup.write_text("id,a,a\n1,2,3\n")
    with pytest.raises(DataError, match=r"column name\(s\) \['a'\] appear more than once"):
        read_table(dup)
    xl = tmp_path / "s.xlsx"
    write_excel({"one": DATA}, xl)
    with pytest.raises(DataError, match=r"has no sheet 'two'; sheets: 'one'"):
        read_table(xl, sheet="two")


def test_missing_column_names_file_column_and_role():
    df = DATA.assign(_file="f.csv", _row=[2, 3, 4])
    with pytest.raises(DataError, match=r"response file 'f\.csv': column 'disp' "
                                        r"\(field\.disposition\) not found; columns in the "
                                        r"file: 'id', 'agency', 'q1'"):
        require_columns(df, {"field.id": "id", "field.disposition": "disp"},
                        what="response file", file="f.csv")


@pytest.mark.parametrize(("value", "safe"), [
    ("=1+1", "'=1+1"), ("+84 912", "'+84 912"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"), ("Hà Nội", "Hà Nội"), (-3.5, -3.5), (None, None),
])
def test_safe_cell(value, safe):
    assert safe_cell(value) == safe


def test_written_csv_and_excel_hold_no_formula(tmp_path):
    df = pd.DataFrame({"name": ["=HYPERLINK(\"http://x\",\"y\")", "ok", "@cmd"],
                       "n": [1, -2, 3]})
    write_csv(df, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text(encoding="utf-8-sig")
    assert "\"'=HYPERLINK" in text and "'@cmd" in text and ",-2" in text
    write_excel({"t": df}, tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx").active
    cells = list(ws["A"])[1:]
    # in a workbook the text is kept exactly, as a text cell with Excel's quote prefix
    assert [c.value for c in cells] == ["=HYPERLINK(\"http://x\",\"y\")", "ok", "@cmd"]
    assert [c.quotePrefix for c in cells] == [True, False, True]
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    assert [c.value for c in ws["B"]][1:] == [1, -2, 3]
    back, _ = read_table(tmp_path / "t.xlsx")
    assert back["name"].tolist() == df["name"].tolist()
