"""``aiocognito update`` and ``aiocognito demo`` end to end, in real processes where it matters."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import aiocognito
from aiocognito._bulkcli import UpdateSettings, run_update, scan_input, validate_file
from aiocognito._demo import run_demo
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo

KEYS = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}


@pytest.fixture
def served() -> Iterator[tuple[FakeCognito, PoolInfo]]:
    fake = FakeCognito(user_update_rps=400, per_user_write_rps=None, seed=5)
    pool = fake.create_pool(
        custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="seq")]
    )
    fake.seed_users(pool.id, 100)
    with fake.run_in_thread():
        yield fake, pool


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows(n: int, users: int = 100) -> list[str]:
    return [
        json.dumps({"username": f"user{i % users}", "attributes": {"custom:seq": str(i)}})
        for i in range(n)
    ]


def update_command(path: Path, fake: FakeCognito, pool: PoolInfo, rps: int) -> list[str]:
    """``aiocognito update`` as a user would type it, against the fake."""
    return [
        sys.executable, "-m", "aiocognito", "update", "--input", str(path),
        "--user-pool-id", pool.id, "--endpoint-url", fake.endpoint_url, "--region", "us-east-1",
        "--rps", str(rps),
    ]  # fmt: skip


def cli_env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "PYTHONUNBUFFERED": "1",
    }


def settings(path: Path, fake: FakeCognito, pool: PoolInfo, **kwargs: object) -> UpdateSettings:
    options: dict[str, object] = {
        "user_pool_id": pool.id,
        "region": "us-east-1",
        "endpoint_url": fake.endpoint_url,
        "rps": 400,
        "progress": "plain",
        "credentials": KEYS,
        **kwargs,
    }
    return UpdateSettings(input=str(path), **options)  # type: ignore[arg-type]


def test_dry_run_reports_every_bad_row(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            good_rows(1)[0],
            '{"username": "a", "attributes": {"custom:tier": "x"',
            '{"attributes": {"custom:tier": "x"}}',
            "",
            '{"username": "b", "attributes": {"tier": "x"}}',
            '{"username": "c", "attributes": {"custom:tier": 5}}',
            json.dumps({"username": "d", "attributes": {"nickname": "v" * 2049}}),
            '{"username": "e", "attributes": {}}',
        ],
    )
    out = io.StringIO()
    code = validate_file(UpdateSettings(input=str(path), user_pool_id="us-east-1_A1"), out)
    text = out.getvalue()
    assert code == 1
    for fragment in (
        "line 2: invalid JSON",
        "line 3: missing username",
        "line 5: attributes: 'tier' is not a standard attribute",
        "did you mean 'custom:tier'",
        "line 6: attributes: attribute 'custom:tier' has a value of type int",
        "line 7: attributes: attribute 'nickname' has a value of 2049 characters",
        "line 8: attributes: no attributes given",
        "7 rows checked, 1 good, 6 bad rows",
    ):
        assert fragment in text, fragment
    assert "v" * 50 not in text


async def test_update_writes_results_and_failures(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    token = fake.issue_token(pool.id, "user7")
    lines = [
        *good_rows(150),
        '{"username": "ghost", "attributes": {"custom:tier": "x"}}',
        '{"username": "user1", "attributes": {"tier": "x"}}',
        json.dumps({"access_token": token, "attributes": {"custom:tier": "token-set"}}),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    out = io.StringIO()
    code = await run_update(settings(path, fake, pool), out)
    text = out.getvalue()
    assert code == 1
    assert "UserNotFoundException" in text
    assert "rows ok" in text
    assert "share of the quota" in text
    results = [
        json.loads(line) for line in (tmp_path / "in.results.jsonl").read_text().splitlines()
    ]
    assert len(results) == len(lines)
    assert sum(r["ok"] for r in results) == 151
    raw_results = (tmp_path / "in.results.jsonl").read_text()
    assert token not in raw_results
    assert "token-set" not in raw_results
    failures = (tmp_path / "in.failures.jsonl").read_text().splitlines()
    assert sorted(failures) == sorted(lines[150:152])
    again = list(aiocognito.read_updates(tmp_path / "in.failures.jsonl"))
    assert sum(isinstance(r, aiocognito.AttributeUpdate) for r in again) == 1  # ghost, fixable
    assert sum(isinstance(r, aiocognito.BadRow) for r in again) == 1
    assert fake.user_attributes(pool.id, "user7")["custom:tier"] == "token-set"


async def test_csv_input_delete_and_unchanged(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    fake.backend.pools[pool.id].users["user3"].attributes.update(
        {"nickname": "n3", "custom:tier": "old"}
    )
    path = tmp_path / "in.csv"
    path.write_text(
        "username,custom:tier,nickname\nuser3,,<delete>\nuser4,gold,\nnobody,x,\nuser5,,\n"
    )
    assert scan_input(str(path))[0] == 4
    code = await run_update(settings(path, fake, pool), io.StringIO())
    assert code == 1
    user3 = fake.user_attributes(pool.id, "user3")
    assert user3["custom:tier"] == "old"  # empty cell: unchanged
    assert "nickname" not in user3  # <delete>
    assert fake.user_attributes(pool.id, "user4")["custom:tier"] == "gold"
    failures = (tmp_path / "in.failures.csv").read_text().splitlines()
    assert failures[0] == "username,custom:tier,nickname"
    assert sorted(failures[1:]) == sorted(["nobody,x,", "user5,,"])


async def test_wrong_pool_is_fatal(served: tuple[FakeCognito, PoolInfo], tmp_path: Path) -> None:
    fake, _pool = served
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(500))
    out, err = io.StringIO(), io.StringIO()
    code = await run_update(
        UpdateSettings(
            input=str(path),
            user_pool_id="us-east-1_Nope1",
            endpoint_url=fake.endpoint_url,
            region="us-east-1",
            rps=400,
            progress="none",
            credentials=KEYS,
        ),
        out,
        err=err,
    )
    assert code == 2
    assert "ResourceNotFoundException" in err.getvalue()


async def test_graceful_stop_prints_the_resume_command(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(600))
    fake.quotas.set_rate("UserUpdate", 200)

    def stop_at_100(bulk: aiocognito.BulkUpdate, _outcome: aiocognito.UpdateOutcome) -> None:
        if bulk.statistics().rows_done >= 100:
            bulk.stop()  # what the first Ctrl-C does

    out = io.StringIO()
    code = await run_update(
        settings(path, fake, pool, command=["aiocognito", "update", "--input", str(path)]),
        out,
        on_outcome=stop_at_100,
    )
    text = out.getvalue()
    assert code == 130
    assert "Resume with:" in text
    assert f"--journal {tmp_path / 'in.journal'}" in text
    done_first = len((tmp_path / "in.results.jsonl").read_text().splitlines())
    assert 100 <= done_first < 600
    fake.quotas.set_rate("UserUpdate", 1000)
    code = await run_update(settings(path, fake, pool, rps=1000), io.StringIO())
    assert code == 0
    results = [
        json.loads(line) for line in (tmp_path / "in.results.jsonl").read_text().splitlines()
    ]
    assert len(results) == 600
    assert sum(r["skipped"] for r in results) >= done_first
    for user in range(100):
        assert fake.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(500 + user)


def test_sigint_in_a_real_process(served: tuple[FakeCognito, PoolInfo], tmp_path: Path) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 100)
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(800))
    proc = subprocess.Popen(
        [*update_command(path, fake, pool, 100), "--progress", "plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    journal = tmp_path / "in.journal"
    _wait_for_rows(journal, 50)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted: no new rows will be read" in output
    resume = output.split("Resume with:\n", 1)[1].splitlines()[0].strip()
    assert resume.startswith("aiocognito update --input")
    fake.quotas.set_rate("UserUpdate", 1000)  # the rest can go fast
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiocognito",
            *resume.split()[1:],
            "--progress",
            "none",
            "--rps",
            "1000",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for user in range(100):
        assert fake.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(700 + user)


def test_sigkill_loses_no_finished_row(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 150)
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(1000))
    command = [*update_command(path, fake, pool, 150), "--progress", "none"]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env()
    )
    journal = tmp_path / "in.journal"
    _wait_for_rows(journal, 200)
    proc.kill()
    proc.wait(timeout=30)
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = [row[0] for row in db.execute("SELECT idx FROM rows WHERE status = 'ok'")]
    db.close()
    assert len(done) >= 200
    # Every row the journal calls finished really is applied (its value, or a later row's).
    for index in done:
        owner = f"user{index % 100}"
        assert int(fake.user_attributes(pool.id, owner)["custom:seq"]) >= index
    fake.quotas.set_rate("UserUpdate", 1000)  # the rest can go fast
    finished = subprocess.run(
        [*command, "--rps", "1000"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    # The final state is the promise. The history of applied values may step back across the
    # crash: a row in flight when it was killed is sent again, then the user's later rows again.
    for user in range(100):
        assert fake.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(900 + user)


def _wait_for_rows(journal: Path, count: int) -> None:
    """Wait, within a bound, until a child process's journal records ``count`` finished rows.

    The child is another process, so there is no event to wait on: poll its journal.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists():
            try:
                db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
                try:
                    n = db.execute("SELECT COUNT(*) FROM rows WHERE status = 'ok'").fetchone()[0]
                finally:
                    db.close()
                if n >= count:
                    return
            except sqlite3.OperationalError:
                pass  # the table is not created yet
        time.sleep(0.05)
    raise AssertionError(f"the journal never reached {count} finished rows")


