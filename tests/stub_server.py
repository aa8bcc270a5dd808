"""A minimal HTTP endpoint speaking Cognito's JSON 1.1 wire format, with canned answers.

Tests use it in-process to drive the real aiobotocore transport (signing, parsing, error
shapes, connection pooling). ``python -m tests.stub_server --port N`` runs it standalone, as the
trivial server the overhead benchmark measures against: every request gets ``{}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

TARGET_PREFIX = "AWSCognitoIdentityProviderService."


@attrs.define
class Received:
    operation: str
    headers: dict[str, str]
    body: dict[str, Any]


@attrs.define
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/x-amz-json-1.1"
    headers: dict[str, str] = attrs.field(factory=dict)


def json_answer(payload: dict[str, Any], status: int = 200) -> Answer:
    return Answer(status=status, body=json.dumps(payload).encode())


def error_answer(code: str, message: str, status: int = 400, request_id: str = "req-1") -> Answer:
    return Answer(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code},
    )


Responder = Callable[[Received], Awaitable[Answer] | Answer]


class StubServer:
    """Answers each request with ``responder(received)``; records every request."""

    def __init__(self, responder: Responder | None = None, *, record: bool = True) -> None:
        self.responder = responder
        self.record = record
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        raw = await request.read()
        if self.responder is None:
            return web.Response(body=b"{}", content_type="application/x-amz-json-1.1")
        received = Received(
            operation=target.removeprefix(TARGET_PREFIX),
            headers=dict(request.headers),
            body=json.loads(raw or b"{}"),
        )
        if self.record:
            self.received.append(received)
        answer = self.responder(received)
        if not isinstance(answer, Answer):
            answer = await answer
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        response.content_type = answer.content_type
        return response

    async def __aenter__(self) -> StubServer:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _serve_forever(port: int) -> None:
    app = web.Application()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/x-amz-json-1.1")

    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve_forever(parser.parse_args().port))
