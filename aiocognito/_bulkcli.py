"""``aiocognito update``: a bulk run from a file, with progress, summary, journal and Ctrl-C.

Used by :mod:`aiocognito.cli` (and by ``aiocognito demo``); built on the public API only.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import anyio
import attrs

import aiocognito

__all__ = ["UpdateSettings", "run_update", "validate_file"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@attrs.define(kw_only=True)
class UpdateSettings:
    """What ``aiocognito update`` was asked to do."""

    input: str
    user_pool_id: str | None
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    rps: float | None = 25.0
    concurrency: int = 64
    journal: str | None = None
    results: str | None = None
    failures: str | None = None
    progress: str = "auto"  # auto, rich, plain or none
    command: Sequence[str] = ()  # how the user ran us, for the resume hint
    credentials: dict[str, str] = attrs.field(factory=dict)  # tests and the demo only

    @property
    def format(self) -> str:
        return "csv" if self.input.lower().endswith(".csv") else "jsonl"

    def default_path(self, suffix: str) -> str:
        stem = self.input.rsplit(".", 1)[0] if "." in os.path.basename(self.input) else self.input
        return f"{stem}.{suffix}"


# ------------------------------------------------------------------------------------------
# Reading the file


def scan_input(path: str) -> tuple[int, str]:
    """Read the input once: its row count, for progress, and its identity, for the journal.

    The count is of lines (less a CSV header), so blank lines count too: cheap, and close
    enough for a progress bar. The identity is the size and SHA-256 of the bytes.
    """
    lines = 0
    last = b"\n"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            digest.update(chunk)
            last = chunk[-1:]
        size = fh.tell()
    if size and last != b"\n":
        lines += 1  # a last line without its newline
    if path.lower().endswith(".csv"):
        lines -= 1
    return max(lines, 0), f"{size}:{digest.hexdigest()}"


def validate_file(settings: UpdateSettings, out: IO[str]) -> int:
    """``--dry-run``: check every row offline and report each bad one."""
    rows = bad = 0
    for item in aiocognito.read_updates(settings.input):
        rows += 1
        problem: str | None = None
        if isinstance(item, aiocognito.BadRow):
            problem = str(item.error)
        elif item.username is not None and not (item.user_pool_id or settings.user_pool_id):
            problem = f"line {item.line}: no user pool: give --user-pool-id or a user_pool_id"
        if problem:
            bad += 1
            print(problem, file=out)
    verdict = "no bad rows" if not bad else f"{bad:,} bad row{'s' * (bad != 1)}"
    print(f"{settings.input}: {rows:,} rows checked, {verdict}", file=out)
    return EXIT_OK if not bad else EXIT_FAILED


# ------------------------------------------------------------------------------------------
# Writing results and failures


class _Outputs:
    """The results file (one JSON line per row, no values) and the failures file (input format)."""

    def __init__(self, settings: UpdateSettings) -> None:
        self.results_path = settings.results or settings.default_path("results.jsonl")
        self.failures_path = settings.failures or settings.default_path(
            "failures.csv" if settings.format == "csv" else "failures.jsonl"
        )
        self._csv_header: list[str] | None = None
        if settings.format == "csv":
            with open(settings.input, encoding="utf-8", newline="") as fh:
                self._csv_header = next(csv.reader(fh), [])
        self._results = open(self.results_path, "w", encoding="utf-8")  # noqa: SIM115
        self._failures = open(self.failures_path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if self._csv_header is not None:
            self._failures.write(_csv_line(self._csv_header) + "\n")
        self.failures_written = 0

    def write(self, outcome: aiocognito.UpdateOutcome) -> None:
        update = outcome.update
        record = {
            "index": outcome.index,
            "line": outcome.line,
            "user": update.user if update is not None else None,
            "ok": outcome.ok,
            "code": outcome.code,
            "message": str(outcome.error) if outcome.error is not None else None,
            "attempts": outcome.attempts,
            "merged": outcome.merged,
            "skipped": outcome.skipped,
        }
        self._results.write(json.dumps(record) + "\n")
        if not outcome.ok:
            self._failures.write(self._as_input(outcome) + "\n")
            self.failures_written += 1

    def _as_input(self, outcome: aiocognito.UpdateOutcome) -> str:
        if outcome.bad_row is not None:
            return str(outcome.bad_row.raw)
        assert outcome.update is not None
        if self._csv_header is None:
            return json.dumps(outcome.update.to_row())
        update = outcome.update
        cells = []
        for name in self._csv_header:
            if name == "username":
                cells.append(update.username or "")
            elif name == "access_token":
                cells.append(update.access_token or "")
            elif name == "user_pool_id":
                cells.append(update.user_pool_id or "")
            elif name in update.values:
                cells.append(update.values[name] or aiocognito.CSV_DELETE)
            else:
                cells.append("")
        return _csv_line(cells)

    def close(self) -> None:
        for fh in (self._results, self._failures):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


# ------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A rich progress bar on a terminal; plain periodic lines otherwise."""

    def __init__(self, mode: str, total: int, quota: float | None, out: IO[str]) -> None:
        self.total, self.quota, self.out = total, quota, out
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._rich: Any = None
        if mode == "auto":
            mode = "rich" if out.isatty() and _has_rich() else "plain"
        self.mode = mode
        if mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(file=out, force_terminal=True)
            self._rich = Progress(
                TextColumn("[bold]{task.completed:,}/{task.total:,} rows"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[counts]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._rich.add_task("update", total=total, rate="", counts="")
            self._rich.start()

    def update(self, bulk: aiocognito.BulkUpdate, client: aiocognito.CognitoClient) -> None:
        rows = bulk.statistics()
        stats = client.statistics()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        admitted = stats.requests_sent - stats.throttled
        rate = admitted / elapsed
        share = f" ({rate / self.quota:.0%} of {self.quota:g}/s)" if self.quota else ""
        counts = f"{stats.throttled:,} throttled, {stats.retries:,} retries, {rows.failed:,} failed"
        if self.mode == "rich":
            self._rich.update(
                self._task,
                completed=rows.rows_done,
                rate=f"{rate:.1f} req/s{share}",
                counts=counts,
            )
        elif self.mode == "plain":
            now = time.monotonic()
            if now - self._last_plain >= 5.0:
                self._last_plain = now
                left = self.total - rows.rows_done
                eta = f", about {left / rate:.0f} s left" if rate > 0 and left > 0 else ""
                print(
                    f"{rows.rows_done:,}/{self.total:,} rows, {rate:.1f} req/s{share}, "
                    f"{counts}{eta}",
                    file=self.out,
                    flush=True,
                )

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# The run


async def run_update(
    settings: UpdateSettings,
    out: IO[str] = sys.stdout,
    *,
    on_outcome: Callable[[aiocognito.BulkUpdate, aiocognito.UpdateOutcome], None] | None = None,
) -> int:
    """Run a bulk update from a file; return the exit code (0 ok, 1 failures, 2 fatal).

    ``on_outcome`` is called after each row is written (the tests use it to stop a run).
    """
    try:
        total, input_id = scan_input(settings.input)
    except OSError as exc:
        print(f"error: cannot read {settings.input}: {exc.strerror}", file=out)
        return EXIT_USAGE
    journal = settings.journal or settings.default_path("journal")
    # Opened once the journal is locked, so that a run refused there touches no report file.
    outputs: _Outputs | None = None
    limits = aiocognito.Limits(max_concurrency=settings.concurrency, user_update_rps=settings.rps)
    progress = _Progress(settings.progress, total, settings.rps, out)
    interrupted = False
    code_by_error: dict[str, int] = {}
    started = time.monotonic()
    try:
        async with aiocognito.CognitoClient(
            region_name=settings.region,
            user_pool_id=settings.user_pool_id,
            endpoint_url=settings.endpoint_url,
            profile_name=settings.profile,
            limits=limits,
            **settings.credentials,  # type: ignore[arg-type]
        ) as cognito:
            bulk = cognito.bulk_update(
                aiocognito.read_updates(settings.input),
                journal=journal,
                input_id=input_id,
                # The input's full digest keys the journal's fingerprints: the journal does not
                # hold it, so the journal alone cannot confirm a guessed value.
                journal_key=input_id,
            )
            async with bulk:
                outputs = _Outputs(settings)
                stop_signals = _install_sigint(bulk, out)
                try:
                    fatal = await _consume(
                        bulk, cognito, progress, outputs, code_by_error, on_outcome
                    )
                finally:
                    stop_signals()
                if fatal is not None:
                    raise fatal
                interrupted = bulk.stopped
            progress.update(bulk, cognito)
            stats, rows = cognito.statistics(), bulk.statistics()
    except aiocognito.AiocognitoError as exc:
        progress.close()
        if outputs is not None:
            outputs.close()
        if isinstance(exc, aiocognito.JournalLockedError | aiocognito.JournalWriteError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"error: the run stopped: {exc}", file=out)
        print(
            f"rows finished so far are recorded in {journal}; fix the cause and run again", file=out
        )
        return EXIT_USAGE
    progress.close()
    assert outputs is not None
    outputs.close()
    wall = time.monotonic() - started
    _summary(out, rows, stats, code_by_error, wall, settings.rps)
    return _report(settings, outputs, journal, rows, interrupted=interrupted, out=out)


def _report(
    settings: UpdateSettings,
    outputs: _Outputs,
    journal: str,
    rows: aiocognito.BulkStatistics,
    *,
    interrupted: bool,
    out: IO[str],
) -> int:
    print(f"results:  {outputs.results_path}", file=out)
    print(f"failures: {outputs.failures_path} ({outputs.failures_written:,} rows)", file=out)
    if interrupted:
        command = list(settings.command) or ["aiocognito", "update", "--input", settings.input]
        if "--journal" not in command:
            command += ["--journal", journal]
        print("stopped early; finished rows are in the journal. Resume with:", file=out)
        print("  " + " ".join(shlex.quote(part) for part in command), file=out)
        return EXIT_INTERRUPTED
    if rows.failed and outputs.failures_written:
        print("re-run the failures, once fixed, with:", file=out)
        rerun = ["aiocognito", "update", "--input", outputs.failures_path]
        if settings.user_pool_id:
            rerun += ["--user-pool-id", settings.user_pool_id]
        if settings.endpoint_url:
            rerun += ["--endpoint-url", settings.endpoint_url]
        print("  " + " ".join(shlex.quote(p) for p in rerun), file=out)
    return EXIT_OK if rows.failed == 0 else EXIT_FAILED


async def _consume(
    bulk: aiocognito.BulkUpdate,
    cognito: aiocognito.CognitoClient,
    progress: _Progress,
    outputs: _Outputs,
    code_by_error: dict[str, int],
    on_outcome: Callable[[aiocognito.BulkUpdate, aiocognito.UpdateOutcome], None] | None,
) -> aiocognito.AiocognitoError | None:
    """Write every outcome while a ticker refreshes the progress; return a fatal error."""
    fatal: aiocognito.AiocognitoError | None = None
    async with anyio.create_task_group() as ticker:
        ticker.start_soon(_tick, progress, bulk, cognito)
        try:
            async for outcome in bulk:
                outputs.write(outcome)
                if not outcome.ok:
                    code = outcome.code or "Error"
                    code_by_error[code] = code_by_error.get(code, 0) + 1
                if on_outcome is not None:
                    on_outcome(bulk, outcome)
        except aiocognito.AiocognitoError as exc:
            fatal = exc  # returned, so it is not raised inside the ticker's task group
        finally:
            ticker.cancel_scope.cancel()
    return fatal


async def _tick(
    progress: _Progress, bulk: aiocognito.BulkUpdate, client: aiocognito.CognitoClient
) -> None:
    while True:
        progress.update(bulk, client)
        await anyio.sleep(0.25)


def _install_sigint(bulk: aiocognito.BulkUpdate, out: IO[str]) -> Callable[[], None]:
    """First Ctrl-C: stop reading and finish what is in flight. Second: exit at once."""
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        if bulk.stopped:
            print(
                "\nsecond interrupt: exiting now; the journal is consistent", file=out, flush=True
            )
            os._exit(EXIT_INTERRUPTED)
        print(
            "\ninterrupted: no new rows will be read; finishing the rows in flight "
            "(Ctrl-C again to exit at once)",
            file=out,
            flush=True,
        )
        bulk.stop()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # not the main thread, or not supported
        return lambda: None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return restore


def _summary(
    out: IO[str],
    rows: aiocognito.BulkStatistics,
    stats: aiocognito.ClientStatistics,
    failed_by_code: dict[str, int],
    wall: float,
    quota: float | None,
) -> None:
    admitted = stats.requests_sent - stats.throttled
    rate = admitted / wall if wall > 0 else 0.0
    lines: list[tuple[str, str]] = [
        ("rows ok", f"{rows.ok:,}"),
        ("rows failed", f"{rows.failed:,}"),
    ]
    lines += [(f"  {code}", f"{n:,}") for code, n in sorted(failed_by_code.items())]
    lines += [
        ("rows skipped (finished before)", f"{rows.skipped:,}"),
        ("rows merged with others", f"{rows.merged:,}"),
        ("requests sent", f"{stats.requests_sent:,}"),
        ("throttled", f"{stats.throttled:,}"),
        ("wall time", f"{wall:.1f} s"),
        ("achieved rate", f"{rate:.1f} req/s"),
    ]
    if quota:
        lines.append(("share of the quota", f"{rate / quota:.1%} of {quota:g}/s"))
    if out.isatty() and _has_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="summary", show_header=False)
        for name, value in lines:
            table.add_row(name, value)
        Console(file=out).print(table)
    else:
        width = max(len(name) for name, _ in lines)
        print("summary", file=out)
        for name, value in lines:
            print(f"  {name.ljust(width)}  {value}", file=out)
