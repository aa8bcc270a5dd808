"""The hostile-input corpus: every file through ``--dry-run`` and a real run against the fake.

Each file under ``tests/data/hostile`` is damaged in one way a real export gets damaged (see
``expected.json`` for what each holds and the counts it must give). For every file, both runs
must end without a traceback, with the expected exit code, and with every data line accounted
for: rows read + bad rows = the file's non-blank lines after any header, counted here from the
bytes and not by the reader.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from aiocognito.cli import main
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo


class Case(TypedDict):
    """What one corpus file must give."""

    what: str  # how the file is damaged
    read: int  # rows read as updates
    bad: int  # bad rows
    applied: int  # rows applied by a real run
    exit_dry_run: int
    exit_run: int


CORPUS = Path(__file__).parent / "data" / "hostile"
EXPECTED: dict[str, Case] = json.loads((CORPUS / "expected.json").read_text())
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeCognito, PoolInfo]]:
    fake = FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=11)
    pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
    fake.seed_users(pool.id, 50)
    with fake.run_in_thread():
        yield fake, pool


@pytest.fixture(autouse=True)
def _aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")


def test_every_corpus_file_has_expectations_and_every_expectation_a_file() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".csv", ".jsonl")}
    assert files == set(EXPECTED)


def data_lines(path: Path) -> int:
    """Non-blank lines, less a CSV header: what the rows read and bad rows must add up to."""
    lines = [x for x in path.read_bytes().removeprefix(BOM).split(b"\n") if x.strip()]
    return len(lines) - (1 if path.suffix == ".csv" and lines else 0)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _applied_calls(fake: FakeCognito, pool: PoolInfo) -> int:
    return sum(len(fake.update_log(pool.id, f"user{i}")) for i in range(50))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_file(
    name: str,
    served: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, pool = served
    expected = EXPECTED[name]
    path = tmp_path / name  # a copy, so the reports land beside it and not in the corpus
    shutil.copyfile(CORPUS / name, path)
    common = ["update", "--input", str(path), "--user-pool-id", pool.id]

    code, out, err = run([*common, "--dry-run"], capsys)
    assert "Traceback" not in out + err
    assert code == expected["exit_dry_run"], out + err
    refused = code == 2
    if refused:
        assert len(err.strip().splitlines()) == 1, err
        assert "line 1" in err
    else:
        verdict = re.search(r"(\d+) rows checked, (\d+) good, (?:no bad rows|(\d+) bad row)", out)
        assert verdict is not None, out
        assert int(verdict[2]) == expected["read"]
        assert int(verdict[3] or 0) == expected["bad"]
        assert int(verdict[1]) == data_lines(path)

    calls_before = _applied_calls(fake, pool)
    endpoint = ["--endpoint-url", fake.endpoint_url, "--region", "us-east-1"]
    code, out, err = run([*common, *endpoint, "--rps", "none", "--progress", "none"], capsys)
    assert "Traceback" not in out + err
    assert code == expected["exit_run"], out + err
    results_path = tmp_path / (path.stem + ".results.jsonl")
    if refused:
        assert not results_path.exists()  # refused before anything was written
        assert _applied_calls(fake, pool) == calls_before
        return
    results = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert len(results) == data_lines(path)  # every data line has its one outcome
    assert len(results) == expected["read"] + expected["bad"]
    bad = [r for r in results if r["code"] == "AttributeValidationError" and not r["attempts"]]
    assert len(bad) == expected["bad"]
    ok = [r for r in results if r["ok"]]
    assert len(ok) == expected["applied"]
    # The corpus names each user once, so what the fake applied is one call per ok row.
    assert _applied_calls(fake, pool) - calls_before == expected["applied"]
    failures = (tmp_path / (path.stem + ".failures" + path.suffix)).read_bytes().splitlines()
    header = 1 if path.suffix == ".csv" else 0
    assert len(failures) - header == len(results) - len(ok)
