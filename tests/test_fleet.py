"""The fleet mode: one quota bucket in a real Redis, shared by every process.

The script tests drive the Lua script with explicit instants, so the bucket's arithmetic is
checked exactly; the limiter tests run it for real, against a server a test may kill, slow down
or restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
import redis.asyncio as aioredis

import aiocognito
from aiocognito import _bulkcli, _config, _fleet, _limits, cli
from aiocognito._bulkcli import UpdateSettings, fleet_text, run_update
from aiocognito._client import host_quota_url
from aiocognito._errors import QuotaDeadlineError
from aiocognito._fleet import LOCAL_FALLBACK, SHARED, FleetLimiter
from aiocognito._limits import CategoryStatistics, Priority
from aiocognito.testing import FakeCognito
from tests.fleet_workers import two_limiters_share_one_quota, workers_hold_the_quota_together
from tests.gates import wait_until
from tests.redis_server import DelayingProxy, RedisServer

pytestmark = pytest.mark.redis


KEYS = ["aiocognito:{g}:UserUpdate:bucket", "aiocognito:{g}:UserUpdate:processes"]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


class Reply:
    """The script's answer, by name."""

    def __init__(self, raw: list[Any]) -> None:
        self.granted = int(raw[0])
        self.wait = float(raw[1])
        self.rate = float(raw[2])
        self.judges = bool(raw[3])
        self.pulled = int(raw[4])
        self.pulled_throttled = int(raw[5])
        self.processes = int(raw[6])
        self.state = raw[7].decode() if isinstance(raw[7], bytes) else str(raw[7])


async def take(
    redis: aioredis.Redis,
    member: str,
    now: float,
    *,
    wanted: int = 1,
    bulk: bool = False,
    answers: int = 0,
    throttled: int = 0,
    judge_rate: str = "",
    start_rate: float = 10.0,
    ceiling: str = "",
    state: str = "",
    debt: int = 0,
    debt_age: float = 0.0,
) -> Reply:
    script = redis.register_script(_fleet._TAKE)
    raw = await script(
        keys=KEYS,
        args=[
            member, wanted, 1 if bulk else 0, answers, throttled, judge_rate, start_rate,
            ceiling, _limits.BURST_SECONDS, _fleet.RESERVE_SHARE, _fleet.JUDGE_LEASE,
            _fleet.PULL_EVERY, _fleet.KEY_TTL, _fleet.PROCESS_WINDOW, repr(now), state,
            _fleet.CEILING_MEMORY, debt, repr(debt_age),
        ],
    )  # fmt: skip
    return Reply(raw)


# ------------------------------------------------------------------------------------------
# The bucket (GCRA), exactly


async def test_bucket_gives_its_burst_then_paces_at_the_rate(redis: aioredis.Redis) -> None:
    # 10/s with a 0.2 s burst: two tokens at once, then one every 0.1 s.
    assert [(await take(redis, "a", 100.0)).granted for _ in range(3)] == [1, 1, 0]
    refused = await take(redis, "a", 100.0)
    assert refused.wait == pytest.approx(0.1)
    assert (await take(redis, "b", 100.05)).granted == 0  # another process: the same bucket
    assert (await take(redis, "b", 100.1)).granted == 1
    assert (await take(redis, "a", 100.1)).granted == 0


async def test_a_lease_never_exceeds_the_burst(redis: aioredis.Redis) -> None:
    # 100/s: a 20-token burst. Asking for 50 gets 20; then one per 10 ms.
    assert (await take(redis, "a", 50.0, wanted=50, start_rate=100.0)).granted == 20
    assert (await take(redis, "a", 50.0, wanted=5, start_rate=100.0)).granted == 0
    assert (await take(redis, "a", 50.03, wanted=5, start_rate=100.0)).granted == 3


async def test_a_debt_is_charged_before_anything_is_granted(redis: aioredis.Redis) -> None:
    # 100/s: a 20-token burst. Five requests went on without a token: 15 are left.
    assert (await take(redis, "a", 50.0, wanted=50, start_rate=100.0, debt=5)).granted == 15
    # Once the bucket is empty, a debt pushes the next token back by its share of the rate.
    charged = await take(redis, "b", 50.0, start_rate=100.0, debt=3)
    assert charged.granted == 0
    assert charged.wait == pytest.approx(0.04)
    # A debt is charged up to the burst only: a full bucket of 20 is emptied, no more.
    assert (await take(redis, "b", 60.0, start_rate=100.0, debt=500)).wait == pytest.approx(0.01)
    # A debt is charged as of when its requests went: a bucket idle since has refilled.
    assert (await take(redis, "b", 70.0, start_rate=100.0, debt=5, debt_age=0.05)).granted == 1
    assert (await take(redis, "b", 70.0, start_rate=100.0, wanted=20)).granted == 19


