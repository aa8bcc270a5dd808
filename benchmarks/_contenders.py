"""The engine benchmark's contenders, and the one scaffold that runs any of them in its process.

A contender is an entry of :data:`CONTENDERS`: a name and a small function that opens its
clients and says how they make the updates (a :class:`Driver`). The scaffold, :func:`drive`,
does the rest for every contender alike: it takes the process's share of the plan, starts the
per-call traffic beside the bulk job if the scenario has some, times the bulk job under the
time limit, and reports the figures the harness judges.

What a process is told comes as data, a :class:`Job`, including aiocognito's ``Limits(...)``
keywords: the scenario's, and any a contender's harness side adds for the run (see
:attr:`Contender.extra_limits`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import attrs
from aiobotocore.session import get_session

import aiocognito
from aiocognito._errors import error_code
from benchmarks._common import CONCURRENCY, KEYS, REGION, THREADS
from benchmarks._peak import own_peak_rss_mib
from benchmarks._peers import boto3_client, raw_client, wire
from benchmarks._redis import (
    alone_on_host,
    host_quota,
    shared_quota,
    shared_quota_killed_after,
)
from benchmarks._scenarios import (
    SCENARIOS,
    WEB_USERS,
    Scenario,
    plan,
    slice_bounds,
    time_limit,
)

Update = Callable[[str, str], Awaitable[Any]]  # (user, value): one per-call update
Updates = list[tuple[str, str]]
Bulk = Callable[[Updates, dict[int, str]], Awaitable[bool]]  # see Driver
Call = Callable[[], Awaitable[Any]]


@attrs.frozen
class Job:
    """What one contender process is told, as JSON on its command line."""

    contender: str
    scenario: str
    url: str
    pool: str
    n: int  # the updates of the whole plan, over every process of the run
    tag: str
    limits: dict[str, Any] = attrs.field(factory=dict)  # aiocognito.Limits(**limits)
    index: int = 0  # this process's place among the run's processes
    processes: int = 1

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


@attrs.frozen
class Setup:
    """What a contender's clients are opened with, in its process."""

    scenario: Scenario
    url: str
    pool: str
    limits: dict[str, Any]


@attrs.frozen
class Driver:
    """An open contender, as the scaffold drives it.

    ``bulk(updates, failures)`` makes the bulk job's updates, records each one that failed as
    its index in ``updates`` -> its error code, and says whether the time limit stopped it.
    ``per_call`` makes one update as a web request would, beside the bulk job (needed when the
    scenario has per-call traffic). ``figures()`` gives the contender's own figures after the
    run.
    """

    bulk: Bulk
    per_call: Update | None = None
    figures: Callable[[], dict[str, Any]] = dict


@contextlib.contextmanager
def _no_extra_limits() -> Iterator[dict[str, Any]]:
    yield {}


@attrs.frozen
class Contender:
    """One contender: how its process opens its clients, and what the harness adds per run."""

    name: str
    open: Callable[[Setup], AbstractAsyncContextManager[Driver]]
    """In the contender's process: open the clients and yield the :class:`Driver`."""
    extra_limits: Callable[[], AbstractContextManager[dict[str, Any]]] = _no_extra_limits
    """In the harness, entered around each run (after the fake starts, before the contender's
    processes do): yields keywords added to the scenario's ``Limits(...)`` for every process
    of the run, e.g. the address of a server that it started for the run."""


# ------------------------------------------------------------------------------------------
# The scaffold's parts


async def _in_time(work: Awaitable[None]) -> bool:
    """Await ``work`` for at most the time limit; whether the limit stopped it."""
    try:
        async with asyncio.timeout(time_limit()):
            await work
    except TimeoutError:
        return True
    return False


async def _bounded(calls: Sequence[Call], limit: int | None) -> dict[int, str]:
    """Run every call (under a semaphore if ``limit``); return failed index -> error code."""
    sem = asyncio.Semaphore(limit) if limit else None
    failures: dict[int, str] = {}

    async def one(index: int, call: Call) -> None:
        try:
            if sem is None:
                await call()
            else:
                async with sem:
                    await call()
        except Exception as exc:  # recorded by code; the harness checks the server's state
            failures[index] = error_code(exc)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    return failures


