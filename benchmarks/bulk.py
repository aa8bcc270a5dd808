"""The bulk path end to end: memory as the input grows, and the CLI's rate against the quota.

Memory: ``aiocognito update`` runs in its own process over a JSONL file of 20,000 and then
200,000 rows (one row per user), told a quota far above what it can send (``--rps 100000``),
against a fake with no quota and no latency in another process. Peak RSS comes from the
child's own resource usage (``os.wait4``). Streaming means the ratio between the two should
stay near 1.

Throughput: the CLI, file and journal included, against a fake enforcing 250 requests/s with
20 ms latency, over 5,000 rows. The achieved rate is the requests the fake admitted divided by
the CLI process's whole wall time (start-up included), as a share of the quota.

    python -m benchmarks.bulk [--runs 3] [--rate-rows 5000] [--memory-rows 20000 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from aiocognito.testing import FakeCognitoProcess


def _write_rows(path: str, rows: int) -> None:
    with open(path, "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"username": f"user{i}", "attributes": {"custom:tier": f"t{i}"}}))
            fh.write("\n")


def _run_cli(path: str, url: str, pool: str, rps: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiocognito",
            "update",
            "--input",
            path,
            "--user-pool-id",
            pool,
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
            "--rps",
            rps,
            "--progress",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": time.perf_counter() - started,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "exit": proc.returncode,
    }


def _fresh(path: str) -> None:
    """Remove what an earlier run left beside the input (journal, results, failures)."""
    for leftover in ("journal", "results.jsonl", "failures.jsonl"):
        target = path.rsplit(".", 1)[0] + "." + leftover
        if os.path.exists(target):
            os.remove(target)


def memory(runs: int, sizes: list[int]) -> None:
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"rows{n}.jsonl")
            _write_rows(path, n)
            for run in range(runs):
                _fresh(path)
                fake = FakeCognitoProcess(
                    seed_users=n, user_update_rps=None, per_user_write_rps=None
                )
                with fake:
                    # A quota far above what one client process can send: the CLI runs flat out.
                    result = _run_cli(path, fake.endpoint_url, fake.pool_id, "100000")
                results[n].append(result)
                print(
                    f"memory {n:,} rows run {run + 1}: peak RSS {result['peak_rss_mib']:.0f} MiB, "
                    f"{result['wall']:.1f} s, exit {result['exit']}",
                    file=sys.stderr,
                    flush=True,
                )
    print("| rows | peak RSS MiB (median) | spread | wall s | rows/s |\n|---:|---:|---:|---:|---:|")
    for n, rs in results.items():
        rss = [r["peak_rss_mib"] for r in rs]
        wall = statistics.median(r["wall"] for r in rs)
        print(
            f"| {n:,} | {statistics.median(rss):.0f} | {min(rss):.0f} to {max(rss):.0f} | "
            f"{wall:.1f} | {n / wall:,.0f} |"
        )
    if len(sizes) == 2:
        small, large = (statistics.median(r["peak_rss_mib"] for r in results[n]) for n in sizes)
        print(f"\npeak RSS ratio {sizes[1]:,} / {sizes[0]:,} rows: {large / small:.3f}")


def throughput(runs: int, rows: int, quota: int = 250) -> None:
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.jsonl")
        _write_rows(path, rows)
        for run in range(runs):
            _fresh(path)
            fake = FakeCognitoProcess(
                seed_users=rows, user_update_rps=quota, per_user_write_rps=None, latency_ms=20
            )
            with fake:
                result = _run_cli(path, fake.endpoint_url, fake.pool_id, str(quota))
                admitted = int(fake.stats()["quotas"]["UserUpdate"]["admitted"])
            share = admitted / result["wall"] / quota
            shares.append(share)
            print(
                f"rate run {run + 1}: {admitted:,} admitted in {result['wall']:.1f} s = "
                f"{share:.3f} of the quota, exit {result['exit']}",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\nCLI end to end, {rows:,} rows at {quota}/s with 20 ms latency: achieved "
        f"{statistics.median(shares):.3f} of the quota (median of {runs}; "
        f"{min(shares):.3f} to {max(shares):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--rate-rows", type=int, default=5000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-rate", action="store_true")
    args = parser.parse_args()
    if not args.skip_rate:
        throughput(args.runs, args.rate_rows)
    if not args.skip_memory:
        memory(args.runs, args.memory_rows)


if __name__ == "__main__":
    main()
