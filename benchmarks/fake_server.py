"""The fake server's own speed and memory: it must never be a benchmark's bottleneck.

Throughput: ``aiocognito fake-server`` runs in its own process with quotas off and no latency,
seeded with 10,000 users. A load generator in another process keeps 64 keep-alive connections
busy with AdminUpdateUserAttributes requests for ``--seconds``. We count the answers, and read the
server's CPU time from /proc, so ``requests / server CPU seconds`` is its capacity on one core,
whatever the load generator manages on the machine's other core.

Memory: seeds 100,000 and then 1,000,000 users in-process (no HTTP) and reports the time taken
and the resident memory.

    python -m benchmarks.fake_server [--runs 3] [--seconds 5] [--memory]
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time

import aiohttp

from aiocognito.testing import CustomAttribute, FakeCognito, FakeCognitoProcess
from benchmarks._common import argument_parser, print_heading
from benchmarks._peak import status_mib

TARGET = "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"
SIGNED = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/cognito-idp/aws4_request"
USERS = 10_000
CONNECTIONS = 64


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(url: str, pool_id: str, seconds: float) -> tuple[int, int]:
    headers = {
        "X-Amz-Target": TARGET,
        "Content-Type": "application/x-amz-json-1.1",
        "Authorization": SIGNED,
    }
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(seed: int) -> None:
            nonlocal ok, failed
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                body = json.dumps(
                    {
                        "UserPoolId": pool_id,
                        "Username": f"user{rng.randrange(USERS)}",
                        "UserAttributes": [{"Name": "custom:tier", "Value": f"t{rng.random()}"}],
                    }
                )
                async with session.post(url + "/", data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        ok += 1
                    else:
                        failed += 1

        await asyncio.gather(*(worker(i) for i in range(CONNECTIONS)))
    return ok, failed


def throughput(runs: int, seconds: float) -> None:
    results = []
    for run in range(runs):
        fake = FakeCognitoProcess(
            seed_users=USERS, user_update_rps=None, user_read_rps=None, per_user_write_rps=None
        )
        with fake:
            asyncio.run(_load(fake.endpoint_url, fake.pool_id, 0.5))  # warm-up
            cpu0, wall0 = _cpu_seconds(fake.pid), time.perf_counter()
            ok, failed = asyncio.run(_load(fake.endpoint_url, fake.pool_id, seconds))
            cpu, wall = _cpu_seconds(fake.pid) - cpu0, time.perf_counter() - wall0
        result = {
            "requests_per_s": ok / wall,
            "per_server_cpu_s": ok / cpu,
            "failed": failed,
            "server_cpu_share": cpu / wall,
        }
        results.append(result)
        print(
            f"run {run + 1}: {result['requests_per_s']:6.0f} req/s wall, "
            f"{result['per_server_cpu_s']:6.0f} req per server CPU-second "
            f"(server busy {result['server_cpu_share']:.0%}), {failed} failed",
            file=sys.stderr,
        )
    print(
        f"\nfake server, {runs} runs of {seconds:g} s, "
        f"{CONNECTIONS} keep-alive connections; medians"
    )
    print("| metric | value |\n|---|---:|")
    print(
        f"| requests/s (wall, load generator on the other core) | "
        f"{statistics.median(r['requests_per_s'] for r in results):.0f} |"
    )
    print(
        f"| requests per server CPU-second (capacity on one core) | "
        f"{statistics.median(r['per_server_cpu_s'] for r in results):.0f} |"
    )
    print(f"| failed requests | {sum(int(r['failed']) for r in results)} |")


def memory() -> None:
    gc.collect()
    base = status_mib("VmRSS")
    fake = FakeCognito()
    pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
    print(
        "| users | seconds to seed | RSS above baseline (MiB) | bytes per user |\n"
        "|---:|---:|---:|---:|"
    )
    done = 0
    for target in (100_000, 1_000_000):
        started = time.perf_counter()
        count = target - done
        fake.seed_users(
            pool.id,
            count,
            prefix=f"u{done}-",
            attributes=lambda i: {"email": f"user{i}@example.com", "custom:tier": "gold"},
        )
        elapsed = time.perf_counter() - started
        done = target
        gc.collect()
        grown = status_mib("VmRSS") - base
        print(
            f"| {target:,} | {elapsed:.1f} (for the last {count:,}) | {grown:.0f} | "
            f"{grown * 1024 * 1024 / target:.0f} |"
        )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--memory", action="store_true", help="measure seeding speed and memory instead"
    )
    args = parser.parse_args()
    print_heading()
    if args.memory:
        memory()
    else:
        throughput(args.runs, args.seconds)


if __name__ == "__main__":
    main()
