"""Reading import files: CSV (UTF-8, header row), XLSX (first sheet, header row) or JSON (array of objects).

Every value comes out as a stripped string ('' when empty); JSON objects and lists inside a JSON file are
re-serialised so that ``params`` and ``points`` read the same in all three formats.  ``row`` numbers are
what a person sees: the spreadsheet line (header = 1) for CSV/XLSX, the 1-based position in a JSON array.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import orjson

from jiliang.core.errors import JiliangError, Problem

FORMATS = (".csv", ".xlsx", ".json")


class Table:
    """An import file as read: the header's column names and the records.

    Two equivalent views: ``rows`` (row number, values by column) and the column-wise
    ``column(name)`` / ``rownums`` / ``broken`` that bulk importers read (one list per column is
    much cheaper to build and to check than a dictionary per record).  Either is built from the other
    on first use.  A record that could not be read (a ragged CSV line, a JSON value that is not an
    object) is in ``broken`` with the reason; its values are empty.
    """

    def __init__(self, columns: list[str], rows: list[tuple[int, dict[str, str]]] | None = None, *,
                 data: dict[str, list[str]] | None = None, rownums: list[int] | None = None,
                 broken: dict[int, str] | None = None) -> None:
        if rows is None and (data is None or rownums is None):
            raise ValueError("a Table needs rows, or data and rownums")
        self.columns = columns
        self._rows = rows
        self._data = data
        self._rownums = rownums
        self._broken = broken

    @property
    def rows(self) -> list[tuple[int, dict[str, str]]]:
        if self._rows is None:
            assert self._data is not None and self._rownums is not None
            broken = self.broken
            names = [c for c in self.columns if c in self._data]
            values = zip(*(self._data[c] for c in names), strict=True) if names else iter(
                [()] * len(self._rownums))
            self._rows = [
                (n, {"__width__": broken[i]} if i in broken else dict(zip(names, vals, strict=True)))
                for i, (n, vals) in enumerate(zip(self._rownums, values, strict=True))
            ]
        return self._rows

    def __len__(self) -> int:
        return len(self._rownums) if self._rownums is not None else len(self.rows)

    @property
    def rownums(self) -> list[int]:
        if self._rownums is None:
            self._rownums = [n for n, _ in self.rows]
        return self._rownums

    @property
    def broken(self) -> dict[int, str]:
        """Index (0-based position) -> reason, for records that could not be read."""
        if self._broken is None:
            self._broken = {i: v["__width__"] for i, (_, v) in enumerate(self.rows) if "__width__" in v}
        return self._broken

    def record(self, index: int) -> tuple[int, dict[str, str]]:
        """One record by position: (row number, values), without building every row's dictionary."""
        if self._rows is not None:
            return self._rows[index]
        reason = self.broken.get(index)
        if reason is not None:
            return self.rownums[index], {"__width__": reason}
        return self.rownums[index], {c: self.column(c)[index] for c in self.columns}

    def column(self, name: str) -> list[str]:
        """The values of one column, one per record ('' where absent)."""
        if self._data is None:
            self._data = {}
        col = self._data.get(name)
        if col is None:
            col = [v.get(name, "") for _, v in self.rows]
            self._data[name] = col
        return col


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if hasattr(v, "isoformat"):
        return v.isoformat()[:10] if type(v).__name__ in ("date", "datetime") else str(v)
    return str(v).strip()


def read_table(data: bytes, filename: str) -> Table:
    suffix = Path(filename).suffix.lower()
    if suffix == ".csv":
        return _read_csv(data)
    if suffix == ".xlsx":
        return _read_xlsx(data)
    if suffix == ".json":
        return _read_json(data)
    raise JiliangError(f"{filename}: unsupported file type {suffix or '(none)'}; use .csv, .xlsx or .json",
                       code="unsupported_format")


def read_path(path: Path) -> Table:
    if not path.exists():
        raise JiliangError(f"{path}: no such file", code="file_not_found")
    return read_table(path.read_bytes(), path.name)


def _read_csv(data: bytes) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JiliangError(f"the CSV file is not UTF-8 (byte {exc.start}); save it as UTF-8",
                           code="bad_encoding") from exc
    fast = _read_csv_columnar(data)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise JiliangError("the file is empty: a header row is required", code="empty_file") from None
    columns = [h.strip() for h in header]
    width = len(columns)
    # Column-wise: read every record as a list, set aside ragged and blank lines, transpose once.
    records: list[list[str]] = []
    rownums: list[int] = []
    broken: dict[int, str] = {}
    blank = [""] * width
    for lineno, rec in enumerate(reader, start=2):
        if len(rec) != width:
            if not rec or all(not c.strip() for c in rec):
                continue
            broken[len(records)] = f"{len(rec)} values for {width} columns"
            rec = blank
        elif not any(rec) or all(not c.strip() for c in rec):
            continue
        records.append(rec)
        rownums.append(lineno)
    if records:
        cols = {c: [v.strip() for v in col] for c, col in zip(columns, zip(*records, strict=True), strict=True)}
    else:
        cols = {c: [] for c in columns}
    return Table(columns, data=cols, rownums=rownums, broken=broken)


