"""Frozen values the public API returns.

Attribute values are sensitive (the service model marks them so): they are kept out of every
``repr``. Cognito masks code-delivery destinations itself (``a***@e***``), so those may show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from ._errors import AiocognitoError, AttributeValidationError, error_code
from ._validate import (
    check_access_token,
    check_client_metadata,
    check_user_pool_id,
    check_username,
    normalize_attributes,
)

__all__ = ["AttributeUpdate", "BadRow", "CodeDelivery", "UpdateOutcome", "UpdateResult", "User"]


def _freeze_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@frozen(kw_only=True)
class CodeDelivery:
    """Where Cognito sent a verification code.

    Attributes:
        destination: The masked destination, e.g. ``"a***@e***"``.
        delivery_medium: ``"EMAIL"`` or ``"SMS"``.
        attribute_name: The attribute being verified, e.g. ``"email"``.
    """

    destination: str
    delivery_medium: str
    attribute_name: str

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> CodeDelivery:
        """Build from Cognito's ``CodeDeliveryDetailsType`` dict."""
        return cls(
            destination=str(data.get("Destination", "")),
            delivery_medium=str(data.get("DeliveryMedium", "")),
            attribute_name=str(data.get("AttributeName", "")),
        )


@frozen(kw_only=True)
class UpdateResult:
    """The outcome of a successful attribute update.

    Attributes:
        code_deliveries: One entry per verification code Cognito sent because an email or phone
            number changed. Empty when nothing awaits verification, and always empty for admin
            updates (AdminUpdateUserAttributes reports no deliveries).
        request_id: The service's request id, when it sent one.
    """

    code_deliveries: tuple[CodeDelivery, ...] = ()
    request_id: str | None = None

    @property
    def verification_pending(self) -> bool:
        """True when a changed email or phone number awaits its verification code."""
        return bool(self.code_deliveries)


@frozen(kw_only=True)
class User:
    """A user as GetUser or AdminGetUser returns it.

    Attributes:
        username: The user's username.
        attributes: Attribute name to value; values are hidden from ``repr``.
        status: The user status (``CONFIRMED``, ``UNCONFIRMED``, ...); admin reads only.
        enabled: Whether the user is enabled; admin reads only.
        created: When the user was created (UTC); admin reads only.
        modified: When the user was last modified (UTC); admin reads only.
    """

    username: str
    attributes: Mapping[str, str] = field(
        factory=dict, converter=_freeze_mapping, repr=lambda a: f"<{len(a)} attributes>"
    )
    status: str | None = None
    enabled: bool | None = None
    created: dt.datetime | None = None
    modified: dt.datetime | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> User:
        """Build from a GetUser or AdminGetUser response."""
        attributes = {a["Name"]: a.get("Value", "") for a in data.get("UserAttributes") or ()}
        return cls(
            username=str(data.get("Username", "")),
            attributes=attributes,
            status=data.get("UserStatus"),
            enabled=data.get("Enabled"),
            created=_as_datetime(data.get("UserCreateDate")),
            modified=_as_datetime(data.get("UserLastModifiedDate")),
        )


def _as_datetime(value: object) -> dt.datetime | None:
    # botocore parses epoch seconds into aware datetimes; a raw number is accepted too.
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return None


def _hidden_count(value: Mapping[str, object] | None) -> str:
    return "None" if value is None else f"<{len(value)} hidden>"