def _gathered(update: Update, limit: int | None) -> Bulk:
    """A bulk job as a script writes it: every update at once, under a semaphore if ``limit``.
    Its failures are known when it ends: a run the time limit stops reports none."""

    async def bulk(updates: Updates, failures: dict[int, str]) -> bool:
        calls = [functools.partial(update, u, v) for u, v in updates]

        async def work() -> None:
            failures.update(await _bounded(calls, limit))

        return await _in_time(work())

    return bulk


async def _web(
    update: Update, rps: float, n: int, tag: str, until: asyncio.Event
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


# ------------------------------------------------------------------------------------------
# The scaffold


async def drive(contender: Contender, job: Job) -> dict[str, Any]:
    """Run this process's share of the job's plan with one contender; its own figures.

    ``wall`` runs from opening the clients to closing them; ``bulk_wall`` ends with the bulk
    job. ``began_at`` and ``ended_at`` (the host's clock) bracket the bulk job itself, clients
    open, so a run's *makespan* over several processes is from the first start to the last end.
    ``failed_indices`` are indices of the whole plan.
    """
    scenario = SCENARIOS[job.scenario]
    start, end = slice_bounds(job.n, job.index, job.processes)
    web_here = bool(scenario.web_rps)
    if scenario.web_apart and job.processes > 1:
        # The last process makes only the per-call updates; the others share the bulk job.
        web_here = job.index == job.processes - 1
        start, end = (
            (job.n, job.n) if web_here else slice_bounds(job.n, job.index, job.processes - 1)
        )
    updates = plan(scenario, job.n, job.tag)[start:end]
    setup = Setup(scenario, job.url, job.pool, job.limits)
    failures: dict[int, str] = {}
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    async with contender.open(setup) as driver:
        bulk_done = asyncio.Event()
        web = None
        if web_here:
            assert driver.per_call is not None, f"{contender.name} makes no per-call updates"
            web = asyncio.create_task(
                _web(driver.per_call, scenario.web_rps, job.n, job.tag, bulk_done)
            )
        began_at = time.time()  # the host's clock: the harness compares processes by it
        if updates or not web_here:
            timed_out = await driver.bulk(updates, failures)
            bulk_wall = time.perf_counter() - started
        else:  # per-call updates alone, for as long as the bulk job ideally takes
            await asyncio.sleep(job.n / scenario.quota)
            timed_out, bulk_wall = False, 0.0
        ended_at = time.time()
        bulk_done.set()
        if web is not None:
            extra.update(await web)
        extra.update(driver.figures())
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    codes = list(failures.values())
    return {
        "wall": wall,
        "bulk_wall": bulk_wall,
        "began_at": began_at,
        "ended_at": ended_at,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "peak_rss_mib": own_peak_rss_mib(),  # not ru_maxrss: see benchmarks/_peak.py
        "failed": len(failures),
        "failures_by_code": {c: codes.count(c) for c in sorted(set(codes))},
        "failed_indices": sorted(start + i for i in failures),
        "updates": end - start,
        "timed_out": timed_out,
        **extra,
    }


def run_job(job: Job) -> dict[str, Any]:
    """The contender process's work: its figures, for the harness to judge."""
    return asyncio.run(drive(CONTENDERS[job.contender], job))


# ------------------------------------------------------------------------------------------
# The contenders


@contextlib.asynccontextmanager
async def _aiocognito(setup: Setup) -> AsyncIterator[Driver]:
    """CognitoClient on the scenario's Limits. Beside per-call traffic, the bulk job goes
    through ``bulk_update``, at bulk priority; alone, every update is a call of its own."""
    async with aiocognito.CognitoClient(
        region_name=REGION, user_pool_id=setup.pool, endpoint_url=setup.url,
        limits=aiocognito.Limits(**setup.limits), **KEYS,  # type: ignore[arg-type]
    ) as cognito:  # fmt: skip

        async def per_call(user: str, value: str) -> Any:
            return await cognito.admin_update_user_attributes(user, {"custom:tier": value})

        async def streamed(updates: Updates, failures: dict[int, str]) -> bool:
            rows = (
                aiocognito.AttributeUpdate(username=u, attributes={"custom:tier": v})
                for u, v in updates
            )

            async def work() -> None:
                async with cognito.bulk_update(rows) as outcomes:
                    async for outcome in outcomes:
                        if not outcome.ok:
                            failures[outcome.index] = outcome.code or "Error"

            return await _in_time(work())

        def figures() -> dict[str, Any]:
            stats = cognito.statistics()
            return {"calls_saved": stats.calls_saved, "client_throttled": stats.throttled}

        bulk = streamed if setup.scenario.web_rps else _gathered(per_call, None)
        yield Driver(bulk, per_call, figures)


def _request(pool: str, user: str, value: str) -> dict[str, Any]:
    """A peer's AdminUpdateUserAttributes parameters for one update."""
    return {"UserPoolId": pool, "Username": user, "UserAttributes": wire({"custom:tier": value})}


def _raw_update(client: Any, pool: str) -> Update:
    async def update(user: str, value: str) -> Any:
        return await client.admin_update_user_attributes(**_request(pool, user, value))

    return update


@contextlib.asynccontextmanager
async def _raw(mode: str, setup: Setup) -> AsyncIterator[Driver]:
    """aiobotocore, asyncio.gather under a semaphore of 64, botocore's ``mode`` retries.
    Per-call traffic goes through a second client, as users run web traffic and a migration
    on separate clients today."""
    session = get_session()
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(raw_client(session, mode, setup.url))
        per_call = None
        if setup.scenario.web_rps:
            web_client = await stack.enter_async_context(raw_client(session, mode, setup.url))
            per_call = _raw_update(web_client, setup.pool)
        yield Driver(_gathered(_raw_update(client, setup.pool), CONCURRENCY), per_call)


def _boto3_update(client: Any, pool: str, user: str, value: str) -> Any:
    return client.admin_update_user_attributes(**_request(pool, user, value))


def _boto3_threads(url: str, pool: str, updates: Updates, failures: dict[int, str]) -> bool:
    """boto3 in a thread pool, adaptive retries: how many synchronous scripts do it. Stops at
    the time limit itself (a thread cannot be cancelled) and says whether it did."""
    client = boto3_client(url)

    def one(index: int, user: str, value: str) -> None:
        try:
            _boto3_update(client, pool, user, value)
        except Exception as exc:  # recorded by code, as for the other contenders
            failures[index] = error_code(exc)

    executor = concurrent.futures.ThreadPoolExecutor(THREADS)
    futures = [executor.submit(one, i, u, v) for i, (u, v) in enumerate(updates)]
    _done, pending = concurrent.futures.wait(futures, timeout=time_limit())
    executor.shutdown(wait=not pending, cancel_futures=True)
    return bool(pending)


@contextlib.asynccontextmanager
async def _boto3(setup: Setup) -> AsyncIterator[Driver]:
    """boto3 in a pool of 32 threads; per-call updates on a second client, in threads of their
    own, as a threaded web server beside a migration script would send them."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as web_threads:  # threads start lazily

        async def per_call(user: str, value: str) -> Any:
            call = functools.partial(_boto3_update, web_client, setup.pool, user, value)
            return await loop.run_in_executor(web_threads, call)

        web_client = boto3_client(setup.url) if setup.scenario.web_rps else None

        async def bulk(updates: Updates, failures: dict[int, str]) -> bool:
            return await asyncio.to_thread(_boto3_threads, setup.url, setup.pool, updates, failures)

        yield Driver(bulk, per_call if web_client is not None else None)


#: Seconds into a run at which the ``aiocognito-shared-killed`` contender's Redis is killed.
REDIS_KILLED_AFTER = 4.0

CONTENDERS = {
    c.name: c
    for c in (
        Contender("aiocognito", _aiocognito),
        # Each process on its own (share_on_host=False): as every process was before sharing
        # on one host became the default, and as processes on different hosts still are.
        Contender("aiocognito-local", _aiocognito, extra_limits=alone_on_host),
        # The fleet mode: every process of the run draws from one bucket in a fresh Redis.
        Contender("aiocognito-shared", _aiocognito, extra_limits=shared_quota),
        # The same on one host with no Redis: the bucket in files in a fresh directory.
        Contender("aiocognito-host", _aiocognito, extra_limits=host_quota),
        # ...and that Redis is killed (SIGKILL) part-way: the processes fall back and finish.
        Contender(
            "aiocognito-shared-killed",
            _aiocognito,
            extra_limits=shared_quota_killed_after(REDIS_KILLED_AFTER),
        ),
        Contender("raw-legacy", functools.partial(_raw, "legacy")),
        Contender("raw-standard", functools.partial(_raw, "standard")),
        Contender("raw-adaptive", functools.partial(_raw, "adaptive")),
        Contender("boto3-threads", _boto3),
    )
}
