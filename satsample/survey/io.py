"""Readers for the survey's files and writers that never turn data into formulas or markup.

Readers (:func:`read_table`): CSV (UTF-8, with or without BOM), Excel ``.xlsx``/``.xlsm``
(openpyxl), Parquet (pyarrow), SPSS ``.sav`` and Stata ``.dta`` (pyreadstat, the optional
``io`` extra: ``pip install satsample[io]``).  Each table gets two bookkeeping columns,
``_file`` (the file name) and ``_row`` (the row number a person sees: the spreadsheet or
text line, header = 1, for CSV and Excel; the case number for Parquet, SPSS and Stata), so
every message can point at the rows to fix.

Value labels: SPSS and Stata files carry labels ("Rất hài lòng"); they are applied on
reading and mapped to the questionnaire's codes by :func:`label_mapping` (the labels of the
questionnaire's ``scale_labels``, each also split into its English and Vietnamese parts,
plus the configuration's ``questionnaire.value_labels``).  Labels are compared after
Unicode NFC normalisation, trimming, collapsing spaces and case folding.

Writers never turn text from the data into a formula (OWASP's advice against CSV/formula
injection, :mod:`satsample._spreadsheet`): in CSV files a text starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading single quote; in ``.xlsx`` files it
is kept exactly, as a text cell with Excel's quote prefix.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._spreadsheet import FORMULA_STARTS, csv_safe, escape_csv_text
from ..questionnaire import Questionnaire
from .errors import ConfigError, DataError

__all__ = [
    "READERS",
    "label_mapping",
    "normalise_ids",
    "normalise_label",
    "read_table",
    "rows_text",
    "safe_cell",
    "write_csv",
    "write_excel",
]

READERS: dict[str, str] = {".csv": "csv", ".txt": "csv", ".xlsx": "excel", ".xlsm": "excel",
                           ".parquet": "parquet", ".pq": "parquet", ".sav": "spss",
                           ".zsav": "spss", ".dta": "stata"}
#: Escape of one CSV cell against formula injection (satsample._spreadsheet).
safe_cell = escape_csv_text
_SPACES = re.compile(r"\s+")


def rows_text(rows: Iterable[Any], limit: int = 5) -> str:
    """``"rows 3, 7, 12 and 4 more"`` from row numbers (plain ints)."""
    r = [int(x) for x in rows]
    if not r:
        return "no row"
    shown = ", ".join(str(x) for x in r[:limit])
    more = f" and {len(r) - limit} more" if len(r) > limit else ""
    return f"row{'s' if len(r) > 1 else ''} {shown}{more}"


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_table(path: str | Path, *, sheet: str | None = None, what: str = "file",
               value_labels: bool = True) -> tuple[pd.DataFrame, dict[str, dict[Any, str]]]:
    """Read one data file into a DataFrame with ``_file`` and ``_row`` columns.

    Parameters
    ----------
    path : str or pathlib.Path
        The file; its extension picks the reader (:data:`READERS`).
    sheet : str, optional
        Excel sheet name (default: the first sheet).
    what : str, default="file"
        What the file is, for messages ("frame", "response file"...).
    value_labels : bool, default=True
        SPSS/Stata: replace labelled values by their labels (mapped to codes later).

    Returns
    -------
    data : pandas.DataFrame
        Columns as in the file (names stripped), then ``_file`` and ``_row``.
    labels : dict
        SPSS/Stata value labels per column ({} for the other formats).

    Raises
    ------
    DataError
        A missing or unreadable file, an unknown extension, a missing sheet, a missing
        reader package, duplicated or empty column names.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise DataError(f"{what} {str(p)!r} is not a file")
    kind = READERS.get(p.suffix.lower())
    if kind is None:
        raise DataError(f"{what} {str(p)!r}: unknown file type {p.suffix!r}; readable types: "
                        f"{', '.join(sorted(READERS))}")
    labels: dict[str, dict[Any, str]] = {}
    offset = 2
    try:
        if kind == "csv":
            try:
                df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise DataError(f"{what} {str(p)!r} is not UTF-8 text (byte {exc.start}); save "
                                "it as CSV UTF-8") from None
            df = df.replace({"": None})
            import csv

            with open(p, encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh), [])
            if len(header) == df.shape[1]:
                df.columns = header
        elif kind == "excel":
            try:
                import openpyxl  # noqa: F401
            except ImportError:  # pragma: no cover - openpyxl is installed with the io extra
                raise DataError(f"{what} {str(p)!r}: reading Excel needs openpyxl "
                                "(pip install satsample[io])") from None
            df = _read_xlsx(p, sheet, what)
        elif kind == "parquet":
            df = pd.read_parquet(p)
            offset = 1
        else:
            try:
                import pyreadstat
            except ImportError:
                raise DataError(f"{what} {str(p)!r}: reading {p.suffix} files needs pyreadstat "
                                "(pip install satsample[io])") from None
            reader = pyreadstat.read_sav if kind == "spss" else pyreadstat.read_dta
            df, meta = reader(str(p), apply_value_formats=False, user_missing=False)
            offset = 1
            for col, lab_set in (meta.variable_to_label or {}).items():
                vl = (meta.value_labels or {}).get(lab_set)
                if vl:
                    labels[str(col)] = {_plain(k): str(v) for k, v in vl.items()}
            if value_labels and labels:
                df = df.copy()
                for col, vl in labels.items():
                    vals = df[col].astype(object)
                    df[col] = vals.map(lambda v, vl=vl: vl.get(_plain(v), v)
                                       if not _is_missing(v) else None)
    except DataError:
        raise
    except (OSError, ValueError, ImportError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what} {str(p)!r} cannot be read: {msg}") from None
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what} {str(p)!r} cannot be read ({type(exc).__name__}): {msg}"
                        ) from None
    cols = [str(c).strip() for c in df.columns]
    empty = [i + 1 for i, c in enumerate(cols) if not c or c.startswith("Unnamed:")]
    if empty and len(df):
        raise DataError(f"{what} {str(p)!r}: column {empty[0]} has no name in the header row")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DataError(f"{what} {str(p)!r}: column name(s) {dup} appear more than once")
    df.columns = cols
    for reserved in ("_file", "_row"):
        if reserved in df.columns:
            raise DataError(f"{what} {str(p)!r}: column name {reserved!r} is reserved")
    df = df.reset_index(drop=True)
    df["_file"] = p.name
    df["_row"] = np.arange(offset, offset + len(df), dtype=np.int64)
    return df, labels


