"""The engine: every call, per-call or bulk, goes through one Dispatcher per client.

Order of work for one request::

    per-user lane (order, merging) -> quota (per category, by priority, inherited in the lane)
        -> concurrency slot
        -> one attempt on the wire -> retry decision (backoff, split, or the caller's result)

**Per-user lanes.** Updates, deletes and verification calls for one user (one pool and username,
or one token subject) are applied in submission order, one call on the wire at a time. Later
ones queue behind the call in flight; reads bypass lanes. The key of a token call is the token's
subject (``sub``, else ``username``), read from the JWT payload without verifying it; if that
fails, the token itself. Admin calls are keyed by pool and the identifier given, case-folded
(a pool may ignore a username's case; calls merge only if the name is given alike), so an update
by alias and one by username are not ordered against each other, nor are token and admin
updates to the same user.

**Who drives.** There are no background workers: a lane is driven by one of its own callers,
the *driver*, which runs attempts, backoffs and retries for the call at the head of the lane and
keeps going until its own change has an outcome; then it hands the lane to the owner of the
next live change. Each attempt is a *flight* that belongs to the lane, not to the caller who
launched it. If the driver is cancelled (a web framework dropping a request, ``wait_for``, its
own deadline), the flight carries on and the lane passes at once to another live caller, who
waits for that flight before anything else is sent for the user; so an abandoned request can
never land after a later one. A change whose caller is gone is never sent again, and the lane is
removed when its last change and its last flight are done.

**Records.** What a caller asked for is a frozen :class:`Job` (operation, parameters, lane and
merge keys, priority, deadline, retry policy, the caller's tag). The engine's record of it is a
private *ticket*: the lane it waits in, its wake-up event, whether it was sent, the batch it rode
in and its outcome. Lanes, batches and flights hold tickets; a caller reads how its job went
through the job's read-only properties.

**Merging.** While a call is in flight, queued updates for the same user, with the same
operation, token or pool, and client metadata, become one call. A merged call must mean exactly
what the calls one by one mean, under Cognito's rules:

* Only the attributes listed change; the last value given for an attribute wins; a blank value
  deletes. So per attribute, the later change simply replaces the earlier one.
* A new ``email`` or ``phone_number`` resets its ``*_verified`` flag and sends a code, unless the
  same call sets the flag (an admin call setting it ``"true"`` applies the address verified and
  sends nothing). Merged, ``{"email_verified": "true"}`` then ``{"email": new}`` would apply the
  new address *verified* without a code; ``{"email": new}`` then ``{"email_verified": "true"}``
  would skip the code to the address being kept; two address changes could leave the flag
  differently set. So a change that touches ``email`` or ``email_verified`` is never merged with
  another change touching either of the two, and likewise for ``phone_number`` and
  ``phone_number_verified`` (:func:`may_merge`). Such a change still merges with changes to other
  attributes.
* Deletes (DeleteUserAttributes) and verification calls are ordered but never merged.

**Splitting.** Cognito applies a call whole or not at all. When it refuses a merged call with an
error that belongs to one of the changes (:func:`belongs_to_change`: a bad or unknown attribute,
an alias in use, a Lambda veto, a code that could not be delivered, ...), the changes are sent
again one by one, in order, ahead of anything queued behind them, so each caller gets its own
result or error and no error names another caller's attributes. Errors that belong to the user,
the token or the service (user not found, expired token, throttling, 5xx after the last retry)
go to every caller in the call.

**Priority inheritance.** Quota is served by priority, interactive (per-call) work before bulk
rows (:mod:`aiocognito._limits`). But a lane keeps order: an interactive call queued behind a
bulk row for the same user waits for that row, and if the row waited for quota at bulk
priority, the call would wait for every bulk row queued for quota ahead of it (dozens, at a
bulk job's read-ahead), its own priority notwithstanding. So the head of a lane takes quota at
the highest priority of any live change in the lane, its own or one queued behind it: when it
asks (after a backoff too), from the lane as it is then; while it waits, an interactive call
that joins the lane promotes its :class:`~aiocognito._limits.QuotaClaim`, moving it to the tail
of the interactive queue. Promoted, it is no longer held to its bulk job's ``max_share``
(interactive work never is), and it is not charged to the share: a refund gives back what the
grant charged. A promotion is not undone if the interactive caller then leaves: one bulk row
going early does no harm, and moving it back could not restore its place.

**Closing.** :meth:`Dispatcher.aclose` fails every queued or in-flight call at once with
:class:`ClientClosedError`: queued calls take no quota, and flights are cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from attrs import Factory, define, field, frozen

from . import _log
from ._config import Limits, RetryPolicy
from ._errors import (
    AiocognitoError,
    AttributeValidationError,
    ClientClosedError,
    CognitoError,
    DeadlineExceededError,
    QuotaDeadlineError,
    TransportError,
    error_code,
)
from ._limits import Priority, QuotaClaim, RateLimiter, ShareLimit, loop_time
from ._operations import OPERATIONS
from ._protocol import Transport
from ._retry import RetryClass, classify, retry_delay

__all__ = [
    "Dispatcher",
    "DispatcherStatistics",
    "Job",
    "belongs_to_change",
    "may_merge",
    "token_subject",
]

#: Attributes Cognito couples: changing the address resets the flag unless the call sets it.
VERIFIED_PAIRS: Mapping[str, str] = {
    "email": "email_verified",
    "phone_number": "phone_number_verified",
}
_COUPLED = {name: address for address, flag in VERIFIED_PAIRS.items() for name in (address, flag)}

#: Seconds a close waits, at most, for cancelled callers to leave (they leave at once).
CLOSE_GRACE = 1.0

#: Refusals caused by one of the changes in a call: a merged call refused so is split.
_CHANGE_ERRORS = frozenset(
    {
        "InvalidParameterException",  # unknown, immutable or malformed attribute
        "AliasExistsException",  # another user has the email or phone number
        "UserLambdaValidationException",  # a trigger vetoed the change
        "InvalidLambdaResponseException",
        "UnexpectedLambdaException",
        "CodeDeliveryFailureException",  # only changes to an address send codes
        "InvalidEmailRoleAccessPolicyException",  # likewise, the pool cannot send for them
        "InvalidSmsRoleAccessPolicyException",
        "InvalidSmsRoleTrustRelationshipException",
    }
)
#: Refusals about the user, the token or the service: every change in the call shares them.
_CALL_ERRORS = frozenset(
    {
        "UserNotFoundException",
        "ResourceNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
        "TooManyRequestsException",
        "LimitExceededException",
        "InternalErrorException",
        "ForbiddenException",
        "OperationNotEnabledException",
        "NotAuthorizedException",  # except a write to an unwritable attribute: see below
    }
)


#: Cognito's access tokens carry a payload of one or two kilobytes; a larger one is not read.
_MAX_PAYLOAD = 16 * 1024


def token_subject(token: str) -> str:
    """The user a token belongs to, from its unverified JWT payload; the token if unreadable."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > _MAX_PAYLOAD:
        return token
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        subject = claims.get("sub") or claims.get("username")
        if isinstance(subject, str) and subject:
            return f"{claims.get('iss', '')}#{subject}"
    except Exception:
        pass
    return token


