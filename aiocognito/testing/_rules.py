"""Cognito's rules as the fake states them, from Cognito's documentation alone.

The fake keeps its own copy of every limit, name and category rather than importing the
client's: a wrong constant in the client must fail against the fake, not pass in both.
``tests/test_fake_rules.py`` asserts that the two copies agree, so a disagreement is found.

Sources: the cognito-idp service model (``AttributeNameType``, ``AttributeValueType``,
``CustomAttributeNameType``, ``UsernameType``, ``SchemaAttributeType``), the developer guide's
"User pool attributes" and "Quotas" pages, and the API reference's error pages.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Literal

from attrs import frozen

__all__ = [
    "ATTRIBUTE_DATA_TYPES",
    "CATEGORY",
    "CODE_TTL",
    "DEFAULT_QUOTAS",
    "MAX_CUSTOM_ATTRIBUTES",
    "MAX_CUSTOM_NAME_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_USERNAME_LENGTH",
    "MAX_VALUE_LENGTH",
    "SCOPE",
    "SEARCHABLE_ATTRIBUTES",
    "STANDARD_ATTRIBUTES",
    "STANDARD_SCHEMA",
    "USERNAME_ATTRIBUTES",
    "VERIFIABLE",
    "CustomAttribute",
    "ServiceError",
    "invalid",
    "invalid_attributes",
    "null",
    "too_long",
]

#: AttributeNameType: 1-32 characters.
MAX_NAME_LENGTH = 32
#: AttributeValueType: at most 2048 characters; a blank value deletes the attribute.
MAX_VALUE_LENGTH = 2048
#: CustomAttributeNameType: a schema name is 1-20 characters (before ``custom:`` is added).
MAX_CUSTOM_NAME_LENGTH = 20
#: UsernameType: 1-128 characters.
MAX_USERNAME_LENGTH = 128
#: The developer guide's quota page: at most 50 custom attributes per pool.
MAX_CUSTOM_ATTRIBUTES = 50
#: A verification code is valid for 24 hours.
CODE_TTL = 24 * 3600.0
#: The scope an access token needs for the token-authorised attribute operations.
SCOPE = "aws.cognito.signin.user.admin"
#: SchemaAttributeType.AttributeDataType's enum.
ATTRIBUTE_DATA_TYPES = ("String", "Number", "DateTime", "Boolean")
#: The only attributes Cognito verifies with a code (and the only ones usable as sign-in names
#: besides ``preferred_username``).
VERIFIABLE = ("email", "phone_number")
#: UsernameAttributes may hold only these.
USERNAME_ATTRIBUTES = ("email", "phone_number")
#: The attributes ListUsers can filter on (its API reference: custom attributes are not
#: searchable); ``status`` is ``Enabled``/``Disabled``.
SEARCHABLE_ATTRIBUTES = (
    "username",
    "email",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "cognito:user_status",
    "status",
    "sub",
)


def _string(min_length: int = 0, *, mutable: bool = True, required: bool = False) -> dict[str, Any]:
    return {
        "AttributeDataType": "String",
        "DeveloperOnlyAttribute": False,
        "Mutable": mutable,
        "Required": required,
        "StringAttributeConstraints": {"MinLength": str(min_length), "MaxLength": "2048"},
    }


_BOOLEAN: dict[str, Any] = {
    "AttributeDataType": "Boolean",
    "DeveloperOnlyAttribute": False,
    "Mutable": True,
    "Required": False,
}

#: The standard (OpenID Connect) attributes every pool has, as DescribeUserPool lists them.
#: ``sub`` is the one immutable attribute; ``identities`` is filled in for federated users.
STANDARD_SCHEMA: Mapping[str, Mapping[str, Any]] = {
    "sub": _string(1, mutable=False, required=True),
    "name": _string(),
    "given_name": _string(),
    "family_name": _string(),
    "middle_name": _string(),
    "nickname": _string(),
    "preferred_username": _string(),
    "profile": _string(),
    "picture": _string(),
    "website": _string(),
    "email": _string(),
    "email_verified": _BOOLEAN,
    "gender": _string(),
    "birthdate": {
        **_string(10),
        "StringAttributeConstraints": {"MinLength": "10", "MaxLength": "10"},
    },
    "zoneinfo": _string(),
    "locale": _string(),
    "phone_number": _string(),
    "phone_number_verified": _BOOLEAN,
    "address": _string(),
    "updated_at": {
        "AttributeDataType": "Number",
        "DeveloperOnlyAttribute": False,
        "Mutable": True,
        "Required": False,
        "NumberAttributeConstraints": {"MinValue": "0"},
    },
    "identities": _string(),
}

#: The standard attribute names, the verification flags included.
STANDARD_ATTRIBUTES = frozenset(STANDARD_SCHEMA)

#: Operation -> request-rate quota category ("Quotas in Amazon Cognito": UserUpdate holds the
#: operations that manage users and their attributes, UserRead those that retrieve a user).
CATEGORY: Mapping[str, str] = {
    "UpdateUserAttributes": "UserUpdate",
    "AdminUpdateUserAttributes": "UserUpdate",
    "DeleteUserAttributes": "UserUpdate",
    "AdminDeleteUserAttributes": "UserUpdate",
    "GetUserAttributeVerificationCode": "UserUpdate",
    "VerifyUserAttribute": "UserUpdate",
    "GetUser": "UserRead",
    "AdminGetUser": "UserRead",
    "AdminCreateUser": "UserCreation",
    "AdminSetUserPassword": "UserUpdate",
    "AdminInitiateAuth": "UserAuthentication",
    "InitiateAuth": "UserAuthentication",
    "ListUsers": "UserList",
    "CreateUserPool": "UserPoolUpdate",
    "DeleteUserPool": "UserPoolUpdate",
    "DescribeUserPool": "UserPoolRead",
    "CreateUserPoolClient": "UserPoolClientUpdate",
}

#: Each category's default account-wide quota, in requests per second.
DEFAULT_QUOTAS: Mapping[str, float] = {
    "UserAuthentication": 120.0,
    "UserCreation": 50.0,
    "UserFederation": 25.0,
    "UserAccountRecovery": 30.0,
    "UserRead": 120.0,
    "UserUpdate": 25.0,
    "UserResourceRead": 50.0,
    "UserResourceUpdate": 25.0,
    "UserList": 30.0,
    "UserPoolRead": 15.0,
    "UserPoolUpdate": 15.0,
    "UserPoolResourceRead": 20.0,
    "UserPoolResourceUpdate": 15.0,
    "UserPoolClientRead": 15.0,
    "UserPoolClientUpdate": 15.0,
    "UserToken": 120.0,
}


class ServiceError(Exception):
    """A Cognito error answer: the code, the message and the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid(message: str) -> ServiceError:
    """An InvalidParameterException with Cognito's message."""
    return ServiceError("InvalidParameterException", message)


