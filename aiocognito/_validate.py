"""Input checks against Cognito's model limits, made before any request is sent.

botocore checks only required members and minimum lengths client-side; a 3000-character value or
a 40-character name would travel to Cognito and come back as InvalidParameterException. We catch
them here with a message that names the attribute and the limit, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import AttributeValidationError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_VALUE_LENGTH",
    "STANDARD_ATTRIBUTES",
    "check_access_token",
    "check_attribute_name",
    "check_attribute_names",
    "check_client_metadata",
    "check_code",
    "check_user_pool_id",
    "check_username",
    "normalize_attributes",
]

#: AttributeNameType: 1-32 characters.
MAX_NAME_LENGTH = 32
#: AttributeValueType: at most 2048 characters; empty is allowed and deletes.
MAX_VALUE_LENGTH = 2048
#: CustomAttributeNameType: the schema name after ``custom:`` is 1-20 characters.
MAX_CUSTOM_NAME_LENGTH = 20
#: Username: 1-128 characters.
MAX_USERNAME_LENGTH = 128

#: The standard (OpenID Connect) attributes of a user pool, plus the verification flags.
STANDARD_ATTRIBUTES = frozenset(
    {
        "address",
        "birthdate",
        "email",
        "email_verified",
        "family_name",
        "gender",
        "given_name",
        "locale",
        "middle_name",
        "name",
        "nickname",
        "phone_number",
        "phone_number_verified",
        "picture",
        "preferred_username",
        "profile",
        "sub",
        "updated_at",
        "website",
        "zoneinfo",
        "identities",
    }
)

_CUSTOM_PREFIXES = ("custom:", "dev:custom:")
# TokenModelType's pattern; a "Bearer " prefix or stray whitespace fails it.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-_=.]+")
_POOL_ID_RE = re.compile(r"[\w-]+_[0-9a-zA-Z]+")


def check_attribute_name(name: object, *, argument: str = "attributes") -> str:
    """Return ``name`` if Cognito could accept it as an attribute name, else raise."""
    if not isinstance(name, str):
        raise AttributeValidationError(
            f"{argument}: attribute names must be str, got {type(name).__name__}"
        )
    if not name:
        raise AttributeValidationError(f"{argument}: attribute name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise AttributeValidationError(
            f"{argument}: attribute name {name!r} is {len(name)} characters; "
            f"at most {MAX_NAME_LENGTH} characters are allowed"
        )
    if name in STANDARD_ATTRIBUTES:
        return name
    for prefix in _CUSTOM_PREFIXES:
        if name.startswith(prefix):
            suffix = name[len(prefix) :]
            if not suffix:
                raise AttributeValidationError(
                    f"{argument}: attribute name {name!r} has nothing after {prefix!r}"
                )
            if len(suffix) > MAX_CUSTOM_NAME_LENGTH:
                raise AttributeValidationError(
                    f"{argument}: custom attribute {name!r} has a {len(suffix)}-character name; "
                    f"at most {MAX_CUSTOM_NAME_LENGTH} characters are allowed after {prefix!r}"
                )
            return name
    raise AttributeValidationError(
        f"{argument}: {name!r} is not a standard attribute and lacks the 'custom:' prefix; "
        f"did you mean 'custom:{name}'?"
    )


def normalize_attributes(attributes: object, *, argument: str = "attributes") -> dict[str, str]:
    """Turn a mapping or boto-style list into ``{name: value}``, checking every entry.

    ``None`` and ``""`` both mean delete and are sent as a blank value. Later entries for the
    same name win, as they would on the wire.
    """
    pairs: Iterable[tuple[object, object]]
    if isinstance(attributes, Mapping):
        pairs = attributes.items()
    elif isinstance(attributes, list | tuple):
        pairs = [_boto_pair(item, index, argument) for index, item in enumerate(attributes)]
    else:
        raise AttributeValidationError(
            f"{argument}: expected a mapping of name to value or a list of "
            f"{{'Name': ..., 'Value': ...}} dicts, got {type(attributes).__name__}"
        )
    result: dict[str, str] = {}
    for raw_name, value in pairs:
        name = check_attribute_name(raw_name, argument=argument)
        if value is None:
            result[name] = ""
            continue
        if not isinstance(value, str):
            raise AttributeValidationError(
                f"{argument}: attribute {name!r} has a value of type {type(value).__name__}; "
                "values must be str, or None to delete"
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise AttributeValidationError(
                f"{argument}: attribute {name!r} has a value of {len(value)} characters; "
                f"at most {MAX_VALUE_LENGTH} characters are allowed"
            )
        result[name] = value
    if not result:
        raise AttributeValidationError(f"{argument}: no attributes given; at least one is needed")
    return result


def _boto_pair(item: object, index: int, argument: str) -> tuple[object, object]:
    if not isinstance(item, Mapping) or "Name" not in item:
        raise AttributeValidationError(
            f"{argument}[{index}]: expected a dict with 'Name' and 'Value' keys"
        )
    extra = set(item) - {"Name", "Value"}
    if extra:
        raise AttributeValidationError(
            f"{argument}[{index}]: unexpected keys {sorted(map(str, extra))}; "
            "only 'Name' and 'Value' are allowed"
        )
    return item["Name"], item.get("Value")


def check_attribute_names(names: object, *, argument: str = "attribute_names") -> list[str]:
    """Check a list of attribute names to delete."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise AttributeValidationError(
            f"{argument}: expected a list of attribute names, got {type(names).__name__}"
        )
    result: list[str] = []
    for name in names:
        checked = check_attribute_name(name, argument=argument)
        if checked not in result:
            result.append(checked)
    if not result:
        raise AttributeValidationError(
            f"{argument}: no attribute names given; at least one is needed"
        )
    return result


