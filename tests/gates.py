"""Shared by the engine edge-case tests: a gated transport, a client over it, a bounded wait."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel

import aiocognito
from aiocognito._client import client_over
from tests.fakes import FakeTransport, SentCall

POOL = "eu-west-1_AbC"
UNLIMITED = aiocognito.Limits(user_update_rps=None, user_read_rps=None, adaptive=False)
FAST_RETRY = aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)


def client(transport: FakeTransport, **kwargs: Any) -> aiocognito.CognitoClient:
    kwargs.setdefault("limits", UNLIMITED)
    kwargs.setdefault("retry", FAST_RETRY)
    return client_over(transport, region_name="eu-west-1", user_pool_id=POOL, **kwargs)


class Gates(FakeTransport):
    """Call i waits for gates[i]; arrived[i] set when on the wire."""

    def __init__(self, count: int = 16) -> None:
        super().__init__()
        self.gates = [anyio.Event() for _ in range(count)]
        self.arrived = [anyio.Event() for _ in range(count)]
        self.closed_at_send: list[bool] = []

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
    ) -> dict[str, Any]:
        index = len(self.sent)
        self.sent.append(SentCall(operation, dict(params), tuple(secrets)))
        self.closed_at_send.append(self.closed > 0)
        self.arrived[index].set()
        await self.gates[index].wait()
        if self.script:
            answer = self.script.popleft()
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return self.handler(operation, params)

    def values(self) -> list[dict[str, str]]:
        return [
            {a["Name"]: a["Value"] for a in c.params.get("UserAttributes", [])} for c in self.sent
        ]


async def wait_until(predicate: Any) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.lowlevel.checkpoint()
