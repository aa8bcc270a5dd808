"""Quotas per category, the per-user write limit, and injected faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import aiocognito
from aiocognito.testing import FakeCognito, Fault, Latency, PoolInfo
from aiocognito.testing._quota import Quotas, TokenBucket
from tests.fake_helpers import ManualClock, raw_call


def admin_update(pool: PoolInfo, user: str = "alice", value: str = "v") -> dict[str, object]:
    return {
        "UserPoolId": pool.id,
        "Username": user,
        "UserAttributes": [{"Name": "nickname", "Value": value}],
    }


@pytest.fixture
def mono() -> ManualClock:
    return ManualClock(start=100.0)


# ------------------------------------------------------------------------------------------
# Buckets, deterministic


def test_bucket_holds_at_most_one_seconds_worth(mono: ManualClock) -> None:
    bucket = TokenBucket(10.0, mono)
    assert [bucket.try_take() for _ in range(11)] == [True] * 10 + [False]
    mono.advance(0.25)
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    mono.advance(60)  # a long idle spell refills to one second's worth, no more
    assert sum(bucket.try_take() for _ in range(20)) == 10


def test_quotas_count_per_category_and_per_second(mono: ManualClock) -> None:
    quotas = Quotas({"UserUpdate": 2.0, "UserRead": None}, per_user_write_rps=None, clock=mono)
    results = [quotas.admit("AdminUpdateUserAttributes", None) for _ in range(3)]
    assert results == [None, None, "account"]
    mono.advance(1.0)
    assert quotas.admit("UpdateUserAttributes", None) is None
    assert all(quotas.admit("GetUser", None) is None for _ in range(50))
    stats = quotas.stats()
    assert (stats["UserUpdate"].admitted, stats["UserUpdate"].throttled) == (3, 1)
    assert stats["UserUpdate"].timeline == ((0, 2, 1), (1, 1, 0))
    assert stats["UserUpdate"].observed_rate == 1.5  # 3 admitted over 2 seconds
    assert stats["UserRead"].rate is None
    assert stats["UserRead"].admitted == 50


def test_per_user_write_limit(mono: ManualClock) -> None:
    quotas = Quotas({"UserUpdate": None}, per_user_write_rps=2.0, clock=mono)
    assert [quotas.admit("AdminUpdateUserAttributes", "p/alice") for _ in range(3)] == [
        None,
        None,
        "user",
    ]
    assert quotas.admit("AdminUpdateUserAttributes", "p/bob") is None
    assert quotas.admit("AdminGetUser", "p/alice") is None  # reads are not writes
    assert quotas.stats()["UserUpdate"].throttled_per_user == 1


def test_quota_rate_can_change(mono: ManualClock) -> None:
    quotas = Quotas({"UserUpdate": 1.0}, per_user_write_rps=None, clock=mono)
    assert [quotas.admit("AdminUpdateUserAttributes", None) for _ in range(2)] == [None, "account"]
    quotas.set_rate("UserUpdate", 5.0)
    assert sum(quotas.admit("AdminUpdateUserAttributes", None) is None for _ in range(10)) == 5
    quotas.set_rate("UserUpdate", None)
    assert all(quotas.admit("AdminUpdateUserAttributes", None) is None for _ in range(100))


# ------------------------------------------------------------------------------------------
# Over HTTP


@pytest.fixture
async def quota_fake(mono: ManualClock) -> AsyncIterator[tuple[FakeCognito, PoolInfo]]:
    async with FakeCognito(
        user_update_rps=3, user_read_rps=None, per_user_write_rps=None, monotonic=mono
    ) as fake:
        pool = fake.create_pool()
        fake.create_user(pool.id, "alice")
        yield fake, pool


async def test_over_quota_is_a_400_too_many_requests(
    quota_fake: tuple[FakeCognito, PoolInfo],
) -> None:
    fake, pool = quota_fake
    replies = [
        await raw_call(fake, "AdminUpdateUserAttributes", admin_update(pool, value=str(i)))
        for i in range(5)
    ]
    assert [r.status for r in replies] == [200, 200, 200, 400, 400]
    assert replies[3].body == {"__type": "TooManyRequestsException", "message": "Rate exceeded"}
    assert len(fake.update_log(pool.id, "alice")) == 3  # throttled requests change nothing
    stats = fake.stats()
    assert stats.count("AdminUpdateUserAttributes", "TooManyRequestsException") == 2
    assert stats.quotas["UserUpdate"].throttled == 2
    assert stats.quotas["UserUpdate"].rate == 3


async def test_throttle_status_switch(mono: ManualClock) -> None:
    async with FakeCognito(user_update_rps=1, throttle_status=429, monotonic=mono) as fake:
        pool = fake.create_pool()
        fake.create_user(pool.id, "alice")
        await raw_call(fake, "AdminUpdateUserAttributes", admin_update(pool))
        reply = await raw_call(fake, "AdminUpdateUserAttributes", admin_update(pool))
    assert (reply.status, reply.code) == (429, "TooManyRequestsException")


async def test_aiocognito_retries_a_throttle_and_lands(
    quota_fake: tuple[FakeCognito, PoolInfo], mono: ManualClock
) -> None:
    fake, pool = quota_fake
    fake.faults.add(Fault.throttle(count=2))
    retry = aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        endpoint_url=fake.endpoint_url,
        retry=retry,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as cognito:
        await cognito.admin_update_user_attributes(
            "alice", {"nickname": "landed"}, user_pool_id=pool.id
        )
        stats = cognito.statistics()
    assert stats.throttled == 2
    assert fake.user_attributes(pool.id, "alice")["nickname"] == "landed"
    assert fake.stats().faults_injected == {"throttle": 2}


# ------------------------------------------------------------------------------------------
# Faults


@pytest.fixture
async def open_fake(mono: ManualClock) -> AsyncIterator[tuple[FakeCognito, PoolInfo]]:
    async with FakeCognito(
        user_update_rps=None, user_read_rps=None, per_user_write_rps=None, monotonic=mono, seed=11
    ) as fake:
        pool = fake.create_pool()
        fake.create_user(pool.id, "alice")
        yield fake, pool


async def test_next_n_internal_errors(open_fake: tuple[FakeCognito, PoolInfo]) -> None:
    fake, pool = open_fake
    fake.faults.add(Fault.internal_error(count=2, operations={"AdminUpdateUserAttributes"}))
    get = await raw_call(fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "alice"})
    replies = [
        await raw_call(fake, "AdminUpdateUserAttributes", admin_update(pool)) for _ in range(3)
    ]
    assert get.status == 200
    assert [(r.status, r.code) for r in replies] == [(500, "InternalErrorException")] * 2 + [
        (200, None)
    ]
    assert len(fake.update_log(pool.id, "alice")) == 1


async def test_probability_is_seeded_and_roughly_right(
    open_fake: tuple[FakeCognito, PoolInfo],
) -> None:
    fake, pool = open_fake
    fake.faults.add(Fault.throttle(probability=0.3))
    replies = [
        await raw_call(fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "alice"})
        for _ in range(200)
    ]
    throttled = sum(r.status == 400 for r in replies)
    assert 35 <= throttled <= 85  # 60 expected; the seed makes this run reproducible
    assert fake.stats().faults_injected["throttle"] == throttled


async def test_schedule_window(open_fake: tuple[FakeCognito, PoolInfo], mono: ManualClock) -> None:
    fake, pool = open_fake
    fake.faults.add(Fault.throttle(start=10.0, end=20.0))
    body = {"UserPoolId": pool.id, "Username": "alice"}
    statuses = []
    for at in (5.0, 10.0, 19.9, 20.0):
        mono.now = 100.0 + at
        statuses.append((await raw_call(fake, "AdminGetUser", body)).status)
    assert statuses == [200, 400, 400, 200]


async def test_resets_before_and_after_apply(open_fake: tuple[FakeCognito, PoolInfo]) -> None:
    fake, pool = open_fake
    one_try = aiocognito.RetryPolicy(max_attempts=1)
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        user_pool_id=pool.id,
        endpoint_url=fake.endpoint_url,
        retry=one_try,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as cognito:
        fake.faults.add(Fault.reset_before(count=1))
        with pytest.raises(aiocognito.TransportError):
            await cognito.admin_update_user_attributes("alice", {"nickname": "before"})
        assert "nickname" not in fake.user_attributes(pool.id, "alice")
        fake.faults.add(Fault.reset_after(count=1))
        with pytest.raises(aiocognito.TransportError):
            await cognito.admin_update_user_attributes("alice", {"nickname": "after"})
        assert fake.user_attributes(pool.id, "alice")["nickname"] == "after"
        # The connection pool recovers: the next call works.
        await cognito.admin_update_user_attributes("alice", {"nickname": "fine"})
    assert fake.stats().count("AdminUpdateUserAttributes", "reset") == 2


async def test_read_timeout_applies_but_answers_too_late(
    open_fake: tuple[FakeCognito, PoolInfo],
) -> None:
    fake, pool = open_fake
    fake.faults.add(Fault.read_timeout(30.0, count=1))
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        user_pool_id=pool.id,
        endpoint_url=fake.endpoint_url,
        retry=aiocognito.RetryPolicy(max_attempts=1),
        read_timeout=0.2,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as cognito:
        with anyio.fail_after(10), pytest.raises(aiocognito.TransportError):
            await cognito.admin_update_user_attributes("alice", {"nickname": "late"})
    assert fake.user_attributes(pool.id, "alice")["nickname"] == "late"


async def test_latency_is_added(open_fake: tuple[FakeCognito, PoolInfo]) -> None:
    fake, pool = open_fake
    fake.latency = Latency.fixed(0.05)
    started = anyio.current_time()
    await raw_call(fake, "AdminGetUser", {"UserPoolId": pool.id, "Username": "alice"})
    assert anyio.current_time() - started >= 0.05


def test_latency_distributions() -> None:
    import random

    rng = random.Random(5)
    assert Latency.fixed(0.02).sample(rng) == 0.02
    assert all(0.01 <= Latency.uniform(0.01, 0.03).sample(rng) <= 0.03 for _ in range(100))
    tail = sorted(Latency.long_tail(median=0.02, p99=0.2).sample(rng) for _ in range(5000))
    assert 0.015 < tail[2500] < 0.027
    assert 0.12 < tail[4950] < 0.32


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        Fault.throttle(probability=1.5)
    with pytest.raises(ValueError, match="throttle_status"):
        FakeCognito(throttle_status=503)
