"""A flight task that ends cancelled for any reason other than aclose() (here: the transport
lets a CancelledError escape, as a buggy library below it might) is reported to every caller
as ClientClosedError('the CognitoClient was closed ...') while the client is open; a bulk run
treats that as fatal and ends."""

from __future__ import annotations

import asyncio

import anyio

import aiocognito
from tests.gates import Gates, client


async def test_escaped_cancellation_is_not_reported_as_client_closed() -> None:
    transport = Gates()
    for g in transport.gates:
        g.set()
    transport.push(asyncio.CancelledError())
    cognito = client(transport)
    await cognito.__aenter__()
    try:
        with anyio.fail_after(5):
            try:
                await cognito.admin_update_user_attributes("alice", {"nickname": "x"})
                error = None
            except aiocognito.AiocognitoError as exc:
                error = exc
        state = cognito.state
    finally:
        await cognito.aclose()
    print(state, repr(error))
    assert not isinstance(error, aiocognito.ClientClosedError), f"open client, yet: {error}"
