"""Helpers for driving the fake server over raw HTTP, independently of aiocognito's client."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import attrs

from aiocognito.testing import FakeCognito

TARGET = "AWSCognitoIdentityProviderService."
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request"
}


@attrs.frozen
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str | None:
        return self.body.get("__type")

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


async def raw_call(
    fake: FakeCognito, operation: str, body: dict[str, Any], *, signed: bool = True
) -> Reply:
    headers = {"X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}
    if signed:
        headers.update(SIGNED)
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.endpoint_url + "/", data=json.dumps(body), headers=headers) as response,
    ):
        return Reply(response.status, json.loads(await response.read() or b"{}"))


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
