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
from tests.fleet_workers import two_limiters_share_one_quota, workers_hold_the_quota_together
from tests.gates import wait_until
from tests.redis_server import RedisServer

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
    for i in (1, 2, 8, 9):  # the same 17 significant digits, as text
        assert text[i] == port[i], i
    assert text[7] == port[7]


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
    await two_limiters_share_one_quota(f"file://{tmp_path}/quota")
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


async def test_a_file_url_needs_no_extra_and_names_a_local_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> None:
        raise aiocognito.ConfigurationError("redis-py is not installed")

    monkeypatch.setattr(_fleet, "require_redis", missing)
    for url in ("file:///run/aiocognito", "FILE:///run/aiocognito", "file://localhost/run/a"):
        # Any spelling the validation accepts goes to the file store, never to redis-py.
        assert _shared_quota_url(aiocognito.Limits(shared_quota_url=url)) == url
        assert fleet(url)._on_host
    refused = {
        "file://cache.internal/run/aiocognito": "not a host",
        "file:relative/dir": "absolute directory",
        "file:///run/aiocognito?mode=0777": "no query or fragment",
        "file:///run/aiocognito#x": "no query or fragment",
        "file:///run%2Faiocognito": "may not encode",
        "file:///run/ai%00cognito": "may not encode",
        "file:///": "not /",
    }
    for url, problem in refused.items():
        with pytest.raises(ValueError, match=problem):
            aiocognito.Limits(shared_quota_url=url)


async def _falls_back(url: str, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """The limiter on ``url`` refuses the store with one WARNING naming ``kind``, and its
    calls go on under the local limiter."""
    limiter = fleet(url, ceiling=50.0)
    with caplog.at_level("WARNING", logger="aiocognito"):
        await limiter.attach()
        try:
            with anyio.fail_after(5):
                for _ in range(3):
                    await limiter.acquire(Priority.INTERACTIVE)
            assert limiter.statistics().mode == LOCAL_FALLBACK
            assert limiter.statistics().sent == 3
        finally:
            await limiter.detach()
    assert f"quota (file) unreachable ({kind})" in caplog.text


async def test_a_directory_others_may_write_to_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another user could plant state there that stops this process's calls (a bucket due in
    # a thousand years) or lets them loose (a rate of a billion), or links and FIFOs.
    shared = tmp_path / "quota"
    shared.mkdir()
    shared.chmod(0o777)
    await _falls_back(f"file://{shared}", caplog, "QuotaDirectoryNotPrivateError")
    assert _files(shared, "*") == []  # nothing was written in it


@pytest.mark.parametrize("plant", ["fifo", "link"])
async def test_a_fifo_or_a_link_in_place_of_a_file_never_hangs_or_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, plant: str
) -> None:
    url = f"file://{tmp_path}"
    lock, state = HostStore(url)._paths(KEYS[0])
    target = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    if plant == "fifo":
        os.mkfifo(state)  # reading it would block the event loop for good
        kind = "QuotaDirectoryNotPrivateError"
    else:
        lock.symlink_to(target)  # following it would create a file where the link says
        kind = "OSError"
    await _falls_back(url, caplog, kind)
    assert not target.exists()