def check_client_metadata(
    metadata: object, *, argument: str = "client_metadata"
) -> dict[str, str] | None:
    """Check that client metadata is a str-to-str mapping (or None)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise AttributeValidationError(
            f"{argument}: expected a mapping of str to str, got {type(metadata).__name__}"
        )
    result: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise AttributeValidationError(
                f"{argument}: keys must be str, got a key of type {type(key).__name__}"
            )
        if not isinstance(value, str):
            raise AttributeValidationError(
                f"{argument}: the value for key {key!r} is of type {type(value).__name__}; "
                "values must be str"
            )
        result[key] = value
    return result


def check_access_token(token: object, *, argument: str = "access_token") -> str:
    """Check an access token's shape without revealing it."""
    if not isinstance(token, str):
        raise AttributeValidationError(f"{argument}: expected str, got {type(token).__name__}")
    if not token:
        raise AttributeValidationError(f"{argument}: is empty")
    if not _TOKEN_RE.fullmatch(token):
        hint = " (pass the token without the 'Bearer ' prefix)" if " " in token else ""
        raise AttributeValidationError(
            f"{argument}: contains characters an access token cannot have{hint}"
        )
    return token


def check_username(username: object, *, argument: str = "username") -> str:
    """Check a username (or alias, or sub) for the admin operations."""
    if not isinstance(username, str):
        raise AttributeValidationError(f"{argument}: expected str, got {type(username).__name__}")
    if not username:
        raise AttributeValidationError(f"{argument}: is empty")
    if len(username) > MAX_USERNAME_LENGTH:
        raise AttributeValidationError(
            f"{argument}: is {len(username)} characters; at most {MAX_USERNAME_LENGTH} are allowed"
        )
    return username


def check_user_pool_id(pool_id: object, *, argument: str = "user_pool_id") -> str:
    """Check a user pool id such as ``eu-west-1_AbC123``."""
    if pool_id is None:
        raise AttributeValidationError(
            f"{argument}: no user pool given; pass user_pool_id here or to CognitoClient"
        )
    if not isinstance(pool_id, str) or not _POOL_ID_RE.fullmatch(pool_id) or len(pool_id) > 55:
        raise AttributeValidationError(
            f"{argument}: {pool_id!r} is not a user pool id (like 'eu-west-1_AbC123')"
        )
    return pool_id


def check_code(code: object, *, argument: str = "code") -> str:
    """Check a verification code: 1-2048 non-space characters."""
    if not isinstance(code, str):
        raise AttributeValidationError(f"{argument}: expected str, got {type(code).__name__}")
    if not code or len(code) > MAX_VALUE_LENGTH or any(c.isspace() for c in code):
        raise AttributeValidationError(
            f"{argument}: must be 1 to {MAX_VALUE_LENGTH} characters without spaces"
        )
    return code


def to_wire_attributes(attributes: Mapping[str, str]) -> list[dict[str, Any]]:
    """Render ``{name: value}`` as Cognito's ``AttributeListType``."""
    return [{"Name": name, "Value": value} for name, value in attributes.items()]
