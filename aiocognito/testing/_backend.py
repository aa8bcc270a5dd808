"""The fake's state and Cognito's attribute semantics, with no I/O.

Every public method either returns the JSON-ready response dict Cognito would send or raises
:class:`ServiceError` with Cognito's error code. A request is checked in full before anything
changes, so a request with one bad attribute changes nothing.

The rules follow Cognito's documented behaviour (see the README's "Testing" section for what is
stricter than moto): custom attributes need their ``custom:`` prefix; ``sub`` and immutable custom
attributes cannot be updated; a blank value deletes; a changed email or phone number is marked
unverified and a code is sent, or, when the pool requires verification before update, the old
value stays until VerifyUserAttribute applies the pending one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from attrs import define, field, frozen

from .._validate import MAX_NAME_LENGTH, MAX_VALUE_LENGTH, STANDARD_ATTRIBUTES

__all__ = [
    "AppliedUpdate",
    "Backend",
    "CustomAttribute",
    "PoolInfo",
    "SentCode",
    "ServiceError",
]

VERIFIABLE = ("email", "phone_number")
_CODE_TTL = 24 * 3600.0
_SCOPE = "aws.cognito.signin.user.admin"


class ServiceError(Exception):
    """A Cognito error answer: the code, the message and the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _invalid(message: str) -> ServiceError:
    return ServiceError("InvalidParameterException", message)


def _null(member: str) -> ServiceError:
    return _invalid(
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        "Member must not be null"
    )


def _too_long(member: str, limit: int) -> ServiceError:
    return _invalid(
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {limit}"
    )


@frozen(kw_only=True)
class CustomAttribute:
    """A custom attribute in a pool's schema.

    Attributes:
        name: The schema name without prefix (1-20 characters); written as ``custom:<name>``.
        type: ``String``, ``Number``, ``DateTime`` or ``Boolean``.
        mutable: Whether it can change after the user is created.
        min_length: For strings, the shortest value allowed.
        max_length: For strings, the longest value allowed (Cognito's default is 2048).
        min_value: For numbers, the smallest value allowed.
        max_value: For numbers, the largest value allowed.
        developer_only: Written ``dev:custom:<name>``; only admin (IAM) calls may write it.
    """

    name: str
    type: Literal["String", "Number", "DateTime", "Boolean"] = "String"
    mutable: bool = True
    min_length: int | None = None
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    developer_only: bool = False

    @property
    def full_name(self) -> str:
        """The name as it appears in requests: ``custom:x`` or ``dev:custom:x``."""
        return ("dev:custom:" if self.developer_only else "custom:") + self.name

    def check(self, value: str) -> str | None:
        """Return why ``value`` breaks this attribute's constraints, or None."""
        if self.type == "Number":
            try:
                number = float(value)
            except ValueError:
                return "Attribute value must be a number."
            if not math.isfinite(number):
                return "Attribute value must be a number."
            if self.min_value is not None and number < self.min_value:
                return f"Attribute value must be at least {self.min_value:g}."
            if self.max_value is not None and number > self.max_value:
                return f"Attribute value must be at most {self.max_value:g}."
        elif self.type == "Boolean":
            if value not in ("true", "false"):
                return "Attribute value must be 'true' or 'false'."
        elif self.type == "DateTime":
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                return "Attribute value must be a date-time."
        else:
            if self.min_length is not None and len(value) < self.min_length:
                return f"Attribute value must be at least {self.min_length} characters."
            if self.max_length is not None and len(value) > self.max_length:
                return f"Attribute value must be at most {self.max_length} characters."
        return None


@frozen(kw_only=True)
class PoolInfo:
    """A fake user pool as the seeding API returns it."""

    id: str
    name: str
    client_id: str


@frozen(kw_only=True)
class AppliedUpdate:
    """One change applied to a user, in the order it was applied.

    Attributes:
        seq: A server-wide sequence number; later updates have larger numbers.
        operation: The operation that made the change.
        changes: Attribute name to new value; ``None`` means the attribute was deleted.
    """

    seq: int
    operation: str
    changes: Mapping[str, str | None]


@frozen(kw_only=True)
class SentCode:
    """A verification code the fake "sent"."""

    user_pool_id: str
    username: str
    attribute: str
    code: str
    destination: str
    delivery_medium: str


