"""Many processes on one account: N workers share the fake Cognito's quota through Redis.

    pip install 'aiocognito[redis]'
    python examples/fleet.py [--workers 4] [--updates 800] [--quota 50] [--redis-url URL]
    python examples/fleet.py --on-host            # the default: one host's processes share
    python examples/fleet.py --uncoordinated      # the same run, each worker on its own

Cognito's quota belongs to the account, not to a process. Each worker here is a separate
process, told the whole quota (as every worker of a web backend would be), running a bulk
update of its share of the users against one embedded fake Cognito that enforces ``--quota``.
With ``--redis-url`` (default: ``$AIOCOGNITO_SHARED_QUOTA_URL``, else a throwaway
``redis-server`` started here if one is installed) they draw from one bucket in Redis and the
fake throttles almost nothing; ``--on-host`` runs them on the default ``Limits()``, whose
processes on one host share through files in a private directory, with no Redis; with
``--uncoordinated`` (``share_on_host=False``) each paces itself alone and learns of the others
only by being throttled. The table shows each worker's rate and the aggregate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import aiocognito
from aiocognito.testing import FakeCognito


async def work(endpoint: str, pool: str, url: str, first: int, count: int, quota: float) -> None:
    """One worker: a bulk update of users first..first+count-1; prints its figures as JSON."""
    # "host": the default, shared on this host; "": each process alone; else a store's URL.
    if url == "host":
        limits = aiocognito.Limits(user_update_rps=quota)
    elif url == "":
        limits = aiocognito.Limits(user_update_rps=quota, share_on_host=False)
    else:
        limits = aiocognito.Limits(user_update_rps=quota, shared_quota_url=url)
    rows = (
        aiocognito.AttributeUpdate(
            username=f"user{i}", attributes={"nickname": f"fleet-{i}"}, user_pool_id=pool
        )
        for i in range(first, first + count)
    )
    started = time.monotonic()
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        endpoint_url=endpoint,
        user_pool_id=pool,
        limits=limits,
        aws_access_key_id="fleet",
        aws_secret_access_key="fleet",
    ) as cognito:
        ok = failed = 0
        async with cognito.bulk_update(rows) as outcomes:
            async for outcome in outcomes:
                ok += outcome.ok
                failed += not outcome.ok
        stats = cognito.statistics()
    update = stats.categories["UserUpdate"]
    figures = {
        "pid": os.getpid(),
        "ok": ok,
        "failed": failed,
        "seconds": round(time.monotonic() - started, 2),
        "throttled": stats.throttled,
        "mode": update.mode,
        "fleet_processes": update.fleet_processes,
        "fallbacks": update.fallbacks,
    }
    print(json.dumps(figures), flush=True)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server on a free port with persistence off, for this run only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server here: pass --redis-url, or install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait()


def run(*, workers: int, updates: int, quota: float, url: str) -> list[dict[str, object]]:
    """Start the fake and the workers; print a table; return the workers' figures."""
    fake = FakeCognito(user_update_rps=quota, per_user_write_rps=None)
    pool = fake.create_pool()
    fake.seed_users(pool.id, updates)
    share = updates // workers
    with fake.run_in_thread():
        started = time.monotonic()
        processes = []
        for w in range(workers):
            command = [
                sys.executable, __file__, "--worker", fake.endpoint_url, pool.id, url,
                str(w * share), str(share), str(quota),
            ]  # fmt: skip
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE))
        reports = [json.loads(p.communicate()[0]) for p in processes]
        wall = time.monotonic() - started
        throttled = fake.quotas.stats()["UserUpdate"].throttled
    print(f"{'worker':>8} {'ok':>6} {'failed':>6} {'req/s':>7} {'throttled':>9}  mode")
    for report in reports:
        rate = report["ok"] / max(report["seconds"], 1e-9)
        print(
            f"{report['pid']:>8} {report['ok']:>6} {report['failed']:>6} {rate:>7.1f} "
            f"{report['throttled']:>9}  {report['mode']}"
        )
    done = sum(r["ok"] for r in reports)
    print(
        f"{'all':>8} {done:>6} {sum(r['failed'] for r in reports):>6} {done / wall:>7.1f} "
        f"{throttled:>9}  (quota {quota:g}/s; ideal {done / quota:.1f} s, took {wall:.1f} s)"
    )
    return reports


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--updates", type=int, default=800)
    parser.add_argument("--quota", type=float, default=50.0)
    parser.add_argument("--redis-url", default=os.environ.get("AIOCOGNITO_SHARED_QUOTA_URL"))
    parser.add_argument("--on-host", action="store_true", help="share through a directory")
    parser.add_argument("--uncoordinated", action="store_true", help="no shared quota")
    args = parser.parse_args(argv)
    options = {"workers": args.workers, "updates": args.updates, "quota": args.quota}
    if args.uncoordinated:
        return run(url="", **options)
    if args.on_host:
        return run(url="host", **options)
    if args.redis_url:
        return run(url=args.redis_url, **options)
    with throwaway_redis() as url:
        return run(url=url, **options)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        endpoint, pool, url, first, count, quota = sys.argv[2:8]
        asyncio.run(work(endpoint, pool, url, int(first), int(count), float(quota)))
    else:
        main()
