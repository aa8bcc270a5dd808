"""The fake's users and their attributes: state, identity and the attribute operations, no I/O.

Every public operation method either returns the JSON-ready response dict Cognito would send or
raises :class:`ServiceError` with Cognito's error code. A request is checked in full before
anything changes, so a request with one bad attribute changes nothing.

The rules come from :mod:`._rules` (the fake's own statement of Cognito's documented limits and
names); the setup operations (CreateUserPool, AdminCreateUser, ...) are in :mod:`._setup`.
Custom attributes need their ``custom:`` prefix; ``sub`` and immutable custom attributes cannot
be updated; a blank value deletes; a changed email or phone number is marked unverified and a
code is sent, or, when the pool requires verification before update, the old value stays until
VerifyUserAttribute applies the pending one. Email and phone numbers used to sign in
(``UsernameAttributes``) or as aliases are unique in their pool.
"""

from __future__ import annotations

import base64
import json
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import define, field, frozen

from ._rules import (
    CODE_TTL,
    MAX_NAME_LENGTH,
    MAX_VALUE_LENGTH,
    SCOPE,
    STANDARD_ATTRIBUTES,
    STANDARD_SCHEMA,
    USERNAME_ATTRIBUTES,
    VERIFIABLE,
    CustomAttribute,
    ServiceError,
    invalid,
    invalid_attributes,
    null,
    too_long,
)

