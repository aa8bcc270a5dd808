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

Reading is strict, so that a damaged file can never shift or swallow rows:

- Every non-blank line after the CSV header is exactly one row or one :class:`BadRow`, named by
  its line number. A CSV record is one line: a quote that is not closed on its line, a quote
  inside an unquoted cell, or text after a closing quote makes that line a bad row, and the
  next line is read as the next row. (Values with line breaks belong in JSONL, as ``\\n``.)
- Files are UTF-8. A UTF-8 byte-order mark, as Excel writes it, is skipped. A line that is not
  valid UTF-8 is a bad row; its bytes are kept (as surrogate escapes) for the failures file.
- A JSON key given twice in one object, at any level, makes the row bad.
- A line over :data:`MAX_LINE_BYTES` is a bad row, and is neither held in memory nor kept.
- A CSV header that cannot be used (no ``username`` or ``access_token`` column, a column named
  twice, a broken quote, bytes that are not UTF-8) refuses the whole file:
  :func:`read_updates` raises at once, before any row is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import IO, Any, Literal

from ._errors import AttributeValidationError
from ._models import AttributeUpdate, BadRow

__all__ = ["CSV_DELETE", "MAX_LINE_BYTES", "UpdateReader", "read_updates"]

#: The CSV cell that means "delete this attribute".
CSV_DELETE = "<delete>"
#: The longest line read: far above any real row (50 values of 2,048 characters, a token),
#: low enough that a file without line breaks cannot fill memory.
MAX_LINE_BYTES = 1 << 20
_CSV_IDENTITY = ("username", "access_token", "user_pool_id")
_BOM = b"\xef\xbb\xbf"


def read_updates(
    path: str | os.PathLike[str], *, format: Literal["jsonl", "csv"] | None = None
) -> UpdateReader:
    """Open a JSONL or CSV file of updates, to be read lazily, one update (or bad row) per row.

    Args:
        path: The file. Its format comes from the extension (``.csv``, else JSONL) unless given.
        format: ``"jsonl"`` or ``"csv"``.

    Returns:
        An :class:`UpdateReader`: iterate it for an :class:`AttributeUpdate` per good row (with
        ``.line`` set) and a :class:`BadRow` per row that cannot be one.

    Raises:
        AttributeValidationError: The CSV header cannot be used; the message names line and
            problem.
        OSError: The file cannot be read.
    """
    return UpdateReader(path, format=format)


