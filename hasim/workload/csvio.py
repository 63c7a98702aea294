"""Strict CSV reading for trace files: ragged rows, missing columns and bad numbers are
reported as InputError with the file, 1-based line and column name."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hasim.errors import InputError


@dataclass
class Table:
    """A parsed CSV file.

    header: column names in file order; header_line: its 1-based line number.
    frame: one row per non-blank data line (all cells as read, numbers parsed by pandas).
    lines: 1-based line number in the file of each row of ``frame``.
    """

    path: Path
    header: list[str]
    frame: pd.DataFrame
    lines: np.ndarray
    header_line: int = 1

    def require(self, columns: Sequence[str], expected: str) -> None:
        """Raise InputError naming the missing columns unless all of ``columns`` exist."""
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise InputError(
                "missing column(s) " + ", ".join(missing),
                path=self.path,
                line=self.header_line,
                expected=expected,
            )


def _split(line: str, quoted: bool) -> list[str]:
    if quoted:
        return next(csv.reader([line]))
    return line.split(",")


def read_table(path: Path, *, text_columns: Sequence[str] = ()) -> Table:
    """Read a comma-separated file with a header line.

    Blank lines are skipped. Every other line must have as many fields as the header.
    ``text_columns`` are kept as strings; other columns are parsed by pandas (cells that
    are not numbers leave the column as text; see :func:`numeric_matrix`).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("file is not UTF-8 text", path=path, expected="a CSV file") from exc
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not numbered:
        raise InputError("file is empty", path=path, expected="a CSV header line")
    quoted = '"' in text
    header_no, header_text = numbered[0]
    header = [h.strip() for h in _split(header_text, quoted)]
    seen: set[str] = set()
    for name in header:
        if name in seen or not name:
            raise InputError(
                f"column name {name!r} is empty or repeated",
                path=path,
                line=header_no,
                column=name or None,
                expected="unique, non-empty column names",
            )
        seen.add(name)
    width = len(header)
    for no, ln in numbered[1:]:
        got = len(_split(ln, quoted)) if quoted else ln.count(",") + 1
        if got != width:
            raise InputError(
                f"row has {got} fields but the header has {width}",
                path=path,
                line=no,
                expected=f"{width} comma-separated fields",
            )
    body = "\n".join(ln for _, ln in numbered)
    dtypes = {c: str for c in text_columns if c in header}
    frame = pd.read_csv(io.StringIO(body), header=0, names=header, dtype=dtypes, na_filter=False)
    lines = np.fromiter((no for no, _ in numbered[1:]), dtype=np.int64, count=len(numbered) - 1)
    return Table(path=path, header=header, frame=frame, lines=lines, header_line=header_no)


def numeric_matrix(table: Table, columns: Sequence[str], *, integer: bool, what: str) -> np.ndarray:
    """The given columns as a (rows x columns) array, checked cell by cell.

    Every cell must be a finite, non-negative number (integer-valued when ``integer``).
    The first bad cell in file order raises InputError with its line and column name.
    Returns int64 when ``integer`` else float64.
    """
    frame = table.frame
    cols = list(columns)
    if not cols or len(frame) == 0:
        return np.zeros((len(frame), len(cols)), dtype=np.int64 if integer else np.float64)
    if integer and all(frame[c].dtype.kind in "iu" for c in cols):
        values = frame[cols].to_numpy(dtype=np.int64)
        if (values < 0).any():
            _raise_first(table, cols, values < 0, values.astype(np.float64), integer, what)
        return values
    parts = []
    for c in cols:
        s = frame[c]
        if s.dtype.kind in "iuf":
            parts.append(s.to_numpy(dtype=np.float64))
        else:
            parts.append(pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64))
    values = np.column_stack(parts)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < 0)
        if integer:
            bad |= values != np.floor(values)
    if bad.any():
        _raise_first(table, cols, bad, values, integer, what)
    return values.astype(np.int64) if integer else values


def _raise_first(
    table: Table, cols: list[str], bad: np.ndarray, values: np.ndarray, integer: bool, what: str
) -> None:
    """Raise InputError for the first flagged cell in file order."""
    row, col = (int(i) for i in np.argwhere(bad)[0])
    text = str(table.frame[cols[col]].iloc[row])
    value = values[row, col]
    if text.strip() == "":
        problem = f"empty {what}"
    elif not np.isfinite(value):
        problem = f"{what} {text!r} is not a finite number"
    elif integer and value != np.floor(value):
        problem = f"{what} {text!r} is not an integer"
    else:
        problem = f"{what} {text!r} is negative"
    kind = "a non-negative integer" if integer else "a non-negative number"
    raise InputError(
        problem,
        path=table.path,
        line=int(table.lines[row]),
        column=cols[col],
        expected=f"{kind} {what}",
    )
