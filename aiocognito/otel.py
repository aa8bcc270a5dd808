"""OpenTelemetry spans and metrics for aiocognito (the optional extra ``aiocognito[otel]``).

Only ``opentelemetry-api`` is used: the application brings the SDK, its exporters and its
providers. Turn it on per client, with the global providers::

    cognito = aiocognito.CognitoClient(region_name="eu-west-1", instrument=True)

or with providers of your own (before or after the client is opened)::

    aiocognito.otel.instrument(cognito, tracer_provider=tp, meter_provider=mp)

Without either, nothing of this module is imported and the engine does no extra work.

**Spans.** One ``CLIENT`` span per public call that passed validation, named
``CognitoIdentityProvider/<Operation>`` after the RPC conventions, with ``rpc.system`` =
``aws-api``, ``rpc.service`` = ``CognitoIdentityProvider``, ``rpc.method``, ``aws.request_id``
and ``cloud.region``; and aiocognito's own ``aiocognito.attempts``,
``aiocognito.throttled_attempts``, ``aiocognito.merged`` (callers whose changes rode in the
call), ``aiocognito.quota_wait_ms`` and ``aiocognito.admission`` (``admitted``, ``failed_fast``:
the quota could not fit the call in its deadline and nothing was sent, or ``timed_out``). A
failed call sets the span's status to ERROR and ``error.type`` to the error code; the exception
itself is not recorded, since its chained causes belong to botocore. One ``INTERNAL`` span per
bulk run, ``aiocognito.bulk_update``, carries the row counts.

**Metrics** (meter ``aiocognito``):

* ``aiocognito.requests`` (observable counter): attempts sent, by ``aiocognito.category`` and
  ``rpc.method``;
* ``aiocognito.throttles`` (observable counter): attempts answered with a throttle, likewise;
* ``aiocognito.call.duration`` (histogram, seconds): public calls, by ``rpc.method`` and
  ``error.type``;
* ``aiocognito.rate.allowed`` (gauge, requests/s): the allowed rate per category;
* ``aiocognito.queue.length`` (gauge): callers waiting for quota, per category;
* ``aiocognito.in_flight`` (gauge): requests on the wire;
* ``aiocognito.lanes.active`` (gauge): users with changes queued or in flight.

Several clients on one meter provider share the instruments; the gauges add their figures up
(the allowed rate is reported once per category, since clients on one account share it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._client import ClientState
from ._errors import DeadlineExceededError, QuotaDeadlineError, error_code
from ._operations import OPERATIONS
from ._requests import request_id
from ._version import __version__

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context

    from ._bulk import BulkStatistics
    from ._client import CognitoClient
    from ._dispatch import Job
    from ._limits import RateLimiter

__all__ = ["instrument"]

RPC_SERVICE = "CognitoIdentityProvider"
_SCOPE = "aiocognito"


def instrument(
    client: CognitoClient,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Give ``client`` spans and metrics; idempotent per client (the last providers win).

    Args:
        client: The client to instrument, open or not.
        tracer_provider: Where spans go; the global provider by default.
        meter_provider: Where metrics go; the global provider by default.
    """
    client._set_instruments(Instruments(tracer_provider, meter_provider))


