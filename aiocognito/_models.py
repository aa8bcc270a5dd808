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

__all__ = ["CodeDelivery", "UpdateResult", "User"]


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
