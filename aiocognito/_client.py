"""CognitoClient: the lifecycle and the public awaitable methods."""

from __future__ import annotations

import enum
import os
import tempfile
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from attrs import frozen

from . import _log
from ._bulk import BulkUpdate
from ._config import Limits, RetryPolicy, is_file_url
from ._dispatch import Dispatcher
from ._errors import AttributeValidationError, ClientClosedError, ConfigurationError
from ._limits import CategoryStatistics, Priority, RateLimiter, shared_limiter
from ._models import AttributeUpdate, BadRow, CodeDelivery, UpdateResult, User
from ._operations import OPERATIONS
from ._protocol import Transport
from ._requests import request_id, update_request
from ._transport import AiobotocoreTransport
from ._validate import (
    check_access_token,
    check_attribute_name,
    check_attribute_names,
    check_client_metadata,
    check_code,
    check_user_pool_id,
    check_username,
    normalize_attributes,
)
from ._version import __version__

if TYPE_CHECKING:
    from .otel import Instruments

__all__ = ["ClientState", "ClientStatistics", "CognitoClient"]


class ClientState(enum.Enum):
    """Where a :class:`CognitoClient` is in its life: it is opened once and closed once."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


@frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of a client's activity.

    Attributes:
        state: The lifecycle state.
        max_concurrency: The configured bound on requests in flight.
        in_flight: Requests on the wire now.
        waiting: Requests waiting for a concurrency slot.
        calls_started: Public calls accepted (after validation).
        calls_succeeded: Calls that returned normally.
        calls_failed: Calls that raised.
        requests_sent: Attempts sent to Cognito, retries included.
        retries: Attempts beyond each call's first.
        throttled: Attempts answered with TooManyRequestsException.
        calls_saved: Calls spared by merging queued updates to the same user.
        splits: Merged calls Cognito refused for one change, sent again one change at a time.
        active_lanes: Users with updates in flight or queued.
        errors_by_code: Failed attempts per error code (or exception name for transport errors).
        categories: Per quota category: the allowed rate, requests sent, throttled, queued.
    """

    state: ClientState
    max_concurrency: int
    in_flight: int
    waiting: int
    calls_started: int
    calls_succeeded: int
    calls_failed: int
    requests_sent: int
    retries: int
    throttled: int
    calls_saved: int
    splits: int
    active_lanes: int
    errors_by_code: Mapping[str, int]
    categories: Mapping[str, CategoryStatistics]


