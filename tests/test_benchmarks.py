"""The benchmark harness itself: its plans, its judgement of a run, its tables, and each
contender run for real at a tiny scale against the fake (or the stub server) in processes of
their own. The figures are not checked here, only that every contender runs and is judged
correctly; the figures live in benchmarks/README.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import aiocognito
from benchmarks import _contenders, _runner, _tables, bulk, engine, overhead
from benchmarks._common import CONTENDERS
from benchmarks._contenders import Contender, Driver, Job, Setup, Updates, drive
from benchmarks._runner import judge, run_once, run_workers
from benchmarks._scenarios import SCENARIOS, plan
from tests.redis_server import RedisServer

KNOWN = SCENARIOS["known"]
HOT = SCENARIOS["hot"]


# ------------------------------------------------------------------------------------------
# Plans and judgement, from hand-made server answers


def test_plan_sends_a_fifth_of_the_updates_to_one_percent_of_the_users() -> None:
    updates = plan(HOT, 5000, "t")
    per_user: dict[str, int] = {}
    for user, _value in updates:
        per_user[user] = per_user.get(user, 0) + 1
    hot = {u for u, count in per_user.items() if count > 1}
    assert len(updates) == 5000
    assert sum(per_user[u] for u in hot) == 1000  # 20 % of the updates
    assert len(hot) / len(per_user) == pytest.approx(0.01, abs=0.001)  # to 1 % of the users
    values = [value for _user, value in updates]
    assert values == sorted(values)  # values sort in submission order: ordering is checkable


def test_plan_without_hot_users_touches_each_user_once() -> None:
    updates = plan(KNOWN, 300, "t")
    assert len({user for user, _value in updates}) == 300


def _stats(ok: int, throttled: int, timeline: list[list[int]]) -> dict[str, Any]:
    return {
        "requests": [
            ["AdminUpdateUserAttributes", "ok", ok],
            ["AdminUpdateUserAttributes", "TooManyRequestsException", throttled],
            ["AdminGetUser", "ok", 7],  # other operations are not counted
        ],
        "quotas": {"UserUpdate": {"timeline": timeline}},
        "faults_injected": {},
    }


def test_judge_tells_lost_from_failed_and_finds_users_out_of_order() -> None:
    updates = plan(KNOWN, 4, "t")  # user0..user3, one update each
    values: dict[str, str | None] = dict(updates)
    values["user1"] = "older"  # reported done, but not what was sent: lost
    values["user2"] = None  # reported failed and not applied: not lost
    state = {
        "values": values,
        "history": {"user0": ["t-000000"], "user3": ["t-000003", "t-000001"]},
    }
    result = {"wall": 0.032, "bulk_wall": 0.032, "failed": 1, "failed_indices": [2]}
    judged = judge(
        KNOWN,
        4,
        "t",
        {**result, "timed_out": False},
        _stats(ok=4, throttled=1, timeline=[[s, 250, 0] for s in range(8)]),
        state,
    )
    assert judged["lost"] == 1
    assert judged["not_applied"] == 2
    assert judged["out_of_order"] == 1
    assert judged["requests"] == 5
    assert judged["throttled_share"] == pytest.approx(0.2)
    assert judged["efficiency"] == pytest.approx(0.032 / (4 / 250))
    # Seconds 5 and 6 count; the last, partial second does not.
    assert judged["rate_after_5s"] == pytest.approx(1.0)
    assert judged["bulk_share"] == pytest.approx(3 / 0.032 / 250)


def test_judge_does_not_count_losses_for_a_run_that_was_stopped() -> None:
    updates = plan(KNOWN, 3, "t")
    state: dict[str, Any] = {"values": {updates[0][0]: updates[0][1]}, "history": {}}
    result: dict[str, Any] = {
        "wall": 130.0,
        "failed": None,
        "failed_indices": [],
        "timed_out": True,
    }
    judged = judge(KNOWN, 3, "t", result, _stats(1, 0, [[0, 1, 0]]), state)
    assert judged["lost"] is None  # unknown: the contender never said what it finished
    assert judged["not_applied"] == 2
    assert judged["rate_after_5s"] is None


def _run(wall: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "wall": wall,
        "efficiency": wall / 20,
        "cpu_user": cpu,
        "cpu_sys": 0.0,
        "requests_per_update": 1.0,
        "throttled_share": 0.0,
        "failed": 0,
        "lost": 0,
        "not_applied": 0,
        "timed_out": False,
        "rate_after_5s": 1.0,
        "peak_rss_mib": 70.0,
        **extra,
    }


def test_the_best_peer_is_the_fastest_that_failed_and_lost_nothing() -> None:
    results = {
        "aiocognito": [_run(20, 6.0), _run(21, 7.0), _run(22, 8.0)],
        "fast-but-failing": [_run(4, 1.0, failed=3000)] * 3,
        "slow": [_run(40, 14.0)] * 3,
        "slower": [_run(60, 10.0)] * 3,
        "aiocognito-local": [_run(20, 6.0)] * 3,  # a variant of aiocognito's: not a peer
    }
    assert _tables.best_peer(results) == "slow"
    text = _tables.table(KNOWN, results, 5000)
    ratios = text.splitlines()[-3].split(" | ")
    assert ratios[0] == "| *aiocognito ÷ slow*"
    assert ratios[1] == "0.53x"  # wall: 21 / 40, medians
    assert ratios[6] == "both 0"  # failed
    assert ratios[9] == "0.50x"  # client CPU: 7 / 14
    assert "(slow, the fastest that failed and lost nothing): wall 0.53x" in text


def test_when_every_peer_failed_the_best_is_the_one_that_applied_the_most() -> None:
    results = {
        "aiocognito": [_run(20, 6.0)],
        "legacy": [_run(4, 1.0, failed=3000, not_applied=3000)],
        "standard": [_run(20, 7.0, failed=120, not_applied=100)],
        "adaptive": [_run(130, 9.0, timed_out=True, not_applied=4000)],
    }
    assert _tables.best_peer(results) == "standard"
    assert "(standard, every peer failed or lost updates; this one left the fewest" in (
        _tables.table(KNOWN, results, 5000)
    )


def test_table_has_a_row_per_contender_and_marks_a_stopped_one() -> None:
    results = {
        "aiocognito": [_run(20, 6.0)],
        "raw-adaptive": [
            _run(130, 0.0, timed_out=True, failed=None, lost=None, rate_after_5s=None)
        ],
    }
    text = _tables.table(KNOWN, results, 5000)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "wall s" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| aiocognito",
        "| raw-adaptive (did not finish in 60 s)",  # the limit set below
        "| *aiocognito ÷ raw-adaptive*",
    ]
    assert " | n/a | " in rows[1]  # unknown figures are n/a, never zero
    assert "N/quota = 20.0 s" in text


def test_plots_use_the_median_run() -> None:
    runs = [{"wall": 30.0, "id": 1}, {"wall": 10.0, "id": 2}, {"wall": 20.0, "id": 3}]
    assert _tables.median_run(runs)["id"] == 3


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the bench extra")
    run = _run(20, 6.0, timeline=[[s, 250, 0] for s in range(20)])
    path = _tables.plot(KNOWN, {"aiocognito": [run]}, str(tmp_path / "known.png"))
    assert Path(path).read_bytes().startswith(b"\x89PNG")


def test_overhead_table_gives_ratios_against_raw_aiobotocore_for_the_same_call() -> None:
    figures = {
        "aiocognito": [{"cpu_us_per_call": 110.0, "calls_per_s": 1.0}],
        "raw-legacy": [{"cpu_us_per_call": 100.0, "calls_per_s": 1.0}],
        "aiocognito-token": [{"cpu_us_per_call": 90.0, "calls_per_s": 1.0}],
        "raw-legacy-token": [{"cpu_us_per_call": 60.0, "calls_per_s": 1.0}],
    }
    lines = overhead.table(figures).splitlines()
    assert lines[2].endswith("| **1.10** |")
    assert lines[4].endswith("| **1.50** |")
    assert "best peer (raw-legacy, the least CPU per admin call): CPU per call 1.10x" in lines[-1]


def test_overhead_table_sets_each_instrumented_run_against_the_same_run_uninstrumented() -> None:
    def run(cpu: float, young: int) -> dict[str, float]:
        return {
            "cpu_us_per_call": cpu,
            "calls_per_s": 1.0,
            "gc_us_per_call": 0.0,
            "gc_passes_0": young,
            "gc_passes_1": 2,
            "gc_passes_2": 1,
        }

    figures = {
        "aiocognito": [run(100, 8), run(300, 8), run(200, 8)],
        "aiocognito-otel": [run(110, 10), run(390, 12), run(300, 14)],
    }
    summary = overhead.table(figures).splitlines()[-1]
    assert "CPU per call 1.50x" in summary  # 300 against 200, median against median
    assert "passes of generations 0/1/2: 12/2/1 against 8/2/1" in summary
    assert "the median of each run's ratio 1.30x" in summary  # of 1.10, 1.30 and 1.50


def test_memory_table_gives_the_growth_and_the_ratio_to_the_leanest_peer() -> None:
    def runs(rss: float, wall: float) -> list[dict[str, Any]]:
        return [{"peak_rss_mib": rss, "wall": wall, "applied": 10, "outcomes": 10}]

    figures = {
        "aiocognito": {1: runs(60, 1.0), 10: runs(66, 10.0)},
        "raw-legacy": {1: runs(60, 1.0), 10: runs(120, 5.0)},
        "boto3-threads": {1: runs(60, 1.0), 10: runs(110, 8.0)},
    }
    lines = bulk.memory_table(figures, [1, 10]).splitlines()
    assert lines[2].split(" | ")[3] == "**1.100**"  # 66 / 60
    assert lines[3].split(" | ")[3] == "**2.000**"
    assert lines[-1].startswith("| *aiocognito ÷ boto3-threads* | 1.00x | 0.60x | 0.60x | 0.80x |")


# ------------------------------------------------------------------------------------------
# The scaffold: a contender is an entry, and what its processes are told is data


def _recording(seen: dict[str, Any], failing: set[str]) -> Contender:
    """A contender that makes no calls: it records what the scaffold gives it, fails the
    updates of ``failing`` users, and, beside per-call traffic, finishes its bulk job only
    once the first per-call update has arrived."""

    @contextlib.asynccontextmanager
    async def open_clients(setup: Setup) -> AsyncIterator[Driver]:
        seen["setup"] = setup
        seen["per_call"] = []
        called = asyncio.Event()

        async def per_call(user: str, value: str) -> None:
            seen["per_call"].append((user, value))
            called.set()

        async def bulk(updates: Updates, failures: dict[int, str]) -> bool:
            seen["updates"] = updates
            failures.update({i: "Boom" for i, (user, _v) in enumerate(updates) if user in failing})
            if setup.scenario.web_rps and not setup.scenario.web_apart:
                await called.wait()  # (apart, the per-call traffic is another process's)
            return False

        yield Driver(bulk, per_call, lambda: {"own_figure": 7})

    return Contender("recording", open_clients)


def test_a_process_makes_its_share_and_reports_failures_as_indices_of_the_whole_plan() -> None:
    seen: dict[str, Any] = {}
    job = Job("recording", "known", "http://fake", "pool", 10, "t", {"max_concurrency": 7}, 1, 3)
    assert Job.from_json(job.to_json()) == job  # as the harness passes it on
    figures = asyncio.run(drive(_recording(seen, failing={"user4"}), job))
    assert seen["updates"] == plan(KNOWN, 10, "t")[3:6]  # process 1 of 3: updates 3 to 5
    assert seen["setup"].limits == {"max_concurrency": 7}
    assert seen["per_call"] == []  # no per-call traffic in this scenario
    assert figures["updates"] == 3
    assert (figures["failed"], figures["failed_indices"]) == (1, [4])
    assert figures["failures_by_code"] == {"Boom": 1}
    assert figures["timed_out"] is False
    assert figures["own_figure"] == 7
    assert 0 < figures["bulk_wall"] <= figures["wall"]


def test_per_call_traffic_runs_beside_the_bulk_job_and_is_timed() -> None:
    seen: dict[str, Any] = {}
    job = Job("recording", "web", "http://fake", "pool", 10, "t")
    figures = asyncio.run(drive(_recording(seen, failing=set()), job))
    assert seen["per_call"][0] == ("user10", "t-web-000000")  # the users beyond the bulk job's
    assert figures["web_calls"] == len(seen["per_call"]) >= 1
    assert figures["web_failed"] == 0
    assert 0 <= figures["web_p50_ms"] <= figures["web_p99_ms"]


def test_per_call_traffic_apart_runs_in_the_last_process_alone() -> None:
    bulk_seen: dict[str, Any] = {}
    job = Job("recording", "workers-web", "http://fake", "pool", 10, "t", {}, 0, 3)
    asyncio.run(drive(_recording(bulk_seen, failing=set()), job))
    assert bulk_seen["updates"] == plan(SCENARIOS["workers-web"], 10, "t")[0:5]  # 1 of 2
    assert bulk_seen["per_call"] == []
    web_seen: dict[str, Any] = {}
    job = Job("recording", "workers-web", "http://fake", "pool", 10, "t", {}, 2, 3)
    figures = asyncio.run(drive(_recording(web_seen, failing=set()), job))
    assert web_seen.get("updates", []) == []
    assert figures["updates"] == 0
    assert figures["web_calls"] == len(web_seen["per_call"]) >= 1


def test_each_scenario_states_aiocognitos_limits() -> None:
    for scenario in SCENARIOS.values():
        aiocognito.Limits(**scenario.limits())  # every one is a valid Limits
    assert KNOWN.limits() == {"max_concurrency": 64, "user_update_rps": 250}
    assert SCENARIOS["unknown"].limits()["user_update_rps"] is None
    assert SCENARIOS["workers-default"].limits() == {}  # Limits() as it comes


def test_every_process_is_told_the_scenarios_limits_and_its_contenders_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []

    @contextlib.contextmanager
    def shared_quota() -> Iterator[dict[str, Any]]:
        events.append("started")
        yield {"quota_group": "shared"}
        events.append("stopped")

    told: list[Job] = []

    def collect(jobs: list[Job], grace: float) -> tuple[list[Any], float]:
        told.extend(jobs)
        events.append("ran")
        return [None] * len(jobs), 1.0  # as if every process were stopped

    # A later entry, as a shared quota's would be: the same contender, with a server per run.
    shared = attrs.evolve(_contenders.CONTENDERS["aiocognito"], extra_limits=shared_quota)
    monkeypatch.setitem(_contenders.CONTENDERS, "aiocognito", shared)
    monkeypatch.setattr(_runner, "_collect", collect)
    workers = SCENARIOS["workers"]
    result = run_workers(workers, "aiocognito", 30, run=0, processes=3)
    assert events == ["started", "ran", "stopped"]
    assert [(job.index, job.processes) for job in told] == [(0, 3), (1, 3), (2, 3)]
    assert all(job.limits == {**workers.limits(), "quota_group": "shared"} for job in told)
    assert (result["timed_out"], result["failed"], result["jain"]) == (True, None, None)


def test_a_scenario_interleaves_the_contenders_within_each_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, int]] = []

    def fake_run_once(scenario: Any, contender: str, n: int, run: int) -> dict[str, Any]:
        calls.append((contender, run))
        return _run(1.0, 0.0)

    monkeypatch.setattr(engine, "run_once", fake_run_once)
    results = engine.run_scenario(KNOWN, 10, runs=2, contenders=["a", "b"], workers=[2, 4])
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]  # --workers is for workers only
    assert {key: len(runs) for key, runs in results.items()} == {("a", 1): 2, ("b", 1): 2}
    assert engine.IN_PROCESS.label("a", 1) == "a"
    assert engine.WORKERS.label("a", 4) == "a P=4"


# ------------------------------------------------------------------------------------------
# Every contender, run for real at a tiny scale


@pytest.fixture(autouse=True)
def _short_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOCOGNITO_BENCH_TIME_LIMIT", "60")


@pytest.mark.parametrize("contender", _contenders.CONTENDERS)
def test_every_contender_runs_the_known_quota_scenario(contender: str) -> None:
    result = run_once(KNOWN, contender, 40, run=0)
    assert result["timed_out"] is False
    assert result["failed"] == 0
    assert result["lost"] == 0
    assert result["not_applied"] == 0
    assert result["requests"] == 40  # 40 updates under a 250/s quota need no retries
    assert result["cpu_user"] > 0
    assert result["peak_rss_mib"] > 0


def test_faults_fail_legacy_mode_and_the_harness_says_so() -> None:
    # botocore's legacy mode does not retry Cognito's throttles (HTTP 400): those updates fail.
    result = run_once(SCENARIOS["faults"], "raw-legacy", 60, run=0)
    assert result["failed"] > 0
    assert result["faults_injected"]
    assert result["lost"] == 0  # what failed was reported failed


def test_aiocognito_rides_out_the_faults() -> None:
    result = run_once(SCENARIOS["faults"], "aiocognito", 60, run=0)
    assert result["faults_injected"]
    assert (result["failed"], result["lost"], result["not_applied"]) == (0, 0, 0)
    assert result["requests"] > 60  # the faults cost retries


@pytest.mark.parametrize("contender", ["aiocognito", "raw-standard", "boto3-threads"])
def test_web_beside_bulk_times_the_per_call_updates(contender: str) -> None:
    result = run_once(SCENARIOS["web"], contender, 60, run=0)
    assert result["web_calls"] >= 1
    assert result["web_failed"] == 0
    assert 0 < result["web_p50_ms"] <= result["web_p99_ms"]
    assert result["lost"] == 0


def test_workers_share_the_plan_and_are_judged_as_a_whole() -> None:
    result = run_workers(SCENARIOS["workers"], "aiocognito", 40, run=0, processes=2)
    assert result["processes"] == 2
    assert len(result["process_rates"]) == 2
    assert result["timed_out"] is False
    assert (result["failed"], result["lost"], result["not_applied"]) == (0, 0, 0)
    assert result["requests"] >= 40
    assert result["jain"] is not None


def test_hot_users_are_merged_and_kept_in_order_by_aiocognito() -> None:
    result = run_once(HOT, "aiocognito", 300, run=0)
    assert result["calls_saved"] > 0
    assert result["requests"] == 300 - result["calls_saved"]
    assert result["out_of_order"] == 0
    assert result["lost"] == 0


@pytest.mark.parametrize("contender", CONTENDERS)
def test_every_contender_runs_the_memory_scenario(contender: str, tmp_path: Path) -> None:
    path = str(tmp_path / "rows.jsonl")
    bulk._write_rows(path, 50)
    result = bulk.memory_once(contender, path, 50)
    assert result["exit"] == 0
    assert result["applied"] == 50
    assert result["outcomes"] == 50
    assert result["peak_rss_mib"] > 0
    with open(tmp_path / "rows.results.jsonl") as fh:
        assert all(json.loads(line)["ok"] for line in fh)


def test_every_contender_runs_the_overhead_scenario(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(overhead.REDIS_URL_ENV, redis_server.url)  # for aiocognito-shared
    monkeypatch.setenv(overhead.HOST_URL_ENV, f"file://{tmp_path}/quota")  # aiocognito-host
    with overhead.stub_server() as url:
        for contender in overhead.CONTENDERS:
            figures = overhead.run_once(contender, url, 20)
            assert figures["cpu_us_per_call"] > 0, contender
            assert figures["calls_per_s"] > 0, contender


def test_the_harness_runs_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_once(KNOWN, "raw-standard", 5, run=0)
    assert result["not_applied"] == 0


def test_a_childs_peak_memory_is_its_own_not_its_parents() -> None:
    # A child's ru_maxrss counts the address space it was forked from; the harness must not
    # charge a contender for the harness's own size.
    ballast = bytearray(256 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: it is resident
    result = bulk._run_child(["this"])  # a module that prints a poem and exits
    assert result["exit"] == 0
    assert 0 < result["peak_rss_mib"] < 64
    del ballast