async def test_a_removed_lock_file_is_not_locked_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A /tmp cleaner (or an operator) removes the lock file under running processes: one
    # still holding the old file must not lock it while a newcomer locks the new one.
    monkeypatch.setattr(_hostquota, "LOCK_BUDGET", 0.2)
    args = _args(random.Random(3), 700.0, ["m"])
    old, new = HostStore(f"file://{tmp_path}"), HostStore(f"file://{tmp_path}")
    try:
        await old.register_script("")(keys=KEYS, args=args)
        lock, _ = old._paths(KEYS[0])
        lock.unlink()
        await new.register_script("")(keys=KEYS, args=args)  # makes a new lock file
        held = new._locks[KEYS[0]]
        fcntl.flock(held, fcntl.LOCK_EX)  # the newcomer is mid-draw
        try:
            with pytest.raises(TimeoutError):
                await old.register_script("")(keys=KEYS, args=args)
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        await old.register_script("")(keys=KEYS, args=args)  # free: it draws, on the new file
        assert os.fstat(old._locks[KEYS[0]]).st_ino == os.stat(lock).st_ino
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_draw_waiting_for_the_lock_gives_up_when_the_store_closes(
    tmp_path: Path,
) -> None:
    store = HostStore(f"file://{tmp_path}")
    draw = store.register_script("")
    args = _args(random.Random(4), 800.0, ["m"])
    try:
        await draw(keys=KEYS, args=args)
        lock, state = store._paths(KEYS[0])
        before = state.read_bytes()
        holder = os.open(lock, os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)
        try:
            async with anyio.create_task_group() as tg:

                async def waiting() -> None:
                    with pytest.raises(ConnectionError):
                        await draw(keys=KEYS, args=args)

                tg.start_soon(waiting)
                await anyio.sleep(0.01)  # it polls for the lock meanwhile
                await store.aclose()  # its lock file's number may now be another file's
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)
            os.close(holder)
        assert state.read_bytes() == before  # nothing written without the lock
    finally:
        await store.aclose()


async def test_a_forked_child_opens_its_own_lock_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child shares its parent's open files, and a lock on a shared one excludes neither.
    store = HostStore(f"file://{tmp_path}")
    draw = store.register_script("")
    args = _args(random.Random(5), 900.0, ["m"])
    try:
        await draw(keys=KEYS, args=args)
        inherited = store._locks[KEYS[0]]
        parent = os.getpid()
        opened: list[int] = []
        closed: list[int] = []
        real_open, real_close = os.open, os.close

        def spy_open(*a: Any, **k: Any) -> int:
            opened.append(real_open(*a, **k))
            return opened[-1]

        def spy_close(fd: int) -> None:
            closed.append(fd)
            real_close(fd)

        monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # "after a fork"
        monkeypatch.setattr(os, "open", spy_open)
        monkeypatch.setattr(os, "close", spy_close)
        await draw(keys=KEYS, args=args)
        assert closed[0] == inherited  # the copy was closed (never unlocked)...
        assert store._locks[KEYS[0]] == opened[0]  # ...and the lock file opened anew
    finally:
        monkeypatch.undo()
        await store.aclose()


@pytest.mark.parametrize(
    "planted",
    [
        {"version": 1, "touched": "x"},
        {"version": 1, "touched": 1e12, "bucket": []},
        {"version": 1, "touched": 1e12, "bucket": {"rate": 0}},
        {"version": 1, "touched": 1e12, "processes": {"m": "soon"}},
        {"touched": 1e12, "bucket": {"tat": 1e12}},  # another version's
    ],
)
async def test_state_of_another_shape_is_a_new_bucket(
    tmp_path: Path, planted: dict[str, Any]
) -> None:
    store = HostStore(f"file://{tmp_path}")
    draw = store.register_script("")
    args = _args(random.Random(6), 1000.0, ["m"])
    args[1], args[7], args[17] = 1, "", 0
    try:
        _, state = store._paths(KEYS[0])
        _plant(state, json.dumps(planted))
        assert (await draw(keys=KEYS, args=args))[0] == 1  # granted, from a fresh bucket
        assert json.loads(state.read_text())["version"] == 1  # and repaired
    finally:
        await store.aclose()


def _plant(path: Path, text: str, *, mtime: float | None = None) -> None:
    path.parent.chmod(0o700)
    path.write_text(text)
    path.chmod(0o600)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


async def test_temporary_files_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    leftover = tmp_path / ".abc.tmp"
    _plant(leftover, "{}", mtime=0)  # long ago
    recent = tmp_path / ".def.tmp"
    _plant(recent, "{}")  # perhaps another process's, mid-write
    store = HostStore(f"file://{tmp_path}")
    try:
        await store.register_script("")(keys=KEYS, args=_args(random.Random(7), 1.0, ["m"]))
    finally:
        await store.aclose()
    assert not leftover.exists()
    assert recent.exists()


def test_worker_processes_on_one_host_hold_the_quota_together(tmp_path: Path) -> None:
    workers_hold_the_quota_together(f"file://{tmp_path}/quota")
