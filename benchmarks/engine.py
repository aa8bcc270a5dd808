"""The engine against its peers at the quota: scenarios 1 to 4 and 7 of the benchmarks, and
the limiter under adversity (issue 12).

Scenarios (see SCENARIOS): known quota, unknown quota, faults, web beside bulk and hot users
(the default run); noisy-unknown and noisy-known (random throttles, 500s and resets after
applying, with the quota not told or told); workers and workers-default (P processes on one
quota, each told the whole quota, or each on the default Limits(); --workers sets the P's).
In the workers scenarios every process makes its share of the N updates, and the figures are
for the whole: aggregate wall time, throttled share, failed, lost, and Jain's fairness index
of the processes' own rates.

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

    python -m benchmarks.engine [--runs 3] [--updates 5000] [--scenario known web ...]
                                [--contender aiocognito raw-standard ...] [--plots DIR]
                                [--workers 1 2 4 8]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
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
from aiocognito._errors import error_code
from aiocognito.testing import FakeCognitoProcess
from benchmarks._common import (
    CONCURRENCY,
    CONTENDERS,
    KEYS,
    REGION,
    ROOT,
    THREADS,
    child_env,
    command_line,
    describe_run,
)
from benchmarks._peak import own_peak_rss_mib


def time_limit() -> float:
    """Seconds after which a contender is stopped and reported as not finished.

    Set with --time-limit; the contender processes inherit it through the environment.
    """
    return float(os.environ.get("AIOCOGNITO_BENCH_TIME_LIMIT", "120"))


@attrs.frozen
class Scenario:
    name: str
    quota: float
    latency_ms: float
    faults: tuple[str, ...] = ()
    tell_quota: bool = True
    description: str = ""
    hot: bool = False  # 20 % of the updates go to 1 % of the users
    web_rps: float = 0.0  # per-call updates per second beside the bulk job
    defaults: bool = False  # aiocognito runs on Limits() as it comes (25/s, adaptive)
    workers: bool = False  # run in P processes on the one quota (see --workers)
    updates: int | None = None  # the scenario's own N, unless --updates is given


ORIGINAL_SCENARIOS = ("known", "unknown", "faults", "web", "hot")  # the default run

# The issue's noisy case: random throttles (each spends a token of the quota, as a real
# service's would), 500s, and resets after the update was applied (an ambiguous failure).
ISSUE_FAULTS = ("throttle:p=0.10", "internal_error:p=0.01", "reset_after:p=0.01")
SCENARIOS = {
    "known": Scenario(
        "known", 250, 20, description="admin updates, a 250/s quota, 20 ms latency"
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
    "web": Scenario(
        "web", 250, 20, web_rps=5.0,
        description="a bulk job while 5 per-call updates/s arrive",
    ),
    "hot": Scenario(
        "hot", 250, 20, hot=True,
        description="20 % of the updates go to 1 % of the users",
    ),
    "noisy-unknown": Scenario(
        "noisy-unknown",
        150,
        20,
        faults=ISSUE_FAULTS,
        tell_quota=False,
        updates=3000,
        description="a 150/s quota nobody is told, plus 10 % throttles at random, 1 % 500s and "
        "1 % resets after applying",
    ),
    "noisy-known": Scenario(
        "noisy-known",
        150,
        20,
        faults=ISSUE_FAULTS,
        updates=3000,
        description="the same, but aiocognito is told the quota",
    ),
    "workers": Scenario(
        "workers", 150, 20, workers=True, updates=3000,
        description="P processes on one 150/s quota, each told the whole quota",
    ),
    "workers-default": Scenario(
        "workers-default", 25, 20, workers=True, defaults=True, updates=1000,
        description="P processes on one 25/s quota, each on the default Limits()",
    ),
}  # fmt: skip
WEB_USERS = 1000  # seeded beyond the bulk job's users, one per per-call update


# ------------------------------------------------------------------------------------------
# The plan: who gets which value, in submission order


def plan(scenario: Scenario, n: int, tag: str) -> list[tuple[str, str]]:
    """The bulk job's updates as (user, value); values sort in submission order."""
    if not scenario.hot:
        return [(f"user{i}", f"{tag}-{i:06d}") for i in range(n)]
    hot_users = max(1, round(n * 0.8 / 99))  # 1 % of all the users the job touches
    updates, cold = [], 0
    for i in range(n):
        if i % 5 == 4:  # every fifth update, round-robin over the hot users
            user = f"user{(i // 5) % hot_users}"
        else:
            user = f"user{hot_users + cold}"
            cold += 1
        updates.append((user, f"{tag}-{i:06d}"))
    return updates


