"""Streaming bulk updates on top of the engine: bounded read-ahead, outcomes, journal, stop.

A :class:`BulkUpdate` reads its source lazily: at most ``read_ahead`` rows are read and not yet
reported, so a five-million-row file never sits in memory. Each row becomes a bulk-priority job
in the client's dispatcher (so per-call traffic on the same client goes first), and yields
exactly one :class:`UpdateOutcome`, in completion order.

A fatal error (the pool does not exist, no credentials, the admin call is not authorised) ends
the run with that one error, raised plainly from the ``async for``, rather than a million failed
rows. Leaving the ``async with`` early cancels the work: finished rows are in the journal, rows
in flight are not.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import frozen

from ._config import RetryPolicy
from ._dispatch import Dispatcher, Job, token_subject
from ._errors import (
    AiocognitoError,
    AttributeValidationError,
    CognitoError,
    CredentialsError,
    NotAuthorizedError,
    ResourceNotFoundError,
)
from ._journal import Journal, JournalRecord, fingerprint
from ._limits import Priority, ShareLimit
from ._models import AttributeUpdate, UpdateOutcome, UpdateResult
from ._requests import request_id, update_request
from ._retry import RetryClass, classify
from ._validate import check_user_pool_id

__all__ = ["BadRow", "BulkStatistics", "BulkUpdate"]

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
class BadRow:
    """An input row that could not be read as an update.

    Attributes:
        line: The line in the input file.
        error: What is wrong with it; the message names the problem, never a value.
        raw: The row as read (JSON text), kept so a failures file can carry it to be fixed.
    """

    line: int
    error: AttributeValidationError
    raw: str = ""

    def __repr__(self) -> str:
        return f"BadRow(line={self.line}, error={str(self.error)!r})"


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


def is_fatal(error: BaseException, operation: str) -> bool:
    """Whether an error condemns the whole run rather than one row."""
    if isinstance(error, CredentialsError | ResourceNotFoundError):
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
        read_ahead: int,
        max_share: float | None,
        timeout: float | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._source = source
        self._default_pool = default_pool
        self._journal_path = journal
        self._input_id = input_id
        self._read_ahead = read_ahead
        self._share = ShareLimit(max_share) if max_share is not None else None
        self._timeout = timeout
        self._retry = retry
        self._journal: Journal | None = None
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
        if self._journal_path is not None:
            self._journal = Journal(self._journal_path)
            try:
                self._journal.bind_input(self._input_id)
            except BaseException:
                self._journal.close()
                raise
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
        finally:
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
        assert self._receive is not None
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
                self._rows_read += 1
                rows.start_soon(self._row, index, item, send, slots, rows.cancel_scope)
                index += 1

    async def _row(
        self,
        index: int,
        item: AttributeUpdate | BadRow,
        send: MemoryObjectSendStream[UpdateOutcome],
        slots: anyio.Semaphore,
        rows_scope: anyio.CancelScope,
    ) -> None:
        try:
            outcome = await self._process(index, item)
            if outcome is None:  # a fatal error: stop everything
                rows_scope.cancel()
                return
            self._count(outcome)
            # If the consumer left, dropping the outcome is fine: the journal has the row.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await send.send(outcome)
        finally:
            slots.release()

    async def _process(self, index: int, item: AttributeUpdate | BadRow) -> UpdateOutcome | None:
        journal = self._journal
        if isinstance(item, BadRow):
            digest = fingerprint("bad", item.raw) if journal is not None else ""
            if journal is not None and journal.finished(index, digest) is not None:
                return UpdateOutcome(
                    index=index,
                    update=None,
                    ok=False,
                    error=item.error,
                    skipped=True,
                    line=item.line,
                    bad_row=item,
                )
            if journal is not None:
                journal.record(
                    [
                        JournalRecord(
                            index,
                            digest,
                            "failed",
                            "AttributeValidationError",
                            str(item.error),
                            0,
                            "?",
                        )
                    ]
                )
            return UpdateOutcome(
                index=index, update=None, ok=False, error=item.error, line=item.line, bad_row=item
            )
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
        digest = ""  # only a journal needs the row's fingerprint
        if journal is not None:
            # Identify the row by its user and change, not by its token: tokens expire within
            # hours, and a migration resumed with fresh ones is still the same input.
            identity = {k: v for k, v in params.items() if k != "AccessToken"}
            if "AccessToken" in params:
                identity["subject"] = token_subject(params["AccessToken"])
            digest = fingerprint(operation, identity)
            record = journal.finished(index, digest)
            if record is not None:
                previous: AiocognitoError | None = None
                if record.status != "ok":
                    previous = CognitoError(
                        record.message or "", code=record.code, operation=operation
                    )
                return UpdateOutcome(
                    index=index,
                    update=update,
                    ok=record.status == "ok",
                    error=previous,
                    attempts=record.attempts,
                    skipped=True,
                    line=line,
                )

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
        )
        job.tag = (index, digest, update.user)
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
                line=line,
            )
        self._journal_batch(job)
        return UpdateOutcome(
            index=index,
            update=update,
            ok=True,
            attempts=job.attempts,
            merged=job.merged_with > 1,
            line=line,
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
            if not member.finished or member.tag is None:
                continue
            index, digest, user = member.tag
            if member.error is None:
                status, code, message = "ok", None, None
            else:
                # Finished means failed for good; a row never sent (a quota deadline) or one
                # whose retries ran out is tried again on the next run.
                finished = classify(member.error) is RetryClass.PERMANENT and member.sent
                status = "failed" if finished else "retry"
                code = getattr(member.error, "code", None) or type(member.error).__name__
                # The bare message: a resumed run rebuilds the error around it, code and all.
                message = getattr(member.error, "message", None) or str(member.error)
            records.append(
                JournalRecord(index, digest, status, code, message, member.attempts, user)
            )
        self._journal.record(records)

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