def may_merge(earlier: Sequence[Mapping[str, str]], later: Mapping[str, str]) -> bool:
    """Whether ``later`` may ride in one call after the ``earlier`` changes and mean the same.

    Two rules (see the module docstring for why):

    * no two changes touch the same coupled pair (``email``/``email_verified``,
      ``phone_number``/``phone_number_verified``);
    * every earlier change is sent whole or replaced whole: ``later`` either leaves all of the
      attributes an earlier change still contributes alone, or replaces all of them.
    """
    touched = {_COUPLED[name] for change in earlier for name in change if name in _COUPLED}
    if any(_COUPLED.get(name) in touched for name in later):
        return False
    for surviving in _surviving(earlier):
        overlap = surviving & later.keys()
        if overlap and overlap != surviving:
            return False
    return True


def _surviving(changes: Sequence[Mapping[str, str]]) -> list[set[str]]:
    """For each change, the attributes it still contributes: those no later change replaces."""
    later: set[str] = set()
    found: list[set[str]] = []
    for change in reversed(changes):
        found.append(set(change) - later)
        later |= change.keys()
    found.reverse()
    return found


def belongs_to_change(error: BaseException) -> bool:
    """Whether Cognito's refusal of a call may be caused by one change in it, not by all."""
    if not isinstance(error, CognitoError) or error.status is None:
        return False  # no answer, or refused on our side (quota deadline): nothing to split
    if error.code in _CHANGE_ERRORS:
        return True
    if error.code == "NotAuthorizedException":
        # "A client attempted to write unauthorized attribute" names the input; an expired or
        # revoked token ("Access Token has expired") belongs to every change.
        return "attribute" in error.message.lower()
    if error.code in _CALL_ERRORS:
        return False
    # A refusal we do not know may well name the input: splitting costs a few calls at most.
    return error.status < 500


