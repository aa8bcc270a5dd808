"""Migrate a JSONL file of attribute changes into a user pool, resumably.

    python examples/bulk_migration.py migration.jsonl eu-west-1_AbC123 [--endpoint-url URL]

Each line is ``{"username": "...", "attributes": {"custom:tier": "gold", "nickname": null}}``.
The journal (``migration.jsonl.journal``) records every finished row: run the same command
again after a crash and only the rest is done, each user's rows still in input order. Its row
fingerprints are keyed with the file's SHA-256, which the journal does not hold, so the
journal alone reveals no values. Failed rows are printed with their line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

import aiocognito


def sha256_of(path: str) -> str:
    """The file's SHA-256, in hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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
        digest = await asyncio.to_thread(sha256_of, path)  # a big file: off the event loop
        # The digest binds the journal to this file and keys its fingerprints.
        bulk = cognito.bulk_update(rows, journal=path + ".journal", journal_key=digest)
        async with bulk as outcomes:
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
    try:
        failed = asyncio.run(
            migrate(args.path, args.user_pool_id, endpoint_url=args.endpoint_url, rps=args.rps)
        )
    except (aiocognito.JournalLockedError, aiocognito.JournalWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # e.g. another run is using the journal
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