async def test_bulk_leaves_a_reserve_that_interactive_callers_use(redis: aioredis.Redis) -> None:
    # 50/s: a 10-token burst; bulk callers leave one token for interactive ones.
    bulk = [(await take(redis, "a", 10.0, bulk=True, start_rate=50.0)).granted for _ in range(10)]
    assert bulk == [1] * 9 + [0]
    assert (await take(redis, "b", 10.0, start_rate=50.0)).granted == 1  # interactive: served
    assert (await take(redis, "b", 10.0, start_rate=50.0)).granted == 0  # and now it is empty
    # Paced, bulk waits one period longer than an interactive caller would.
    waits = [
        (await take(redis, "a", 10.0, bulk=True, start_rate=50.0)).wait,
        (await take(redis, "b", 10.0, start_rate=50.0)).wait,
    ]
    assert waits == [pytest.approx(0.04), pytest.approx(0.02)]


async def test_the_lowest_configured_ceiling_paces_the_whole_fleet(redis: aioredis.Redis) -> None:
    assert (await take(redis, "a", 1.0, start_rate=100.0)).rate == 100.0
    assert (await take(redis, "b", 1.0, start_rate=100.0, ceiling="5.0")).rate == 5.0
    assert (await take(redis, "a", 1.5, ceiling="50.0")).rate == 5.0  # b's binds a too
    # b stops taking: its ceiling binds for CEILING_MEMORY more, then the next lowest does.
    assert (await take(redis, "a", 1.0 + _fleet.CEILING_MEMORY - 0.1, ceiling="50.0")).rate == 5.0
    assert (await take(redis, "a", 1.0 + _fleet.CEILING_MEMORY + 0.1, ceiling="50.0")).rate == 50.0
    assert (await take(redis, "c", 12.0)).rate == 50.0


async def test_a_refusal_always_says_to_wait(redis: aioredis.Redis) -> None:
    """At any rate and any instant, a refused draw answers a positive wait (a zero would read
    as a grant), and the bucket never grants more than its burst plus the rate allows."""
    now = 96_000_000.123456  # Redis TIME minus EPOCH, in a year or two
    for rate in (0.7, 3.0, 3.3333, 25.0, 149.9, 3_000.0):
        await redis.delete(*KEYS)
        granted, t = 0, now
        while t < now + 0.5:
            reply = await take(redis, f"r{rate}", t, start_rate=rate)
            if reply.granted:
                granted += 1
            else:
                assert reply.wait > 0
            t += min(reply.wait, 0.5) if not reply.granted else 0.0
            if granted > 3 * rate + 10:
                break
        burst = max(1.0, rate * _limits.BURST_SECONDS)
        assert granted <= burst + rate * 0.5 + 1


# ------------------------------------------------------------------------------------------
# Judging together


async def test_one_judge_at_a_time_and_a_silent_judge_hands_over(redis: aioredis.Redis) -> None:
    assert (await take(redis, "a", 1.0)).judges
    assert not (await take(redis, "b", 1.2)).judges
    # a judges on: its rate and state are stored; b's claim to a rate is ignored.
    await take(redis, "a", 1.5, judge_rate="7.5", state='{"w_max": 9.0}')
    await take(redis, "b", 1.6, judge_rate="99")
    assert (await take(redis, "b", 1.7)).rate == 7.5
    # a goes quiet past its lease: the next process to take judges, with a's state.
    later = await take(redis, "b", 1.5 + _fleet.JUDGE_LEASE + 0.01)
    assert later.judges
    assert json.loads(later.state) == {"w_max": 9.0}
    assert not (await take(redis, "a", 2.6)).judges


async def test_the_judge_pulls_the_fleets_answers(redis: aioredis.Redis) -> None:
    assert (await take(redis, "judge", 5.0)).pulled == -1  # just elected: nothing due yet
    await take(redis, "b", 5.01, answers=10, throttled=3)
    await take(redis, "c", 5.02, answers=5, throttled=1)
    assert (await take(redis, "b", 5.2)).pulled == -1  # only the judge pulls
    pulled = await take(redis, "judge", 5.2, answers=1)
    assert (pulled.pulled, pulled.pulled_throttled) == (16, 4)
    again = await take(redis, "judge", 5.25)
    assert again.pulled == -1  # not due again for PULL_EVERY
    assert (await take(redis, "judge", 5.4)).pulled == 0  # the counters were emptied


