"""The engine benchmark's harness: one run of a contender against a fresh fake, in one process
or in P processes on the one quota, judged from what the fake says was applied.

Every run goes through :func:`_run`: start the fake with the scenario's quota, latency and
faults, enter the contender's :attr:`~benchmarks._contenders.Contender.extra_limits`, start the
contender's processes (each told its :class:`~benchmarks._contenders.Job` as data), collect
their figures, and read the fake's statistics and state. :func:`run_once` and
:func:`run_workers` differ only in how many processes they start and how they sum their
figures up.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

from aiocognito.testing import FakeCognitoProcess
from benchmarks._common import ROOT, child_env
from benchmarks._contenders import CONTENDERS, Job
from benchmarks._scenarios import Scenario, plan, time_limit, users_needed

Figures = dict[str, Any]
WEB_FIGURES = ("web_calls", "web_failed", "web_p50_ms", "web_p99_ms")


@attrs.frozen
class _Finished:
    """What one run left: each process's figures (None: killed past its time limit), the wall
    time until the last was collected, and the fake's statistics and state afterwards."""

    outs: list[Figures | None]
    wall: float
    stats: dict[str, Any]
    state: dict[str, Any]


def _worker_command(job: Job) -> list[str]:
    return [sys.executable, "-m", "benchmarks.engine", "--worker", job.to_json()]


def _collect(jobs: Sequence[Job], grace: float) -> tuple[list[Figures | None], float]:
    """Start one process per job at once; their figures as they end, and the wall time.

    A process still running ``grace`` seconds after the time limit is killed (it did not stop
    at its own limit: its retries and client-side rate limiter kept going); what the server saw
    stands. A process that fails stops the run, with its traceback.
    """
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            _worker_command(job),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        for job in jobs
    ]
    deadline = started + time_limit() + grace
    outs: list[Figures | None] = []
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.perf_counter(), 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                outs.append(None)
                continue
            if proc.returncode != 0:
                sys.stderr.write(err[-4000:])  # the contender's own traceback
                raise subprocess.CalledProcessError(proc.returncode, proc.args)
            outs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:  # only when another one failed
                proc.kill()
                proc.communicate()
    return outs, time.perf_counter() - started


def _run(
    scenario: Scenario, contender: str, n: int, run: int, tag: str, processes: int, grace: float
) -> _Finished:
    """Start a fake, run ``processes`` copies of one contender against it at once, each with
    its own share of the updates, and read the fake afterwards."""
    fake = FakeCognitoProcess(
        seed_users=users_needed(scenario, n),
        user_update_rps=scenario.quota,
        latency_ms=scenario.latency_ms,
        faults=scenario.faults,
        seed=run,
    )
    with fake, CONTENDERS[contender].extra_limits() as extra_limits:
        limits = {**scenario.limits(), **extra_limits}
        jobs = [
            Job(contender, scenario.name, fake.endpoint_url, fake.pool_id, n, tag, limits, k,
                processes)
            for k in range(processes)
        ]  # fmt: skip
        outs, wall = _collect(jobs, grace)
        stats = fake.stats()
        state = fake.attribute("custom:tier")
    return _Finished(outs, wall, stats, state)


def run_once(scenario: Scenario, contender: str, n: int, run: int) -> Figures:
    """Start a fake, run one contender against it in one process, and judge the outcome from
    the fake. The figures are the process's own, and the fake's judgement."""
    tag = f"{scenario.name}-{contender}-{run}"
    done = _run(scenario, contender, n, run, tag, processes=1, grace=10)
    result = done.outs[0]
    if result is None:  # stopped: what the server saw stands; its own counts are unknown
        result = {
            "wall": done.wall, "timed_out": True, "failed": None, "failed_indices": [],
            "cpu_user": None, "cpu_sys": None, "peak_rss_mib": None,
        }  # fmt: skip
    return judge(scenario, n, tag, result, done.stats, done.state)


def run_workers(scenario: Scenario, contender: str, n: int, run: int, processes: int) -> Figures:
    """Start a fake, run ``processes`` copies of one contender against it at once, each with
    its own share of the updates, and judge the whole from the fake.

    The aggregate wall time is the longest of the processes' own (each from its first call
    to its last answer, so that interpreter start-up on a busy machine is not counted).
    """
    tag = f"{scenario.name}-{contender}-p{processes}-{run}"
    finished = _run(scenario, contender, n, run, tag, processes, grace=30)  # P start-ups
    done = [o for o in finished.outs if o is not None]
    result: Figures = {
        "wall": max(o["wall"] for o in done) if done else time_limit(),
        "bulk_wall": max(o["bulk_wall"] for o in done) if done else None,
        "timed_out": len(done) < processes or any(o["timed_out"] for o in done),
        "failed": sum(o["failed"] for o in done) if len(done) == processes else None,
        "failed_indices": [i for o in done for i in o["failed_indices"]],
        "cpu_user": sum(o["cpu_user"] for o in done) if done else None,
        "cpu_sys": sum(o["cpu_sys"] for o in done) if done else None,
        "peak_rss_mib": max(o["peak_rss_mib"] for o in done) if done else None,
        "processes": processes,
        # Each process's rate: its updates over its own wall time (bulk processes only).
        "process_rates": [o["updates"] / o["wall"] for o in done if o["updates"]],
        # From the first process's first update to the last one's last answer, clients open:
        # how long the fleet took over the job, without the interpreters' start-up.
        "makespan": max(o["ended_at"] for o in done) - min(o["began_at"] for o in done)
        if done
        else None,
        # The per-call traffic's figures, from the process that made it (if any did).
        **{key: o[key] for o in done for key in WEB_FIGURES if key in o},
    }
    judged = judge(scenario, n, tag, result, finished.stats, finished.state)
    judged["jain"] = jain(judged["process_rates"]) if len(done) == processes else None
    judged["makespan_efficiency"] = (
        result["makespan"] / (n / scenario.quota) if result["makespan"] is not None else None
    )
    return judged


def jain(rates: Sequence[float]) -> float:
    """Jain's fairness index: 1 when every process got the same rate, 1/P when one got all."""
    return sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates)) if any(rates) else 0.0


def judge(
    scenario: Scenario,
    n: int,
    tag: str,
    result: Figures,
    stats: dict[str, Any],
    state: dict[str, Any],
) -> Figures:
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
