"""Client CPU per call: aiocognito against its peers, on the same trivial local server.

The server (answers ``{}`` to everything) runs in its own process, so the CPU measured is the
client's alone: no quota, no latency. Each contender runs in a fresh process: open one client,
warm up with 200 calls, then make ``--calls`` calls with 64 in flight (32 threads for boto3),
timing ``time.process_time()`` (user + sys, all threads) and wall time. Contenders are
interleaved and repeated ``--runs`` times; the table shows medians.

Admin updates (SigV4-signed), as in the other scenarios:
  aiocognito        CognitoClient.admin_update_user_attributes, quota off
  raw-legacy        aiobotocore, asyncio.gather under a semaphore of 64, legacy retries
  raw-standard      the same, standard retries
  raw-adaptive      the same, adaptive retries (a client-side token bucket on every call)
  boto3-threads     boto3 in a pool of 32 threads, adaptive retries
Token updates (unsigned), the operation the library is built around:
  aiocognito-token  CognitoClient.update_user_attributes
  raw-legacy-token  aiobotocore with signature_version=UNSIGNED
With instrumentation on (needs the otel and test extras): OpenTelemetry spans and metrics to
the SDK's in-memory exporter (through SimpleSpanProcessor) and metric reader:
  aiocognito-otel        the admin call, instrumented
  aiocognito-otel-token  the token call, instrumented
Paced at a quota, to price the fleet mode (needs redis-server; one is started for the run):
  aiocognito-paced   the admin call under the local limiter at 1,000 requests/s
  aiocognito-shared  the same, the quota shared through Redis (Limits(shared_quota_url=...))
  aiocognito-host    the same, shared through files in a directory (file://, one host)
Run only when named (--contender), to tell the SDK's costs apart: the same, with an exporter that
keeps nothing, as a network exporter does once it has sent (the in-memory exporter keeps every
span, and the garbage collector walks them all on each full collection):
  aiocognito-otel-drop        the admin call
  aiocognito-otel-drop-token  the token call

Each worker also reports the CPU its garbage collector spent in the timed calls (GC µs/call),
and how many passes it made of each generation.

    python -m benchmarks.overhead [--calls 4000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.config import Config
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aiocognito
import aiocognito.otel
from benchmarks._common import (
    CONCURRENCY,
    KEYS,
    ROOT,
    THREADS,
    argument_parser,
    child_env,
    print_heading,
)
from benchmarks._redis import host_quota, shared_quota


def _token(i: int) -> str:
    """A JWT-shaped token whose subject differs per call, so no two calls merge."""
    payload = base64.urlsafe_b64encode(json.dumps({"sub": f"u-{i}"}).encode()).rstrip(b"=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload.decode()}.c2ln"


TOKENS = [_token(i) for i in range(20_000)]
POOL = "eu-west-1_Bench1"
ATTRS = {"custom:tier": "gold", "nickname": "n"}
WIRE_ATTRS = [{"Name": k, "Value": v} for k, v in ATTRS.items()]

CONTENDERS = [
    "aiocognito", "raw-legacy", "raw-standard", "raw-adaptive", "boto3-threads",
    "aiocognito-token", "raw-legacy-token", "aiocognito-otel", "aiocognito-otel-token",
    "aiocognito-paced", "aiocognito-shared", "aiocognito-host",
]  # fmt: skip
# The paced contenders' quota: high enough to keep the stub busy, low enough that every call
# waits for the limiter (the stub alone answers a few thousand calls/s).
PACED_RATE = 1000.0
# The fleet contender against the same pacing done locally: the target is set against that.
LOCAL_PACING = {"aiocognito-shared": "aiocognito-paced", "aiocognito-host": "aiocognito-paced"}
REDIS_URL_ENV = "AIOCOGNITO_BENCH_REDIS_URL"  # the run's redis-server, for the fleet contender
HOST_URL_ENV = "AIOCOGNITO_BENCH_HOST_URL"  # the run's directory, for the one-host contender
# Diagnostics, run only when named: instrumented, with an exporter that keeps nothing.
DIAGNOSTICS = ["aiocognito-otel-drop", "aiocognito-otel-drop-token"]
# Instrumented contenders are also compared with the same call uninstrumented: the target is
# set against that.
UNINSTRUMENTED = {
    "aiocognito-otel": "aiocognito",
    "aiocognito-otel-token": "aiocognito-token",
    "aiocognito-otel-drop": "aiocognito",
    "aiocognito-otel-drop-token": "aiocognito-token",
}
# Each contender's CPU is also given as a ratio against raw aiobotocore's default (legacy
# retries) making the same kind of call: the target is set against that.
BASELINE = {"token": "raw-legacy-token", "admin": "raw-legacy"}


def _kind(contender: str) -> str:
    return "token" if contender.endswith("-token") else "admin"


class _GCTimer:
    """The CPU the garbage collector spends while timed (its callbacks bracket each pass), and
    how many passes it makes of each generation."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.passes = [0, 0, 0]
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.process_time()
        else:
            self.cpu += time.process_time() - self._began
            self.passes[info["generation"]] += 1

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        gc.callbacks.append(self._callback)
        try:
            yield
        finally:
            gc.callbacks.remove(self._callback)


