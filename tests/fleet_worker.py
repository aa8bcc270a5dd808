"""One worker process of a fleet: admin updates through one client, its figures as JSON.

Run by tests/test_fleet.py as ``python -m tests.fleet_worker ENDPOINT POOL URL FIRST COUNT RPS``;
prints ``{"ok": ..., "failed": ..., "mode": ..., "fleet_processes": ..., "fallbacks": ...}``.
"""

from __future__ import annotations

import json
import sys

import anyio

import aiocognito


async def main(endpoint: str, pool: str, url: str, first: int, count: int, rps: float) -> None:
    limits = aiocognito.Limits(user_update_rps=rps, shared_quota_url=url)
    ok = failed = 0
    processes = 0
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        endpoint_url=endpoint,
        user_pool_id=pool,
        limits=limits,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as cognito:

        async def one(i: int) -> None:
            nonlocal ok, failed, processes
            try:
                await cognito.admin_update_user_attributes(f"user{i}", {"nickname": f"n{i}"})
            except aiocognito.AiocognitoError:
                failed += 1
            else:
                ok += 1
            seen = cognito.statistics().categories["UserUpdate"].fleet_processes or 0
            processes = max(processes, seen)

        async with anyio.create_task_group() as tg:
            for i in range(first, first + count):
                tg.start_soon(one, i)
        update = cognito.statistics().categories["UserUpdate"]
    report = {
        "ok": ok,
        "failed": failed,
        "mode": update.mode,
        "fleet_processes": processes,
        "fallbacks": update.fallbacks,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    endpoint, pool, url, first, count, rps = sys.argv[1:7]
    anyio.run(main, endpoint, pool, url, int(first), int(count), float(rps))
