"""The bulk journal under adversity: resume order, one run per journal, failures, fingerprints.

Every ordering check compares the users' final state with a model: the input's rows for each
user applied one by one, in input order (bad rows and rows refused for good skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import aiocognito
from aiocognito import _journal
from aiocognito.testing import CustomAttribute, FakeCognito, Fault, PoolInfo
from tests.test_bulk import client

TRACKED = ("custom:tier", "custom:seq", "nickname")
Rows = Sequence[aiocognito.AttributeUpdate | aiocognito.BadRow]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeCognito, PoolInfo]]:
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=3) as server:
        pool = server.create_pool(
            custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="seq")]
        )
        server.seed_users(pool.id, 20)
        yield server, pool


async def drain(bulk: aiocognito.BulkUpdate) -> list[aiocognito.UpdateOutcome]:
    async with bulk as outcomes:
        return [o async for o in outcomes]


async def collect(bulk: aiocognito.BulkUpdate, seen: list[aiocognito.UpdateOutcome]) -> None:
    """Run a bulk job, keeping its outcomes in ``seen`` even if it ends with an error."""
    async with bulk as outcomes:
        async for outcome in outcomes:
            seen.append(outcome)


def tier(user: str, value: str) -> aiocognito.AttributeUpdate:
    return aiocognito.AttributeUpdate(username=user, attributes={"custom:tier": value})


def model(
    rows: Rows, initial: Callable[[str], dict[str, str]], known: set[str]
) -> dict[str, dict[str, str]]:
    """Each user's tracked attributes after applying the rows one by one, in input order."""
    state: dict[str, dict[str, str]] = {}
    for row in rows:
        if isinstance(row, aiocognito.BadRow) or row.username not in known:
            continue  # unreadable, or refused for good (no such user)
        attributes = state.setdefault(row.username, initial(row.username))
        for name, value in row.values.items():
            if value:
                attributes[name] = value
            else:
                attributes.pop(name, None)  # a blank value deletes
    return state


def tracked(attributes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if k in TRACKED}


# ------------------------------------------------------------------------------------------
# 1. Resume keeps input order