class _Meters:
    """The instruments of one meter provider, shared by every client instrumented on it."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(_SCOPE, __version__)
        self.clients: weakref.WeakSet[CognitoClient] = weakref.WeakSet()
        # Attempts are counted in plain dicts and read by the SDK when it collects: an SDK
        # counter's add() per attempt cost more than the rest of the instrumentation together.
        self.sent: dict[str, int] = {}
        self.throttled: dict[str, int] = {}
        meter.create_observable_counter(
            "aiocognito.requests",
            callbacks=[self._sent],
            unit="{request}",
            description="Attempts sent to Cognito.",
        )
        meter.create_observable_counter(
            "aiocognito.throttles",
            callbacks=[self._throttled],
            unit="{request}",
            description="Attempts Cognito answered with TooManyRequestsException.",
        )
        self.duration = meter.create_histogram(
            "aiocognito.call.duration",
            unit="s",
            description="Public calls, from acceptance to result, retries and waits included.",
        )
        meter.create_observable_gauge(
            "aiocognito.rate.allowed",
            callbacks=[self._rates],
            unit="{request}/s",
            description="The rate each quota category allows now.",
        )
        meter.create_observable_gauge(
            "aiocognito.queue.length",
            callbacks=[self._queues],
            unit="{call}",
            description="Callers waiting for quota, per category.",
        )
        meter.create_observable_gauge(
            "aiocognito.in_flight",
            callbacks=[self._in_flight],
            unit="{request}",
            description="Requests on the wire.",
        )
        meter.create_observable_gauge(
            "aiocognito.lanes.active",
            callbacks=[self._lanes],
            unit="{user}",
            description="Users with changes queued or in flight.",
        )

    @staticmethod
    def _by_operation(counts: dict[str, int]) -> Iterable[Observation]:
        for operation, count in list(counts.items()):
            attributes = {"aiocognito.category": OPERATIONS[operation].category}
            yield Observation(count, {**attributes, "rpc.method": operation})

    def _sent(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_operation(self.sent)

    def _throttled(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_operation(self.throttled)

    def _categories(self) -> dict[int, RateLimiter]:
        # Clients on one account share a limiter per category: report each limiter once.
        seen: dict[int, RateLimiter] = {}
        for client in list(self.clients):
            if client.state is not ClientState.OPEN:
                continue  # a closed client's share of the quota is nobody's business now
            for limiter in client._limiters.values():
                seen[id(limiter)] = limiter
        return seen

    def _rates(self, options: CallbackOptions) -> Iterable[Observation]:
        for limiter in self._categories().values():
            rate = limiter.rate()
            if rate is not None:
                yield Observation(rate, {"aiocognito.category": limiter.category})

    def _queues(self, options: CallbackOptions) -> Iterable[Observation]:
        for limiter in self._categories().values():
            queued = limiter.statistics().queued
            yield Observation(queued, {"aiocognito.category": limiter.category})

    def _in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(c._engine_figure("in_flight") for c in list(self.clients)))

    def _lanes(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(c._engine_figure("active_lanes") for c in list(self.clients)))


_METERS: weakref.WeakKeyDictionary[MeterProvider, _Meters] = weakref.WeakKeyDictionary()


def _meters_for(provider: MeterProvider) -> _Meters:
    found = _METERS.get(provider)
    if found is None:
        found = _METERS[provider] = _Meters(provider)
    return found


class Instruments:
    """One client's tracer and its meter provider's instruments; the client calls these hooks.

    The span name, the span's starting attributes and the latency histogram's attributes of a
    successful call depend on the operation alone, so they are built once per operation and
    handed to the SDK as they are (it copies what it keeps, and none of them is ever changed).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self._meters = _meters_for(meter_provider or metrics.get_meter_provider())
        self._duration = self._meters.duration
        self._region: str | None = None
        self._starts: dict[str, tuple[str, dict[str, str]]] = {}
        self._ok_durations: dict[str, dict[str, str]] = {}
        self._prepare()

    def _prepare(self) -> None:
        """Build each operation's span name and constant attributes, for the client's region."""
        for operation in OPERATIONS:
            attributes = {
                "rpc.system": "aws-api",
                "rpc.service": RPC_SERVICE,
                "rpc.method": operation,
            }
            if self._region:
                attributes["cloud.region"] = self._region
            self._starts[operation] = (f"{RPC_SERVICE}/{operation}", attributes)
            self._ok_durations[operation] = {"rpc.method": operation}

    def attach(self, client: CognitoClient, region: str | None) -> None:
        """Count ``client`` in the gauges (weakly: a forgotten client drops out)."""
        self._meters.clients.add(client)
        if region != self._region:
            self._region = region
            self._prepare()

    def on_attempt(self, operation: str, throttled: bool) -> None:
        """An attempt landed: count it, and the throttle if it was one."""
        sent = self._meters.sent
        sent[operation] = sent.get(operation, 0) + 1
        if throttled:
            counts = self._meters.throttled
            counts[operation] = counts.get(operation, 0) + 1

    def call_started(self, operation: str) -> tuple[Span, Token[Context], float]:
        """Open the span of one public call and make it current, so child spans nest.

        Returns the span, the token that :meth:`call_ended` detaches, and the start time, for
        the caller to keep in its own frame. No holder object is made: every object that lives
        through a call is one more for the garbage collector to count, promote and walk.
        """
        name, attributes = self._starts[operation]
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return span, context.attach(trace.set_span_in_context(span)), perf_counter()

    def call_ended(
        self,
        span: Span,
        token: Token[Context],
        began: float,
        job: Job,
        result: dict[str, Any] | None,
        error: BaseException | None,
    ) -> None:
        """Make the caller's span current again, close the call's span, record its duration.

        A span the application's sampler dropped records nothing, so its attributes are not
        even built; its duration is recorded all the same.
        """
        context.detach(token)
        elapsed = perf_counter() - began
        code = None if error is None else error_code(error)
        if span.is_recording():
            attributes: dict[str, Any] = {
                "aiocognito.attempts": job.attempts,
                "aiocognito.throttled_attempts": job.throttles,
                "aiocognito.merged": job.merged_with,
                "aiocognito.quota_wait_ms": round(job.quota_wait * 1000, 3),
                "aiocognito.admission": "admitted",
            }
            if error is None:
                rid = request_id(result) if result is not None else None
            else:
                if isinstance(error, QuotaDeadlineError):
                    attributes["aiocognito.admission"] = "failed_fast"
                elif isinstance(error, DeadlineExceededError):
                    attributes["aiocognito.admission"] = "timed_out"
                rid = getattr(error, "request_id", None)
            if rid:
                attributes["aws.request_id"] = rid
            if code is not None:
                attributes["error.type"] = code
                # The code only: a description is exported verbatim, and messages are the
                # service's.
                span.set_status(Status(StatusCode.ERROR, code))
            span.set_attributes(attributes)
        span.end()
        if code is None:
            self._duration.record(elapsed, self._ok_durations[job.operation])
        else:
            self._duration.record(elapsed, {"rpc.method": job.operation, "error.type": code})

    def bulk_started(self) -> Span:
        """Open the span of one bulk run."""
        return self._tracer.start_span("aiocognito.bulk_update", kind=SpanKind.INTERNAL)

    def bulk_ended(self, span: Span, stats: BulkStatistics, error: BaseException | None) -> None:
        """Close the span of one bulk run with its row counts."""
        span.set_attributes(
            {
                "aiocognito.rows.read": stats.rows_read,
                "aiocognito.rows.done": stats.rows_done,
                "aiocognito.rows.ok": stats.ok,
                "aiocognito.rows.failed": stats.failed,
                "aiocognito.rows.skipped": stats.skipped,
                "aiocognito.rows.merged": stats.merged,
            }
        )
        if error is not None:
            code = error_code(error)
            span.set_attribute("error.type", code)
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()