class CognitoClient:
    """An asynchronous client for Cognito's user-attribute operations.

    Open it once and share it: ``async with CognitoClient(...) as cognito``. Every call goes
    through one bounded pool of connections, one retry policy, and (for the admin operations)
    one set of AWS credentials. The token operations are unsigned and need no AWS credentials.

    Args:
        region_name: The AWS region of the user pool(s); ``None`` uses botocore's usual
            resolution (``AWS_DEFAULT_REGION``, the profile).
        user_pool_id: The default pool for the admin operations; each call may override it.
        endpoint_url: Another endpoint: moto, :mod:`aiocognito.testing`'s fake, a VPC endpoint.
        limits: Concurrency and quota settings.
        retry: Which failures are retried, how often, and the per-call deadline.
        aws_access_key_id: Credentials for the admin operations; botocore's chain otherwise.
        aws_secret_access_key: See ``aws_access_key_id``.
        aws_session_token: See ``aws_access_key_id``.
        profile_name: A named profile from the AWS config files.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for an answer on an open connection.
        instrument: Emit OpenTelemetry spans and metrics through the global providers (needs
            the ``aiocognito[otel]`` extra); see :mod:`aiocognito.otel`, whose
            :func:`~aiocognito.otel.instrument` also takes providers of your own.

    Raises:
        ConfigurationError: ``instrument=True`` without opentelemetry-api installed, or a
            shared quota (``Limits.shared_quota_url`` or ``AIOCOGNITO_SHARED_QUOTA_URL``)
            without redis-py installed.
        ValueError: ``AIOCOGNITO_SHARED_QUOTA_URL`` is not a Redis URL, or
            ``AIOCOGNITO_SHARE_ON_HOST`` is neither on nor off.
    """

    def __init__(
        self,
        *,
        region_name: str | None = None,
        user_pool_id: str | None = None,
        endpoint_url: str | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        instrument: bool = False,
    ) -> None:
        if user_pool_id is not None:
            check_user_pool_id(user_pool_id)
        self._region_name = region_name
        self._user_pool_id = user_pool_id
        self._endpoint_url = endpoint_url
        self.limits = limits if limits is not None else Limits()
        self.retry = retry if retry is not None else RetryPolicy()
        self._shared_quota_url, self._when_shared = _shared_quota(self.limits)
        self._transport: Transport = AiobotocoreTransport(
            region_name=region_name,
            endpoint_url=endpoint_url,
            max_connections=self.limits.max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            profile_name=profile_name,
            user_agent_extra=f"aiocognito/{__version__}",
        )
        self._state = ClientState.UNOPENED
        self._closed: anyio.Event | None = None  # set once aclose() has finished
        self._dispatcher: Dispatcher | None = None
        self._limiters: dict[str, RateLimiter] = {}
        self._calls_started = 0
        self._calls_succeeded = 0
        self._calls_failed = 0
        self._instruments: Instruments | None = None
        if instrument:
            try:
                # An optional extra: imported only when asked for, so it costs nothing otherwise.
                from .otel import instrument as otel_instrument  # noqa: PLC0415
            except ImportError as exc:
                raise ConfigurationError(
                    "instrument=True needs OpenTelemetry: pip install 'aiocognito[otel]'"
                ) from exc
            otel_instrument(self)

    def _set_instruments(self, instruments: Instruments) -> None:
        self._instruments = instruments
        instruments.attach(self, self._region_name)
        if self._dispatcher is not None:
            self._dispatcher.on_attempt = instruments.on_attempt

    def _engine_figure(self, name: str) -> int:
        """One of the engine's live figures (``in_flight``, ``active_lanes``); 0 when closed."""
        if self._dispatcher is None or self._state is not ClientState.OPEN:
            return 0
        return int(getattr(self._dispatcher.statistics(), name))

    # ----------------------------------------------------------------------------------------
    # Lifecycle

    @property
    def state(self) -> ClientState:
        """The lifecycle state: unopened, open or closed."""
        return self._state

    async def __aenter__(self) -> Self:
        if self._state is ClientState.OPEN:
            raise RuntimeError("CognitoClient is already open")
        if self._state is ClientState.CLOSED:
            raise RuntimeError("CognitoClient was closed and cannot be reopened; create a new one")
        limits = self.limits
        await self._transport.open()
        attached: list[RateLimiter] = []
        try:
            group = await self._quota_group()
            for category, ceiling in (
                ("UserUpdate", limits.user_update_rps),
                ("UserRead", limits.user_read_rps),
            ):
                # From here this client's quota counts on the shared limiter (released below
                # or at close).
                self._limiters[category] = shared_limiter(
                    group,
                    category,
                    ceiling,
                    adaptive=limits.adaptive,
                    shared_quota_url=self._shared_quota_url,
                    when_shared=self._when_shared,
                )
            for limiter in self._limiters.values():
                limiter.on_rate_change = _log.rate_changed  # shared limiters: the same hook
                attached.append(limiter)  # counted from the call on, even if it is cancelled
                await limiter.attach()
        except BaseException:
            with anyio.CancelScope(shield=True):
                for limiter in attached:
                    await limiter.detach()
                self._release_ceilings()
                self._limiters = {}
                await self._transport.aclose()
            raise
        self._dispatcher = Dispatcher(
            self._transport, limits=limits, retry=self.retry, limiters=self._limiters
        )
        if self._instruments is not None:
            self._dispatcher.on_attempt = self._instruments.on_attempt
        self._state = ClientState.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections. Idempotent; the client cannot be reopened.

        May be called from any task. Every call still queued or on the wire fails at once with
        :class:`ClientClosedError`; queued calls were never sent and took no quota. A bulk run
        on the client ends with that one error.
        """
        if self._state is ClientState.CLOSED:
            if self._closed is not None:
                await self._closed.wait()  # another task is closing: return when it is done
            return
        self._state = ClientState.CLOSED
        self._closed = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                if self._dispatcher is not None:
                    await self._dispatcher.aclose()
                await self._transport.aclose()
                for limiter in self._limiters.values():
                    await limiter.detach()
        finally:
            self._release_ceilings()
            self._closed.set()

    def _release_ceilings(self) -> None:
        """The shared limiters stop honouring this client's quota (a lower one is raised back)."""
        for category, ceiling in (
            ("UserUpdate", self.limits.user_update_rps),
            ("UserRead", self.limits.user_read_rps),
        ):
            if category in self._limiters:
                self._limiters[category].release_ceiling(ceiling)

    async def _quota_group(self) -> str:
        """Which clients share quota: named, the account's (via STS), or region and endpoint."""
        group = self.limits.quota_group
        region = self._region_name or ""
        if group == "account":
            account_id = getattr(self._transport, "account_id", None)
            if account_id is None:
                raise ConfigurationError("quota_group='account' needs the AWS transport")
            return f"account={await account_id()}|{region}"
        return group or f"{region}|{self._endpoint_url or 'aws'}"

    def statistics(self) -> ClientStatistics:
        """Return a snapshot of the client's state and counters."""
        engine = self._dispatcher.statistics() if self._dispatcher is not None else None
        return ClientStatistics(
            state=self._state,
            max_concurrency=self.limits.max_concurrency,
            in_flight=engine.in_flight if engine else 0,
            waiting=engine.waiting if engine else 0,
            calls_started=self._calls_started,
            calls_succeeded=self._calls_succeeded,
            calls_failed=self._calls_failed,
            requests_sent=engine.requests_sent if engine else 0,
            retries=engine.retries if engine else 0,
            throttled=engine.throttled if engine else 0,
            calls_saved=engine.calls_saved if engine else 0,
            splits=engine.splits if engine else 0,
            active_lanes=engine.active_lanes if engine else 0,
            errors_by_code=dict(engine.errors_by_code) if engine else {},
            categories={c: lim.statistics() for c, lim in self._limiters.items()},
        )

    def __repr__(self) -> str:
        pool = f" user_pool_id={self._user_pool_id!r}" if self._user_pool_id else ""
        endpoint = f" endpoint_url={self._endpoint_url!r}" if self._endpoint_url else ""
        in_flight = self._dispatcher.in_flight if self._dispatcher else 0
        return (
            f"<CognitoClient region_name={self._region_name!r}{pool}{endpoint} "
            f"state={self._state.value} in_flight={in_flight} "
            f"calls={self._calls_started} failed={self._calls_failed}>"
        )

    # ----------------------------------------------------------------------------------------
    # The public operations

    async def update_user_attributes(
        self,
        access_token: str,
        attributes: Mapping[str, str | None] | Sequence[Mapping[str, str]],
        *,
        client_metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> UpdateResult:
        """Update the signed-in user's own attributes (UpdateUserAttributes).

        Only the listed attributes change. A value of ``None`` or ``""`` deletes the attribute.
        Custom attributes need their ``custom:`` prefix. When the email or phone number
        changes and the pool verifies it, Cognito sends a code and the result lists where.

        Args:
            access_token: The user's access token (scope ``aws.cognito.signin.user.admin``).
            attributes: ``{name: value}``, or boto's ``[{"Name": ..., "Value": ...}]``.
            client_metadata: Passed to the pool's Lambda triggers; never stored.
            timeout: Seconds for the whole call, retries included; overrides the policy.
            retry: A retry policy for this call alone (attempts, backoff, deadline). Every
                public method takes ``timeout=`` and ``retry=``.

        Returns:
            The code deliveries Cognito reported, if any.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        token = check_access_token(access_token)
        values = normalize_attributes(attributes)
        metadata = check_client_metadata(client_metadata)
        operation, params, secrets = update_request(
            access_token=token, username=None, user_pool_id=None, values=values, metadata=metadata
        )
        response = await self._call(
            operation, params, secrets, timeout, attributes=values, retry=retry
        )
        return UpdateResult(
            code_deliveries=tuple(
                CodeDelivery.from_wire(d) for d in response.get("CodeDeliveryDetailsList") or ()
            ),
            request_id=request_id(response),
        )

    async def admin_update_user_attributes(
        self,
        username: str,
        attributes: Mapping[str, str | None] | Sequence[Mapping[str, str]],
        *,
        user_pool_id: str | None = None,
        client_metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> UpdateResult:
        """Update any user's attributes as an administrator (AdminUpdateUserAttributes).

        SigV4-signed: needs AWS credentials allowed ``cognito-idp:AdminUpdateUserAttributes``.
        Setting ``email_verified``/``phone_number_verified`` to ``"true"`` in the same call
        applies a new email or phone number without sending a code.

        Args:
            username: The username, an alias (email, phone) or the user's ``sub``.
            attributes: ``{name: value}`` or boto's list; ``None``/``""`` deletes.
            user_pool_id: The pool; defaults to the client's ``user_pool_id``.
            client_metadata: Passed to the pool's Lambda triggers; never stored.
            timeout: Seconds for the whole call, retries included; overrides the policy.

        Returns:
            An :class:`UpdateResult`; Cognito reports no code deliveries for admin updates.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CredentialsError: No AWS credentials were found.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        name = check_username(username)
        pool = self._pool(user_pool_id)
        values = normalize_attributes(attributes)
        metadata = check_client_metadata(client_metadata)
        operation, params, secrets = update_request(
            access_token=None, username=name, user_pool_id=pool, values=values, metadata=metadata
        )
        response = await self._call(
            operation, params, secrets, timeout, attributes=values, retry=retry
        )
        return UpdateResult(request_id=request_id(response))

    async def delete_user_attributes(
        self,
        access_token: str,
        attribute_names: Sequence[str],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Delete the signed-in user's attributes by name (DeleteUserAttributes).

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        token = check_access_token(access_token)
        names = check_attribute_names(attribute_names)
        params, secrets = OPERATIONS["DeleteUserAttributes"].request(
            access_token=token, attribute_names=names
        )
        await self._call("DeleteUserAttributes", params, secrets, timeout, retry=retry)

    async def admin_delete_user_attributes(
        self,
        username: str,
        attribute_names: Sequence[str],
        *,
        user_pool_id: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Delete any user's attributes by name as an administrator (AdminDeleteUserAttributes).

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CredentialsError: No AWS credentials were found.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        name = check_username(username)
        pool = self._pool(user_pool_id)
        names = check_attribute_names(attribute_names)
        params, secrets = OPERATIONS["AdminDeleteUserAttributes"].request(
            user_pool_id=pool, username=name, attribute_names=names
        )
        await self._call("AdminDeleteUserAttributes", params, secrets, timeout, retry=retry)

    async def get_user(
        self, access_token: str, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> User:
        """Read the signed-in user's attributes (GetUser).

        Only attributes the token's app client may read are returned.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        token = check_access_token(access_token)
        params, secrets = OPERATIONS["GetUser"].request(access_token=token)
        response = await self._call("GetUser", params, secrets, timeout, retry=retry)
        return User.from_wire(response)

    async def admin_get_user(
        self,
        username: str,
        *,
        user_pool_id: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> User:
        """Read any user as an administrator (AdminGetUser), with status and dates.

        Note that AdminGetUser counts toward monthly active users.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CredentialsError: No AWS credentials were found.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        name = check_username(username)
        pool = self._pool(user_pool_id)
        params, secrets = OPERATIONS["AdminGetUser"].request(user_pool_id=pool, username=name)
        response = await self._call("AdminGetUser", params, secrets, timeout, retry=retry)
        return User.from_wire(response)

    async def get_user_attribute_verification_code(
        self,
        access_token: str,
        attribute_name: str,
        *,
        client_metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> CodeDelivery | None:
        """Ask Cognito to send a verification code for ``email`` or ``phone_number``.

        Retrying after a lost answer can send a second code; the latest code is the valid one.

        Returns:
            Where the code went, or ``None`` if Cognito did not say.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            LimitExceededError: Too many codes requested; wait minutes before asking again.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        token = check_access_token(access_token)
        name = check_attribute_name(attribute_name, argument="attribute_name")
        metadata = check_client_metadata(client_metadata)
        params, secrets = OPERATIONS["GetUserAttributeVerificationCode"].request(
            access_token=token,
            attribute_name=name,
            client_metadata=None if metadata is None else dict(metadata),
        )
        response = await self._call(
            "GetUserAttributeVerificationCode", params, secrets, timeout, retry=retry
        )
        details = response.get("CodeDeliveryDetails")
        return CodeDelivery.from_wire(details) if details else None

    async def verify_user_attribute(
        self,
        access_token: str,
        attribute_name: str,
        code: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Confirm ``email`` or ``phone_number`` with the code the user received.

        Raises:
            AttributeValidationError: Bad input; nothing was sent.
            CodeMismatchError: The code is wrong.
            ExpiredCodeError: The code has expired.
            LimitExceededError: Too many attempts; wait minutes.
            CognitoError: Cognito refused; a subclass names the reason.
            TransportError: No answer after the last attempt.
        """
        self._check_open()
        token = check_access_token(access_token)
        name = check_attribute_name(attribute_name, argument="attribute_name")
        checked_code = check_code(code)
        params, secrets = OPERATIONS["VerifyUserAttribute"].request(
            access_token=token, attribute_name=name, code=checked_code
        )
        await self._call("VerifyUserAttribute", params, secrets, timeout, retry=retry)

    # ----------------------------------------------------------------------------------------
    # Bulk

    def bulk_update(
        self,
        updates: Iterable[AttributeUpdate | BadRow] | AsyncIterable[AttributeUpdate | BadRow],
        *,
        journal: str | None = None,
        input_id: str | None = None,
        journal_key: bytes | str | None = None,
        max_share: float | None = None,
        read_ahead: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> BulkUpdate:
        """Stream many updates through the engine; use as an async context manager.

        ::

            async with cognito.bulk_update(rows, journal="migration.journal") as outcomes:
                async for outcome in outcomes:  # one UpdateOutcome per row, completion order
                    ...

        Rows are read lazily, at most ``read_ahead`` ahead of the work. Rows for one user apply
        in input order, merged where they queue. Per-call requests on the same client go first.

        Args:
            updates: A sync or async iterable of :class:`AttributeUpdate` (or :class:`BadRow`,
                as :func:`read_updates` yields for unreadable lines).
            journal: A SQLite file recording finished rows. Re-running with it skips the rows
                finished before, whether they succeeded or failed permanently.
            input_id: Identifies the input (e.g. a file digest) so a journal is never resumed
                against another input. The journal stores its SHA-256, not the id itself.
            journal_key: A secret (say ``secrets.token_bytes(32)``, kept outside the journal)
                that keys the journal's row fingerprints, so a resume against rows whose values
                changed is refused and the journal alone confirms no guessed value. Without
                it, fingerprints cover users and attribute names only. Resume with the same key.
            max_share: The largest share of the quota this job may use, e.g. ``0.8`` to leave
                room for web traffic on the same client.
            read_ahead: Rows read but not finished, at most; default twice ``max_concurrency``.
            timeout: Seconds per row from when it is read, retries and quota waits included.
                By default rows have no overall deadline (they wait behind the read-ahead for
                quota); ``RetryPolicy.max_attempts`` still bounds their attempts.
            retry: A retry policy for this job's rows; the client's otherwise.

        Raises:
            CognitoError: A fatal error (missing pool, denied credentials) ends the run: raised
                plainly from the ``async for``, after the outcomes already finished.
            JournalMismatchError: The journal belongs to a different input, or another key.
            JournalLockedError: Another run holds the journal (raised on entering).
            JournalWriteError: The journal cannot be opened or written. A failed write stops the
                run like :meth:`BulkUpdate.stop`, then is raised from the ``async for``.
        """
        self._check_open()
        assert self._dispatcher is not None
        if timeout is not None and not timeout > 0:  # also refuses NaN; checked before any row
            raise AttributeValidationError(
                f"timeout: expected a positive number of seconds, got {timeout!r}"
            )
        return BulkUpdate(
            self._dispatcher,
            updates,
            default_pool=self._user_pool_id,
            journal=journal,
            input_id=input_id,
            journal_key=journal_key,
            read_ahead=read_ahead or 2 * self.limits.max_concurrency,
            max_share=max_share,
            timeout=timeout,
            retry=retry,
            instruments=self._instruments,
        )

    # ----------------------------------------------------------------------------------------
    # Internals

    def _check_open(self) -> None:
        if self._state is ClientState.OPEN:
            return
        if self._state is ClientState.UNOPENED:
            raise RuntimeError(
                "CognitoClient is not open; use 'async with CognitoClient(...) as cognito:'"
            )
        raise ClientClosedError("the CognitoClient is closed")

    def _pool(self, user_pool_id: str | None) -> str:
        return check_user_pool_id(user_pool_id if user_pool_id is not None else self._user_pool_id)

    async def _call(
        self,
        operation: str,
        params: dict[str, Any],
        secrets: Sequence[str],
        timeout: float | None,
        *,
        attributes: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        self._calls_started += 1
        job = dispatcher.make_job(
            operation,
            params,
            secrets,
            attributes=attributes,
            timeout=timeout,
            retry=retry,
            priority=Priority.INTERACTIVE,
        )
        instruments = self._instruments
        if instruments is None:
            try:
                result = await dispatcher.run(job)
            except BaseException:
                self._calls_failed += 1
                raise
            self._calls_succeeded += 1
            return result
        # Instrumented: the call's span is current while it runs. Inline rather than in a
        # coroutine of its own, and with the span and token in this frame: every object that
        # lives through a call costs the garbage collector, which promotes and walks it.
        span, token, began = instruments.call_started(job.operation)
        try:
            result = await dispatcher.run(job)
        except BaseException as exc:
            self._calls_failed += 1
            instruments.call_ended(span, token, began, job, None, exc)
            raise
        self._calls_succeeded += 1
        instruments.call_ended(span, token, began, job, result, None)
        return result


def client_over(transport: Transport, **options: Any) -> CognitoClient:
    """A client whose calls go to ``transport`` instead of aiobotocore (tests, benchmarks).

    Not public API: the transport protocol may change with any release.
    """
    client = CognitoClient(**options)
    client._transport = transport
    return client


#: The environment variable that turns on the fleet mode when ``Limits.shared_quota_url`` is None.
SHARED_QUOTA_ENV = "AIOCOGNITO_SHARED_QUOTA_URL"
#: The environment variable that turns sharing on this host off when ``Limits.share_on_host``
#: is None: ``0``, ``false``, ``no`` or ``off``.
SHARE_ON_HOST_ENV = "AIOCOGNITO_SHARE_ON_HOST"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})


def host_quota_url() -> str | None:
    """The private directory this user's processes share quotas through by default, as a
    ``file://`` URL: ``aiocognito-<uid>`` in the temporary directory. None off POSIX, and
    where there is no temporary directory to share (a read-only file system, or only the
    working directory, which processes need not share): then each process paces alone."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return None
    try:
        directory = tempfile.gettempdir()
        if os.path.realpath(directory) == os.path.realpath(os.getcwd()):
            return None  # gettempdir()'s last resort: not a place processes agree on
    except OSError:
        return None  # no usable temporary directory at all
    return (Path(directory) / f"aiocognito-{os.geteuid()}").as_uri()


def _shared_quota(limits: Limits) -> tuple[str | None, bool]:
    """The fleet's quota URL, if any, and whether it is shared only while another process uses
    it (sharing on this host, the default); checks the redis extra is installed."""
    url = _shared_quota_url(limits)
    if url is not None:
        return url, False
    share = limits.share_on_host
    if share is None:
        setting = os.environ.get(SHARE_ON_HOST_ENV, "").strip().lower()
        if setting not in _OFF | _ON:
            raise ValueError(
                f"{SHARE_ON_HOST_ENV} must be 0, false, no or off (or 1, true, yes or on), "
                f"not {setting!r}"
            )
        share = setting not in _OFF
    host = host_quota_url() if share else None
    return host, host is not None


def _shared_quota_url(limits: Limits) -> str | None:
    """The Redis URL of the fleet's quota, if any; checks the redis extra is installed."""
    url = limits.shared_quota_url
    if url is None:
        url = os.environ.get(SHARED_QUOTA_ENV) or None
        if url is not None:
            try:
                Limits(shared_quota_url=url)  # the same validation as the argument
            except ValueError as exc:
                raise ValueError(f"{SHARED_QUOTA_ENV}: {exc}") from None
    if not url:
        return None
    if is_file_url(url):
        return url  # files on this host: nothing to install
    from ._fleet import require_redis  # noqa: PLC0415

    require_redis()
    return url
