"""Text from data never becomes a spreadsheet formula (OWASP CSV/formula injection).

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is read as a formula by Excel or LibreOffice when it arrives through a
CSV file, and openpyxl writes a Python string starting with ``=`` as a live
formula.  The writers of satsample therefore

* in ``.xlsx`` workbooks: store such text as a plain string cell with Excel's
  quote prefix (the text is kept exactly; editing the cell keeps it text);
* in CSV files: prefix such text with a single quote, as OWASP recommends.

Numbers are numbers and are left alone (``-0.5`` in a float column is not text).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FORMULA_STARTS", "csv_safe", "escape_csv_text", "protect_worksheet"]

FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def escape_csv_text(value: Any) -> Any:
    """Prefix text that a spreadsheet would read as a formula with ``'``; other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are escaped for CSV."""
    out = frame.copy()
    for c in out.columns:
        s = out[c]
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype) or isinstance(
                s.dtype, pd.CategoricalDtype):
            out[c] = s.astype(object).map(escape_csv_text)
    out.columns = [escape_csv_text(c) for c in out.columns]
    return out


def protect_worksheet(worksheet: Any) -> None:
    """Turn every formula-looking cell of an openpyxl worksheet into a quoted text cell.

    satsample never writes formulas, so any cell openpyxl typed as a formula
    (``data_type == "f"``) holds text from the data; it becomes a string cell
    with the same text.  Text starting with ``+``, ``-``, ``@``, a tab or a
    carriage return gets the quote prefix too, so that editing it in Excel
    does not evaluate it.
    """
    for row in worksheet.iter_rows():
        for cell in row:
            value = cell.value
            if isinstance(value, str) and (cell.data_type == "f"
                                           or value.startswith(FORMULA_STARTS)):
                cell.data_type = "s"
                cell.quotePrefix = True
