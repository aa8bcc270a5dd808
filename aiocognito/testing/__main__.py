"""``python -m aiocognito.testing`` (also ``aiocognito fake-server``): serve the fake Cognito.

It prints its URL (and, with ``--seed-users``, the seeded pool), then serves until SIGINT or
SIGTERM. The fake and its web server load only when this command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import typing
from collections.abc import Sequence

from .._cliargs import Parser, at_least, milliseconds, number, port, rate, region
from ._backend import CustomAttribute
from ._faults import Fault, FaultKind, Latency
from ._server import FakeCognito

__all__ = ["main"]

#: Every fault kind but added latency, which --latency-ms covers.
_FAULT_KINDS = tuple(kind for kind in typing.get_args(FaultKind) if kind != "latency")


def fault(text: str) -> Fault:
    """Parse ``KIND[:key=value...]``, e.g. ``throttle:p=0.15`` or ``reset_after:count=3``."""
    kind, *options = text.split(":")
    if kind not in _FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown fault {kind!r}; use one of {', '.join(_FAULT_KINDS)}"
        )
    names = {
        "p": "probability",
        "probability": "probability",
        "start": "start",
        "end": "end",
        "count": "count",
        "delay": "delay",
        "op": "operations",
    }
    kwargs: dict[str, object] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in names:
            raise argparse.ArgumentTypeError(
                f"bad fault option {option!r}; use p=, start=, end=, count=, delay= or op="
            )
        field = names[key]
        if field == "count":
            kwargs[field] = at_least(0)(value)
        elif field == "operations":
            kwargs[field] = frozenset(value.split(","))
        else:
            kwargs[field] = number(value)
    try:
        return Fault(kind=kind, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {exc}") from exc


def parser(prog: str = "python -m aiocognito.testing") -> argparse.ArgumentParser:
    """The fake server's flags."""
    fake = Parser(
        prog=prog,
        description="Serve a fake Cognito endpoint with quotas and faults until interrupted.",
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=port, default=0, help="0 picks a free port (default)")
    fake.add_argument("--region", type=region, default="us-east-1")
    fake.add_argument(
        "--user-update-rps",
        type=rate,
        default=25.0,
        metavar="R",
        help="UserUpdate quota, requests/s, or 'none' (default 25)",
    )
    fake.add_argument(
        "--user-read-rps",
        type=rate,
        default=120.0,
        metavar="R",
        help="UserRead quota, requests/s, or 'none' (default 120)",
    )
    fake.add_argument(
        "--per-user-write-rps",
        type=rate,
        default=10.0,
        metavar="R",
        help="per-user write limit, requests/s, or 'none' (default 10)",
    )
    fake.add_argument("--throttle-status", type=int, choices=(400, 429), default=400)
    fake.add_argument(
        "--latency-ms",
        type=milliseconds,
        default=0.0,
        metavar="M",
        help="fixed latency added to every request",
    )
    fake.add_argument(
        "--fault",
        type=fault,
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. throttle:p=0.15, internal_error:count=5, "
        "reset_after:p=0.01, read_timeout:p=0.01:delay=30, "
        "throttle:start=10:end=20; repeatable",
    )
    fake.add_argument(
        "--seed-users",
        type=at_least(0),
        default=0,
        metavar="N",
        help="create a pool 'fake' (custom attribute 'tier') with users user0..N-1",
    )
    fake.add_argument(
        "--seed-password",
        default="Passw0rd!",
        help="password of the seeded users (for InitiateAuth)",
    )
    fake.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    return fake


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeCognito(
        region=args.region,
        host=args.host,
        port=args.port,
        user_update_rps=args.user_update_rps,
        user_read_rps=args.user_read_rps,
        per_user_write_rps=args.per_user_write_rps,
        throttle_status=args.throttle_status,
        latency=Latency.fixed(args.latency_ms / 1000) if args.latency_ms > 0 else None,
        faults=args.fault,
        seed=args.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(fake.endpoint_url, flush=True)
        if args.seed_users:
            pool = fake.create_pool("fake", custom_attributes=[CustomAttribute(name="tier")])
            fake.seed_users(pool.id, args.seed_users, password=args.seed_password)
            print(
                f"pool {pool.id} client {pool.client_id} users user0..user{args.seed_users - 1}",
                flush=True,
            )
        await stop.wait()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m aiocognito.testing") -> int:
    """Run the fake server until interrupted; return the exit code."""
    args = parser(prog).parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
