"""``aiocognito update``: a bulk run from a file, with progress, summary, journal and Ctrl-C.

Used by :mod:`aiocognito.cli` (and by ``aiocognito demo``); built on the public API only.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import shlex
import signal
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import anyio
import attrs

import aiocognito

from ._cliargs import redacted_url

__all__ = ["UpdateSettings", "check_paths", "run_update", "validate_file"]

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
    shared_quota_url: str | None = None  # None: $AIOCOGNITO_SHARED_QUOTA_URL, if set
    share_on_host: bool | None = None  # None: on, unless $AIOCOGNITO_SHARE_ON_HOST turns it off
    journal: str | None = None
    results: str | None = None
    failures: str | None = None
    progress: str = "auto"  # auto, rich, plain, json or none
    log_level: str = "warning"  # of the aiocognito logger: debug, info or warning
    log_format: str = "text"  # text or json, for the log records and (off a terminal) progress
    command: Sequence[str] = ()  # how the user ran us, for the resume hint
    credentials: dict[str, str] = attrs.field(factory=dict)  # tests and the demo only

    @property
    def format(self) -> str:
        return "csv" if self.input.lower().endswith(".csv") else "jsonl"

    def default_path(self, suffix: str) -> str:
        stem = self.input.rsplit(".", 1)[0] if "." in os.path.basename(self.input) else self.input
        return f"{stem}.{suffix}"

    @property
    def journal_path(self) -> str:
        return self.journal or self.default_path("journal")

    @property
    def results_path(self) -> str:
        return self.results or self.default_path("results.jsonl")

    @property
    def failures_path(self) -> str:
        return self.failures or self.default_path(
            "failures.csv" if self.format == "csv" else "failures.jsonl"
        )


def check_paths(settings: UpdateSettings) -> str | None:
    """Check, before anything is written, that every file the run writes can be written.

    Returns:
        A one-line problem naming the flag (or the default file) and the path, or None.
    """
    files = [
        ("--journal", "the journal", settings.journal, settings.journal_path),
        ("--results", "the results file", settings.results, settings.results_path),
        ("--failures", "the failures file", settings.failures, settings.failures_path),
    ]
    seen = {os.path.realpath(settings.input): "--input"}
    for flag, what, given, path in files:
        name = flag if given is not None else f"{what} (default {path})"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            return f"{name}: the directory {directory} does not exist"
        if os.path.isdir(path):
            return f"{name}: {path} is a directory"
        exists = os.path.exists(path)
        if not (os.access(path, os.W_OK) if exists else os.access(directory, os.W_OK | os.X_OK)):
            return f"{name}: {path} is not writable"
        if exists and not os.path.isfile(path):
            continue  # a device or a pipe (/dev/null): sharing it loses nothing
        real = os.path.realpath(path)
        if real in seen:
            return f"{name}: {path} is the same file as {seen[real]}; give each its own file"
        seen[real] = flag
    return None


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


def validate_file(settings: UpdateSettings, out: IO[str], err: IO[str] | None = None) -> int:
    """``--dry-run``: check every row offline, as a real run would, and report each bad one.

    The bad rows and the verdict are the report, on ``out``; a file refused as a whole is an
    error, on ``err`` (stderr by default). Returns 0 if every row is good, 1 if some are bad,
    2 if the file is refused.
    """
    err = err if err is not None else sys.stderr
    try:
        reader = aiocognito.read_updates(settings.input)
    except aiocognito.AttributeValidationError as exc:
        print(f"error: {settings.input}: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {settings.input}: {exc.strerror}", file=err)
        return EXIT_USAGE
    rows = bad = 0
    for item in reader:
        problem = _offline_problem(item, settings)
        if problem:
            bad += 1
            print(problem, file=out)
        else:
            rows += 1
    verdict = "no bad rows" if not bad else f"{bad:,} bad row{'s' * (bad != 1)}"
    print(f"{settings.input}: {rows + bad:,} rows checked, {rows:,} good, {verdict}", file=out)
    return EXIT_OK if not bad else EXIT_FAILED


def _offline_problem(
    item: aiocognito.AttributeUpdate | aiocognito.BadRow, settings: UpdateSettings
) -> str | None:
    """Why a real run would fail this row before sending it, or None."""
    if isinstance(item, aiocognito.BadRow):
        return str(item.error)
    if item.username is not None and not (item.user_pool_id or settings.user_pool_id):
        return f"line {item.line}: no user pool: give --user-pool-id or a user_pool_id"
    return None


# ------------------------------------------------------------------------------------------
# Writing results and failures


class _Outputs:
    """The results file (one JSON line per row, no values) and the failures file (input format).

    Both are created private (0600): the failures file holds tokens and attribute values, and
    the results file names users. They are opened only once the journal has accepted the run,
    so a refused run leaves the earlier reports as they were.
    """

    def __init__(self, settings: UpdateSettings, header: tuple[str, ...] | None) -> None:
        self.results_path = settings.results_path
        self.failures_path = settings.failures_path
        self._csv_header = header
        self.results_written = 0
        self.failures_written = 0
        self._results = _open_private(self.results_path, errors="strict")
        try:
            # surrogateescape gives a line that was not UTF-8 back byte for byte.
            self._failures = _open_private(self.failures_path, errors="surrogateescape")
        except BaseException:
            self._results.close()
            raise
        if self._csv_header is not None:
            _put(self._failures, self.failures_path, _csv_line(self._csv_header) + "\n")

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
        _put(self._results, self.results_path, json.dumps(record) + "\n")
        self.results_written += 1
        if not outcome.ok:
            row = self._as_input(outcome)
            if row is not None:
                _put(self._failures, self.failures_path, row + "\n")
                self.failures_written += 1

    def _as_input(self, outcome: aiocognito.UpdateOutcome) -> str | None:
        if outcome.bad_row is not None:
            raw = str(outcome.bad_row.raw)
            return raw or None  # a line too long to keep is named in the results only
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

    def sync(self) -> None:
        """Flush both files to the disk (the second Ctrl-C calls this before exiting)."""
        for fh, path in ((self._results, self.results_path), (self._failures, self.failures_path)):
            if fh.closed:
                continue
            try:
                fh.flush()
                if _is_regular(fh.fileno()):  # a pipe or a terminal cannot be fsynced
                    os.fsync(fh.fileno())
            except OSError as exc:
                exc.filename = exc.filename or path
                raise

    def close(self) -> None:
        try:
            self.sync()
        finally:
            for fh in (self._results, self._failures):
                with contextlib.suppress(OSError):  # already reported by sync
                    fh.close()


def _open_private(path: str, *, errors: str) -> IO[str]:
    """Open ``path`` for writing, truncated, readable by its owner only, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        # An existing file keeps its mode through O_CREAT: tighten it. Only a regular file,
        # though: `--results /dev/null` must never change the mode of a shared device.
        if _is_regular(fd):
            os.fchmod(fd, 0o600)
        return open(fd, "w", encoding="utf-8", errors=errors, newline="")
    except BaseException:
        os.close(fd)
        raise


