"""RateLimiter.record(latency=) is documented (and was wired by the limiter branch) as
admission -> answer; the merged engine measures from after the concurrency slot, so with the
slots saturated the limiter's deadline check under-estimates and admits calls that then end in
the ambiguous DeadlineExceededError instead of failing fast with QuotaDeadlineError."""

from __future__ import annotations

from typing import Any

import anyio

import aiocognito
from aiocognito._client import client_over
from tests.fakes import FakeTransport
from tests.virtual_time import virtual_time

POOL = "eu-west-1_AbC"


class Slow(FakeTransport):
    async def call(self, operation: str, params: Any, *, secrets: Any = ()) -> dict[str, Any]:
        self.sent.append(params.get("Username"))
        await anyio.sleep(0.1)
        return {}


@virtual_time
async def test_round_trip_covers_slot_wait() -> None:
    transport = Slow()
    limits = aiocognito.Limits(user_update_rps=1000, adaptive=False, max_concurrency=1)
    errors: list[str] = []
    with anyio.fail_after(20):
        async with client_over(
            transport, region_name="eu-west-1", user_pool_id=POOL, limits=limits
        ) as cognito:
            limiter = cognito._limiters["UserUpdate"]

            async def one(i: int, timeout: float | None) -> None:
                try:
                    await cognito.admin_update_user_attributes(
                        f"u{i}", {"custom:a": "1"}, timeout=timeout
                    )
                except aiocognito.AiocognitoError as exc:
                    errors.append(type(exc).__name__)

            # round 1: 5 calls admitted at once, served one at a time: 0.1 .. 0.5 s to answer
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(one, i, None)
            learned = limiter.round_trip()
            # round 2: the same load with a 0.25 s budget
            async with anyio.create_task_group() as tg:
                for i in range(5, 10):
                    tg.start_soon(one, i, 0.25)
    print("learned round trip", learned, "errors", errors)
    assert learned >= 0.4, learned  # admission -> answer was up to 0.5 s
    assert "DeadlineExceededError" not in errors, errors
