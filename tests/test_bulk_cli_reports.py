"""``aiocognito update``: flags, private files, kept reports, exit codes and output streams."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiocognito
from aiocognito._bulkcli import run_update
from aiocognito.cli import main
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo
from tests.test_bulk_cli import cli_env, good_rows, settings, update_command, write_jsonl


@pytest.fixture
def served() -> Iterator[tuple[FakeCognito, PoolInfo]]:
    fake = FakeCognito(user_update_rps=400, per_user_write_rps=None, seed=7)
    pool = fake.create_pool(
        custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="seq")]
    )
    fake.seed_users(pool.id, 100)
    with fake.run_in_thread():
        yield fake, pool


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")


def cli(served: tuple[FakeCognito, PoolInfo], path: Path, *extra: str) -> list[str]:
    fake, pool = served
    return [
        "update", "--input", str(path), "--user-pool-id", pool.id,
        "--endpoint-url", fake.endpoint_url, "--region", "us-east-1", "--rps", "400",
        "--progress", "none", *extra,
    ]  # fmt: skip


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in-process, as the console script does; return code and output."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's way of refusing a flag
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------
# Flags: one line, exit 2, never a traceback


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--rps", "nan"], "--rps"),
        (["--rps", "inf"], "--rps"),
        (["--rps", "-1"], "--rps"),
        (["--rps", "0"], "--rps"),
        (["--rps", "fast"], "--rps"),
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "many"], "--concurrency"),
        (["--progress", "loud"], "--progress"),
        (["--user-pool-id", "not a pool"], "--user-pool-id"),
        (["--region", "bad_region!"], "--region"),
        (["--endpoint-url", "notaurl"], "--endpoint-url"),
        (["--profile", "nosuch", "--region", "us-east-1"], "nosuch"),
        (["--results", "{tmp}/missing/r.jsonl"], "missing"),
        (["--failures", "{tmp}/missing/f.jsonl"], "missing"),
        (["--journal", "{tmp}/missing/j.journal"], "missing"),
        (["--results", "{tmp}"], "--results"),
        (["--results", "{tmp}/in.jsonl"], "--results"),  # would overwrite the input
        (["--failures", "{tmp}/in.results.jsonl"], "--failures"),  # two reports, one file
    ],
)
def test_bad_update_flags_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_main(
        ["update", "--input", str(path), "--user-pool-id", "us-east-1_A1", *flags], capsys
    )
    assert code == 2
    assert "Traceback" not in out + err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert named in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    "argv",
    [
        ["update", "--input", "{tmp}/absent.jsonl"],
        ["update", "--input", "{tmp}"],
        ["demo", "--users", "0"],
        ["demo", "--dir", "/dev/null"],
        ["demo", "--rps", "nan"],
        ["fake-server", "--port", "70000"],
        ["fake-server", "--latency-ms", "nan"],
        ["fake-server", "--latency-ms", "-5"],
        ["fake-server", "--user-update-rps", "inf"],
        ["fake-server", "--fault", "throttle:p=nan"],
        ["fake-server", "--fault", "throttle:count=x"],
        ["fake-server", "--seed-users", "-1"],
    ],
)
def test_every_flag_value_is_checked_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run_main([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------
# Private files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_the_cli_writes_is_private_under_a_permissive_umask(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 100)
    lines = [*good_rows(600), '{"username": "ghost", "attributes": {"nickname": "x"}}']
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    command = [*update_command(path, fake, pool, 100), "--progress", "none"]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(), umask=0
    )
    journal = tmp_path / "in.journal"
    try:
        _wait_for_file(Path(f"{journal}-wal"), proc)
        _wait_for_file(Path(f"{journal}-shm"), proc)
        # While the run is going: the journal, its WAL and shared memory, and both reports.
        written = [journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")]
        written += [tmp_path / "in.results.jsonl", tmp_path / "in.failures.jsonl"]
        written = [p for p in written if p.exists()]
        assert len(written) >= 3
        assert {p.name: oct(_mode(p)) for p in written} == {p.name: "0o600" for p in written}
    finally:
        proc.kill()
        proc.wait(timeout=30)
    fake.quotas.set_rate("UserUpdate", 1000)
    done = subprocess.run(
        [*command, "--rps", "1000"], capture_output=True, env=cli_env(), umask=0, check=False
    )
    assert done.returncode == 1  # the ghost row
    for name in ("in.journal", "in.results.jsonl", "in.failures.jsonl"):
        assert oct(_mode(tmp_path / name)) == "0o600", name


def _wait_for_file(path: Path, proc: subprocess.Popen[Any]) -> None:
    """Wait, within a bound, for a child process to create ``path`` (no event crosses processes)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, "the run ended before creating " + path.name
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------
# A refused run keeps the earlier reports byte for byte