class UpdateReader:
    """The rows of one input file, read lazily (see the module notes for the rules).

    The file is open only while it is iterated, so an unread reader holds nothing.

    Attributes:
        path: The file.
        format: ``"jsonl"`` or ``"csv"``.
        header: The CSV header's column names as read (stripped of surrounding spaces); the
            one parsed header every writer should use. ``None`` for JSONL.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, format: Literal["jsonl", "csv"] | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.format: Literal["jsonl", "csv"] = format or (
            "csv" if self.path.lower().endswith(".csv") else "jsonl"
        )
        self.header: tuple[str, ...] | None = None
        self._body_offset = 0  # where the rows start: after a BOM, or after the CSV header
        self._body_line = 0  # the line number before the first row
        with open(self.path, "rb") as fh:
            if fh.read(len(_BOM)) != _BOM:
                fh.seek(0)
            if self.format == "csv":
                self.header = self._read_header(fh)
            self._body_offset = fh.tell()

    def __repr__(self) -> str:
        return f"UpdateReader(path={self.path!r}, format={self.format!r})"

    def __iter__(self) -> Iterator[AttributeUpdate | BadRow]:
        with open(self.path, "rb") as fh:
            fh.seek(self._body_offset)
            lines = _lines(fh, start=self._body_line)
            if self.format == "csv":
                yield from self._csv_rows(lines, self.header or ())
            else:
                yield from _jsonl_rows(lines)

    def _read_header(self, fh: IO[bytes]) -> tuple[str, ...]:
        for number, data in _lines(fh, start=0):
            self._body_line = number
            if data is None:
                raise _refusal(number, f"the header is longer than {MAX_LINE_BYTES:,} bytes")
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"the header is not valid UTF-8 (byte {exc.start + 1})"
                raise _refusal(number, problem) from None
            try:
                cells = _split_csv(text)
            except _CsvError as exc:
                raise _refusal(number, f"the header: {exc}") from None
            # The one place header names are cleaned: the rows and the failures file both
            # use the result.
            header = tuple(cell.strip() for cell in cells)
            seen: dict[str, int] = {}
            for column, name in enumerate(header, start=1):
                if name and name in seen:
                    raise _refusal(
                        number,
                        f"column {name!r} appears twice in the header "
                        f"(columns {seen[name]} and {column})",
                    )
                seen[name] = column
            if "username" not in header and "access_token" not in header:
                raise _refusal(number, "the header needs a 'username' (or 'access_token') column")
            return header
        return ()  # an empty file: no header, no rows

    def _csv_rows(
        self, lines: Iterator[tuple[int, bytes | None]], header: tuple[str, ...]
    ) -> Iterator[AttributeUpdate | BadRow]:
        attribute_columns = [
            (column, name) for column, name in enumerate(header) if name not in _CSV_IDENTITY
        ]
        position = {name: column for column, name in enumerate(header)}
        for number, text, bad in _decoded(lines):
            if bad is not None:
                yield bad
                continue
            try:
                row = _split_csv(text)
            except _CsvError as exc:
                yield _bad(number, str(exc), text)
                continue
            if len(row) != len(header):
                yield _bad(number, f"expected {len(header)} cells, found {len(row)}", text)
                continue
            attributes: dict[str, str | None] = {}
            for column, name in attribute_columns:
                cell = row[column]
                if cell == CSV_DELETE:
                    attributes[name] = None
                elif cell != "":
                    attributes[name] = cell
            try:
                yield AttributeUpdate(
                    attributes=attributes,
                    username=_cell(row, position, "username"),
                    access_token=_cell(row, position, "access_token"),
                    user_pool_id=_cell(row, position, "user_pool_id"),
                    line=number,
                )
            except AttributeValidationError as exc:
                yield _bad(number, str(exc), text)


def _cell(row: list[str], position: dict[str, int], name: str) -> str | None:
    column = position.get(name)
    return (row[column] or None) if column is not None else None


def _jsonl_rows(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[AttributeUpdate | BadRow]:
    for number, text, bad in _decoded(lines):
        if bad is not None:
            yield bad
            continue
        try:
            row = _load_json(text)
            yield AttributeUpdate.from_row(row, line=number)
        except AttributeValidationError as exc:
            yield _bad(number, str(exc), text)


def _lines(fh: IO[bytes], *, start: int) -> Iterator[tuple[int, bytes | None]]:
    """Each physical line after ``start`` as (number, bytes without its line end).

    A line over :data:`MAX_LINE_BYTES` comes as ``None``, and its bytes are skipped unread.
    """
    number = start
    while True:
        data = fh.readline(MAX_LINE_BYTES + 1)
        if not data:
            return
        number += 1
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            while data and not data.endswith(b"\n"):
                data = fh.readline(1 << 16)
            yield number, None
            continue
        yield number, data.removesuffix(b"\n").removesuffix(b"\r")


def _decoded(
    lines: Iterator[tuple[int, bytes | None]],
) -> Iterator[tuple[int, str, BadRow | None]]:
    """Each non-blank line as text, or as the bad row it makes when it cannot be text."""
    for number, data in lines:
        if data is None:
            problem = f"the line is longer than {MAX_LINE_BYTES:,} bytes (not kept)"
            yield number, "", _bad(number, problem, "")
            continue
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # surrogateescape keeps the bytes, so the failures file gives the line back as it was.
            raw = data.decode("utf-8", "surrogateescape")
            yield number, raw, _bad(number, f"not valid UTF-8 (byte {exc.start + 1})", raw)
            continue
        yield number, text, None


def _bad(line: int, problem: str, raw: str) -> BadRow:
    return BadRow(line=line, error=AttributeValidationError(f"line {line}: {problem}"), raw=raw)


def _refusal(line: int, problem: str) -> AttributeValidationError:
    return AttributeValidationError(f"line {line}: {problem}")


# ------------------------------------------------------------------------------------------
# JSON


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers the keys it was given more than once."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _load_json(text: str) -> object:
    """Decode one JSONL row; raise AttributeValidationError naming the problem, never a value."""
    try:
        row = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        # The decoder's message gives a position, never the content.
        raise AttributeValidationError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise AttributeValidationError("invalid JSON (nested too deeply)") from None
    _check_duplicates(row)
    if "\\u" not in text:  # the text is valid UTF-8, so only an escape can hold a surrogate
        return row
    try:
        # A \ud800-style escape decodes to half a surrogate pair, which no request can carry.
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise AttributeValidationError(
            "a \\u escape gives half of a surrogate pair, which is not valid Unicode"
        ) from None
    return row


def _check_duplicates(row: object) -> None:
    if not isinstance(row, _Object):
        return
    if row.duplicates:
        raise AttributeValidationError(f"key {row.duplicates[0]!r} appears twice")
    attributes = row.get("attributes")
    if isinstance(attributes, _Object) and attributes.duplicates:
        raise AttributeValidationError(f"attributes: {attributes.duplicates[0]!r} appears twice")
    metadata = row.get("client_metadata")
    if isinstance(metadata, _Object) and metadata.duplicates:
        # Client metadata keys are the caller's data: say where, not which.
        raise AttributeValidationError("client_metadata: a key appears twice")
    if _nested_duplicates(row):
        raise AttributeValidationError("a key appears twice in a nested object")


def _nested_duplicates(value: object) -> bool:
    if isinstance(value, _Object):
        return bool(value.duplicates) or any(_nested_duplicates(v) for v in value.values())
    if isinstance(value, list):
        return any(_nested_duplicates(v) for v in value)
    return False


# ------------------------------------------------------------------------------------------
# CSV


class _CsvError(ValueError):
    """A line that is not one well-formed CSV record."""


def _split_csv(text: str) -> list[str]:
    """The cells of one CSV record on one line (RFC 4180 quoting, strictly).

    Python's ``csv`` module would let an unclosed quote run on into the following lines, and
    its field size limit is process-wide state; one line, parsed here, avoids both.

    Raises:
        _CsvError: Naming the cell and the problem.
    """
    cells: list[str] = []
    i, end = 0, len(text)
    while True:
        cell_number = len(cells) + 1
        if i < end and text[i] == '"':
            parts: list[str] = []
            j = i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise _CsvError(
                        f"cell {cell_number}: its opening quote is never closed on this line "
                        "(a CSV row is one line; use JSONL for values with line breaks)"
                    )
                parts.append(text[j:k])
                if text.startswith('"', k + 1):  # a doubled quote stands for one
                    parts.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            cells.append("".join(parts))
            if i == end:
                return cells
            if text[i] != ",":
                raise _CsvError(f"cell {cell_number}: text after its closing quote")
            i += 1
        else:
            k = text.find(",", i)
            stop = end if k < 0 else k
            cell = text[i:stop]
            if '"' in cell:
                raise _CsvError(
                    f"cell {cell_number}: a quote inside an unquoted cell (quote the whole "
                    'cell and double the quote: "a ""b"" c")'
                )
            cells.append(cell)
            if k < 0:
                return cells
            i = k + 1
