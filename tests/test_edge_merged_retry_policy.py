"""Merged calls take the retry policy of their first live member: a later caller's own
``retry=`` is ignored, so merged no longer means what the calls one by one mean."""

from __future__ import annotations

from typing import Any

import anyio

import aiocognito
from tests.gates import Gates, client, wait_until

NO_RETRY = aiocognito.RetryPolicy(max_attempts=1)


async def _run(
    first_retry: aiocognito.RetryPolicy | None,
    second_retry: aiocognito.RetryPolicy | None,
    script: list[Any],
) -> tuple[Gates, dict[str, object]]:
    transport = Gates()
    transport.push(*script)
    cognito = client(transport)
    await cognito.__aenter__()
    outcomes: dict[str, object] = {}

    async def update(name: str, retry: aiocognito.RetryPolicy | None) -> None:
        try:
            await cognito.admin_update_user_attributes(
                "alice", {f"custom:{name}": name}, retry=retry
            )
            outcomes[name] = "ok"
        except aiocognito.AiocognitoError as exc:
            outcomes[name] = exc

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "X", None)
            await transport.arrived[0].wait()
            tg.start_soon(update, "A", first_retry)
            await wait_until(lambda: cognito.statistics().calls_started == 2)
            tg.start_soon(update, "B", second_retry)
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            for g in transport.gates:
                g.set()
    await cognito.aclose()
    return transport, outcomes


async def test_a_later_callers_retries_are_not_dropped_by_an_earlier_no_retry_caller() -> None:
    # X ok; merged [A, B] gets one 500, then would succeed.
    transport, outcomes = await _run(
        NO_RETRY, None, [{}, aiocognito.InternalErrorError("boom", status=500)]
    )
    print("sent:", transport.values(), "outcomes:", outcomes)
    assert outcomes["A"] != "ok"  # A asked for no retries: fine
    # One by one, B (default policy, 8 attempts) would have been retried and applied.
    assert outcomes["B"] == "ok", f"B failed after one attempt: {outcomes['B']!r}"


async def test_a_no_retry_callers_change_is_not_retried_under_an_earlier_callers_policy() -> None:
    transport, outcomes = await _run(
        None, NO_RETRY, [{}, aiocognito.InternalErrorError("boom", status=500)]
    )
    print("sent:", transport.values(), "outcomes:", outcomes)
    b_sends = sum(1 for v in transport.values() if "custom:B" in v)
    assert b_sends == 1, f"B asked for max_attempts=1 but its change was sent {b_sends} times"
