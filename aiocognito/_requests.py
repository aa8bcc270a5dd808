"""Request bodies for the update operations, shared by the per-call API and bulk jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._operations import OPERATIONS
from ._validate import to_wire_attributes

__all__ = ["request_id", "update_request"]


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
    if access_token is not None:
        return "UpdateUserAttributes", *OPERATIONS["UpdateUserAttributes"].request(
            access_token=access_token,
            attributes=to_wire_attributes(values),
            client_metadata=None if metadata is None else dict(metadata),
        )
    return "AdminUpdateUserAttributes", *OPERATIONS["AdminUpdateUserAttributes"].request(
        user_pool_id=user_pool_id,
        username=username,
        attributes=to_wire_attributes(values),
        client_metadata=None if metadata is None else dict(metadata),
    )


def request_id(response: Mapping[str, Any]) -> str | None:
    """The service's request id from a botocore response, if it sent one."""
    meta = response.get("ResponseMetadata")
    return meta.get("RequestId") if isinstance(meta, Mapping) else None