async def test_processes_are_counted_over_the_last_window(redis: aioredis.Redis) -> None:
    await take(redis, "a", 1.0)
    await take(redis, "b", 1.5)
    assert (await take(redis, "c", 1.9)).processes == 3
    assert (await take(redis, "c", 2.4)).processes == 2  # a last took 1.4 s ago


async def test_every_key_expires(redis: aioredis.Redis) -> None:
    await take(redis, "a", 1.0, answers=3)
    for key in KEYS:
        ttl = await redis.ttl(key)
        assert 0 < ttl <= _fleet.KEY_TTL


# ------------------------------------------------------------------------------------------
# The limiter against a live server


def fleet(url: str, *, ceiling: float | None = 200.0, group: str = "g") -> FleetLimiter:
    return FleetLimiter("UserUpdate", ceiling, adaptive=True, url=url, group=group)


async def test_two_processes_share_one_quota(redis_server: RedisServer) -> None:
    await two_limiters_share_one_quota(redis_server.url)


async def test_callers_waiting_together_lease_tokens_together(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url)  # 200/s: up to 4 tokens (20 ms) a round trip
    await limiter.attach()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(limiter.acquire, Priority.BULK)
        # Round trips, refused ones included: one per caller without leasing.
        assert limiter.statistics().sent == 200
        assert limiter.takes < 200 * 0.75
    finally:
        await limiter.detach()


async def test_redis_killed_falls_back_with_one_warning_then_rejoins(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = fleet(redis_server.url)
    await limiter.attach()
    try:
        await limiter.acquire()
        assert limiter.statistics().mode == SHARED
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="aiocognito"):
            with anyio.fail_after(5):
                for _ in range(50):
                    await limiter.acquire()  # never fails: the local limiter takes over
        assert limiter.statistics().mode == LOCAL_FALLBACK
        assert limiter.statistics().fallbacks == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unreachable" in warnings[0].getMessage()
        monkeypatch.setattr(_fleet, "RECONNECT_CAP", 0.05)  # rejoin soon after the restart
        async with anyio.create_task_group() as tg:
            limiter._seed(0.5)  # local pacing slow enough that callers queue locally
            for _ in range(6):
                tg.start_soon(limiter.acquire, Priority.BULK)
            await wait_until(lambda: len(limiter._queues.by_priority[Priority.BULK]) >= 4)
            redis_server.start()  # the same port, empty: the keys are recreated
            # Callers still waiting locally go back to the fleet's bucket (200/s): none is
            # left paced at 0.5/s beside it (for 8 s more), which together would overdraw
            # the quota.
            await wait_until(
                lambda: limiter.mode == SHARED and not limiter._queues.by_priority[Priority.BULK]
            )
        await limiter.acquire()
        assert limiter.statistics().mode == SHARED
        probe = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await probe.exists(*limiter.keys) == 2
        finally:
            await probe.aclose()
    finally:
        await limiter.detach()


async def test_a_slow_redis_is_left_within_one_request(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url)
    await limiter.attach()
    blocker = aioredis.Redis.from_url(redis_server.url)
    try:
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            # The server stops answering anyone for 0.5 s.
            tg.start_soon(blocker.execute_command, "DEBUG", "SLEEP", "0.5")
            await anyio.sleep(0.05)
            started = anyio.current_time()
            await limiter.acquire()
            waited = anyio.current_time() - started
            assert waited < 0.3  # the request went on under the local limiter
            assert limiter.statistics().mode == SHARED  # one slow answer is not an outage
            for _ in range(_fleet.SLOW_STRIKES - 1):
                await limiter.acquire()
            # Slow again and again, within the 0.5 s: now it is an outage.
            assert anyio.current_time() - started < 0.45
            assert limiter.statistics().mode == LOCAL_FALLBACK
            assert limiter.statistics().fallbacks == 1
    finally:
        await blocker.aclose()
        await limiter.detach()


