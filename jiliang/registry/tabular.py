"""Reading import files: CSV (UTF-8, header row), XLSX (first sheet, header row) or JSON (array of objects).

Every value comes out as a stripped string ('' when empty); JSON objects and lists inside a JSON file are
re-serialised so that ``params`` and ``points`` read the same in all three formats.  ``row`` numbers are
what a person sees: the spreadsheet line (header = 1) for CSV/XLSX, the 1-based position in a JSON array.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from jiliang.core.errors import JiliangError, Problem

FORMATS = (".csv", ".xlsx", ".json")


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (row number, values)


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
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise JiliangError("the file is empty: a header row is required", code="empty_file") from None
    columns = [h.strip() for h in header]
    rows: list[tuple[int, dict[str, str]]] = []
    width = len(columns)
    for lineno, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) != width:
            rows.append((lineno, {"__width__": f"{len(rec)} values for {width} columns"}))
            continue
        rows.append((lineno, {c: v.strip() for c, v in zip(columns, rec, strict=True)}))
    return Table(columns, rows)


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
