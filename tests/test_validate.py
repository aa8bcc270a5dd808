"""Validation before any request: clear messages that name the attribute and limit, never values."""

from __future__ import annotations

from typing import Any

import pytest

import aiocognito
from aiocognito._client import client_over
from tests.fakes import FakeTransport

TOKEN = "eyJhbGciOi.eyJzdWIiOiJ1LTEifQ.c2ln"
SECRET_VALUE = "s3cr3t-value-never-shown"


@pytest.fixture
async def cognito(fake_transport: FakeTransport) -> Any:
    async with client_over(
        fake_transport, region_name="eu-west-1", user_pool_id="eu-west-1_AbC"
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("attributes", "fragments"),
    [
        ({"": "x"}, ["attribute name is empty"]),
        ({"custom:" + "a" * 26: "x"}, ["33 characters", "at most 32 characters"]),
        ({"tier": "gold"}, ["'tier'", "did you mean 'custom:tier'"]),
        ({"custom:": "x"}, ["nothing after 'custom:'"]),
        ({"custom:" + "b" * 21: "x"}, ["21-character name", "at most 20 characters"]),
        ({"nickname": 5}, ["'nickname'", "type int", "must be str, or None"]),
        ({"nickname": "x" * 2049}, ["'nickname'", "2049 characters", "at most 2048 characters"]),
        ({}, ["no attributes given"]),
        ([], ["no attributes given"]),
        ([{"Value": "x"}], ["attributes[0]", "'Name' and 'Value'"]),
        ([{"Name": "nickname", "Value": "x", "Extra": 1}], ["unexpected keys ['Extra']"]),
        ("nickname=x", ["expected a mapping", "got str"]),
    ],
)
async def test_bad_attributes_are_refused_before_sending(
    cognito: aiocognito.CognitoClient,
    fake_transport: FakeTransport,
    attributes: Any,
    fragments: list[str],
) -> None:
    with pytest.raises(aiocognito.AttributeValidationError) as info:
        await cognito.update_user_attributes(TOKEN, attributes)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert fake_transport.sent == []


async def test_value_is_never_quoted_in_the_message(cognito: aiocognito.CognitoClient) -> None:
    with pytest.raises(aiocognito.AttributeValidationError) as info:
        await cognito.admin_update_user_attributes("alice", {"nickname": SECRET_VALUE * 200})
    assert SECRET_VALUE not in str(info.value)
    assert SECRET_VALUE not in repr(info.value)


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"k": 1}, "the value for key 'k' is of type int"),
        ({1: "v"}, "keys must be str"),
        (["k", "v"], "expected a mapping of str to str"),
    ],
)
async def test_client_metadata_must_be_str_to_str(
    cognito: aiocognito.CognitoClient, fake_transport: FakeTransport, metadata: Any, fragment: str
) -> None:
    with pytest.raises(aiocognito.AttributeValidationError, match=fragment):
        await cognito.update_user_attributes(TOKEN, {"nickname": "x"}, client_metadata=metadata)
    assert fake_transport.sent == []


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("", "access_token: is empty"),
        ("Bearer abc.def", "without the 'Bearer ' prefix"),
        (None, "expected str"),
    ],
)
async def test_bad_access_tokens(
    cognito: aiocognito.CognitoClient, fake_transport: FakeTransport, token: Any, fragment: str
) -> None:
    for call in (
        lambda: cognito.update_user_attributes(token, {"nickname": "x"}),
        lambda: cognito.delete_user_attributes(token, ["nickname"]),
        lambda: cognito.get_user(token),
        lambda: cognito.get_user_attribute_verification_code(token, "email"),
        lambda: cognito.verify_user_attribute(token, "email", "123456"),
    ):
        with pytest.raises(aiocognito.AttributeValidationError, match=fragment):
            await call()
    assert fake_transport.sent == []


async def test_bearer_token_message_does_not_echo_the_token(
    cognito: aiocognito.CognitoClient,
) -> None:
    with pytest.raises(aiocognito.AttributeValidationError) as info:
        await cognito.get_user("Bearer " + TOKEN)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("username", "fragment"), [("", "username: is empty"), ("u" * 129, "at most 128")]
)
async def test_bad_usernames(
    cognito: aiocognito.CognitoClient, fake_transport: FakeTransport, username: str, fragment: str
) -> None:
    for call in (
        lambda: cognito.admin_update_user_attributes(username, {"nickname": "x"}),
        lambda: cognito.admin_delete_user_attributes(username, ["nickname"]),
        lambda: cognito.admin_get_user(username),
    ):
        with pytest.raises(aiocognito.AttributeValidationError, match=fragment):
            await call()
    assert fake_transport.sent == []


async def test_delete_needs_names(
    cognito: aiocognito.CognitoClient, fake_transport: FakeTransport
) -> None:
    with pytest.raises(aiocognito.AttributeValidationError, match="no attribute names given"):
        await cognito.delete_user_attributes(TOKEN, [])
    with pytest.raises(
        aiocognito.AttributeValidationError, match="expected a list of attribute names"
    ):
        await cognito.delete_user_attributes(TOKEN, "nickname")
    with pytest.raises(aiocognito.AttributeValidationError, match="did you mean 'custom:dept'"):
        await cognito.admin_delete_user_attributes("alice", ["dept"])
    assert fake_transport.sent == []


async def test_admin_calls_need_a_pool(fake_transport: FakeTransport) -> None:
    async with client_over(fake_transport, region_name="eu-west-1") as c:
        with pytest.raises(aiocognito.AttributeValidationError, match="no user pool given"):
            await c.admin_get_user("alice")
        with pytest.raises(aiocognito.AttributeValidationError, match="is not a user pool id"):
            await c.admin_get_user("alice", user_pool_id="not a pool")
    assert fake_transport.sent == []


def test_bad_default_pool_is_refused_at_construction() -> None:
    with pytest.raises(aiocognito.AttributeValidationError, match="is not a user pool id"):
        aiocognito.CognitoClient(region_name="eu-west-1", user_pool_id="nope")


async def test_verification_code_shape(
    cognito: aiocognito.CognitoClient, fake_transport: FakeTransport
) -> None:
    with pytest.raises(aiocognito.AttributeValidationError, match="without spaces"):
        await cognito.verify_user_attribute(TOKEN, "email", "12 34")
    with pytest.raises(aiocognito.AttributeValidationError, match="without spaces"):
        await cognito.verify_user_attribute(TOKEN, "email", "")
    assert fake_transport.sent == []


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="user_update_rps"):
        aiocognito.Limits(user_update_rps=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        aiocognito.Limits(max_concurrency=0)
    with pytest.raises(ValueError, match="deadline"):
        aiocognito.RetryPolicy(deadline=-1)
    assert aiocognito.Limits(user_read_rps=None).user_read_rps is None
