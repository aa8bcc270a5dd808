"""Checks the fleet's stores share: Redis (tests/test_fleet.py) and a directory (test_hostquota)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio

from aiocognito._fleet import SHARED, FleetLimiter
from aiocognito._limits import Priority
from aiocognito.testing import FakeCognito

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def workers_hold_the_quota_together(url: str) -> None:
    """Three processes, each told the whole quota, stay under it together through ``url``
    (``"host"``: the default ``Limits()``, which shares on this host).

    The workers are examples/fleet.py's, each a bulk update of its share of the users.
    """
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}  # this session's TMPDIR too
    fake = FakeCognito(user_update_rps=40, per_user_write_rps=None, seed=3)
    pool = fake.create_pool()
    fake.seed_users(pool.id, 150)
    with fake.run_in_thread():
        workers = []
        for w in range(3):
            command = [
                sys.executable, str(EXAMPLES / "fleet.py"), "--worker", fake.endpoint_url,
                pool.id, url, str(50 * w), "50", "40",
            ]  # fmt: skip
            workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, env=env))
        reports = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            reports.append(json.loads(out))
        stats = fake.quotas.stats()["UserUpdate"]
    assert [r["ok"] for r in reports] == [50, 50, 50]
    assert max(r["fleet_processes"] or 0 for r in reports) >= 2  # None: alone by the end
    assert stats.admitted == 150
    # Uncoordinated, each would send at 40/s into a 40/s quota (87 throttles in one run);
    # shared, they hold it together. On a starved machine a round trip to the store may pass
    # its 50 ms budget three times running, and a process then paces itself alone for a
    # moment: then only the calls' success is promised.
    if not any(r["fallbacks"] for r in reports):
        # On the default Limits(), the last to finish is alone by then.
        modes = ("shared", "alone") if url == "host" else ("shared",)
        assert all(r["mode"] in modes for r in reports)
        assert stats.throttled <= 2


async def two_limiters_share_one_quota(url: str) -> None:
    """Two limiters (as two processes) on one store at 200/s take 200 tokens no faster than
    the bucket allows, whoever takes them, and each sees the other."""
    a, b = (FleetLimiter("UserUpdate", 200.0, adaptive=True, url=url, group="g") for _ in "ab")
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
        assert stats.fallbacks == 0
        assert a.statistics().sent == b.statistics().sent == 100
    finally:
        await a.detach()
        await b.detach()
