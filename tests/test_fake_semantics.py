"""The fake enforces Cognito's documented attribute semantics (cognito-facts §1, §3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import attrs
import pytest

from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo
from tests.fake_helpers import ManualClock, Reply, raw_call


@attrs.define
class World:
    fake: FakeCognito
    pool: PoolInfo
    clock: ManualClock
    token: str


SCHEMA = [
    CustomAttribute(name="tier"),
    CustomAttribute(name="born", mutable=False),
    CustomAttribute(name="score", type="Number", min_value=0, max_value=100),
    CustomAttribute(name="nick", min_length=2, max_length=5),
    CustomAttribute(name="flag", type="Boolean"),
    CustomAttribute(name="internal", developer_only=True),
]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock()
    async with FakeCognito(
        user_update_rps=None, user_read_rps=None, per_user_write_rps=None, clock=clock, seed=7
    ) as fake:
        pool = fake.create_pool(
            custom_attributes=SCHEMA, auto_verified_attributes=("email", "phone_number")
        )
        fake.create_user(
            pool.id,
            "alice",
            {"email": "alice@example.com", "custom:tier": "bronze", "custom:born": "1990"},
        )
        fake.create_user(pool.id, "bob", {"email": "bob@example.com"})
        yield World(fake, pool, clock, fake.issue_token(pool.id, "alice"))


def attrs_of(world: World, username: str = "alice") -> dict[str, str]:
    return world.fake.user_attributes(world.pool.id, username)


async def update(
    world: World, attributes: dict[str, str], *, admin: bool = False, user: str = "alice"
) -> Reply:
    wire = [{"Name": k, "Value": v} for k, v in attributes.items()]
    if admin:
        return await raw_call(
            world.fake,
            "AdminUpdateUserAttributes",
            {"UserPoolId": world.pool.id, "Username": user, "UserAttributes": wire},
        )
    return await raw_call(
        world.fake,
        "UpdateUserAttributes",
        {"AccessToken": world.token, "UserAttributes": wire},
        signed=False,
    )


async def test_custom_attribute_needs_its_prefix(world: World) -> None:
    reply = await update(world, {"tier": "gold"})
    assert (reply.status, reply.code) == (400, "InvalidParameterException")
    assert reply.message == (
        "Invalid user attributes: user.tier: Attribute does not exist in the schema.\n"
    )
    ok = await update(world, {"custom:tier": "gold"})
    assert ok.status == 200
    assert attrs_of(world)["custom:tier"] == "gold"


@pytest.mark.parametrize("name", ["sub", "custom:born"])
async def test_immutable_attributes_cannot_be_updated(world: World, name: str) -> None:
    before = attrs_of(world)
    reply = await update(world, {name: "x"}, admin=True)
    assert reply.code == "InvalidParameterException"
    assert reply.message == f"Invalid user attributes: user.{name}: Attribute cannot be updated.\n"
    assert attrs_of(world) == before


async def test_name_and_value_lengths(world: World) -> None:
    long_name = await update(world, {"custom:" + "x" * 26: "v"})
    assert "length less than or equal to 32" in long_name.message
    long_value = await update(world, {"custom:tier": "v" * 2049})
    assert "length less than or equal to 2048" in long_value.message
    assert (await update(world, {"custom:tier": "v" * 2048})).status == 200


async def test_blank_value_deletes(world: World) -> None:
    reply = await update(world, {"custom:tier": ""})
    assert reply.status == 200
    assert "custom:tier" not in attrs_of(world)
    assert world.fake.update_log(world.pool.id, "alice")[-1].changes == {"custom:tier": None}


async def test_typed_custom_attributes(world: World) -> None:
    assert (
        (await update(world, {"custom:score": "101"})).message
        == "Invalid user attributes: user.custom:score: Attribute value must be at most 100.\n"
    )
    assert (await update(world, {"custom:score": "abc"})).code == "InvalidParameterException"
    assert (await update(world, {"custom:nick": "x"})).code == "InvalidParameterException"
    assert (await update(world, {"custom:flag": "yes"})).code == "InvalidParameterException"
    assert (
        await update(world, {"custom:score": "42", "custom:nick": "abc", "custom:flag": "true"})
    ).status == 200


async def test_request_applies_atomically(world: World) -> None:
    before = attrs_of(world)
    log_before = world.fake.update_log(world.pool.id, "alice")
    reply = await update(world, {"custom:tier": "gold", "nickname": "ally", "custom:nope": "x"})
    assert reply.code == "InvalidParameterException"
    assert attrs_of(world) == before
    assert world.fake.update_log(world.pool.id, "alice") == log_before


async def test_developer_only_attributes_need_admin(world: World) -> None:
    by_token = await update(world, {"dev:custom:internal": "x"})
    assert by_token.code == "NotAuthorizedException"
    by_admin = await update(world, {"dev:custom:internal": "x"}, admin=True)
    assert by_admin.status == 200
    assert attrs_of(world)["dev:custom:internal"] == "x"


async def test_email_change_is_unverified_and_sends_a_masked_code(world: World) -> None:
    reply = await update(world, {"email": "new.alice@example.org"})
    assert reply.status == 200
    assert reply.body == {
        "CodeDeliveryDetailsList": [
            {"Destination": "n***@e***", "DeliveryMedium": "EMAIL", "AttributeName": "email"}
        ]
    }
    stored = attrs_of(world)
    assert stored["email"] == "new.alice@example.org"
    assert stored["email_verified"] == "false"
    (sent,) = world.fake.sent_codes(world.pool.id, "alice")
    assert (sent.attribute, sent.destination, sent.delivery_medium) == (
        "email",
        "new.alice@example.org",
        "EMAIL",
    )
    assert len(sent.code) == 6


async def test_phone_change_sends_sms(world: World) -> None:
    reply = await update(world, {"phone_number": "+15550001234"})
    assert reply.body["CodeDeliveryDetailsList"][0] == {
        "Destination": "+*******1234",
        "DeliveryMedium": "SMS",
        "AttributeName": "phone_number",
    }


async def test_admin_update_returns_no_deliveries_and_can_skip_the_code(world: World) -> None:
    reply = await update(world, {"email": "a2@example.com"}, admin=True)
    assert (reply.status, reply.body) == (200, {})
    assert len(world.fake.sent_codes(world.pool.id, "alice")) == 1
    reply = await update(world, {"email": "a3@example.com", "email_verified": "true"}, admin=True)
    assert reply.body == {}
    assert attrs_of(world)["email"] == "a3@example.com"
    assert attrs_of(world)["email_verified"] == "true"
    assert len(world.fake.sent_codes(world.pool.id, "alice")) == 1


async def test_verification_before_update_keeps_the_old_value() -> None:
    async with FakeCognito(user_update_rps=None, seed=3) as fake:
        pool = fake.create_pool(require_verification_before_update=("email",))
        fake.create_user(pool.id, "carol", {"email": "old@example.com", "email_verified": "true"})
        token = fake.issue_token(pool.id, "carol")
        body = {
            "AccessToken": token,
            "UserAttributes": [{"Name": "email", "Value": "new@example.com"}],
        }
        reply = await raw_call(fake, "UpdateUserAttributes", body, signed=False)
        assert reply.body["CodeDeliveryDetailsList"][0]["AttributeName"] == "email"
        assert fake.user_attributes(pool.id, "carol")["email"] == "old@example.com"
        assert fake.user_attributes(pool.id, "carol")["email_verified"] == "true"
        assert fake.pending_attributes(pool.id, "carol") == {"email": "new@example.com"}

        (sent,) = fake.sent_codes(pool.id, "carol")
        assert sent.destination == "new@example.com"
        wrong = "000000" if sent.code != "000000" else "111111"
        verify = {"AccessToken": token, "AttributeName": "email"}
        mismatch = await raw_call(
            fake, "VerifyUserAttribute", {**verify, "Code": wrong}, signed=False
        )
        assert mismatch.code == "CodeMismatchException"
        ok = await raw_call(
            fake, "VerifyUserAttribute", {**verify, "Code": sent.code}, signed=False
        )
        assert ok.status == 200
        assert fake.user_attributes(pool.id, "carol")["email"] == "new@example.com"
        assert fake.user_attributes(pool.id, "carol")["email_verified"] == "true"
        assert fake.pending_attributes(pool.id, "carol") == {}
        assert fake.update_log(pool.id, "carol")[-1].operation == "VerifyUserAttribute"


async def test_too_many_wrong_codes_is_limit_exceeded(world: World) -> None:
    reply = await raw_call(
        world.fake,
        "GetUserAttributeVerificationCode",
        {"AccessToken": world.token, "AttributeName": "email"},
        signed=False,
    )
    assert reply.body["CodeDeliveryDetails"]["Destination"] == "a***@e***"
    (sent,) = world.fake.sent_codes(world.pool.id, "alice")
    wrong = "000000" if sent.code != "000000" else "111111"
    body = {"AccessToken": world.token, "AttributeName": "email", "Code": wrong}
    codes = [
        (await raw_call(world.fake, "VerifyUserAttribute", body, signed=False)).code
        for _ in range(6)
    ]
    assert codes == ["CodeMismatchException"] * 5 + ["LimitExceededException"]
    right = await raw_call(
        world.fake, "VerifyUserAttribute", {**body, "Code": sent.code}, signed=False
    )
    assert right.code == "LimitExceededException"


async def test_expired_code(world: World) -> None:
    await raw_call(
        world.fake,
        "GetUserAttributeVerificationCode",
        {"AccessToken": world.token, "AttributeName": "email"},
        signed=False,
    )
    (sent,) = world.fake.sent_codes(world.pool.id, "alice")
    world.clock.advance(24 * 3600 + 1)
    world.token = world.fake.issue_token(world.pool.id, "alice")
    body = {"AccessToken": world.token, "AttributeName": "email", "Code": sent.code}
    assert (
        await raw_call(world.fake, "VerifyUserAttribute", body, signed=False)
    ).code == "ExpiredCodeException"


async def test_code_requests_are_limited(world: World) -> None:
    body = {"AccessToken": world.token, "AttributeName": "email"}
    codes = [
        (await raw_call(world.fake, "GetUserAttributeVerificationCode", body, signed=False)).code
        for _ in range(6)
    ]
    assert codes == [None] * 5 + ["LimitExceededException"]
    world.clock.advance(3601)
    world.token = world.fake.issue_token(world.pool.id, "alice")
    again = await raw_call(
        world.fake,
        "GetUserAttributeVerificationCode",
        {**body, "AccessToken": world.token},
        signed=False,
    )
    assert again.status == 200


async def test_alias_collision() -> None:
    async with FakeCognito(user_update_rps=None) as fake:
        pool = fake.create_pool(alias_attributes=("email",))
        fake.create_user(pool.id, "u1", {"email": "one@example.com"})
        fake.create_user(pool.id, "u2", {"email": "two@example.com"})
        body = {
            "UserPoolId": pool.id,
            "Username": "u2",
            "UserAttributes": [{"Name": "email", "Value": "one@example.com"}],
        }
        reply = await raw_call(fake, "AdminUpdateUserAttributes", body)
        assert (reply.code, reply.message) == (
            "AliasExistsException",
            "An account with the given email already exists.",
        )
        # The alias resolves to its user in admin calls, and frees up when it changes.
        got = await raw_call(
            fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "one@example.com"}
        )
        assert got.body["Username"] == "u1"
        move = {
            "UserPoolId": pool.id,
            "Username": "u1",
            "UserAttributes": [{"Name": "email", "Value": "1@example.com"}],
        }
        assert (await raw_call(fake, "AdminUpdateUserAttributes", move)).status == 200
        assert (await raw_call(fake, "AdminUpdateUserAttributes", body)).status == 200


async def test_bad_tokens_are_not_authorized(world: World) -> None:
    def get(token: str) -> Awaitable[Reply]:
        return raw_call(world.fake, "GetUser", {"AccessToken": token}, signed=False)

    assert (await get("garbage")).message == "Invalid Access Token"
    forged = world.token.split(".")
    assert (
        await get(".".join([forged[0], forged[1][:-4] + "AAAA", forged[2]]))
    ).code == "NotAuthorizedException"
    world.clock.advance(3601)
    assert (await get(world.token)).message == "Access Token has expired"
    fresh = world.fake.issue_token(world.pool.id, "alice")
    assert (await get(fresh)).status == 200
    world.fake.revoke_token(fresh)
    assert (await get(fresh)).message == "Access Token has been revoked"


async def test_missing_user_and_pool(world: World) -> None:
    nobody = await raw_call(
        world.fake, "AdminGetUser", {"UserPoolId": world.pool.id, "Username": "nobody"}
    )
    assert nobody.code == "UserNotFoundException"
    nopool = await raw_call(
        world.fake, "AdminGetUser", {"UserPoolId": "us-east-1_none", "Username": "alice"}
    )
    assert nopool.code == "ResourceNotFoundException"


async def test_deletes(world: World) -> None:
    reply = await raw_call(
        world.fake,
        "DeleteUserAttributes",
        {"AccessToken": world.token, "UserAttributeNames": ["custom:tier"]},
        signed=False,
    )
    assert reply.status == 200
    assert "custom:tier" not in attrs_of(world)
    bad = await raw_call(
        world.fake,
        "AdminDeleteUserAttributes",
        {"UserPoolId": world.pool.id, "Username": "alice", "UserAttributeNames": ["tier"]},
    )
    assert bad.message == (
        "Invalid user attributes: user.tier: Attribute does not exist in the schema.\n"
    )
    sub = await raw_call(
        world.fake,
        "AdminDeleteUserAttributes",
        {"UserPoolId": world.pool.id, "Username": "alice", "UserAttributeNames": ["sub"]},
    )
    assert sub.message == "Invalid user attributes: user.sub: Attribute cannot be updated.\n"


async def test_get_user_and_admin_get_user(world: World) -> None:
    me = await raw_call(world.fake, "GetUser", {"AccessToken": world.token}, signed=False)
    assert me.body["Username"] == "alice"
    assert {"Name": "custom:tier", "Value": "bronze"} in me.body["UserAttributes"]
    admin = await raw_call(
        world.fake, "AdminGetUser", {"UserPoolId": world.pool.id, "Username": "alice"}
    )
    assert admin.body["UserStatus"] == "CONFIRMED"
    assert admin.body["Enabled"] is True
    assert admin.body["UserCreateDate"] == world.clock.now


async def test_unknown_operation_and_bad_body(world: World) -> None:
    unknown = await raw_call(world.fake, "DescribeEverything", {})
    assert (unknown.status, unknown.code) == (400, "UnknownOperationException")
    stats = world.fake.stats()
    assert stats.count(outcome="UnknownOperationException") == 1


async def test_admin_operations_must_be_signed(world: World) -> None:
    reply = await raw_call(
        world.fake, "AdminGetUser", {"UserPoolId": world.pool.id, "Username": "alice"}, signed=False
    )
    assert reply.code == "MissingAuthenticationTokenException"


async def test_seeding_and_inspection() -> None:
    fake = FakeCognito()
    pool = fake.create_pool()
    names = fake.seed_users(pool.id, 1000, attributes=lambda i: {"nickname": f"n{i}"})
    assert names[0] == "user0"
    assert names[-1] == "user999"
    assert fake.backend.user_count(pool.id) == 1000
    assert fake.user_attributes(pool.id, "user7")["nickname"] == "n7"
    assert fake.update_log(pool.id, "user7") == []
