"""The ``aiocognito`` command line, built on the public API only."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from . import AttributeUpdate, AttributeValidationError
from ._bulkcli import UpdateSettings, check_paths, run_update, validate_file
from ._cliargs import (
    Parser,
    at_least,
    endpoint_url,
    positive_rate,
    rate,
    region,
    shared_quota_url,
)

__all__ = ["main"]


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


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aiocognito", description="Amazon Cognito user attributes, at the quota.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
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
    update.add_argument("--region", type=region, metavar="R")
    update.add_argument("--endpoint-url", type=endpoint_url, metavar="URL")
    update.add_argument("--profile", metavar="NAME")
    update.add_argument(
        "--rps",
        type=rate,
        default=25.0,
        metavar="R",
        help="the UserUpdate quota in requests/s, or 'none' to discover it (default 25)",
    )
    update.add_argument("--concurrency", type=at_least(1), default=64, metavar="N")
    update.add_argument(
        "--shared-quota-url",
        type=shared_quota_url,
        metavar="URL",
        help="share the account's quota with other processes through Redis (redis://, "
        "rediss:// or unix://; needs aiocognito[redis]) or, on one host, a directory "
        "(file:///path); default: $AIOCOGNITO_SHARED_QUOTA_URL",
    )
    update.add_argument(
        "--share-on-host",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="share the quota with this user's other processes on this host that use it "
        "(the default, unless $AIOCOGNITO_SHARE_ON_HOST=0); --no-share-on-host paces alone",
    )
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
    update.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "json", "none"),
        default="auto",
        help="auto: a bar on a terminal; otherwise a record every 5 s, JSON with --log-format json",
    )
    update.add_argument(
        "--log-level",
        choices=("debug", "info", "warning"),
        default="warning",
        help="the aiocognito logger on stderr: debug (every attempt), info (rate changes), "
        "warning (retries exhausted, fallbacks; the default)",
    )
    update.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one object per line for log collectors, progress records included",
    )

    demo = commands.add_parser(
        "demo", help="a bulk run against the built-in fake Cognito (no AWS account)"
    )
    demo.add_argument("--users", type=at_least(1), default=2000)
    demo.add_argument("--rps", type=positive_rate, default=200.0)
    demo.add_argument(
        "--dir", type=_directory, metavar="DIR", help="where to write files (default: a temp dir)"
    )
    demo.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto")

    # The fake and aiohttp's web server load only when this command runs.
    commands.add_parser(
        "fake-server",
        help="run the fake Cognito server (python -m aiocognito.testing)",
        add_help=False,
    )
    return parser


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
        shared_quota_url=args.shared_quota_url,
        share_on_host=args.share_on_host,
        journal=args.journal,
        results=args.results,
        failures=args.failures,
        progress=args.progress,
        log_level=args.log_level,
        log_format=args.log_format,
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
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["fake-server"]:
        from .testing.__main__ import main as serve_fake

        return serve_fake(arguments[1:], prog="aiocognito fake-server")
    parser = _parser()
    args = parser.parse_args(argv)
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
    return 2  # pragma: no cover - argparse rejects unknown commands, fake-server goes first


if __name__ == "__main__":
    sys.exit(main())
