"""Hostile input files: every data line is one row or one bad row, never a crash or a lost row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiocognito
from aiocognito import AttributeUpdate, AttributeValidationError, BadRow

BOM = b"\xef\xbb\xbf"


def read(path: Path) -> list[AttributeUpdate | BadRow]:
    return list(aiocognito.read_updates(path))


def bad_row(item: AttributeUpdate | BadRow) -> BadRow:
    assert isinstance(item, BadRow), item
    return item


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_csv_unclosed_quote_is_one_bad_row_and_swallows_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b'username,nickname\nuser0,"unterminated\nuser1,x\nuser2,y\n')
    items = read(path)
    assert len(items) == 3
    bad, first, second = items
    assert isinstance(bad, BadRow)
    assert bad.line == 2
    assert "line 2" in str(bad.error)
    assert "quote" in str(bad.error)
    assert "unterminated" not in str(bad.error)  # a value never reaches a message
    assert bad.raw == 'user0,"unterminated'
    assert isinstance(first, AttributeUpdate)
    assert (first.username, dict(first.values), first.line) == ("user1", {"nickname": "x"}, 3)
    assert isinstance(second, AttributeUpdate)
    assert second.line == 4


def test_csv_unclosed_quote_before_a_huge_tail_does_not_crash(tmp_path: Path) -> None:
    # Python's csv module refuses fields over 128 KiB with an exception that ended the run.
    tail = b"a" * 200_000
    path = write(tmp_path / "in.csv", b'username,nickname\nuser0,"' + tail + b"\nuser1,x\n")
    items = read(path)
    assert [type(i) for i in items] == [BadRow, AttributeUpdate]
    assert items[0].line == 2
    assert items[1].line == 3


def test_csv_over_long_quoted_field_is_a_bad_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv", b'username,nickname\nuser0,"' + b"v" * 200_000 + b'"\nuser1,x\n'
    )
    items = read(path)
    assert [type(i) for i in items] == [BadRow, AttributeUpdate]
    assert items[0].line == 2
    assert "v" * 20 not in str(bad_row(items[0]).error)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'user0,x"y', "quote"),  # a quote inside an unquoted cell
        (b'user0,"x"y', "quote"),  # text after a closing quote
        (b'user0,"x', "quote"),
        (b"user0", "expected 2 cells, found 1"),
        (b"user0,x,y", "expected 2 cells, found 3"),
        (b",", "username"),  # cells all empty: a row with nothing in it is still a row
    ],
)
def test_malformed_csv_lines_are_bad_rows(tmp_path: Path, line: bytes, problem: str) -> None:
    path = write(tmp_path / "in.csv", b"username,nickname\n" + line + b"\nuser1,ok\n")
    items = read(path)
    assert [type(i) for i in items] == [BadRow, AttributeUpdate]
    assert items[0].line == 2
    assert problem in str(bad_row(items[0]).error)


def test_csv_quoted_cells_and_crlf_still_read(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        b'username,nickname\r\n"user0","a, ""quoted"" value"\r\nuser1,plain\r\n',
    )
    items = read(path)
    assert all(isinstance(i, AttributeUpdate) for i in items)
    assert [dict(i.values) for i in items if isinstance(i, AttributeUpdate)] == [
        {"nickname": 'a, "quoted" value'},
        {"nickname": "plain"},
    ]


def test_byte_order_mark_is_accepted_in_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", BOM + b"username,nickname\nuser0,x\n")
    [item] = read(path)
    assert isinstance(item, AttributeUpdate)
    assert item.username == "user0"


def test_byte_order_mark_is_accepted_in_jsonl(tmp_path: Path) -> None:
    row = {"username": "user0", "attributes": {"nickname": "x"}}
    path = write(tmp_path / "in.jsonl", BOM + json.dumps(row).encode() + b"\n")
    [item] = read(path)
    assert isinstance(item, AttributeUpdate)
    assert item.line == 1


def test_header_names_are_stripped_once_and_exposed(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"username , nickname,custom:tier \nuser0, x ,\n")
    reader = aiocognito.read_updates(path)
    assert reader.header == ("username", "nickname", "custom:tier")
    [item] = list(reader)
    assert isinstance(item, AttributeUpdate)
    assert dict(item.values) == {"nickname": " x "}  # cells keep their spaces: they are values


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_non_utf8_lines_are_bad_rows(tmp_path: Path, suffix: str) -> None:
    if suffix == "csv":
        data = b"username,nickname\nuser0,caf\xe9\nuser1,ok\n"
    else:
        data = (
            b'{"username": "user0", "attributes": {"nickname": "caf\xe9"}}\n'
            b'{"username": "user1", "attributes": {"nickname": "ok"}}\n'
        )
    path = write(tmp_path / f"in.{suffix}", data)
    items = read(path)
    assert [type(i) for i in items] == [BadRow, AttributeUpdate]
    bad = items[0]
    assert isinstance(bad, BadRow)
    assert "UTF-8" in str(bad.error)
    assert bad.line == (2 if suffix == "csv" else 1)
    # The raw line survives byte for byte, so the failures file can carry it to be fixed.
    assert bad.raw.encode("utf-8", "surrogateescape") in data


def test_duplicate_json_keys_are_bad_rows(tmp_path: Path) -> None:
    lines = [
        b'{"username": "user0", "attributes": {"nickname": "a", "nickname": "b"}}',
        b'{"username": "user0", "username": "user1", "attributes": {"nickname": "a"}}',
        b'{"username": "u", "attributes": {"nickname": "a"},'
        b' "client_metadata": {"k": "1", "k": "2"}}',
        b'{"username": "user2", "attributes": {"nickname": "a"}}',
    ]
    path = write(tmp_path / "in.jsonl", b"\n".join(lines) + b"\n")
    items = read(path)
    assert [type(i) for i in items] == [BadRow, BadRow, BadRow, AttributeUpdate]
    messages = [str(i.error) for i in items if isinstance(i, BadRow)]
    assert "line 1" in messages[0]
    assert "'nickname' appears twice" in messages[0]
    assert "'username' appears twice" in messages[1]
    assert "client_metadata" in messages[2]
    assert "'k'" not in messages[2]  # client metadata keys are the caller's secrets


def test_duplicate_csv_columns_refuse_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"username,nickname, nickname\nuser0,a,b\n")
    with pytest.raises(AttributeValidationError, match="'nickname' appears twice") as caught:
        aiocognito.read_updates(path)
    assert "line 1" in str(caught.value)
    assert "columns 2 and 3" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"nickname,custom:tier", "needs a 'username'"),
        (b'username,"nick', "quote"),
        (b"username,caf\xe9", "UTF-8"),
    ],
)
def test_a_bad_csv_header_refuses_the_file(tmp_path: Path, header: bytes, problem: str) -> None:
    path = write(tmp_path / "in.csv", header + b"\nuser0,x\n")
    with pytest.raises(AttributeValidationError, match=problem):
        aiocognito.read_updates(path)


def test_an_over_long_line_is_a_bad_row_without_holding_it(tmp_path: Path) -> None:
    from aiocognito._io import MAX_LINE_BYTES

    huge = b'{"username": "user0", "attributes": {"nickname": "' + b"x" * MAX_LINE_BYTES + b'"}}'
    path = write(
        tmp_path / "in.jsonl", huge + b'\n{"username": "u", "attributes": {"nickname": "a"}}\n'
    )
    items = read(path)
    assert [type(i) for i in items] == [BadRow, AttributeUpdate]
    assert "longer than" in str(bad_row(items[0]).error)
    assert len(bad_row(items[0]).raw) < 1000
    assert items[1].line == 2


# ------------------------------------------------------------------------------------------
# Every line is accounted for: a model of lines, checked against the reader

_CSV_LINES = [
    b"user1,plain",
    b'"user2","quoted, with comma"',
    b'user3,"unterminated',
    b'user4,stray"quote',
    b"user5,caf\xe9",
    b"user6",
    b",",
    b"   ",
    b"",
    b"user7,<delete>",
    b"user8,",
    b'"',
    b"\xff\xfe",
    b"user9,\x00nul",
]
_JSONL_LINES = [
    b'{"username": "user1", "attributes": {"nickname": "a"}}',
    b'{"username": "user2", "attributes": {"nickname": "a", "nickname": "b"}}',
    b'{"username": "user3", "attributes": {"nickname": "caf\xe9"}}',
    b'{"username": "user4", "attributes": ',
    b"[1, 2]",
    b"   ",
    b"",
    b"NaN",
    b'{"username": "user5", "attributes": {"nickname": NaN}}',
    b'"\\ud800"',
    b"\xef\xbb\xbf{}",
]


def _data_lines(data: bytes, *, header: bool) -> list[int]:
    """The numbers of the lines that carry data: every non-blank line but a CSV header."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file's last newline ends a line; it does not start one
    numbers = [n for n, text in enumerate(lines, start=1) if text.strip()]
    return numbers[1:] if header else numbers


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.sampled_from(_CSV_LINES), max_size=12),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_every_csv_line_is_one_row_or_one_bad_row(
    tmp_path: Path, lines: list[bytes], crlf: bool, bom: bool
) -> None:
    end = b"\r\n" if crlf else b"\n"
    data = (BOM if bom else b"") + b"username,nickname" + end + b"".join(x + end for x in lines)
    path = write(tmp_path / "prop.csv", data)
    items = read(path)
    assert [i.line for i in items] == _data_lines(data, header=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from(_JSONL_LINES), max_size=12), bom=st.booleans())
def test_every_jsonl_line_is_one_row_or_one_bad_row(
    tmp_path: Path, lines: list[bytes], bom: bool
) -> None:
    data = (BOM if bom else b"") + b"".join(x + b"\n" for x in lines)
    path = write(tmp_path / "prop.jsonl", data)
    items = read(path)
    assert [i.line for i in items] == _data_lines(data.removeprefix(BOM), header=False)
