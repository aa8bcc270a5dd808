"""The one table of operations agrees with botocore's service model for cognito-idp."""

from __future__ import annotations

import botocore.session
import pytest
from botocore import xform_name

from aiocognito._operations import OPERATIONS, Operation

MODEL = botocore.session.get_session().get_service_model("cognito-idp")


@pytest.mark.parametrize("op", OPERATIONS.values(), ids=lambda op: op.name)
def test_each_operation_matches_the_service_model(op: Operation) -> None:
    model = MODEL.operation_model(op.name)
    assert op.method == xform_name(op.name)
    # The token operations are unsigned (authtype none); the admin ones are SigV4.
    assert (model.auth_type == "none") is not op.signed
    members = model.input_shape.members
    assert {f.wire for f in op.fields} == set(members)
    assert {f.wire for f in op.fields if f.required} == set(model.input_shape.required_members)
    sensitive = {name for name, shape in members.items() if _sensitive(shape)}
    # Every field the model marks sensitive is kept out of logs (usernames we treat as ids).
    assert sensitive - {"Username"} <= {f.wire for f in op.fields if f.secret}


def _sensitive(shape: object) -> bool:
    if getattr(shape, "serialization", {}).get("sensitive") or getattr(shape, "metadata", {}).get(
        "sensitive"
    ):
        return True
    for child in ("member", "key", "value"):
        inner = getattr(shape, child, None)
        if inner is not None and _sensitive(inner):
            return True
    return any(_sensitive(m) for m in getattr(shape, "members", {}).values())


def test_requests_carry_their_secrets_and_refuse_unknown_arguments() -> None:
    op = OPERATIONS["UpdateUserAttributes"]
    params, secrets = op.request(
        access_token="tok",
        attributes=[{"Name": "nickname", "Value": "nick"}, {"Name": "website", "Value": ""}],
        client_metadata={"key": "value"},
    )
    assert params["AccessToken"] == "tok"
    assert secrets == ("tok", "nick", "key", "value")
    assert "ClientMetadata" not in op.request(access_token="t", attributes=[])[0]
    with pytest.raises(TypeError, match="needs access_token"):
        op.request(attributes=[])
    with pytest.raises(TypeError, match="takes no username"):
        op.request(access_token="t", attributes=[], username="u")


def test_the_quota_categories_are_cognitos() -> None:
    update = {n for n, op in OPERATIONS.items() if op.category == "UserUpdate"}
    assert {"GetUser", "AdminGetUser"} == set(OPERATIONS) - update
    assert all(op.laned for op in OPERATIONS.values() if op.category == "UserUpdate")
    assert {n for n, op in OPERATIONS.items() if op.mergeable} == {
        "UpdateUserAttributes",
        "AdminUpdateUserAttributes",
    }