def _read_xlsx(p: Path, sheet: str | None, what: str) -> pd.DataFrame:
    """Values of one sheet (openpyxl read-only: fast and no formula is evaluated)."""
    import openpyxl

    wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise DataError(f"{what} {str(p)!r} has no sheet {sheet!r}; sheets: "
                            f"{', '.join(map(repr, wb.sheetnames))}")
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return pd.DataFrame()
        width = len(header)
        while width and header[width - 1] is None:
            width -= 1
        body = [tuple(r[:width]) + (None,) * (width - len(r[:width])) for r in rows]
    finally:
        wb.close()
    while body and all(v is None for v in body[-1]):
        body.pop()
    names = ["" if h is None else str(h) for h in header[:width]]
    return pd.DataFrame(body, columns=names, dtype=object)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def require_columns(df: pd.DataFrame, columns: Mapping[str, str | None], *, what: str,
                    file: str) -> None:
    """Raise :class:`DataError` naming the file, the missing column and its role."""
    have = [c for c in df.columns if not c.startswith("_")]
    for role, col in columns.items():
        if col is not None and col not in df.columns:
            shown = ", ".join(map(repr, have[:15])) + (" ..." if len(have) > 15 else "")
            raise DataError(f"{what} {file!r}: column {col!r} ({role}) not found; columns in "
                            f"the file: {shown}")


def normalise_ids(values: pd.Series) -> pd.Series:
    """Ids as text: integral numbers without ``.0``, stripped strings, None for missing."""
    def one(v: Any) -> Any:
        if _is_missing(v):
            return None
        if isinstance(v, (bool, np.bool_)):
            return str(v)
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        s = str(v).strip()
        return s or None
    return values.astype(object).map(one).astype(object)