GC = _GCTimer()


async def _drive(call: Callable[[int], Awaitable[Any]], calls: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await call(i)

    await asyncio.gather(*(one(-i) for i in range(1, 201)))  # warm-up: connections, caches
    with GC.timing():
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return time.process_time() - cpu0, time.perf_counter() - wall0


def _boto3_threads(url: str, calls: int) -> tuple[float, float]:
    config = Config(max_pool_connections=THREADS, retries={"mode": "adaptive"})
    client = boto3.client(
        "cognito-idp", region_name="eu-west-1", endpoint_url=url, config=config, **KEYS
    )

    def call(i: int) -> Any:
        return client.admin_update_user_attributes(
            UserPoolId=POOL, Username=f"user{i}", UserAttributes=WIRE_ATTRS
        )

    with concurrent.futures.ThreadPoolExecutor(THREADS) as executor:
        list(executor.map(call, range(-200, 0)))  # warm-up: connections, caches
        with GC.timing():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            list(executor.map(call, range(calls)))
            return time.process_time() - cpu0, time.perf_counter() - wall0


async def _worker(contender: str, url: str, calls: int) -> dict[str, float]:
    token = _kind(contender) == "token"
    if contender == "boto3-threads":
        cpu, wall = await asyncio.to_thread(_boto3_threads, url, calls)
    elif contender.startswith("raw-"):
        mode = contender.removeprefix("raw-").removesuffix("-token")
        options: dict[str, Any] = {"max_pool_connections": CONCURRENCY, "retries": {"mode": mode}}
        if token:
            options["signature_version"] = UNSIGNED
        session = get_session()
        async with session.create_client(
            "cognito-idp",
            region_name="eu-west-1",
            endpoint_url=url,
            config=AioConfig(**options),
            **({} if token else KEYS),
        ) as client:
            if token:

                async def call(i: int) -> Any:
                    return await client.update_user_attributes(
                        AccessToken=TOKENS[i % len(TOKENS)], UserAttributes=WIRE_ATTRS
                    )
            else:

                async def call(i: int) -> Any:
                    return await client.admin_update_user_attributes(
                        UserPoolId=POOL, Username=f"user{i}", UserAttributes=WIRE_ATTRS
                    )

            cpu, wall = await _drive(call, calls)
    else:
        # Quota off: this measures the client's own cost per call, not pacing; the paced
        # contenders price the limiter, local or shared.
        limits = aiocognito.Limits(
            max_concurrency=CONCURRENCY, user_update_rps=None, adaptive=False
        )
        if contender in ("aiocognito-paced", "aiocognito-shared", "aiocognito-host"):
            shared = {
                "aiocognito-shared": lambda: os.environ[REDIS_URL_ENV],
                "aiocognito-host": lambda: os.environ[HOST_URL_ENV],
            }.get(contender, lambda: "")()
            limits = aiocognito.Limits(
                max_concurrency=CONCURRENCY, user_update_rps=PACED_RATE, shared_quota_url=shared
            )
        client = aiocognito.CognitoClient(
            region_name="eu-west-1",
            user_pool_id=POOL,
            endpoint_url=url,
            limits=limits,
            **KEYS,  # type: ignore[arg-type]
        )
        if contender.startswith("aiocognito-otel"):
            _instrument(client, keep=not contender.startswith("aiocognito-otel-drop"))
        async with client as cognito:
            if token:

                async def call(i: int) -> Any:
                    return await cognito.update_user_attributes(TOKENS[i % len(TOKENS)], ATTRS)
            else:

                async def call(i: int) -> Any:
                    return await cognito.admin_update_user_attributes(f"user{i}", ATTRS)

            cpu, wall = await _drive(call, calls)
    return {
        "cpu_us_per_call": cpu / calls * 1e6,
        "calls_per_s": calls / wall,
        "gc_us_per_call": GC.cpu / calls * 1e6,
        **{f"gc_passes_{generation}": n for generation, n in enumerate(GC.passes)},
    }


class _Discard(SpanExporter):
    """An exporter that keeps nothing, as a network exporter once it has sent."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _instrument(client: aiocognito.CognitoClient, *, keep: bool = True) -> None:
    """Spans and metrics into the SDK's in-memory exporter (or one that keeps nothing) and
    metric reader."""
    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter() if keep else _Discard()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    aiocognito.otel.instrument(
        client, tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def stub_server() -> Iterator[str]:
    """The trivial server in a process of its own; yields its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.stub_server", "--port", str(_free_port())],
        stdout=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT,
    )  # fmt: skip
    assert server.stdout is not None
    with server, server.stdout:
        try:
            yield server.stdout.readline().strip()
        finally:
            server.terminate()