@frozen(kw_only=True)
class AttributeUpdate:
    """One change to one user's attributes, for :meth:`CognitoClient.bulk_update`.

    Name the user one of two ways: ``username`` (with ``user_pool_id``, which defaults to the
    client's) for an admin update, or ``access_token`` for a token update. Values of ``None`` or
    ``""`` delete. The token, values and metadata never appear in the repr.

    Raises:
        AttributeValidationError: At construction, for any problem ``CognitoClient`` would
            refuse to send; the message names the attribute or argument, never the value.
    """

    attributes: Mapping[str, str | None] = field(repr=_hidden_count)
    username: str | None = None
    user_pool_id: str | None = None
    access_token: str | None = field(default=None, repr=False)
    client_metadata: Mapping[str, str] | None = field(default=None, repr=_hidden_count)
    #: The line of the input file this update came from, when it came from a file.
    line: int | None = field(default=None, eq=False)
    #: The checked ``{name: value}`` this update sends ("" for deletes).
    values: Mapping[str, str] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if (self.username is None) == (self.access_token is None):
            raise AttributeValidationError(
                "an update names its user by exactly one of username or access_token"
            )
        if self.username is not None:
            check_username(self.username)
        else:
            check_access_token(self.access_token)
            if self.user_pool_id is not None:
                raise AttributeValidationError(
                    "user_pool_id goes with username; a token update finds its pool by the token"
                )
        if self.user_pool_id is not None:
            check_user_pool_id(self.user_pool_id)
        object.__setattr__(self, "client_metadata", check_client_metadata(self.client_metadata))
        object.__setattr__(self, "values", MappingProxyType(normalize_attributes(self.attributes)))

    @property
    def user(self) -> str:
        """Who this update is for, safe to log: the username, or ``token`` for token updates."""
        return self.username if self.username is not None else "token"

    def to_row(self) -> dict[str, object]:
        """The JSONL row for this update (the input format; it holds values and tokens)."""
        row: dict[str, object] = {}
        if self.username is not None:
            row["username"] = self.username
        if self.user_pool_id is not None:
            row["user_pool_id"] = self.user_pool_id
        if self.access_token is not None:
            row["access_token"] = self.access_token
        row["attributes"] = {k: (v if v else None) for k, v in self.values.items()}
        if self.client_metadata is not None:
            row["client_metadata"] = dict(self.client_metadata)
        return row

    @classmethod
    def from_row(cls, row: object, *, line: int | None = None) -> AttributeUpdate:
        """Build from a decoded JSONL row.

        The row is ``{"username": ..., "attributes": {...}}`` (optionally ``user_pool_id`` and
        ``client_metadata``) or ``{"access_token": ..., "attributes": {...}}``.

        Raises:
            AttributeValidationError: The row is not a valid update; the message says why.
        """
        if not isinstance(row, Mapping):
            raise AttributeValidationError(f"expected a JSON object, got {type(row).__name__}")
        unknown = set(row) - {
            "username",
            "user_pool_id",
            "access_token",
            "attributes",
            "client_metadata",
        }
        if unknown:
            raise AttributeValidationError(f"unexpected keys {sorted(map(str, unknown))}")
        if "username" not in row and "access_token" not in row:
            raise AttributeValidationError("missing username (or access_token)")
        if "attributes" not in row:
            raise AttributeValidationError("missing attributes")
        for key in ("username", "user_pool_id"):
            if key in row and not isinstance(row[key], str):
                raise AttributeValidationError(f"{key}: expected a string")
        return cls(
            attributes=row["attributes"],
            username=row.get("username"),
            user_pool_id=row.get("user_pool_id"),
            access_token=row.get("access_token"),
            client_metadata=row.get("client_metadata"),
            line=line,
        )


@frozen(kw_only=True)
class UpdateOutcome:
    """What happened to one input row of a bulk update.

    Attributes:
        index: The row's position in the input, from 0.
        update: The update, or ``None`` when the row could not be read as one (then
            ``bad_row`` holds the :class:`BadRow`).
        ok: Whether the update was applied.
        error: Why not, when ``ok`` is false.
        attempts: Requests sent for the call that carried this row (0 if none was sent).
        merged: Whether the row rode in one call with other rows for the same user.
        skipped: The journal showed this row finished in an earlier run; nothing was sent.
        line: The line of the input file, when the rows came from a file.
        result: The call's result, when ``ok``.
    """

    index: int
    update: AttributeUpdate | None
    ok: bool
    error: AiocognitoError | None = None
    attempts: int = 0
    merged: bool = False
    skipped: bool = False
    line: int | None = None
    result: UpdateResult | None = None
    #: For a row that could not be read: the row, to report or fix.
    bad_row: BadRow | None = None

    @property
    def code(self) -> str | None:
        """The error code (Cognito's, or the aiocognito error class name); None if ok."""
        if self.error is None:
            return None
        return error_code(self.error)


@frozen(kw_only=True)
class BadRow:
    """An input row that could not be read as an update.

    Attributes:
        line: The line in the input file.
        error: What is wrong with it; the message names the problem, never a value.
        raw: The row as read (JSON text), kept so a failures file can carry it to be fixed.
    """

    line: int
    error: AttributeValidationError
    raw: str = ""

    def __repr__(self) -> str:
        return f"BadRow(line={self.line}, error={str(self.error)!r})"
