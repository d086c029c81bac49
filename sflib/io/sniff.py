"""Load any supported file into raw records, telling the format from the content, not the suffix.

Formats: a JSON array of objects, JSON Lines (what ``datasets.Dataset.to_json`` writes, whatever
the suffix), CSV with a header or headerless (the original feedback layouts), Parquet (by its
``PAR1`` magic bytes; binary, so never run through the UTF-8 check) and a folder saved with
``datasets``' ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``, with ``split``).

The result is a :class:`Raw`: a DataFrame of the file's fields as they are (object columns) and,
for each record, the 1-based number a user would look for — the entry of a JSON list, the line of
a JSON Lines file, the data row of a CSV (after its header) with its line in the file. Every
problem raises one :class:`~sflib.core.data.DataError` naming the file, the row and the field.
"""
from __future__ import annotations

import csv
import sys
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.data import DataError

PARQUET_MAGIC = b"PAR1"
# a CSV field may be of any size (a long response): lift the csv module's 128 KiB default limit
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

FORMATS = ("json", "jsonl", "csv", "parquet", "dataset")


@dataclass
class Raw:
    """A file's records before validation, with the row number a user sees for each one."""

    path: Path
    fmt: str
    frame: pd.DataFrame
    rows: list[int]
    lines: list[int] | None = None  # CSV: the line in the file where each row starts
    header: bool = True  # CSV: False when read as a headerless layout
    names: dict[str, str] = field(default_factory=dict)  # our column name -> the file's, for messages

    def error(self, i: int, message: str, field: str | None = None) -> DataError:
        """A :class:`DataError` for the ``i``-th record (0-based position in ``frame``)."""
        line = self.lines[i] if self.lines is not None else None
        if line == self.rows[i]:
            line = None
        return DataError(self.path, message, row=self.rows[i], field=self.names.get(field, field), line=line,
                         unit="line" if self.fmt == "jsonl" else "row")