def _put(fh: IO[str], path: str, text: str) -> None:
    try:
        fh.write(text)
    except OSError as exc:
        exc.filename = exc.filename or path  # a failed write names no file by itself
        raise


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


# ------------------------------------------------------------------------------------------
# Progress


#: Seconds between plain or JSON progress records.
PROGRESS_EVERY = 5.0


class _Progress:
    """A rich progress bar on a terminal; plain (or JSON) periodic records otherwise."""

    def __init__(
        self, mode: str, total: int, quota: float | None, out: IO[str], *, log_format: str = "text"
    ) -> None:
        self.total, self.quota, self.out = total, quota, out
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._rich: Any = None
        if mode == "auto":
            if out.isatty():
                mode = "rich" if _has_rich() else "plain"
            else:
                # Off a terminal (a job scheduler collecting logs), records in the log format.
                mode = "json" if log_format == "json" else "plain"
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

    def update(
        self, bulk: aiocognito.BulkUpdate, client: aiocognito.CognitoClient, *, final: bool = False
    ) -> None:
        rows = bulk.statistics()
        stats = client.statistics()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        admitted = stats.requests_sent - stats.throttled
        rate = admitted / elapsed
        quota = self.quota
        share = f" ({rate / quota:.0%} of {quota:g}/s)" if quota and math.isfinite(quota) else ""
        counts = f"{stats.throttled:,} throttled, {stats.retries:,} retries, {rows.failed:,} failed"
        share += fleet_text(stats)
        if self.mode == "rich":
            self._rich.update(
                self._task,
                completed=rows.rows_done,
                rate=f"{rate:.1f} req/s{share}",
                counts=counts,
            )
        elif self.mode == "json":
            now = time.monotonic()
            if final or now - self._last_plain >= PROGRESS_EVERY:
                self._last_plain = now
                record = progress_record(
                    rows, stats, total=self.total, elapsed=elapsed, quota=quota, final=final
                )
                print(json.dumps(record), file=self.out, flush=True)
        elif self.mode == "plain":
            now = time.monotonic()
            if now - self._last_plain >= PROGRESS_EVERY:
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


