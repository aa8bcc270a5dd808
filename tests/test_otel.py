"""OpenTelemetry: one span per public call and per bulk run, counters, histogram and gauges.

Read back through the SDK's in-memory span exporter and metric reader (the test extra). The
figures are checked against what the fake transport saw, not against the engine's own counters.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

import aiocognito
import aiocognito.otel
from aiocognito._client import client_over
from tests.fakes import FakeTransport
from tests.test_engine import FAST_RETRY, UNLIMITED, GatedTransport, jwt, wait_until
from tests.virtual_time import virtual_time

POOL = "eu-west-1_AbC"
ROOT = Path(__file__).resolve().parent.parent
TOKEN = jwt("u-1")


class Telemetry:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_out.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: str) -> float:
        return float(
            sum(
                p.value
                for p in self.points(name)
                if all(p.attributes.get(k) == v for k, v in attributes.items())
            )
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def reads(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    if operation in ("GetUser", "AdminGetUser"):
        return {"Username": "alice", "UserAttributes": [], "ResponseMetadata": {"RequestId": "r"}}
    return {"ResponseMetadata": {"RequestId": f"rid-{operation}"}}


def instrumented(
    transport: FakeTransport, telemetry: Telemetry, **kwargs: Any
) -> aiocognito.CognitoClient:
    kwargs.setdefault("limits", UNLIMITED)
    kwargs.setdefault("retry", FAST_RETRY)
    cognito = client_over(transport, region_name="eu-west-1", user_pool_id=POOL, **kwargs)
    aiocognito.otel.instrument(
        cognito,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    return cognito


async def every_operation(cognito: aiocognito.CognitoClient) -> None:
    await cognito.update_user_attributes(TOKEN, {"nickname": "n"})
    await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
    await cognito.delete_user_attributes(TOKEN, ["nickname"])
    await cognito.admin_delete_user_attributes("alice", ["nickname"])
    await cognito.get_user(TOKEN)
    await cognito.admin_get_user("alice")
    await cognito.get_user_attribute_verification_code(TOKEN, "email")
    await cognito.verify_user_attribute(TOKEN, "email", "123456")


OPERATIONS = [
    "UpdateUserAttributes",
    "AdminUpdateUserAttributes",
    "DeleteUserAttributes",
    "AdminDeleteUserAttributes",
    "GetUser",
    "AdminGetUser",
    "GetUserAttributeVerificationCode",
    "VerifyUserAttribute",
]


async def test_every_public_operation_makes_exactly_one_client_span(telemetry: Telemetry) -> None:
    transport = FakeTransport(reads)
    async with instrumented(transport, telemetry) as cognito:
        await every_operation(cognito)
    spans = telemetry.spans()
    assert [s.name for s in spans] == [f"CognitoIdentityProvider/{op}" for op in OPERATIONS]
    for span, operation in zip(spans, OPERATIONS, strict=True):
        attrs = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert attrs["rpc.system"] == "aws-api"
        assert attrs["rpc.service"] == "CognitoIdentityProvider"
        assert attrs["rpc.method"] == operation
        assert attrs["cloud.region"] == "eu-west-1"
        assert attrs["aiocognito.attempts"] == 1
        assert attrs["aiocognito.throttled_attempts"] == 0
        assert attrs["aiocognito.merged"] == 1
        assert attrs["aiocognito.admission"] == "admitted"
        read = operation in ("GetUser", "AdminGetUser")
        assert attrs["aws.request_id"] == ("r" if read else f"rid-{operation}")
        assert span.status.status_code is StatusCode.UNSET
    # One request each, counted per category, as the transport saw them.
    assert [c.operation for c in transport.sent] == OPERATIONS
    assert telemetry.total("aiocognito.requests") == len(transport.sent)
    assert telemetry.total("aiocognito.requests", **{"aiocognito.category": "UserRead"}) == 2
    durations = telemetry.points("aiocognito.call.duration")
    assert sum(p.count for p in durations) == len(OPERATIONS)


async def test_permanent_error_throttle_then_success_and_merge(telemetry: Telemetry) -> None:
    transport = GatedTransport()
    throttle = aiocognito.TooManyRequestsError("Rate exceeded", operation="X", status=400)
    refused = aiocognito.UserNotFoundError(
        "User does not exist.", operation="X", status=400, request_id="rid-404"
    )
    async with instrumented(transport, telemetry) as cognito:
        # The first call is held open so that three more queue behind it and merge.
        async with anyio.create_task_group() as tg:
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "a"})
            await transport.first_arrived.wait()
            for value in ("b", "c"):
                tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": value})
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            transport.push(throttle, throttle, {"ResponseMetadata": {"RequestId": "merged"}})
            transport.release.set()
        transport.push(refused)
        with pytest.raises(aiocognito.UserNotFoundError):
            await cognito.admin_update_user_attributes("ghost", {"nickname": "x"})
    spans = telemetry.spans()
    assert len(spans) == 4  # one per call, the merged ones included
    first, *merged, failed = spans
    assert dict(first.attributes or {})["aiocognito.merged"] == 1
    for span in merged:
        attrs = dict(span.attributes or {})
        assert attrs["aiocognito.merged"] == 2
        assert attrs["aiocognito.attempts"] == 3  # two throttles, then the answer
        assert attrs["aiocognito.throttled_attempts"] == 2
        assert attrs["aws.request_id"] == "merged"
    attrs = dict(failed.attributes or {})
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "UserNotFoundException"
    assert attrs["error.type"] == "UserNotFoundException"
    assert attrs["aws.request_id"] == "rid-404"
    assert attrs["aiocognito.admission"] == "admitted"
    assert failed.events == ()  # no exception text: its chained causes are botocore's
    # Counters match the wire: 1 + 3 attempts for alice, 1 for ghost; 2 throttles.
    assert len(transport.sent) == 5
    assert telemetry.total("aiocognito.requests") == 5
    assert telemetry.total("aiocognito.throttles") == 2
    assert (
        telemetry.total(
            "aiocognito.throttles",
            **{"aiocognito.category": "UserUpdate", "rpc.method": "AdminUpdateUserAttributes"},
        )
        == 2
    )
    by_error = {
        p.attributes.get("error.type"): p.count
        for p in telemetry.points("aiocognito.call.duration")
    }
    assert by_error == {None: 3, "UserNotFoundException": 1}


async def test_spans_started_on_the_wire_are_children_of_the_call_span(
    telemetry: Telemetry,
) -> None:
    # What an instrumented HTTP client under the transport would do: start a span per attempt.
    wire = telemetry.tracer_provider.get_tracer("wire")

    def handler(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        wire.start_span(f"attempt {operation}").end()
        return {}

    async with instrumented(FakeTransport(handler), telemetry) as cognito:
        with wire.start_as_current_span("request") as outer:
            await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
            # The call's span is current only while the call runs.
            assert trace.get_current_span() is outer
        await cognito.get_user(TOKEN)
        assert trace.get_current_span() is trace.INVALID_SPAN
    by_name = {s.name: s for s in telemetry.spans()}
    assert set(by_name) == {
        "attempt AdminUpdateUserAttributes",
        "CognitoIdentityProvider/AdminUpdateUserAttributes",
        "request",
        "attempt GetUser",
        "CognitoIdentityProvider/GetUser",
    }

    def parent(name: str) -> int | None:
        span_parent = by_name[name].parent
        return None if span_parent is None else span_parent.span_id

    def span_id(name: str) -> int:
        span_context = by_name[name].context
        assert span_context is not None
        return int(span_context.span_id)

    assert parent("attempt AdminUpdateUserAttributes") == span_id(
        "CognitoIdentityProvider/AdminUpdateUserAttributes"
    )
    assert parent("CognitoIdentityProvider/AdminUpdateUserAttributes") == span_id("request")
    assert parent("attempt GetUser") == span_id("CognitoIdentityProvider/GetUser")
    assert parent("CognitoIdentityProvider/GetUser") is None


async def test_a_sampled_out_call_still_parents_its_children_and_is_timed() -> None:
    # The application's sampler drops the call's span: nothing is exported, but the span's
    # context is still current while the call runs (so spans under it are dropped with it, as
    # a parent-based sampler expects), and the latency histogram still counts the call.
    telemetry = Telemetry()
    telemetry.tracer_provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(telemetry.spans_out))
    seen: list[trace.SpanContext] = []

    def handler(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        seen.append(trace.get_current_span().get_span_context())
        if params["Username"] == "bob":
            raise aiocognito.UserNotFoundError("User does not exist.", operation=operation)
        return reads(operation, params)

    async with instrumented(FakeTransport(handler), telemetry) as cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
        with pytest.raises(aiocognito.UserNotFoundError):
            await cognito.admin_update_user_attributes("bob", {"nickname": "n"})
        assert trace.get_current_span() is trace.INVALID_SPAN
    assert telemetry.spans() == []
    assert len(seen) == 2
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen)
    assert seen[0].span_id != seen[1].span_id
    by_error = {
        p.attributes.get("error.type"): p.count
        for p in telemetry.points("aiocognito.call.duration")
    }
    assert by_error == {None: 1, "UserNotFoundException": 1}
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


async def test_fail_fast_and_timeout_are_told_apart(telemetry: Telemetry) -> None:
    transport = GatedTransport()
    limits = aiocognito.Limits(user_update_rps=1.0, adaptive=False)
    async with (
        instrumented(transport, telemetry, limits=limits) as cognito,
        anyio.create_task_group() as tg,
    ):
        undithered(cognito)
        tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "a"})
        await transport.first_arrived.wait()
        # The one token is spent: this cannot fit its deadline and is refused unsent.
        with pytest.raises(aiocognito.QuotaDeadlineError):
            await cognito.admin_update_user_attributes("bob", {"nickname": "b"}, timeout=0.2)
        # Queued behind alice's call, held open: its deadline passes while it waits.
        with pytest.raises(aiocognito.DeadlineExceededError):
            await cognito.admin_update_user_attributes("alice", {"nickname": "c"}, timeout=0.01)
        transport.release.set()
    fast, timed_out, held = telemetry.spans()
    assert dict(fast.attributes or {})["aiocognito.admission"] == "failed_fast"
    assert dict(fast.attributes or {})["aiocognito.attempts"] == 0
    assert dict(fast.attributes or {})["error.type"] == "TooManyRequestsException"
    assert dict(timed_out.attributes or {})["aiocognito.admission"] == "timed_out"
    assert dict(held.attributes or {})["aiocognito.admission"] == "admitted"
    assert len(transport.sent) == 1


@virtual_time  # on the real clock, a busy machine's slow first calls let the bucket refill
async def test_quota_wait_is_measured(telemetry: Telemetry) -> None:
    transport = FakeTransport()
    # Rate 50/s: the bucket holds 10 tokens; the 11th call waits about 20 ms for one.
    limits = aiocognito.Limits(user_update_rps=50.0, adaptive=False)
    async with (
        instrumented(transport, telemetry, limits=limits) as cognito,
        anyio.create_task_group() as tg,
    ):
        undithered(cognito)
        for i in range(11):
            tg.start_soon(cognito.admin_update_user_attributes, f"u{i}", {"nickname": "n"})
    waits = sorted(
        float(str(dict(s.attributes or {})["aiocognito.quota_wait_ms"])) for s in telemetry.spans()
    )
    assert max(waits[:10]) < 5.0  # the bucket had a token: no wait beyond bookkeeping
    assert waits[10] >= 15.0  # one token at 50/s takes 20 ms


async def test_bulk_run_makes_one_span_with_its_row_counts(telemetry: Telemetry) -> None:
    refused = aiocognito.InvalidParameterError("bad attribute", operation="X", status=400)
    transport = FakeTransport()
    transport.push({}, refused)
    rows = [
        aiocognito.AttributeUpdate(username=f"u{i}", attributes={"nickname": "n"}) for i in range(4)
    ]
    async with (
        instrumented(transport, telemetry) as cognito,
        cognito.bulk_update(rows) as outcomes,
    ):
        results = [o async for o in outcomes]
    (span,) = telemetry.spans()  # rows do not make spans of their own
    attrs = dict(span.attributes or {})
    assert span.name == "aiocognito.bulk_update"
    assert attrs["aiocognito.rows.read"] == 4
    assert attrs["aiocognito.rows.ok"] == sum(o.ok for o in results) == 3
    assert attrs["aiocognito.rows.failed"] == 1
    assert attrs["aiocognito.rows.skipped"] == 0
    assert span.status.status_code is StatusCode.UNSET
    assert telemetry.total("aiocognito.requests") == len(transport.sent) == 4


async def test_gauges_show_the_engine_while_a_call_is_in_flight(telemetry: Telemetry) -> None:
    transport = GatedTransport()
    limits = aiocognito.Limits(user_update_rps=20.0, user_read_rps=None, adaptive=False)
    async with instrumented(transport, telemetry, limits=limits) as cognito:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "a"})
            await transport.first_arrived.wait()
            assert telemetry.total("aiocognito.in_flight") == 1
            assert telemetry.total("aiocognito.lanes.active") == 1
            rate = telemetry.points("aiocognito.rate.allowed")
            assert [(p.attributes["aiocognito.category"], p.value) for p in rate] == [
                ("UserUpdate", 20.0)  # UserRead is unlimited: no rate to report
            ]
            queue = {
                p.attributes["aiocognito.category"]: p.value
                for p in telemetry.points("aiocognito.queue.length")
            }
            assert queue == {"UserUpdate": 0, "UserRead": 0}
            transport.release.set()
        assert telemetry.total("aiocognito.in_flight") == 0
        assert telemetry.total("aiocognito.lanes.active") == 0
    # A closed client drops out of the gauges.
    assert telemetry.points("aiocognito.rate.allowed") == []


async def test_instrument_true_uses_the_global_providers() -> None:
    transport = FakeTransport()
    cognito = client_over(
        transport, region_name="eu-west-1", user_pool_id=POOL, limits=UNLIMITED, instrument=True
    )
    async with cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
    # The global providers are no-ops until the application installs an SDK: nothing breaks.
    assert cognito._instruments is not None
    assert len(transport.sent) == 1


def test_without_the_extra_instrument_true_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiocognito.otel", None)  # as if opentelemetry were absent
    with pytest.raises(aiocognito.ConfigurationError, match=r"aiocognito\[otel\]"):
        aiocognito.CognitoClient(region_name="eu-west-1", instrument=True)


def test_off_means_not_even_imported() -> None:
    code = (
        "import sys, asyncio, aiocognito\n"
        "from aiocognito._client import client_over\n"
        "from tests.fakes import FakeTransport\n"
        "async def main():\n"
        "    async with client_over(FakeTransport(), region_name='eu-west-1') as c:\n"
        "        await c.delete_user_attributes('a.b.c', ['nickname'])\n"
        "asyncio.run(main())\n"
        "names = ('opentelemetry', 'aiocognito.otel')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_without_opentelemetry_installed_everything_else_works() -> None:
    # A child in which opentelemetry cannot be imported at all, as when the extra is absent.
    code = (
        "import sys, asyncio\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import aiocognito\n"
        "from aiocognito._client import client_over\n"
        "from tests.fakes import FakeTransport\n"
        "async def main():\n"
        "    rows = [aiocognito.AttributeUpdate(username='u', attributes={'nickname': 'n'})]\n"
        "    async with client_over(FakeTransport(), region_name='eu-west-1',\n"
        "                           user_pool_id='eu-west-1_AbC') as c:\n"
        "        await c.admin_update_user_attributes('alice', {'nickname': 'n'})\n"
        "        async with c.bulk_update(rows) as outcomes:\n"
        "            print([o.ok async for o in outcomes])\n"
        "asyncio.run(main())\n"
        "try:\n"
        "    aiocognito.CognitoClient(region_name='eu-west-1', instrument=True)\n"
        "except aiocognito.ConfigurationError as exc:\n"
        "    print(exc)\n"
        "names = ('opentelemetry', 'aiocognito.otel')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.splitlines() == [
        "[True]",
        "instrument=True needs OpenTelemetry: pip install 'aiocognito[otel]'",
        "[]",
    ]


def undithered(cognito: aiocognito.CognitoClient) -> None:
    """Pace on a fixed beat: each request waits for a whole token, so waits are exact."""
    bucket = cognito._limiters["UserUpdate"]._bucket
    bucket.dither = None
    bucket.need = 1.0