def _earlier_reports(tmp_path: Path) -> dict[str, bytes]:
    reports = {
        "in.results.jsonl": b'{"index": 0, "ok": true}\n',
        "in.failures.jsonl": b'{"username": "x", "attributes": {"nickname": "kept"}}\n',
    }
    for name, data in reports.items():
        (tmp_path / name).write_bytes(data)
    return reports


@pytest.mark.usefixtures("aws_keys")
@pytest.mark.parametrize("why", ["other input", "corrupt journal", "bad flag"])
def test_a_refused_run_leaves_the_earlier_reports(
    served: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    why: str,
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(5))
    extra: list[str] = []
    if why == "other input":
        assert run_main(cli(served, path), capsys)[0] == 0
        write_jsonl(path, good_rows(6))  # the input changed under the same journal
    elif why == "corrupt journal":
        (tmp_path / "in.journal").write_bytes(b"this is not a database" * 10)
    else:
        extra = ["--concurrency", "-4"]
    reports = _earlier_reports(tmp_path)
    code, out, err = run_main(cli(served, path, *extra), capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert "error:" in err
    for name, data in reports.items():
        assert (tmp_path / name).read_bytes() == data, name


# ------------------------------------------------------------------------------------------
# Exit codes, counts and streams


@pytest.mark.usefixtures("aws_keys")
def test_a_resumed_run_with_a_failed_row_exits_1_and_counts_it(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = '{"username": "user1", "attributes": {"custom:nope": "x"}}'  # not in the schema
    path = write_jsonl(tmp_path / "in.jsonl", [*good_rows(4), bad])
    first = run_main(cli(served, path), capsys)
    assert first[0] == 1
    first_results = [
        json.loads(x) for x in (tmp_path / "in.results.jsonl").read_text().split("\n") if x
    ]
    second = run_main(cli(served, path), capsys)
    code, out, _err = second
    assert code == 1
    assert _summary_value(out, "rows failed") == "1"
    assert "re-run the failures" in out
    assert (tmp_path / "in.failures.jsonl").read_text().splitlines() == [bad]
    results = [json.loads(x) for x in (tmp_path / "in.results.jsonl").read_text().split("\n") if x]
    assert all(r["skipped"] for r in results)
    # The failed row's message is the one the first run recorded (less the old request's id),
    # not wrapped a second time.
    [was] = [r["message"] for r in first_results if not r["ok"]]
    [now] = [r["message"] for r in results if not r["ok"]]
    assert was.startswith(now + " (request id ")
    assert now.count("InvalidParameterException") == 1


def _summary_value(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.strip().startswith(name + "  "):
            return line.split()[-1]
    raise AssertionError(f"no {name!r} in the summary:\n{out}")


@pytest.mark.usefixtures("aws_keys")
def test_errors_go_to_stderr_and_the_summary_to_stdout(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(5))
    argv = cli(served, path)
    argv[argv.index("--user-pool-id") + 1] = "us-east-1_Nope1"
    code, out, err = run_main(argv, capsys)
    assert code == 2
    assert "ResourceNotFoundException" in err
    assert "ResourceNotFoundException" not in out
    ok = write_jsonl(tmp_path / "ok.jsonl", good_rows(5))
    code, out, err = run_main(cli(served, ok), capsys)
    assert code == 0
    assert "rows ok" in out
    assert err == ""


@pytest.mark.usefixtures("aws_keys")
def test_header_whitespace_does_not_cost_the_failures_file_its_values(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"username, nickname , custom:tier\r\nghost,  spaced ,gold\r\nuser1,n,t\r\n")
    assert run_main(cli(served, path), capsys)[0] == 1
    failures = tmp_path / "in.failures.csv"
    assert failures.read_text().splitlines() == [
        "username,nickname,custom:tier",
        "ghost,  spaced ,gold",
    ]
    [again] = list(aiocognito.read_updates(failures))
    assert isinstance(again, aiocognito.AttributeUpdate)
    assert dict(again.values) == {"nickname": "  spaced ", "custom:tier": "gold"}


async def test_second_interrupt_leaves_every_written_outcome_on_disk(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 100)
    lines = [*good_rows(300), '{"username": "ghost", "attributes": {"nickname": "x"}}'] * 2
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    seen: list[aiocognito.UpdateOutcome] = []
    on_disk: list[tuple[int, int, bytes, bytes]] = []

    def hard_exit(code: int) -> None:
        # What the process would leave behind if it ended here.
        on_disk.append(
            (
                code,
                len(seen),
                (tmp_path / "in.results.jsonl").read_bytes(),
                (tmp_path / "in.failures.jsonl").read_bytes(),
            )
        )

    monkeypatch.setattr(os, "_exit", hard_exit)

    def interrupt(_bulk: aiocognito.BulkUpdate, outcome: aiocognito.UpdateOutcome) -> None:
        seen.append(outcome)
        if len(seen) in (40, 41):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, then Ctrl-C again

    await run_update(settings(path, fake, pool, rps=100), io.StringIO(), on_outcome=interrupt)
    assert on_disk, "the second interrupt never reached the exit"
    code, count, results, failures = on_disk[0]
    assert code == 130
    assert count >= 41
    assert results.endswith(b"\n")
    written = [json.loads(line) for line in results.decode().splitlines()]
    # Everything the run had written when the second Ctrl-C came is on disk, nothing half.
    assert [r["index"] for r in written] == [o.index for o in seen[:count]]
    failed = [o for o in seen[:count] if not o.ok]
    assert len(failures.decode().splitlines()) == len(failed)


def test_second_ctrl_c_in_a_real_process_flushes_the_reports(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 20)
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(400))
    proc = subprocess.Popen(
        [*update_command(path, fake, pool, 20), "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    _wait_for_file(tmp_path / "in.journal-wal", proc)
    results = tmp_path / "in.results.jsonl"
    deadline = time.monotonic() + 60
    while results.stat().st_size == 0 if results.exists() else True:
        assert time.monotonic() < deadline
        time.sleep(0.02)  # another process: no event to wait on
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the first interrupt has been taken
        if line.startswith("interrupted"):
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "second interrupt" in err
    text = results.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    reported = int(err.split("second interrupt: ", 1)[1].split(" rows", 1)[0])
    assert len(records) == reported


@pytest.mark.usefixtures("aws_keys")
def test_reports_sent_to_a_device_leave_the_device_alone(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mode = os.stat(os.devnull).st_mode
    path = write_jsonl(tmp_path / "in.jsonl", [*good_rows(3), '{"username": "ghost", "x": 1}'])
    argv = cli(served, path, "--results", os.devnull, "--failures", os.devnull)
    code, _out, err = run_main(argv, capsys)
    assert code == 1, err
    assert os.stat(os.devnull).st_mode == mode  # never chmod a shared device
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.journal",
        "in.journal.lock",
        "in.jsonl",
    ]


@pytest.mark.usefixtures("aws_keys")
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_non_utf8_row_reaches_the_failures_file_byte_for_byte_on_every_run(
    served: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    if suffix == "csv":
        header, bad = b"username,nickname\n", b"user2,caf\xe9 cr\xe8me"
        good = b"user1,ok\n"
    else:
        header, bad = b"", b'{"username": "user2", "attributes": {"nickname": "caf\xe9"}}'
        good = b'{"username": "user1", "attributes": {"nickname": "ok"}}\n'
    path = tmp_path / f"in.{suffix}"
    path.write_bytes(header + good + bad + b"\n")
    failures = tmp_path / f"in.failures.{suffix}"
    for attempt in ("first", "resumed"):
        code, out, err = run_main(cli(served, path), capsys)
        assert code == 1, err
        assert failures.read_bytes() == header + bad + b"\n", attempt
        assert _summary_value(out, "bad rows (never sent)") == "1"
    # The line is fixed in the failures file, and that file runs as it is.
    failures.write_bytes(failures.read_bytes().replace(b"\xe9", b"e").replace(b"\xe8", b"e"))
    code, _out, err = run_main(cli(served, failures), capsys)
    assert code == 0, err
    assert served[0].user_attributes(served[1].id, "user2")["nickname"].startswith("cafe")


@pytest.mark.usefixtures("aws_keys")
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("flag", ["--results", "--failures"])
def test_a_full_disk_under_a_report_is_a_clear_error(
    served: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    # /dev/full fails every write with ENOSPC, as a full disk would.
    path = write_jsonl(tmp_path / "in.jsonl", [*good_rows(50), '{"username": "ghost"}'])
    code, out, err = run_main(cli(served, path, flag, "/dev/full"), capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert err.splitlines() == [
        "error: cannot write /dev/full: No space left on device",
        f"rows finished so far are recorded in {tmp_path / 'in.journal'}; fix the cause and "
        "run again",
    ]