def invalid_attributes(problems: Mapping[str, str]) -> ServiceError:
    """Cognito's answer naming every bad attribute, each on its own line."""
    lines = "".join(f"user.{name}: {problem}\n" for name, problem in problems.items())
    return invalid(f"Invalid user attributes: {lines}")


def null(member: str) -> ServiceError:
    """The validation error for a missing required member."""
    return invalid(
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        "Member must not be null"
    )


def too_long(member: str, limit: int) -> ServiceError:
    """The validation error for a member over its length limit."""
    return invalid(
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

    def schema(self) -> dict[str, Any]:
        """The SchemaAttributeType entry DescribeUserPool shows for this attribute."""
        entry: dict[str, Any] = {
            "Name": self.full_name,
            "AttributeDataType": self.type,
            "DeveloperOnlyAttribute": self.developer_only,
            "Mutable": self.mutable,
            "Required": False,
        }
        if self.type == "String":
            entry["StringAttributeConstraints"] = {
                k: str(v)
                for k, v in (("MinLength", self.min_length), ("MaxLength", self.max_length))
                if v is not None
            }
        elif self.type == "Number" and (self.min_value, self.max_value) != (None, None):
            entry["NumberAttributeConstraints"] = {
                k: f"{v:g}"
                for k, v in (("MinValue", self.min_value), ("MaxValue", self.max_value))
                if v is not None
            }
        return entry

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
