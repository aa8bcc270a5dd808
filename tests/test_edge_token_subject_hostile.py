"""token_subject() parses the caller-supplied token's payload unverified and only catches
IndexError/ValueError/AttributeError/TypeError: a token whose payload is deeply nested JSON
(still matching the token pattern) raises RecursionError out of every token method, instead
of being keyed by the token itself (or an AttributeValidationError)."""

from __future__ import annotations

import base64
import contextlib

import anyio

import aiocognito
from aiocognito._dispatch import token_subject
from tests.gates import Gates, client


def hostile_token() -> str:
    payload = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


def test_token_subject_never_raises() -> None:
    token = hostile_token()
    assert token_subject(token) == token


async def test_update_with_a_hostile_token_gets_a_clean_outcome() -> None:
    transport = Gates()
    for g in transport.gates:
        g.set()
    cognito = client(transport)
    await cognito.__aenter__()
    try:
        with anyio.fail_after(5):
            with contextlib.suppress(aiocognito.AiocognitoError):
                await cognito.update_user_attributes(hostile_token(), {"nickname": "x"})
    finally:
        await cognito.aclose()
