"""``aiocognito update`` and its journal in real processes: SIGKILL at random moments, two runs
on one journal, journal failures. Final states are checked against a model: each user's rows
applied one by one, in input order."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiocognito._bulkcli import UpdateSettings, run_update
from aiocognito.testing import CustomAttribute, FakeCognito, Fault, PoolInfo
from tests.test_bulk_cli import _wait_for_rows as wait_for_rows
from tests.test_journal import TRACKED, journal_failing_after, tracked

USERS = 40


@pytest.fixture
def served() -> Iterator[tuple[FakeCognito, PoolInfo]]:
    fake = FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=7)
    pool = fake.create_pool(
        custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="seq")]
    )
    fake.seed_users(pool.id, USERS)
    with fake.run_in_thread():
        yield fake, pool


def command(path: Path, fake: FakeCognito, pool: PoolInfo, rps: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "aiocognito", "update", "--input", str(path),
        "--user-pool-id", pool.id, "--endpoint-url", fake.endpoint_url, "--region", "us-east-1",
        "--rps", str(rps), "--progress", "none", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}


def write_input(path: Path, rng: random.Random, count: int) -> list[dict[str, Any] | None]:
    """A JSONL input over USERS users, some ghosts and some bad lines; return its rows.

    A bad line is returned as None; a ghost (no such user: refused for good) as its row.
    """
    lines: list[str] = []
    rows: list[dict[str, Any] | None] = []
    for i in range(count):
        draw = rng.random()
        if draw < 0.02:
            lines.append('{"username": "user1", "attributes": {"custom:tier": "x"')  # bad JSON
            rows.append(None)
            continue
        if draw < 0.04:
            lines.append(json.dumps({"username": "user2", "attributes": {"tier": f"v{i}"}}))
            rows.append(None)  # unprefixed custom attribute: a bad row
            continue
        user = "ghost" if draw < 0.06 else f"user{rng.randrange(USERS)}"
        names = rng.sample(TRACKED, rng.randint(1, 3))
        values = {n: (None if rng.random() < 0.1 else f"v{i}") for n in names}
        row = {"username": user, "attributes": values}
        lines.append(json.dumps(row))
        rows.append(row)
    path.write_text("\n".join(lines) + "\n")
    return rows


def expected_state(
    rows: list[dict[str, Any] | None], initial: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """The model: every user's tracked attributes after the rows, one by one, in order."""
    state = {user: dict(attributes) for user, attributes in initial.items()}
    for row in rows:
        if row is None or row["username"] not in state:
            continue
        for name, value in row["attributes"].items():
            if value:
                state[row["username"]][name] = value
            else:
                state[row["username"]].pop(name, None)
    return state


def test_sigkill_at_random_moments_then_resume_matches_the_model(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    seed = int(os.environ.get("AIOCOGNITO_KILL_SEED", "20261202"))
    rng = random.Random(seed)
    path = tmp_path / "in.jsonl"
    rows = write_input(path, rng, 1500)
    initial = {f"user{i}": tracked(fake.user_attributes(pool.id, f"user{i}")) for i in range(USERS)}
    fake.faults.add(
        Fault.throttle(probability=0.05),
        Fault.internal_error(probability=0.05),
        Fault.reset_after(probability=0.05),  # applied, then the answer is lost
    )
    journal = tmp_path / "in.journal"
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(
            command(path, fake, pool, 60),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
        )
        # The moment is the randomised input here: anywhere from start-up to mid-run.
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.8))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, stderr = proc.communicate(timeout=30)
        assert b"Traceback" not in stderr, stderr.decode()
        if journal.exists():
            db = sqlite3.connect(journal)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
    assert kills >= 10, f"seed {seed}: most runs should have been killed mid-way"

    finished = subprocess.run(
        command(path, fake, pool, 1000),
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
        check=False,
    )
    assert finished.returncode in (0, 1), finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr
    results = (tmp_path / "in.results.jsonl").read_text().splitlines()
    assert len(results) == len(rows)  # every row accounted for, in the last run's results
    expected = expected_state(rows, initial)
    for user, attributes in expected.items():
        actual = tracked(fake.user_attributes(pool.id, user))
        assert actual == attributes, f"seed {seed}: {user} differs from the rows applied in order"


