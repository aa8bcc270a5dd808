"""aclose() running in the same loop iteration as a slot hand-off (the normal state of a
client saturated at max_concurrency): the waiter granted the slot is not cancelled (its
future is already done, so anyio defers the cancellation) and nothing re-checks before
create_task, so a call that was queued when aclose() began is SENT after aclose() collected
the flights: aclose() returns with a request still on the wire over the closed transport."""

from __future__ import annotations

import anyio

import aiocognito
from tests.gates import Gates, client, wait_until


async def test_no_request_is_sent_after_aclose_began() -> None:
    transport = Gates()
    limits = aiocognito.Limits(
        max_concurrency=1, user_update_rps=None, user_read_rps=None, adaptive=False
    )
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    errors: dict[str, BaseException] = {}
    after_close: dict[str, int] = {}
    shutdown = anyio.Event()

    async def update(user: str) -> None:
        try:
            await cognito.admin_update_user_attributes(user, {"nickname": user})
        except BaseException as exc:
            errors[user] = exc

    async def bystander() -> None:
        # Woken by the same event as the transport, just after it: e.g. a signal handler or
        # a socket telling the app to shut down.
        await transport.gates[0].wait()
        shutdown.set()

    async def closer() -> None:
        await shutdown.wait()
        sent_before = len(transport.sent)
        await cognito.aclose()
        after_close.update(
            sent_before=sent_before,
            sent=len(transport.sent),
            in_flight=cognito.statistics().in_flight,
        )

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(closer)
            tg.start_soon(update, "u0")
            await transport.arrived[0].wait()
            tg.start_soon(bystander)
            tg.start_soon(update, "u1")
            await wait_until(lambda: cognito.statistics().waiting == 1)
            await anyio.lowlevel.checkpoint()
            transport.gates[0].set()
            await wait_until(lambda: "sent" in after_close)
            for g in transport.gates[1:]:
                g.set()
    print(
        "after aclose():",
        after_close,
        "sent:",
        transport.values(),
        "closed at send:",
        transport.closed_at_send,
    )
    print("errors:", errors)
    assert after_close["in_flight"] == 0, "aclose() returned with a request on the wire"
    assert transport.closed_at_send == [False], "a request was sent after aclose()"
    assert isinstance(errors.get("u1"), aiocognito.ClientClosedError)
    assert not errors["u1"].sent  # type: ignore[attr-defined]
