"""Streaming bulk updates on top of the engine: bounded read-ahead, outcomes, journal, stop.

A :class:`BulkUpdate` reads its source lazily: at most ``read_ahead`` rows are read and not yet
reported, so a five-million-row file never sits in memory. Each row becomes a bulk-priority job
in the client's dispatcher (so per-call traffic on the same client goes first), and yields
exactly one :class:`UpdateOutcome`, in completion order.

A fatal error (the pool does not exist, no credentials, the admin call is not authorised) ends
the run with that one error, raised plainly from the ``async for``, rather than a million failed
rows. Leaving the ``async with`` early cancels the work: finished rows are in the journal, rows
in flight are not.

**The promise across runs.** However often a run is killed and resumed, each user ends as the
input's rows for that user, applied one by one in input order, would leave them (bad rows and
rows Cognito refused for good are skipped). Within a run the engine's per-user lanes keep the
order. Across runs the journal (:mod:`aiocognito._journal`) marks rows ``ok``, ``failed`` (for
good) or ``retry``. A resume decides, row by row in input order, before the row's task starts:

- a ``failed`` row is skipped: it changed nothing;
- a row with no record (in flight at a crash, never sent, or applied while the journal could not
  record it) or recorded ``retry`` is sent again, and its user is marked;
- an ``ok`` row is skipped, unless its user is marked: then it is sent again too, after the
  earlier row, so that row cannot overwrite the newer values. Setting attributes again is
  harmless, and the re-sent rows merge per user as usual.

"User" here is the engine's lane key (pool and case-folded username, or the token's subject).
Rows past the journal's highest index were never finished, so the marks are dropped there: the
set holds at most the users of unfinished rows the journal covers.

**Journal failures.** A failed journal write (read-only file, full disk, a lock another program
holds) stops the run as :meth:`BulkUpdate.stop` does: no new rows are read, rows in flight
finish and are reported as they went (applied rows as applied, though not journaled), then
:class:`JournalWriteError` is raised from the ``async for``. The journal records nothing more,
so a resume sends those rows again, by the rule above.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterable, Hashable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import define, frozen

from ._config import RetryPolicy
from ._dispatch import Dispatcher, Job, token_subject
from ._errors import (
    AiocognitoError,
    AttributeValidationError,
    ClientClosedError,
    CognitoError,
    CredentialsError,
    JournalWriteError,
    NotAuthorizedError,
    QuotaDeadlineError,
    ResourceNotFoundError,
    error_class_for_code,
    error_code,
)
from ._journal import FINISHED, Journal, JournalRecord, RowStatus
from ._limits import Priority, ShareLimit
from ._models import AttributeUpdate, BadRow, UpdateOutcome, UpdateResult
from ._requests import request_id, update_request
from ._retry import RetryClass, classify
from ._validate import check_user_pool_id

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .otel import Instruments

__all__ = ["BulkStatistics", "BulkUpdate"]

#: Codes that mean the whole run is misconfigured, not one row.
FATAL_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)


@frozen(kw_only=True)
class BulkStatistics:
    """Progress of a bulk run.

    Attributes:
        rows_read: Rows taken from the source.
        rows_done: Rows with an outcome (skipped rows included).
        ok: Rows applied.
        failed: Rows that failed, bad rows included.
        skipped: Rows the journal showed finished in an earlier run.
        merged: Rows that rode in a call with other rows for the same user.
        in_flight: Rows read and not yet done.
        failed_by_code: Failed rows per error code.
    """

    rows_read: int
    rows_done: int
    ok: int
    failed: int
    skipped: int
    merged: int
    in_flight: int
    failed_by_code: dict[str, int]


@define(eq=False)
class _RowTag:
    """A row's label on its engine job: what the journal records for it."""

    index: int
    digest: str
    user: str
    #: The run the row belongs to: two runs on one client may merge rows for one user, and
    #: each journals only its own.
    owner: object = None
    journaled: bool = False


@define(eq=False)
class _Pending:
    """A row to work on: a bad row to record, or an update with its engine job."""

    item: AttributeUpdate | BadRow
    job: Job | None = None
    tag: _RowTag | None = None


def is_fatal(error: BaseException, operation: str) -> bool:
    """Whether an error condemns the whole run rather than one row."""
    if isinstance(error, CredentialsError | ResourceNotFoundError | ClientClosedError):
        return True
    if isinstance(error, NotAuthorizedError) and operation.startswith("Admin"):
        return True
    return isinstance(error, CognitoError) and error.code in FATAL_CODES


