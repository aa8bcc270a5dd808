"""The ``aiocognito`` logger: what the engine did, in the standard :mod:`logging` vocabulary.

Silent by default, like every library: the logger has a :class:`logging.NullHandler`, so nothing
is printed until the application configures logging. Levels:

* **DEBUG**, one record per attempt: operation, attempt number, HTTP status, error code,
  latency, request id and how many callers' changes rode in the call.
* **INFO** when a quota category's allowed rate changes for a reason: a cut, an undo, the end of
  slow start (the quota discovered), or slow-start growth; with the old and new rate and the
  throttled fraction behind the decision.
* **WARNING** when a call's retries run out on a throttle, and on every fallback (once per
  outage, see :class:`FallbackLog`).

Every record also carries its fields as attributes (``record.operation``, ``record.new_rate``,
...), named in :data:`FIELDS`, so a JSON formatter can emit them as they are.

No record is ever built from a token, an attribute value, a verification code, client metadata
or a credential: only names, counts, codes and rates. The transport's redacting filter is
attached to this logger as well (defence in depth): it removes from each record every secret of
the call the record is about, which the helpers below pass to it privately.

This module imports nothing of ours, so every layer may log through it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

__all__ = [
    "FIELDS",
    "REASONS",
    "SECRETS_ATTRIBUTE",
    "FallbackLog",
    "attempt",
    "debug_enabled",
    "logger",
    "rate_changed",
    "retries_exhausted",
]

logger = logging.getLogger("aiocognito")
logger.addHandler(logging.NullHandler())

#: The record attribute the redacting filter reads a call's secrets from, and removes.
SECRETS_ATTRIBUTE = "_aiocognito_secrets"

#: Structured fields the records carry, for formatters that emit them (the CLI's JSON format).
FIELDS = (
    "event",
    "operation",
    "attempt",
    "status",
    "code",
    "latency_ms",
    "request_id",
    "merged",
    "category",
    "reason",
    "old_rate",
    "new_rate",
    "throttled_fraction",
    "attempts",
    "dependency",
)

_DEBUG = logging.DEBUG


def attempt(
    operation: str,
    number: int,
    *,
    status: int | None,
    code: str | None,
    latency: float,
    request_id: str | None,
    merged: int,
    secrets: Sequence[str],
) -> None:
    """Log one attempt at DEBUG (the caller checks ``logger.isEnabledFor(DEBUG)`` first)."""
    logger.debug(
        "%s attempt %d: %s %s in %.1f ms, request id %s, %d merged",
        operation,
        number,
        "-" if status is None else status,
        code or "ok",
        latency * 1000,
        request_id or "-",
        merged,
        extra={
            "event": "attempt",
            "operation": operation,
            "attempt": number,
            "status": status,
            "code": code,
            "latency_ms": round(latency * 1000, 3),
            "request_id": request_id,
            "merged": merged,
            SECRETS_ATTRIBUTE: secrets,
        },
    )


#: Why a rate changed, as the limiter reports it, in words for the message.
REASONS = {
    "cut": "cut",
    "undo": "cut undone (the throttles were noise)",
    "slow_start_end": "end of slow start, quota discovered",
    "slow_start": "slow start, no throttles",
}


def rate_changed(
    category: str, reason: str, old: float, new: float, throttled_fraction: float
) -> None:
    """Log at INFO that a category's allowed rate changed, and why."""
    logger.info(
        "%s rate %.1f -> %.1f requests/s: %s (%.1f%% throttled)",
        category,
        old,
        new,
        REASONS.get(reason, reason),
        throttled_fraction * 100,
        extra={
            "event": "rate_change",
            "category": category,
            "reason": reason,
            "old_rate": round(old, 3),
            "new_rate": round(new, 3),
            "throttled_fraction": round(throttled_fraction, 4),
        },
    )


def retries_exhausted(
    operation: str, attempts: int, *, request_id: str | None, merged: int, secrets: Sequence[str]
) -> None:
    """Log at WARNING that a call gave up while still throttled."""
    logger.warning(
        "%s still throttled after %d attempts; giving up (request id %s, %d merged)",
        operation,
        attempts,
        request_id or "-",
        merged,
        extra={
            "event": "retries_exhausted",
            "operation": operation,
            "attempts": attempts,
            "code": "TooManyRequestsException",
            "request_id": request_id,
            "merged": merged,
            SECRETS_ATTRIBUTE: secrets,
        },
    )


class FallbackLog:
    """WARNING once per outage when a helper (a shared quota store) cannot be reached.

    The caller reports every failure with :meth:`unreachable` and every success with
    :meth:`reachable`; only the first failure of an outage is logged, and the recovery once at
    INFO, so a dead dependency costs one line, not one per call.

    Args:
        dependency: What is unreachable, in words (``"the shared quota (redis)"``).
        fallback: What is used instead (``"the local adaptive limiter"``).
    """

    def __init__(self, dependency: str, fallback: str) -> None:
        self.dependency = dependency
        self.fallback = fallback
        self.down = False
        self.outages = 0

    def unreachable(self, cause: BaseException | str) -> None:
        """Report a failure to reach the dependency; WARNING if an outage starts."""
        if self.down:
            return
        self.down = True
        self.outages += 1
        # The cause's type only: a connection error's text may hold a URL with a password.
        kind = cause if isinstance(cause, str) else type(cause).__name__
        logger.warning(
            "%s unreachable (%s); falling back to %s",
            self.dependency,
            kind,
            self.fallback,
            extra={"event": "fallback", "dependency": self.dependency, "code": kind},
        )

    def reachable(self) -> None:
        """Report a success; INFO once if an outage ends."""
        if not self.down:
            return
        self.down = False
        logger.info(
            "%s reachable again; rejoined",
            self.dependency,
            extra={"event": "rejoined", "dependency": self.dependency},
        )


def debug_enabled() -> bool:
    """Whether per-attempt records would go anywhere (cheap: the logging module caches it)."""
    return logger.isEnabledFor(_DEBUG)