async def test_a_request_sent_on_while_redis_was_slow_is_charged_if_no_token_paid(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The draw below must be answered, not found slow, on a loaded machine too.
    monkeypatch.setattr(_fleet, "REDIS_BUDGET", 5.0)
    limiter = fleet(redis_server.url, ceiling=2.0)  # a token every 0.5 s, a burst of one
    await limiter.attach()
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        limiter._answered([0, "0.5", "2.0", 0, -1, 0, 2, "", "0", ""], used=1, late=True)
        limiter._answered([1, "0", "2.0", 0, -1, 0, 2, "", "0", ""], used=1, late=True)
        assert limiter._debt == 1  # the second late answer's token paid for its caller
        assert await admin.hget(limiter.keys[0], "tat") is None  # a full bucket: one token
        # The draw carries the debt: the bucket's one token pays for it, and the draw waits.
        assert await limiter._draw(Priority.INTERACTIVE, 1) == pytest.approx(0.5, abs=0.05)
        assert limiter._debt == 0
    finally:
        await admin.aclose()
        await limiter.detach()


async def test_a_request_that_never_went_on_locally_is_not_charged(
    redis_server: RedisServer,
) -> None:
    limiter = fleet(redis_server.url, ceiling=1.0)  # locally, a token a second
    await limiter.attach()

    calls = 0

    async def late_refusal(keys: list[str], args: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.08)  # Redis answering over the 50 ms budget
        return [0, "1.0", "1.0", 0, -1, 0, 1, "", "0", ""]

    limiter._script = late_refusal
    try:
        sent, answered = 0, limiter.takes

        async def caller() -> None:
            nonlocal sent
            await limiter.acquire()
            sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            tg.start_soon(caller)
            # Both draws were slow: one caller went on under the local limiter at once; the
            # other waits there for its next token, and leaves.
            await wait_until(lambda: calls == 2 and sent == 1 and not len(limiter._waiting))
            tg.cancel_scope.cancel()
        await wait_until(lambda: limiter.takes == answered + 2)  # both refusals landed
        assert sent == 1
        assert limiter._debt == 1  # the one request sent, not the one that never went
    finally:
        await limiter.detach()


async def test_a_redis_slow_now_and_then_does_not_overdraw_the_quota(
    redis_server: RedisServer,
) -> None:
    # Four processes on a 50/s quota; a fifth of Redis's answers come 60 ms late, over the
    # budget, so their requests go on locally. Before a refused late answer charged its
    # request to the bucket, they took about 66/s.
    rate, seconds = 50.0, 3.0
    async with contextlib.AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(
                DelayingProxy(redis_server.port, chance=0.2, delay=0.06, seed=seed)
            )
            for seed in range(4)
        ]
        limiters = [
            FleetLimiter("UserUpdate", rate, adaptive=False, url=proxy.url, group="slow")
            for proxy in proxies
        ]
        for limiter in limiters:
            await limiter.attach()
            stack.push_async_callback(limiter.detach)
        taken = 0

        async def caller(limiter: FleetLimiter) -> None:
            nonlocal taken
            while True:
                await limiter.acquire()
                taken += 1

        async with anyio.create_task_group() as tg:
            for limiter in limiters:
                for _ in range(4):
                    tg.start_soon(caller, limiter)
            await anyio.sleep(0.5)  # past the first burst
            first = taken
            await anyio.sleep(seconds)
            measured = (taken - first) / seconds
            tg.cancel_scope.cancel()
        assert sum(proxy.delayed for proxy in proxies) >= 20  # Redis was slow, often
        assert all(limiter.statistics().mode == SHARED for limiter in limiters)
        # At most the quota, give or take one burst over the measured seconds.
        assert measured <= rate * (1 + _limits.BURST_SECONDS / seconds) + 1.0, measured


async def test_unreachable_at_open_starts_in_fallback(caplog: pytest.LogCaptureFixture) -> None:
    limiter = fleet("redis://127.0.0.1:9/0")  # the discard port: nothing listens
    with caplog.at_level(logging.WARNING, logger="aiocognito"):
        await limiter.attach()
        try:
            await limiter.acquire()
            assert limiter.statistics().mode == LOCAL_FALLBACK
        finally:
            await limiter.detach()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


async def test_a_deadline_the_fleet_cannot_meet_fails_fast(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url, ceiling=2.0)  # a burst of one token, then one per 0.5 s
    await limiter.attach()
    try:
        await limiter.acquire()
        with pytest.raises(QuotaDeadlineError):
            await limiter.acquire(deadline=limiter._clock() + 0.1)
        assert limiter.statistics().sent == 1
    finally:
        await limiter.detach()


