"""The fake's three ways to run (in-process, thread, standalone) and its control endpoints."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

import aiocognito
from aiocognito.testing import FakeCognito, FakeCognitoProcess
from aiocognito.testing.__main__ import fault as _fault
from tests.conftest import CREDENTIALS, REGION


@pytest.fixture
def standalone() -> Iterator[tuple[str, str]]:
    """``aiocognito fake-server`` in its own process, with seeded users."""
    fake = FakeCognitoProcess(
        seed_users=5, user_update_rps=None, faults=["internal_error:count=1:op=AdminGetUser"]
    )
    with fake:
        yield fake.endpoint_url, fake.pool_id


def test_standalone_server_serves_boto3(standalone: tuple[str, str]) -> None:
    import boto3
    from botocore.config import Config

    url, pool_id = standalone
    assert url.startswith("http://127.0.0.1:")
    boto = boto3.client(
        "cognito-idp",
        region_name=REGION,
        endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}),
        **CREDENTIALS,
    )
    with pytest.raises(boto.exceptions.InternalErrorException):
        boto.admin_get_user(UserPoolId=pool_id, Username="user3")  # the injected fault
    assert boto.admin_get_user(UserPoolId=pool_id, Username="user3")["Username"] == "user3"
    boto.admin_update_user_attributes(
        UserPoolId=pool_id,
        Username="user3",
        UserAttributes=[{"Name": "custom:tier", "Value": "gold"}],
    )
    with urllib.request.urlopen(f"{url}/_fake/users/{pool_id}/user3") as response:
        state = json.loads(response.read())
    assert state["attributes"]["custom:tier"] == "gold"
    assert state["log"][0]["changes"] == {"custom:tier": "gold"}
    with urllib.request.urlopen(f"{url}/_fake/pools/{pool_id}/attribute/custom:tier") as response:
        across = json.loads(response.read())
    assert across["values"]["user3"] == "gold"
    assert across["values"]["user0"] is None
    assert across["history"] == {"user3": ["gold"]}
    with urllib.request.urlopen(f"{url}/_fake/stats") as response:
        stats = json.loads(response.read())
    assert ["AdminGetUser", "InternalErrorException", 1] in stats["requests"]
    assert stats["faults_injected"] == {"internal_error": 1}


def test_thread_mode_with_sync_boto3() -> None:
    import boto3

    fake = FakeCognito(user_update_rps=None)
    with fake.run_in_thread():
        boto = boto3.client(
            "cognito-idp", region_name=REGION, endpoint_url=fake.endpoint_url, **CREDENTIALS
        )
        pool_id = boto.create_user_pool(PoolName="p")["UserPool"]["Id"]
        client_id = boto.create_user_pool_client(UserPoolId=pool_id, ClientName="c")[
            "UserPoolClient"
        ]["ClientId"]
        boto.admin_create_user(UserPoolId=pool_id, Username="zoe", TemporaryPassword="Tmp-1234!")
        challenge = boto.admin_initiate_auth(
            UserPoolId=pool_id,
            ClientId=client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "zoe", "PASSWORD": "Tmp-1234!"},
        )
        assert challenge["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
        boto.admin_set_user_password(
            UserPoolId=pool_id, Username="zoe", Password="Perm-1234!", Permanent=True
        )
        auth = boto.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "zoe", "PASSWORD": "Perm-1234!"},
        )
        token = auth["AuthenticationResult"]["AccessToken"]
        boto.update_user_attributes(
            AccessToken=token, UserAttributes=[{"Name": "nickname", "Value": "z"}]
        )
        assert boto.get_user(AccessToken=token)["Username"] == "zoe"
        listed = boto.list_users(UserPoolId=pool_id, Filter='username = "zoe"')["Users"]
        assert [u["Username"] for u in listed] == ["zoe"]
        with pytest.raises(boto.exceptions.NotAuthorizedException):
            boto.initiate_auth(
                ClientId=client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": "zoe", "PASSWORD": "wrong"},
            )
    assert fake.user_attributes(pool_id, "zoe")["nickname"] == "z"


def test_thread_mode_reports_a_port_in_use() -> None:
    first = FakeCognito()
    with first.run_in_thread():
        port = int(first.endpoint_url.rsplit(":", 1)[1])
        second = FakeCognito(port=port)
        with pytest.raises(OSError, match=r"(?i)address already in use"), second.run_in_thread():
            pass


async def test_in_process_twice_is_refused() -> None:
    async with FakeCognito() as fake:
        with pytest.raises(RuntimeError, match="already running"):
            await fake.start()


async def test_seed_endpoint() -> None:
    import aiohttp

    async with FakeCognito(user_update_rps=None) as fake, aiohttp.ClientSession() as session:
        spec = {"users": 50, "tokens": 2, "custom_attributes": [{"name": "tier"}]}
        async with session.post(f"{fake.endpoint_url}/_fake/seed", json=spec) as response:
            seeded = await response.json()
        assert seeded["users"] == 50
        assert len(seeded["tokens"]) == 2
        async with aiocognito.CognitoClient(
            region_name=REGION, endpoint_url=fake.endpoint_url
        ) as cognito:
            await cognito.update_user_attributes(seeded["tokens"][1], {"custom:tier": "gold"})
        assert fake.user_attributes(seeded["pool_id"], "user1")["custom:tier"] == "gold"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("explode", "unknown fault"),
        ("throttle:x=1", "bad fault option"),
        ("throttle:p=2", "bad fault"),
    ],
)
def test_fault_specs_are_checked(spec: str, fragment: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=fragment):
        _fault(spec)
    fault = _fault("read_timeout:p=0.5:delay=3:start=1:end=2:count=4:op=GetUser,AdminGetUser")
    assert (fault.kind, fault.probability, fault.delay, fault.count) == (
        "read_timeout",
        0.5,
        3.0,
        4,
    )
    assert fault.operations == frozenset({"GetUser", "AdminGetUser"})


def test_fake_process_reads_its_state() -> None:
    with FakeCognitoProcess(seed_users=2, user_update_rps=7) as fake:
        assert fake.stats()["quotas"]["UserUpdate"]["rate"] == 7
        assert fake.attribute("custom:tier") == {
            "values": {"user0": None, "user1": None},
            "history": {},
        }
        pid = fake.pid
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped on exit
