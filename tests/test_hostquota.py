"""The fleet's bucket in files: one host's processes share a quota with no Redis.

The contract test gives the same draws, with explicit instants, to the Lua script in a real
Redis and to its port in :mod:`aiocognito._hostquota`, and compares every answer: the two
stores must be one bucket. The rest run the file store for real, in this process and in
worker processes, against a lock another holder keeps, a corrupt file, and stale state.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

import aiocognito
from aiocognito import _fleet, _hostquota, _limits
from aiocognito._client import _shared_quota_url
from aiocognito._fleet import LOCAL_FALLBACK, SHARED, FleetLimiter
from aiocognito._hostquota import HostStore
from aiocognito._limits import Priority
from aiocognito.testing import FakeCognito
from tests.gates import wait_until
from tests.redis_server import RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKER_ENV = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
KEYS = ["aiocognito:{g}:UserUpdate:bucket", "aiocognito:{g}:UserUpdate:processes"]


def _args(rng: random.Random, now: float, members: list[str]) -> list[Any]:
    """A draw's ARGV, every argument drawn at random within what the limiter sends."""
    debt = rng.choice([0, 0, 0, 1, 3])
    return [
        rng.choice(members),
        rng.randint(1, 6),
        rng.randint(0, 1),
        rng.choice([0, 0, 5, 40]),
        rng.choice([0, 0, 1, 7]),
        rng.choice(["", "", repr(rng.uniform(5.0, 80.0))]),
        repr(rng.choice([10.0, 25.0, 40.0])),
        rng.choice(["", "", "30.0", "12.5"]),
        _limits.BURST_SECONDS,
        _fleet.RESERVE_SHARE,
        _fleet.JUDGE_LEASE,
        _fleet.PULL_EVERY,
        _fleet.KEY_TTL,
        _fleet.PROCESS_WINDOW,
        repr(now),
        rng.choice(["", "", '{"slow_start":false,"w_max":30.0,"scale":null,"held":false}']),
        _fleet.CEILING_MEMORY,
        debt,
        repr(rng.uniform(0.0, 0.5)) if debt else "0",
    ]


def _same(lua: list[Any], port: list[Any]) -> None:
    text = [x.decode() if isinstance(x, bytes) else x for x in lua]
    assert [int(text[i]) for i in (0, 3, 4, 5, 6)] == [int(port[i]) for i in (0, 3, 4, 5, 6)]
    for i in (1, 2, 8):
        assert float(text[i]) == pytest.approx(float(port[i]), rel=1e-12, abs=1e-9), i
    assert text[7] == port[7]
    assert (float(text[9]) if text[9] else None) == (float(port[9]) if port[9] else None)


@pytest.mark.redis
@pytest.mark.parametrize("seed", range(6))
async def test_the_file_store_answers_every_draw_as_the_redis_script_does(
    redis_server: RedisServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    members = ["host:1:a", "host:2:b", "host:3:c"]
    client = aioredis.Redis.from_url(redis_server.url)
    script = client.register_script(_fleet._TAKE)
    store = HostStore(f"file://{tmp_path}")
    draw = store.register_script(_fleet._TAKE)
    try:
        await client.delete(*KEYS)
        now = 1000.0 + seed
        for _ in range(300):
            # Mostly close together (the bucket's arithmetic); now and then past a judge's
            # lease, the process window or the ceiling's memory.
            now += rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 1.5, 12.0])
            args = _args(rng, now, members)
            _same(await script(keys=KEYS, args=args), await draw(keys=KEYS, args=args))
    finally:
        await store.aclose()
        await client.aclose()


def _files(directory: Path, pattern: str) -> list[Path]:
    return list(directory.glob(pattern))


def fleet(url: str, *, ceiling: float | None = 200.0) -> FleetLimiter:
    return FleetLimiter("UserUpdate", ceiling, adaptive=True, url=url, group="g")


