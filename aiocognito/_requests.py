"""Request bodies for the update operations, shared by the per-call API and bulk jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._validate import to_wire_attributes

__all__ = ["request_id", "secrets_of", "update_request"]


def secrets_of(
    token: str | None, values: Mapping[str, str], metadata: Mapping[str, str] | None
) -> tuple[str, ...]:
    """Everything in a request that must never reach a log: token, values, metadata."""
    found = [token] if token else []
    found.extend(v for v in values.values() if v)
    if metadata:
        for key, value in metadata.items():
            found.extend(s for s in (key, value) if s)
    return tuple(found)


def update_request(
    *,
    access_token: str | None,
    username: str | None,
    user_pool_id: str | None,
    values: Mapping[str, str],
    metadata: Mapping[str, str] | None,
) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """The operation, parameters and secrets of one checked attribute update.

    With ``access_token`` it is UpdateUserAttributes; otherwise AdminUpdateUserAttributes for
    ``username`` in ``user_pool_id``.
    """
    params: dict[str, Any]
    if access_token is not None:
        operation = "UpdateUserAttributes"
        params = {"AccessToken": access_token}
    else:
        operation = "AdminUpdateUserAttributes"
        params = {"UserPoolId": user_pool_id, "Username": username}
    params["UserAttributes"] = to_wire_attributes(values)
    if metadata is not None:
        params["ClientMetadata"] = dict(metadata)
    return operation, params, secrets_of(access_token, values, metadata)


def request_id(response: Mapping[str, Any]) -> str | None:
    """The service's request id from a botocore response, if it sent one."""
    meta = response.get("ResponseMetadata")
    return meta.get("RequestId") if isinstance(meta, Mapping) else None