async def test_a_row_to_retry_does_not_overwrite_a_later_row_on_resume(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    rows = [tier("user0", "old"), tier("user0", "new")]
    quick = aiocognito.RetryPolicy(max_attempts=2, backoff_base=0.001)
    async with client(server, pool, retry=quick) as cognito:
        server.faults.add(Fault.internal_error(count=2))  # row 0's two attempts
        first = await drain(cognito.bulk_update(rows, journal=journal))
        assert {o.index: o.code for o in first} == {0: "InternalErrorException", 1: None}
        assert server.user_attributes(pool.id, "user0")["custom:tier"] == "new"

        second = await drain(cognito.bulk_update(rows, journal=journal))
        # Row 0 is sent again, and row 1, which had succeeded, after it.
        assert sorted((o.index, o.ok, o.skipped) for o in second) == [
            (0, True, False),
            (1, True, False),
        ]
        assert server.user_attributes(pool.id, "user0")["custom:tier"] == "new"

        third = await drain(cognito.bulk_update(rows, journal=journal))
        assert all(o.skipped and o.ok for o in third)  # finished now, both of them
    applied = [u.changes["custom:tier"] for u in server.update_log(pool.id, "user0")]
    assert applied[-1] == "new"


@pytest.mark.parametrize("seed", range(6))
async def test_resumes_after_transient_failures_match_the_model(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path, seed: int
) -> None:
    """Runs with one attempt per row under 500s and applied-then-reset answers, resumed until
    done: every user ends as the rows applied one by one would leave them."""
    server, pool = fake
    rng = random.Random(seed)
    users = [f"user{i}" for i in range(6)]
    rows: list[aiocognito.AttributeUpdate | aiocognito.BadRow] = []
    for i in range(120):
        user = rng.choice([*users, "ghost"])  # ghost: refused for good
        names = rng.sample(TRACKED, rng.randint(1, 3))
        values = {n: (None if rng.random() < 0.15 else f"v{i}") for n in names}
        if rng.random() < 0.05:
            error = aiocognito.AttributeValidationError(f"line {i + 1}: invalid JSON")
            rows.append(aiocognito.BadRow(line=i + 1, error=error, raw="{"))
        else:
            rows.append(aiocognito.AttributeUpdate(username=user, attributes=values))
    initial = {u: tracked(server.user_attributes(pool.id, u)) for u in users}
    expected = model(rows, lambda u: dict(initial[u]), set(users))
    journal = str(tmp_path / "j.sqlite")
    once = aiocognito.RetryPolicy(max_attempts=1)
    limits = aiocognito.Limits(max_concurrency=4, user_update_rps=None, adaptive=False)
    async with client(server, pool, retry=once, limits=limits) as cognito:
        for _ in range(4):
            server.faults.clear()
            server.faults.add(
                Fault.internal_error(probability=0.15), Fault.reset_after(probability=0.15)
            )
            outcomes = await drain(cognito.bulk_update(rows, journal=journal, read_ahead=8))
            assert sorted(o.index for o in outcomes) == list(range(len(rows)))
        server.faults.clear()
        final = await drain(cognito.bulk_update(rows, journal=journal))
    assert all(
        o.ok or o.code in ("UserNotFoundException", "AttributeValidationError") for o in final
    )
    for user in users:
        assert tracked(server.user_attributes(pool.id, user)) == expected.get(user, initial[user])


# ------------------------------------------------------------------------------------------
# 2. One run per journal


async def test_a_second_run_on_a_journal_in_use_is_refused(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    rows = [tier(f"user{i}", "x") for i in range(10)]
    async with client(server, pool) as cognito:
        async with cognito.bulk_update(rows, journal=journal) as outcomes:
            with pytest.raises(aiocognito.JournalLockedError) as caught:
                async with cognito.bulk_update(rows, journal=journal):
                    pass
            assert [o async for o in outcomes]
            for private in (journal, journal + "-wal", journal + "-shm", journal + ".lock"):
                assert os.stat(private).st_mode & 0o777 == 0o600, private
        assert caught.value.path == journal
        assert caught.value.pid == os.getpid()
        assert f"journal {journal} is in use by another run (process {os.getpid()})" in str(
            caught.value
        )
        # Once the first run ended, the lock is free again.
        assert all(o.skipped for o in await drain(cognito.bulk_update(rows, journal=journal)))


# ------------------------------------------------------------------------------------------
# 3. Journal failures stop the run cleanly


class _FailingAfter(sqlite3.Connection):
    """A real SQLite connection whose storage fails from its Nth batch of rows on.

    ``fault`` is "readonly" (SQLite refuses writes: SQLITE_READONLY) or "full" (the file may
    not grow: SQLITE_FULL, as on a full disk).
    """

    writes_left = 0
    fault = "readonly"

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        cls = type(self)
        cls.writes_left -= 1
        if cls.writes_left == -1:
            if cls.fault == "readonly":
                self.execute("PRAGMA query_only = ON")
            else:
                pages = self.execute("PRAGMA page_count").fetchone()[0]
                self.execute(f"PRAGMA max_page_count = {pages}")
        return super().executemany(sql, parameters)


#: The message SQLite gives for each fault.
FAULT_CAUSES = {
    "readonly": "attempt to write a readonly database",
    "full": "database or disk is full",
}


def journal_failing_after(
    monkeypatch: pytest.MonkeyPatch, writes: int, fault: str = "readonly"
) -> None:
    """Make the next journals opened fail (``fault``) from their write number ``writes + 1``."""
    _FailingAfter.writes_left = writes
    _FailingAfter.fault = fault

    def connect(path: str) -> sqlite3.Connection:
        return sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=_FailingAfter
        )

    monkeypatch.setattr(_journal, "_connect", connect)


@pytest.mark.parametrize("fault", ["readonly", "full"])
async def test_a_failed_journal_write_stops_the_run_and_reports_applied_rows(
    fake: tuple[FakeCognito, PoolInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    rows = [
        aiocognito.AttributeUpdate(username=f"user{i % 20}", attributes={"custom:seq": str(i)})
        for i in range(400)
    ]
    journal_failing_after(monkeypatch, 30, fault)
    seen: list[aiocognito.UpdateOutcome] = []
    limits = aiocognito.Limits(max_concurrency=4, user_update_rps=None, adaptive=False)
    async with client(server, pool, limits=limits) as cognito:
        bulk = cognito.bulk_update(rows, journal=journal, read_ahead=8)
        with pytest.raises(aiocognito.JournalWriteError) as caught:
            await collect(bulk, seen)
        assert caught.value.path == journal
        assert str(caught.value) == f"cannot use the journal {journal}: {FAULT_CAUSES[fault]}"
        assert len(seen) < 400  # it stopped reading
        assert bulk.statistics().rows_read == len(seen)  # and reported every row it read
        db = sqlite3.connect(journal)
        journaled = {i for (i,) in db.execute("SELECT idx FROM rows WHERE status = 'ok'")}
        db.close()
        assert journaled < {o.index for o in seen if o.ok}  # applied rows beyond the journal
        for outcome in seen:  # every row reported applied was applied (or a later one)
            assert outcome.ok
            user = f"user{outcome.index % 20}"
            assert int(server.user_attributes(pool.id, user)["custom:seq"]) >= outcome.index

        monkeypatch.undo()
        resumed = await drain(cognito.bulk_update(rows, journal=journal))
    assert {o.index for o in resumed if o.skipped} == journaled
    for number in range(20):
        assert server.user_attributes(pool.id, f"user{number}")["custom:seq"] == str(380 + number)
        applied = [
            int(u.changes["custom:seq"] or 0) for u in server.update_log(pool.id, f"user{number}")
        ]
        assert applied == sorted(applied)


async def test_a_journal_another_program_locks_is_refused_cleanly(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    async with client(server, pool) as cognito:
        await drain(cognito.bulk_update([tier("user0", "a")], journal=journal))
        other = sqlite3.connect(journal, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # e.g. someone inspecting it with a write open
        monkeypatch.setattr(_journal, "BUSY_TIMEOUT", 0.05)
        try:
            with pytest.raises(aiocognito.JournalWriteError, match="database is locked") as caught:
                await drain(cognito.bulk_update([tier("user0", "b")], journal=journal))
        finally:
            other.rollback()
            other.close()
    assert caught.value.path == journal
    assert server.user_attributes(pool.id, "user0")["custom:tier"] == "a"  # nothing was sent


@pytest.mark.parametrize("kind", ["directory", "corrupt", "missing-directory"])
async def test_a_journal_that_cannot_be_opened_is_a_clear_error(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path, kind: str
) -> None:
    server, pool = fake
    journal = tmp_path / "j.sqlite"
    cause = {
        "directory": "Is a directory",
        "corrupt": "file is not a database",
        "missing-directory": "No such file or directory",
    }[kind]
    if kind == "directory":
        journal.mkdir()
    elif kind == "corrupt":
        journal.write_bytes(b"this is not SQLite" * 100)
    else:
        journal = tmp_path / "nowhere" / "j.sqlite"
    async with client(server, pool) as cognito:
        with pytest.raises(aiocognito.JournalWriteError) as caught:
            await drain(cognito.bulk_update([tier("user0", "x")], journal=str(journal)))
    assert str(caught.value) == f"cannot use the journal {journal}: {cause}"


async def test_a_journal_from_the_previous_format_is_refused_plainly(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = tmp_path / "j.sqlite"
    db = sqlite3.connect(journal)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE rows (idx INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, status TEXT"
        " NOT NULL, code TEXT, message TEXT, attempts INTEGER NOT NULL, user TEXT NOT NULL)"
    )
    db.execute("INSERT INTO rows VALUES (0, 'abc', 'ok', NULL, NULL, 1, 'user0')")
    db.commit()
    db.close()
    async with client(server, pool) as cognito:
        with pytest.raises(aiocognito.JournalMismatchError, match="older aiocognito"):
            await drain(cognito.bulk_update([tier("user0", "x")], journal=str(journal)))
    assert "custom:tier" not in server.user_attributes(pool.id, "user0")


# ------------------------------------------------------------------------------------------
# 14. Fingerprints the journal alone cannot confirm


def _old_style_digests(operation: str, identity: dict[str, Any]) -> set[str]:
    """What an attacker computes for a guess: the row's unkeyed digests, as stored before."""
    text = json.dumps([operation, identity], sort_keys=True, separators=(",", ":"), default=str)
    full = hashlib.sha256(text.encode()).hexdigest()
    return {full[:24], full[:32], full}


async def test_journal_fingerprints_cannot_be_confirmed_by_guessing(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    words = ["red", "green", "blue", "gold", "silver", "bronze"]
    rows = [tier(f"user{i}", words[i % len(words)]) for i in range(12)]
    journal = tmp_path / "j.sqlite"
    key = b"a secret kept outside the journal"
    async with client(server, pool) as cognito:
        await drain(cognito.bulk_update(rows, journal=str(journal), journal_key=key))
    db = sqlite3.connect(journal)
    stored = dict(db.execute("SELECT idx, fingerprint FROM rows").fetchall())
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert len(stored) == 12
    raw = journal.read_bytes()
    for word in words:
        assert word.encode() not in raw
    assert key not in raw
    assert key.hex() not in meta.values()
    for index, digest in stored.items():
        user = f"user{index}"
        confirmed = []
        for guess in words:
            attributes = [{"Name": "custom:tier", "Value": guess}]
            identity = {"UserPoolId": pool.id, "Username": user, "UserAttributes": attributes}
            # Without the key, no digest of a guess matches what the journal holds...
            assert digest not in _old_style_digests("AdminUpdateUserAttributes", identity)
            parts = ("AdminUpdateUserAttributes", pool.id, user, ["custom:tier"])
            assert digest != _journal.fingerprint(None, *parts, secret=[attributes, None])
            # ...while the key holder confirms exactly the true value.
            if digest == _journal.fingerprint(key, *parts, secret=[attributes, None]):
                confirmed.append(guess)
        assert confirmed == [words[index % len(words)]]
    # With the key, the digests are the rows' own: resuming recognises them.
    async with client(server, pool) as cognito:
        again = await drain(cognito.bulk_update(rows, journal=str(journal), journal_key=key))
    assert all(o.skipped for o in again)