async def test_demo_runs_and_writes_its_files(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(out, users=300, rps=1000, directory=str(tmp_path), progress="none")
    text = out.getvalue()
    assert code == 0
    assert "Real Cognito allows 25 requests/s" in text
    assert "AttributeValidationError" in text
    assert "UserNotFoundException" in text
    assert (tmp_path / "migration.results.jsonl").exists()
    failures = (tmp_path / "migration.failures.jsonl").read_text().splitlines()
    assert len(failures) >= 4
    assert "aiocognito update --input" in text


async def test_rich_progress_renders(served: tuple[FakeCognito, PoolInfo], tmp_path: Path) -> None:
    fake, pool = served
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(50))
    out = io.StringIO()
    code = await run_update(settings(path, fake, pool, progress="rich"), out)
    assert code == 0
    assert "50/50 rows" in out.getvalue()


def test_second_sigint_exits_at_once_with_a_consistent_journal(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 20)  # slow, so the rows in flight cannot finish quickly
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(400))
    proc = subprocess.Popen(
        [*update_command(path, fake, pool, 20), "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
    )  # fmt: skip
    journal = tmp_path / "in.journal"
    _wait_for_rows(journal, 10)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the first interrupt has been taken
        if line.startswith("interrupted"):
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "second interrupt: " in output
    assert "exiting now" in output
    assert time.monotonic() - started < 5  # at once, not after the rows in flight
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM rows WHERE status = 'ok'").fetchone()[0] >= 10
    db.close()
