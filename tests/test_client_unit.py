"""CognitoClient over a fake transport: lifecycle, what goes on the wire, parsing, retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import aiocognito
from aiocognito._client import client_over
from tests.fakes import FakeTransport

TOKEN = "eyJhbGciOi.eyJzdWIiOiJ1LTEifQ.c2ln"
POOL = "eu-west-1_AbC"


def make(transport: FakeTransport, **kwargs: Any) -> aiocognito.CognitoClient:
    kwargs.setdefault("retry", aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001))
    return client_over(transport, region_name="eu-west-1", user_pool_id=POOL, **kwargs)


def throttle() -> aiocognito.TooManyRequestsError:
    return aiocognito.TooManyRequestsError("Rate exceeded", operation="X", status=400)


# ------------------------------------------------------------------------------------------
# Lifecycle


async def test_use_before_open_is_a_clear_error(fake_transport: FakeTransport) -> None:
    client = make(fake_transport)
    assert client.state is aiocognito.ClientState.UNOPENED
    with pytest.raises(RuntimeError, match="not open; use 'async with"):
        await client.get_user(TOKEN)
    assert fake_transport.sent == []


async def test_open_once_close_once_and_no_reopen(fake_transport: FakeTransport) -> None:
    client = make(fake_transport)
    async with client as opened:
        assert opened is client
        assert client.state is aiocognito.ClientState.OPEN
        with pytest.raises(RuntimeError, match="already open"):
            await client.__aenter__()
    assert client.statistics().state is aiocognito.ClientState.CLOSED
    assert (fake_transport.opened, fake_transport.closed) == (1, 1)
    await client.aclose()
    assert fake_transport.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_user(TOKEN)
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        await client.__aenter__()


# ------------------------------------------------------------------------------------------
# What goes on the wire


async def test_update_user_attributes_wire_and_result(fake_transport: FakeTransport) -> None:
    fake_transport.push(
        {
            "CodeDeliveryDetailsList": [
                {"Destination": "a***@e***", "DeliveryMedium": "EMAIL", "AttributeName": "email"}
            ],
            "ResponseMetadata": {"RequestId": "rid-7"},
        }
    )
    async with make(fake_transport) as cognito:
        result = await cognito.update_user_attributes(
            TOKEN,
            {"email": "new@example.com", "custom:tier": "gold", "nickname": None, "website": ""},
            client_metadata={"source": "web"},
        )
    (sent,) = fake_transport.sent
    assert sent.operation == "UpdateUserAttributes"
    assert sent.params == {
        "AccessToken": TOKEN,
        "UserAttributes": [
            {"Name": "email", "Value": "new@example.com"},
            {"Name": "custom:tier", "Value": "gold"},
            {"Name": "nickname", "Value": ""},
            {"Name": "website", "Value": ""},
        ],
        "ClientMetadata": {"source": "web"},
    }
    assert set(sent.secrets) >= {TOKEN, "new@example.com", "gold", "source", "web"}
    assert result.code_deliveries == (
        aiocognito.CodeDelivery(
            destination="a***@e***", delivery_medium="EMAIL", attribute_name="email"
        ),
    )
    assert result.verification_pending
    assert result.request_id == "rid-7"


async def test_boto_style_attribute_list_is_accepted(fake_transport: FakeTransport) -> None:
    async with make(fake_transport) as cognito:
        result = await cognito.admin_update_user_attributes(
            "alice",
            [{"Name": "custom:tier", "Value": "gold"}, {"Name": "nickname"}],
            user_pool_id="us-east-1_Other",
        )
    (sent,) = fake_transport.sent
    assert sent.operation == "AdminUpdateUserAttributes"
    assert sent.params == {
        "UserPoolId": "us-east-1_Other",
        "Username": "alice",
        "UserAttributes": [
            {"Name": "custom:tier", "Value": "gold"},
            {"Name": "nickname", "Value": ""},
        ],
    }
    assert result.code_deliveries == ()
    assert not result.verification_pending


async def test_each_operation_sends_its_parameters(fake_transport: FakeTransport) -> None:
    fake_transport.handler = lambda op, _p: (
        {
            "CodeDeliveryDetails": {
                "Destination": "+*******99",
                "DeliveryMedium": "SMS",
                "AttributeName": "phone_number",
            }
        }
        if op == "GetUserAttributeVerificationCode"
        else {"Username": "alice", "UserAttributes": [{"Name": "sub", "Value": "u-1"}]}
        if op in {"GetUser", "AdminGetUser"}
        else {}
    )
    async with make(fake_transport) as cognito:
        await cognito.delete_user_attributes(TOKEN, ["nickname", "custom:tier", "nickname"])
        await cognito.admin_delete_user_attributes("alice", ["nickname"])
        assert (await cognito.get_user(TOKEN)).username == "alice"
        await cognito.admin_get_user("alice")
        delivery = await cognito.get_user_attribute_verification_code(
            TOKEN, "phone_number", client_metadata={"k": "v"}
        )
        await cognito.verify_user_attribute(TOKEN, "phone_number", "123456")
    assert delivery == aiocognito.CodeDelivery(
        destination="+*******99", delivery_medium="SMS", attribute_name="phone_number"
    )
    assert [(c.operation, c.params) for c in fake_transport.sent] == [
        (
            "DeleteUserAttributes",
            {"AccessToken": TOKEN, "UserAttributeNames": ["nickname", "custom:tier"]},
        ),
        (
            "AdminDeleteUserAttributes",
            {"UserPoolId": POOL, "Username": "alice", "UserAttributeNames": ["nickname"]},
        ),
        ("GetUser", {"AccessToken": TOKEN}),
        ("AdminGetUser", {"UserPoolId": POOL, "Username": "alice"}),
        (
            "GetUserAttributeVerificationCode",
            {"AccessToken": TOKEN, "AttributeName": "phone_number", "ClientMetadata": {"k": "v"}},
        ),
        (
            "VerifyUserAttribute",
            {"AccessToken": TOKEN, "AttributeName": "phone_number", "Code": "123456"},
        ),
    ]
    assert "123456" in fake_transport.sent[-1].secrets


async def test_verification_code_may_be_absent(fake_transport: FakeTransport) -> None:
    async with make(fake_transport) as cognito:
        assert await cognito.get_user_attribute_verification_code(TOKEN, "email") is None


async def test_admin_get_user_parses_status_and_dates(fake_transport: FakeTransport) -> None:
    created = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    fake_transport.push(
        {
            "Username": "alice",
            "UserAttributes": [
                {"Name": "email", "Value": "alice@example.com"},
                {"Name": "custom:tier", "Value": "gold"},
            ],
            "UserStatus": "CONFIRMED",
            "Enabled": True,
            "UserCreateDate": created,
            "UserLastModifiedDate": 1_700_000_000,
        }
    )
    async with make(fake_transport) as cognito:
        user = await cognito.admin_get_user("alice")
    assert user.username == "alice"
    assert dict(user.attributes) == {"email": "alice@example.com", "custom:tier": "gold"}
    assert (user.status, user.enabled, user.created) == ("CONFIRMED", True, created)
    assert user.modified == dt.datetime.fromtimestamp(1_700_000_000, tz=dt.UTC)
    with pytest.raises(TypeError):
        user.attributes["email"] = "x"  # type: ignore[index]
    assert "alice@example.com" not in repr(user)
    assert "<2 attributes>" in repr(user)


# ------------------------------------------------------------------------------------------
# Retries and statistics


async def test_throttles_are_retried_and_counted(fake_transport: FakeTransport) -> None:
    fake_transport.push(throttle(), throttle(), {})
    async with make(fake_transport) as cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "a"})
        stats = cognito.statistics()
    assert len(fake_transport.sent) == 3
    assert stats.requests_sent == 3
    assert stats.retries == 2
    assert stats.throttled == 2
    assert stats.calls_succeeded == 1
    assert stats.calls_failed == 0
    assert stats.errors_by_code == {"TooManyRequestsException": 2}
    assert stats.state is aiocognito.ClientState.OPEN


async def test_permanent_error_is_raised_once_and_unwrapped(fake_transport: FakeTransport) -> None:
    failure = aiocognito.NotAuthorizedError(
        "Access Token has expired", operation="UpdateUserAttributes"
    )
    fake_transport.push(failure)
    async with make(fake_transport) as cognito:
        with pytest.raises(aiocognito.NotAuthorizedError) as info:
            await cognito.update_user_attributes(TOKEN, {"nickname": "a"})
        assert info.value is failure
        assert cognito.statistics().calls_failed == 1
    assert len(fake_transport.sent) == 1


async def test_call_may_override_attempts_through_policy(fake_transport: FakeTransport) -> None:
    fake_transport.push(*(throttle() for _ in range(5)))
    retry = aiocognito.RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_cap=0.001)
    async with make(fake_transport, retry=retry) as cognito:
        with pytest.raises(aiocognito.TooManyRequestsError):
            await cognito.get_user(TOKEN)
    assert len(fake_transport.sent) == 2


async def test_timeout_keyword_bounds_the_call(fake_transport: FakeTransport) -> None:
    import anyio
    import anyio.lowlevel

    async def never(*_a: Any, **_k: Any) -> dict[str, Any]:
        await anyio.Event().wait()
        raise AssertionError

    fake_transport.call = never  # type: ignore[method-assign]
    async with make(fake_transport) as cognito:
        with pytest.raises(aiocognito.DeadlineExceededError, match="may still be applied"):
            await cognito.update_user_attributes(TOKEN, {"nickname": "x"}, timeout=0.05)
        # The update stays on the wire (the user's next change must not overtake it) until it
        # answers; a read has nothing behind it and is cut off with its caller.
        assert cognito.statistics().in_flight == 1
        with pytest.raises(aiocognito.DeadlineExceededError):
            await cognito.get_user(TOKEN, timeout=0.05)
        with anyio.fail_after(5):  # the read's cancelled attempt winds down in a few turns
            while cognito.statistics().in_flight != 1:
                await anyio.lowlevel.checkpoint()
    assert cognito.statistics().in_flight == 0  # closing ends the update's flight


async def test_repr_shows_state_and_counts_but_no_secrets(fake_transport: FakeTransport) -> None:
    client = make(fake_transport, endpoint_url="http://127.0.0.1:9")
    assert "state=unopened" in repr(client)
    async with client as cognito:
        await cognito.update_user_attributes(TOKEN, {"nickname": "secret-nick"})
        text = repr(cognito)
    assert "state=open" in text
    assert "calls=1" in text
    assert "eu-west-1_AbC" in text
    assert TOKEN not in text
    assert "secret-nick" not in text
    assert "state=closed" in repr(client)


async def test_each_call_may_bring_its_own_retry_policy(fake_transport: FakeTransport) -> None:
    once = aiocognito.RetryPolicy(max_attempts=1)
    async with make(
        fake_transport, limits=aiocognito.Limits(user_update_rps=None, adaptive=False)
    ) as cognito:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: cognito.update_user_attributes(TOKEN, {"nickname": "a"}, retry=once),
            lambda: cognito.admin_update_user_attributes("alice", {"nickname": "a"}, retry=once),
            lambda: cognito.delete_user_attributes(TOKEN, ["nickname"], retry=once),
            lambda: cognito.admin_delete_user_attributes("alice", ["nickname"], retry=once),
            lambda: cognito.get_user(TOKEN, retry=once),
            lambda: cognito.admin_get_user("alice", retry=once),
            lambda: cognito.get_user_attribute_verification_code(TOKEN, "email", retry=once),
            lambda: cognito.verify_user_attribute(TOKEN, "email", "123456", retry=once),
        ]
        for call in calls:
            fake_transport.push(throttle(), {})
            with pytest.raises(aiocognito.TooManyRequestsError):
                await call()  # one attempt, as the call's own policy says
            fake_transport.script.clear()
        fake_transport.push(throttle(), {})
        await cognito.admin_get_user("alice")  # the client's policy retries
    assert len(fake_transport.sent) == len(calls) + 2
