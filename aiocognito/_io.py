"""Input files for bulk updates: JSONL and CSV rows to :class:`AttributeUpdate` or :class:`BadRow`.

JSONL, one object per line (blank lines are ignored)::

    {"username": "alice", "attributes": {"email": "a@example.com", "custom:tier": null}}
    {"username": "bob", "user_pool_id": "eu-west-1_Other", "attributes": {"nickname": "b"},
     "client_metadata": {"source": "migration"}}
    {"access_token": "eyJ...", "attributes": {"nickname": "c"}}

``null`` (or ``""``) deletes the attribute.

CSV, with a header row: a ``username`` column (or ``access_token``), an optional
``user_pool_id`` column, and one column per attribute, named as Cognito names it
(``custom:tier``). An **empty cell leaves the attribute unchanged**; the cell ``<delete>``
deletes it. A row whose cells are all empty has nothing to do and is a bad row.

A row that cannot be read becomes a :class:`BadRow` naming the line and the problem; the run
goes on with the other rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from typing import Literal

from ._bulk import BadRow
from ._errors import AttributeValidationError
from ._models import AttributeUpdate

__all__ = ["CSV_DELETE", "read_updates"]

#: The CSV cell that means "delete this attribute".
CSV_DELETE = "<delete>"
_CSV_IDENTITY = ("username", "access_token", "user_pool_id")


def read_updates(
    path: str | os.PathLike[str], *, format: Literal["jsonl", "csv"] | None = None
) -> Iterator[AttributeUpdate | BadRow]:
    """Read a JSONL or CSV file lazily, one update (or bad row) per row.

    Args:
        path: The file. Its format comes from the extension (``.csv``, else JSONL) unless given.
        format: ``"jsonl"`` or ``"csv"``.

    Yields:
        An :class:`AttributeUpdate` per good row (with ``.line`` set), a :class:`BadRow` per row
        that cannot be one.
    """
    fmt = format or ("csv" if os.fspath(path).lower().endswith(".csv") else "jsonl")
    if fmt == "csv":
        yield from _read_csv(path)
    else:
        yield from _read_jsonl(path)


def _bad(line: int, problem: str, raw: str) -> BadRow:
    return BadRow(line=line, error=AttributeValidationError(f"line {line}: {problem}"), raw=raw)


def _read_jsonl(path: str | os.PathLike[str]) -> Iterator[AttributeUpdate | BadRow]:
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            raw = text.rstrip("\r\n")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                # The decoder's message gives a position, never the content.
                yield _bad(number, f"invalid JSON ({exc.msg} at column {exc.colno})", raw)
                continue
            try:
                yield AttributeUpdate.from_row(row, line=number)
            except AttributeValidationError as exc:
                yield _bad(number, str(exc), raw)


def _read_csv(path: str | os.PathLike[str]) -> Iterator[AttributeUpdate | BadRow]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        header = [h.strip() for h in header]
        if "username" not in header and "access_token" not in header:
            yield _bad(
                1, "the header needs a 'username' (or 'access_token') column", ",".join(header)
            )
            return
        attribute_columns = [h for h in header if h not in _CSV_IDENTITY]
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            raw = _csv_line(row)
            if len(row) != len(header):
                yield _bad(number, f"expected {len(header)} cells, found {len(row)}", raw)
                continue
            cells = dict(zip(header, row, strict=True))
            attributes: dict[str, str | None] = {}
            for name in attribute_columns:
                cell = cells[name]
                if cell == CSV_DELETE:
                    attributes[name] = None
                elif cell != "":
                    attributes[name] = cell
            try:
                yield AttributeUpdate(
                    attributes=attributes,
                    username=cells.get("username") or None,
                    access_token=cells.get("access_token") or None,
                    user_pool_id=cells.get("user_pool_id") or None,
                    line=number,
                )
            except AttributeValidationError as exc:
                yield _bad(number, str(exc), raw)


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()
