"""A second aclose() (the `async with` exit while a shutdown task is already closing) returns
only once the first has finished: no request left on the wire, the transport closed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel

from tests.gates import Gates, client


class SlowStop(Gates):
    """A flight that takes a few turns of the loop to stop once cancelled."""

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
    ) -> dict[str, Any]:
        try:
            return await super().call(operation, params, secrets=secrets)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
            raise


async def test_second_aclose_waits_for_the_first() -> None:
    transport = SlowStop()
    cognito = client(transport)
    await cognito.__aenter__()
    seen: dict[str, object] = {}

    async def caller() -> None:
        try:
            await cognito.admin_update_user_attributes("alice", {"nickname": "x"})
        except Exception:
            seen["caller_done"] = True

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await transport.arrived[0].wait()
            first_started = anyio.Event()

            async def first_close() -> None:
                first_started.set()
                await cognito.aclose()

            tg.start_soon(first_close)
            await first_started.wait()
            await cognito.aclose()  # the second close
            seen.update(in_flight=cognito.statistics().in_flight, closed=transport.closed)
    assert seen["in_flight"] == 0
    assert seen["closed"] == 1
    assert seen["caller_done"] is True