def users_needed(scenario: Scenario, n: int) -> int:
    return n + (WEB_USERS if scenario.web_rps else 0)


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
            failures[index] = error_code(exc)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    return failures


async def _web(
    update: Callable[[str, str], Awaitable[Any]],
    rps: float,
    n: int,
    tag: str,
    until: asyncio.Event,
) -> dict[str, Any]:
    """Per-call updates at ``rps`` while the bulk job runs; their latencies and failures."""
    latencies: list[float] = []
    failed = 0
    k = 0
    next_at = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []

    async def one(user: str, value: str) -> None:
        nonlocal failed
        started = time.perf_counter()
        try:
            await update(user, value)
        except Exception:  # counted; the request's fate is the measurement
            failed += 1
        latencies.append(time.perf_counter() - started)

    while not until.is_set() and k < WEB_USERS:
        tasks.append(asyncio.create_task(one(f"user{n + k}", f"{tag}-web-{k:06d}")))
        k += 1
        next_at += 1.0 / rps
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*tasks)
    latencies.sort()

    def pick(quantile: float) -> float:
        return latencies[min(len(latencies) - 1, int(quantile * len(latencies)))] * 1000

    return {
        "web_calls": len(latencies),
        "web_failed": failed,
        "web_p50_ms": pick(0.50) if latencies else None,
        "web_p99_ms": pick(0.99) if latencies else None,
    }


Outcome = tuple[dict[int, str], bool, float, dict[str, Any]]  # failures, timed out, bulk s, extra


async def _run_aiocognito(
    scenario: Scenario, url: str, pool: str, n: int, tag: str, updates: list[tuple[str, str]]
) -> Outcome:
    started = time.perf_counter()
    bulk_done = asyncio.Event()
    extra: dict[str, Any] = {}
    limits = (
        aiocognito.Limits()  # as it comes: 64 in flight, 25/s, adaptive
        if scenario.defaults
        else aiocognito.Limits(
            max_concurrency=CONCURRENCY,
            user_update_rps=scenario.quota if scenario.tell_quota else None,
        )
    )
    async with aiocognito.CognitoClient(
        region_name=REGION, user_pool_id=pool, endpoint_url=url, limits=limits,
        **KEYS,  # type: ignore[arg-type]
    ) as cognito:  # fmt: skip

        async def per_call(user: str, value: str) -> Any:
            return await cognito.admin_update_user_attributes(user, {"custom:tier": value})

        failures: dict[int, str] = {}
        timed_out = False
        if scenario.web_rps:
            web = asyncio.create_task(_web(per_call, scenario.web_rps, n, tag, bulk_done))
            # The bulk part goes through bulk_update, at bulk priority: per-call work first.
            rows = (
                aiocognito.AttributeUpdate(username=u, attributes={"custom:tier": v})
                for u, v in updates
            )
            try:
                async with asyncio.timeout(time_limit()), cognito.bulk_update(rows) as outcomes:
                    async for outcome in outcomes:
                        if not outcome.ok:
                            failures[outcome.index] = outcome.code or "Error"
            except TimeoutError:
                timed_out = True
            bulk_wall = time.perf_counter() - started
            bulk_done.set()
            extra.update(await web)
        else:
            calls: list[Callable[[], Awaitable[Any]]] = [
                functools.partial(per_call, u, v) for u, v in updates
            ]
            try:
                failures = await asyncio.wait_for(_bounded(calls, None), time_limit())
            except TimeoutError:
                timed_out = True
            bulk_wall = time.perf_counter() - started
        stats = cognito.statistics()
        extra.update(calls_saved=stats.calls_saved, client_throttled=stats.throttled)
    return failures, timed_out, bulk_wall, extra


