"""The fake states Cognito's rules on its own, agrees with the client, and matches Cognito.

The first tests guard item by item that the fake's rules (``aiocognito.testing._rules``) and
the client's (``_validate``, ``_operations``, ``Limits``) say the same thing, so a wrong constant
on either side is found rather than passing in both. The rest check the fidelity cases moto's
suite found, each against the behaviour AWS documents.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import aiocognito
from aiocognito import _operations, _validate
from aiocognito.testing import FakeCognito, _rules
from tests.fake_helpers import raw_call

TESTING = Path(aiocognito.__file__).parent / "testing"


# ------------------------------------------------------------------------------------------
# The fake's rules are its own, and agree with the client's


def test_the_fake_imports_nothing_from_the_clients_private_modules() -> None:
    borrowed = []
    for module in sorted(TESTING.glob("*.py")):
        if module.name == "__main__.py":
            continue  # the command line: it shares the CLI's flag parsers, not Cognito's rules
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                if node.level >= 2 or target.startswith("aiocognito."):
                    borrowed.append(f"{module.name}: from {target} import ...")
            elif isinstance(node, ast.Import):
                borrowed += [
                    f"{module.name}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("aiocognito.")
                ]
    assert borrowed == []


@pytest.mark.parametrize(
    "name",
    ["MAX_NAME_LENGTH", "MAX_VALUE_LENGTH", "MAX_CUSTOM_NAME_LENGTH", "MAX_USERNAME_LENGTH"],
)
def test_limits_agree(name: str) -> None:
    assert getattr(_rules, name) == getattr(_validate, name)


def test_standard_attributes_agree() -> None:
    assert _rules.STANDARD_ATTRIBUTES == _validate.STANDARD_ATTRIBUTES


def test_quota_categories_agree() -> None:
    client = {name: op.category for name, op in _operations.OPERATIONS.items()}
    fake = {op: _rules.CATEGORY.get(op) for op in client}
    assert fake == client


def test_default_quotas_agree() -> None:
    limits = aiocognito.Limits()
    assert limits.user_update_rps == _rules.DEFAULT_QUOTAS["UserUpdate"]
    assert limits.user_read_rps == _rules.DEFAULT_QUOTAS["UserRead"]


def test_every_standard_attribute_is_accepted_by_the_client() -> None:
    for name in _rules.STANDARD_ATTRIBUTES:
        assert _validate.check_attribute_name(name) == name


# ------------------------------------------------------------------------------------------
# Fidelity, over HTTP


@pytest.fixture
async def fake() -> AsyncIterator[FakeCognito]:
    async with FakeCognito(
        user_update_rps=None, user_read_rps=None, per_user_write_rps=None, seed=3
    ) as fake:
        yield fake


async def _ok(fake: FakeCognito, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await raw_call(fake, operation, body)
    assert reply.status == 200, reply.body
    return reply.body


async def _pool(fake: FakeCognito, **extra: Any) -> str:
    body = await _ok(fake, "CreateUserPool", {"PoolName": "p", **extra})
    pool_id: str = body["UserPool"]["Id"]
    return pool_id


def _attributes(user: dict[str, Any], key: str = "Attributes") -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user[key]}


async def test_email_username_pool_generates_a_uuid_username(fake: FakeCognito) -> None:
    pool_id = await _pool(fake, UsernameAttributes=["email"])
    created = await _ok(
        fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "ann@example.com"}
    )
    user = created["User"]
    assert uuid.UUID(user["Username"])  # a UUID, not the address
    assert _attributes(user)["email"] == "ann@example.com"
    # The address still finds the user, as Cognito's admin operations allow.
    got = await _ok(fake, "AdminGetUser", {"UserPoolId": pool_id, "Username": "ann@example.com"})
    assert got["Username"] == user["Username"]


@pytest.mark.parametrize(
    ("attributes", "accepted"),
    [
        (["email"], "ann@example.com"),
        (["phone_number"], "+4915112345678"),
        (["email", "phone_number"], "+4915112345678"),
    ],
)
async def test_username_must_be_an_allowed_sign_in_attribute(
    fake: FakeCognito, attributes: list[str], accepted: str
) -> None:
    pool_id = await _pool(fake, UsernameAttributes=attributes)
    refused = await raw_call(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "ann"})
    assert (refused.code, refused.message) == (
        "InvalidParameterException",
        "Username should be either an email or a phone number.",
    )
    assert fake.backend.user_count(pool_id) == 0
    user = (await _ok(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": accepted}))[
        "User"
    ]
    kind = "email" if "@" in accepted else "phone_number"
    assert _attributes(user)[kind] == accepted


async def test_admin_create_user_checks_the_username_length(fake: FakeCognito) -> None:
    pool_id = await _pool(fake)
    limit = _validate.MAX_USERNAME_LENGTH
    refused = await raw_call(
        fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "u" * (limit + 1)}
    )
    assert refused.code == "InvalidParameterException"
    assert f"less than or equal to {limit}" in refused.message
    await _ok(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "u" * limit})


async def test_update_cannot_give_a_second_user_an_existing_email(fake: FakeCognito) -> None:
    pool_id = await _pool(fake, UsernameAttributes=["email"])
    for address in ("ann@example.com", "bob@example.com"):
        await _ok(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": address})
    reply = await raw_call(
        fake,
        "AdminUpdateUserAttributes",
        {
            "UserPoolId": pool_id,
            "Username": "bob@example.com",
            "UserAttributes": [{"Name": "email", "Value": "ann@example.com"}],
        },
    )
    assert reply.code == "AliasExistsException"
    bob = await _ok(fake, "AdminGetUser", {"UserPoolId": pool_id, "Username": "bob@example.com"})
    assert _attributes(bob, "UserAttributes")["email"] == "bob@example.com"
    again = await raw_call(
        fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "ann@example.com"}
    )
    assert again.code == "UsernameExistsException"


async def test_every_bad_attribute_is_named_on_its_own_line(fake: FakeCognito) -> None:
    pool_id = await _pool(
        fake, Schema=[{"Name": "born", "AttributeDataType": "String", "Mutable": False}]
    )
    await _ok(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "ann"})
    reply = await raw_call(
        fake,
        "AdminUpdateUserAttributes",
        {
            "UserPoolId": pool_id,
            "Username": "ann",
            "UserAttributes": [
                {"Name": "custom:nope", "Value": "x"},
                {"Name": "given_name", "Value": "Ann"},
                {"Name": "custom:born", "Value": "1990"},
                {"Name": "tier", "Value": "gold"},
            ],
        },
    )
    assert reply.code == "InvalidParameterException"
    assert reply.message == (
        "Invalid user attributes: "
        "user.custom:nope: Attribute does not exist in the schema.\n"
        "user.custom:born: Attribute cannot be updated.\n"
        "user.tier: Attribute does not exist in the schema.\n"
    )
    ann = await _ok(fake, "AdminGetUser", {"UserPoolId": pool_id, "Username": "ann"})
    assert "given_name" not in _attributes(ann, "UserAttributes")  # nothing applied


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            [{"Name": "x", "AttributeDataType": "Banana"}],
            "Validation error detected: Value 'Banana' failed to satisfy constraint: "
            "Member must satisfy enum value set: [Boolean, Number, String, DateTime]",
        ),
        (
            [{"Name": "x", "AttributeDataType": "String", "Required": True}],
            "Required custom attributes are not supported currently.",
        ),
        (
            [{"Name": "email", "AttributeDataType": "Number"}],
            "You can not change AttributeDataType or set developerOnlyAttribute for standard "
            "schema attribute email",
        ),
        (
            [{"Name": "email", "AttributeDataType": "String", "DeveloperOnlyAttribute": True}],
            "You can not change AttributeDataType or set developerOnlyAttribute for standard "
            "schema attribute email",
        ),
        (
            [{"Name": "x" * 21, "AttributeDataType": "String"}],
            f"1 validation error detected: Value '{'x' * 21}' at 'schema.member.name' failed to "
            "satisfy constraint: Member must have length less than or equal to 20",
        ),
        (
            [
                {
                    "Name": "n",
                    "AttributeDataType": "String",
                    "StringAttributeConstraints": {"MinLength": "3", "MaxLength": "2"},
                }
            ],
            "user.n: Max length cannot be less than min length.",
        ),
    ],
)
async def test_create_user_pool_checks_its_schema(
    fake: FakeCognito, schema: list[dict[str, Any]], message: str
) -> None:
    reply = await raw_call(fake, "CreateUserPool", {"PoolName": "p", "Schema": schema})
    assert (reply.code, reply.message) == ("InvalidParameterException", message)
    assert fake.backend.pools == {}


async def test_create_user_pool_returns_its_schema(fake: FakeCognito) -> None:
    body = await _ok(
        fake,
        "CreateUserPool",
        {
            "PoolName": "p",
            "Schema": [
                {"Name": "tier", "AttributeDataType": "String", "Mutable": False},
                {
                    "Name": "score",
                    "AttributeDataType": "Number",
                    "NumberAttributeConstraints": {"MinValue": "0", "MaxValue": "100"},
                },
                {"Name": "email", "AttributeDataType": "String", "Required": True},
            ],
        },
    )
    schema = {a["Name"]: a for a in body["UserPool"]["SchemaAttributes"]}
    assert set(schema) == set(_validate.STANDARD_ATTRIBUTES) | {"custom:tier", "custom:score"}
    assert schema["custom:tier"]["Mutable"] is False
    assert schema["custom:score"]["NumberAttributeConstraints"] == {
        "MinValue": "0",
        "MaxValue": "100",
    }
    assert schema["email"]["Required"] is True
    assert schema["sub"]["Mutable"] is False
    pool_id = body["UserPool"]["Id"]
    missing = await raw_call(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "a"})
    assert missing.code == "InvalidParameterException"
    assert "email: The attribute is required" in missing.message


async def test_list_users_refuses_a_custom_attribute_filter(fake: FakeCognito) -> None:
    pool_id = await _pool(fake, Schema=[{"Name": "tier", "AttributeDataType": "String"}])
    reply = await raw_call(
        fake, "ListUsers", {"UserPoolId": pool_id, "Filter": 'custom:tier = "gold"'}
    )
    assert (reply.code, reply.message) == (
        "InvalidParameterException",
        "Custom attributes are not searchable",
    )
    ok = await _ok(fake, "ListUsers", {"UserPoolId": pool_id, "Filter": 'email ^= "a"'})
    assert ok["Users"] == []


async def test_create_user_pool_client_honours_generate_secret(fake: FakeCognito) -> None:
    pool_id = await _pool(fake)
    plain = await _ok(fake, "CreateUserPoolClient", {"UserPoolId": pool_id, "ClientName": "a"})
    assert "ClientSecret" not in plain["UserPoolClient"]
    secret_client = (
        await _ok(
            fake,
            "CreateUserPoolClient",
            {"UserPoolId": pool_id, "ClientName": "b", "GenerateSecret": True},
        )
    )["UserPoolClient"]
    secret, client_id = secret_client["ClientSecret"], secret_client["ClientId"]
    assert len(secret) >= 32
    await _ok(fake, "AdminCreateUser", {"UserPoolId": pool_id, "Username": "ann"})
    await _ok(
        fake,
        "AdminSetUserPassword",
        {"UserPoolId": pool_id, "Username": "ann", "Password": "Pw-12345!", "Permanent": True},
    )
    auth = {"USERNAME": "ann", "PASSWORD": "Pw-12345!"}
    body = {"UserPoolId": pool_id, "ClientId": client_id, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH"}
    without = await raw_call(fake, "AdminInitiateAuth", {**body, "AuthParameters": auth})
    assert without.code == "NotAuthorizedException"
    assert "SECRET_HASH" in without.message
    wrong = await raw_call(
        fake, "AdminInitiateAuth", {**body, "AuthParameters": {**auth, "SECRET_HASH": "x"}}
    )
    assert wrong.code == "NotAuthorizedException"
    digest = hmac.new(secret.encode(), b"ann" + client_id.encode(), hashlib.sha256).digest()
    right = {**auth, "SECRET_HASH": base64.b64encode(digest).decode()}
    signed_in = await _ok(fake, "AdminInitiateAuth", {**body, "AuthParameters": right})
    assert signed_in["AuthenticationResult"]["AccessToken"]


async def test_moto_reset_endpoint_forgets_everything(fake: FakeCognito) -> None:
    pool = fake.create_pool()
    fake.create_user(pool.id, "ann")
    await _ok(fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "ann"})
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.endpoint_url + "/moto-api/reset") as response,
    ):
        assert response.status == 200
    assert fake.stats().requests == {}
    gone = await raw_call(fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "ann"})
    assert gone.code == "ResourceNotFoundException"