@frozen(kw_only=True)
class DispatcherStatistics:
    """The engine's state and counters (see :class:`ClientStatistics` for their meaning)."""

    in_flight: int
    waiting: int
    active_lanes: int
    requests_sent: int
    retries: int
    throttled: int
    calls_saved: int
    #: Merged calls refused for one change and sent again one change at a time.
    splits: int
    errors_by_code: Mapping[str, int]


@define(eq=False)
class _Ticket:
    """The engine's record of one job: where it waits, and how it went."""

    job: Job = field(repr=False)
    #: The lane the job queues in, once :meth:`Dispatcher.run` has enqueued it.
    lane: _Lane | None = field(default=None, repr=False)
    finished: bool = False
    result: dict[str, Any] | None = field(default=None, repr=False)
    error: BaseException | None = None
    #: Attempts of the call that finished this job.
    attempts: int = 0
    #: Whether any attempt carrying this change was sent.
    sent: bool = False
    #: The tickets whose changes rode in the call that finished this one (itself included).
    batch: list[_Ticket] | None = field(default=None, repr=False)
    #: The caller left (cancelled, deadline, close) before the job finished.
    abandoned: bool = False
    #: Split out of a refused merged call: sent on its own.
    solo: bool = False
    #: Attempts carrying this change that came back throttled.
    throttles: int = 0
    #: Seconds this change waited for its category's quota, over all its attempts.
    quota_wait: float = 0.0
    # Created only when the caller has to wait: most calls find their lane idle.
    wake: asyncio.Event | None = None

    @property
    def live(self) -> bool:
        """Whether a caller still waits for this change."""
        return not self.finished and not self.abandoned

    def finish(
        self, *, result: dict[str, Any] | None, error: BaseException | None, attempts: int
    ) -> None:
        self.finished = True
        self.result, self.error, self.attempts = result, error, attempts
        if self.wake is not None:
            self.wake.set()  # its owner is waiting


@frozen(kw_only=True, eq=False)
class Job:
    """One caller's request: what it asked the engine for, made by :meth:`Dispatcher.make_job`.

    The request never changes. How it went is the engine's own record, kept in a private
    ticket; the properties below read it once :meth:`Dispatcher.run` has returned or raised.
    """

    operation: str
    # Tokens, values and metadata never reach a repr; a lane key may be a token.
    params: dict[str, Any] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    attributes: dict[str, str] | None = field(default=None, repr=False)
    priority: Priority = Priority.INTERACTIVE
    share: ShareLimit | None = None
    #: When the caller stops waiting, on the event loop's clock; None for never.
    deadline: float | None = None
    retry: RetryPolicy
    #: The user whose calls are ordered (None: a read, ordered against nothing).
    lane_key: Hashable | None = field(default=None, repr=False)
    #: Queued jobs with equal merge keys may ride in one call (None: never merged).
    merge_key: Hashable | None = field(default=None, repr=False)
    #: The caller's own label for the job (bulk rows keep their index and fingerprint here).
    tag: object = None
    _ticket: _Ticket = field(init=False, repr=False, default=Factory(_Ticket, takes_self=True))

    @property
    def finished(self) -> bool:
        """Whether the job has its outcome (a caller who left may never see it)."""
        return self._ticket.finished

    @property
    def error(self) -> BaseException | None:
        """The job's error, once finished; None if it succeeded."""
        return self._ticket.error

    @property
    def attempts(self) -> int:
        """Attempts of the call that finished this job."""
        return self._ticket.attempts

    @property
    def sent(self) -> bool:
        """Whether any attempt carrying this change was sent."""
        return self._ticket.sent

    @property
    def abandoned(self) -> bool:
        """Whether the caller left (cancelled, deadline, close) before the job finished."""
        return self._ticket.abandoned

    @property
    def throttles(self) -> int:
        """Attempts carrying this change that came back throttled."""
        return self._ticket.throttles

    @property
    def quota_wait(self) -> float:
        """Seconds this change waited for its category's quota, over all its attempts."""
        return self._ticket.quota_wait

    @property
    def batch(self) -> tuple[Job, ...] | None:
        """The jobs whose changes rode in the call that finished this one (itself included)."""
        batch = self._ticket.batch
        return None if batch is None else tuple(ticket.job for ticket in batch)

    @property
    def merged_with(self) -> int:
        """How many callers' changes rode in the call that carried this one."""
        return len(self._ticket.batch) if self._ticket.batch else 1


