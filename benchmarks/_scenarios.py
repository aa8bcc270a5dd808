"""What the engine benchmark measures: its scenarios, and the plan of updates each one makes.

Both sides read this module: the harness (which starts the fake with a scenario's quota,
latency and faults, and judges the outcome against the plan) and the contender processes
(which make the plan's updates).
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from benchmarks._common import CONCURRENCY


def time_limit() -> float:
    """Seconds after which a contender is stopped and reported as not finished.

    Set with --time-limit; the contender processes inherit it through the environment.
    """
    return float(os.environ.get("AIOCOGNITO_BENCH_TIME_LIMIT", "120"))


@attrs.frozen
class Scenario:
    """One scenario: the fake's quota, latency and faults, and what the contenders do on it."""

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
    web_apart: bool = False  # with workers: the last process makes the per-call updates alone
    updates: int | None = None  # the scenario's own N, unless --updates is given

    def limits(self) -> dict[str, Any]:
        """aiocognito's ``Limits(...)`` keywords in this scenario."""
        if self.defaults:
            return {}  # as it comes: 64 in flight, 25/s, adaptive
        return {
            "max_concurrency": CONCURRENCY,
            "user_update_rps": self.quota if self.tell_quota else None,
        }


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
    "workers-unknown": Scenario(
        "workers-unknown", 150, 20, workers=True, tell_quota=False, updates=3000,
        description="P processes on one 150/s quota, none told it",
    ),
    "workers-web": Scenario(
        "workers-web", 150, 20, workers=True, web_apart=True, web_rps=10.0, updates=3000,
        description="P processes on one 150/s quota: the last makes 10 per-call updates/s, "
        "the others share a bulk job",
    ),
}  # fmt: skip
WEB_USERS = 1000  # seeded beyond the bulk job's users, one per per-call update


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
    """The users the fake is seeded with: the bulk job's, and the per-call updates' beside."""
    return n + (WEB_USERS if scenario.web_rps else 0)


def slice_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """The updates ``[start, end)`` that process ``index`` of ``count`` makes."""
    return n * index // count, n * (index + 1) // count