def normalise_label(text: str) -> str:
    """NFC, trimmed, single-spaced, case-folded text (how labels are compared)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", str(text))).strip().casefold()


def label_mapping(q: Questionnaire, extra: Mapping[str, int] | None = None,
                  blanks: Sequence[str] = ()) -> dict[str, float]:
    """Answer label -> code from the questionnaire's scale labels and the configuration.

    A scale label ``"very satisfied (rất hài lòng)"`` gives three keys: the whole text,
    ``"very satisfied"`` and ``"rất hài lòng"``.  ``extra`` labels (the configuration's
    ``questionnaire.value_labels``) are added and win over the questionnaire's.  ``blanks``
    map to NaN (a blank answer).

    Raises
    ------
    ConfigError
        ``extra`` maps a label to a code that the questionnaire does not know.
    """
    known = set(q.valid_codes) | set(q.unusable_codes)
    out: dict[str, float] = {}
    for code, text in q.scale_labels.items():
        parts = [text]
        m = re.match(r"^(.*?)\s*\((.*)\)\s*$", text)
        if m:
            parts += [m.group(1), m.group(2)]
        for part in parts:
            if part.strip():
                out.setdefault(normalise_label(part), float(code))
    for label, code in (extra or {}).items():
        if int(code) not in known:
            raise ConfigError(f"key questionnaire.value_labels.{label!r} = {code}: code {code} is "
                              f"not in questionnaire {q.name!r} (codes "
                              f"{sorted(known)})")
        out[normalise_label(label)] = float(code)
    for b in blanks:
        out[normalise_label(b)] = float("nan")
    return out


def answers_to_codes(values: pd.Series, mapping: Mapping[str, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Codes (float64, NaN blank) of a column of answers, and the mask of unreadable cells.

    Numbers pass through; texts are looked up in ``mapping`` (then read as numbers);
    anything else is unreadable (NaN in the codes, True in the mask).
    """
    n = len(values)
    out = np.full(n, np.nan)
    unreadable = np.zeros(n, dtype=bool)
    arr = values.to_numpy(dtype=object)
    cache: dict[Any, tuple[float, bool]] = {}
    for i, v in enumerate(arr):
        if _is_missing(v):
            continue
        if isinstance(v, (bool, np.bool_)):
            unreadable[i] = True
            continue
        if isinstance(v, (int, float, np.integer, np.floating)):
            out[i] = float(v)
            continue
        hit = cache.get(v)
        if hit is None:
            key = normalise_label(v)
            if not key:
                hit = (np.nan, False)
            elif key in mapping:
                hit = (mapping[key], False)
            else:
                try:
                    hit = (float(key.replace(",", ".")), False)
                except ValueError:
                    hit = (np.nan, True)
            cache[v] = hit
        out[i], unreadable[i] = hit
    return out, unreadable


def write_csv(df: pd.DataFrame, path: Path, *, float_format: str | None = None) -> Path:
    """Write a table as UTF-8 CSV (with BOM, so Excel shows Vietnamese text) safely."""
    csv_safe(df).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\n",
                        float_format=float_format)
    return path


def sheet_names(labels: Sequence[str]) -> list[str]:
    """Valid, unique Excel sheet names (31 characters, none of ``[]:*?/\\``)."""
    out: list[str] = []
    for lab in labels:
        base = re.sub(r"[\[\]:*?/\\]", "_", str(lab)).strip("'") or "sheet"
        name = base[:31]
        k = 2
        while name.casefold() in {o.casefold() for o in out}:
            suffix = f"~{k}"
            name = base[: 31 - len(suffix)] + suffix
            k += 1
        out.append(name)
    return out


def have_excel() -> bool:
    """Whether openpyxl (the ``io`` extra) is installed, so Excel files can be written."""
    try:
        import openpyxl  # noqa: F401
    except ImportError:  # pragma: no cover - installed with the io and test extras
        return False
    return True


def write_excel(sheets: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Write several tables to one ``.xlsx`` workbook, every text cell made safe."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover
        raise DataError("writing Excel needs openpyxl (pip install satsample[io])") from None
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    names = sheet_names(list(sheets))
    wb = openpyxl.Workbook(write_only=True)
    for name, df in zip(names, sheets.values(), strict=True):
        ws = wb.create_sheet(title=name)

        def cell(v: Any, ws: Any = ws) -> Any:
            v = _cell(v)
            if isinstance(v, str) and v.startswith(FORMULA_STARTS):
                # the text exactly, as a text cell with Excel's quote prefix (never a formula)
                c = WriteOnlyCell(ws, value=v)
                c.data_type = "s"
                c.quotePrefix = True
                return c
            return v

        ws.append([cell(str(c)) for c in df.columns])
        cols = [df[c].to_numpy(dtype=object) for c in df.columns]
        for i in range(len(df)):
            ws.append([cell(col[i]) for col in cols])
    try:
        wb.save(path)
    except OSError as exc:
        raise DataError(f"{str(path)!r} cannot be written: {exc.strerror or exc}") from None
    return path


def _cell(v: Any) -> Any:
    if _is_missing(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)
