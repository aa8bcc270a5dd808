"""The bulk path end to end: memory as the input grows, and the CLI's rate against the quota.

Memory: each contender runs in its own process over a JSONL file of 20,000 and then 200,000
rows (one row per user), against a fake with no quota and no latency in another process, and
writes one outcome line per row. Peak RSS is the child's own (``VmHWM``, written by
``benchmarks._peak`` as it exits); the fake's state afterwards says how many rows were applied.

  aiocognito      ``aiocognito update``, as a user runs it (journal, results, failures), told
                  a quota far above what it can send (``--rps 100000``)
  raw-legacy      aiobotocore, ``asyncio.gather`` over the file's rows under a semaphore of 64,
  raw-standard    in each of botocore's retry modes (``benchmarks/bulk_peers.py``)
  raw-adaptive
  boto3-threads   boto3, ``ThreadPoolExecutor(32).map`` over the file's rows, adaptive retries

Streaming means aiocognito's ratio between the two sizes should stay near 1.

Throughput: the CLI, file and journal included, against a fake enforcing 250 requests/s with
20 ms latency, over 5,000 rows. The achieved rate is the requests the fake admitted divided by
the CLI process's whole wall time (start-up included), as a share of the quota.

    python -m benchmarks.bulk [--runs 3] [--rate-rows 5000] [--memory-rows 20000 200000]
                              [--contender aiocognito raw-legacy ...]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from aiocognito.testing import FakeCognitoProcess
from benchmarks._common import CONTENDERS, REGION, ROOT, argument_parser, child_env, print_heading


def _write_rows(path: str, rows: int) -> None:
    with open(path, "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"username": f"user{i}", "attributes": {"custom:tier": f"t{i}"}}))
            fh.write("\n")


def _run_child(argv: list[str]) -> dict[str, Any]:
    """Run one contender's module to the end; its wall time, own peak RSS and CPU."""
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._peak", peak.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(),
            cwd=ROOT,
        )
        assert proc.stderr is not None
        with proc.stderr:
            errors = proc.stderr.read()  # drained as it comes: the child never blocks on it
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in {0, 1}:  # 1: some rows failed, which the results show
            sys.stderr.buffer.write(errors[-4000:])
        written = peak.read().strip()
    return {
        "wall": time.perf_counter() - started,
        "peak_rss_mib": float(written) if written else float("nan"),
        "cpu": usage.ru_utime + usage.ru_stime,
        "exit": proc.returncode,
    }


def _run_cli(path: str, url: str, pool: str, rps: str) -> dict[str, Any]:
    return _run_child(
        ["aiocognito", "update", "--input", path, "--user-pool-id", pool,
         "--endpoint-url", url, "--region", REGION, "--rps", rps, "--progress", "none"]
    )  # fmt: skip


def _fresh(path: str) -> None:
    """Remove what an earlier run left beside the input (journal, results, failures)."""
    for leftover in ("journal", "results.jsonl", "failures.jsonl"):
        target = path.rsplit(".", 1)[0] + "." + leftover
        if os.path.exists(target):
            os.remove(target)


def _lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def memory_once(contender: str, path: str, n: int) -> dict[str, Any]:
    """One contender over the file against a fresh fake; judged from the fake's state."""
    _fresh(path)
    with FakeCognitoProcess(seed_users=n, user_update_rps=None, per_user_write_rps=None) as fake:
        if contender == "aiocognito":
            # A quota far above what one client process can send: the CLI runs flat out.
            result = _run_cli(path, fake.endpoint_url, fake.pool_id, "100000")
        else:
            result = _run_child(
                ["benchmarks.bulk_peers", contender, path, fake.endpoint_url, fake.pool_id]
            )
        values = fake.attribute("custom:tier")["values"]
    result["applied"] = sum(1 for i in range(n) if values.get(f"user{i}") == f"t{i}")
    result["outcomes"] = _lines(path.rsplit(".", 1)[0] + ".results.jsonl")
    return result


def memory(runs: int, sizes: list[int], contenders: list[str]) -> dict[str, Any]:
    results: dict[str, dict[int, list[dict[str, Any]]]] = {
        c: {n: [] for n in sizes} for c in contenders
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"rows{n}.jsonl")
            _write_rows(path, n)
            for run in range(runs):
                for contender in contenders:
                    result = memory_once(contender, path, n)
                    results[contender][n].append(result)
                    print(
                        f"memory {n:,} rows run {run + 1} {contender:13}: peak RSS "
                        f"{result['peak_rss_mib']:.0f} MiB, {result['wall']:.1f} s, applied "
                        f"{result['applied']:,}, outcomes {result['outcomes']:,}, exit "
                        f"{result['exit']}",
                        file=sys.stderr,
                        flush=True,
                    )
    print(memory_table(results, sizes))
    return {c: {str(n): rs for n, rs in by_n.items()} for c, by_n in results.items()}


def memory_table(results: dict[str, dict[int, list[dict[str, Any]]]], sizes: list[int]) -> str:
    """Contenders as rows: median peak RSS at each size, the ratio, and what was applied."""
    head = "| contender | " + " | ".join(f"peak RSS MiB, {n:,} rows" for n in sizes)
    rule = "|---|" + "---:|" * len(sizes)
    if len(sizes) == 2:
        head += f" | **RSS ratio {sizes[1]:,} ÷ {sizes[0]:,}**"
        rule += "---:|"
    largest = sizes[-1]
    head += f" | rows/s, {largest:,} rows | applied, {largest:,} rows | outcomes written |"
    rule += "---:|---:|---:|"
    lines = [head, rule]
    figures: dict[str, list[float]] = {}
    for contender, by_n in results.items():
        rss = {n: statistics.median(r["peak_rss_mib"] for r in by_n[n]) for n in sizes}
        runs = by_n[largest]
        rate = largest / statistics.median(r["wall"] for r in runs)
        figures[contender] = [rss[n] for n in sizes]
        cells = [
            f"{rss[n]:.0f} ({min(r['peak_rss_mib'] for r in by_n[n]):.0f} to "
            f"{max(r['peak_rss_mib'] for r in by_n[n]):.0f})"
            for n in sizes
        ]
        if len(sizes) == 2:
            figures[contender].append(rss[sizes[1]] / rss[sizes[0]])
            cells.append(f"**{figures[contender][-1]:.3f}**")
        figures[contender].append(rate)
        cells += [
            f"{rate:,.0f}",
            f"{min(r['applied'] for r in runs):,}",  # the worst run
            f"{min(r['outcomes'] for r in runs):,}",
        ]
        lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    # The best peer: the one with the smallest peak RSS on the largest input.
    peers = [c for c in results if c != "aiocognito"]
    if "aiocognito" in figures and peers:
        best = min(peers, key=lambda c: figures[c][len(sizes) - 1])
        ratios = [
            f"{a / b:.2f}x" for a, b in zip(figures["aiocognito"], figures[best], strict=True)
        ]
        lines.append(f"| *aiocognito ÷ {best}* | " + " | ".join(ratios) + " | | |")
    return "\n".join(lines)


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
    parser = argument_parser(__doc__)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--rate-rows", type=int, default=5000)
    parser.add_argument("--contender", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--json", help="also write every memory run's figures here")
    args = parser.parse_args()
    print_heading()
    if not args.skip_rate:
        throughput(args.runs, args.rate_rows)
    if not args.skip_memory:
        figures = memory(args.runs, args.memory_rows, args.contender)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