async def _run_raw(
    mode: str, scenario: Scenario, url: str, pool: str, n: int, tag: str,
    updates: list[tuple[str, str]],
) -> Outcome:  # fmt: skip
    started = time.perf_counter()
    bulk_done = asyncio.Event()
    extra: dict[str, Any] = {}
    config = AioConfig(max_pool_connections=CONCURRENCY, retries={"mode": mode})
    session = get_session()

    def updater(client: Any) -> Callable[[str, str], Awaitable[Any]]:
        async def update(user: str, value: str) -> Any:
            return await client.admin_update_user_attributes(
                UserPoolId=pool, Username=user,
                UserAttributes=[{"Name": "custom:tier", "Value": value}],
            )  # fmt: skip

        return update

    async with contextlib.AsyncExitStack() as stack:

        async def open_client() -> Any:
            return await stack.enter_async_context(
                session.create_client(
                    "cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS
                )
            )

        update = updater(await open_client())
        web = None
        if scenario.web_rps:
            # Users run web traffic and a migration on separate clients today.
            web_update = updater(await open_client())
            web = asyncio.create_task(_web(web_update, scenario.web_rps, n, tag, bulk_done))
        calls: list[Callable[[], Awaitable[Any]]] = [
            functools.partial(update, u, v) for u, v in updates
        ]
        failures: dict[int, str] = {}
        timed_out = False
        try:
            failures = await asyncio.wait_for(_bounded(calls, CONCURRENCY), time_limit())
        except TimeoutError:
            timed_out = True
        bulk_wall = time.perf_counter() - started
        bulk_done.set()
        if web is not None:
            extra.update(await web)
    return failures, timed_out, bulk_wall, extra


def worker_slice() -> tuple[int, int]:
    """This process's place among the scenario's processes: (index, count)."""
    index, count = os.environ.get("AIOCOGNITO_BENCH_SLICE", "0/1").split("/")
    return int(index), int(count)


def slice_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """The updates ``[start, end)`` that process ``index`` of ``count`` makes."""
    return n * index // count, n * (index + 1) // count


async def _contender(
    name: str, scenario: Scenario, url: str, pool: str, n: int, tag: str
) -> dict[str, Any]:
    start, end = slice_bounds(n, *worker_slice())
    updates = plan(scenario, n, tag)[start:end]
    started = time.perf_counter()
    if name == "aiocognito":
        outcome = await _run_aiocognito(scenario, url, pool, n, tag, updates)
    elif name == "boto3-threads":
        outcome = await _run_boto3(scenario, url, pool, n, tag, updates)
    else:
        outcome = await _run_raw(name.removeprefix("raw-"), scenario, url, pool, n, tag, updates)
    failures, timed_out, bulk_wall, extra = outcome
    usage = resource.getrusage(resource.RUSAGE_SELF)
    codes = list(failures.values())
    return {
        "wall": time.perf_counter() - started,
        "bulk_wall": bulk_wall,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "peak_rss_mib": own_peak_rss_mib(),  # not ru_maxrss: see benchmarks/_peak.py
        "failed": len(failures),
        "failures_by_code": {c: codes.count(c) for c in sorted(set(codes))},
        "failed_indices": sorted(start + i for i in failures),  # as indices of the whole plan
        "updates": end - start,
        "timed_out": timed_out,
        **extra,
    }