COLUMNAR_MIN_BYTES = 1_000_000


def _regular_records(body: bytes) -> int | None:
    """If every record of the CSV text has the same number of fields, that number of records; else None.

    Vectorised: the parity of the double quotes seen so far tells whether a byte lies inside a quoted
    value (a doubled quote toggles twice), so commas and newlines outside quotes separate fields and
    records.  A blank line counts as a record with one field, so it makes the file irregular too."""
    import numpy as np

    arr = np.frombuffer(body, dtype=np.uint8)
    outside = (np.cumsum(arr == 34, dtype=np.uint8) & 1) == 0  # wraps at 256: only the parity matters
    ends = np.flatnonzero((arr == 10) & outside)
    if len(arr) and arr[-1] != 10:
        ends = np.append(ends, len(arr))
    commas = np.flatnonzero((arr == 44) & outside)
    per_record = np.diff(np.searchsorted(commas, ends), prepend=0)
    if len(per_record) == 0 or (per_record != per_record[0]).any():
        return None
    return len(per_record)


def _read_csv_columnar(data: bytes) -> Table | None:
    """Large, regular files through Polars' CSV reader (several times faster than the csv module).
    Anything unusual -- a blank or ragged line, a duplicate or empty column name, a record with no value
    at all, a parse error -- returns None and the file is read record by record, which reports such
    lines with their numbers."""
    if len(data) < COLUMNAR_MIN_BYTES:
        return None
    import polars as pl

    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    records = _regular_records(body)
    if records is None:
        return None
    try:
        df = pl.read_csv(io.BytesIO(body), infer_schema=False, has_header=True, raise_if_empty=True,
                         empty_string_is_null=False)
    except Exception:
        return None
    header = next(csv.reader(io.StringIO(body[: body.find(b"\n")].decode("utf-8"), newline="")), [])
    columns = [c.strip() for c in header]
    if (df.height != records - 1 or df.width != len(columns) or len(set(columns)) != len(columns)
            or not all(columns) or df.null_count().sum_horizontal().item()):
        return None
    df = df.select(pl.all().str.strip_chars())
    if df.height and df.select(pl.all_horizontal(pl.all() == "").any()).item():
        return None  # a record with no values at all: the careful reader skips it, keeping the numbering
    data_cols = {c: df[name].to_list() for c, name in zip(columns, df.columns, strict=True)}
    return Table(columns, data=data_cols, rownums=list(range(2, df.height + 2)), broken={})


def _read_xlsx(data: bytes) -> Table:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise JiliangError(f"the Excel file cannot be read: {exc}", code="bad_file") from exc
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    try:
        header = next(it)
    except StopIteration:
        raise JiliangError("the sheet is empty: a header row is required", code="empty_file") from None
    columns = [_cell(h) for h in header]
    while columns and not columns[-1]:
        columns.pop()
    rows: list[tuple[int, dict[str, str]]] = []
    for lineno, rec in enumerate(it, start=2):
        values = [_cell(v) for v in rec[: len(columns)]]
        if not any(values):
            continue
        values += [""] * (len(columns) - len(values))
        rows.append((lineno, dict(zip(columns, values, strict=True))))
    wb.close()
    return Table(columns, rows)


def _read_json(data: bytes) -> Table:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JiliangError(f"the JSON file is malformed: {exc}", code="bad_json") from exc
    if not isinstance(doc, list):
        raise JiliangError("the JSON file must be an array of objects", code="bad_json")
    columns: list[str] = []
    seen: set[str] = set()
    rows: list[tuple[int, dict[str, str]]] = []
    for i, obj in enumerate(doc, start=1):
        if not isinstance(obj, dict):
            rows.append((i, {"__width__": "the record is not an object"}))
            continue
        for k in obj:
            if k not in seen:
                seen.add(k)
                columns.append(k)
        rows.append((i, {str(k): _cell(v) for k, v in obj.items()}))
    return Table(columns, rows)


def one_row_table(values: Mapping[str, object]) -> Table:
    """A single record (from the API or a form) as a table, so it is validated exactly like an imported row."""
    clean = {k: "" if v is None else _cell(v) for k, v in values.items()}
    return Table(columns=list(clean), rows=[(1, clean)])


def check_columns(table: Table, required: tuple[str, ...], optional: tuple[str, ...]) -> list[Problem]:
    problems = [Problem(row=1, field=c, reason="required column is missing")
                for c in required if c not in table.columns]
    allowed = set(required) | set(optional)
    problems += [
        Problem(row=1, field=c, reason=f"unknown column (allowed: {', '.join((*required, *optional))})")
        for c in table.columns if c and c not in allowed
    ]
    return problems