async def test_two_limiters_share_one_quota_through_a_directory(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/quota"
    a, b = fleet(url), fleet(url)
    await a.attach()
    await b.attach()
    try:
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for limiter in (a, b):
                for _ in range(100):
                    tg.start_soon(limiter.acquire, Priority.BULK)
        elapsed = anyio.current_time() - started
        # 200 tokens at 200/s, 40 of them a burst: no faster than 0.8 s, whoever takes them.
        assert elapsed >= 0.8 * 0.97
        stats = a.statistics()
        assert (stats.mode, stats.fleet_rate, stats.fleet_processes) == (SHARED, 200.0, 2)
        assert a.statistics().sent == b.statistics().sent == 100
    finally:
        await a.detach()
        await b.detach()
    # Only this user may read or pace through it.
    directory = tmp_path / "quota"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert files
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


async def test_a_lock_held_too_long_falls_back_and_calls_still_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Another holder (a process stopped while drawing) keeps the lock: draws must not block
    # the event loop or fail a call. The draw is slow, then the store counts as down.
    monkeypatch.setattr(_hostquota, "LOCK_BUDGET", 0.2)
    url = f"file://{tmp_path}"
    limiter = fleet(url, ceiling=50.0)
    await limiter.attach()
    try:
        await limiter.acquire(Priority.INTERACTIVE)  # makes the lock file
        (lock,) = _files(tmp_path, "*.lock")
        holder = os.open(lock, os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)  # a second open file: it conflicts, as a process
        try:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0.01)

            with caplog.at_level("WARNING", logger="aiocognito"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ticker)
                    for _ in range(10):
                        await limiter.acquire(Priority.INTERACTIVE)
                    await wait_until(lambda: limiter.statistics().mode == LOCAL_FALLBACK)
                    tg.cancel_scope.cancel()
            assert ticks >= 5  # the loop ran on while the lock was held
            assert limiter.statistics().sent == 11
            assert "shared UserUpdate quota (file)" in caplog.text
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)
            os.close(holder)
        # Free again: the limiter rejoins.
        with anyio.fail_after(15):  # the reconnect backoff grew while the lock was held
            while limiter.statistics().mode != SHARED:  # noqa: ASYNC110 - no event to wait on
                await anyio.sleep(0.05)
        await limiter.acquire(Priority.INTERACTIVE)
        assert limiter.statistics().sent == 12
    finally:
        await limiter.detach()


async def test_a_corrupt_or_stale_file_is_a_new_bucket(tmp_path: Path) -> None:
    store = HostStore(f"file://{tmp_path}")
    draw = store.register_script(_fleet._TAKE)
    rng = random.Random(1)
    try:
        args = _args(rng, 500.0, ["m"])
        args[1], args[3], args[4], args[7], args[17] = 1, 0, 0, "", 0
        first = await draw(keys=KEYS, args=args)
        (state,) = _files(tmp_path, "*.json")
        assert json.loads(state.read_text())["processes"] == {"m": 500.0}
        state.write_bytes(b'{"bucket": {"tat": 1e9')  # cut off mid-write by hand
        again = await draw(keys=KEYS, args=args)
        assert again[0] == first[0] == 1  # a fresh bucket grants, as the first draw did
        # Untouched for longer than the keys' TTL: gone, as Redis expires idle keys.
        args[14] = repr(500.0 + _fleet.KEY_TTL + 1)
        args[0] = "n"
        later = await draw(keys=KEYS, args=args)
        assert later[6] == 1  # "m" is forgotten with the rest
    finally:
        await store.aclose()


def test_a_file_url_needs_no_extra_and_names_a_local_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> None:
        raise aiocognito.ConfigurationError("redis-py is not installed")

    monkeypatch.setattr(_fleet, "require_redis", missing)
    url = "file:///run/aiocognito"
    assert _shared_quota_url(aiocognito.Limits(shared_quota_url=url)) == url
    with pytest.raises(ValueError, match="not a host"):
        aiocognito.Limits(shared_quota_url="file://cache.internal/run/aiocognito")
    with pytest.raises(ValueError, match="absolute directory"):
        aiocognito.Limits(shared_quota_url="file:relative/dir")


def test_worker_processes_on_one_host_hold_the_quota_together(tmp_path: Path) -> None:
    """Three processes, each told the whole quota, share it through a directory."""
    fake = FakeCognito(user_update_rps=40, per_user_write_rps=None, seed=3)
    pool = fake.create_pool()
    fake.seed_users(pool.id, 150)
    url = f"file://{tmp_path}/quota"
    with fake.run_in_thread():
        workers = []
        for w in range(3):
            command = [
                sys.executable, str(EXAMPLES / "fleet.py"), "--worker", fake.endpoint_url,
                pool.id, url, str(50 * w), "50", "40",
            ]  # fmt: skip
            workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, env=WORKER_ENV))
        reports = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            reports.append(json.loads(out))
        stats = fake.quotas.stats()["UserUpdate"]
    assert [r["ok"] for r in reports] == [50, 50, 50]
    assert max(r["fleet_processes"] for r in reports) >= 2
    assert stats.admitted == 150
    # Uncoordinated, each would send at 40/s into a 40/s quota (87 throttles in one run).
    if not any(r["fallbacks"] for r in reports):
        assert all(r["mode"] == "shared" for r in reports)
        assert stats.throttled <= 2