@define(slots=True)
class _Code:
    code: str
    expires: float
    attempts: int = 0


@define(slots=True)
class _User:
    username: str
    sub: str
    attributes: dict[str, str]
    created: float
    modified: float
    status: str = "CONFIRMED"
    enabled: bool = True
    password: str | None = None
    pending: dict[str, str] | None = None
    codes: dict[str, _Code] | None = None
    code_requests: list[float] | None = None
    log: list[AppliedUpdate] | None = None


@define(slots=True)
class _Pool:
    id: str
    name: str
    custom: dict[str, CustomAttribute]
    auto_verified: frozenset[str]
    verify_before_update: frozenset[str]
    username_attributes: frozenset[str]
    alias_attributes: frozenset[str]
    clients: dict[str, dict[str, Any]] = field(factory=dict)
    users: dict[str, _User] = field(factory=dict)
    by_sub: dict[str, str] = field(factory=dict)
    aliases: dict[tuple[str, str], str] = field(factory=dict)

    @property
    def alias_like(self) -> frozenset[str]:
        return self.username_attributes | self.alias_attributes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mask(attribute: str, destination: str) -> str:
    """Mask a destination the way Cognito does: ``a***@e***`` or ``+*******1234``."""
    if attribute == "email" and "@" in destination:
        local, _, domain = destination.partition("@")
        return f"{local[:1]}***@{domain[:1]}***"
    return "+" + "*" * max(len(destination) - 5, 0) + destination[-4:]


