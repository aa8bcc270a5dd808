"""The ``aiocognito`` command line, built on the public API only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import AttributeUpdate, AttributeValidationError
from ._bulkcli import UpdateSettings, check_paths, run_update, validate_file
from .testing import CustomAttribute, FakeCognito, Fault, Latency

__all__ = ["main"]

_FAULT_KINDS = ("throttle", "internal_error", "reset_before", "reset_after", "read_timeout")


class _Parser(argparse.ArgumentParser):
    """argparse, with a refusal on one line: the usage block would bury the one thing wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _rate(text: str) -> float | None:
    """A requests/s figure; ``none`` or ``off`` means unlimited."""
    if text.lower() in ("none", "off", "unlimited"):
        return None
    try:
        value = _number(text)
    except argparse.ArgumentTypeError:
        value = math.nan
    if not value > 0:  # also false for NaN
        raise argparse.ArgumentTypeError(
            f"expected a positive number of requests/s, or 'none'; got {text!r}"
        )
    return value


def _positive_rate(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {text!r}")
        return value

    return parse


def _port(text: str) -> int:
    value = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text!r}")
    return value


def _milliseconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more milliseconds, got {text!r}")
    return value


_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _region(text: str) -> str:
    if not _REGION.fullmatch(text):  # botocore's own rule, checked before anything runs
        raise argparse.ArgumentTypeError(f"not a region name: {text!r}")
    return text


def _endpoint_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _directory(text: str) -> str:
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text}")
    return text


def _user_pool_id(text: str) -> str:
    try:
        # The library's own check, through the public API, so the CLI agrees with it.
        AttributeUpdate(username="check", user_pool_id=text, attributes={"nickname": None})
    except AttributeValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("user_pool_id: ")) from None
    return text


def _fault(text: str) -> Fault:
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
            kwargs[field] = _at_least(0)(value)
        elif field == "operations":
            kwargs[field] = frozenset(value.split(","))
        else:
            kwargs[field] = _number(value)
    try:
        return Fault(kind=kind, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aiocognito", description="Amazon Cognito user attributes, at the quota.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    update = commands.add_parser(
        "update",
        help="bulk-update users from a JSONL or CSV file",
        description="Update many users' attributes from a file, at the quota, with a journal "
        "so an interrupted run resumes where it stopped. Exit codes: 0 all rows ok, 1 some rows "
        "failed, 2 usage, configuration or fatal error, 130 interrupted.",
    )
    update.add_argument(
        "--input", required=True, metavar="FILE", help="JSONL, or CSV (by the .csv extension)"
    )
    update.add_argument(
        "--user-pool-id", type=_user_pool_id, metavar="P", help="the pool of rows without one"
    )
    update.add_argument("--region", type=_region, metavar="R")
    update.add_argument("--endpoint-url", type=_endpoint_url, metavar="URL")
    update.add_argument("--profile", metavar="NAME")
    update.add_argument(
        "--rps",
        type=_rate,
        default=25.0,
        metavar="R",
        help="the UserUpdate quota in requests/s, or 'none' to discover it (default 25)",
    )
    update.add_argument("--concurrency", type=_at_least(1), default=64, metavar="N")
    update.add_argument("--journal", metavar="FILE", help="default: INPUT's name + .journal")
    update.add_argument(
        "--results",
        metavar="FILE",
        help="one JSON line per row; default: INPUT's name + .results.jsonl",
    )
    update.add_argument(
        "--failures",
        metavar="FILE",
        help="failed rows, as valid input; default: INPUT's name + .failures.jsonl",
    )
    update.add_argument("--dry-run", action="store_true", help="check the file offline")
    update.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto")

    demo = commands.add_parser(
        "demo", help="a bulk run against the built-in fake Cognito (no AWS account)"
    )
    demo.add_argument("--users", type=_at_least(1), default=2000)
    demo.add_argument("--rps", type=_positive_rate, default=200.0)
    demo.add_argument(
        "--dir", type=_directory, metavar="DIR", help="where to write files (default: a temp dir)"
    )
    demo.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto")

    fake = commands.add_parser(
        "fake-server",
        help="run the fake Cognito server",
        description="Serve a fake Cognito endpoint with quotas and faults until interrupted.",
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=_port, default=0, help="0 picks a free port (default)")
    fake.add_argument("--region", type=_region, default="us-east-1")
    fake.add_argument(
        "--user-update-rps",
        type=_rate,
        default=25.0,
        metavar="R",
        help="UserUpdate quota, requests/s, or 'none' (default 25)",
    )
    fake.add_argument(
        "--user-read-rps",
        type=_rate,
        default=120.0,
        metavar="R",
        help="UserRead quota, requests/s, or 'none' (default 120)",
    )
    fake.add_argument(
        "--per-user-write-rps",
        type=_rate,
        default=10.0,
        metavar="R",
        help="per-user write limit, requests/s, or 'none' (default 10)",
    )
    fake.add_argument("--throttle-status", type=int, choices=(400, 429), default=400)
    fake.add_argument(
        "--latency-ms",
        type=_milliseconds,
        default=0.0,
        metavar="M",
        help="fixed latency added to every request",
    )
    fake.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. throttle:p=0.15, internal_error:count=5, "
        "reset_after:p=0.01, read_timeout:p=0.01:delay=30, "
        "throttle:start=10:end=20; repeatable",
    )
    fake.add_argument(
        "--seed-users",
        type=_at_least(0),
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
    return parser


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


def _update(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> int:
    refuse = f"{parser.prog} update: error:"
    if not os.path.isfile(args.input):
        what = "is a directory" if os.path.isdir(args.input) else "no such file"
        print(f"{refuse} --input: {what}: {args.input}", file=sys.stderr)
        return 2
    settings = UpdateSettings(
        input=args.input,
        user_pool_id=args.user_pool_id,
        region=args.region,
        endpoint_url=args.endpoint_url,
        profile=args.profile,
        rps=args.rps,
        concurrency=args.concurrency,
        journal=args.journal,
        results=args.results,
        failures=args.failures,
        progress=args.progress,
        command=["aiocognito", *(sys.argv[1:] if argv is None else argv)],
    )
    if args.dry_run:
        return validate_file(settings, sys.stdout, sys.stderr)
    problem = check_paths(settings)
    if problem is not None:
        print(f"{refuse} {problem}", file=sys.stderr)
        return 2
    return asyncio.run(run_update(settings, sys.stdout, err=sys.stderr))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "fake-server":
        asyncio.run(_serve(args))
        return 0
    if args.command == "demo":
        from ._demo import run_demo

        return asyncio.run(
            run_demo(
                sys.stdout,
                users=args.users,
                rps=args.rps,
                directory=args.dir,
                progress=args.progress,
            )
        )
    if args.command == "update":
        return _update(parser, args, argv)
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
