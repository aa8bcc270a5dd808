"""The engine: every call, per-call or bulk, goes through one Dispatcher per client.

Order of work for one request::

    per-user lane (order, coalescing) -> retry loop -> quota (per category, by priority)
        -> concurrency slot -> one attempt on the transport

Per-user lanes. Updates and deletes for one user (one pool and username, or one token subject)
are never in flight together; they are applied in submission order. While one is in flight,
later ones queue behind it; when it finishes, the run of queued updates that can merge (same
operation, same token or pool, same client metadata) becomes one call in which later values win
per attribute. Every caller whose change rode in a call gets that call's result or error. Reads
bypass lanes; verification calls and deletes are ordered but never merged.

The key of a token call is the token's subject (``sub``, else ``username``), read from the JWT
payload without verifying it; if that fails, the token itself. Admin calls are keyed by pool and
the identifier given, so an update by alias and one by username are not ordered against each
other, nor are token and admin updates to the same user.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import anyio
from attrs import define, field

from ._config import Limits, RetryPolicy
from ._errors import CognitoError, DeadlineExceededError
from ._limits import CATEGORY, Priority, RateLimiter, ShareLimit
from ._retry import RetryClass, retry_call
from ._transport import Transport

__all__ = ["Dispatcher", "Job", "token_subject"]

MERGEABLE = frozenset({"UpdateUserAttributes", "AdminUpdateUserAttributes"})
LANED = MERGEABLE | {
    "DeleteUserAttributes",
    "AdminDeleteUserAttributes",
    "GetUserAttributeVerificationCode",
    "VerifyUserAttribute",
}


def token_subject(token: str) -> str:
    """The user a token belongs to, from its unverified JWT payload; the token if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        subject = claims.get("sub") or claims.get("username")
        if isinstance(subject, str) and subject:
            return f"{claims.get('iss', '')}#{subject}"
    except (IndexError, ValueError, AttributeError, TypeError):
        pass
    return token


@define(eq=False)
class Job:
    """One caller's request, as the engine carries it."""

    operation: str
    params: dict[str, Any]
    secrets: tuple[str, ...]
    attributes: dict[str, str] | None = None
    priority: Priority = Priority.INTERACTIVE
    share: ShareLimit | None = None
    deadline: float | None = None
    retry: RetryPolicy | None = None
    lane_key: Hashable | None = None
    merge_key: Hashable | None = None
    finished: bool = False
    driver: bool = False
    # Created only when the caller has to wait: most calls find their lane idle.
    wake: anyio.Event | None = None
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    attempts: int = 0
    sent: bool = False
    # The call that carried this job, and the caller's own label for it (bulk rows).
    batch: list[Job] | None = None
    tag: Any = None

    @property
    def merged_with(self) -> int:
        """How many callers' changes rode in the call that carried this one."""
        return len(self.batch) if self.batch else 1


@define(eq=False)
class _Lane:
    pending: deque[Job] = field(factory=deque)
    busy: bool = False  # some caller is driving this lane


