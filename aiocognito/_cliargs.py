"""Argument types shared by the command lines (``aiocognito`` and ``python -m aiocognito.testing``).

Each parses one flag's text or refuses it in one line, naming what was expected.
"""

from __future__ import annotations

import argparse
import math
import re
import urllib.parse
from collections.abc import Callable
from typing import NoReturn

__all__ = [
    "Parser",
    "at_least",
    "endpoint_url",
    "milliseconds",
    "number",
    "port",
    "positive_rate",
    "rate",
    "redacted_url",
    "region",
    "shared_quota_url",
]


class Parser(argparse.ArgumentParser):
    """argparse, with a refusal on one line: the usage block would bury the one thing wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def rate(text: str) -> float | None:
    """A requests/s figure; ``none`` or ``off`` means unlimited."""
    if text.lower() in ("none", "off", "unlimited"):
        return None
    try:
        value = number(text)
    except argparse.ArgumentTypeError:
        value = math.nan
    if not value > 0:  # also false for NaN
        raise argparse.ArgumentTypeError(
            f"expected a positive number of requests/s, or 'none'; got {text!r}"
        )
    return value


def positive_rate(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {text!r}")
        return value

    return parse


def port(text: str) -> int:
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text!r}")
    return value


def milliseconds(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more milliseconds, got {text!r}")
    return value


_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def region(text: str) -> str:
    if not _REGION.fullmatch(text):  # botocore's own rule, checked before anything runs
        raise argparse.ArgumentTypeError(f"not a region name: {text!r}")
    return text


def endpoint_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def shared_quota_url(text: str) -> str:
    """A Redis URL for the fleet's shared quota (checked as ``Limits`` checks it)."""
    from ._config import Limits  # noqa: PLC0415 - the CLI's import stays light

    try:
        Limits(shared_quota_url=text)
    except (TypeError, ValueError) as exc:
        # Never echo the URL itself: it may hold a password. (argparse would, for anything
        # but an ArgumentTypeError.)
        raise argparse.ArgumentTypeError(f"{exc}; got {redacted_url(text)!r}") from None
    return text


def redacted_url(text: str) -> str:
    """``text`` (a URL) with its password masked, for printing."""
    from ._config import redact_url  # noqa: PLC0415

    return redact_url(text) or ""
