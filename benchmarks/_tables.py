"""The engine benchmark's tables and plots: medians over the runs, and aiocognito against the
best peer of the same run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import attrs

from benchmarks._scenarios import Scenario, time_limit

Runs = list[dict[str, Any]]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _num(value: float, spec: str = ".0f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)  # NaN: not known for any run


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
    # aiocognito's own variants (shared, local, instrumented) are not peers.
    peers = {name: runs for name, runs in results.items() if not name.startswith("aiocognito")}
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


NO_MATPLOTLIB = "(matplotlib is not installed: pip install '.[bench]' for plots)"


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files; None without the bench extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt: Any, fig: Any, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot(scenario: Scenario, results: dict[str, Runs], path: str) -> str:
    """Achieved throughput per second against the quota, one line per contender.

    Each contender's line is its median run by wall time, from the same runs as the table.
    """
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for contender, runs in results.items():
        timeline = median_run(runs).get("timeline") or []
        ax.plot([t[0] for t in timeline], [t[1] for t in timeline], label=contender)
    ax.axhline(scenario.quota, color="black", linestyle="--", linewidth=1, label="quota")
    ax.set_xlabel("seconds since the fake server started")
    ax.set_ylabel("updates admitted per second")
    ax.set_title(f"{scenario.name}: {scenario.description}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def workers_table(scenario: Scenario, results: dict[tuple[str, int], Runs], n: int) -> str:
    """One Markdown table for a workers scenario: a row per contender and process count.

    Figures are medians over the runs, with the range of the key ones: the aggregate wall over
    the ideal (N / quota), and Jain's fairness index of the processes' own rates. The wall is
    the longest process's own, clients' opening included; the makespan runs from the first
    process's first update to the last process's last answer.
    """
    lines = [
        f"### {scenario.name}: {scenario.description} "
        f"(N = {n:,} in all, N/quota = {n / scenario.quota:.1f} s)",
        "",
        "| contender | P | runs | wall ÷ (N/quota) | makespan ÷ (N/quota) | throttled % | "
        "failed (max) | lost | not applied | Jain's index (min) |"
        + (" per-call p99 ms | bulk share of quota |" if scenario.web_rps else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|" if scenario.web_rps else ""),
    ]
    for (contender, processes), rs in results.items():
        eff = [r["efficiency"] for r in rs]
        failed = [r["failed"] for r in rs if r["failed"] is not None]
        fairness = [r["jain"] for r in rs if r["jain"] is not None]
        stopped = any(r["timed_out"] for r in rs)
        note = f" (not all finished in {time_limit():g} s)" if stopped else ""
        cells = [
            f"{_median(eff):.3f} ({min(eff):.3f} to {max(eff):.3f})",
            _num(_median_of("makespan_efficiency")(rs), ".3f"),
            _num(_median_of("throttled_share", 100)(rs), ".1f"),
            f"{_num(_median([float(f) for f in failed]), ',.0f')} ({max(failed, default=0):,})",
            _num(_median_of("lost")(rs), ",.0f"),
            _num(_median_of("not_applied")(rs), ",.0f"),
            f"{_num(_median(fairness), '.3f')} ({min(fairness, default=float('nan')):.3f})",
        ]
        if scenario.web_rps:
            cells += [
                _num(_median_of("web_p99_ms")(rs)),
                _num(_median_of("bulk_share")(rs), ".2f"),
            ]
        lines.append(f"| {contender}{note} | {processes} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def workers_plot(scenario: Scenario, results: dict[tuple[str, int], Runs], path: str) -> str:
    """Aggregate wall ÷ ideal and Jain's index against the number of processes (medians)."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
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
    return _save(plt, fig, path)
