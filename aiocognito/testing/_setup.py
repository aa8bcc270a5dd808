"""The setup operations: enough of Cognito for a boto3 script or moto's suite to prepare a pool.

CreateUserPool, DescribeUserPool, DeleteUserPool, CreateUserPoolClient, AdminCreateUser,
AdminSetUserPassword, AdminInitiateAuth, InitiateAuth and ListUsers, over the state in
:mod:`._backend` and the rules in :mod:`._rules`. Like the attribute operations, each method
returns Cognito's JSON answer or raises :class:`~._rules.ServiceError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ._backend import Backend, _Pool, _User, required
from ._rules import (
    ATTRIBUTE_DATA_TYPES,
    MAX_CUSTOM_ATTRIBUTES,
    MAX_CUSTOM_NAME_LENGTH,
    MAX_USERNAME_LENGTH,
    MAX_VALUE_LENGTH,
    SEARCHABLE_ATTRIBUTES,
    STANDARD_SCHEMA,
    CustomAttribute,
    ServiceError,
    invalid,
    invalid_attributes,
    too_long,
)

__all__ = ["Setup"]

# Loose on purpose: Cognito's own checks are unpublished; these tell an address from a name.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_RE = re.compile(r"\+[0-9]{4,15}")
_FILTER_RE = re.compile(r'\s*([\w:]+)\s*(=|\^=)\s*"(.*)"\s*')


#: CreateUserPool members the fake acts on; the rest are kept as given.
_POOL_KEYS = frozenset(
    {
        "PoolName",
        "Schema",
        "AutoVerifiedAttributes",
        "UserAttributeUpdateSettings",
        "UsernameAttributes",
        "AliasAttributes",
    }
)


def _looks_like(attribute: str, value: str) -> bool:
    pattern = _EMAIL_RE if attribute == "email" else _PHONE_RE
    return pattern.fullmatch(value) is not None


class Setup:
    """The setup operations over one :class:`~._backend.Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def operations(self) -> dict[str, Any]:
        """Operation name to handler, for the server's table."""
        return {
            "CreateUserPool": self.create_user_pool,
            "DescribeUserPool": self.describe_user_pool,
            "DeleteUserPool": self.delete_user_pool,
            "CreateUserPoolClient": self.create_user_pool_client,
            "AdminCreateUser": self.admin_create_user,
            "AdminSetUserPassword": self.admin_set_user_password,
            "AdminInitiateAuth": self.admin_initiate_auth,
            "InitiateAuth": self.initiate_auth,
            "ListUsers": self.list_users,
        }

    # ----------------------------------------------------------------------------------------
    # Pools and clients

    def create_user_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateUserPool: the Schema is checked as Cognito checks it, and returned in full."""
        name = required(body, "PoolName")
        custom, overrides = _schema(body.get("Schema") or ())
        settings = body.get("UserAttributeUpdateSettings") or {}
        info = self.backend.create_pool(
            name,
            custom_attributes=custom,
            auto_verified_attributes=body.get("AutoVerifiedAttributes") or (),
            require_verification_before_update=settings.get(
                "AttributesRequireVerificationBeforeUpdate"
            )
            or (),
            username_attributes=body.get("UsernameAttributes") or (),
            alias_attributes=body.get("AliasAttributes") or (),
        )
        pool = self.backend.pools[info.id]
        pool.standard_overrides = overrides
        # The rest of the pool's configuration (LambdaConfig, Policies, messages, ...) is kept
        # and shown back, as Cognito does, though the fake does not act on it.
        pool.settings = {k: v for k, v in body.items() if k not in _POOL_KEYS}
        pool.clients.clear()  # CreateUserPool makes no client; CreateUserPoolClient does
        return {"UserPool": self._describe_pool(pool)}

    def describe_user_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeUserPool."""
        return {"UserPool": self._describe_pool(self.backend.find_pool(body.get("UserPoolId")))}

    def delete_user_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """DeleteUserPool: the pool, its clients and its users go."""
        pool = self.backend.find_pool(body.get("UserPoolId"))
        del self.backend.pools[pool.id]
        return {}

    def create_user_pool_client(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateUserPoolClient; ``GenerateSecret`` gives the client a secret."""
        pool = self.backend.find_pool(body.get("UserPoolId"))
        client_id = self.backend.hex_id(26)
        client: dict[str, Any] = {
            # Settings the fake does not act on (CallbackURLs, token validity, ...) are shown back.
            **{k: v for k, v in body.items() if k not in ("UserPoolId", "GenerateSecret")},
            "ClientName": required(body, "ClientName"),
            "ExplicitAuthFlows": list(body.get("ExplicitAuthFlows") or ()),
        }
        if body.get("GenerateSecret"):
            client["ClientSecret"] = base64.b32encode(secrets.token_bytes(32)).decode().lower()
        pool.clients[client_id] = client
        return {"UserPoolClient": {"UserPoolId": pool.id, "ClientId": client_id, **client}}

    # ----------------------------------------------------------------------------------------
    # Users

    def admin_create_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminCreateUser: the user starts in FORCE_CHANGE_PASSWORD.

        In a pool whose users sign in with email or phone (``UsernameAttributes``), the
        Username must be one of those; it is stored as that attribute and the user gets a
        generated UUID username.
        """
        backend = self.backend
        pool = backend.find_pool(body.get("UserPoolId"))
        username = required(body, "Username")
        if len(username) > MAX_USERNAME_LENGTH:
            raise too_long("username", MAX_USERNAME_LENGTH)
        attrs = {a["Name"]: a.get("Value", "") for a in body.get("UserAttributes") or ()}
        if pool.username_attributes:
            kind = next(
                (a for a in sorted(pool.username_attributes) if _looks_like(a, username)), None
            )
            if kind is None:
                raise invalid("Username should be either an email or a phone number.")
            attrs[kind] = username
            if backend.find_user_or_none(pool, username) is not None:
                raise ServiceError(
                    "UsernameExistsException", "An account with the given email already exists."
                )
            username = str(uuid.UUID(int=backend.random_bits(128), version=4))
        unknown = {
            n: "Attribute does not exist in the schema." for n in attrs if not backend.spec(pool, n)
        }
        if unknown:
            raise invalid_attributes(unknown)
        missing = [
            name
            for name, over in pool.standard_overrides.items()
            if over.get("Required") and not attrs.get(name)
        ]
        if missing:
            raise invalid(
                "Attributes did not conform to the schema: "
                + ", ".join(f"{name}: The attribute is required" for name in missing)
            )
        backend.check_alias_free(pool, None, attrs)
        backend.create_user(
            pool.id,
            username,
            attrs,
            status="FORCE_CHANGE_PASSWORD",
            password=body.get("TemporaryPassword") or secrets.token_urlsafe(12),
        )
        return {"User": backend.describe(pool.users[username], attributes_key="Attributes")}

    def admin_set_user_password(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminSetUserPassword; Permanent=true confirms the user."""
        _pool, user = self.backend.admin_user(body)
        user.password = required(body, "Password")
        if body.get("Permanent"):
            user.status = "CONFIRMED"
        return {}

    def list_users(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """ListUsers with Limit, PaginationToken and a ``name = "value"`` or ``^=`` Filter."""
        pool = self.backend.find_pool(body.get("UserPoolId"))
        users: Iterable[_User] = pool.users.values()
        flt = body.get("Filter")
        if flt:
            users = _filter_users(users, flt)
        ordered = list(users)
        start = int(body.get("PaginationToken") or 0)
        limit = int(body.get("Limit") or 60)
        page = ordered[start : start + limit]
        result: dict[str, Any] = {
            "Users": [self.backend.describe(u, attributes_key="Attributes") for u in page]
        }
        if start + limit < len(ordered):
            result["PaginationToken"] = str(start + limit)
        return result

    # ----------------------------------------------------------------------------------------
    # Sign-in

    def admin_initiate_auth(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminInitiateAuth with ADMIN_USER_PASSWORD_AUTH or ADMIN_NO_SRP_AUTH."""
        pool = self.backend.find_pool(body.get("UserPoolId"))
        return self._password_auth(pool, body, ("ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"))

    def initiate_auth(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """InitiateAuth with USER_PASSWORD_AUTH."""
        client_id = required(body, "ClientId")
        pool = next((p for p in self.backend.pools.values() if client_id in p.clients), None)
        if pool is None:
            raise ServiceError(
                "ResourceNotFoundException", f"User pool client {client_id} does not exist."
            )
        return self._password_auth(pool, body, ("USER_PASSWORD_AUTH",))

    def _password_auth(
        self, pool: _Pool, body: Mapping[str, Any], flows: tuple[str, ...]
    ) -> dict[str, Any]:
        flow = body.get("AuthFlow")
        if flow not in flows:
            raise invalid(f"Unsupported auth flow {flow!r}; the fake supports {', '.join(flows)}.")
        params = body.get("AuthParameters") or {}
        client_id = body.get("ClientId")
        client = pool.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise ServiceError(
                "ResourceNotFoundException", f"User pool client {client_id} does not exist."
            )
        user = self.backend.find_user_or_none(pool, params.get("USERNAME"))
        if user is None:
            raise ServiceError("NotAuthorizedException", "Incorrect username or password.")
        secret = client.get("ClientSecret")
        if secret is not None:
            _check_secret_hash(secret, str(client_id), params)
        if user.password is None or params.get("PASSWORD") != user.password:
            raise ServiceError("NotAuthorizedException", "Incorrect username or password.")
        if user.status == "FORCE_CHANGE_PASSWORD":
            return {
                "ChallengeName": "NEW_PASSWORD_REQUIRED",
                "Session": secrets.token_urlsafe(24),
                "ChallengeParameters": {"USER_ID_FOR_SRP": user.username},
            }
        token = self.backend.issue_token(pool.id, user.username, client_id=client_id)
        return {
            "ChallengeParameters": {},
            "AuthenticationResult": {
                "AccessToken": token,
                "ExpiresIn": 3600,
                "TokenType": "Bearer",
                "IdToken": token,
                "RefreshToken": secrets.token_urlsafe(48),
            },
        }

    def _describe_pool(self, pool: _Pool) -> dict[str, Any]:
        standard = [
            {"Name": name, **entry, **pool.standard_overrides.get(name, {})}
            for name, entry in STANDARD_SCHEMA.items()
        ]
        described: dict[str, Any] = {
            **pool.settings,
            "Id": pool.id,
            "Name": pool.name,
            "Arn": self.backend.arn(pool.id),
            "CreationDate": pool.created,
            "LastModifiedDate": pool.created,
            "SchemaAttributes": standard + [c.schema() for c in pool.custom.values()],
            "AutoVerifiedAttributes": sorted(pool.auto_verified),
            "EstimatedNumberOfUsers": len(pool.users),
        }
        if pool.username_attributes:
            described["UsernameAttributes"] = sorted(pool.username_attributes)
        if pool.alias_attributes:
            described["AliasAttributes"] = sorted(pool.alias_attributes)
        if pool.verify_before_update:
            described["UserAttributeUpdateSettings"] = {
                "AttributesRequireVerificationBeforeUpdate": sorted(pool.verify_before_update)
            }
        return described


def _schema(
    items: Iterable[Mapping[str, Any]],
) -> tuple[list[CustomAttribute], dict[str, dict[str, bool]]]:
    """Split a CreateUserPool Schema into custom attributes and standard-attribute overrides."""
    custom: list[CustomAttribute] = []
    overrides: dict[str, dict[str, bool]] = {}
    for item in items:
        name = item.get("Name") or ""
        data_type = item.get("AttributeDataType")
        if data_type is not None and data_type not in ATTRIBUTE_DATA_TYPES:
            raise invalid(
                f"Validation error detected: Value '{data_type}' failed to satisfy constraint: "
                "Member must satisfy enum value set: [Boolean, Number, String, DateTime]"
            )
        strings, numbers = _constraints(name, item)
        standard = STANDARD_SCHEMA.get(name)
        if standard is not None:
            # A standard attribute keeps its type; only Required and Mutable may be chosen.
            if (data_type is not None and data_type != standard["AttributeDataType"]) or item.get(
                "DeveloperOnlyAttribute"
            ):
                raise invalid(
                    "You can not change AttributeDataType or set developerOnlyAttribute for "
                    f"standard schema attribute {name}"
                )
            over = {k: bool(item[k]) for k in ("Required", "Mutable") if k in item}
            if over:
                overrides[name] = over
            continue
        if not 1 <= len(name) <= MAX_CUSTOM_NAME_LENGTH:
            raise invalid(
                f"1 validation error detected: Value '{name}' at 'schema.member.name' failed to "
                f"satisfy constraint: Member must have length less than or equal to "
                f"{MAX_CUSTOM_NAME_LENGTH}"
            )
        if data_type is None:
            raise invalid(
                "Invalid AttributeDataType input, consider using the provided "
                "AttributeDataType enum."
            )
        if item.get("Required"):
            raise invalid("Required custom attributes are not supported currently.")
        custom.append(
            CustomAttribute(
                name=name,
                type=data_type,
                mutable=item.get("Mutable", True),
                developer_only=item.get("DeveloperOnlyAttribute", False),
                min_length=strings.get("MinLength"),
                max_length=strings.get("MaxLength"),
                min_value=numbers.get("MinValue"),
                max_value=numbers.get("MaxValue"),
            )
        )
    if len(custom) > MAX_CUSTOM_ATTRIBUTES:
        raise ServiceError(
            "LimitExceededException",
            f"A user pool can have at most {MAX_CUSTOM_ATTRIBUTES} custom attributes.",
        )
    return custom, overrides


def _check_secret_hash(secret: str, client_id: str, params: Mapping[str, Any]) -> None:
    """A client with a secret needs SECRET_HASH = Base64(HMAC-SHA256(secret, user + client))."""
    given = params.get("SECRET_HASH")
    if not isinstance(given, str):
        raise ServiceError(
            "NotAuthorizedException",
            f"Client {client_id} is configured with secret but SECRET_HASH was not received",
        )
    message = (str(params.get("USERNAME")) + client_id).encode()
    expected = base64.b64encode(
        hmac.new(secret.encode(), message, hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(given, expected):
        raise ServiceError(
            "NotAuthorizedException", f"Unable to verify secret hash for client {client_id}"
        )


def _constraints(name: str, item: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, float]]:
    """Parse and check a schema entry's string and number constraints."""
    strings: dict[str, int] = {}
    for key, value in (item.get("StringAttributeConstraints") or {}).items():
        try:
            strings[key] = int(str(value))
        except ValueError:
            raise invalid(
                f"Invalid StringAttributeConstraints for schema attribute {name}"
            ) from None
        if strings[key] > MAX_VALUE_LENGTH:
            raise invalid(
                f"user.{name}: String attributes cannot have a length of more than "
                f"{MAX_VALUE_LENGTH}"
            )
    if strings.get("MaxLength", MAX_VALUE_LENGTH) < strings.get("MinLength", 0):
        raise invalid(f"user.{name}: Max length cannot be less than min length.")
    numbers: dict[str, float] = {}
    for key, value in (item.get("NumberAttributeConstraints") or {}).items():
        try:
            numbers[key] = float(str(value))
        except ValueError:
            raise invalid(
                f"Invalid NumberAttributeConstraints for schema attribute {name}"
            ) from None
    if "MinValue" in numbers and numbers.get("MaxValue", math.inf) < numbers["MinValue"]:
        raise invalid(f"user.{name}: Max value cannot be less than min value.")
    return strings, numbers


def _filter_users(users: Iterable[_User], expression: str) -> list[_User]:
    match = _FILTER_RE.fullmatch(expression)
    if match is None:
        raise invalid("Error while parsing filter")
    name, op, value = match.groups()
    if name.startswith(("custom:", "dev:custom:")):
        raise invalid("Custom attributes are not searchable")
    if name not in SEARCHABLE_ATTRIBUTES:
        raise invalid(f"Invalid search attribute: {name}")

    def get(user: _User) -> str:
        if name == "username":
            return user.username
        if name == "cognito:user_status":
            return user.status
        if name == "status":
            return "Enabled" if user.enabled else "Disabled"
        return user.attributes.get(name, "")

    if op == "=":
        return [u for u in users if get(u) == value]
    return [u for u in users if get(u).startswith(value)]
