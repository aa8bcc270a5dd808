"""Secrets never reach logs, reprs or messages, even with every logger at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

import aiocognito
from tests.conftest import CREDENTIALS
from tests.stub_server import Answer, Received, StubServer, error_answer, json_answer

TOKEN = "eyJraWQiOiJzZWNyZXQtdG9rZW4ifQ.eyJzdWIiOiJ0b2tlbi1zdWJqZWN0In0.c2lnbmF0dXJlLXNlY3JldA"
VALUES = {
    "email": "hidden.person@example.com",
    "custom:tier": "platinum-secret-tier",
    "nickname": 'Jos\u00e9 "the secret" O\'Neil',
}
METADATA = {"metadata-key-secret": "metadata-value-secret"}
CODE = "918273645"
READ_BACK = "value-only-in-the-response"
SECRETS = [TOKEN, *VALUES.values(), *METADATA.keys(), *METADATA.values(), CODE, READ_BACK]


def respond(received: Received) -> Answer:
    if received.operation in {"GetUser", "AdminGetUser"}:
        return json_answer(
            {
                "Username": "alice",
                "UserAttributes": [{"Name": "custom:tier", "Value": READ_BACK}],
            }
        )
    if received.operation == "GetUserAttributeVerificationCode":
        return json_answer(
            {
                "CodeDeliveryDetails": {
                    "Destination": "h***@e***",
                    "DeliveryMedium": "EMAIL",
                    "AttributeName": "email",
                }
            }
        )
    if received.operation == "VerifyUserAttribute":
        return error_answer("CodeMismatchException", f"code {CODE} is wrong for {TOKEN}")
    return json_answer({})


@pytest.fixture
def everything_at_debug() -> Iterator[io.StringIO]:
    """Route every logger, botocore's and aiobotocore's included, at DEBUG into one buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    touched = []
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        touched.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        for logger, level in touched:
            logger.setLevel(level)


async def test_no_secret_in_debug_logs_of_any_operation(everything_at_debug: io.StringIO) -> None:
    outputs: list[str] = []
    async with StubServer(respond) as stub:
        async with aiocognito.CognitoClient(
            region_name="eu-west-1",
            user_pool_id="eu-west-1_AbC",
            endpoint_url=stub.url,
            **CREDENTIALS,
        ) as cognito:
            # Loggers created while opening the clients must be at DEBUG too.
            for name in list(logging.root.manager.loggerDict):
                logging.getLogger(name).setLevel(logging.DEBUG)
            r1 = await cognito.update_user_attributes(TOKEN, VALUES, client_metadata=METADATA)
            r2 = await cognito.admin_update_user_attributes(
                "alice", VALUES, client_metadata=METADATA
            )
            await cognito.delete_user_attributes(TOKEN, ["nickname"])
            await cognito.admin_delete_user_attributes("alice", ["nickname"])
            u1 = await cognito.get_user(TOKEN)
            u2 = await cognito.admin_get_user("alice")
            d = await cognito.get_user_attribute_verification_code(
                TOKEN, "email", client_metadata=METADATA
            )
            with pytest.raises(aiocognito.CodeMismatchError) as info:
                await cognito.verify_user_attribute(TOKEN, "email", CODE)
            outputs += [repr(cognito), str(cognito.statistics())]
        outputs += [repr(x) for x in (r1, r2, u1, u2, d)] + [str(x) for x in (r1, r2, u1, u2, d)]
        outputs += [str(info.value), repr(info.value), str(info.value.args)]
    assert u1.attributes["custom:tier"] == READ_BACK  # the value did come back, just not into logs
    log = everything_at_debug.getvalue()
    # The capture really saw botocore's request and response records.
    assert "Making request for" in log
    assert "Response body" in log
    assert "botocore" in log
    for secret in SECRETS:
        assert secret not in log, f"leaked into the DEBUG log: {secret[:6]}..."
        for text in outputs:
            assert secret not in text, f"leaked into a repr/str: {secret[:6]}..."


def test_validation_errors_do_not_echo_values() -> None:
    from aiocognito._validate import normalize_attributes

    with pytest.raises(aiocognito.AttributeValidationError) as info:
        normalize_attributes({"nickname": VALUES["custom:tier"] * 200})
    assert VALUES["custom:tier"] not in str(info.value)
