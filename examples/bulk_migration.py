"""Migrate a JSONL file of attribute changes into a user pool, resumably.

    python examples/bulk_migration.py migration.jsonl eu-west-1_AbC123 [--endpoint-url URL]

Each line is ``{"username": "...", "attributes": {"custom:tier": "gold", "nickname": null}}``.
The journal (``migration.jsonl.journal``) records every finished row: run the same command
again after a crash and only the rest is done. Failed rows are printed with their line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiocognito


async def migrate(path: str, pool_id: str, *, endpoint_url: str | None, rps: float) -> int:
    """Apply every row of ``path``; return how many rows failed."""
    failed = 0
    async with aiocognito.CognitoClient(
        region_name=pool_id.split("_", 1)[0],
        user_pool_id=pool_id,
        endpoint_url=endpoint_url,
        limits=aiocognito.Limits(user_update_rps=rps),
    ) as cognito:
        rows = aiocognito.read_updates(path)  # lazy: the file is never all in memory
        async with cognito.bulk_update(rows, journal=path + ".journal") as outcomes:
            async for outcome in outcomes:
                if not outcome.ok:
                    failed += 1
                    print(f"line {outcome.line}: {outcome.error}", file=sys.stderr)
            progress = outcomes.statistics()
        print(
            f"{progress.ok} applied, {progress.failed} failed, {progress.skipped} done before; "
            f"{cognito.statistics().calls_saved} calls saved by merging"
        )
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("user_pool_id")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--rps", type=float, default=25.0, help="the UserUpdate quota (25/s)")
    args = parser.parse_args()
    failed = asyncio.run(
        migrate(args.path, args.user_pool_id, endpoint_url=args.endpoint_url, rps=args.rps)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