class BulkUpdate:
    """One bulk run; use as ``async with cognito.bulk_update(rows) as outcomes``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        source: Iterable[AttributeUpdate | BadRow] | AsyncIterable[AttributeUpdate | BadRow],
        *,
        default_pool: str | None,
        journal: str | None,
        input_id: str | None,
        journal_key: bytes | str | None = None,
        read_ahead: int,
        max_share: float | None,
        timeout: float | None,
        retry: RetryPolicy | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._instruments = instruments
        self._span: Span | None = None
        self._source = source
        self._default_pool = default_pool
        self._journal_path = journal
        self._input_id = input_id
        if isinstance(journal_key, str):
            journal_key = journal_key.encode()
        if journal_key is not None and not journal_key:
            raise AttributeValidationError("journal_key: must not be empty")
        self._journal_key = journal_key
        self._read_ahead = read_ahead
        self._share = ShareLimit(max_share) if max_share is not None else None
        self._timeout = timeout
        self._retry = retry
        self._journal: Journal | None = None
        # The highest row index the journal held when the run started: rows past it were never
        # finished, so nothing past it is skipped.
        self._last_index = -1
        # Users (engine lane keys) with a row re-sent in this run: their later rows that had
        # succeeded are re-sent after it. Bounded by the unfinished rows up to _last_index.
        self._resend: set[Hashable] = set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._send: MemoryObjectSendStream[UpdateOutcome] | None = None
        self._receive: MemoryObjectReceiveStream[UpdateOutcome] | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._rows_read = 0
        self._ok = 0
        self._failed = 0
        self._skipped = 0
        self._merged = 0
        self._failed_by_code: dict[str, int] = {}

    # ----------------------------------------------------------------------------------------
    # Lifecycle

    async def __aenter__(self) -> Self:
        if self._instruments is not None:
            self._span = self._instruments.bulk_started()
        try:
            return await self._enter()
        except BaseException as exc:
            self._end_span(exc)
            raise

    def _end_span(self, error: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is not None and self._instruments is not None:
            self._instruments.bulk_ended(span, self.statistics(), error)

    async def _enter(self) -> Self:
        if self._journal_path is not None:
            journal = Journal(self._journal_path, key=self._journal_key, input_id=self._input_id)
            try:
                self._last_index = journal.last_index()
            except BaseException:
                journal.close()
                raise
            self._journal = journal
        self._send, self._receive = anyio.create_memory_object_stream[UpdateOutcome](
            self._read_ahead
        )
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._produce, self._send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        error: BaseException | None = exc
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()  # leaving early cancels the work
                if self._receive is not None:
                    self._receive.close()  # nobody reads any more: senders must not block
                try:
                    await task_group.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # One real error (the body's, or a bug) is raised plainly, not grouped.
                    real = [
                        e
                        for e in _flatten(group)
                        if not isinstance(e, anyio.get_cancelled_exc_class())
                    ]
                    if len(real) == 1:
                        raise real[0] from None
                    raise
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._end_span(error)
            if self._receive is not None:
                self._receive.close()
            if self._journal is not None:
                self._journal.close()
        return None

    def stop(self) -> None:
        """Stop reading new rows; rows already read finish and report as usual."""
        self._stopping = True

    def _ending(self) -> bool:
        return self._stopping or self._fatal is not None

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def statistics(self) -> BulkStatistics:
        """Progress so far."""
        done = self._ok + self._failed + self._skipped
        return BulkStatistics(
            rows_read=self._rows_read,
            rows_done=done,
            ok=self._ok,
            failed=self._failed,
            skipped=self._skipped,
            merged=self._merged,
            in_flight=self._rows_read - done,
            failed_by_code=dict(self._failed_by_code),
        )

    # ----------------------------------------------------------------------------------------
    # The stream of outcomes

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> UpdateOutcome:
        if self._receive is None:
            raise RuntimeError(
                "a bulk update runs inside its context: "
                "async with cognito.bulk_update(rows) as outcomes: async for outcome in outcomes"
            )
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._fatal is not None:
                fatal, self._fatal = self._fatal, None
                raise fatal from None
            raise StopAsyncIteration from None

    # ----------------------------------------------------------------------------------------
    # Producing

    async def _produce(self, send: MemoryObjectSendStream[UpdateOutcome]) -> None:
        slots = anyio.Semaphore(self._read_ahead)
        async with send, anyio.create_task_group() as rows:
            index = 0
            async for item in _aiter(self._source):
                if self._ending():
                    break
                await slots.acquire()
                if self._ending():  # stopped while we waited for room
                    slots.release()
                    break
                try:
                    plan = self._plan(index, item)
                except JournalWriteError as exc:
                    # The row was taken but not started: like one read after a stop.
                    slots.release()
                    self._fail(exc)
                    break
                self._rows_read += 1
                rows.start_soon(self._row, index, plan, send, slots, rows.cancel_scope)
                index += 1

    async def _row(
        self,
        index: int,
        plan: UpdateOutcome | _Pending,
        send: MemoryObjectSendStream[UpdateOutcome],
        slots: anyio.Semaphore,
        rows_scope: anyio.CancelScope,
    ) -> None:
        try:
            outcome = plan if isinstance(plan, UpdateOutcome) else await self._process(index, plan)
            if outcome is None:  # a fatal error: stop everything
                rows_scope.cancel()
                return
            self._count(outcome)
            # If the consumer left, dropping the outcome is fine: the journal has the row.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await send.send(outcome)
        finally:
            slots.release()

    def _plan(self, index: int, item: AttributeUpdate | BadRow) -> UpdateOutcome | _Pending:
        """Decide, in input order, what to do with one row: an outcome now, or work to do.

        Runs in the producer, before the row's task starts, so the journal is consulted in
        input order and the resume rule below sees every earlier row of a user first.
        """
        journal = self._journal
        if isinstance(item, BadRow):
            tag = None
            if journal is not None:
                tag = _RowTag(index, journal.fingerprint("bad", secret=item.raw), "?", self)
                record = self._lookup(index, tag.digest)
                if record is not None and record.status in FINISHED:
                    return UpdateOutcome(
                        index=index,
                        update=None,
                        ok=False,
                        error=item.error,
                        skipped=True,
                        line=item.line,
                        bad_row=item,
                    )
            return _Pending(item=item, tag=tag)
        update: object = item  # sources are user code: check what they gave
        if not isinstance(update, AttributeUpdate):
            error = AttributeValidationError(
                f"row {index}: expected an AttributeUpdate, got {type(update).__name__}"
            )
            return UpdateOutcome(index=index, update=None, ok=False, error=error)

        line = update.line
        try:
            operation, params, secrets = self._request(update)
        except AttributeValidationError as exc:
            return UpdateOutcome(index=index, update=update, ok=False, error=exc, line=line)
        tag = None
        if journal is not None:
            # Identify the row by its user and change, not by its token: tokens expire within
            # hours, and a migration resumed with fresh ones is still the same input.
            user = (
                token_subject(params["AccessToken"])
                if "AccessToken" in params
                else params.get("Username")
            )
            digest = journal.fingerprint(
                operation,
                params.get("UserPoolId"),
                user,
                sorted(update.values),
                secret=[params.get("UserAttributes"), params.get("ClientMetadata")],
            )
            tag = _RowTag(index, digest, update.user, self)
        job = self._dispatcher.make_job(
            operation,
            params,
            secrets,
            attributes=dict(update.values),
            # A row waits behind the rest of the read-ahead for quota, so its time budget does
            # not start when it is read: no overall deadline unless one was asked for.
            timeout=self._timeout if self._timeout is not None else math.inf,
            retry=self._retry,
            priority=Priority.BULK,
            share=self._share,
            tag=tag,
        )
        if tag is None:
            return _Pending(item=update, job=job)
        record = self._lookup(index, tag.digest)
        lane = job.lane_key if job.lane_key is not None else ("row", index)
        if record is not None and (
            record.status is RowStatus.FAILED
            or (record.status is RowStatus.OK and lane not in self._resend)
        ):
            previous: AiocognitoError | None = None
            if record.status is not RowStatus.OK:
                # Rebuilt with the class for its code, so callers can still catch it by type.
                code = record.code or "Unknown"
                previous = error_class_for_code(code)(
                    record.message or "", code=code, operation=operation
                )
            return UpdateOutcome(
                index=index,
                update=update,
                ok=record.status is RowStatus.OK,
                error=previous,
                attempts=record.attempts,
                skipped=True,
                line=line,
            )
        if index <= self._last_index:
            # This row is sent again (never finished, or its retries ran out), so the user's
            # later rows that had succeeded must follow it: else it would overwrite them.
            self._resend.add(lane)
        return _Pending(item=update, job=job, tag=tag)

    def _lookup(self, index: int, digest: str) -> JournalRecord | None:
        assert self._journal is not None
        if index > self._last_index:
            self._resend.clear()  # no finished row lies ahead: nothing more to re-send
            return None
        return self._journal.lookup(index, digest)

    async def _process(self, index: int, pending: _Pending) -> UpdateOutcome | None:
        item = pending.item
        if isinstance(item, BadRow):
            if pending.tag is not None:
                self._journal_records(
                    [
                        JournalRecord(
                            index=index,
                            fingerprint=pending.tag.digest,
                            status=RowStatus.FAILED,
                            code="AttributeValidationError",
                            message=str(item.error),
                            attempts=0,
                            user="?",
                        )
                    ]
                )
            return UpdateOutcome(
                index=index, update=None, ok=False, error=item.error, line=item.line, bad_row=item
            )
        job = pending.job
        assert job is not None
        update, operation = item, job.operation
        try:
            response = await self._dispatcher.run(job)
        except AiocognitoError as exc:
            if is_fatal(exc, operation):
                self._fatal = exc
                self._stopping = True
                return None
            self._journal_batch(job)
            return UpdateOutcome(
                index=index,
                update=update,
                ok=False,
                error=exc,
                attempts=job.attempts,
                merged=job.merged_with > 1,
                line=update.line,
            )
        # Reported as applied even when the journal could not record it: it was applied.
        self._journal_batch(job)
        return UpdateOutcome(
            index=index,
            update=update,
            ok=True,
            attempts=job.attempts,
            merged=job.merged_with > 1,
            line=update.line,
            result=UpdateResult(request_id=request_id(response)),
        )

    def _request(self, update: AttributeUpdate) -> tuple[str, dict[str, Any], tuple[str, ...]]:
        pool = None
        if update.access_token is None:
            pool = check_user_pool_id(
                update.user_pool_id if update.user_pool_id is not None else self._default_pool
            )
        return update_request(
            access_token=update.access_token,
            username=update.username,
            user_pool_id=pool,
            values=update.values,
            metadata=update.client_metadata,
        )

    def _journal_batch(self, job: Job) -> None:
        """Record every finished row of the call that carried ``job``, in one transaction."""
        if self._journal is None:
            return
        records = []
        for member in job.batch or (job,):
            tag = member.tag
            if (
                not member.finished
                or not isinstance(tag, _RowTag)
                or tag.owner is not self  # another run's row, merged into this call
                or tag.journaled
                # Its caller left (a row timeout): it was reported failed, so it must not be
                # journaled done even if a retry carrying it succeeded; a resume re-sends it.
                or member.abandoned
            ):
                continue
            tag.journaled = True  # the first member to finish records the whole call
            if member.error is None:
                status, code, message = RowStatus.OK, None, None
            else:
                # Finished means failed for good; a row never sent (a quota deadline) or one
                # whose retries ran out is tried again on the next run.
                finished = (
                    classify(member.error) is RetryClass.PERMANENT
                    and member.sent
                    and not isinstance(member.error, QuotaDeadlineError)
                )
                status = RowStatus.FAILED if finished else RowStatus.RETRY
                code = error_code(member.error)
                # The bare message: a resumed run rebuilds the error around it, code and all.
                message = getattr(member.error, "message", None) or str(member.error)
            records.append(
                JournalRecord(
                    index=tag.index,
                    fingerprint=tag.digest,
                    status=status,
                    code=code,
                    message=message,
                    attempts=member.attempts,
                    user=tag.user,
                )
            )
        self._journal_records(records)

    def _journal_records(self, records: list[JournalRecord]) -> None:
        """Write records; a failed write stops the run (the rows are still reported)."""
        assert self._journal is not None
        try:
            self._journal.record(records)
        except JournalWriteError as exc:
            self._fail(exc)

    def _fail(self, exc: AiocognitoError) -> None:
        """Stop reading; the rows already read finish and report, then ``exc`` is raised."""
        if self._fatal is None:
            self._fatal = exc
        self._stopping = True

    def _count(self, outcome: UpdateOutcome) -> None:
        if outcome.skipped:
            self._skipped += 1
        elif outcome.ok:
            self._ok += 1
        else:
            self._failed += 1
            code = outcome.code or "Error"
            self._failed_by_code[code] = self._failed_by_code.get(code, 0) + 1
        if outcome.merged:
            self._merged += 1


def _flatten(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_flatten(exc))
        else:
            found.append(exc)
    return found


async def _aiter(
    source: Iterable[AttributeUpdate | BadRow] | AsyncIterable[AttributeUpdate | BadRow],
) -> Any:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
            await anyio.lowlevel.checkpoint()
