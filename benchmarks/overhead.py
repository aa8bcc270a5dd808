"""Client CPU per call: aiocognito against raw aiobotocore, on the same trivial local server.

The server (answers ``{}`` to everything) runs in its own process, so the CPU measured is the
client's alone. Each contender runs in a fresh process: open one client, warm up, then make
``--calls`` calls with 64 in flight, timing ``time.process_time()`` (user + sys) and wall time.
Contenders are interleaved and repeated ``--runs`` times; the table shows medians.

    python -m benchmarks.overhead [--calls 4000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import UNSIGNED

import aiocognito

CONCURRENCY = 64


def _token(i: int) -> str:
    """A JWT-shaped token whose subject differs per call, so no two calls merge."""
    payload = base64.urlsafe_b64encode(json.dumps({"sub": f"u-{i}"}).encode()).rstrip(b"=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload.decode()}.c2ln"


TOKENS = [_token(i) for i in range(20_000)]
POOL = "eu-west-1_Bench1"
ATTRS = {"custom:tier": "gold", "nickname": "n"}
WIRE_ATTRS = [{"Name": k, "Value": v} for k, v in ATTRS.items()]
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}

CONTENDERS = ["raw-unsigned", "aiocognito-unsigned", "raw-signed", "aiocognito-signed"]


async def _drive(call: Callable[[int], Awaitable[Any]], calls: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await call(i)

    await asyncio.gather(*(one(-i) for i in range(1, 201)))  # warm-up: connections, caches
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def _worker(contender: str, url: str, calls: int) -> dict[str, float]:
    if contender.startswith("raw"):
        signed = contender.endswith("-signed")
        options: dict[str, Any] = {"max_pool_connections": CONCURRENCY}
        if not signed:
            options["signature_version"] = UNSIGNED
        session = get_session()
        async with session.create_client(
            "cognito-idp",
            region_name="eu-west-1",
            endpoint_url=url,
            config=AioConfig(**options),
            **(KEYS if signed else {}),
        ) as client:
            if signed:

                async def call(i: int) -> Any:
                    return await client.admin_update_user_attributes(
                        UserPoolId=POOL, Username=f"user{i}", UserAttributes=WIRE_ATTRS
                    )
            else:

                async def call(i: int) -> Any:
                    return await client.update_user_attributes(
                        AccessToken=TOKENS[i % len(TOKENS)], UserAttributes=WIRE_ATTRS
                    )

            cpu, wall = await _drive(call, calls)
    else:
        async with aiocognito.CognitoClient(
            region_name="eu-west-1",
            user_pool_id=POOL,
            endpoint_url=url,
            # Quota off: this measures the client's own cost per call, not pacing.
            limits=aiocognito.Limits(
                max_concurrency=CONCURRENCY, user_update_rps=None, adaptive=False
            ),
            **KEYS,  # type: ignore[arg-type]
        ) as cognito:
            if contender.endswith("-signed"):

                async def call(i: int) -> Any:
                    return await cognito.admin_update_user_attributes(f"user{i}", ATTRS)
            else:

                async def call(i: int) -> Any:
                    return await cognito.update_user_attributes(TOKENS[i % len(TOKENS)], ATTRS)

            cpu, wall = await _drive(call, calls)
    return {"cpu_us_per_call": cpu / calls * 1e6, "calls_per_s": calls / wall}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        contender, url = args.worker
        print(json.dumps(asyncio.run(_worker(contender, url, args.calls))))
        return

    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.stub_server", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        results: dict[str, list[dict[str, float]]] = {c: [] for c in CONTENDERS}
        for run in range(args.runs):
            for contender in CONTENDERS:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.overhead",
                        "--calls",
                        str(args.calls),
                        "--worker",
                        contender,
                        url,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                )
                figures = json.loads(out.stdout)
                results[contender].append(figures)
                print(
                    f"run {run + 1} {contender:22} {figures['cpu_us_per_call']:7.0f} µs/call "
                    f"{figures['calls_per_s']:7.0f} calls/s",
                    file=sys.stderr,
                )
    finally:
        server.terminate()
        server.wait()

    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in results.items()}
    print(f"\n{args.runs} runs of {args.calls} calls, {CONCURRENCY} in flight; medians\n")
    print("| contender | CPU µs/call | calls/s | CPU ratio vs raw |")
    print("|---|---:|---:|---:|")
    for contender in CONTENDERS:
        raw = med["raw-" + contender.split("-", 1)[1]]["cpu_us_per_call"]
        m = med[contender]
        print(
            f"| {contender} | {m['cpu_us_per_call']:.0f} | {m['calls_per_s']:.0f} | "
            f"{m['cpu_us_per_call'] / raw:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": results, "medians": med}, fh, indent=2)


if __name__ == "__main__":
    main()