@define(eq=False)
class _Flight:
    """One attempt on the wire. It belongs to the lane, so it survives its launcher."""

    tickets: list[_Ticket]
    request: tuple[dict[str, Any], tuple[str, ...]] | None = field(default=None, repr=False)
    #: When the limiter let it go (the event loop's clock): its round trip, as the limiter
    #: learns it for deadlines, includes any wait for a concurrency slot.
    admitted: float = 0.0
    #: Which attempt of its call this is, and when it left (``time.perf_counter``).
    attempt: int = 1
    started: float = 0.0
    task: asyncio.Task[dict[str, Any]] | None = None
    done: asyncio.Event = field(factory=asyncio.Event)
    result: dict[str, Any] | None = field(default=None, repr=False)
    error: BaseException | None = None
    #: Cancelled by the engine because its caller left (a read): no error to count.
    abandoned: bool = False

    @property
    def operation(self) -> str:
        return self.tickets[0].job.operation


@define(eq=False)
class _Batch:
    """The changes at the head of a lane that travel as one call, through its attempts."""

    tickets: list[_Ticket]
    attempts: int = 0
    flight: _Flight | None = None
    #: After a failed attempt: when (event-loop time) the next one may go, and its error.
    retry_at: float | None = None
    last_error: BaseException | None = None
    #: Set once an attempt may have been applied (a lost answer, a 5xx): every retry then sends
    #: exactly this request, with the changes it carried, even of callers who have left since;
    #: otherwise a retry without a departed caller's change could land after it, out of order.
    frozen: tuple[dict[str, Any], tuple[str, ...], list[_Ticket]] | None = field(
        default=None, repr=False
    )
    #: While its attempt waits for quota: its claim, which an interactive caller queuing behind
    #: it in the lane promotes (see "Priority inheritance" above).
    claim: QuotaClaim | None = None


@define(eq=False)
class _Lane:
    key: Hashable | None = field(repr=False)
    pending: deque[_Ticket] = field(factory=deque)
    batch: _Batch | None = None
    #: The ticket whose caller runs the lane's calls now (see "Who drives" above).
    driver: _Ticket | None = None