def progress_record(
    rows: aiocognito.BulkStatistics,
    stats: aiocognito.ClientStatistics,
    *,
    total: int,
    elapsed: float,
    quota: float | None,
    final: bool = False,
) -> dict[str, Any]:
    """One JSON progress record: the summary's figures so far (no user, value or token)."""
    admitted = stats.requests_sent - stats.throttled
    rate = admitted / elapsed if elapsed > 0 else 0.0
    left = max(total - rows.rows_done, 0)
    update = stats.categories.get("UserUpdate")
    known_quota = quota is not None and math.isfinite(quota) and quota > 0
    return {
        "time": _utc_now(),
        "level": "info",
        "event": "done" if final else "progress",
        "rows_total": total,
        "rows_done": rows.rows_done,
        "ok": rows.ok,
        "failed": rows.failed,
        "skipped": rows.skipped,
        "merged": rows.merged,
        "requests_sent": stats.requests_sent,
        "throttled": stats.throttled,
        "retries": stats.retries,
        "rate": round(rate, 2),
        "quota": quota,
        "quota_share": round(rate / quota, 4) if known_quota and quota else None,
        "eta_s": round(left / rate, 1) if rate > 0 and left else (0.0 if not left else None),
        "elapsed_s": round(elapsed, 1),
        "quota_mode": update.mode if update else None,
        "fleet_rate": update.fleet_rate if update else None,
        "fleet_processes": update.fleet_processes if update else None,
    }


def fleet_text(stats: aiocognito.ClientStatistics) -> str:
    """The fleet's rate and processes for the progress line, when the quota is shared."""
    update = stats.categories.get("UserUpdate")
    if update is None or update.mode in ("local", "alone"):
        return ""  # paced by this process alone: nothing shared to show
    if update.mode != "shared":
        return f"; {update.mode} (shared quota unreachable)"
    if update.fleet_rate is None:
        return "; shared quota"
    processes = update.fleet_processes or 1
    return f"; fleet {update.fleet_rate:.1f}/s across {processes} process{'es' * (processes != 1)}"


def _redacted(command: Sequence[str]) -> list[str]:
    """The command line, with a shared-quota URL's password masked (it is printed)."""
    parts = list(command)
    for i, part in enumerate(parts):
        if part == "--shared-quota-url" and i + 1 < len(parts):
            parts[i + 1] = redacted_url(parts[i + 1])
        elif part.startswith("--shared-quota-url="):
            parts[i] = "--shared-quota-url=" + redacted_url(part.split("=", 1)[1])
    return parts


def _utc_now() -> str:
    now = time.time()
    return _utc(now, int(now * 1000) % 1000)


