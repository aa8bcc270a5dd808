"""Shared fixtures: an isolated AWS environment, one moto server per session, pool seeding."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import attrs
import pytest
from hypothesis import settings

from tests.fakes import FakeTransport
from tests.redis_server import RedisServer, redis_server_binary

# `HYPOTHESIS_PROFILE=long make test` (or pytest) runs the model-based tests much longer: 1,000
# examples of 50 steps unless AIOCOGNITO_LONG_EXAMPLES says otherwise (about 2 s an example).
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("AIOCOGNITO_LONG_EXAMPLES", "1000")),
    stateful_step_count=50,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session", autouse=True)
def _isolated_aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test may see the developer's AWS settings, nor probe instance metadata."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for key in saved:
        del os.environ[key]
    empty = tmp_path_factory.mktemp("aws") / "none"
    os.environ["AWS_CONFIG_FILE"] = str(empty)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _isolated_host_quota(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test process (an xdist worker) shares quotas on the host only with the processes it
    starts: sharing on this host is on by default, and its directory lives in the temporary
    directory, which is made this session's own."""
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    os.environ.pop("AIOCOGNITO_SHARE_ON_HOST", None)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
        tempfile.tempdir = None


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto server on a free port, shared by the session; tests make their own pools."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


REGION = "us-east-1"
PASSWORD = "Perm-Passw0rd!"


class Credentials(TypedDict):
    aws_access_key_id: str
    aws_secret_access_key: str


CREDENTIALS: Credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@attrs.define
class BotoPool:
    """A pool seeded over HTTP with boto3 (in moto or the fake), the way a user's test would."""

    endpoint_url: str
    pool_id: str
    client_id: str
    boto: Any

    def create_user(self, username: str, **attributes: str) -> None:
        attrs_list = [{"Name": k.replace("__", ":"), "Value": v} for k, v in attributes.items()]
        self.boto.admin_create_user(
            UserPoolId=self.pool_id,
            Username=username,
            TemporaryPassword="Tmp-Passw0rd!",
            MessageAction="SUPPRESS",
            UserAttributes=attrs_list,
        )
        self.boto.admin_set_user_password(
            UserPoolId=self.pool_id, Username=username, Password=PASSWORD, Permanent=True
        )

    def token(self, username: str) -> str:
        result = self.boto.admin_initiate_auth(
            UserPoolId=self.pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
        )
        token: str = result["AuthenticationResult"]["AccessToken"]
        return token

    def stored(self, username: str) -> dict[str, str]:
        user = self.boto.admin_get_user(UserPoolId=self.pool_id, Username=username)
        return {a["Name"]: a["Value"] for a in user["UserAttributes"]}


def make_boto_pool(endpoint_url: str, **pool_options: Any) -> BotoPool:
    """Create a pool with custom ``tier`` and ``dept`` attributes and an app client."""
    import boto3

    boto = boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint_url, **CREDENTIALS)
    pool_id = boto.create_user_pool(
        PoolName=f"p-{uuid.uuid4().hex[:8]}",
        Schema=[
            {"Name": "tier", "AttributeDataType": "String", "Mutable": True},
            {"Name": "dept", "AttributeDataType": "String", "Mutable": True},
        ],
        **pool_options,
    )["UserPool"]["Id"]
    client_id = boto.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="c",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    return BotoPool(endpoint_url=endpoint_url, pool_id=pool_id, client_id=client_id, boto=boto)


# The moto suite predates the fake; the name stays for readability there.
MotoPool = BotoPool


@pytest.fixture
def moto_pool(moto_url: str) -> BotoPool:
    """A fresh moto pool with custom ``tier`` and ``dept`` attributes."""
    return make_boto_pool(moto_url)


@pytest.fixture
def fake_transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own, on a free port, persistence off; stopped after."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail(
            "the fleet tests need redis-server: apt-get install redis-server (.ci/run does), "
            "or set AIOCOGNITO_REDIS_SERVER to its path"
        )
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
