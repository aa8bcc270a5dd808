"""``aiocognito demo``: a bulk migration against the built-in fake Cognito, no AWS account needed.

It runs the same code path as ``aiocognito update``: progress, journal, results, failures and
summary.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from typing import IO

from ._bulkcli import UpdateSettings, run_update
from .testing import CustomAttribute, FakeCognito

__all__ = ["run_demo", "write_demo_input"]

TIERS = ("bronze", "silver", "gold", "platinum")

#: Rows that are wrong on purpose, one of each kind the reader reports.
BAD_ROWS = (
    '{"username": "user1", "attributes": {"custom:tier": "gold"',  # invalid JSON
    '{"attributes": {"custom:tier": "gold"}}',  # no username
    '{"username": "user2", "attributes": {"tier": "gold"}}',  # custom attribute without prefix
    '{"username": "user3", "attributes": {"custom:tier": 5}}',  # not a string
    '{"username": "user4", "attributes": {}}',  # nothing to do
    json.dumps({"username": "user5", "attributes": {"nickname": "x" * 3000}}),  # too long
)


def write_demo_input(path: str, users: int, *, seed: int = 7) -> int:
    """Write the demo's JSONL input; return the number of rows.

    Every user gets a tier. One in ten gets two more rows soon after (a plan, then a nickname
    deleted), which the engine merges or orders. About 1 % of rows are bad on purpose, and a
    few name users that do not exist, so the results and failures files have something to show.
    """
    rng = random.Random(seed)
    rows: list[str] = []
    later: list[tuple[int, str]] = []
    for i in range(users):
        rows.append(
            json.dumps({"username": f"user{i}", "attributes": {"custom:tier": rng.choice(TIERS)}})
        )
        if i % 10 == 0:
            when = len(rows) + rng.randrange(1, 40)
            later.append(
                (when, json.dumps({"username": f"user{i}", "attributes": {"custom:plan": "pro"}}))
            )
            later.append(
                (when + 1, json.dumps({"username": f"user{i}", "attributes": {"nickname": None}}))
            )
        while later and later[0][0] <= len(rows):
            rows.append(later.pop(0)[1])
    rows.extend(row for _when, row in later)
    bad = max(1, len(rows) // 100)
    for n in range(bad):
        rows.insert(rng.randrange(len(rows)), BAD_ROWS[n % len(BAD_ROWS)])
    for n in range(max(1, users // 200)):
        missing = json.dumps(
            {"username": f"former-employee-{n}", "attributes": {"custom:tier": "gold"}}
        )
        rows.insert(rng.randrange(len(rows)), missing)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    return len(rows)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


async def run_demo(
    out: IO[str],
    *,
    users: int = 2000,
    rps: float = 200.0,
    directory: str | None = None,
    progress: str = "auto",
) -> int:
    """Run the demo; return 0 unless the run itself broke (planted bad rows are expected)."""
    directory = directory or tempfile.mkdtemp(prefix="aiocognito-demo-")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "migration.jsonl")
    print(
        f"aiocognito demo: a bulk update of {users:,} users against the built-in fake Cognito.\n"
        f"Real Cognito allows 25 requests/s for these calls, across the whole account, and the\n"
        f"quota cannot be raised: {users:,} users would take {_duration(users / 25)} or more.\n"
        f"The demo's fake allows {rps:g}/s so that it finishes in seconds.\n",
        file=out,
        flush=True,
    )
    async with FakeCognito(user_update_rps=rps, seed=1) as fake:
        pool = fake.create_pool(
            "demo", custom_attributes=[CustomAttribute(name="tier"), CustomAttribute(name="plan")]
        )
        fake.seed_users(
            pool.id,
            users,
            attributes=lambda i: {"email": f"user{i}@example.com", "nickname": f"n{i}"},
        )
        count = write_demo_input(path, users)
        print(f"input: {path} ({count:,} rows, some bad on purpose)\n", file=out, flush=True)
        settings = UpdateSettings(
            input=path,
            user_pool_id=pool.id,
            region="us-east-1",
            endpoint_url=fake.endpoint_url,
            rps=rps,
            journal=os.path.join(directory, "migration.journal"),
            progress=progress,
            command=[
                "aiocognito",
                "update",
                "--input",
                path,
                "--user-pool-id",
                pool.id,
                "--endpoint-url",
                fake.endpoint_url,
                "--rps",
                f"{rps:g}",
            ],
            credentials={"aws_access_key_id": "demo", "aws_secret_access_key": "demo"},
        )
        code = await run_update(settings, out)
        sample = fake.user_attributes(pool.id, "user0")
        print(
            f"\nuser0 in the fake now: tier={sample.get('custom:tier')}, "
            f"plan={sample.get('custom:plan')}, nickname={sample.get('nickname')}",
            file=out,
        )
        print(
            "The failures file is valid input: fix its rows and run the command above against\n"
            "your own pool (the demo's fake server stops with the demo).",
            file=out,
        )
    return 2 if code == 2 else 0