def _boto3_client(url: str) -> Any:
    config = Config(max_pool_connections=THREADS, retries={"mode": "adaptive"})
    return boto3.client("cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS)


def _boto3_update(client: Any, pool: str, user: str, value: str) -> Any:
    return client.admin_update_user_attributes(
        UserPoolId=pool, Username=user, UserAttributes=[{"Name": "custom:tier", "Value": value}]
    )


async def _run_boto3(
    scenario: Scenario, url: str, pool: str, n: int, tag: str, updates: list[tuple[str, str]]
) -> Outcome:
    """The bulk job in a pool of 32 threads; per-call updates on a second client, in threads of
    their own, as a threaded web server beside a migration script would send them."""
    started = time.perf_counter()
    bulk_done = asyncio.Event()
    extra: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as web_threads:  # threads start lazily
        web = None
        if scenario.web_rps:
            web_client = _boto3_client(url)

            async def web_update(user: str, value: str) -> Any:
                call = functools.partial(_boto3_update, web_client, pool, user, value)
                return await loop.run_in_executor(web_threads, call)

            web = asyncio.create_task(_web(web_update, scenario.web_rps, n, tag, bulk_done))
        failures, timed_out = await asyncio.to_thread(_boto3_threads, url, pool, updates)
        bulk_wall = time.perf_counter() - started
        bulk_done.set()
        if web is not None:
            extra.update(await web)
    return failures, timed_out, bulk_wall, extra


def _boto3_threads(
    url: str, pool: str, users: list[tuple[str, str]]
) -> tuple[dict[int, str], bool]:
    """boto3 in a thread pool, adaptive retries: how many synchronous scripts do it."""
    client = _boto3_client(url)
    failures: dict[int, str] = {}

    def one(index: int, user: str, value: str) -> None:
        try:
            _boto3_update(client, pool, user, value)
        except Exception as exc:  # recorded by code, as for the other contenders
            failures[index] = error_code(exc)

    executor = concurrent.futures.ThreadPoolExecutor(THREADS)
    futures = [executor.submit(one, i, u, v) for i, (u, v) in enumerate(users)]
    _done, pending = concurrent.futures.wait(futures, timeout=time_limit())
    executor.shutdown(wait=not pending, cancel_futures=True)
    return failures, bool(pending)


# ------------------------------------------------------------------------------------------
# The harness


def run_once(scenario: Scenario, contender: str, n: int, run: int) -> dict[str, Any]:
    """Start a fake, run one contender against it, and judge the outcome from the fake."""
    fake = FakeCognitoProcess(
        seed_users=users_needed(scenario, n),
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
                capture_output=True, text=True, check=True, timeout=time_limit() + 10,
                env=child_env(), cwd=ROOT,
            )  # fmt: skip
            result: dict[str, Any] = json.loads(out.stdout)
        except subprocess.CalledProcessError as exc:
            sys.stderr.write(exc.stderr[-4000:])  # the contender's own traceback
            raise
        except subprocess.TimeoutExpired:
            # The contender did not even stop at its own time limit (its retries and client-side
            # rate limiter kept going). Report what the server saw; its own counts are unknown.
            result = {
                "wall": time.perf_counter() - started, "timed_out": True, "failed": None,
                "failed_indices": [], "cpu_user": None, "cpu_sys": None, "peak_rss_mib": None,
            }  # fmt: skip
        stats = fake.stats()
        state = fake.attribute("custom:tier")
    return judge(scenario, n, tag, result, stats, state)


def run_workers(
    scenario: Scenario, contender: str, n: int, run: int, processes: int
) -> dict[str, Any]:
    """Start a fake, run ``processes`` copies of one contender against it at once, each with
    its own share of the updates, and judge the whole from the fake.

    The aggregate wall time is the longest of the processes' own (each from its first call
    to its last answer, so that interpreter start-up on a busy machine is not counted).
    """
    fake = FakeCognitoProcess(
        seed_users=n,
        user_update_rps=scenario.quota,
        latency_ms=scenario.latency_ms,
        faults=scenario.faults,
        seed=run,
    )
    with fake:
        tag = f"{scenario.name}-{contender}-p{processes}-{run}"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.engine",
                    "--worker",
                    contender,
                    scenario.name,
                    fake.endpoint_url,
                    fake.pool_id,
                    str(n),
                    tag,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**child_env(), "AIOCOGNITO_BENCH_SLICE": f"{k}/{processes}"},
                cwd=ROOT,
            )
            for k in range(processes)
        ]
        deadline = time.perf_counter() + time_limit() + 30  # start-up of P interpreters
        outs: list[dict[str, Any] | None] = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.perf_counter(), 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()  # it did not stop at its own time limit: what the server saw stands
                proc.communicate()
                outs.append(None)
                continue
            if proc.returncode != 0:
                sys.stderr.write(err[-4000:])  # the contender's own traceback
                raise subprocess.CalledProcessError(proc.returncode, proc.args)
            outs.append(json.loads(out))
        stats = fake.stats()
        state = fake.attribute("custom:tier")
    done = [o for o in outs if o is not None]
    result: dict[str, Any] = {
        "wall": max(o["wall"] for o in done) if done else time_limit(),
        "bulk_wall": max(o["bulk_wall"] for o in done) if done else None,
        "timed_out": len(done) < processes or any(o["timed_out"] for o in done),
        "failed": sum(o["failed"] for o in done) if len(done) == processes else None,
        "failed_indices": [i for o in done for i in o["failed_indices"]],
        "cpu_user": sum(o["cpu_user"] for o in done) if done else None,
        "cpu_sys": sum(o["cpu_sys"] for o in done) if done else None,
        "peak_rss_mib": max(o["peak_rss_mib"] for o in done) if done else None,
        "processes": processes,
        # Each process's rate: its updates over its own wall time.
        "process_rates": [o["updates"] / o["wall"] for o in done],
    }
    judged = judge(scenario, n, tag, result, stats, state)
    judged["jain"] = jain(judged["process_rates"]) if len(done) == processes else None
    return judged


