"""Sharing on this host, the default: processes share a quota while more than one uses it.

A process marks itself on the quota with a record lock; alone, it paces itself with no file I/O
per request, and while another process holds a mark it draws from the bucket in the directory
(:mod:`aiocognito._hostquota`). These tests run the marks in real worker processes, killed as
a crash would kill them, and the default ``Limits()`` end to end in three worker processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

import aiocognito
from aiocognito._bulkcli import fleet_text
from aiocognito._client import SHARE_ON_HOST_ENV, client_over, host_quota_url
from aiocognito._fleet import ALONE, ALONE_AFTER, LOCAL, SHARED, FleetLimiter
from aiocognito._hostquota import HostStore, Presence
from aiocognito._limits import BURST_SECONDS, Priority, QuotaClaim, RateLimiter
from aiocognito.testing import FakeCognito
from tests.fakes import FakeTransport
from tests.fleet_workers import workers_hold_the_quota_together
from tests.gates import wait_until

KEY = "aiocognito:{g}:UserUpdate:bucket"

_MARKER = """
import sys
from aiocognito._hostquota import HostStore, Presence
mark = Presence(HostStore(sys.argv[1]), sys.argv[2])
print("alone" if mark.alone() else "not alone", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def other_process() -> Iterator[list[subprocess.Popen[str]]]:
    """Starts processes that mark themselves on a quota and hold the mark until killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        _kill(process)


def _mark_elsewhere(started: list[subprocess.Popen[str]], url: str, key: str = KEY) -> str:
    process = subprocess.Popen(
        [sys.executable, "-c", _MARKER, url, key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    return process.stdout.readline().strip()  # once it is marked


def _kill(process: subprocess.Popen[str]) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)  # as a crash would: no chance to unmark
        process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def test_a_mark_says_whether_another_process_uses_the_quota(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    url = f"file://{tmp_path}/quota"
    mine = Presence(HostStore(url), KEY)
    assert mine.alone()
    assert mine.alone()  # asking again keeps the mark, and does not count itself
    assert _mark_elsewhere(other_process, url) == "not alone"
    assert not mine.alone()
    assert _mark_elsewhere(other_process, url, key=KEY.replace("Update", "Read")) == "alone"
    _kill(other_process[0])
    assert mine.alone()  # the kernel dropped the dead process's mark
    mine.close()
    assert _mark_elsewhere(other_process, url) == "alone"


def test_the_last_process_to_leave_removes_the_mark_file(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # Marks of groups no longer used (a test suite's endpoints on random ports) must not pile up.
    url = f"file://{tmp_path}/quota"
    mine = Presence(HostStore(url), KEY)
    assert mine.alone()
    assert _mark_elsewhere(other_process, url) == "not alone"
    mine.close()
    assert mine.path.exists()  # the other still uses it
    again = Presence(HostStore(url), KEY)
    assert not again.alone()
    _kill(other_process[0])
    again.close()
    assert not mine.path.exists()


def test_a_removed_mark_file_is_made_again_and_marks_still_meet(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # A /tmp cleaner removes the file under a running process: a newcomer makes a new one,
    # and the older process must find it, not keep a lock on a file nobody else opens.
    url = f"file://{tmp_path}/quota"
    mine = Presence(HostStore(url), KEY)
    assert mine.alone()
    mine.path.unlink()
    assert _mark_elsewhere(other_process, url) == "alone"  # it made the file anew
    assert not mine.alone()


def _limiter(url: str, ceiling: float = 40.0) -> FleetLimiter:
    return FleetLimiter("UserUpdate", ceiling, adaptive=True, url=url, group="g", when_shared=True)


async def test_alone_a_process_paces_itself_with_no_file_per_request(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/quota"
    limiter = _limiter(url)
    await limiter.attach()
    try:
        with anyio.fail_after(5):
            for _ in range(20):
                await limiter.acquire(Priority.BULK)
        stats = limiter.statistics()
        assert (stats.mode, stats.sent, limiter.takes) == (ALONE, 20, 0)
        assert [p.suffix for p in (tmp_path / "quota").iterdir()] == [".present"]
    finally:
        await limiter.detach()


async def test_another_process_turns_sharing_on_and_its_exit_turns_it_off(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    url = f"file://{tmp_path}/quota"
    limiter = _limiter(url, ceiling=20.0)
    await limiter.attach()
    done = 0

    async def one() -> None:
        nonlocal done
        await limiter.acquire(Priority.BULK)
        done += 1

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(30):  # 20/s with a burst of 4: most of them queue, locally
                    tg.start_soon(one)
                await anyio.wait_all_tasks_blocked()
                assert limiter.mode == ALONE
                assert _mark_elsewhere(other_process, url) == "not alone"
                limiter._check_presence()  # as the watch does, every quarter of a second
                assert limiter.mode == SHARED
            # Those queued locally went to the bucket's queue; none was lost or doubled.
            assert done == 30
            assert limiter.takes > 0
            assert limiter.statistics().sent == 30
            _kill(other_process[0])
            for _ in range(ALONE_AFTER - 1):
                limiter._check_presence()
            assert limiter.mode == SHARED  # a second alone is not yet "alone"
            limiter._check_presence()
            assert limiter.mode == ALONE
            takes = limiter.takes
            for _ in range(5):
                await limiter.acquire(Priority.INTERACTIVE)
            assert limiter.takes == takes  # paced locally again
            assert limiter.statistics().sent == 35
    finally:
        await limiter.detach()


async def test_callers_waiting_on_the_bucket_go_on_locally_when_the_other_leaves(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    url = f"file://{tmp_path}/quota"
    assert _mark_elsewhere(other_process, url) == "alone"
    limiter = _limiter(url, ceiling=10.0)
    await limiter.attach()
    try:
        assert limiter.mode == SHARED  # another was there first
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(limiter.acquire, Priority.BULK)
                await anyio.wait_all_tasks_blocked()
                assert limiter.statistics().queued > 0
                _kill(other_process[0])
                for _ in range(ALONE_AFTER):
                    limiter._check_presence()
                assert limiter.mode == ALONE
                takes = limiter.takes
        assert limiter.statistics().sent == 12
        assert limiter.takes == takes  # the rest went on locally
    finally:
        await limiter.detach()


async def test_the_watch_notices_a_newcomer_by_itself(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    url = f"file://{tmp_path}/quota"
    limiter = _limiter(url)
    await limiter.attach()
    try:
        assert limiter.mode == ALONE
        assert _mark_elsewhere(other_process, url) == "not alone"
        await wait_until(lambda: limiter.mode == SHARED)
        _kill(other_process[0])
        await wait_until(lambda: limiter.mode == ALONE)
    finally:
        await limiter.detach()
    assert limiter._watch is None


async def test_a_directory_that_is_not_private_paces_alone_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "quota"
    shared.mkdir()
    shared.chmod(0o777)  # another user could plant marks or state in it, or made it to stop us
    with caplog.at_level(logging.INFO, logger="aiocognito"):
        for _ in range(2):  # two clients, one after the other
            limiter = _limiter(f"file://{shared}")
            await limiter.attach()
            try:
                with anyio.fail_after(5):
                    for _ in range(3):
                        await limiter.acquire(Priority.INTERACTIVE)
                assert (limiter.mode, limiter.statistics().sent) == (LOCAL, 3)
            finally:
                await limiter.detach()
    notes = [r for r in caplog.records if "not shared on this host" in r.getMessage()]
    assert len(notes) == 1  # once per process
    assert notes[0].levelno == logging.WARNING
    assert "not this user's alone" in notes[0].getMessage()
    assert list(shared.iterdir()) == []


async def test_a_directory_that_cannot_be_made_paces_alone_and_says_so_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory's parent should be: it cannot be made
    limiter = _limiter(f"file://{blocked}/quota")
    with caplog.at_level(logging.INFO, logger="aiocognito"):
        await limiter.attach()
        try:
            with anyio.fail_after(5):
                await limiter.acquire(Priority.INTERACTIVE)
            assert limiter.mode == LOCAL
        finally:
            await limiter.detach()
    notes = [r for r in caplog.records if "not shared on this host" in r.getMessage()]
    assert [r.levelno for r in notes] == [logging.INFO]  # nobody's doing: not a warning


def _limiter_of(client: aiocognito.CognitoClient) -> RateLimiter:
    return client._limiters["UserUpdate"]


@pytest.mark.parametrize(
    ("limits", "env", "shared_on_host"),
    [
        (aiocognito.Limits(), None, True),
        (aiocognito.Limits(), "off", False),
        (aiocognito.Limits(), "1", True),
        (aiocognito.Limits(share_on_host=False), None, False),
        (aiocognito.Limits(share_on_host=True), "0", True),
        (aiocognito.Limits(shared_quota_url=""), None, True),  # "" is about the URL only
    ],
)
async def test_the_default_limits_share_on_this_host(
    monkeypatch: pytest.MonkeyPatch,
    limits: aiocognito.Limits,
    env: str | None,
    shared_on_host: bool,
) -> None:
    if env is None:
        monkeypatch.delenv(SHARE_ON_HOST_ENV, raising=False)
    else:
        monkeypatch.setenv(SHARE_ON_HOST_ENV, env)
    client = client_over(FakeTransport(), limits=limits, region_name="us-east-1")
    async with client:
        limiter = _limiter_of(client)
        if shared_on_host:
            assert isinstance(limiter, FleetLimiter)
            assert limiter._url == host_quota_url()
            assert limiter.statistics().mode == ALONE
            assert fleet_text(client.statistics()) == ""  # the progress line: nothing shared
        else:
            assert type(limiter) is RateLimiter
    expected = Path(tempfile.gettempdir()) / f"aiocognito-{os.geteuid()}"
    assert host_quota_url() == expected.as_uri()


async def test_a_fleet_url_wins_over_sharing_on_this_host(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/quota"
    client = client_over(
        FakeTransport(),
        limits=aiocognito.Limits(shared_quota_url=url, share_on_host=True),
        region_name="us-east-1",
    )
    async with client:
        limiter = _limiter_of(client)
        assert isinstance(limiter, FleetLimiter)
        assert (limiter._url, limiter._when_shared, limiter.mode) == (url, False, SHARED)


def test_the_default_limits_hold_one_quota_across_worker_processes() -> None:
    # Three processes on the default Limits(), each told the whole quota, as a web server's
    # workers are: together they stay under it, with no Redis and nothing configured.
    workers_hold_the_quota_together("host")


@pytest.mark.parametrize(
    ("flag", "env", "mode"),
    [
        ([], "", "alone"),
        (["--no-share-on-host"], "", "local"),
        ([], "0", "local"),
        (["--share-on-host"], "0", "alone"),
    ],
)
def test_the_command_line_shares_on_this_host_unless_told_not_to(
    tmp_path: Path, flag: list[str], env: str, mode: str
) -> None:
    fake = FakeCognito(user_update_rps=200, per_user_write_rps=None, seed=5)
    pool = fake.create_pool()
    fake.seed_users(pool.id, 20)
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps({"username": f"user{i}", "attributes": {"nickname": f"n{i}"}}) + "\n"
            for i in range(20)
        )
    )
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    environment[SHARE_ON_HOST_ENV] = env
    with fake.run_in_thread():
        command = [
            sys.executable, "-m", "aiocognito", "update", "--input", str(path),
            "--user-pool-id", pool.id, "--region", "us-east-1",
            "--endpoint-url", fake.endpoint_url, "--rps", "200", "--progress", "json", *flag,
        ]  # fmt: skip
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env=environment, timeout=120
        )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert (records[-1]["ok"], records[-1]["quota_mode"]) == (20, mode)


def test_two_marks_in_one_process_are_one_mark_until_both_leave(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # Two event loops (or clients) of one process on one quota: record locks belong to the
    # process, and closing either's file would drop the other's mark with it, leaving the
    # others to pace alone beside this process for good.
    url = f"file://{tmp_path}/quota"
    first, second = Presence(HostStore(url), KEY), Presence(HostStore(url), KEY)
    assert first.alone()
    assert second.alone()  # the same process: not "another"
    first.close()
    assert _mark_elsewhere(other_process, url) == "not alone"  # still marked, by the second
    assert not second.alone()
    second.close()
    _kill(other_process[0])
    assert _mark_elsewhere(other_process, url) == "alone"


async def test_a_switch_hands_out_no_fresh_burst(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # Each bucket refills while the other paces the process: spending the local one's burst on
    # going alone, or the shared one's on coming back, would put a burst over the quota at
    # every switch (a worker that opens and closes clients flips the others back and forth).
    url = f"file://{tmp_path}/quota"
    limiter = _limiter(url, ceiling=20.0)
    await limiter.attach()
    try:
        assert _mark_elsewhere(other_process, url) == "not alone"
        limiter._check_presence()
        assert limiter.mode == SHARED
        assert limiter._debt >= math.floor(20.0 * BURST_SECONDS)  # the local burst, charged
        _kill(other_process[0])
        for _ in range(ALONE_AFTER):
            limiter._check_presence()
        assert limiter.mode == ALONE
        assert not limiter._take_now(QuotaClaim(), None)  # no token at once: no burst
        with anyio.fail_after(5):
            await limiter.acquire(Priority.INTERACTIVE)  # the next one, at the rate
    finally:
        await limiter.detach()


async def test_a_process_that_names_the_directory_is_seen_by_the_default_ones(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # One process told shared_quota_url="file://<the default's directory>" always draws from
    # the bucket; the default's processes must see it there, or they pace alone beside it.
    url = f"file://{tmp_path}/quota"
    named = FleetLimiter("UserUpdate", 20.0, adaptive=True, url=url, group="g")
    await named.attach()
    try:
        assert named.mode == SHARED
        assert _mark_elsewhere(other_process, url) == "not alone"
    finally:
        await named.detach()


async def test_what_no_process_uses_is_swept_when_a_process_marks_itself(
    tmp_path: Path, other_process: list[subprocess.Popen[str]]
) -> None:
    # Groups used once (a test suite's endpoints on random ports) must not pile up: marks of
    # killed processes, and state untouched for an hour with its lock file, go; a mark that a
    # live process holds, and fresh state, stay.
    url = f"file://{tmp_path}/quota"
    directory = tmp_path / "quota"
    killed_key, held_key = KEY.replace("{g}", "{killed}"), KEY.replace("{g}", "{held}")
    assert _mark_elsewhere(other_process, url, killed_key) == "alone"
    _kill(other_process[0])  # its mark file stays behind
    assert _mark_elsewhere(other_process, url, held_key) == "alone"
    store = HostStore(url)
    old_state, old_lock = store._paths("aiocognito:{old}:UserUpdate:bucket")[::-1]
    fresh_state, fresh_lock = store._paths("aiocognito:{fresh}:UserUpdate:bucket")[::-1]
    for path in (old_state, old_lock, fresh_state, fresh_lock):
        path.write_text("{}")
    an_hour_ago = time.time() - 3700
    os.utime(old_state, (an_hour_ago, an_hour_ago))
    killed_mark = store._paths(killed_key)[0].with_suffix(".present")
    held_mark = store._paths(held_key)[0].with_suffix(".present")
    assert killed_mark.exists()
    limiter = _limiter(url)
    await limiter.attach()
    try:
        left = set(directory.iterdir())
    finally:
        await limiter.detach()
    assert killed_mark not in left
    assert not {old_state, old_lock} & left
    own_mark = store._paths(KEY)[0].with_suffix(".present")
    assert {held_mark, fresh_state, fresh_lock, own_mark} <= left


def _depth(task: asyncio.Task[None]) -> int:
    """How many coroutines deep a task waits."""
    depth, coroutine = 0, cast("Any", task.get_coro())
    while coroutine is not None:
        depth += 1
        coroutine = getattr(coroutine, "cr_await", None)
    return depth


async def test_a_caller_moved_back_and_forth_waits_no_deeper(tmp_path: Path) -> None:
    # A caller starved for minutes while the mode flaps (a flapping store, processes coming and
    # going) must not nest a level deeper at each move, or it ends in RecursionError.
    limiter = _limiter(f"file://{tmp_path}/quota", ceiling=1.0)
    await limiter.attach()
    try:
        assert limiter._watch is not None
        limiter._watch.cancel()  # the test moves it by hand
        limiter._bucket.tokens = 0.0
        waiting = asyncio.ensure_future(limiter.acquire(Priority.BULK))
        depths = []
        for _ in range(60):
            limiter._go_shared()
            await anyio.wait_all_tasks_blocked()
            limiter._go_alone()
            limiter._bucket.tokens = 0.0
            await anyio.wait_all_tasks_blocked()
            depths.append(_depth(waiting))
        assert not waiting.done()
        assert depths[-1] == depths[4]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (len(limiter._queues), len(limiter._waiting), limiter.statistics().sent) == (0, 0, 0)
    finally:
        await limiter.detach()


async def test_a_call_made_alone_and_first_run_after_the_switch_draws_from_the_bucket(
    tmp_path: Path,
) -> None:
    # asyncio.gather and task groups make the coroutine before it runs: if the process went
    # shared in between, its token must come from the bucket, not the local burst.
    limiter = _limiter(f"file://{tmp_path}/quota", ceiling=20.0)
    await limiter.attach()
    try:
        assert limiter._watch is not None
        limiter._watch.cancel()
        limiter._bucket.tokens = 4.0  # a full local burst
        calls = [limiter.acquire(Priority.INTERACTIVE) for _ in range(6)]
        limiter._go_shared()
        with anyio.fail_after(10):
            await asyncio.gather(*calls)
        assert limiter.statistics().sent == 6
        assert limiter.takes >= 1
        assert limiter._bucket.tokens == 4.0  # none of the local burst was spent
    finally:
        await limiter.detach()


def test_an_unknown_setting_of_the_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARE_ON_HOST_ENV, "disabled")
    with pytest.raises(ValueError, match=f"{SHARE_ON_HOST_ENV} must be 0, false, no or off"):
        aiocognito.CognitoClient()


def test_with_no_temporary_directory_to_share_each_process_paces_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def none_usable() -> str:
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", none_usable)  # a read-only file system
    assert host_quota_url() is None
    assert aiocognito.CognitoClient()._shared_quota_url is None
    # gettempdir()'s last resort is the working directory, which processes need not share.
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert host_quota_url() is None
