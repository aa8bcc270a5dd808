"""The engine against raw aiobotocore, at the quota: known quota, unknown quota, faults.

For every run of every contender, a fresh fake server starts in its own process with the
scenario's quota, latency and faults, seeded with one user per update. The contender runs in
its own fresh process and makes N AdminUpdateUserAttributes calls, one per user, each setting
``custom:tier`` to a value unique to the run. Afterwards the fake's control API says what was
applied: an update is *lost* if the user's value is not what the contender last sent it, unless
the contender reported that update as failed.

Contenders:
  aiocognito      CognitoClient; told the quota, except in "unknown"
  raw-legacy      aiobotocore, asyncio.gather under a semaphore of 64, botocore's legacy retries
  raw-standard    the same with retries={"mode": "standard"}
  raw-adaptive    the same with retries={"mode": "adaptive"}
  boto3-threads   boto3 in a pool of 32 threads, retries={"mode": "adaptive"}

    python -m benchmarks.engine [--runs 3] [--updates 5000] [--scenario known unknown faults]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config

import aiocognito
from aiocognito.testing import FakeCognitoProcess

REGION = "us-east-1"
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
CONCURRENCY = 64
TIME_LIMIT = 120.0  # a contender still running then is stopped and reported as such


@attrs.frozen
class Scenario:
    name: str
    quota: float
    latency_ms: float
    faults: tuple[str, ...] = ()
    tell_quota: bool = True
    description: str = ""


SCENARIOS = {
    "known": Scenario(
        "known", 250, 20, description="5,000 admin updates, a 250/s quota, 20 ms latency"
    ),
    "unknown": Scenario(
        "unknown",
        250,
        20,
        tell_quota=False,
        description="the same, but aiocognito is not told the quota",
    ),
    "faults": Scenario(
        "faults",
        250,
        20,
        faults=(
            "throttle:p=0.15",
            "internal_error:p=0.02",
            "reset_before:p=0.01",
            "reset_after:p=0.01",
        ),
        description="known quota plus 15 % throttles, 2 % 500s, 1 % resets before and 1 % "
        "after applying",
    ),
}
CONTENDERS = ("aiocognito", "raw-legacy", "raw-standard", "raw-adaptive", "boto3-threads")
THREADS = 32


# ------------------------------------------------------------------------------------------
# The contender process


async def _bounded(
    calls: Sequence[Callable[[], Awaitable[Any]]], limit: int | None
) -> dict[int, str]:
    """Run every call (under a semaphore if ``limit``); return failed index -> error type."""
    sem = asyncio.Semaphore(limit) if limit else None
    failures: dict[int, str] = {}

    async def one(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            if sem is None:
                await call()
            else:
                async with sem:
                    await call()
        except Exception as exc:  # recorded by type; the harness checks the server's state
            code = getattr(exc, "code", None) or getattr(exc, "response", {}).get("Error", {}).get(
                "Code"
            )
            failures[index] = str(code or type(exc).__name__)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    return failures


async def _contender(
    name: str, scenario: Scenario, url: str, pool: str, n: int, tag: str
) -> dict[str, Any]:
    users = [(f"user{i}", f"{tag}-{i}") for i in range(n)]
    started = time.perf_counter()
    timed_out = False
    done = 0
    if name == "aiocognito":
        limits = aiocognito.Limits(
            max_concurrency=CONCURRENCY,
            user_update_rps=scenario.quota if scenario.tell_quota else None,
        )
        async with aiocognito.CognitoClient(
            region_name=REGION,
            user_pool_id=pool,
            endpoint_url=url,
            limits=limits,
            **KEYS,  # type: ignore[arg-type]
        ) as cognito:

            def call_for(user: str, value: str) -> Callable[[], Awaitable[Any]]:
                return lambda: cognito.admin_update_user_attributes(user, {"custom:tier": value})

            calls = [call_for(u, v) for u, v in users]
            try:
                failures = await asyncio.wait_for(_bounded(calls, None), TIME_LIMIT)
            except TimeoutError:
                timed_out, failures = True, {}
            stats = cognito.statistics()
            extra = {"calls_saved": stats.calls_saved, "client_throttled": stats.throttled}
    elif name == "boto3-threads":
        failures, timed_out = await asyncio.to_thread(_boto3_threads, url, pool, users)
        extra = {}
    else:
        mode = name.removeprefix("raw-")
        config = AioConfig(max_pool_connections=CONCURRENCY, retries={"mode": mode})
        session = get_session()
        async with session.create_client(
            "cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS
        ) as client:

            def call_for(user: str, value: str) -> Callable[[], Awaitable[Any]]:
                return lambda: client.admin_update_user_attributes(
                    UserPoolId=pool,
                    Username=user,
                    UserAttributes=[{"Name": "custom:tier", "Value": value}],
                )

            calls = [call_for(u, v) for u, v in users]
            try:
                failures = await asyncio.wait_for(_bounded(calls, CONCURRENCY), TIME_LIMIT)
            except TimeoutError:
                timed_out, failures = True, {}
            extra = {}
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    codes = list(failures.values())
    done = n - len(failures)
    return {
        "wall": wall,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "failed": len(failures),
        "failures_by_code": {c: codes.count(c) for c in sorted(set(codes))},
        "failed_indices": sorted(failures),
        "timed_out": timed_out,
        "completed": done if not timed_out else None,
        **extra,
    }


def _boto3_threads(
    url: str, pool: str, users: list[tuple[str, str]]
) -> tuple[dict[int, str], bool]:
    """boto3 in a thread pool, adaptive retries: how many synchronous scripts do it."""
    config = Config(max_pool_connections=THREADS, retries={"mode": "adaptive"})
    client = boto3.client(
        "cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS
    )
    failures: dict[int, str] = {}

    def one(index: int, user: str, value: str) -> None:
        try:
            client.admin_update_user_attributes(
                UserPoolId=pool, Username=user,
                UserAttributes=[{"Name": "custom:tier", "Value": value}],
            )  # fmt: skip
        except Exception as exc:  # recorded by code, as for the other contenders
            failures[index] = str(
                getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            )

    executor = concurrent.futures.ThreadPoolExecutor(THREADS)
    futures = [executor.submit(one, i, u, v) for i, (u, v) in enumerate(users)]
    _done, pending = concurrent.futures.wait(futures, timeout=TIME_LIMIT)
    executor.shutdown(wait=not pending, cancel_futures=True)
    return failures, bool(pending)


# ------------------------------------------------------------------------------------------
# The harness


def run_once(scenario: Scenario, contender: str, n: int, run: int) -> dict[str, Any]:
    """Start a fake, run one contender against it, and judge the outcome from the fake."""
    fake = FakeCognitoProcess(
        seed_users=n,
        user_update_rps=scenario.quota,
        latency_ms=scenario.latency_ms,
        faults=scenario.faults,
        seed=run,
    )
    with fake:
        tag = f"{scenario.name}-{contender}-{run}"
        started = time.perf_counter()
        try:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.engine", "--worker", contender,
                 scenario.name, fake.endpoint_url, fake.pool_id, str(n), tag],
                capture_output=True, text=True, check=True, timeout=TIME_LIMIT + 30,
                env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
            )  # fmt: skip
            result: dict[str, Any] = json.loads(out.stdout)
        except subprocess.TimeoutExpired:
            # The contender did not even stop at its own time limit (its retries and client-side
            # rate limiter kept going). Report what the server saw; its own counts are unknown.
            result = {
                "wall": time.perf_counter() - started, "timed_out": True, "failed": None,
                "failed_indices": [], "cpu_user": None, "cpu_sys": None, "peak_rss_mib": None,
            }  # fmt: skip
        stats = fake.stats()
        state = fake.attribute("custom:tier")
    requests = sum(c for op, _o, c in stats["requests"] if op == "AdminUpdateUserAttributes")
    throttled = sum(
        c
        for op, o, c in stats["requests"]
        if op == "AdminUpdateUserAttributes" and o == "TooManyRequestsException"
    )
    failed = set(result.pop("failed_indices"))
    wrong = {i for i in range(n) if state["values"].get(f"user{i}") != f"{tag}-{i}"}
    timeline = stats["quotas"]["UserUpdate"]["timeline"]
    after5 = [admitted for second, admitted, _t in timeline if second >= 5][:-1]
    result.update(
        requests=requests,
        throttled=throttled,
        throttled_share=throttled / max(requests, 1),
        requests_per_update=requests / n,
        # Lost: reported done, yet not what the server holds. (A row reported failed may still
        # have landed, e.g. applied and then reset; that is not a loss.)
        lost=len(wrong - failed) if not result["timed_out"] else None,
        not_applied=len(wrong),
        efficiency=result["wall"] / (n / scenario.quota),
        rate_after_5s=(statistics.mean(after5) / scenario.quota) if after5 else None,
        faults_injected=stats["faults_injected"],
        out_of_order=sum(
            1 for u, h in state["history"].items() if h and h[-1] != state["values"].get(u)
        ),
    )
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"  # NaN: not known for any run


def table(scenario: Scenario, results: dict[str, list[dict[str, Any]]], n: int) -> str:
    lines = [
        f"### {scenario.name}: {scenario.description} "
        f"(N = {n:,}, N/quota = {n / scenario.quota:.1f} s)",
        "",
        "| contender | wall s | wall ÷ (N/quota) | rate after 5 s ÷ quota | requests/update "
        "| throttled % | failed | lost | not applied | client CPU s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for contender, runs in results.items():

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return _median([float(r[key]) for r in runs if r.get(key) is not None])

        def cpu(runs: list[dict[str, Any]] = runs) -> str:
            known = [r["cpu_user"] + r["cpu_sys"] for r in runs if r.get("cpu_user") is not None]
            return f"{_median(known):.1f}" if known else "n/a"

        spread = f"{min(r['wall'] for r in runs):.1f} to {max(r['wall'] for r in runs):.1f}"
        note = " (did not finish in 120 s)" if any(r["timed_out"] for r in runs) else ""
        lines.append(
            f"| {contender}{note} | {med('wall'):.1f} ({spread}) | {med('efficiency'):.3f} | "
            f"{med('rate_after_5s'):.2f} | {med('requests_per_update'):.2f} | "
            f"{100 * med('throttled_share'):.1f} | {_num(med('failed'))} | {_num(med('lost'))} | "
            f"{_num(med('not_applied'))} | {cpu()} | {_num(med('peak_rss_mib'))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--contender", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--json", help="also write every run's figures here")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, scenario, url, pool, n, tag = args.worker
        print(
            json.dumps(asyncio.run(_contender(name, SCENARIOS[scenario], url, pool, int(n), tag)))
        )
        return
    everything: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in args.scenario:
        scenario = SCENARIOS[name]
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.contender}
        for run in range(args.runs):
            for contender in args.contender:
                r = run_once(scenario, contender, args.updates, run)
                results[contender].append(r)
                print(
                    f"{name} run {run + 1} {contender:13} wall {r['wall']:6.1f}s "
                    f"eff {r['efficiency']:.3f} thr {100 * r['throttled_share']:5.1f}% "
                    f"failed {r['failed']} lost {r['lost']}",
                    file=sys.stderr,
                    flush=True,
                )
        everything[name] = results
        print(table(scenario, results, args.updates) + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