class Dispatcher:
    """Lanes, merging, quota, concurrency and retries for one client; see the module docs."""

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits,
        retry: RetryPolicy,
        limiters: Mapping[str, RateLimiter],
    ) -> None:
        self._transport = transport
        self._retry = retry
        self._limiters = limiters
        self.closed = False
        # FIFO-fair; fast_acquire skips the event-loop round trip when a slot is free.
        self._max_concurrency = limits.max_concurrency
        self._slots = anyio.Semaphore(limits.max_concurrency, fast_acquire=True)
        self._lanes: dict[Hashable, _Lane] = {}
        # Every call being served, so that closing can end it; every flight, to cancel it.
        self._scopes: set[anyio.CancelScope] = set()
        self._flights: set[asyncio.Task[dict[str, Any]]] = set()
        self._idle = asyncio.Event()  # set when, closed, the last flight or caller is gone
        self.calls_saved = 0
        self.splits = 0
        self.requests_sent = 0
        self.retries = 0
        self.throttled = 0
        self.errors_by_code: dict[str, int] = {}
        #: Told (operation, throttled) as each attempt lands; the client's metrics hook.
        self.on_attempt: Callable[[str, bool], None] | None = None

    # ----------------------------------------------------------------------------------------
    # Statistics

    @property
    def in_flight(self) -> int:
        """Requests on the wire now."""
        return self._max_concurrency - self._slots.value

    def statistics(self) -> DispatcherStatistics:
        """A snapshot of the engine's state and counters."""
        return DispatcherStatistics(
            in_flight=self.in_flight,
            waiting=self._slots.statistics().tasks_waiting,
            active_lanes=len(self._lanes),
            requests_sent=self.requests_sent,
            retries=self.retries,
            throttled=self.throttled,
            calls_saved=self.calls_saved,
            splits=self.splits,
            errors_by_code=dict(self.errors_by_code),
        )

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
        tag: object = None,
    ) -> Job:
        """Describe one request; ``timeout`` (or the policy's deadline) starts now."""
        if timeout is not None and not timeout > 0:  # also refuses NaN
            raise AttributeValidationError(
                f"timeout: expected a positive number of seconds, got {timeout!r}"
            )
        policy = retry if retry is not None else self._retry
        budget = timeout if timeout is not None else policy.deadline
        lane_key: Hashable | None = None
        merge_key: Hashable | None = None
        op = OPERATIONS[operation]
        if op.laned:
            if "AccessToken" in params:
                lane_key = ("token", token_subject(params["AccessToken"]))
            else:
                username = params.get("Username")
                # A pool may be case-insensitive (UsernameConfiguration): "Alice" and "alice"
                # are then one user, so they share a lane. In a case-sensitive pool that only
                # orders two users' calls; they never merge (the merge key has the name as given).
                folded = username.casefold() if isinstance(username, str) else username
                lane_key = ("admin", params.get("UserPoolId"), folded)
            if op.mergeable:
                metadata = params.get("ClientMetadata")
                merge_key = (
                    operation,
                    lane_key,
                    params.get("Username"),
                    params.get("AccessToken"),
                    None if metadata is None else tuple(sorted(metadata.items())),
                    policy,  # a merged call is retried by one policy: it must be everyone's
                )
        return Job(
            operation=operation,
            params=params,
            secrets=tuple(secrets),
            attributes=attributes,
            priority=priority,
            share=share,
            deadline=None if budget is None else loop_time() + budget,
            retry=policy,
            lane_key=lane_key,
            merge_key=merge_key,
            tag=tag,
        )

    async def run(self, job: Job) -> dict[str, Any]:
        """Carry one job to its end in the caller's task; return the response or raise.

        Raises:
            ClientClosedError: The client was closed first.
            DeadlineExceededError: The job's deadline passed first.
            AiocognitoError: The call's own error.
        """
        if self.closed:
            raise ClientClosedError()
        scope = anyio.CancelScope(deadline=math.inf if job.deadline is None else job.deadline)
        ticket = job._ticket
        self._scopes.add(scope)
        lane = self._enqueue(ticket)
        try:
            with scope:
                await self._serve(lane, ticket)
        finally:
            self._scopes.discard(scope)
            self._leave(lane, ticket)
            self._note_idle()
        if not ticket.finished:  # our own scope ended the wait: the client closed, or the deadline
            if self.closed:
                raise ClientClosedError(
                    f"the CognitoClient was closed before {job.operation} finished"
                    + ("; it may have been applied" if ticket.sent else "; it was not sent"),
                    sent=ticket.sent,
                )
            raise DeadlineExceededError(
                f"{job.operation}: the call's deadline passed"
                + (
                    " before an answer came; the change may still be applied"
                    if ticket.sent
                    else " while it waited (for the user's earlier changes, for quota or for a"
                    " connection); it was not sent"
                )
            )
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def aclose_now(self) -> list[asyncio.Task[dict[str, Any]]]:
        """Fail every call at once with :class:`ClientClosedError`; return the flights to await.

        Calls waiting for their lane, for quota or for a backoff end without being sent; calls
        on the wire are cancelled (they may have been applied).
        """
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()
        flights = list(self._flights)
        for task in flights:
            task.cancel()
        return flights

    def _note_idle(self) -> None:
        """Wake a close waiting for the last flight and the last caller to be gone."""
        if self.closed and not self._scopes and not self._flights:
            self._idle.set()

    async def aclose(self) -> None:
        """Close: end every call (see :meth:`aclose_now`) and wait for the flights to stop."""
        self.aclose_now()
        # Return once every flight has ended and every caller has left (each was cancelled and
        # gives back what it held, a concurrency slot handed over to it included); bounded, so
        # that a caller stuck elsewhere cannot hold the close up.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_GRACE):
            while self._flights or self._scopes:
                self._idle.clear()
                await self._idle.wait()

    # ----------------------------------------------------------------------------------------
    # Lanes

    def _enqueue(self, ticket: _Ticket) -> _Lane:
        key = ticket.job.lane_key
        if key is None:
            lane = _Lane(None)  # reads are not ordered: a lane of their own
        else:
            found = self._lanes.get(key)
            lane = found if found is not None else self._lanes.setdefault(key, _Lane(key))
        ticket.lane = lane
        lane.pending.append(ticket)
        waiting = lane.batch.claim if lane.batch is not None else None
        if waiting is not None and ticket.job.priority is Priority.INTERACTIVE:
            waiting.promote()  # it holds this call up: it waits for quota as interactive now
        self._advance(lane)
        return lane

    async def _serve(self, lane: _Lane, ticket: _Ticket) -> None:
        while not ticket.finished:
            if lane.driver is ticket:
                await self._drive(lane, ticket)
            else:
                ticket.wake = asyncio.Event()
                await ticket.wake.wait()

    def _leave(self, lane: _Lane, ticket: _Ticket) -> None:
        """The job's caller is leaving, finished or not: withdraw it and pass the lane on."""
        if not ticket.finished:
            ticket.abandoned = True  # never sent again
            if ticket in lane.pending:
                lane.pending.remove(ticket)
            flight = lane.batch.flight if lane.batch is not None else None
            if lane.key is None and flight is not None and flight.task is not None:
                # A read orders nothing after it: its flight need not outlive its caller.
                flight.abandoned = True
                flight.task.cancel()
        if lane.driver is ticket:
            lane.driver = None
        self._advance(lane)

    def _advance(self, lane: _Lane) -> None:
        """Give a driverless lane to the owner of its next live change, or retire the lane."""
        if lane.driver is not None:
            return
        batch = lane.batch
        successor: _Ticket | None = None
        if batch is not None:
            successor = next((t for t in batch.tickets if t.live), None)
            if successor is None:
                flight = batch.flight
                if flight is not None and not flight.done.is_set():
                    # Nobody waits for this call any more, but it is still on the wire: the
                    # next driver waits for it first, so nothing later can overtake it.
                    if not lane.pending:
                        return  # its landing advances the lane again
                else:
                    lane.batch = None
        if successor is None and lane.pending:
            successor = lane.pending[0]
        if successor is None:
            if lane.key is not None and self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
            return
        lane.driver = successor
        if successor.wake is not None:
            successor.wake.set()

    async def _drive(self, lane: _Lane, me: _Ticket) -> None:
        """Run the lane's head calls until ``me`` has an outcome."""
        while not me.finished:
            batch = lane.batch
            if batch is None:
                batch = lane.batch = self._take_batch(lane)
            flight = batch.flight
            if flight is not None:
                await flight.done.wait()
                self._settle(lane, batch, flight)
                continue
            live = [t for t in batch.tickets if t.live]
            if not live:
                lane.batch = None
                continue
            await self._launch(lane, batch, live)

    @staticmethod
    def _take_batch(lane: _Lane) -> _Batch:
        """The head of the queue and the queued changes that may merge with it."""
        head = lane.pending.popleft()
        tickets = [head]
        merge_key = head.job.merge_key
        if merge_key is not None and not head.solo:
            changes = [head.job.attributes or {}]
            while lane.pending:
                candidate = lane.pending[0]
                change = candidate.job.attributes or {}
                if (
                    candidate.job.merge_key != merge_key
                    or candidate.solo
                    or not may_merge(changes, change)
                ):
                    break
                tickets.append(lane.pending.popleft())
                changes.append(change)
        return _Batch(tickets)

    # ----------------------------------------------------------------------------------------
    # Attempts

    async def _admit(
        self,
        lane: _Lane,
        batch: _Batch,
        live: list[_Ticket],
        limiter: RateLimiter,
        priority: Priority,
        share: ShareLimit | None,
    ) -> QuotaClaim | None:
        """Take quota for the next attempt: its claim, granted; None if the quota cannot fit
        it in its deadline.

        While it waits, the claim is the batch's, for an interactive caller that queues behind
        it in the lane to promote (:meth:`_enqueue`).
        """
        deadline = _latest_deadline(live)
        asked = loop_time()
        claim = batch.claim = QuotaClaim()
        try:
            await limiter.acquire(priority, deadline=deadline, share=share, claim=claim)
        except QuotaDeadlineError as exc:  # this attempt was never sent
            self._count_error(exc)
            # After an earlier attempt, the caller gets that attempt's error: it may have been
            # applied (a 5xx), and "it was not sent" would be untrue of the call.
            error = batch.last_error if batch.attempts and batch.last_error else exc
            for ticket in live:
                ticket.finish(result=None, error=error, attempts=batch.attempts)
            lane.batch = None
            return None
        finally:
            batch.claim = None
        waited = loop_time() - asked
        if waited > 0:
            for ticket in live:
                ticket.quota_wait += waited
        return claim

    async def _launch(self, lane: _Lane, batch: _Batch, live: list[_Ticket]) -> None:
        """Wait out any backoff, take quota and a slot, and put one attempt on the wire."""
        if batch.retry_at is not None:
            await anyio.sleep_until(batch.retry_at)
        first = live[0].job
        priority = min(t.job.priority for t in live)
        if priority is not Priority.INTERACTIVE and any(
            t.live and t.job.priority is Priority.INTERACTIVE for t in lane.pending
        ):
            # An interactive call queued behind it in the lane waits for it: it asks as one
            # (priority inheritance; promoted later if such a call comes while it waits).
            priority = Priority.INTERACTIVE
        limiter = self._limiters.get(OPERATIONS[first.operation].category)
        share = None if priority is Priority.INTERACTIVE else first.share
        if limiter is not None:
            claim = await self._admit(lane, batch, live, limiter, priority, share)
            if claim is None:
                return
            share = claim.share  # what the token was charged to: None if it was promoted
        admitted = loop_time()  # the round trip the limiter learns starts here
        try:
            await self._slots.acquire()
        except BaseException:
            if limiter is not None:
                limiter.refund(share)  # never sent: the token goes back
            raise
        # The slot may have been handed over in the same turn as a close or a cancellation,
        # which anyio has not delivered yet: check before anything goes on the wire.
        if self.closed or anyio.current_effective_deadline() == -math.inf:
            self._slots.release()
            if limiter is not None:
                limiter.refund(share)
            await anyio.lowlevel.checkpoint()  # delivers the cancellation
            raise ClientClosedError(sent=any(t.sent for t in live))
        # No await from here on: the slot passes to the flight, which releases it.
        if batch.frozen is not None:
            params, secrets, carried = batch.frozen
        else:
            params, secrets = _request(live)
            carried = live
        batch.attempts += 1
        batch.retry_at = None
        self.requests_sent += 1
        if batch.attempts > 1:
            self.retries += 1
        for ticket in carried:
            ticket.sent = True
        flight = batch.flight = _Flight(
            carried, attempt=batch.attempts, started=time.perf_counter()
        )
        flight.request = (params, secrets)
        flight.admitted = admitted
        task = flight.task = asyncio.get_running_loop().create_task(
            self._transport.call(first.operation, params, secrets=secrets)
        )
        self._flights.add(task)
        task.add_done_callback(lambda done: self._landed(lane, flight, limiter, done))

    def _landed(
        self,
        lane: _Lane,
        flight: _Flight,
        limiter: RateLimiter | None,
        task: asyncio.Task[dict[str, Any]],
    ) -> None:
        """A flight ended (answered, failed or cancelled): record it and wake its lane."""
        self._flights.discard(task)
        self._slots.release()
        if task.cancelled() and self.closed:
            flight.error = ClientClosedError(
                "the CognitoClient was closed while the call was on the wire; it may have been "
                "applied",
                sent=True,
            )
        elif task.cancelled():  # a read whose caller left, or a transport that was cancelled
            flight.error = TransportError("the attempt was cancelled before an answer came")
        else:
            error = task.exception()
            if error is None:
                flight.result = task.result()
            else:
                flight.error = error
        error = flight.error
        throttled = False
        if error is None:
            if limiter is not None:
                limiter.record(throttled=False, latency=loop_time() - flight.admitted)
        elif not isinstance(error, ClientClosedError):
            kind = classify(error) if isinstance(error, AiocognitoError) else RetryClass.PERMANENT
            if kind is RetryClass.THROTTLE and isinstance(error, CognitoError):
                self.throttled += 1
                throttled = True
                for ticket in flight.tickets:
                    ticket.throttles += 1
            if limiter is not None and isinstance(error, CognitoError) and error.status is not None:
                limiter.record(
                    throttled=kind is RetryClass.THROTTLE,
                    latency=loop_time() - flight.admitted,
                )
            if not flight.abandoned:  # its caller left: nobody got this error
                self._count_error(error)
        if self.on_attempt is not None:
            self.on_attempt(flight.operation, throttled)
        if _log.debug_enabled():
            _log_attempt(flight)
        flight.done.set()
        self._advance(lane)  # nobody may be driving: the lane must not stall
        self._note_idle()

    def _settle(self, lane: _Lane, batch: _Batch, flight: _Flight) -> None:
        """Hand a landed flight's outcome to its callers, or plan the retry or the split."""
        if batch.flight is not flight:
            return  # already settled
        batch.flight = None
        carried = flight.tickets
        live = [t for t in carried if t.live]
        error = flight.error
        if error is None:
            self.calls_saved += len(carried) - 1
            for ticket in carried:
                if not ticket.finished:
                    ticket.batch = carried
                    ticket.finish(result=flight.result, error=None, attempts=batch.attempts)
            lane.batch = None
            return
        if not live:
            lane.batch = None  # nobody wants this change any more: it is not retried
            return
        kind = classify(error) if isinstance(error, AiocognitoError) else RetryClass.PERMANENT
        if kind is RetryClass.TRANSIENT and batch.frozen is None and flight.request is not None:
            batch.frozen = (*flight.request, carried)  # it may have been applied: resend it as is
        if (
            len(carried) > 1
            and kind is RetryClass.PERMANENT
            and belongs_to_change(error)
            # After an attempt that may have applied the call (a 5xx, a lost answer), Cognito
            # refusing the very same request says the change is bad, so nothing was applied and
            # splitting is safe, unless the refusal itself may come after applying: a code that
            # could not be delivered. Then one by one could land an earlier change after a later
            # one, and the refusal goes to everyone.
            and (batch.frozen is None or error_code(error) != "CodeDeliveryFailureException")
        ):
            # Cognito applied none of it; send each change again on its own, in order, before
            # anything queued behind them.
            self.splits += 1
            for ticket in reversed(live):
                ticket.solo = True
                lane.pending.appendleft(ticket)
            lane.batch = None
            return
        policy = live[0].job.retry
        deadline = _latest_deadline(live)
        delay = (
            None
            if isinstance(error, ClientClosedError | DeadlineExceededError)
            else retry_delay(
                kind,
                batch.attempts,
                policy,
                remaining=None if deadline is None else deadline - loop_time(),
            )
        )
        if delay is None:
            if kind is RetryClass.THROTTLE:
                _log.retries_exhausted(
                    flight.operation,
                    batch.attempts,
                    request_id=getattr(error, "request_id", None),
                    merged=len(carried),
                    secrets=flight.request[1] if flight.request else _request(carried)[1],
                )
            self.calls_saved += len(carried) - 1
            for ticket in live:
                ticket.batch = carried
                ticket.finish(result=None, error=error, attempts=batch.attempts)
            lane.batch = None
            return
        batch.retry_at = loop_time() + delay
        batch.last_error = error

    def _count_error(self, error: BaseException) -> None:
        key = error_code(error)
        self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1