class Backend:
    """Pools, users, tokens and codes, and the rules that change them.

    Args:
        region: The region in pool ids and token issuers.
        clock: Wall-clock seconds, for token and code expiry; injectable for tests.
        code_attempts: Wrong codes allowed before LimitExceededException.
        code_requests_per_hour: Codes a user may request per hour before LimitExceededException.
        seed: Seeds the generator of subs, codes and token ids, for reproducible runs.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
        code_attempts: int = 5,
        code_requests_per_hour: int = 5,
        seed: int | None = None,
    ) -> None:
        self.region = region
        self.clock = clock
        self.code_attempts = code_attempts
        self.code_requests_per_hour = code_requests_per_hour
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.pools: dict[str, _Pool] = {}
        self.tokens: dict[str, tuple[str, str, float]] = {}  # jti -> (pool, username, exp)
        self.revoked: set[str] = set()
        self.sent_codes: list[SentCode] = []
        self._seq = 0

    # ----------------------------------------------------------------------------------------
    # Seeding (no HTTP)

    def create_pool(
        self,
        name: str = "pool",
        *,
        custom_attributes: Iterable[CustomAttribute] = (),
        auto_verified_attributes: Iterable[str] = ("email",),
        require_verification_before_update: Iterable[str] = (),
        username_attributes: Iterable[str] = (),
        alias_attributes: Iterable[str] = (),
        pool_id: str | None = None,
    ) -> PoolInfo:
        """Create a pool with an app client; return its ids."""
        pid = pool_id or f"{self.region}_{self._hex(9)}"
        verify = frozenset(require_verification_before_update)
        if not verify <= set(VERIFIABLE):
            raise _invalid(
                "AttributesRequireVerificationBeforeUpdate may hold only email and phone_number."
            )
        custom = {c.full_name: c for c in custom_attributes}
        pool = _Pool(
            id=pid,
            name=name,
            custom=custom,
            auto_verified=frozenset(auto_verified_attributes),
            verify_before_update=verify,
            username_attributes=frozenset(username_attributes),
            alias_attributes=frozenset(alias_attributes),
        )
        client_id = self._hex(26)
        pool.clients[client_id] = {"ClientName": "default", "ExplicitAuthFlows": []}
        self.pools[pid] = pool
        return PoolInfo(id=pid, name=name, client_id=client_id)

    def create_user(
        self,
        pool_id: str,
        username: str,
        attributes: Mapping[str, str] | None = None,
        *,
        status: str = "CONFIRMED",
        password: str | None = None,
        enabled: bool = True,
    ) -> str:
        """Create a user with the given attributes (no checks beyond the schema); return its sub."""
        pool = self._pool(pool_id)
        if username in pool.users:
            raise ServiceError("UsernameExistsException", "User account already exists")
        sub = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        values = dict(attributes or {})
        for name in values:
            if self._spec(pool, name) is None:
                raise _invalid(f"user.{name}: Attribute does not exist in the schema.")
        values["sub"] = sub
        now = self.clock()
        user = _User(
            username=username,
            sub=sub,
            attributes=values,
            created=now,
            modified=now,
            status=status,
            password=password,
            enabled=enabled,
        )
        pool.users[username] = user
        pool.by_sub[sub] = username
        for attr in pool.alias_like & set(VERIFIABLE):
            if values.get(attr):
                pool.aliases[(attr, values[attr])] = username
        return sub

    def issue_token(
        self,
        pool_id: str,
        username: str,
        *,
        client_id: str | None = None,
        expires_in: float = 3600.0,
    ) -> str:
        """Mint an access token for a user, shaped like Cognito's (a JWT)."""
        pool = self._pool(pool_id)
        user = self._user(pool, username)
        jti = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        now = self.clock()
        exp = now + expires_in
        payload = {
            "sub": user.sub,
            "iss": f"https://cognito-idp.{self.region}.amazonaws.com/{pool.id}",
            "client_id": client_id or next(iter(pool.clients), ""),
            "token_use": "access",
            "scope": _SCOPE,
            "auth_time": int(now),
            "exp": math.ceil(exp),
            "iat": int(now),
            "jti": jti,
            "username": user.username,
        }
        header = {"kid": "fake", "alg": "RS256"}
        self.tokens[jti] = (pool.id, username, exp)
        return ".".join(
            (
                _b64(json.dumps(header, separators=(",", ":")).encode()),
                _b64(json.dumps(payload, separators=(",", ":")).encode()),
                _b64(self._rng.getrandbits(256).to_bytes(32, "big")),
            )
        )

    def revoke_token(self, token: str) -> None:
        """Revoke an access token; later calls with it get NotAuthorizedException."""
        jti = self._jti(token)
        if jti is not None:
            self.revoked.add(jti)

    # ----------------------------------------------------------------------------------------
    # Inspection

    def user_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """The user's stored attributes (pending values not applied)."""
        return dict(self._user(self._pool(pool_id), username).attributes)

    def pending_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """Values waiting for VerifyUserAttribute (verification before update)."""
        return dict(self._user(self._pool(pool_id), username).pending or {})

    def update_log(self, pool_id: str, username: str) -> list[AppliedUpdate]:
        """Every change applied to the user, in order."""
        return list(self._user(self._pool(pool_id), username).log or ())

    def user_count(self, pool_id: str) -> int:
        """How many users the pool holds."""
        return len(self._pool(pool_id).users)

    # ----------------------------------------------------------------------------------------
    # Identity

    def token_user(self, token: object) -> tuple[_Pool, _User]:
        """Resolve an access token to its pool and user, or raise NotAuthorizedException."""
        jti = self._jti(token)
        entry = self.tokens.get(jti) if jti is not None else None
        if entry is None:
            raise ServiceError("NotAuthorizedException", "Invalid Access Token")
        if jti in self.revoked:
            raise ServiceError("NotAuthorizedException", "Access Token has been revoked")
        pool_id, username, exp = entry
        if self.clock() >= exp:
            raise ServiceError("NotAuthorizedException", "Access Token has expired")
        pool = self.pools.get(pool_id)
        user = pool.users.get(username) if pool is not None else None
        if pool is None or user is None:
            raise ServiceError("NotAuthorizedException", "Invalid Access Token")
        if not user.enabled:
            raise ServiceError("NotAuthorizedException", "User is disabled.")
        return pool, user

    def token_user_key(self, token: object) -> str | None:
        """A cheap per-user key for a token (its subject), without validating it."""
        jti = self._jti(token)
        entry = self.tokens.get(jti) if jti is not None else None
        return None if entry is None else f"{entry[0]}/{entry[1]}"

    def admin_user(self, body: Mapping[str, Any]) -> tuple[_Pool, _User]:
        """Resolve UserPoolId + Username (a username, alias or sub) for the admin operations."""
        pool = self._pool(body.get("UserPoolId"))
        return pool, self._user(pool, body.get("Username"))

    # ----------------------------------------------------------------------------------------
    # The attribute operations

    def update_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """UpdateUserAttributes: token-authorised, may return CodeDeliveryDetailsList."""
        pool, user = self.token_user(_required(body, "AccessToken"))
        deliveries = self._update(pool, user, body, admin=False, operation="UpdateUserAttributes")
        return {"CodeDeliveryDetailsList": deliveries} if deliveries else {}

    def admin_update_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminUpdateUserAttributes: no response fields, even when a code is sent."""
        pool, user = self.admin_user(body)
        self._update(pool, user, body, admin=True, operation="AdminUpdateUserAttributes")
        return {}

    def delete_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """DeleteUserAttributes by token."""
        pool, user = self.token_user(_required(body, "AccessToken"))
        self._delete(pool, user, body, admin=False, operation="DeleteUserAttributes")
        return {}

    def admin_delete_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminDeleteUserAttributes."""
        pool, user = self.admin_user(body)
        self._delete(pool, user, body, admin=True, operation="AdminDeleteUserAttributes")
        return {}

    def get_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """GetUser by token."""
        _pool, user = self.token_user(_required(body, "AccessToken"))
        return {
            "Username": user.username,
            "UserAttributes": [{"Name": k, "Value": v} for k, v in user.attributes.items()],
        }

    def admin_get_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminGetUser, with status, enabled flag and dates."""
        _pool, user = self.admin_user(body)
        return self._describe(user, attributes_key="UserAttributes")

    def get_user_attribute_verification_code(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send (record) a new code for email or phone_number."""
        pool, user = self.token_user(_required(body, "AccessToken"))
        attr = _required(body, "AttributeName")
        if attr not in VERIFIABLE:
            raise _invalid(f"user.{attr}: Attribute cannot be verified.")
        destination = (user.pending or {}).get(attr) or user.attributes.get(attr)
        if not destination:
            raise _invalid(f"user.{attr}: Attribute does not have a value to verify.")
        now = self.clock()
        recent = [t for t in user.code_requests or () if now - t < 3600.0]
        if len(recent) >= self.code_requests_per_hour:
            user.code_requests = recent
            raise ServiceError(
                "LimitExceededException", "Attempt limit exceeded, please try after some time."
            )
        recent.append(now)
        user.code_requests = recent
        return {"CodeDeliveryDetails": self._send_code(pool, user, attr, destination)}

    def verify_user_attribute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check a code; apply the pending value (if any) and mark the attribute verified."""
        pool, user = self.token_user(_required(body, "AccessToken"))
        attr = _required(body, "AttributeName")
        code = _required(body, "Code")
        record = (user.codes or {}).get(attr)
        if record is None:
            raise ServiceError(
                "CodeMismatchException", "Invalid verification code provided, please try again."
            )
        if record.attempts >= self.code_attempts:
            raise ServiceError(
                "LimitExceededException", "Attempt limit exceeded, please try after some time."
            )
        if self.clock() >= record.expires:
            raise ServiceError(
                "ExpiredCodeException", "Invalid code provided, please request a code again."
            )
        if not secrets.compare_digest(str(code), record.code):
            record.attempts += 1
            raise ServiceError(
                "CodeMismatchException", "Invalid verification code provided, please try again."
            )
        assert user.codes is not None
        del user.codes[attr]
        changes: dict[str, str | None] = {}
        pending = (user.pending or {}).pop(attr, None)
        if pending is not None:
            self._check_alias_free(pool, user.username, {attr: pending})
            changes[attr] = pending
        changes[f"{attr}_verified"] = "true"
        self._apply(pool, user, changes, "VerifyUserAttribute")
        return {}

    # ----------------------------------------------------------------------------------------
    # The setup operations (enough for a boto3 script to prepare a pool over HTTP)

    def create_user_pool(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateUserPool with Schema, AutoVerifiedAttributes, UsernameAttributes, ..."""
        custom = []
        for item in body.get("Schema") or ():
            name = item.get("Name", "")
            if name in STANDARD_ATTRIBUTES:
                continue
            constraints = item.get("StringAttributeConstraints") or {}
            numbers = item.get("NumberAttributeConstraints") or {}
            custom.append(
                CustomAttribute(
                    name=name,
                    type=item.get("AttributeDataType", "String"),
                    mutable=item.get("Mutable", True),
                    developer_only=item.get("DeveloperOnlyAttribute", False),
                    min_length=_opt_int(constraints.get("MinLength")),
                    max_length=_opt_int(constraints.get("MaxLength")),
                    min_value=_opt_float(numbers.get("MinValue")),
                    max_value=_opt_float(numbers.get("MaxValue")),
                )
            )
        settings = body.get("UserAttributeUpdateSettings") or {}
        info = self.create_pool(
            _required(body, "PoolName"),
            custom_attributes=custom,
            auto_verified_attributes=body.get("AutoVerifiedAttributes") or (),
            require_verification_before_update=settings.get(
                "AttributesRequireVerificationBeforeUpdate"
            )
            or (),
            username_attributes=body.get("UsernameAttributes") or (),
            alias_attributes=body.get("AliasAttributes") or (),
        )
        pool = self.pools[info.id]
        pool.clients.clear()  # CreateUserPool makes no client; CreateUserPoolClient does
        return {"UserPool": {"Id": info.id, "Name": info.name, "Arn": self._arn(info.id)}}

    def create_user_pool_client(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateUserPoolClient (no secret)."""
        pool = self._pool(body.get("UserPoolId"))
        client_id = self._hex(26)
        pool.clients[client_id] = {
            "ClientName": _required(body, "ClientName"),
            "ExplicitAuthFlows": list(body.get("ExplicitAuthFlows") or ()),
        }
        return {
            "UserPoolClient": {
                "UserPoolId": pool.id,
                "ClientId": client_id,
                **pool.clients[client_id],
            }
        }

    def admin_create_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminCreateUser: the user starts in FORCE_CHANGE_PASSWORD."""
        pool = self._pool(body.get("UserPoolId"))
        username = _required(body, "Username")
        attrs = {a["Name"]: a.get("Value", "") for a in body.get("UserAttributes") or ()}
        for name in attrs:
            if self._spec(pool, name) is None:
                raise _invalid(f"user.{name}: Attribute does not exist in the schema.")
        self._check_alias_free(pool, None, attrs)
        self.create_user(
            pool.id,
            username,
            attrs,
            status="FORCE_CHANGE_PASSWORD",
            password=body.get("TemporaryPassword") or secrets.token_urlsafe(12),
        )
        return {"User": self._describe(pool.users[username], attributes_key="Attributes")}

    def admin_set_user_password(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminSetUserPassword; Permanent=true confirms the user."""
        _pool, user = self.admin_user(body)
        user.password = _required(body, "Password")
        if body.get("Permanent"):
            user.status = "CONFIRMED"
        return {}

    def admin_initiate_auth(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminInitiateAuth with ADMIN_USER_PASSWORD_AUTH or ADMIN_NO_SRP_AUTH."""
        pool = self._pool(body.get("UserPoolId"))
        return self._password_auth(pool, body, ("ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"))

    def initiate_auth(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """InitiateAuth with USER_PASSWORD_AUTH."""
        client_id = _required(body, "ClientId")
        pool = next((p for p in self.pools.values() if client_id in p.clients), None)
        if pool is None:
            raise ServiceError(
                "ResourceNotFoundException", f"User pool client {client_id} does not exist."
            )
        return self._password_auth(pool, body, ("USER_PASSWORD_AUTH",))

    def list_users(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """ListUsers with Limit, PaginationToken and a simple ``name = "value"`` Filter."""
        pool = self._pool(body.get("UserPoolId"))
        users: Iterable[_User] = pool.users.values()
        flt = body.get("Filter")
        if flt:
            users = _filter_users(users, flt)
        ordered = list(users)
        start = int(body.get("PaginationToken") or 0)
        limit = int(body.get("Limit") or 60)
        page = ordered[start : start + limit]
        result: dict[str, Any] = {
            "Users": [self._describe(u, attributes_key="Attributes") for u in page]
        }
        if start + limit < len(ordered):
            result["PaginationToken"] = str(start + limit)
        return result

    # ----------------------------------------------------------------------------------------
    # Internals

    def _hex(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))

    def _arn(self, pool_id: str) -> str:
        return f"arn:aws:cognito-idp:{self.region}:123456789012:userpool/{pool_id}"

    def _pool(self, pool_id: object) -> _Pool:
        if not isinstance(pool_id, str) or not pool_id:
            raise _null("userPoolId")
        pool = self.pools.get(pool_id)
        if pool is None:
            raise ServiceError("ResourceNotFoundException", f"User pool {pool_id} does not exist.")
        return pool

    def _user(self, pool: _Pool, username: object) -> _User:
        if not isinstance(username, str) or not username:
            raise _null("username")
        user = pool.users.get(username)
        if user is None:
            other = pool.by_sub.get(username)
            if other is None:
                for attr in VERIFIABLE:
                    other = pool.aliases.get((attr, username))
                    if other is not None:
                        break
            user = pool.users.get(other) if other is not None else None
        if user is None:
            raise ServiceError("UserNotFoundException", "User does not exist.")
        return user

    @staticmethod
    def _jti(token: object) -> str | None:
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        try:
            payload = json.loads(_unb64(token.split(".")[1]))
        except ValueError:
            return None
        jti = payload.get("jti") if isinstance(payload, dict) else None
        return jti if isinstance(jti, str) else None

    @staticmethod
    def _spec(pool: _Pool, name: str) -> tuple[bool, CustomAttribute | None] | None:
        """(mutable, custom spec) for a known attribute name, else None."""
        if name in STANDARD_ATTRIBUTES:
            return (name != "sub", None)
        spec = pool.custom.get(name)
        if spec is None:
            return None
        return (spec.mutable, spec)

    def _check_names(self, pool: _Pool, names: Iterable[str], *, admin: bool) -> None:
        for name in names:
            spec = self._spec(pool, name)
            if spec is None:
                raise _invalid(f"user.{name}: Attribute does not exist in the schema.")
            mutable, custom = spec
            if custom is not None and custom.developer_only and not admin:
                raise ServiceError(
                    "NotAuthorizedException", "A client attempted to write unauthorized attribute"
                )
            if not mutable:
                raise _invalid(f"user.{name}: Attribute cannot be updated.")

    def _update(
        self, pool: _Pool, user: _User, body: Mapping[str, Any], *, admin: bool, operation: str
    ) -> list[dict[str, str]]:
        raw = body.get("UserAttributes")
        if not isinstance(raw, list):
            raise _null("userAttributes")
        values: dict[str, str] = {}
        for index, item in enumerate(raw, 1):
            name = item.get("Name") if isinstance(item, dict) else None
            value = item.get("Value", "") if isinstance(item, dict) else None
            if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
                raise _too_long(f"userAttributes.{index}.member.name", MAX_NAME_LENGTH)
            if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
                raise _too_long(f"userAttributes.{index}.member.value", MAX_VALUE_LENGTH)
            values[name] = value
        self._check_names(pool, values, admin=admin)
        for name, value in values.items():
            custom = pool.custom.get(name)
            if custom is not None and value:
                problem = custom.check(value)
                if problem:
                    raise _invalid(f"user.{name}: {problem}")
        self._check_alias_free(pool, user.username, values)

        verified_now = {a for a in VERIFIABLE if admin and values.get(f"{a}_verified") == "true"}
        changes: dict[str, str | None] = {}
        pending: dict[str, str] = {}
        codes: list[str] = []
        for name, value in values.items():
            if name in VERIFIABLE and value and value != user.attributes.get(name):
                needs_code = name in pool.auto_verified and name not in verified_now
                if needs_code and name in pool.verify_before_update:
                    pending[name] = value
                    codes.append(name)
                    continue
                changes[name] = value
                if needs_code:
                    changes[f"{name}_verified"] = "false"
                    codes.append(name)
            elif name.endswith("_verified") and name.removesuffix("_verified") in VERIFIABLE:
                changes.setdefault(name, value or None)
            else:
                changes[name] = value or None
        # Everything is checked: apply.
        if pending:
            user.pending = {**(user.pending or {}), **pending}
        if changes:
            self._apply(pool, user, changes, operation)
        deliveries = []
        for name in codes:
            destination = pending.get(name) or user.attributes[name]
            deliveries.append(self._send_code(pool, user, name, destination))
        return deliveries

    def _delete(
        self, pool: _Pool, user: _User, body: Mapping[str, Any], *, admin: bool, operation: str
    ) -> None:
        names = body.get("UserAttributeNames")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _null("userAttributeNames")
        self._check_names(pool, names, admin=admin)
        self._apply(pool, user, dict.fromkeys(names), operation)

    @staticmethod
    def _check_alias_free(pool: _Pool, username: str | None, values: Mapping[str, str]) -> None:
        for attr in pool.alias_like & set(VERIFIABLE):
            value = values.get(attr)
            if value:
                owner = pool.aliases.get((attr, value))
                if owner is not None and owner != username:
                    raise ServiceError(
                        "AliasExistsException", f"An account with the given {attr} already exists."
                    )

    def _apply(
        self, pool: _Pool, user: _User, changes: Mapping[str, str | None], operation: str
    ) -> None:
        for name, value in changes.items():
            old = user.attributes.get(name)
            if name in VERIFIABLE and name in pool.alias_like:
                if old:
                    pool.aliases.pop((name, old), None)
                if value:
                    pool.aliases[(name, value)] = user.username
            if value is None or value == "":
                user.attributes.pop(name, None)
            else:
                user.attributes[name] = value
        user.modified = self.clock()
        self._seq += 1
        entry = AppliedUpdate(seq=self._seq, operation=operation, changes=dict(changes))
        if user.log is None:
            user.log = [entry]
        else:
            user.log.append(entry)

    def _send_code(self, pool: _Pool, user: _User, attr: str, destination: str) -> dict[str, str]:
        code = f"{self._rng.randrange(10**6):06d}"
        if user.codes is None:
            user.codes = {}
        user.codes[attr] = _Code(code=code, expires=self.clock() + _CODE_TTL)
        medium = "EMAIL" if attr == "email" else "SMS"
        self.sent_codes.append(
            SentCode(
                user_pool_id=pool.id,
                username=user.username,
                attribute=attr,
                code=code,
                destination=destination,
                delivery_medium=medium,
            )
        )
        return {
            "Destination": mask(attr, destination),
            "DeliveryMedium": medium,
            "AttributeName": attr,
        }

    def _password_auth(
        self, pool: _Pool, body: Mapping[str, Any], flows: tuple[str, ...]
    ) -> dict[str, Any]:
        flow = body.get("AuthFlow")
        if flow not in flows:
            raise _invalid(f"Unsupported auth flow {flow!r}; the fake supports {', '.join(flows)}.")
        params = body.get("AuthParameters") or {}
        client_id = body.get("ClientId")
        if client_id not in pool.clients:
            raise ServiceError(
                "ResourceNotFoundException", f"User pool client {client_id} does not exist."
            )
        try:
            user = self._user(pool, params.get("USERNAME"))
        except ServiceError:
            raise ServiceError(
                "NotAuthorizedException", "Incorrect username or password."
            ) from None
        if user.password is None or params.get("PASSWORD") != user.password:
            raise ServiceError("NotAuthorizedException", "Incorrect username or password.")
        if user.status == "FORCE_CHANGE_PASSWORD":
            return {
                "ChallengeName": "NEW_PASSWORD_REQUIRED",
                "Session": secrets.token_urlsafe(24),
                "ChallengeParameters": {"USER_ID_FOR_SRP": user.username},
            }
        token = self.issue_token(pool.id, user.username, client_id=client_id)
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

    @staticmethod
    def _describe(user: _User, *, attributes_key: str) -> dict[str, Any]:
        return {
            "Username": user.username,
            attributes_key: [{"Name": k, "Value": v} for k, v in user.attributes.items()],
            "UserCreateDate": user.created,
            "UserLastModifiedDate": user.modified,
            "Enabled": user.enabled,
            "UserStatus": user.status,
        }


def _required(body: Mapping[str, Any], key: str) -> Any:
    value = body.get(key)
    if value is None or value == "":
        raise _null(key[:1].lower() + key[1:])
    return value


def _opt_int(value: object) -> int | None:
    return None if value in (None, "") else int(str(value))


def _opt_float(value: object) -> float | None:
    return None if value in (None, "") else float(str(value))


def _filter_users(users: Iterable[_User], expression: str) -> list[_User]:
    name, _, rest = expression.partition(" ")
    op, _, quoted = rest.strip().partition(" ")
    value = quoted.strip().strip('"')
    if op not in ("=", "^="):
        raise _invalid(f"Invalid filter {expression!r}")

    def get(user: _User) -> str:
        if name == "username":
            return user.username
        if name in ("status", "cognito:user_status"):
            return user.status
        return user.attributes.get(name, "")

    if op == "=":
        return [u for u in users if get(u) == value]
    return [u for u in users if get(u).startswith(value)]
