"""Two bulk runs on one client, rows for the same user merge into one call: the first row to
finish journals every member of job.batch, including the OTHER run's row, into its own journal
(at the other run's index, INSERT OR REPLACE), and marks it journaled so the other run never
records it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

import aiocognito
from tests.gates import Gates, client, wait_until

pytestmark = pytest.mark.anyio


async def test_rows_of_two_runs_merge_and_cross_journals(tmp_path: Path) -> None:
    transport = Gates()
    j1, j2 = str(tmp_path / "one.db"), str(tmp_path / "two.db")
    run1 = [
        aiocognito.AttributeUpdate(username="u", attributes={"custom:a": "1"}),
        aiocognito.AttributeUpdate(username="u", attributes={"custom:b": "2"}),
    ]
    run2 = [aiocognito.AttributeUpdate(username="u", attributes={"custom:c": "3"})]
    results: dict[str, list[aiocognito.UpdateOutcome]] = {}

    async def drain(name: str, rows: list[aiocognito.AttributeUpdate], journal: str) -> None:
        async with cognito.bulk_update(rows, journal=journal) as outcomes:
            results[name] = [o async for o in outcomes]

    with anyio.fail_after(10):
        async with client(transport) as cognito, anyio.create_task_group() as tg:
            dispatcher = cognito._dispatcher
            assert dispatcher is not None
            tg.start_soon(drain, "one", run1, j1)
            await transport.arrived[0].wait()
            tg.start_soon(drain, "two", run2, j2)
            await wait_until(
                lambda: (
                    dispatcher.statistics().active_lanes == 1
                    and len(next(iter(dispatcher._lanes.values())).pending) == 2
                )
            )
            transport.gates[0].set()
            await transport.arrived[1].wait()
            transport.gates[1].set()
    print(transport.values())
    one = sorted(
        sqlite3.connect(j1).execute("SELECT idx, fingerprint, status FROM rows").fetchall()
    )
    two = sorted(
        sqlite3.connect(j2).execute("SELECT idx, fingerprint, status FROM rows").fetchall()
    )
    print("one", one)
    print("two", two)
    assert len(transport.sent) == 2
    assert len(transport.values()[1]) == 2
    # resume run 1 against the same input: its own journal now refuses it
    transport2 = Gates()
    for g in transport2.gates:
        g.set()
    async with client(transport2) as cognito, cognito.bulk_update(run1, journal=j1) as outcomes:
        resumed = [o async for o in outcomes]
    print("resumed", [(o.index, o.skipped) for o in resumed])
    assert len(one) == 2, (one, two)
    assert len(two) == 1, (one, two)
