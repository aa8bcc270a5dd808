"""What every benchmark shares: the contenders' common settings and a description of the run."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import sys

# The peers as the issue defines them, and the order they appear in every table.
CONTENDERS = ("aiocognito", "raw-legacy", "raw-standard", "raw-adaptive", "boto3-threads")
CONCURRENCY = 64  # in flight: aiocognito's max_concurrency, the peers' semaphore and pool
THREADS = 32  # boto3's thread pool
REGION = "us-east-1"
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where -m benchmarks runs


def child_env() -> dict[str, str]:
    """The environment for a child process: this one's (read now, so settings made in main()
    pass on), credentials for the CLI, and no probe of the EC2 metadata service."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def describe_run() -> str:
    """The date, the machine and the versions, for the head of a results section."""
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("aiocognito", "aiobotocore", "botocore", "boto3")
    )
    return (
        f"{datetime.date.today().isoformat()}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; {versions}"
    )


def command_line() -> str:
    """How this benchmark was started, as one would type it from the repository root."""
    module = os.path.relpath(sys.argv[0], ROOT).removesuffix(".py").replace(os.sep, ".")
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its module docstring as the help, and ``--runs``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    return parser


def print_heading() -> None:
    """The head of a benchmark's output: when, where and how it ran."""
    print(f"Run: {describe_run()}\nCommand: {command_line()}\n", flush=True)