def _utc(seconds: float, millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


# Attributes every LogRecord has: the rest are the fields a record was given (extra=...).
_STANDARD_RECORD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's own fields.

    Exception text is left out on purpose: a chained cause may be a third party's, and its
    message may repeat what the request carried. Only the exception's type is given.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created, int(record.msecs)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


@contextlib.contextmanager
def log_to(err: IO[str], level: str, log_format: str) -> Iterator[None]:
    """Send the ``aiocognito`` logger's records at ``level`` and above to ``err`` while inside."""
    logger = logging.getLogger("aiocognito")
    handler = logging.StreamHandler(err)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = logger.level
    logger.setLevel(level.upper())
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# The run


@attrs.define
class _Tally:
    """The run's outcomes, counted as they are written; the summary and exit code come from here.

    Rows an earlier run finished count too: a resumed run over an input with a failed row has
    failed, however that row got its outcome.
    """

    ok: int = 0  # applied by this run
    failed: int = 0  # failed in this run, bad rows included
    skipped_ok: int = 0  # applied by an earlier run
    skipped_failed: int = 0  # failed in an earlier run, and not tried again
    bad: int = 0  # rows that could not be read or checked (never sent), in either run
    by_code: dict[str, int] = attrs.field(factory=dict)

    def add(self, outcome: aiocognito.UpdateOutcome) -> None:
        if outcome.ok:
            if outcome.skipped:
                self.skipped_ok += 1
            else:
                self.ok += 1
            return
        if outcome.skipped:
            self.skipped_failed += 1
        else:
            self.failed += 1
        code = outcome.code or "Error"
        self.by_code[code] = self.by_code.get(code, 0) + 1
        if outcome.bad_row is not None or (
            isinstance(outcome.error, aiocognito.AttributeValidationError) and not outcome.attempts
        ):
            self.bad += 1

    @property
    def rows(self) -> int:
        return self.ok + self.failed + self.skipped_ok + self.skipped_failed

    @property
    def all_failed(self) -> int:
        return self.failed + self.skipped_failed


async def run_update(
    settings: UpdateSettings,
    out: IO[str] = sys.stdout,
    *,
    err: IO[str] | None = None,
    on_outcome: Callable[[aiocognito.BulkUpdate, aiocognito.UpdateOutcome], None] | None = None,
) -> int:
    """Run a bulk update from a file; return the exit code.

    Exit codes: 0 every row ok, 1 some rows failed (in this run or, for rows it skipped, an
    earlier one), 2 a refused or fatally stopped run, 130 interrupted. Progress, the summary
    and hints go to ``out``; errors and interrupt notices to ``err`` (stderr by default).
    ``on_outcome`` is called after each row is written (the tests use it to stop a run).
    The ``aiocognito`` logger's records at ``settings.log_level`` go to ``err`` as well, in
    ``settings.log_format``.
    """
    err = err if err is not None else sys.stderr
    with log_to(err, settings.log_level, settings.log_format):
        return await _run_update(settings, out, err, on_outcome)


async def _run_update(
    settings: UpdateSettings,
    out: IO[str],
    err: IO[str],
    on_outcome: Callable[[aiocognito.BulkUpdate, aiocognito.UpdateOutcome], None] | None,
) -> int:
    prepared = _prepare(settings, err)
    if isinstance(prepared, int):
        return prepared
    reader, total, input_id = prepared
    journal = settings.journal_path
    outputs: _Outputs | None = None
    progress: _Progress | None = None
    tally = _Tally()
    interrupted = False
    started = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            cognito = await _open_client(stack, settings)
            bulk = cognito.bulk_update(
                reader,
                journal=journal,
                input_id=input_id,
                # The input's full digest keys the journal's fingerprints: the journal does not
                # hold it, so the journal alone cannot confirm a guessed value.
                journal_key=input_id,
            )
            async with bulk:
                # The journal has accepted this run: only now may the earlier reports go.
                outputs = _Outputs(settings, reader.header)
                progress = _Progress(
                    settings.progress, total, settings.rps, out, log_format=settings.log_format
                )
                stop_signals = _install_sigint(bulk, outputs, err)
                try:
                    fatal = await _consume(bulk, cognito, progress, outputs, tally, on_outcome)
                finally:
                    stop_signals()
                if fatal is not None:
                    raise fatal
                interrupted = bulk.stopped
            progress.update(bulk, cognito, final=True)
            stats, rows = cognito.statistics(), bulk.statistics()
        progress.close()
        outputs.close()
    except (aiocognito.AiocognitoError, _SetupError, sqlite3.Error, OSError) as exc:
        with contextlib.suppress(OSError):  # a report that failed fails again: already in hand
            _close(progress, outputs)
        print(_why_stopped(exc, journal, started=outputs is not None), file=err)
        return EXIT_USAGE
    wall = time.monotonic() - started
    _summary(out, tally, rows, stats, wall, settings.rps)
    return _report(settings, outputs, journal, tally, interrupted=interrupted, out=out)


class _SetupError(Exception):
    """The AWS client could not be set up: a profile, region or endpoint botocore refuses."""


async def _open_client(
    stack: contextlib.AsyncExitStack, settings: UpdateSettings
) -> aiocognito.CognitoClient:
    limits = aiocognito.Limits(
        max_concurrency=settings.concurrency,
        user_update_rps=settings.rps,
        shared_quota_url=settings.shared_quota_url,
        share_on_host=settings.share_on_host,
    )
    try:
        client = aiocognito.CognitoClient(
            region_name=settings.region,
            user_pool_id=settings.user_pool_id,
            endpoint_url=settings.endpoint_url,
            profile_name=settings.profile,
            limits=limits,
            **settings.credentials,  # type: ignore[arg-type]
        )
        return await stack.enter_async_context(client)
    except aiocognito.AiocognitoError:
        raise
    except Exception as exc:
        # botocore's own errors (ProfileNotFound, InvalidRegionError, a bad endpoint) reach us
        # untranslated; at setup they name configuration, never a request's secrets.
        raise _SetupError(f"cannot set up the AWS client: {exc}") from None


def _prepare(
    settings: UpdateSettings, err: IO[str]
) -> tuple[aiocognito.UpdateReader, int, str] | int:
    """Every check that needs no journal and no network: the input, its header, the paths."""
    problem = check_paths(settings)
    if problem is not None:
        print(f"error: {problem}", file=err)
        return EXIT_USAGE
    try:
        reader = aiocognito.read_updates(settings.input)
        total, input_id = scan_input(settings.input)
    except aiocognito.AttributeValidationError as exc:
        print(f"error: {settings.input}: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {settings.input}: {exc.strerror}", file=err)
        return EXIT_USAGE
    return reader, total, input_id


def _why_stopped(exc: Exception, journal: str, *, started: bool) -> str:
    """The message for a run that was refused or stopped, naming the file or the cause."""
    if isinstance(exc, aiocognito.JournalLockedError | aiocognito.JournalWriteError):
        text = f"error: {exc}"  # names the journal and the cause (or the other run's pid)
    elif isinstance(exc, aiocognito.AiocognitoError):
        text = f"error: the run stopped: {exc}"
    elif isinstance(exc, sqlite3.Error):
        text = f"error: cannot use the journal {journal}: {exc}"
    elif isinstance(exc, OSError):
        where = f"cannot write {exc.filename}: " if exc.filename else ""
        text = f"error: {where}{exc.strerror or exc}"
    else:
        text = f"error: {exc}"
    if started and not isinstance(exc, aiocognito.JournalWriteError):
        text += f"\nrows finished so far are recorded in {journal}; fix the cause and run again"
    return text


def _close(progress: _Progress | None, outputs: _Outputs | None) -> None:
    if progress is not None:
        progress.close()
    if outputs is not None:
        outputs.close()


def _report(
    settings: UpdateSettings,
    outputs: _Outputs,
    journal: str,
    tally: _Tally,
    *,
    interrupted: bool,
    out: IO[str],
) -> int:
    print(f"results:  {outputs.results_path}", file=out)
    print(f"failures: {outputs.failures_path} ({outputs.failures_written:,} rows)", file=out)
    if interrupted:
        command = _redacted(settings.command) or [
            "aiocognito", "update", "--input", settings.input,
        ]  # fmt: skip
        if "--journal" not in command:
            command += ["--journal", journal]
        print("stopped early; finished rows are in the journal. Resume with:", file=out)
        print("  " + " ".join(shlex.quote(part) for part in command), file=out)
        return EXIT_INTERRUPTED
    if tally.all_failed and outputs.failures_written:
        rows = f"{outputs.failures_written:,} row{'s' * (outputs.failures_written != 1)}"
        print(f"re-run the failures ({rows}), once fixed, with:", file=out)
        rerun = ["aiocognito", "update", "--input", outputs.failures_path]
        if settings.user_pool_id:
            rerun += ["--user-pool-id", settings.user_pool_id]
        if settings.endpoint_url:
            rerun += ["--endpoint-url", settings.endpoint_url]
        print("  " + " ".join(shlex.quote(p) for p in rerun), file=out)
    return EXIT_OK if tally.all_failed == 0 else EXIT_FAILED


async def _consume(
    bulk: aiocognito.BulkUpdate,
    cognito: aiocognito.CognitoClient,
    progress: _Progress,
    outputs: _Outputs,
    tally: _Tally,
    on_outcome: Callable[[aiocognito.BulkUpdate, aiocognito.UpdateOutcome], None] | None,
) -> aiocognito.AiocognitoError | None:
    """Write every outcome while a ticker refreshes the progress; return a fatal error."""
    fatal: aiocognito.AiocognitoError | None = None
    async with anyio.create_task_group() as ticker:
        ticker.start_soon(_tick, progress, bulk, cognito)
        try:
            async for outcome in bulk:
                outputs.write(outcome)
                tally.add(outcome)
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


def _install_sigint(
    bulk: aiocognito.BulkUpdate, outputs: _Outputs, err: IO[str]
) -> Callable[[], None]:
    """First Ctrl-C: stop reading and finish what is in flight. Second: save and exit at once."""
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        if bulk.stopped:
            # The handler runs between event-loop steps, never inside a write: every line
            # written so far is whole. os._exit skips buffers, so flush them first.
            try:
                outputs.sync()
                saved = f"{outputs.results_written:,} rows written to {outputs.results_path}"
            except OSError as exc:
                saved = f"the results could not be saved ({exc.strerror})"
            print(
                f"\nsecond interrupt: {saved}; exiting now; the journal is consistent",
                file=err,
                flush=True,
            )
            os._exit(EXIT_INTERRUPTED)
        else:
            print(
                "\ninterrupted: no new rows will be read; finishing the rows in flight "
                "(Ctrl-C again to exit at once)",
                file=err,
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
    tally: _Tally,
    rows: aiocognito.BulkStatistics,
    stats: aiocognito.ClientStatistics,
    wall: float,
    quota: float | None,
) -> None:
    admitted = stats.requests_sent - stats.throttled
    rate = admitted / wall if wall > 0 else 0.0
    skipped = tally.skipped_ok + tally.skipped_failed
    lines: list[tuple[str, str]] = [
        ("rows read", f"{tally.rows:,}"),
        ("rows ok", f"{tally.ok:,}"),
        ("rows failed", f"{tally.all_failed:,}"),
    ]
    lines += [(f"  {code}", f"{n:,}") for code, n in sorted(tally.by_code.items())]
    lines += [
        ("bad rows (never sent)", f"{tally.bad:,}"),
        ("rows skipped (finished before)", f"{skipped:,}"),
    ]
    if tally.skipped_failed:
        lines.append(("  of them failed before", f"{tally.skipped_failed:,}"))
    lines += [
        ("rows merged with others", f"{rows.merged:,}"),
        ("requests sent", f"{stats.requests_sent:,}"),
        ("throttled", f"{stats.throttled:,}"),
        ("wall time", f"{wall:.1f} s"),
        ("achieved rate", f"{rate:.1f} req/s"),
    ]
    if quota is None:
        lines.append(("quota", "discovered as the run went (--rps none)"))
    elif math.isfinite(quota) and quota > 0:
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