def run_once(contender: str, url: str, calls: int) -> dict[str, float]:
    """One contender in a fresh process: its CPU µs per call and calls per second."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.overhead", "--calls", str(calls),
         "--worker", contender, url],
        capture_output=True, text=True, check=True, env=child_env(), cwd=ROOT,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """Contenders as rows: median CPU per call and calls/s, and the CPU ratio to the baseline."""
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in results.items()}
    lines = [
        "| contender | call | CPU µs/call | of which GC | calls/s "
        "| CPU ÷ raw aiobotocore (legacy) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for contender, m in med.items():
        kind = _kind(contender)
        baseline = med.get(BASELINE[kind])
        ratio = f"{m['cpu_us_per_call'] / baseline['cpu_us_per_call']:.2f}" if baseline else "n/a"
        if contender.startswith("aiocognito"):
            ratio = f"**{ratio}**"
        gc_cpu = f"{m['gc_us_per_call']:.0f}" if "gc_us_per_call" in m else "n/a"
        lines.append(
            f"| {contender} | {kind} | {m['cpu_us_per_call']:.0f} | {gc_cpu} | "
            f"{m['calls_per_s']:.0f} | {ratio} |"
        )
    for contender, local in LOCAL_PACING.items():
        if contender in med and local in med:
            shared_cost = med[contender]["cpu_us_per_call"] / med[local]["cpu_us_per_call"]
            through = "files in a directory" if contender == "aiocognito-host" else "Redis"
            lines += [
                "",
                f"{contender} against {local} (the quota shared through {through} against "
                f"paced locally, both at {PACED_RATE:,.0f}/s): CPU per call {shared_cost:.2f}x.",
            ]
    for contender, plain in UNINSTRUMENTED.items():
        if contender in med and plain in med:
            on, off = med[contender], med[plain]
            cost = on["cpu_us_per_call"] - off["cpu_us_per_call"]
            gc_cost = on.get("gc_us_per_call", 0.0) - off.get("gc_us_per_call", 0.0)
            # Each run's contenders share its load: their ratio is steadier than the medians'.
            paired = statistics.median(
                a["cpu_us_per_call"] / b["cpu_us_per_call"]
                for a, b in zip(results[contender], results[plain], strict=False)
            )

            def passes(m: dict[str, float]) -> str:
                return "/".join(f"{m.get(f'gc_passes_{g}', 0.0):.0f}" for g in range(3))

            lines += [
                "",
                f"{contender} against {plain} (instrumentation on against off): CPU per call "
                f"{on['cpu_us_per_call'] / off['cpu_us_per_call']:.2f}x, {cost:+.0f} µs, of "
                f"which the garbage collector {gc_cost:+.0f} µs (passes of generations 0/1/2: "
                f"{passes(on)} against {passes(off)}); run by run, the median of each run's "
                f"ratio {paired:.2f}x.",
            ]
    # The best peer for the admin call: the one with the least CPU per call.
    peers = [c for c in med if _kind(c) == "admin" and not c.startswith("aiocognito")]
    if "aiocognito" in med and peers:
        best = min(peers, key=lambda c: med[c]["cpu_us_per_call"])
        ours, theirs = med["aiocognito"], med[best]
        lines += [
            "",
            f"aiocognito against the best peer ({best}, the least CPU per admin call): CPU per "
            f"call {ours['cpu_us_per_call'] / theirs['cpu_us_per_call']:.2f}x, calls/s "
            f"{ours['calls_per_s'] / theirs['calls_per_s']:.2f}x.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument(
        "--contender", nargs="+", choices=CONTENDERS + DIAGNOSTICS, default=CONTENDERS
    )
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        contender, url = args.worker
        print(json.dumps(asyncio.run(_worker(contender, url, args.calls))))
        return

    print_heading()
    results: dict[str, list[dict[str, float]]] = {c: [] for c in args.contender}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(stub_server())
        if "aiocognito-shared" in args.contender:
            redis = stack.enter_context(shared_quota())
            os.environ[REDIS_URL_ENV] = redis["shared_quota_url"]  # child_env() passes it on
        if "aiocognito-host" in args.contender:
            directory = stack.enter_context(host_quota())
            os.environ[HOST_URL_ENV] = directory["shared_quota_url"]
        for run in range(args.runs):
            for contender in args.contender:
                figures = run_once(contender, url, args.calls)
                results[contender].append(figures)
                print(
                    f"run {run + 1} {contender:26} {figures['cpu_us_per_call']:7.0f} µs/call "
                    f"(GC {figures['gc_us_per_call']:4.0f}, passes "
                    f"{figures['gc_passes_0']:.0f}/{figures['gc_passes_1']:.0f}/"
                    f"{figures['gc_passes_2']:.0f}) {figures['calls_per_s']:7.0f} calls/s",
                    file=sys.stderr,
                )

    print(f"\n{args.runs} runs of {args.calls} calls; medians\n")
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