def test_a_second_process_on_a_journal_in_use_is_refused_at_once(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps({"username": f"user{i % USERS}", "attributes": {"custom:seq": str(i)}})
            + "\n"
            for i in range(400)
        )
    )
    journal = tmp_path / "in.journal"
    first = subprocess.Popen(
        command(path, fake, pool, 40), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env()
    )
    try:
        wait_for_rows(journal, 5)
        earlier = {
            tmp_path / "second.results.jsonl": "earlier\n",
            tmp_path / "second.f.jsonl": "x\n",
        }
        for report, text in earlier.items():
            report.write_text(text)
        started = time.monotonic()
        second = subprocess.run(
            command(
                path, fake, pool, 1000,
                "--results", str(tmp_path / "second.results.jsonl"),
                "--failures", str(tmp_path / "second.f.jsonl"),
            ),
            capture_output=True, text=True, env=env(), timeout=60, check=False,
        )  # fmt: skip
        refused_in = time.monotonic() - started
        assert first.poll() is None  # the first run was still going
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: its lock must not block the resume
        first.communicate(timeout=30)
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr == (
        f"error: journal {journal} is in use by another run (process {first.pid}); wait for it "
        "to finish, or give this run another journal\n"
    )
    assert refused_in < 10
    for report, text in earlier.items():
        assert report.read_text() == text  # the refused run touched no report file
    assert (tmp_path / "in.journal.lock").read_text().strip() == str(first.pid)

    resumed = subprocess.run(
        command(path, fake, pool, 1000),
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # The final state is the promise. The history of applied values need not be sorted: a row
    # in flight when the first run was killed is sent again on resume, followed again by the
    # same user's later rows (which may already have landed, merged, before the kill).
    for user in range(USERS):
        assert fake.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(360 + user)


async def test_a_journal_write_failure_stops_the_cli_with_one_line(
    served: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, pool = served
    rng = random.Random(5)
    path = tmp_path / "in.jsonl"
    rows = write_input(path, rng, 600)
    initial = {f"user{i}": tracked(fake.user_attributes(pool.id, f"user{i}")) for i in range(USERS)}
    settings = UpdateSettings(
        input=str(path),
        user_pool_id=pool.id,
        region="us-east-1",
        endpoint_url=fake.endpoint_url,
        rps=400,
        progress="none",
        credentials={"aws_access_key_id": "k", "aws_secret_access_key": "s"},
    )
    journal = tmp_path / "in.journal"
    journal_failing_after(monkeypatch, 25)
    code = await run_update(settings, io.StringIO())
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"error: cannot use the journal {journal}: attempt to write a readonly database\n"
    results = [
        json.loads(line) for line in (tmp_path / "in.results.jsonl").read_text().splitlines()
    ]
    db = sqlite3.connect(journal)
    journaled = {i for (i,) in db.execute("SELECT idx FROM rows WHERE status = 'ok'")}
    db.close()
    applied = {r["index"] for r in results if r["ok"]}
    assert journaled < applied  # rows applied after the failure are reported as applied
    assert len(results) < len(rows)  # the run stopped

    monkeypatch.undo()
    code = await run_update(settings, io.StringIO())
    assert code in (0, 1)
    for user, attributes in expected_state(rows, initial).items():
        assert tracked(fake.user_attributes(pool.id, user)) == attributes


def test_a_journal_that_is_a_directory_is_one_line_and_exit_2(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"username": "user0", "attributes": {"custom:seq": "1"}}) + "\n")
    (tmp_path / "in.journal").mkdir()
    run = subprocess.run(
        command(path, fake, pool, 100),
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    # Refused by the CLI's path checks, before the journal is opened: one line naming it.
    assert run.stderr.count("\n") == 1
    assert f"{tmp_path / 'in.journal'} is a directory" in run.stderr
    assert "custom:seq" not in fake.user_attributes(pool.id, "user0")
