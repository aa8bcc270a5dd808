"""aclose() right after a lane was handed to a queued caller (its wake already set, so anyio
cannot deliver the cancellation until its next real checkpoint): the queued call takes a quota
token on its way to the slot, although it is never sent."""

from __future__ import annotations

import anyio

import aiocognito
from tests.gates import Gates, client, wait_until


async def test_queued_call_takes_no_quota_when_closed_just_after_lane_handoff() -> None:
    transport = Gates()
    limits = aiocognito.Limits(
        user_update_rps=100.0, adaptive=False, quota_group="review-close-race"
    )
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            await cognito.admin_update_user_attributes("alice", {"nickname": "B"})
        except BaseException as exc:
            errors.append(exc)

    async def first_then_close() -> None:
        await cognito.admin_update_user_attributes("alice", {"nickname": "A"})
        await cognito.aclose()  # e.g. shutdown right after the request being served

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_then_close)
            await transport.arrived[0].wait()
            tg.start_soon(queued)
            await wait_until(lambda: cognito.statistics().calls_started == 2)
            transport.gates[0].set()
            for g in transport.gates[1:]:
                g.set()

    stats = cognito.statistics()
    print(
        "sent:",
        transport.values(),
        "B:",
        errors,
        "quota sent:",
        stats.categories["UserUpdate"].sent,
    )
    assert len(errors) == 1
    assert isinstance(errors[0], aiocognito.ClientClosedError)
    assert not errors[0].sent
    assert len(transport.sent) == 1
    # Promise: queued calls fail with ClientClosedError and take no quota.
    assert stats.categories["UserUpdate"].sent == 1, "the queued call took a quota token"


async def test_calls_waiting_for_a_concurrency_slot_have_already_taken_quota() -> None:
    """max_concurrency=1: one call on the wire, three other users' calls wait for the slot.
    They already hold quota tokens (quota is taken before the slot), so closing (or their
    deadlines) fails them unsent, yet the shared account-wide bucket lost three tokens."""
    transport = Gates()
    limits = aiocognito.Limits(
        max_concurrency=1, user_update_rps=100.0, adaptive=False, quota_group="review-slot-quota"
    )
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    errors: list[BaseException] = []

    async def update(user: str) -> None:
        try:
            await cognito.admin_update_user_attributes(user, {"nickname": user})
        except BaseException as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "u0")
            await transport.arrived[0].wait()
            for n in (1, 2, 3):
                tg.start_soon(update, f"u{n}")
            await wait_until(lambda: cognito.statistics().waiting == 3)
            await cognito.aclose()
    stats = cognito.statistics()
    print("errors:", errors, "quota sent:", stats.categories["UserUpdate"].sent)
    assert len(transport.sent) == 1
    unsent = [e for e in errors if isinstance(e, aiocognito.ClientClosedError) and not e.sent]
    assert len(unsent) == 3
    assert stats.categories["UserUpdate"].sent == 1, "unsent calls took quota tokens"
