"""One contract, two servers: the same tests against moto and against aiocognito's fake.

Both are seeded the same way, with boto3 over HTTP (CreateUserPool, CreateUserPoolClient,
AdminCreateUser, AdminSetUserPassword, AdminInitiateAuth), and driven with aiocognito. This
keeps the fake honest wherever moto implements an operation.

The tests at the bottom run against the fake alone, where it is stricter than moto or covers
operations moto lacks. Each one cites the documented Cognito behaviour it follows
(cognito-facts.md sections 3 and 6).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import anyio
import pytest

import aiocognito
from aiocognito.testing import FakeCognito
from tests.conftest import CREDENTIALS, REGION, BotoPool, make_boto_pool

pytestmark = pytest.mark.moto


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCognito]:
    server = FakeCognito(
        region=REGION, user_update_rps=None, user_read_rps=None, per_user_write_rps=None
    )
    with server.run_in_thread():
        yield server


@pytest.fixture(scope="module")
def fake_url(fake: FakeCognito) -> str:
    return fake.endpoint_url


@pytest.fixture(params=["moto", "fake"])
def server(request: pytest.FixtureRequest) -> str:
    """The endpoint under contract: moto's or the fake's."""
    return str(request.getfixturevalue("moto_url" if request.param == "moto" else "fake_url"))


@pytest.fixture
def pool(server: str) -> BotoPool:
    return make_boto_pool(server)


def client(pool: BotoPool) -> aiocognito.CognitoClient:
    return aiocognito.CognitoClient(
        region_name=REGION,
        user_pool_id=pool.pool_id,
        endpoint_url=pool.endpoint_url,
        retry=aiocognito.RetryPolicy(max_attempts=1),
        **CREDENTIALS,
    )


# ------------------------------------------------------------------------------------------
# The contract


async def test_token_update_then_read_back(pool: BotoPool) -> None:
    pool.create_user("alice", email="alice@example.com")
    token = pool.token("alice")
    async with client(pool) as cognito:
        await cognito.update_user_attributes(token, {"custom:tier": "gold", "given_name": "Alice"})
        me = await cognito.get_user(token)
    assert me.username == "alice"
    assert me.attributes["custom:tier"] == "gold"
    assert me.attributes["given_name"] == "Alice"
    assert me.attributes["email"] == "alice@example.com"
    assert "sub" in me.attributes


async def test_admin_update_then_admin_read(pool: BotoPool) -> None:
    pool.create_user("bob")
    async with client(pool) as cognito:
        await cognito.admin_update_user_attributes("bob", {"custom:dept": "eng", "nickname": "b"})
        user = await cognito.admin_get_user("bob")
    assert (user.attributes["custom:dept"], user.attributes["nickname"]) == ("eng", "b")
    assert (user.status, user.enabled) == ("CONFIRMED", True)
    assert isinstance(user.created, dt.datetime)
    assert isinstance(user.modified, dt.datetime)
    assert pool.stored("bob")["custom:dept"] == "eng"


async def test_admin_delete(pool: BotoPool) -> None:
    pool.create_user("carol", nickname="cc", custom__tier="silver")
    async with client(pool) as cognito:
        await cognito.admin_delete_user_attributes("carol", ["nickname", "custom:tier"])
    stored = pool.stored("carol")
    assert "nickname" not in stored
    assert "custom:tier" not in stored


async def test_later_update_wins(pool: BotoPool) -> None:
    pool.create_user("dave")
    async with client(pool) as cognito:
        for value in ("one", "two", "three"):
            await cognito.admin_update_user_attributes("dave", {"custom:tier": value})
    assert pool.stored("dave")["custom:tier"] == "three"


async def test_errors(pool: BotoPool) -> None:
    async with client(pool) as cognito:
        with pytest.raises(aiocognito.UserNotFoundError):
            await cognito.admin_get_user("nobody")
        with pytest.raises(aiocognito.UserNotFoundError):
            await cognito.admin_update_user_attributes("nobody", {"nickname": "x"})
        with pytest.raises(aiocognito.ResourceNotFoundError):
            await cognito.admin_get_user("nobody", user_pool_id="us-east-1_Missing0")
        with pytest.raises(aiocognito.NotAuthorizedError):
            await cognito.get_user("not.a.token")
        with pytest.raises(aiocognito.NotAuthorizedError):
            await cognito.update_user_attributes("not.a.token", {"nickname": "x"})


async def test_alias_exists_when_email_is_the_username(server: str) -> None:
    pool = make_boto_pool(server, UsernameAttributes=["email"])
    for email in ("one@example.com", "two@example.com"):
        pool.boto.admin_create_user(
            UserPoolId=pool.pool_id,
            Username=email,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}],
        )
    async with client(pool) as cognito:
        with pytest.raises(aiocognito.AliasExistsError):
            await cognito.admin_update_user_attributes(
                "two@example.com", {"email": "one@example.com"}
            )


async def test_list_users_sees_created_users(pool: BotoPool) -> None:
    names = {f"lu-{uuid.uuid4().hex[:6]}" for _ in range(3)}
    for name in names:
        pool.create_user(name)
    listed = {u["Username"] for u in pool.boto.list_users(UserPoolId=pool.pool_id)["Users"]}
    assert names <= listed


async def test_concurrent_updates_to_many_users(pool: BotoPool) -> None:
    users = [f"cu{i}" for i in range(12)]
    for name in users:
        pool.create_user(name)
    async with client(pool) as cognito, anyio.create_task_group() as tg:
        for name in users:
            tg.start_soon(cognito.admin_update_user_attributes, name, {"custom:tier": name})
    for name in users:
        assert pool.stored(name)["custom:tier"] == name


# ------------------------------------------------------------------------------------------
# The fake alone: stricter than moto, following Cognito's documented behaviour


@pytest.fixture
def fake_pool(fake_url: str) -> BotoPool:
    return make_boto_pool(fake_url, AutoVerifiedAttributes=["email"])


async def test_fake_blank_value_deletes(fake_pool: BotoPool) -> None:
    """Cognito: "To delete an attribute, submit it with a blank value" (UUA/AUUA docs, §3).

    moto stores the empty string instead (§6).
    """
    fake_pool.create_user("erin", nickname="ee")
    async with client(fake_pool) as cognito:
        await cognito.admin_update_user_attributes("erin", {"nickname": None})
    assert "nickname" not in fake_pool.stored("erin")


async def test_fake_rejects_attributes_not_in_the_schema(fake_pool: BotoPool) -> None:
    """Cognito: InvalidParameterException `user.<name>: Attribute does not exist in the schema.`

    (field report amplify-flutter#1531, §2). moto accepts any name (§6).
    """
    fake_pool.create_user("finn")
    async with client(fake_pool) as cognito:
        with pytest.raises(
            aiocognito.InvalidParameterError, match=r"user\.custom:nope: Attribute does not exist"
        ):
            await cognito.admin_update_user_attributes("finn", {"custom:nope": "x"})
        with pytest.raises(aiocognito.InvalidParameterError, match="Attribute cannot be updated"):
            await cognito.admin_update_user_attributes("finn", {"sub": "x"})


async def test_fake_email_change_reports_code_delivery(fake_pool: BotoPool) -> None:
    """Cognito: a verification-triggering change returns CodeDeliveryDetailsList (§3).

    moto returns no delivery details (§6).
    """
    fake_pool.create_user("gail", email="gail@example.com")
    token = fake_pool.token("gail")
    async with client(fake_pool) as cognito:
        result = await cognito.update_user_attributes(token, {"email": "gail@example.org"})
    assert result.code_deliveries == (
        aiocognito.CodeDelivery(
            destination="g***@e***", delivery_medium="EMAIL", attribute_name="email"
        ),
    )
    assert fake_pool.stored("gail")["email_verified"] == "false"


async def test_fake_operations_moto_lacks(fake_pool: BotoPool, fake: FakeCognito) -> None:
    """DeleteUserAttributes, GetUserAttributeVerificationCode and VerifyUserAttribute (§1, §6)."""
    fake_pool.create_user("hank", email="hank@example.com", nickname="hh")
    token = fake_pool.token("hank")
    async with client(fake_pool) as cognito:
        await cognito.delete_user_attributes(token, ["nickname"])
        assert "nickname" not in (await cognito.get_user(token)).attributes
        delivery = await cognito.get_user_attribute_verification_code(token, "email")
        assert delivery == aiocognito.CodeDelivery(
            destination="h***@e***", delivery_medium="EMAIL", attribute_name="email"
        )
        with pytest.raises(aiocognito.CodeMismatchError):
            await cognito.verify_user_attribute(token, "email", "not-the-code")
        assert fake_pool.stored("hank").get("email_verified") != "true"
        (sent,) = fake.sent_codes(fake_pool.pool_id, "hank")
        await cognito.verify_user_attribute(token, "email", sent.code)
    assert fake_pool.stored("hank")["email_verified"] == "true"
