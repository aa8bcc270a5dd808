"""bulk_update: streaming, one outcome per row, merging, early exit, fatal errors, journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiocognito
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo
from tests.conftest import CREDENTIALS

FAST = aiocognito.Limits(user_update_rps=None, adaptive=False)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeCognito, PoolInfo]]:
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=2) as server:
        pool = server.create_pool(
            custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="seq")]
        )
        server.seed_users(pool.id, 50)
        yield server, pool


def client(fake: FakeCognito, pool: PoolInfo, **kwargs: Any) -> aiocognito.CognitoClient:
    kwargs.setdefault("limits", FAST)
    return aiocognito.CognitoClient(
        region_name="us-east-1",
        user_pool_id=pool.id,
        endpoint_url=fake.endpoint_url,
        **CREDENTIALS,
        **kwargs,
    )


class Counted:
    """A sync source of rows that counts how many were pulled from it."""

    def __init__(self, updates: list[aiocognito.AttributeUpdate]) -> None:
        self.updates = updates
        self.pulled = 0

    def __iter__(self) -> Iterator[aiocognito.AttributeUpdate]:
        for update in self.updates:
            self.pulled += 1
            yield update


async def drain(bulk: aiocognito.BulkUpdate) -> list[aiocognito.UpdateOutcome]:
    """Run a bulk job to its end; return its outcomes."""
    async with bulk as outcomes:
        return [o async for o in outcomes]


def rows(n: int, users: int = 50) -> list[aiocognito.AttributeUpdate]:
    return [
        aiocognito.AttributeUpdate(username=f"user{i % users}", attributes={"custom:seq": str(i)})
        for i in range(n)
    ]


async def test_every_row_gets_one_outcome_and_order_holds(
    fake: tuple[FakeCognito, PoolInfo],
) -> None:
    server, pool = fake
    updates = rows(400)  # 8 rows per user, merged where they queue
    async with client(server, pool) as cognito:
        async with cognito.bulk_update(updates) as outcomes:
            seen = [o async for o in outcomes]
            stats = outcomes.statistics()
        saved = cognito.statistics().calls_saved
    assert sorted(o.index for o in seen) == list(range(400))
    assert all(o.ok for o in seen)
    assert all(o.update is updates[o.index] for o in seen)
    assert (stats.ok, stats.failed, stats.rows_read, stats.in_flight) == (400, 0, 400, 0)
    assert stats.merged == sum(o.merged for o in seen)
    for user in range(50):
        assert server.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(350 + user)
        applied = [
            int(u.changes["custom:seq"] or 0) for u in server.update_log(pool.id, f"user{user}")
        ]
        assert applied == sorted(applied)
    assert sum(len(server.update_log(pool.id, f"user{u}")) for u in range(50)) == 400 - saved


async def test_async_source_and_token_rows(fake: tuple[FakeCognito, PoolInfo]) -> None:
    server, pool = fake
    tokens = [server.issue_token(pool.id, f"user{i}") for i in range(5)]

    async def source() -> AsyncIterator[aiocognito.AttributeUpdate]:
        for i, token in enumerate(tokens):
            yield aiocognito.AttributeUpdate(
                access_token=token, attributes={"custom:tier": f"t{i}"}
            )

    async with client(server, pool) as cognito, cognito.bulk_update(source()) as outcomes:
        seen = [o async for o in outcomes]
    assert [o.ok for o in seen] == [True] * 5
    assert {server.user_attributes(pool.id, f"user{i}")["custom:tier"] for i in range(5)} == {
        f"t{i}" for i in range(5)
    }
    assert "token" not in repr(seen[0].update).lower().replace("access_token", "")


async def test_source_is_read_lazily(fake: tuple[FakeCognito, PoolInfo]) -> None:
    server, pool = fake
    source = Counted(rows(300))

    limits = aiocognito.Limits(max_concurrency=4, user_update_rps=None, adaptive=False)
    consumed = 0
    async with (
        client(server, pool, limits=limits) as cognito,
        cognito.bulk_update(source, read_ahead=8) as outcomes,
    ):
        async for _outcome in outcomes:
            consumed += 1
            # At most the read-ahead, plus outcomes buffered and not yet consumed.
            assert source.pulled - consumed <= 8 + 8
    assert consumed == source.pulled == 300


async def test_failures_are_outcomes_and_bad_rows_too(fake: tuple[FakeCognito, PoolInfo]) -> None:
    server, pool = fake
    bad = aiocognito.BadRow(
        line=3, error=aiocognito.AttributeValidationError("line 3: invalid JSON"), raw="{"
    )
    updates: list[aiocognito.AttributeUpdate | aiocognito.BadRow] = [
        aiocognito.AttributeUpdate(username="user1", attributes={"custom:tier": "gold"}),
        aiocognito.AttributeUpdate(username="nobody", attributes={"custom:tier": "gold"}),
        bad,
        aiocognito.AttributeUpdate(username="user2", attributes={"custom:nope": "x"}),
    ]
    async with client(server, pool) as cognito, cognito.bulk_update(updates) as outcomes:
        seen = {o.index: o async for o in outcomes}
        stats = outcomes.statistics()
    assert seen[0].ok
    assert seen[1].code == "UserNotFoundException"
    assert seen[2].bad_row is bad
    assert seen[2].code == "AttributeValidationError"
    assert seen[3].code == "InvalidParameterException"
    assert stats.failed_by_code == {
        "UserNotFoundException": 1,
        "AttributeValidationError": 1,
        "InvalidParameterException": 1,
    }


async def test_a_wrong_pool_ends_the_run_with_one_plain_error(
    fake: tuple[FakeCognito, PoolInfo],
) -> None:
    server, pool = fake
    updates = [
        aiocognito.AttributeUpdate(
            username=f"user{i}", user_pool_id="us-east-1_Missing1", attributes={"custom:tier": "x"}
        )
        for i in range(5000)
    ]
    async with client(server, pool) as cognito:
        with pytest.raises(aiocognito.ResourceNotFoundError):
            await drain(cognito.bulk_update(updates))
        sent = cognito.statistics().requests_sent
    assert sent <= 2 * 64 * 2  # stopped after the first answers, not 5,000 requests


async def test_leaving_early_cancels_and_leaves_the_journal_consistent(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    limits = aiocognito.Limits(max_concurrency=2, user_update_rps=None, adaptive=False)
    got = 0
    async with (
        client(server, pool, limits=limits) as cognito,
        cognito.bulk_update(rows(500), journal=journal) as outcomes,
    ):
        async for _ in outcomes:
            got += 1
            if got == 40:
                break
    ours = [t for t in asyncio.all_tasks() if "BulkUpdate" in t.get_coro().__qualname__]  # type: ignore[union-attr]
    assert ours == []
    import sqlite3

    db = sqlite3.connect(journal)
    recorded = db.execute("SELECT COUNT(*) FROM rows WHERE status = 'ok'").fetchone()[0]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert recorded >= 40
    applied = sum(len(server.update_log(pool.id, f"user{u}")) for u in range(50))
    assert recorded <= 500
    assert applied >= 1


async def test_resume_skips_finished_rows(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    updates = rows(200)
    async with client(server, pool) as cognito:
        first: set[int] = set()
        async with cognito.bulk_update(updates, journal=journal, input_id="v1") as outcomes:
            async for outcome in outcomes:
                first.add(outcome.index)
                if len(first) == 60:
                    break
        async with cognito.bulk_update(updates, journal=journal, input_id="v1") as outcomes:
            second = [o async for o in outcomes]
            stats = outcomes.statistics()
    assert len(second) == 200
    skipped = {o.index for o in second if o.skipped}
    assert first <= skipped  # every outcome delivered was journaled first
    assert stats.skipped == len(skipped)
    assert stats.ok + stats.skipped == 200
    for user in range(50):
        assert server.user_attributes(pool.id, f"user{user}")["custom:seq"] == str(150 + user)


async def test_resume_against_another_input_is_refused(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    async with client(server, pool) as cognito:
        keyed = cognito.bulk_update(rows(10), journal=journal, journal_key=b"k1")
        assert len(await drain(keyed)) == 10
        changed = rows(10)
        changed[3] = aiocognito.AttributeUpdate(
            username="user3", attributes={"custom:seq": "different"}
        )
        with pytest.raises(aiocognito.JournalMismatchError, match="row 3 differs"):
            await drain(cognito.bulk_update(changed, journal=journal, journal_key=b"k1"))
        with pytest.raises(aiocognito.JournalMismatchError, match="different journal key"):
            await drain(cognito.bulk_update(rows(10), journal=journal, journal_key=b"k2"))
        with pytest.raises(aiocognito.JournalMismatchError, match="different journal key"):
            await drain(cognito.bulk_update(rows(10), journal=journal))

        # Without a key the fingerprints hold no values, but still the users and names.
        unkeyed = str(tmp_path / "unkeyed.sqlite")
        assert len(await drain(cognito.bulk_update(rows(10), journal=unkeyed))) == 10
        other_user = rows(10)
        other_user[4] = aiocognito.AttributeUpdate(username="user9", attributes={"custom:seq": "4"})
        with pytest.raises(aiocognito.JournalMismatchError, match="row 4 differs"):
            await drain(cognito.bulk_update(other_user, journal=unkeyed))
        other_name = rows(10)
        other_name[5] = aiocognito.AttributeUpdate(
            username="user5", attributes={"custom:tier": "5"}
        )
        with pytest.raises(aiocognito.JournalMismatchError, match="row 5 differs"):
            await drain(cognito.bulk_update(other_name, journal=unkeyed))

        async with cognito.bulk_update(rows(10), journal=journal, input_id="a", journal_key="k1"):
            pass
        with pytest.raises(aiocognito.JournalMismatchError, match="different input"):
            async with cognito.bulk_update(
                rows(10), journal=journal, input_id="b", journal_key="k1"
            ):
                pass


async def test_bulk_yields_to_interactive_calls(fake: tuple[FakeCognito, PoolInfo]) -> None:
    server, pool = fake
    limits = aiocognito.Limits(user_update_rps=100, adaptive=False, quota_group="prio")
    async with client(server, pool, limits=limits) as cognito:
        # user49 has no bulk rows: its call waits for quota only, not behind a row in its lane.
        async with cognito.bulk_update(rows(300, users=49), max_share=0.8) as outcomes:
            queued: list[int] = []
            ahead: list[int] = []
            count = 0
            async for _ in outcomes:
                count += 1
                if count in (50, 100, 150):
                    before = cognito.statistics().categories["UserUpdate"]
                    await cognito.admin_update_user_attributes("user49", {"custom:tier": "web"})
                    after = cognito.statistics().categories["UserUpdate"]
                    queued.append(before.queued)
                    ahead.append(after.sent - before.sent - 1)  # requests that went first
        stats = cognito.statistics().categories["UserUpdate"]
    # A FIFO queue would send the bulk rows queued for quota first; interactive goes ahead of
    # them (counted in requests, not seconds, so a loaded machine does not change the answer).
    # A few requests already on their way through the engine may go first, not the queue.
    assert min(queued) >= 40, queued
    assert max(ahead) <= 10, (ahead, queued)
    assert stats.sent == 300 - cognito.statistics().calls_saved + 3


async def test_a_bulk_row_holding_up_an_interactive_call_inherits_its_priority(
    fake: tuple[FakeCognito, PoolInfo],
) -> None:
    server, pool = fake
    # 50/s: a request every 20 ms, so the round trips the lane must wait for (its user's row,
    # on the wire) let few other requests through, on a loaded machine too.
    limits = aiocognito.Limits(user_update_rps=50, adaptive=False, quota_group="inherit")
    queued: list[int] = []
    ahead: list[int] = []
    # Every user has bulk rows: an interactive call waits behind its user's rows (the lane
    # keeps order), and they wait for quota as it would, not behind the bulk queue.
    async with (
        client(server, pool, limits=limits) as cognito,
        cognito.bulk_update(rows(300), max_share=0.8) as outcomes,
    ):
        count = 0
        async for _ in outcomes:
            count += 1
            if count % 50 == 0 and count < 300:
                user = f"user{count // 50 * 9}"
                before = cognito.statistics().categories["UserUpdate"]
                await cognito.admin_update_user_attributes(
                    user, {"email": f"web{count}@example.com"}
                )
                after = cognito.statistics().categories["UserUpdate"]
                queued.append(before.queued)
                ahead.append(after.sent - before.sent - 1)  # requests that went first
    # Before priority inheritance the call waited for the bulk rows queued for quota ahead of
    # its user's (on main: [14, 2, 40] of 50 queued, in three calls); now for its user's own
    # row's round trip, and the few requests already on their way.
    assert min(queued) >= 30, queued
    assert max(ahead) <= 10, (ahead, queued)


def test_attribute_update_checks_and_hides() -> None:
    with pytest.raises(
        aiocognito.AttributeValidationError, match="exactly one of username or access_token"
    ):
        aiocognito.AttributeUpdate(attributes={"nickname": "x"})
    with pytest.raises(aiocognito.AttributeValidationError, match="did you mean 'custom:tier'"):
        aiocognito.AttributeUpdate(username="u", attributes={"tier": "x"})
    update = aiocognito.AttributeUpdate(
        username="u", attributes={"nickname": "secret-nick"}, client_metadata={"k": "secret-meta"}
    )
    assert "secret" not in repr(update)
    assert update.to_row() == {
        "username": "u",
        "attributes": {"nickname": "secret-nick"},
        "client_metadata": {"k": "secret-meta"},
    }
    assert aiocognito.AttributeUpdate.from_row(json.loads(json.dumps(update.to_row()))) == update


async def test_rows_deep_in_the_read_ahead_wait_for_quota_instead_of_failing(
    fake: tuple[FakeCognito, PoolInfo],
) -> None:
    server, pool = fake
    # 50 rows at 100/s with a 0.2 s policy deadline: per-call rules would fail most of them
    # fast; bulk rows have no overall deadline, so all of them land.
    limits = aiocognito.Limits(user_update_rps=100, adaptive=False, quota_group="deep")
    retry = aiocognito.RetryPolicy(deadline=0.2)
    async with client(server, pool, limits=limits, retry=retry) as cognito:
        outcomes = await drain(cognito.bulk_update(rows(50), read_ahead=50))
    assert len(outcomes) == 50
    assert [o.code for o in outcomes if not o.ok] == []


async def test_rows_refused_before_sending_are_retried_on_the_next_run(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    limits = aiocognito.Limits(user_update_rps=20, adaptive=False, quota_group="refused")
    async with client(server, pool, limits=limits) as cognito:
        first = await drain(cognito.bulk_update(rows(40, users=40), journal=journal, timeout=0.3))
        refused = {o.index for o in first if o.code == "TooManyRequestsException"}
        assert refused  # the quota could not fit every row within 0.3 s
        second = await drain(cognito.bulk_update(rows(40, users=40), journal=journal))
    redone = {o.index for o in second if not o.skipped}
    assert refused <= redone
    assert all(o.ok for o in second)


async def test_stop_reads_no_further_rows(fake: tuple[FakeCognito, PoolInfo]) -> None:
    server, pool = fake
    source = Counted(rows(500))

    limits = aiocognito.Limits(max_concurrency=2, user_update_rps=None, adaptive=False)
    async with client(server, pool, limits=limits) as cognito:
        bulk = cognito.bulk_update(source, read_ahead=4)
        async with bulk as outcomes:
            seen = 0
            async for _ in outcomes:
                seen += 1
                if seen == 10:
                    bulk.stop()
            stats = outcomes.statistics()
    assert bulk.stopped
    assert stats.rows_read == stats.rows_done == seen  # every row read was finished and reported
    assert stats.rows_read <= 10 + 4  # at most the read-ahead beyond the stop
    assert source.pulled <= stats.rows_read + 1  # a row pulled while waiting is not started


async def test_resume_with_refreshed_tokens_is_the_same_input(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")

    def token_rows() -> list[aiocognito.AttributeUpdate]:
        return [
            aiocognito.AttributeUpdate(
                access_token=server.issue_token(pool.id, f"user{i}"),
                attributes={"custom:tier": f"t{i}"},
            )
            for i in range(5)
        ]

    async with client(server, pool) as cognito:
        first = await drain(cognito.bulk_update(token_rows(), journal=journal))
        second = await drain(cognito.bulk_update(token_rows(), journal=journal))  # new tokens
    assert all(o.ok for o in first)
    assert all(o.skipped for o in second)


async def test_a_bulk_job_may_bring_its_own_retry_policy(
    fake: tuple[FakeCognito, PoolInfo],
) -> None:
    from aiocognito.testing import Fault

    server, pool = fake
    async with client(server, pool, retry=aiocognito.RetryPolicy(backoff_base=0.001)) as cognito:
        server.faults.add(Fault.throttle(count=3))
        once = await drain(
            cognito.bulk_update(rows(3, users=3), retry=aiocognito.RetryPolicy(max_attempts=1))
        )
        server.faults.add(Fault.throttle(count=3))
        retried = await drain(cognito.bulk_update(rows(3, users=3)))
    assert sorted(o.code or "ok" for o in once) == ["TooManyRequestsException"] * 3
    assert all(o.ok for o in retried)


async def test_a_resumed_failure_keeps_its_error_class(
    fake: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    server, pool = fake
    journal = str(tmp_path / "j.sqlite")
    rows = [
        aiocognito.AttributeUpdate(username="user0", attributes={"custom:nope": "x"}),
        aiocognito.AttributeUpdate(username="user1", attributes={"custom:tier": "ok"}),
    ]
    async with client(server, pool) as cognito:
        first = await drain(cognito.bulk_update(rows, journal=journal))
        second = await drain(cognito.bulk_update(rows, journal=journal))
    failed = [o for o in first if not o.ok]
    again = [o for o in second if not o.ok]
    assert len(failed) == len(again) == 1
    assert isinstance(failed[0].error, aiocognito.InvalidParameterError)
    assert again[0].skipped
    assert isinstance(again[0].error, aiocognito.InvalidParameterError)  # not a bare CognitoError
    assert again[0].code == "InvalidParameterException"