# ------------------------------------------------------------------------------------------
# Configuration


def test_the_url_password_never_shows() -> None:
    limits = aiocognito.Limits(shared_quota_url="redis://user:hunter2@cache:6379/0")
    assert "hunter2" not in repr(limits)
    assert "user:***@cache:6379" in repr(limits)


@pytest.mark.parametrize("url", ["http://cache:6379", "cache:6379", "memcached://x"])
def test_only_redis_and_file_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="redis://, rediss://, unix:// or file://"):
        aiocognito.Limits(shared_quota_url=url)


def test_the_environment_turns_it_on_and_an_empty_url_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOCOGNITO_SHARED_QUOTA_URL", "redis://cache:6379/0")
    assert aiocognito.CognitoClient()._shared_quota_url == "redis://cache:6379/0"
    # "" turns the fleet's URL off; sharing on this host is the other setting's business.
    off = aiocognito.CognitoClient(limits=aiocognito.Limits(shared_quota_url=""))
    assert (off._shared_quota_url, off._when_shared) == (host_quota_url(), True)
    alone = aiocognito.Limits(shared_quota_url="", share_on_host=False)
    assert aiocognito.CognitoClient(limits=alone)._shared_quota_url is None
    monkeypatch.setenv("AIOCOGNITO_SHARED_QUOTA_URL", "cache:6379")
    with pytest.raises(ValueError, match="AIOCOGNITO_SHARED_QUOTA_URL"):
        aiocognito.CognitoClient()


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "redis.asyncio", None)
    with pytest.raises(aiocognito.ConfigurationError, match=r"aiocognito\[redis\]"):
        aiocognito.CognitoClient(limits=aiocognito.Limits(shared_quota_url="redis://x:1/0"))


# ------------------------------------------------------------------------------------------
# Processes on one account


def test_worker_processes_hold_the_account_quota_together(
    redis_server: RedisServer,
) -> None:
    workers_hold_the_quota_together(redis_server.url)


# ------------------------------------------------------------------------------------------
# The command line


async def test_update_shows_the_fleet_and_hides_the_password(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bulkcli, "PROGRESS_EVERY", 0.0)  # a record per tick
    fake = FakeCognito(user_update_rps=200, per_user_write_rps=None, seed=4)
    pool = fake.create_pool()
    fake.seed_users(pool.id, 80)
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps({"username": f"user{i}", "attributes": {"nickname": f"n{i}"}}) + "\n"
            for i in range(80)
        )
    )
    with fake.run_in_thread():
        options = UpdateSettings(
            input=str(path),
            user_pool_id=pool.id,
            region="us-east-1",
            endpoint_url=fake.endpoint_url,
            rps=200,
            progress="json",
            shared_quota_url=redis_server.url,
            credentials={"aws_access_key_id": "k", "aws_secret_access_key": "s"},
        )
        out = io.StringIO()
        assert await run_update(options, out, err=io.StringIO()) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    final = records[-1]
    assert (final["event"], final["ok"]) == ("done", 80)
    assert (final["quota_mode"], final["fleet_rate"], final["fleet_processes"]) == (
        "shared",
        200.0,
        1,
    )
    assert "fleet 200.0/s across 1 process" in fleet_text(_client_stats(final))


def _client_stats(record: dict[str, Any]) -> aiocognito.ClientStatistics:
    """Client statistics carrying a progress record's fleet figures, for the text line."""
    category = CategoryStatistics(
        category="UserUpdate", rate=record["fleet_rate"], ceiling=None, adaptive=True, sent=0,
        throttled=0, queued=0, cuts=0, noise_tolerance=0.0, mode=record["quota_mode"],
        fleet_rate=record["fleet_rate"], fleet_processes=record["fleet_processes"],
    )  # fmt: skip
    return attrs.evolve(
        aiocognito.CognitoClient().statistics(), categories={"UserUpdate": category}
    )


def test_the_resume_hint_masks_the_urls_password() -> None:
    command = ["aiocognito", "update", "--shared-quota-url", "redis://:pw1@h/0",
               "--shared-quota-url=rediss://u:pw2@h:6380/1"]  # fmt: skip
    shown = " ".join(_bulkcli._redacted(command))
    assert "pw1" not in shown
    assert "pw2" not in shown
    assert "redis://:***@h/0" in shown