def _latest_deadline(tickets: list[_Ticket]) -> float | None:
    """The deadline a call carrying ``tickets``' changes works to: its last caller's."""
    deadlines = [t.job.deadline for t in tickets]
    return None if None in deadlines else max(d for d in deadlines if d is not None)


def _request(tickets: list[_Ticket]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The parameters and secrets of the call carrying ``tickets``' changes (later values win)."""
    jobs = [t.job for t in tickets]
    first = jobs[0]
    if len(jobs) == 1:
        return first.params, first.secrets
    merged: dict[str, str] = {}
    for job in jobs:
        merged.update(job.attributes or {})
    params = {
        **first.params,
        "UserAttributes": [{"Name": k, "Value": v} for k, v in merged.items()],
    }
    return params, tuple(dict.fromkeys(s for job in jobs for s in job.secrets))


def _log_attempt(flight: _Flight) -> None:
    """One DEBUG record for a landed attempt: no token, value or metadata, only what happened."""
    error = flight.error
    status: int | None
    if error is None:
        metadata = (flight.result or {}).get("ResponseMetadata") or {}
        status, code = metadata.get("HTTPStatusCode", 200), None
        request_id = metadata.get("RequestId")
    else:
        status = getattr(error, "status", None)
        code = error_code(error)
        request_id = getattr(error, "request_id", None)
    _log.attempt(
        flight.operation,
        flight.attempt,
        status=status,
        code=code,
        latency=time.perf_counter() - flight.started,
        request_id=request_id,
        merged=len(flight.tickets),
        secrets=flight.request[1] if flight.request else _request(flight.tickets)[1],
    )