def jain(rates: Sequence[float]) -> float:
    """Jain's fairness index: 1 when every process got the same rate, 1/P when one got all."""
    return sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates)) if any(rates) else 0.0


def judge(
    scenario: Scenario,
    n: int,
    tag: str,
    result: dict[str, Any],
    stats: dict[str, Any],
    state: dict[str, Any],
) -> dict[str, Any]:
    """Add the server's view to a contender's own figures.

    ``stats`` and ``state`` are the fake's ``/_fake/stats`` and its view of ``custom:tier``
    (values and per-user history) after the run.
    """
    requests = sum(c for op, _o, c in stats["requests"] if op == "AdminUpdateUserAttributes")
    throttled = sum(
        c
        for op, o, c in stats["requests"]
        if op == "AdminUpdateUserAttributes" and o == "TooManyRequestsException"
    )
    updates = plan(scenario, n, tag)
    last: dict[str, tuple[int, str]] = {}  # user -> (index, value) of its last update
    for index, (user, value) in enumerate(updates):
        last[user] = (index, value)
    failed = set(result.pop("failed_indices"))
    wrong = {u for u, (_i, v) in last.items() if state["values"].get(u) != v}
    failed_users = {u for u, (i, _v) in last.items() if i in failed}
    history = {u: h for u, h in state["history"].items() if u in last}
    timeline = stats["quotas"]["UserUpdate"]["timeline"]
    after5 = [admitted for second, admitted, _t in timeline if second >= 5][:-1]
    bulk_ok = n - (result["failed"] or 0)
    return {
        **result,
        "requests": requests,
        "throttled": throttled,
        "throttled_share": throttled / max(requests, 1),
        "requests_per_update": requests / n,
        # Lost: reported done, yet the server does not hold the user's last value. (A row
        # reported failed may still have landed, e.g. applied and then reset; no loss.)
        "lost": len(wrong - failed_users) if not result["timed_out"] else None,
        "not_applied": len(wrong),
        # Out of order: a user whose applied values are not in submission order.
        "out_of_order": sum(1 for h in history.values() if h != sorted(h)),
        "efficiency": result["wall"] / (n / scenario.quota),
        "rate_after_5s": (statistics.mean(after5) / scenario.quota) if after5 else None,
        "bulk_share": bulk_ok / result["bulk_wall"] / scenario.quota
        if result.get("bulk_wall")
        else None,
        "faults_injected": stats["faults_injected"],
        "timeline": timeline,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _num(value: float, spec: str = ".0f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)  # NaN: not known for any run


Runs = list[dict[str, Any]]


@attrs.frozen
class Column:
    """One table column: a header, the median figure over a contender's runs, a format."""

    header: str
    figure: Callable[[Runs], float]
    spec: str = ".0f"


def _median_of(key: str, scale: float = 1.0) -> Callable[[Runs], float]:
    return lambda runs: scale * _median([float(r[key]) for r in runs if r.get(key) is not None])


def _cpu(runs: Runs) -> float:
    return _median([r["cpu_user"] + r["cpu_sys"] for r in runs if r.get("cpu_user") is not None])


COLUMNS = (
    Column("wall s", _median_of("wall"), ".1f"),
    Column("wall ÷ (N/quota)", _median_of("efficiency"), ".3f"),
    Column("rate after 5 s ÷ quota", _median_of("rate_after_5s"), ".2f"),
    Column("requests/update", _median_of("requests_per_update"), ".2f"),
    Column("throttled %", _median_of("throttled_share", 100), ".1f"),
    Column("failed", _median_of("failed"), ",.0f"),
    Column("lost", _median_of("lost"), ",.0f"),
    Column("not applied", _median_of("not_applied"), ",.0f"),
    Column("client CPU s (user + sys)", _cpu, ".1f"),
    Column("peak RSS MiB", _median_of("peak_rss_mib")),
)
WEB_COLUMNS = (
    Column("per-call p50 ms", _median_of("web_p50_ms")),
    Column("per-call p99 ms", _median_of("web_p99_ms")),
    Column("per-call failed", _median_of("web_failed")),
    Column("bulk share of quota", _median_of("bulk_share"), ".2f"),
)
HOT_COLUMNS = (
    Column("calls saved", _median_of("calls_saved"), ",.0f"),
    Column("users out of order", _median_of("out_of_order")),
)


def columns(scenario: Scenario) -> tuple[Column, ...]:
    extra = WEB_COLUMNS if scenario.web_rps else HOT_COLUMNS if scenario.hot else ()
    return COLUMNS + extra


def table(scenario: Scenario, results: dict[str, Runs], n: int) -> str:
    """One Markdown table: contenders as rows, medians of the runs as columns.

    The wall time also shows its spread over the runs. The last row gives each of
    aiocognito's figures as a ratio to the best peer's (see :func:`best_peer`).
    """
    cols = columns(scenario)
    lines = [
        f"### {scenario.name}: {scenario.description} "
        f"(N = {n:,}, N/quota = {n / scenario.quota:.1f} s)",
        "",
        "| contender | " + " | ".join(c.header for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for contender, runs in results.items():
        cells = [_num(c.figure(runs), c.spec) for c in cols]
        cells[0] += f" ({min(r['wall'] for r in runs):.1f} to {max(r['wall'] for r in runs):.1f})"
        stopped = any(r["timed_out"] for r in runs)
        note = f" (did not finish in {time_limit():g} s)" if stopped else ""
        lines.append(f"| {contender}{note} | " + " | ".join(cells) + " |")
    best = best_peer(results)
    if best is not None and "aiocognito" in results:
        ours, theirs = results["aiocognito"], results[best]
        ratios = [_ratio(c.figure(ours), c.figure(theirs)) for c in cols]
        lines.append(f"| *aiocognito ÷ {best}* | " + " | ".join(ratios) + " |")
        lines += ["", _versus_best_peer(results, best)]
    return "\n".join(lines)


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs):
        return "n/a"
    if ours == theirs == 0:
        return "both 0"
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def _clean(runs: Runs) -> bool:
    return not any(r["timed_out"] or r["failed"] or r["lost"] for r in runs)


def best_peer(results: dict[str, Runs]) -> str | None:
    """The fastest peer that failed and lost nothing in any run. If every peer failed or lost
    updates, the one that left the fewest updates not applied (then the fastest): a ratio
    against a peer that skipped most of the work would flatter nobody."""
    peers = {name: runs for name, runs in results.items() if name != "aiocognito"}
    if not peers:
        return None
    wall, not_applied = _median_of("wall"), _median_of("not_applied")
    clean = [name for name, runs in peers.items() if _clean(runs)]
    if clean:
        return min(clean, key=lambda name: wall(peers[name]))
    return min(peers, key=lambda name: (not_applied(peers[name]), wall(peers[name])))


def _versus_best_peer(results: dict[str, Runs], best: str) -> str:
    """aiocognito's key figures as ratios against the best peer of the same run, in words."""
    ours, theirs = results["aiocognito"], results[best]
    why = (
        "the fastest that failed and lost nothing"
        if _clean(theirs)
        else "every peer failed or lost updates; this one left the fewest not applied"
    )
    figures = {
        "wall": _median_of("wall"),
        "client CPU": _cpu,
        "requests per update": _median_of("requests_per_update"),
    }
    said = ", ".join(f"{k} {_ratio(f(ours), f(theirs))}" for k, f in figures.items())
    return f"aiocognito against the best peer ({best}, {why}): {said}."


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose wall time is the median (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2]


def plot(name: str, scenario: Scenario, results: dict[str, list[dict[str, Any]]], path: str) -> str:
    """Achieved throughput per second against the quota, one line per contender.

    Each contender's line is its median run by wall time, from the same runs as the table.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(matplotlib is not installed: pip install '.[bench]' for plots)"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for contender, runs in results.items():
        timeline = median_run(runs).get("timeline") or []
        ax.plot([t[0] for t in timeline], [t[1] for t in timeline], label=contender)
    ax.axhline(scenario.quota, color="black", linestyle="--", linewidth=1, label="quota")
    ax.set_xlabel("seconds since the fake server started")
    ax.set_ylabel("updates admitted per second")
    ax.set_title(f"{name}: {scenario.description}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def workers_table(scenario: Scenario, results: dict[tuple[str, int], Runs], n: int) -> str:
    """One Markdown table for a workers scenario: a row per contender and process count.

    Figures are medians over the runs, with the range of the key ones: the aggregate wall over
    the ideal (N / quota), and Jain's fairness index of the processes' own rates.
    """
    lines = [
        f"### {scenario.name}: {scenario.description} "
        f"(N = {n:,} in all, N/quota = {n / scenario.quota:.1f} s)",
        "",
        "| contender | P | runs | wall ÷ (N/quota) | throttled % | failed (max) | lost | "
        "not applied | Jain's index (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (contender, processes), rs in results.items():
        eff = [r["efficiency"] for r in rs]
        failed = [r["failed"] for r in rs if r["failed"] is not None]
        fairness = [r["jain"] for r in rs if r["jain"] is not None]
        stopped = any(r["timed_out"] for r in rs)
        note = f" (not all finished in {time_limit():g} s)" if stopped else ""
        cells = [
            f"{_median(eff):.3f} ({min(eff):.3f} to {max(eff):.3f})",
            _num(_median_of("throttled_share", 100)(rs), ".1f"),
            f"{_num(_median([float(f) for f in failed]), ',.0f')} ({max(failed, default=0):,})",
            _num(_median_of("lost")(rs), ",.0f"),
            _num(_median_of("not_applied")(rs), ",.0f"),
            f"{_num(_median(fairness), '.3f')} ({min(fairness, default=float('nan')):.3f})",
        ]
        lines.append(f"| {contender}{note} | {processes} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def workers_plot(scenario: Scenario, results: dict[tuple[str, int], Runs], path: str) -> str:
    """Aggregate wall ÷ ideal and Jain's index against the number of processes (medians)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(matplotlib is not installed: pip install '.[bench]' for plots)"
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    for contender in dict.fromkeys(c for c, _p in results):
        ps = sorted(p for c, p in results if c == contender)
        eff = [_median([r["efficiency"] for r in results[contender, p]]) for p in ps]
        fair = [
            _median([r["jain"] for r in results[contender, p] if r["jain"] is not None]) for p in ps
        ]
        left.plot(ps, eff, marker="o", label=contender)
        right.plot(ps, fair, marker="o", label=contender)
    left.axhline(1.0, color="black", linestyle="--", linewidth=1)
    left.set_xlabel("processes on the one quota")
    left.set_ylabel("aggregate wall ÷ (N / quota)")
    right.set_xlabel("processes on the one quota")
    right.set_ylabel("Jain's fairness index")
    right.set_ylim(0, 1.05)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    fig.suptitle(f"{scenario.name}: {scenario.description}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--updates", type=int, help="N (default: the scenario's own, else 5,000)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4, 8], metavar="P",
        help="process counts for the workers scenarios",
    )  # fmt: skip
    parser.add_argument(
        "--scenario", nargs="+", choices=sorted(SCENARIOS), default=list(ORIGINAL_SCENARIOS)
    )
    parser.add_argument("--contender", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--json", help="also write every run's figures here")
    parser.add_argument("--plots", metavar="DIR", help="draw throughput-over-time PNGs here")
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="S",
        help="seconds per contender (default 120)",
    )
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_limit:
        os.environ["AIOCOGNITO_BENCH_TIME_LIMIT"] = str(args.time_limit)
    if args.worker:
        name, scenario, url, pool, n, tag = args.worker
        print(
            json.dumps(asyncio.run(_contender(name, SCENARIOS[scenario], url, pool, int(n), tag)))
        )
        return
    print(f"Run: {describe_run()}\nCommand: {command_line()}\n", flush=True)
    everything: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in args.scenario:
        scenario = SCENARIOS[name]
        n = args.updates or scenario.updates or 5000
        if scenario.workers:
            by_p: dict[tuple[str, int], Runs] = {}
            for processes in args.workers:
                for run in range(args.runs):
                    for contender in args.contender:
                        r = run_workers(scenario, contender, n, run, processes)
                        by_p.setdefault((contender, processes), []).append(r)
                        print(
                            f"{name} P={processes} run {run + 1} {contender:13} "
                            f"eff {r['efficiency']:.3f} thr {100 * r['throttled_share']:5.1f}% "
                            f"failed {r['failed']} lost {r['lost']} jain {r['jain']}",
                            file=sys.stderr,
                            flush=True,
                        )
            everything[name] = {f"{c} P={p}": rs for (c, p), rs in by_p.items()}
            print(workers_table(scenario, by_p, n) + "\n", flush=True)
            if args.plots:
                os.makedirs(args.plots, exist_ok=True)
                path = os.path.join(args.plots, f"engine-{name}.png")
                print(f"plot: {workers_plot(scenario, by_p, path)}\n", flush=True)
            continue
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.contender}
        for run in range(args.runs):
            for contender in args.contender:
                r = run_once(scenario, contender, n, run)
                results[contender].append(r)
                print(
                    f"{name} run {run + 1} {contender:13} wall {r['wall']:6.1f}s "
                    f"eff {r['efficiency']:.3f} thr {100 * r['throttled_share']:5.1f}% "
                    f"failed {r['failed']} lost {r['lost']}",
                    file=sys.stderr,
                    flush=True,
                )
        everything[name] = results
        print(table(scenario, results, n) + "\n", flush=True)
        if args.plots:
            os.makedirs(args.plots, exist_ok=True)
            drawn = plot(name, scenario, results, os.path.join(args.plots, f"engine-{name}.png"))
            print(f"plot: {drawn}\n", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
