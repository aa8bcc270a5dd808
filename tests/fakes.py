"""A scripted transport for unit tests: records every call, answers from a script or a handler."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

Handler = Callable[[str, Mapping[str, Any]], dict[str, Any]]


@attrs.define
class SentCall:
    operation: str
    params: dict[str, Any]
    secrets: tuple[str, ...]


class FakeTransport:
    """Implements the transport protocol without a network.

    Queue answers with :meth:`push` (a dict to return, or an exception to raise); when the queue
    is empty, ``handler`` answers (by default ``{}``).
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda _op, _params: {})
        self.script: deque[dict[str, Any] | BaseException] = deque()
        self.sent: list[SentCall] = []
        self.opened = 0
        self.closed = 0

    def push(self, *answers: dict[str, Any] | BaseException) -> None:
        self.script.extend(answers)

    async def open(self) -> None:
        self.opened += 1

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Sequence[str] = ()
    ) -> dict[str, Any]:
        self.sent.append(SentCall(operation, dict(params), tuple(secrets)))
        if self.script:
            answer = self.script.popleft()
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return self.handler(operation, params)

    async def aclose(self) -> None:
        self.closed += 1