class Dispatcher:
    """Lanes, coalescing, quota, concurrency and retries for one client."""

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits,
        retry: RetryPolicy,
        limiters: Mapping[str, RateLimiter],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._retry = retry
        self._limiters = limiters
        self._clock = clock
        self.closed = False
        # FIFO-fair; fast_acquire skips the event-loop round trip when a slot is free.
        self._max_concurrency = limits.max_concurrency
        self._slots = anyio.Semaphore(limits.max_concurrency, fast_acquire=True)
        self._lanes: dict[Hashable, _Lane] = {}
        self.calls_saved = 0
        self.requests_sent = 0
        self.retries = 0
        self.throttled = 0
        self.errors_by_code: dict[str, int] = {}

    # ----------------------------------------------------------------------------------------
    # Statistics

    @property
    def in_flight(self) -> int:
        return self._max_concurrency - self._slots.value

    @property
    def waiting_for_slot(self) -> int:
        return self._slots.statistics().tasks_waiting

    @property
    def active_lanes(self) -> int:
        return len(self._lanes)

    # ----------------------------------------------------------------------------------------
    # Submitting

    def make_job(
        self,
        operation: str,
        params: dict[str, Any],
        secrets: Sequence[str],
        *,
        attributes: dict[str, str] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        priority: Priority = Priority.INTERACTIVE,
        share: ShareLimit | None = None,
    ) -> Job:
        """Describe one request; ``timeout`` (or the policy's deadline) starts now."""
        policy = retry if retry is not None else self._retry
        budget = timeout if timeout is not None else policy.deadline
        job = Job(
            operation=operation,
            params=params,
            secrets=tuple(secrets),
            attributes=attributes,
            priority=priority,
            share=share,
            deadline=None if budget is None else self._clock() + budget,
            retry=policy,
        )
        if operation in LANED:
            if "AccessToken" in params:
                job.lane_key = ("token", token_subject(params["AccessToken"]))
            else:
                job.lane_key = ("admin", params.get("UserPoolId"), params.get("Username"))
            if operation in MERGEABLE:
                metadata = params.get("ClientMetadata")
                job.merge_key = (
                    operation,
                    job.lane_key,
                    params.get("AccessToken"),
                    None if metadata is None else tuple(sorted(metadata.items())),
                )
        return job

    async def run(self, job: Job) -> dict[str, Any]:
        """Carry one job to its end in the caller's task; return the response or raise.

        A laned job waits its turn. The caller that finds its lane idle drives it: it runs the
        batch holding its own job, then hands the lane to the owner of the next queued job. No
        background task is involved, so a client may be closed from any task.
        """
        if job.lane_key is None:
            await self._execute([job])
        else:
            await self._run_laned(job)
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    async def _run_laned(self, job: Job) -> None:
        lane = self._lanes.get(job.lane_key)
        if lane is None:
            lane = self._lanes[job.lane_key] = _Lane()
        lane.pending.append(job)
        if not lane.busy:
            # The lane is idle: drive it now. The retry loop bounds this by the deadline, so
            # the common case needs no scope of its own.
            lane.busy = job.driver = True
            try:
                await self._drive(lane, job)
            finally:
                job.driver = False
                self._hand_over(job.lane_key, lane)
            return
        scope = anyio.CancelScope(
            deadline=math.inf if job.deadline is None else _to_loop_time(job.deadline, self._clock)
        )
        try:
            with scope:
                while not job.finished:
                    if job.driver:
                        await self._drive(lane, job)
                    else:
                        job.wake = anyio.Event()
                        await job.wake.wait()
        finally:
            if not job.finished and job in lane.pending:
                lane.pending.remove(job)  # withdrawn: it was never sent
            if job.driver:
                job.driver = False
                self._hand_over(job.lane_key, lane)
        if scope.cancelled_caught and not job.finished:
            job.error = DeadlineExceededError(
                f"{job.operation}: the call's deadline passed while waiting behind earlier "
                "changes to the same user"
                + ("; the change may still be applied" if job.sent else "; it was not sent")
            )

    async def _drive(self, lane: _Lane, job: Job) -> None:
        """Run the batch at the front of the lane, which holds ``job``."""
        batch = [lane.pending.popleft()]
        if batch[0].merge_key is not None:
            while lane.pending and lane.pending[0].merge_key == batch[0].merge_key:
                batch.append(lane.pending.popleft())
        try:
            await self._execute(batch)
        except BaseException:
            # This caller was cancelled mid-call: the others' changes go back to the front,
            # for the next driver (setting attributes again is harmless).
            for other in reversed(batch):
                if other is not job and not other.finished:
                    lane.pending.appendleft(other)
            raise

    def _hand_over(self, key: Hashable, lane: _Lane) -> None:
        if lane.pending:
            successor = lane.pending[0]
            successor.driver = True
            if successor.wake is not None:
                successor.wake.set()
        else:
            lane.busy = False
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    # ----------------------------------------------------------------------------------------
    # Executing one (possibly merged) call

    async def _execute(self, batch: list[Job]) -> None:
        first = batch[0]
        for job in batch:
            job.batch = batch
        params, secrets = first.params, first.secrets
        if len(batch) > 1:
            merged: dict[str, str] = {}
            for job in batch:
                merged.update(job.attributes or {})
            params = {
                **first.params,
                "UserAttributes": [{"Name": k, "Value": v} for k, v in merged.items()],
            }
            secrets = tuple(dict.fromkeys(s for job in batch for s in job.secrets))
            self.calls_saved += len(batch) - 1
        priority = min(job.priority for job in batch)
        share = None if priority is Priority.INTERACTIVE else first.share
        deadlines = [job.deadline for job in batch]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        limiter = self._limiters.get(CATEGORY.get(first.operation, ""))
        attempts = 0
        admitted_at = 0.0  # when the limiter let the latest attempt go: its round trip starts

        async def attempt(number: int) -> dict[str, Any]:
            nonlocal attempts, admitted_at
            if self.closed:
                raise RuntimeError("CognitoClient is closed")
            if limiter is not None:
                await limiter.acquire(priority, deadline=deadline, share=share)
                admitted_at = self._clock()
            async with self._slots:
                attempts = number
                self.requests_sent += 1
                if number > 1:
                    self.retries += 1
                for job in batch:
                    job.sent = True
                return await self._transport.call(first.operation, params, secrets=secrets)

        def on_failure(exc: BaseException, kind: RetryClass) -> None:
            if kind is RetryClass.THROTTLE and not _client_side(exc):
                self.throttled += 1
            if limiter is not None and isinstance(exc, CognitoError) and exc.status is not None:
                limiter.record(
                    throttled=kind is RetryClass.THROTTLE, latency=self._clock() - admitted_at
                )
            key = exc.code if isinstance(exc, CognitoError) else type(exc).__name__
            self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1

        remaining = None if deadline is None else max(deadline - self._clock(), 0.0)
        try:
            # A merged call follows the first caller's policy; its deadline is the latest one.
            result = await retry_call(
                attempt, first.retry or self._retry, deadline=remaining, on_failure=on_failure
            )
        except Exception as exc:  # delivered to every caller whose change rode in this call
            for job in batch:
                job.error, job.attempts = exc, attempts
                _finish(job)
            return
        if limiter is not None:
            limiter.record(throttled=False, latency=self._clock() - admitted_at)
        for job in batch:
            job.result, job.attempts = result, attempts
            _finish(job)


def _finish(job: Job) -> None:
    job.finished = True
    if job.wake is not None:
        job.wake.set()  # its owner is waiting


def _client_side(exc: BaseException) -> bool:
    return isinstance(exc, CognitoError) and exc.status is None


def _to_loop_time(deadline: float, clock: Callable[[], float]) -> float:
    """Translate a deadline on ``clock`` into the event loop's clock."""
    return anyio.current_time() + (deadline - clock())
