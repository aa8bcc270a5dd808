"""Priority inheritance: an interactive call never waits at bulk priority behind its own lane.

A user's calls go in order, one at a time: an interactive call for a user whose lane head is a
bulk row waiting for quota must wait for that row. The row then *inherits* the interactive
priority: its place in the limiter moves to the interactive queue's tail, and its bulk job's
share cap no longer holds it back. Without that, the interactive call waits for every bulk row
queued for quota ahead of its lane's head (dozens, at a bulk job's read-ahead).

Counted in requests, not seconds; on virtual time (``tests/virtual_time.py``), nothing sleeps.
The limiter's side (promoting a waiting claim) is tested in ``tests/test_engine.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import aiocognito
from aiocognito._client import client_over
from aiocognito._limits import RateLimiter
from tests.fakes import FakeTransport
from tests.virtual_time import virtual_time

POOL = "eu-west-1_AbC"
X = "u40"  # the user whose bulk row an interactive call waits behind


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Yield to the event loop until ``predicate()`` holds (a turn moves virtual time 1 µs)."""
    with anyio.fail_after(5):
        while not predicate():
            await anyio.lowlevel.checkpoint()


# ------------------------------------------------------------------------------------------
# The engine: a bulk row at the head of the lane an interactive call waits in


def _client(transport: FakeTransport, rps: float, group: str) -> aiocognito.CognitoClient:
    limits = aiocognito.Limits(user_update_rps=rps, adaptive=False, quota_group=group)
    return client_over(transport, region_name="eu-west-1", user_pool_id=POOL, limits=limits)


def _limiter(cognito: aiocognito.CognitoClient) -> RateLimiter:
    dispatcher = cognito._dispatcher
    assert dispatcher is not None
    return dispatcher._limiters["UserUpdate"]


def _rows(users: int) -> list[aiocognito.AttributeUpdate]:
    return [
        aiocognito.AttributeUpdate(username=f"u{i}", attributes={"email": f"bulk{i}@example.com"})
        for i in range(users)
    ]


def _index(transport: FakeTransport, match: Callable[[Mapping[str, Any]], bool]) -> int:
    found = [i for i, call in enumerate(transport.sent) if match(call.params)]
    assert len(found) == 1, found
    return found[0]


def _is_web(params: Mapping[str, Any]) -> bool:
    values = {a["Name"]: a["Value"] for a in params.get("UserAttributes", [])}
    return params.get("Username") == X and values.get("email") == "web@example.com"


def _is_row(params: Mapping[str, Any]) -> bool:
    values = {a["Name"]: a["Value"] for a in params.get("UserAttributes", [])}
    return params.get("Username") == X and values.get("email") == "bulk40@example.com"


@pytest.mark.parametrize("max_share", [None, 0.5])
@virtual_time
async def test_an_interactive_call_lifts_the_bulk_row_ahead_of_it_in_its_lane(
    max_share: float | None,
) -> None:
    transport = FakeTransport()
    async with _client(transport, 20.0, f"inherit-{max_share}") as cognito:
        limiter = _limiter(cognito)
        async with (
            cognito.bulk_update(_rows(60), read_ahead=64, max_share=max_share) as outcomes,
            anyio.create_task_group() as tg,
        ):

            async def drain() -> None:
                async for _ in outcomes:
                    pass

            tg.start_soon(drain)
            # Every row has its own lane and waits for quota; X's is deep in the bulk queue.
            await wait_until(lambda: limiter.statistics().queued >= 50)
            assert not any(_is_row(c.params) for c in transport.sent)
            started = len(transport.sent)
            queued = limiter.statistics().queued
            # An email change cannot merge with the row's email change: it waits behind it.
            await cognito.admin_update_user_attributes(X, {"email": "web@example.com"})
    row, web = _index(transport, _is_row), _index(transport, _is_web)
    assert row < web  # the lane's order holds
    # Requests sent from the call's start until its own: the lane's head first, and at most
    # the one request the limiter's head had already been given its turn for.
    ahead = web - started
    assert queued >= 50
    assert ahead <= 3, (ahead, queued)
    assert len(transport.sent) == 61


@virtual_time
async def test_a_row_backing_off_takes_quota_at_the_priority_it_inherited() -> None:
    # X's row is throttled once; while it backs off, an interactive call for X queues behind it.
    # When the row asks for quota again, it asks as interactive: ahead of the bulk queue.
    throttled = {"done": False}

    def handler(_operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if _is_row(params) and not throttled["done"]:
            throttled["done"] = True
            raise aiocognito.TooManyRequestsError("Rate exceeded", status=400)
        return {}

    transport = FakeTransport(handler)
    retry = aiocognito.RetryPolicy(backoff_base=2.0, backoff_cap=2.0)
    limits = aiocognito.Limits(user_update_rps=20.0, adaptive=False, quota_group="backoff")
    async with client_over(
        transport, region_name="eu-west-1", user_pool_id=POOL, limits=limits, retry=retry
    ) as cognito:
        limiter = _limiter(cognito)
        rows = _rows(200)
        rows.insert(0, rows.pop(40))  # X's row first: sent, throttled, then backing off
        async with (
            cognito.bulk_update(rows, read_ahead=256) as outcomes,
            anyio.create_task_group() as tg,
        ):

            async def drain() -> None:
                async for _ in outcomes:
                    pass

            tg.start_soon(drain)
            await wait_until(lambda: throttled["done"] and limiter.statistics().queued >= 150)
            await cognito.admin_update_user_attributes(X, {"email": "web@example.com"})
    rows_sent = [i for i, c in enumerate(transport.sent) if _is_row(c.params)]
    web = _index(transport, _is_web)
    assert len(rows_sent) == 2
    assert rows_sent[1] < web
    # The backoff (up to 2 s: 40 requests at 20/s) lets queued rows go first: that is the
    # backoff's doing, not the queue's. When it ends, the row's retry takes the next token,
    # and the call the one after: before the 150-odd rows still queued for quota.
    assert web - rows_sent[1] <= 2, (rows_sent, web)
    assert len(transport.sent) - web >= 100, (rows_sent, web)
