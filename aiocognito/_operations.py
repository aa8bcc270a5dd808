"""The one table of Cognito operations: every layer reads its facts about an operation here.

Each :class:`Operation` says how the operation is signed (the transport), which quota category
it draws from (the limiter), whether calls for one user are ordered and merged (the engine), and
how its request is built from the checked arguments, with the secrets it carries (the client
and bulk runs). Adding an operation means one row here and one public method.

This module imports nothing else of aiocognito's but the wire form of attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

__all__ = ["OPERATIONS", "Field", "Operation", "operation"]


@frozen
class Field:
    """One request parameter: its argument name, its name on the wire, whether it is secret."""

    argument: str
    wire: str
    secret: bool = False
    required: bool = True


@frozen(kw_only=True)
class Operation:
    """What aiocognito knows about one Cognito operation.

    Attributes:
        name: Cognito's name, e.g. ``"AdminUpdateUserAttributes"``.
        method: botocore's method for it, e.g. ``"admin_update_user_attributes"``.
        signed: SigV4-signed with AWS credentials (the admin operations), or authorised by the
            access token alone and sent unsigned.
        category: The request-rate quota category it counts against.
        laned: Calls for one user are applied in submission order, one at a time.
        mergeable: Queued calls for one user may travel as one call.
        fields: The request's parameters, in order.
    """

    name: str
    method: str
    signed: bool
    category: str
    laned: bool
    mergeable: bool
    fields: tuple[Field, ...]

    def request(self, **arguments: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The wire parameters and the secrets they carry, from checked arguments.

        An optional field whose argument is ``None`` is left out. Secrets are every secret
        field's text: a token or code, each attribute value, each metadata key and value.
        """
        params: dict[str, Any] = {}
        secrets: list[str] = []
        for field in self.fields:
            value = arguments.get(field.argument)
            if value is None:
                if field.required:
                    raise TypeError(f"{self.name} needs {field.argument}")
                continue
            params[field.wire] = value
            if field.secret:
                secrets.extend(_secret_texts(value))
        unknown = set(arguments) - {field.argument for field in self.fields}
        if unknown:
            raise TypeError(f"{self.name} takes no {', '.join(sorted(unknown))}")
        return params, tuple(s for s in secrets if s)


def _secret_texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):  # client metadata: keys and values alike
        return [str(part) for item in value.items() for part in item]
    if isinstance(value, list):  # [{"Name": ..., "Value": ...}]: the values, not the names
        return [str(item.get("Value", "")) for item in value if isinstance(item, Mapping)]
    return [str(value)]


_TOKEN = Field("access_token", "AccessToken", secret=True)
_POOL = Field("user_pool_id", "UserPoolId")
_USERNAME = Field("username", "Username")
_ATTRIBUTES = Field("attributes", "UserAttributes", secret=True)
_NAMES = Field("attribute_names", "UserAttributeNames")
_NAME = Field("attribute_name", "AttributeName")
_METADATA = Field("client_metadata", "ClientMetadata", secret=True, required=False)
_CODE = Field("code", "Code", secret=True)

OPERATIONS: Mapping[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            name="UpdateUserAttributes",
            method="update_user_attributes",
            signed=False,
            category="UserUpdate",
            laned=True,
            mergeable=True,
            fields=(_TOKEN, _ATTRIBUTES, _METADATA),
        ),
        Operation(
            name="AdminUpdateUserAttributes",
            method="admin_update_user_attributes",
            signed=True,
            category="UserUpdate",
            laned=True,
            mergeable=True,
            fields=(_POOL, _USERNAME, _ATTRIBUTES, _METADATA),
        ),
        Operation(
            name="DeleteUserAttributes",
            method="delete_user_attributes",
            signed=False,
            category="UserUpdate",
            laned=True,
            mergeable=False,
            fields=(_TOKEN, _NAMES),
        ),
        Operation(
            name="AdminDeleteUserAttributes",
            method="admin_delete_user_attributes",
            signed=True,
            category="UserUpdate",
            laned=True,
            mergeable=False,
            fields=(_POOL, _USERNAME, _NAMES),
        ),
        Operation(
            name="GetUser",
            method="get_user",
            signed=False,
            category="UserRead",
            laned=False,
            mergeable=False,
            fields=(_TOKEN,),
        ),
        Operation(
            name="AdminGetUser",
            method="admin_get_user",
            signed=True,
            category="UserRead",
            laned=False,
            mergeable=False,
            fields=(_POOL, _USERNAME),
        ),
        Operation(
            name="GetUserAttributeVerificationCode",
            method="get_user_attribute_verification_code",
            signed=False,
            category="UserUpdate",
            laned=True,
            mergeable=False,
            fields=(_TOKEN, _NAME, _METADATA),
        ),
        Operation(
            name="VerifyUserAttribute",
            method="verify_user_attribute",
            signed=False,
            category="UserUpdate",
            laned=True,
            mergeable=False,
            fields=(_TOKEN, _NAME, _CODE),
        ),
    )
}


def operation(name: str) -> Operation:
    """The operation called ``name``; ``KeyError`` names it if aiocognito does not know it."""
    return OPERATIONS[name]
