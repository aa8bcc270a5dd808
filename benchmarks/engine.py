"""The engine against its peers at the quota: scenarios 1 to 4 and 7 of the benchmarks, and
the limiter under adversity (issue 12).

Scenarios (see SCENARIOS): known quota, unknown quota, faults, web beside bulk and hot users
(the default run); noisy-unknown and noisy-known (random throttles, 500s and resets after
applying, with the quota not told or told); workers, workers-default and workers-unknown (P
processes on one quota, each told the whole quota, each on the default Limits(), or none told
it; --workers sets the P's); workers-web (the last of the P processes makes 10 per-call
updates/s while the others share the bulk job).
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
  aiocognito      CognitoClient; told the quota, except in "unknown"; on the default Limits()
                  the processes of one run share the quota through the host (share_on_host)
  aiocognito-local          the same, each process pacing itself alone (share_on_host=False)
  aiocognito-shared         the same, every process of the run sharing the quota through a
                            fresh redis-server (Limits(shared_quota_url=...))
  aiocognito-shared-killed  the same, with that Redis killed (SIGKILL) 4 s into the run
  aiocognito-host           the same through files in a directory, with no Redis
                            (Limits(shared_quota_url="file:///...")): one host's processes
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
import json
import os
import sys
from collections.abc import Callable, Hashable, Sequence

import attrs

from benchmarks import _tables
from benchmarks._common import argument_parser, print_heading
from benchmarks._contenders import CONTENDERS, Job, run_job
from benchmarks._runner import Figures, run_once, run_workers
from benchmarks._scenarios import ORIGINAL_SCENARIOS, SCENARIOS, Scenario
from benchmarks._tables import Runs

# The layout of the modules: _scenarios (what is measured, and the plan of updates),
# _contenders (each contender as an entry, and the scaffold that runs one in its process),
# _runner (a run against a fresh fake, in 1 or P processes, and its judgement), _tables.


@attrs.frozen
class Layout:
    """How a kind of scenario is run and reported: one process per contender, or P of them.

    Results are keyed by (contender, P), P being 1 where there is one process; ``table`` and
    ``plot`` take them so, and ``label`` names them in the JSON.
    """

    process_counts: Callable[[Sequence[int]], Sequence[int]]  # given --workers
    run: Callable[[Scenario, str, int, int, int], Figures]  # scenario, contender, N, run, P
    progress: Callable[[Figures], str]  # a finished run's figures, on stderr
    where: Callable[[int], str]  # P, in the progress line
    label: Callable[[str, int], str]
    table: Callable[[Scenario, dict[tuple[str, int], Runs], int], str]
    plot: Callable[[Scenario, dict[tuple[str, int], Runs], str], str]


def _by_contender(results: dict[tuple[str, int], Runs]) -> dict[str, Runs]:
    return {contender: runs for (contender, _p), runs in results.items()}


def _figures(r: Figures) -> str:
    return (
        f"eff {r['efficiency']:.3f} thr {100 * r['throttled_share']:5.1f}% "
        f"failed {r['failed']} lost {r['lost']}"
    )


IN_PROCESS = Layout(
    process_counts=lambda _workers: [1],
    run=lambda scenario, contender, n, run, _p: run_once(scenario, contender, n, run),
    progress=lambda r: f"wall {r['wall']:6.1f}s {_figures(r)}",
    where=lambda _p: "",
    label=lambda contender, _p: contender,
    table=lambda scenario, results, n: _tables.table(scenario, _by_contender(results), n),
    plot=lambda scenario, results, path: _tables.plot(scenario, _by_contender(results), path),
)
WORKERS = Layout(
    process_counts=lambda workers: workers,
    run=run_workers,
    progress=lambda r: f"{_figures(r)} jain {r['jain']}",
    where=lambda p: f" P={p}",
    label=lambda contender, p: f"{contender} P={p}",
    table=_tables.workers_table,
    plot=_tables.workers_plot,
)


def layout(scenario: Scenario) -> Layout:
    """How ``scenario`` is run and reported."""
    return WORKERS if scenario.workers else IN_PROCESS


def run_scenario(
    scenario: Scenario, n: int, runs: int, contenders: Sequence[str], workers: Sequence[int]
) -> dict[tuple[str, int], Runs]:
    """Every run of every contender in one scenario, contenders interleaved within a run."""
    how = layout(scenario)
    results: dict[tuple[str, int], Runs] = {}
    for processes in how.process_counts(workers):
        for run in range(runs):
            for contender in contenders:
                r = how.run(scenario, contender, n, run, processes)
                results.setdefault((contender, processes), []).append(r)
                print(
                    f"{scenario.name}{how.where(processes)} run {run + 1} {contender:13} "
                    + how.progress(r),
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main() -> None:
    parser = argument_parser(__doc__)
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
    parser.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)  # a contender process
    args = parser.parse_args()
    if args.time_limit:
        os.environ["AIOCOGNITO_BENCH_TIME_LIMIT"] = str(args.time_limit)
    if args.worker:
        print(json.dumps(run_job(Job.from_json(args.worker))))
        return
    print_heading()
    everything: dict[str, dict[Hashable, Runs]] = {}
    for name in args.scenario:
        scenario = SCENARIOS[name]
        n = args.updates or scenario.updates or 5000
        how = layout(scenario)
        results = run_scenario(scenario, n, args.runs, args.contender, args.workers)
        everything[name] = {how.label(c, p): rs for (c, p), rs in results.items()}
        print(how.table(scenario, results, n) + "\n", flush=True)
        if args.plots:
            os.makedirs(args.plots, exist_ok=True)
            drawn = how.plot(scenario, results, os.path.join(args.plots, f"engine-{name}.png"))
            print(f"plot: {drawn}\n", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
