"""End to end against a real moto server: every operation moto implements, over HTTP.

moto lacks DeleteUserAttributes, GetUserAttributeVerificationCode and VerifyUserAttribute; those
are covered over the fake transport in test_client_unit and over the wire in test_transport.
"""

from __future__ import annotations

import datetime as dt
import uuid

import anyio
import pytest

import aiocognito
from tests.conftest import CREDENTIALS, REGION, MotoPool

pytestmark = pytest.mark.moto


def _client(
    pool: MotoPool, *, credentials: bool = True, **kwargs: object
) -> aiocognito.CognitoClient:
    return aiocognito.CognitoClient(
        region_name=REGION,
        user_pool_id=pool.pool_id,
        endpoint_url=pool.endpoint_url,
        retry=aiocognito.RetryPolicy(max_attempts=1),
        **(CREDENTIALS if credentials else {}),  # type: ignore[typeddict-item]
        **kwargs,  # type: ignore[arg-type]
    )


async def test_update_user_attributes_with_token_and_no_aws_credentials(
    moto_pool: MotoPool,
) -> None:
    moto_pool.create_user("alice", email="alice@example.com")
    token = moto_pool.token("alice")
    async with _client(moto_pool, credentials=False) as cognito:
        result = await cognito.update_user_attributes(
            token, {"custom:tier": "gold", "nickname": "ally"}, client_metadata={"source": "web"}
        )
        user = await cognito.get_user(token)
    # moto returns no CodeDeliveryDetailsList (documented gap); Cognito would for email changes.
    assert result.code_deliveries == ()
    assert user.username == "alice"
    assert user.attributes["custom:tier"] == "gold"
    assert user.attributes["nickname"] == "ally"
    assert moto_pool.stored("alice")["email"] == "alice@example.com"


async def test_admin_update_then_admin_get(moto_pool: MotoPool) -> None:
    moto_pool.create_user("bob")
    async with _client(moto_pool) as cognito:
        await cognito.admin_update_user_attributes(
            "bob", [{"Name": "custom:dept", "Value": "eng"}, {"Name": "given_name", "Value": "Bob"}]
        )
        user = await cognito.admin_get_user("bob")
    assert user.attributes["custom:dept"] == "eng"
    assert user.attributes["given_name"] == "Bob"
    assert user.status == "CONFIRMED"
    assert user.enabled is True
    assert isinstance(user.created, dt.datetime)
    assert user.created.tzinfo is not None
    assert isinstance(user.modified, dt.datetime)


async def test_admin_delete_user_attributes(moto_pool: MotoPool) -> None:
    moto_pool.create_user("carol", nickname="caz", custom__tier="silver")
    async with _client(moto_pool) as cognito:
        await cognito.admin_delete_user_attributes("carol", ["nickname", "custom:tier"])
        user = await cognito.admin_get_user("carol")
    assert "nickname" not in user.attributes
    assert "custom:tier" not in user.attributes


async def test_blank_value_is_sent_as_blank(moto_pool: MotoPool) -> None:
    # Cognito deletes on a blank value; moto stores "" instead (a documented moto gap). Either
    # way the wire carried a blank, which is what this checks.
    moto_pool.create_user("dave", nickname="dd")
    async with _client(moto_pool) as cognito:
        await cognito.admin_update_user_attributes("dave", {"nickname": None})
    assert moto_pool.stored("dave").get("nickname", "") == ""


async def test_other_pool_per_call(moto_pool: MotoPool, moto_url: str) -> None:
    import boto3

    boto = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto_url, **CREDENTIALS)
    other = boto.create_user_pool(PoolName=f"o-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    boto.admin_create_user(UserPoolId=other, Username="erin", MessageAction="SUPPRESS")
    async with _client(moto_pool) as cognito:
        await cognito.admin_update_user_attributes("erin", {"nickname": "e"}, user_pool_id=other)
        user = await cognito.admin_get_user("erin", user_pool_id=other)
    assert user.attributes["nickname"] == "e"


async def test_service_errors_from_moto(moto_pool: MotoPool) -> None:
    async with _client(moto_pool) as cognito:
        with pytest.raises(aiocognito.UserNotFoundError) as not_found:
            await cognito.admin_get_user("nobody")
        with pytest.raises(aiocognito.ResourceNotFoundError):
            await cognito.admin_get_user("nobody", user_pool_id="us-east-1_Missing0")
        with pytest.raises(aiocognito.NotAuthorizedError):
            await cognito.get_user("not.a.token")
        with pytest.raises(aiocognito.NotAuthorizedError):
            await cognito.update_user_attributes("not.a.token", {"nickname": "x"})
    assert not_found.value.operation == "AdminGetUser"
    assert not_found.value.code == "UserNotFoundException"
    assert not_found.value.status == 400


async def test_alias_exists_when_email_is_the_username(moto_url: str) -> None:
    import boto3

    boto = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto_url, **CREDENTIALS)
    pool = boto.create_user_pool(
        PoolName=f"a-{uuid.uuid4().hex[:6]}", UsernameAttributes=["email"]
    )["UserPool"]["Id"]
    for email in ("one@example.com", "two@example.com"):
        boto.admin_create_user(
            UserPoolId=pool,
            Username=email,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}],
        )
    async with aiocognito.CognitoClient(
        region_name=REGION, user_pool_id=pool, endpoint_url=moto_url, **CREDENTIALS
    ) as cognito:
        with pytest.raises(aiocognito.AliasExistsError):
            await cognito.admin_update_user_attributes(
                "two@example.com", {"email": "one@example.com"}
            )


async def test_many_concurrent_updates_all_land(moto_pool: MotoPool) -> None:
    users = [f"user{i}" for i in range(20)]
    for name in users:
        moto_pool.create_user(name)
    async with _client(moto_pool, limits=aiocognito.Limits(max_concurrency=16)) as cognito:
        async with anyio.create_task_group() as tg:
            for name in users:
                tg.start_soon(
                    cognito.admin_update_user_attributes, name, {"custom:tier": f"t-{name}"}
                )
        stats = cognito.statistics()
    assert stats.calls_succeeded == len(users)
    assert stats.in_flight == 0
    for name in users:
        assert moto_pool.stored(name)["custom:tier"] == f"t-{name}"