__all__ = [
    "AppliedUpdate",
    "Backend",
    "CustomAttribute",
    "PoolInfo",
    "SentCode",
    "ServiceError",
    "required",
]


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
    # Required/Mutable given for standard attributes in CreateUserPool's Schema.
    standard_overrides: dict[str, dict[str, bool]] = field(factory=dict)
    settings: dict[str, Any] = field(factory=dict)
    created: float = 0.0

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
        pid = pool_id or f"{self.region}_{self.hex_id(9)}"
        verify = frozenset(require_verification_before_update)
        if not verify <= set(VERIFIABLE):
            raise invalid(
                "AttributesRequireVerificationBeforeUpdate may hold only email and phone_number."
            )
        usernames = frozenset(username_attributes)
        if not usernames <= set(USERNAME_ATTRIBUTES):
            raise invalid("UsernameAttributes may hold only email and phone_number.")
        aliases = frozenset(alias_attributes)
        if usernames and aliases:
            raise invalid("Only one of AliasAttributes or UsernameAttributes can be set.")
        custom = {c.full_name: c for c in custom_attributes}
        pool = _Pool(
            id=pid,
            name=name,
            custom=custom,
            auto_verified=frozenset(auto_verified_attributes),
            verify_before_update=verify,
            username_attributes=usernames,
            alias_attributes=aliases,
            created=self.clock(),
        )
        client_id = self.hex_id(26)
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
        pool = self.find_pool(pool_id)
        if username in pool.users:
            raise ServiceError("UsernameExistsException", "User account already exists")
        sub = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        values = dict(attributes or {})
        unknown = {
            n: "Attribute does not exist in the schema." for n in values if not self.spec(pool, n)
        }
        if unknown:
            raise invalid_attributes(unknown)
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
        pool = self.find_pool(pool_id)
        user = self.find_user(pool, username)
        jti = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        now = self.clock()
        exp = now + expires_in
        payload = {
            "sub": user.sub,
            "iss": f"https://cognito-idp.{self.region}.amazonaws.com/{pool.id}",
            "client_id": client_id or next(iter(pool.clients), ""),
            "token_use": "access",
            "scope": SCOPE,
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

    def reset(self) -> None:
        """Forget every pool, user, token and sent code (moto's ``/moto-api/reset``)."""
        self.pools.clear()
        self.tokens.clear()
        self.revoked.clear()
        self.sent_codes.clear()

    def revoke_token(self, token: str) -> None:
        """Revoke an access token; later calls with it get NotAuthorizedException."""
        jti = self._jti(token)
        if jti is not None:
            self.revoked.add(jti)

    # ----------------------------------------------------------------------------------------
    # Inspection

    def user_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """The user's stored attributes (pending values not applied)."""
        return dict(self.find_user(self.find_pool(pool_id), username).attributes)

    def pending_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """Values waiting for VerifyUserAttribute (verification before update)."""
        return dict(self.find_user(self.find_pool(pool_id), username).pending or {})

    def update_log(self, pool_id: str, username: str) -> list[AppliedUpdate]:
        """Every change applied to the user, in order."""
        return list(self.find_user(self.find_pool(pool_id), username).log or ())

    def user_count(self, pool_id: str) -> int:
        """How many users the pool holds."""
        return len(self.find_pool(pool_id).users)

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
        pool = self.find_pool(body.get("UserPoolId"))
        return pool, self.find_user(pool, body.get("Username"))

    # ----------------------------------------------------------------------------------------
    # The attribute operations

    def update_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """UpdateUserAttributes: token-authorised, may return CodeDeliveryDetailsList."""
        pool, user = self.token_user(required(body, "AccessToken"))
        deliveries = self._update(pool, user, body, admin=False, operation="UpdateUserAttributes")
        return {"CodeDeliveryDetailsList": deliveries} if deliveries else {}

    def admin_update_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminUpdateUserAttributes: no response fields, even when a code is sent."""
        pool, user = self.admin_user(body)
        self._update(pool, user, body, admin=True, operation="AdminUpdateUserAttributes")
        return {}

    def delete_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """DeleteUserAttributes by token."""
        pool, user = self.token_user(required(body, "AccessToken"))
        self._delete(pool, user, body, admin=False, operation="DeleteUserAttributes")
        return {}

    def admin_delete_user_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminDeleteUserAttributes."""
        pool, user = self.admin_user(body)
        self._delete(pool, user, body, admin=True, operation="AdminDeleteUserAttributes")
        return {}

    def get_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """GetUser by token."""
        _pool, user = self.token_user(required(body, "AccessToken"))
        return {
            "Username": user.username,
            "UserAttributes": [{"Name": k, "Value": v} for k, v in user.attributes.items()],
        }

    def admin_get_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """AdminGetUser, with status, enabled flag and dates."""
        _pool, user = self.admin_user(body)
        return self.describe(user, attributes_key="UserAttributes")

    def get_user_attribute_verification_code(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send (record) a new code for email or phone_number."""
        pool, user = self.token_user(required(body, "AccessToken"))
        attr = required(body, "AttributeName")
        if attr not in VERIFIABLE:
            raise invalid(f"user.{attr}: Attribute cannot be verified.")
        destination = (user.pending or {}).get(attr) or user.attributes.get(attr)
        if not destination:
            raise invalid(f"user.{attr}: Attribute does not have a value to verify.")
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
        pool, user = self.token_user(required(body, "AccessToken"))
        attr = required(body, "AttributeName")
        code = required(body, "Code")
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
            self.check_alias_free(pool, user.username, {attr: pending})
            changes[attr] = pending
        changes[f"{attr}_verified"] = "true"
        self._apply(pool, user, changes, "VerifyUserAttribute")
        return {}

    # ----------------------------------------------------------------------------------------
    # Internals

    def hex_id(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))

    def arn(self, pool_id: str) -> str:
        return f"arn:aws:cognito-idp:{self.region}:123456789012:userpool/{pool_id}"

    def find_pool(self, pool_id: object) -> _Pool:
        if not isinstance(pool_id, str) or not pool_id:
            raise null("userPoolId")
        pool = self.pools.get(pool_id)
        if pool is None:
            raise ServiceError("ResourceNotFoundException", f"User pool {pool_id} does not exist.")
        return pool

    def find_user(self, pool: _Pool, username: object) -> _User:
        """The user with this username, alias or sub, or raise UserNotFoundException."""
        user = self.find_user_or_none(pool, username)
        if user is None:
            raise ServiceError("UserNotFoundException", "User does not exist.")
        return user

    @staticmethod
    def find_user_or_none(pool: _Pool, username: object) -> _User | None:
        """The user with this username, alias or sub, or None."""
        if not isinstance(username, str) or not username:
            raise null("username")
        user = pool.users.get(username)
        if user is None:
            other = pool.by_sub.get(username)
            if other is None:
                for attr in VERIFIABLE:
                    other = pool.aliases.get((attr, username))
                    if other is not None:
                        break
            user = pool.users.get(other) if other is not None else None
        return user

    def random_bits(self, n: int) -> int:
        """``n`` random bits from the seeded generator."""
        return self._rng.getrandbits(n)

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
    def spec(pool: _Pool, name: str) -> tuple[bool, CustomAttribute | None] | None:
        """(mutable, custom spec) for a known attribute name, else None."""
        if name in STANDARD_ATTRIBUTES:
            mutable = pool.standard_overrides.get(name, {}).get(
                "Mutable", bool(STANDARD_SCHEMA[name]["Mutable"])
            )
            return (mutable, None)
        spec = pool.custom.get(name)
        if spec is None:
            return None
        return (spec.mutable, spec)

    def _check_names(self, pool: _Pool, names: Iterable[str], *, admin: bool) -> dict[str, str]:
        """Every problem with the names, by name; a client writing ``dev:`` fails at once."""
        problems: dict[str, str] = {}
        for name in names:
            spec = self.spec(pool, name)
            if spec is None:
                problems[name] = "Attribute does not exist in the schema."
                continue
            mutable, custom = spec
            if custom is not None and custom.developer_only and not admin:
                raise ServiceError(
                    "NotAuthorizedException", "A client attempted to write unauthorized attribute"
                )
            if not mutable:
                problems[name] = "Attribute cannot be updated."
        return problems

    def _update(
        self, pool: _Pool, user: _User, body: Mapping[str, Any], *, admin: bool, operation: str
    ) -> list[dict[str, str]]:
        raw = body.get("UserAttributes")
        if not isinstance(raw, list):
            raise null("userAttributes")
        values: dict[str, str] = {}
        for index, item in enumerate(raw, 1):
            name = item.get("Name") if isinstance(item, dict) else None
            value = item.get("Value", "") if isinstance(item, dict) else None
            if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
                raise too_long(f"userAttributes.{index}.member.name", MAX_NAME_LENGTH)
            if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
                raise too_long(f"userAttributes.{index}.member.value", MAX_VALUE_LENGTH)
            values[name] = value
        problems = self._check_names(pool, values, admin=admin)
        for name, value in values.items():
            custom = pool.custom.get(name)
            if custom is not None and value and name not in problems:
                problem = custom.check(value)
                if problem:
                    problems[name] = problem
        if problems:
            # Cognito names every bad attribute in one answer, one per line.
            raise invalid_attributes(problems)
        self.check_alias_free(pool, user.username, values)

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
            raise null("userAttributeNames")
        problems = self._check_names(pool, names, admin=admin)
        if problems:
            raise invalid_attributes(problems)
        self._apply(pool, user, dict.fromkeys(names), operation)

    @staticmethod
    def check_alias_free(pool: _Pool, username: str | None, values: Mapping[str, str]) -> None:
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
        user.codes[attr] = _Code(code=code, expires=self.clock() + CODE_TTL)
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

    @staticmethod
    def describe(user: _User, *, attributes_key: str) -> dict[str, Any]:
        return {
            "Username": user.username,
            attributes_key: [{"Name": k, "Value": v} for k, v in user.attributes.items()],
            "UserCreateDate": user.created,
            "UserLastModifiedDate": user.modified,
            "Enabled": user.enabled,
            "UserStatus": user.status,
        }


def required(body: Mapping[str, Any], key: str) -> Any:
    value = body.get(key)
    if value is None or value == "":
        raise null(key[:1].lower() + key[1:])
    return value
