"""The benchmark harness itself: its plans, its judgement of a run, its tables, and each
contender run for real at a tiny scale against the fake (or the stub server) in processes of
their own. The figures are not checked here, only that every contender runs and is judged
correctly; the figures live in benchmarks/README.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bulk, engine, overhead
from benchmarks._common import CONTENDERS

KNOWN = engine.SCENARIOS["known"]
HOT = engine.SCENARIOS["hot"]


# ------------------------------------------------------------------------------------------
# Plans and judgement, from hand-made server answers


def test_plan_sends_a_fifth_of_the_updates_to_one_percent_of_the_users() -> None:
    updates = engine.plan(HOT, 5000, "t")
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
    updates = engine.plan(KNOWN, 300, "t")
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
    updates = engine.plan(KNOWN, 4, "t")  # user0..user3, one update each
    values: dict[str, str | None] = dict(updates)
    values["user1"] = "older"  # reported done, but not what was sent: lost
    values["user2"] = None  # reported failed and not applied: not lost
    state = {
        "values": values,
        "history": {"user0": ["t-000000"], "user3": ["t-000003", "t-000001"]},
    }
    result = {"wall": 0.032, "bulk_wall": 0.032, "failed": 1, "failed_indices": [2]}
    judged = engine.judge(
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
    updates = engine.plan(KNOWN, 3, "t")
    state: dict[str, Any] = {"values": {updates[0][0]: updates[0][1]}, "history": {}}
    result: dict[str, Any] = {
        "wall": 130.0,
        "failed": None,
        "failed_indices": [],
        "timed_out": True,
    }
    judged = engine.judge(KNOWN, 3, "t", result, _stats(1, 0, [[0, 1, 0]]), state)
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
    }
    assert engine.best_peer(results) == "slow"
    text = engine.table(KNOWN, results, 5000)
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
    assert engine.best_peer(results) == "standard"
    assert "(standard, every peer failed or lost updates; this one left the fewest" in (
        engine.table(KNOWN, results, 5000)
    )


def test_table_has_a_row_per_contender_and_marks_a_stopped_one() -> None:
    results = {
        "aiocognito": [_run(20, 6.0)],
        "raw-adaptive": [
            _run(130, 0.0, timed_out=True, failed=None, lost=None, rate_after_5s=None)
        ],
    }
    text = engine.table(KNOWN, results, 5000)
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
    assert engine.median_run(runs)["id"] == 3


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the bench extra")
    run = _run(20, 6.0, timeline=[[s, 250, 0] for s in range(20)])
    path = engine.plot("known", KNOWN, {"aiocognito": [run]}, str(tmp_path / "known.png"))
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
# Every contender, run for real at a tiny scale


@pytest.fixture(autouse=True)
def _short_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOCOGNITO_BENCH_TIME_LIMIT", "60")


@pytest.mark.parametrize("contender", CONTENDERS)
def test_every_contender_runs_the_known_quota_scenario(contender: str) -> None:
    result = engine.run_once(KNOWN, contender, 40, run=0)
    assert result["timed_out"] is False
    assert result["failed"] == 0
    assert result["lost"] == 0
    assert result["not_applied"] == 0
    assert result["requests"] == 40  # 40 updates under a 250/s quota need no retries
    assert result["cpu_user"] > 0
    assert result["peak_rss_mib"] > 0


def test_faults_fail_legacy_mode_and_the_harness_says_so() -> None:
    # botocore's legacy mode does not retry Cognito's throttles (HTTP 400): those updates fail.
    result = engine.run_once(engine.SCENARIOS["faults"], "raw-legacy", 60, run=0)
    assert result["failed"] > 0
    assert result["faults_injected"]
    assert result["lost"] == 0  # what failed was reported failed


def test_aiocognito_rides_out_the_faults() -> None:
    result = engine.run_once(engine.SCENARIOS["faults"], "aiocognito", 60, run=0)
    assert result["faults_injected"]
    assert (result["failed"], result["lost"], result["not_applied"]) == (0, 0, 0)
    assert result["requests"] > 60  # the faults cost retries


@pytest.mark.parametrize("contender", ["aiocognito", "raw-standard", "boto3-threads"])
def test_web_beside_bulk_times_the_per_call_updates(contender: str) -> None:
    result = engine.run_once(engine.SCENARIOS["web"], contender, 60, run=0)
    assert result["web_calls"] >= 1
    assert result["web_failed"] == 0
    assert 0 < result["web_p50_ms"] <= result["web_p99_ms"]
    assert result["lost"] == 0


def test_hot_users_are_merged_and_kept_in_order_by_aiocognito() -> None:
    result = engine.run_once(HOT, "aiocognito", 300, run=0)
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


def test_every_contender_runs_the_overhead_scenario() -> None:
    with overhead.stub_server() as url:
        for contender in overhead.CONTENDERS:
            figures = overhead.run_once(contender, url, 20)
            assert figures["cpu_us_per_call"] > 0, contender
            assert figures["calls_per_s"] > 0, contender


def test_the_harness_runs_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = engine.run_once(KNOWN, "raw-standard", 5, run=0)
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