def test_the_flag_refuses_a_bad_url_without_echoing_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["update", "--input", "x", "--shared-quota-url", "http://u:hunter2@h/"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--shared-quota-url" in err
    assert "hunter2" not in err


@pytest.mark.moto
async def test_quota_group_account_reads_the_account_id_once_at_open(
    moto_url: str, redis_server: RedisServer
) -> None:
    limits = aiocognito.Limits(quota_group="account", shared_quota_url=redis_server.url)
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        endpoint_url=moto_url,
        limits=limits,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as cognito:
        limiter = cognito._limiters["UserUpdate"]
        assert isinstance(limiter, FleetLimiter)
        # moto's account; two AWS accounts on one Redis never share a bucket.
        assert limiter.keys[0] == "aiocognito:{account=123456789012|us-east-1}:UserUpdate:bucket"


async def test_quota_group_account_needs_reachable_sts() -> None:
    limits = aiocognito.Limits(quota_group="account")
    client = aiocognito.CognitoClient(
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # nothing listens
        limits=limits,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        connect_timeout=0.5,
    )
    with pytest.raises(aiocognito.ConfigurationError, match="account id"):
        await client.__aenter__()
    assert client._limiters == {}


async def test_a_bulk_run_finishes_when_redis_is_killed_mid_run(
    redis_server: RedisServer,
) -> None:
    """Every row succeeds although Redis dies (SIGKILL) in the middle of the run."""
    fake = FakeCognito(user_update_rps=100, per_user_write_rps=None, seed=5)
    pool = fake.create_pool()
    fake.seed_users(pool.id, 150)
    limits = aiocognito.Limits(user_update_rps=100, shared_quota_url=redis_server.url)
    rows = [
        aiocognito.AttributeUpdate(username=f"user{i}", attributes={"nickname": f"n{i}"})
        for i in range(150)
    ]
    outcomes: list[aiocognito.UpdateOutcome] = []
    modes: set[str] = set()
    with fake.run_in_thread():
        async with (
            aiocognito.CognitoClient(
                region_name="us-east-1",
                endpoint_url=fake.endpoint_url,
                user_pool_id=pool.id,
                limits=limits,
                aws_access_key_id="k",
                aws_secret_access_key="s",
            ) as cognito,
            cognito.bulk_update(rows) as results,
        ):
            async for outcome in results:
                outcomes.append(outcome)
                modes.add(cognito.statistics().categories["UserUpdate"].mode)
                if len(outcomes) == 50:
                    redis_server.kill()
    assert len(outcomes) == 150
    assert all(o.ok for o in outcomes)
    assert modes == {SHARED, LOCAL_FALLBACK}
    assert {fake.user_attributes(pool.id, f"user{i}")["nickname"] for i in range(150)} == {
        f"n{i}" for i in range(150)
    }


async def test_a_client_with_a_lower_quota_lowers_the_fleets_ceiling_here(
    redis_server: RedisServer,
) -> None:
    limiter = fleet(redis_server.url, ceiling=100.0)
    await limiter.attach()
    try:
        await limiter.acquire()
        assert limiter.rate() == 100.0
        limiter.lower_ceiling(10.0)
        await limiter.acquire()
        assert limiter.rate() == 10.0
        assert limiter.statistics().fleet_rate == 10.0
    finally:
        await limiter.detach()


# ------------------------------------------------------------------------------------------
# Review regressions


async def test_refunded_tokens_never_exceed_the_burst(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url, ceiling=25.0)  # a 5-token burst
    await limiter.attach()
    try:
        for _ in range(5):
            await limiter.acquire()
        for _ in range(40):
            limiter.refund()  # never sent, each of them: kept, but only up to the burst
        assert len(limiter._leased) <= 5
    finally:
        await limiter.detach()


async def test_a_deadline_behind_a_refused_draw_fails_at_once(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url, ceiling=2.0)
    await limiter.attach()
    try:
        await limiter.acquire()
        started = anyio.current_time()
        with pytest.raises(QuotaDeadlineError):
            await limiter.acquire(deadline=limiter._clock() + 0.1)  # next token in 0.5 s
        assert anyio.current_time() - started < 0.09  # it did not wait for the token first
    finally:
        await limiter.detach()


async def test_a_server_that_is_not_redis_falls_back_without_failing_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def pong(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while await stream.receive():
                    await stream.send(b"+PONG\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, pong)
        limiter = fleet(f"redis://127.0.0.1:{port}/0")
        with caplog.at_level(logging.WARNING, logger="aiocognito"):
            await limiter.attach()
            try:
                for _ in range(5):
                    await limiter.acquire()
                assert limiter.statistics().mode == LOCAL_FALLBACK
            finally:
                await limiter.detach()
        tg.cancel_scope.cancel()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


async def test_a_redis_that_pings_but_cannot_run_the_script_is_not_rejoined(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fleet, "RECONNECT_CAP", 0.02)  # many reconnect attempts in the test
    admin = aioredis.Redis.from_url(redis_server.url)
    limiter = fleet(redis_server.url)
    try:
        await limiter.attach()
        await limiter.acquire()
        await admin.execute_command("ACL", "SETUSER", "default", "-@scripting")  # type: ignore[no-untyped-call]
        with caplog.at_level(logging.INFO, logger="aiocognito"):
            with anyio.fail_after(5):
                for _ in range(30):
                    await limiter.acquire()
                    await anyio.sleep(0.01)  # let the reconnect task try, again and again
        assert limiter.mode == LOCAL_FALLBACK
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unreachable" in m for m in messages) == 1
        assert not any("rejoined" in m for m in messages)
    finally:
        await limiter.detach()
        await admin.aclose()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://:hunter2@cache:6379/0", "hunter2"),
        ("redis://user:hun#ter2@cache:6379/0", "hun#ter2"),
        ("redis://user:pa/ss?w@rd@cache:6379/0", "pa/ss?w@rd"),
        ("redis://cache:6379/0?password=hunter2&db=1", "hunter2"),
        ("rediss://u:p%40ss@[::1:6379/0", "p%40ss"),
    ],
)
def test_a_password_in_the_url_is_masked_wherever_it_is(url: str, secret: str) -> None:
    assert secret not in (_config.redact_url(url) or "")
    with contextlib.suppress(ValueError):
        assert secret not in repr(aiocognito.Limits(shared_quota_url=url))


async def test_closing_the_lower_quota_client_raises_the_fleets_rate_back(
    redis_server: RedisServer,
) -> None:
    limiter = fleet(redis_server.url, ceiling=25.0)
    await limiter.attach()
    try:
        limiter.lower_ceiling(10.0)  # a second client, told 10/s, joins
        for _ in range(3):
            await limiter.acquire()
        assert limiter.rate() == 10.0
        limiter.release_ceiling(10.0)  # ...and closes
        for _ in range(6):
            await limiter.acquire()
        assert limiter.rate() == 25.0
        assert limiter._judge is not None
        assert limiter._judge.base == 25.0
    finally:
        await limiter.detach()


async def test_a_departed_processs_lower_quota_stops_binding_the_fleet(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fleet, "CEILING_MEMORY", 0.3)
    monkeypatch.setattr(_fleet, "JUDGE_LEASE", 0.1)
    a, b = fleet(redis_server.url, ceiling=25.0), fleet(redis_server.url, ceiling=10.0)
    await a.attach()
    await b.attach()
    try:
        for _ in range(3):
            await b.acquire()
            await a.acquire()
        assert a.rate() == 10.0
        await b.detach()  # b leaves; its ceiling binds 0.3 s more, then a's own does
        with anyio.fail_after(5):
            while a.rate() != 25.0:
                await a.acquire()
                await anyio.sleep(0.05)  # real time: the ceiling's memory runs on Redis's clock
        assert a._judge is not None
        assert a._judge.base == 25.0
    finally:
        await a.detach()


async def test_one_process_alone_gets_a_low_quota_whole(redis_server: RedisServer) -> None:
    limiter = fleet(redis_server.url, ceiling=4.0)  # a bucket of one token
    await limiter.attach()
    try:
        granted = 0

        async def caller() -> None:
            nonlocal granted
            while True:
                await limiter.acquire(Priority.BULK)
                granted += 1

        with anyio.move_on_after(2.0):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(caller)
        assert granted >= 8  # 4/s for 2 s (a jittered draw lost a third of it)
    finally:
        await limiter.detach()


async def test_a_cancelled_open_leaves_no_quota_and_no_connection_behind() -> None:
    accepted: list[asyncio.StreamWriter] = []

    def keep(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answered, closed at the end

    silent = await asyncio.start_server(keep, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{silent.sockets[0].getsockname()[1]}/0"
    try:
        low = aiocognito.CognitoClient(
            region_name="us-east-1",
            limits=aiocognito.Limits(user_update_rps=5, shared_quota_url=url),
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
        with anyio.move_on_after(0.2) as scope:
            await low.__aenter__()  # cancelled while the fleet limiter PINGs
        assert scope.cancelled_caught
        limiter = _limits.shared_limiter("us-east-1|aws", "UserUpdate", 25.0, adaptive=True,
                                         shared_quota_url=url)  # fmt: skip
        assert isinstance(limiter, FleetLimiter)
        assert limiter._ceilings == [25.0]  # the cancelled client's 5/s no longer counts
        assert limiter._users == 0
        assert limiter._redis is None
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_caller_cancelled_mid_draw_loses_no_answers(redis_server: RedisServer) -> None:
    judge, other = fleet(redis_server.url), fleet(redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)
    await judge.attach()
    await other.attach()
    try:
        await judge.acquire()  # the judge: it pulls the counters, but only when it draws
        await other.acquire()
        for _ in range(30):
            other.record(throttled=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(admin.execute_command, "DEBUG", "SLEEP", "0.2")  # Redis stalls
            await anyio.sleep(0.02)
            with anyio.move_on_after(0.01):
                await other.acquire()  # its draw carries the 30 answers; then it is cancelled
        with anyio.fail_after(5):
            # The draw still lands once Redis answers: the answers reach the fleet's counters.
            while await admin.hget(judge.keys[0], "throttled") is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert await admin.hget(judge.keys[0], "throttled") == b"30"
        assert other._throttles == 0  # counted once, not kept to be sent again
    finally:
        await other.detach()
        await judge.detach()
        await admin.aclose()


# ------------------------------------------------------------------------------------------
# Priority inheritance: a claim promoted while it waits for the fleet's bucket


async def test_a_promoted_bulk_waiter_overtakes_the_fleets_bulk_queue(
    redis_server: RedisServer,
) -> None:
    limiter = fleet(redis_server.url, ceiling=20.0)  # a 4-token burst, one of it the reserve
    await limiter.attach()
    order: list[str] = []
    claims = {f"bulk{i}": _limits.QuotaClaim() for i in range(12)}

    async def take(name: str) -> None:
        await limiter.acquire(Priority.BULK, claim=claims[name])
        order.append(name)

    try:
        async with anyio.create_task_group() as tg:
            for name in claims:
                tg.start_soon(take, name)
            promoted = claims["bulk11"]
            await wait_until(lambda: promoted in limiter._waiting.by_priority[Priority.BULK])
            behind = len(limiter._waiting.by_priority[Priority.BULK])
            served = len(order)
            promoted.promote()
            assert promoted in limiter._waiting.by_priority[Priority.INTERACTIVE]
        # The queue's head may be in the middle of its draw, and take that token first.
        assert behind >= 5, behind
        assert order.index("bulk11") <= served + 1, (order, served)
        assert sorted(order) == sorted(claims)
    finally:
        await limiter.detach()


async def test_a_promoted_bulk_waiter_draws_as_interactive_uncapped(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10/s: a 2-token burst whose second token bulk callers leave to interactive ones. After a
    # bulk grant, the next bulk caller waits for the refill (0.1 s); promoted, it asks the
    # bucket again as interactive and takes the reserve at once, and its share is not charged.
    limiter = fleet(redis_server.url, ceiling=10.0)
    await limiter.attach()
    draws: list[tuple[Priority, float | None]] = []
    draw = limiter._draw

    async def recorded(priority: Priority, wanted: int) -> float | None:
        taken = await draw(priority, wanted)
        draws.append((priority, taken))
        return taken

    monkeypatch.setattr(limiter, "_draw", recorded)
    share = _limits.ShareLimit(0.5)
    try:
        await limiter.acquire(Priority.BULK, share=share)
        assert draws == [(Priority.BULK, 0.0)]
        due = limiter._due  # when the bucket has a token again for a bulk caller: 0.1 s away
        claim = _limits.QuotaClaim()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: limiter.acquire(Priority.BULK, share=share, claim=claim))
            await wait_until(lambda: limiter._waiting.head() is claim)
            claim.promote()
        assert claim.granted
        assert limiter._clock() < due  # it took the reserve, not the next token
        assert claim.share is None  # not charged: nothing to refund to the share either
        assert draws[-1] == (Priority.INTERACTIVE, 0.0)
        assert all(taken != 0.0 for priority, taken in draws[1:-1]), draws
    finally:
        await limiter.detach()
