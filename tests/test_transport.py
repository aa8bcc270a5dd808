"""The real aiobotocore transport against a local stub: signing, pooling, parsing, error mapping."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import botocore.loaders
import pytest

import aiocognito
from aiocognito import _transport
from tests.conftest import CREDENTIALS
from tests.stub_server import Answer, Received, StubServer, error_answer, json_answer

TOKEN = "eyJhbGciOi.eyJzdWIiOiJ1LTEifQ.c2ln"
POOL = "eu-west-1_AbC"
ONE_ATTEMPT = aiocognito.RetryPolicy(max_attempts=1)


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer(lambda _r: json_answer({})) as server:
        yield server


def client(url: str, *, credentials: bool = True, **kwargs: Any) -> aiocognito.CognitoClient:
    kwargs.setdefault("retry", ONE_ATTEMPT)
    return aiocognito.CognitoClient(
        region_name="eu-west-1",
        user_pool_id=POOL,
        endpoint_url=url,
        **(CREDENTIALS if credentials else {}),  # type: ignore[typeddict-item]
        **kwargs,
    )


async def test_token_operations_are_unsigned_and_need_no_credentials(stub: StubServer) -> None:
    async with client(stub.url, credentials=False) as cognito:
        await cognito.update_user_attributes(TOKEN, {"nickname": "n"})
        await cognito.get_user(TOKEN)
        await cognito.delete_user_attributes(TOKEN, ["nickname"])
        await cognito.get_user_attribute_verification_code(TOKEN, "email")
        await cognito.verify_user_attribute(TOKEN, "email", "123456")
    assert [r.operation for r in stub.received] == [
        "UpdateUserAttributes",
        "GetUser",
        "DeleteUserAttributes",
        "GetUserAttributeVerificationCode",
        "VerifyUserAttribute",
    ]
    for request in stub.received:
        headers = {k.lower() for k in request.headers}
        assert "authorization" not in headers, request.operation
    assert stub.received[0].body == {
        "AccessToken": TOKEN,
        "UserAttributes": [{"Name": "nickname", "Value": "n"}],
    }


async def test_admin_operations_are_sigv4_signed(stub: StubServer) -> None:
    async with client(stub.url) as cognito:
        await cognito.admin_update_user_attributes("alice", {"custom:tier": "gold"})
        await cognito.admin_delete_user_attributes("alice", ["custom:tier"])
    for request in stub.received:
        auth = {k.lower(): v for k, v in request.headers.items()}["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert "/cognito-idp/aws4_request" in auth


async def test_admin_call_without_credentials_is_a_credentials_error(stub: StubServer) -> None:
    async with client(stub.url, credentials=False) as cognito:
        with pytest.raises(aiocognito.CredentialsError, match="needs AWS credentials"):
            await cognito.admin_get_user("alice")
    assert stub.received == []


@pytest.mark.parametrize(
    ("answer", "cls", "code", "status"),
    [
        (
            error_answer("TooManyRequestsException", "Rate exceeded"),
            aiocognito.TooManyRequestsError,
            "TooManyRequestsException",
            400,
        ),
        (
            error_answer("TooManyRequestsException", "Rate exceeded", 429),
            aiocognito.TooManyRequestsError,
            "TooManyRequestsException",
            429,
        ),
        (Answer(status=429, body=b""), aiocognito.TooManyRequestsError, "429", 429),
        (
            error_answer("InternalErrorException", "oops", 500),
            aiocognito.InternalErrorError,
            "InternalErrorException",
            500,
        ),
        (
            Answer(status=503, body=b"<html>busy</html>", content_type="text/html"),
            aiocognito.CognitoError,
            "503",
            503,
        ),
        (
            error_answer("NotAuthorizedException", "Access Token has expired"),
            aiocognito.NotAuthorizedError,
            "NotAuthorizedException",
            400,
        ),
        (
            error_answer("com.amazonaws.cognito#UserNotFoundException", "User does not exist."),
            aiocognito.UserNotFoundError,
            "UserNotFoundException",
            400,
        ),
        (
            error_answer("BrandNewException", "new"),
            aiocognito.CognitoError,
            "BrandNewException",
            400,
        ),
    ],
)
async def test_service_errors_map_to_the_most_specific_class(
    answer: Answer, cls: type[aiocognito.CognitoError], code: str, status: int
) -> None:
    async with StubServer(lambda _r: answer) as stub, client(stub.url) as cognito:
        with pytest.raises(aiocognito.CognitoError) as info:
            await cognito.update_user_attributes(TOKEN, {"nickname": "n"})
    err = info.value
    assert type(err) is cls
    assert (err.code, err.status, err.operation) == (code, status, "UpdateUserAttributes")
    assert err.__cause__ is not None  # chained from botocore's ClientError
    if answer.headers:
        assert err.request_id == "req-1"
    assert len(stub.received) == 1  # botocore's own retries are off


async def test_service_message_is_scrubbed_of_the_request_secrets() -> None:
    value = "very-private-nickname"
    answer = error_answer("InvalidParameterException", f"user.nickname: value {value} rejected")
    async with StubServer(lambda _r: answer) as stub, client(stub.url) as cognito:
        with pytest.raises(aiocognito.InvalidParameterError) as info:
            await cognito.update_user_attributes(TOKEN, {"nickname": value})
    assert value not in str(info.value)
    assert value not in repr(info.value)
    assert "user.nickname: value <redacted> rejected" in str(info.value)


async def test_connection_refused_is_a_transport_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    async with client(f"http://127.0.0.1:{port}", connect_timeout=1.0) as cognito:
        with pytest.raises(aiocognito.TransportError) as info:
            await cognito.get_user(TOKEN)
    assert "GetUser" in str(info.value)
    assert TOKEN not in str(info.value)


async def test_connection_pool_is_sized_to_max_concurrency() -> None:
    wanted = 24  # more than botocore's default pool of 10
    arrived = 0
    all_in = anyio.Event()

    async def hold(_r: Received) -> Answer:
        nonlocal arrived
        arrived += 1
        if arrived == wanted:
            all_in.set()
        await all_in.wait()
        return json_answer({})

    async with StubServer(hold) as stub:
        limits = aiocognito.Limits(max_concurrency=wanted)
        async with client(stub.url, limits=limits) as cognito:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for i in range(wanted):
                        tg.start_soon(cognito.admin_get_user, f"user{i}")
    assert all_in.is_set()
    assert arrived == wanted


async def test_max_concurrency_bounds_requests_in_flight() -> None:
    in_flight = 0
    peak = 0
    release = anyio.Event()

    async def hold(_r: Received) -> Answer:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak == 3:
            release.set()
        await release.wait()
        in_flight -= 1
        return json_answer({})

    async with (
        StubServer(hold) as stub,
        client(stub.url, limits=aiocognito.Limits(max_concurrency=3)) as cognito,
    ):
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(cognito.admin_get_user, f"user{i}")
    assert peak == 3
    assert len(stub.received) == 10


async def test_service_model_is_loaded_off_the_event_loop(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    original = _transport._warm_loader

    def spy(session: Any) -> None:
        threads.append(threading.current_thread())
        original(session)

    monkeypatch.setattr(_transport, "_warm_loader", spy)
    async with client(stub.url) as cognito:
        await cognito.get_user(TOKEN)
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


async def test_the_service_model_is_parsed_once_per_thread(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with client(stub.url) as cognito:
        await cognito.get_user(TOKEN)
    loads: list[str] = []
    original = botocore.loaders.JSONFileLoader.load_file

    def spy(self: botocore.loaders.JSONFileLoader, file_path: str) -> Any:
        loads.append(file_path)
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", spy)
    async with client(stub.url) as cognito:
        await cognito.get_user(TOKEN)
        await cognito.admin_get_user("alice")
    assert loads == []

    # Another thread, with an event loop of its own, has a loader of its own: botocore fills
    # a region's endpoint entry on first use, which must not race another thread's reads.
    def elsewhere() -> None:
        async def one() -> None:
            async with client(stub.url) as cognito:
                await cognito.get_user(TOKEN)

        anyio.run(one)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await anyio.to_thread.run_sync(thread.join)
    assert any("cognito-idp" in path for path in loads)

    # Another data path may hold other models: it gets a loader of its own too.
    loads.clear()
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    async with client(stub.url) as cognito:
        await cognito.get_user(TOKEN)
    assert any("cognito-idp" in path for path in loads)
    assert len(stub.received) == 5


async def test_retries_reach_the_server_as_separate_requests() -> None:
    answers = [error_answer("TooManyRequestsException", "Rate exceeded"), json_answer({})]

    async with StubServer(lambda _r: answers.pop(0)) as stub:
        retry = aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)
        async with client(stub.url, retry=retry) as cognito:
            await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
            assert cognito.statistics().throttled == 1
    assert len(stub.received) == 2


async def test_scrub_covers_the_escaped_forms() -> None:
    secret = 'Jos\u00e9 "quoted" it\'s'
    import json

    body = json.dumps({"Value": secret}).encode()
    for text in (secret, repr(body), str(body), json.dumps(secret)):
        assert secret not in _transport.scrub(text, [secret])
        assert "<redacted>" in _transport.scrub(text, [secret])


async def test_cached_user_agent_matches_what_botocore_builds(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client(stub.url) as cognito:
        for _ in range(3):
            await cognito.admin_get_user("alice")
            await cognito.get_user(TOKEN)
    cached = [r.headers["User-Agent"] for r in stub.received]
    stub.received.clear()
    monkeypatch.setattr(_transport, "_cache_user_agent", lambda _client: None)
    async with client(stub.url) as cognito:
        for _ in range(3):
            await cognito.admin_get_user("alice")
            await cognito.get_user(TOKEN)
    built = [r.headers["User-Agent"] for r in stub.received]
    assert cached == built
    assert "aiocognito/" in cached[0]


async def test_no_region_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    client = aiocognito.CognitoClient(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(aiocognito.ConfigurationError, match="no AWS region"):
        await client.__aenter__()


async def test_region_from_the_environment(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    async with aiocognito.CognitoClient(endpoint_url=stub.url, **CREDENTIALS) as cognito:
        await cognito.admin_get_user("alice", user_pool_id="ap-southeast-2_Abc1")
    auth = {k.lower(): v for k, v in stub.received[0].headers.items()}["authorization"]
    assert "/ap-southeast-2/cognito-idp/" in auth