def load(path: os.PathLike | str, *, split: str | None = None,
         headerless: Sequence[str] | None = None) -> Raw:
    """The records of ``path`` (see the module docs). ``headerless`` names the columns of a CSV
    whose first row is not a header (the original feedback layouts); without it such a CSV is refused.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        return _load_dataset(path, split)
    raw = path.read_bytes()
    if raw[:4] == PARQUET_MAGIC:
        return _load_parquet(path)
    if path.suffix.lower() == ".parquet" and raw.strip():
        raise DataError(path, "is not a Parquet file (it does not start with the PAR1 magic bytes)")
    if split is not None:
        raise DataError(path, f"--split {split!r} applies to a saved dataset folder, not to a file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        _raise_not_utf8(path, raw, e.start, headerless)
    stripped = text.lstrip()
    if not stripped:
        raise DataError(path, "file is empty" + (" (0 bytes)" if not raw else ""))
    scalar = _json_scalar(stripped)
    if scalar is not None:
        raise DataError(path, f"holds a single JSON value ({scalar}), not records: expected a JSON list of "
                              "objects, JSON Lines, CSV with a header, or Parquet")
    if stripped[0] in "[{":
        try:
            return (_load_json_array if stripped[0] == "[" else _load_json_object_or_lines)(path, text)
        except DataError:
            if path.suffix.lower() != ".csv":  # a CSV whose first field starts with a bracket
                raise
    return _load_csv(path, text, headerless)


def _raise_not_utf8(path: Path, raw: bytes, start: int, headerless: Sequence[str] | None) -> None:
    """Where the first byte that is not UTF-8 is: the CSV row and field, else the line."""
    message = f"not valid UTF-8 (byte {start + 1}); re-save the file as UTF-8"
    line = raw[:start].count(b"\n") + 1
    before = raw[:start].decode("utf-8-sig", errors="replace")
    if before.lstrip()[:1] not in ("[", "{"):
        try:
            records = [r for r in csv.reader(io.StringIO(before + "\x00", newline="")) if r]
        except csv.Error:
            records = []
        if records:
            header = "instruction" in [c.strip().lower() for c in records[0]] or headerless is None
            columns = [c.strip() for c in records[0]] if header else list(headerless)
            row, k = len(records) - (1 if header else 0), len(records[-1]) - 1
            if row >= 1 and k < len(columns):
                raise DataError(path, message, row=row, field=columns[k], line=line if line != row else None)
    raise DataError(path, message, row=line, unit="line")


# ----------------------------------------------------------------------------- JSON

def _json_scalar(text: str) -> str | None:
    """How a file that is one JSON string, number, true/false or null reads (``a string 'hello'``); else None."""
    if text[:1] in "[{" or text[:1] not in '"-0123456789tfn':
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(value, (dict, list)):  # pragma: no cover - starts with neither bracket
        return None
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    return f"{_json_type(value)} {shown[:60]}"


def _records_frame(path: Path, records: list, rows: list[int], fmt: str) -> Raw:
    unit = "line" if fmt == "jsonl" else "row"
    for rec, n in zip(records, rows):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected an object with named fields, found {_json_type(rec)}", row=n, unit=unit)
    if not records:
        raise DataError(path, "has no records (an empty list)")
    return Raw(path, fmt, pd.DataFrame.from_records(records).astype(object), rows)


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _load_json_array(path: Path, text: str) -> Raw:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})", row=e.lineno, unit="line") from None
    if not isinstance(records, list):  # pragma: no cover - starts with '['
        raise DataError(path, f"expected a JSON list of records, found {_json_type(records)}")
    return _records_frame(path, records, list(range(1, len(records) + 1)), "json")


def _load_json_object_or_lines(path: Path, text: str) -> Raw:
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        if not whole:
            raise DataError(path, "expected a list of records, found an empty JSON object {}")
        nested = [k for k, v in whole.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if nested or "\n" in text.strip():
            hint = f" (the records may be under the key {nested[0]!r}: save that list alone)" if nested else ""
            raise DataError(path, f"expected a list of records or JSON Lines, found one JSON object{hint}")
        return _records_frame(path, [whole], [1], "jsonl")
    lines = text.splitlines()
    if lines and all(line.lstrip().startswith("{") for line in lines):
        try:  # the fast path: pandas' C reader, when every line is an object (no blank line to count)
            frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        except ValueError:
            frame = None
        if frame is not None and len(frame) == len(lines):
            return Raw(path, "jsonl", frame.astype(object).where(frame.notna(), None), list(range(1, len(lines) + 1)))
    records, rows = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON Lines record: {e.msg} (column {e.colno})", row=n,
                            unit="line") from None
        rows.append(n)
    return _records_frame(path, records, rows, "jsonl")


# ----------------------------------------------------------------------------- CSV

def _load_csv(path: Path, text: str, headerless: Sequence[str] | None) -> Raw:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, lines = [], []
    last = 0
    try:
        for rec in reader:
            start, last = last + 1, reader.line_num
            if rec:
                records.append(rec)
                lines.append(start)
    except csv.Error as e:
        failing = len(records) + 1
        _raise_quote_error(path, text, last + 1, failing, records, headerless, str(e))
    first = [c.strip().lower() for c in records[0]]
    header = "instruction" in first or headerless is None
    if header:
        if "instruction" not in first and (not _looks_like_header(first) or len(records) == 1):
            raise DataError(path, "the first row is not a header naming the columns (expected at least "
                                  "'instruction'); add a header row", row=1, unit="line")
        columns = [c.strip() for c in records[0]]
        body, lines = records[1:], lines[1:]
    else:
        columns, body = list(headerless), records
    if not body:
        raise DataError(path, "has a header row but no data rows" if header else "has no records")
    n = len(columns)
    for i, rec in enumerate(body):
        if len(rec) != n:
            what = "too few" if len(rec) < n else "too many"
            missing = columns[min(len(rec), n - 1)]
            hint = "" if header else f" (read as the headerless layout {','.join(columns)})"
            raise DataError(path, f"{what} fields: {len(rec)}, expected {n}{hint}", row=i + 1,
                            field=missing, line=lines[i] if lines[i] != i + 1 else None)
    frame = pd.DataFrame(body, columns=columns, dtype=object)
    if header and columns[0] in ("", "Unnamed: 0") and all(v.strip().isdigit() for v in frame.iloc[:, 0]):
        frame = frame.iloc[:, 1:]  # the row numbers pandas' to_csv writes by default (index=True)
    return Raw(path, "csv", frame, list(range(1, len(body) + 1)), lines, header=header)


def _looks_like_header(first: list[str]) -> bool:
    return all(c and c.replace("_", "").isalnum() and len(c) < 40 for c in first)


def _raise_quote_error(path, text, start_line, record_no, records, headerless, message) -> None:
    header = bool(records) and "instruction" in [c.strip().lower() for c in records[0]]
    columns = [c.strip() for c in records[0]] if header else list(headerless or [])
    row = record_no - 1 if header else record_no
    rest = "".join(text.splitlines(keepends=True)[start_line - 1:])
    k, what = _scan_quotes(rest)
    name = columns[k] if k is not None and k < len(columns) else (f"#{k + 1}" if k is not None else None)
    what = what or message
    raise DataError(path, f"malformed CSV: {what}", row=row, field=name,
                    line=start_line if start_line != row else None) from None


def _scan_quotes(s: str) -> tuple[int | None, str | None]:
    """The 0-based field of the first quoting error in one CSV record, and what is wrong."""
    k, i, n, start, quoted = 0, 0, len(s), True, False
    while i < n:
        ch = s[i]
        if quoted:
            if ch == '"':
                if i + 1 < n and s[i + 1] == '"':
                    i += 2
                    continue
                quoted = False
                if i + 1 < n and s[i + 1] not in ",\r\n":
                    return k, "text follows the closing quote of a quoted field (a quote inside a field must be doubled)"
            i += 1
            continue
        if ch == '"' and start:
            quoted, start = True, False
        elif ch == ",":
            k, start = k + 1, True
        elif ch in "\r\n":
            return None, None
        else:
            start = False
        i += 1
    return (k, "a quoted field is never closed (an unbalanced quote)") if quoted else (None, None)


# ----------------------------------------------------------------------------- Parquet & datasets

def _load_parquet(path: Path) -> Raw:
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(path, f"unreadable Parquet file: {e}") from None
    if frame.empty:
        raise DataError(path, "has no records (a Parquet file with 0 rows)")
    return Raw(path, "parquet", frame.astype(object), list(range(1, len(frame) + 1)))


def _load_dataset(path: Path, split: str | None) -> Raw:
    if not any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
        raise DataError(path, "is a folder, expected a file (or a dataset folder saved with datasets' save_to_disk)")
    try:
        import datasets
    except ImportError:
        raise DataError(path, "is a dataset folder; reading it needs `pip install datasets`") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(path, f"unreadable dataset folder: {e}") from None
    name = ""
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds) or "none"
        if split is None:
            if "train" not in ds:
                raise DataError(path, f"has no 'train' split; choose one with --split (splits: {splits})")
            split = "train"
        if split not in ds:
            raise DataError(path, f"has no split {split!r} (splits: {splits})")
        ds, name = ds[split], f" split {split!r}"
    elif split is not None and split != "train":
        raise DataError(path, f"is a single dataset without splits; --split {split!r} does not apply")
    frame = ds.to_pandas()
    if frame.empty:
        raise DataError(path, f"has no records{name}")
    return Raw(path, "dataset", frame.astype(object), list(range(1, len(frame) + 1)))
