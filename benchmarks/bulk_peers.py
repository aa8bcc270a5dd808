"""The bulk peers of ``benchmarks/bulk.py``, written as a competent user writes a bulk script
today: read the file, send every row, write each row's outcome beside the input.

    python -m benchmarks.bulk_peers CONTENDER INPUT ENDPOINT_URL USER_POOL_ID

This module imports only what the peers need, so their memory is theirs alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from aiobotocore.session import get_session

from aiocognito._errors import error_code
from benchmarks._common import CONCURRENCY, THREADS
from benchmarks._peers import boto3_client, raw_client, wire


def _rows(fh: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    return enumerate(json.loads(line) for line in fh)


def _outcome(index: int, exc: Exception | None) -> str:
    if exc is None:
        return json.dumps({"index": index, "ok": True}) + "\n"
    return json.dumps({"index": index, "ok": False, "code": error_code(exc)}) + "\n"


async def _raw_peer(mode: str, fh: IO[str], url: str, pool: str, out: IO[str]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with raw_client(get_session(), mode, url) as client:

        async def one(index: int, row: dict[str, Any]) -> None:
            async with sem:
                try:
                    await client.admin_update_user_attributes(
                        UserPoolId=pool,
                        Username=row["username"],
                        UserAttributes=wire(row["attributes"]),
                    )
                except Exception as exc:  # each row's outcome is written, not raised
                    out.write(_outcome(index, exc))
                else:
                    out.write(_outcome(index, None))

        await asyncio.gather(*(one(index, row) for index, row in _rows(fh)))


def _boto3_peer(fh: IO[str], url: str, pool: str, out: IO[str]) -> None:
    client = boto3_client(url)

    def one(item: tuple[int, dict[str, Any]]) -> str:
        index, row = item
        try:
            client.admin_update_user_attributes(
                UserPoolId=pool, Username=row["username"], UserAttributes=wire(row["attributes"])
            )
        except Exception as exc:  # each row's outcome is written, not raised
            return _outcome(index, exc)
        return _outcome(index, None)

    with concurrent.futures.ThreadPoolExecutor(THREADS) as executor:
        out.writelines(executor.map(one, _rows(fh)))


def run(contender: str, path: str, url: str, pool: str) -> None:
    """Send every row of ``path``; write ``<stem>.results.jsonl``."""
    with open(path) as fh, open(path.rsplit(".", 1)[0] + ".results.jsonl", "w") as out:
        if contender == "boto3-threads":
            _boto3_peer(fh, url, pool, out)
        else:
            asyncio.run(_raw_peer(contender.removeprefix("raw-"), fh, url, pool, out))


if __name__ == "__main__":
    run(*sys.argv[1:])
