"""Which failures are worth retrying, and the one retry loop that retries them.

Retrying happens here and nowhere else (botocore's own retries are off). After the last attempt
the caller gets the last real error, never a wrapper.

Classes of failure:

* THROTTLE: TooManyRequestsException at any status, or a bare 429. Retried with backoff; the
  rate limiter is told so it can slow down.
* TRANSIENT: InternalErrorException, any 5xx, connection failures and timeouts. Retried.
* SLOW: LimitExceededException, a per-user attempt limit that lasts minutes. Retried only when
  ``RetryPolicy.retry_limit_exceeded`` is set, after ``limit_exceeded_backoff`` seconds.
* PERMANENT: everything else (bad parameters, unknown users, expired tokens, Lambda and code
  errors). Never retried.

A retried call may already have been applied by an attempt whose answer was lost (a reset after
the server applied it). Setting attributes is idempotent, so the retry is harmless for the
stored values; but when the change is to an email or phone number, Cognito may send a second
verification code.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._config import RetryPolicy
from ._errors import (
    AiocognitoError,
    CognitoError,
    DeadlineExceededError,
    InternalErrorError,
    LimitExceededError,
    QuotaDeadlineError,
    TooManyRequestsError,
    TransportError,
)

__all__ = ["RetryClass", "classify", "full_jitter_backoff", "retry_call", "retry_delay"]

T = TypeVar("T")


class RetryClass(enum.Enum):
    """How a failure is treated by the retry loop."""

    THROTTLE = "throttle"
    TRANSIENT = "transient"
    SLOW = "slow"
    PERMANENT = "permanent"


def classify(exc: BaseException) -> RetryClass:
    """Return the retry class of one failed attempt."""
    if isinstance(exc, QuotaDeadlineError):
        return RetryClass.PERMANENT  # never sent; waiting longer is what it refused to do
    if isinstance(exc, TooManyRequestsError):
        return RetryClass.THROTTLE
    if isinstance(exc, LimitExceededError):
        return RetryClass.SLOW
    if isinstance(exc, InternalErrorError | TransportError):
        return RetryClass.TRANSIENT
    if isinstance(exc, CognitoError):
        if exc.status == 429:
            return RetryClass.THROTTLE
        if exc.status is not None and exc.status >= 500:
            return RetryClass.TRANSIENT
    return RetryClass.PERMANENT


def full_jitter_backoff(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: uniform in [0, min(cap, base * 2**(n-1))]."""
    exponent = min(attempt - 1, 62)
    ceiling = min(policy.backoff_cap, policy.backoff_base * math.ldexp(1.0, exponent))
    return rand() * ceiling


def retry_delay(
    kind: RetryClass,
    attempt: int,
    policy: RetryPolicy,
    *,
    remaining: float | None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying a failed attempt, or ``None`` to give up.

    The one statement of when a failure is retried, shared by :func:`retry_call` and the
    engine: never a permanent error, never past the policy's ``max_attempts``,
    ``LimitExceededException`` only when the policy allows it, and never a backoff that would
    end past the deadline (``remaining`` seconds from now; ``None`` for no deadline).
    """
    if kind is RetryClass.PERMANENT or attempt >= policy.max_attempts:
        return None
    if kind is RetryClass.SLOW:
        if not policy.retry_limit_exceeded:
            return None
        delay = policy.limit_exceeded_backoff
    else:
        delay = full_jitter_backoff(attempt, policy, rand)
    if remaining is not None and delay >= remaining:
        return None
    return delay


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


async def retry_call(
    attempt_once: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    on_failure: Callable[[BaseException, RetryClass], None] | None = None,
    clock: Clock = anyio.current_time,
    sleep: Sleep = anyio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``attempt_once(n)`` until it succeeds, fails permanently, or the budget is spent.

    Args:
        attempt_once: Makes attempt number ``n`` (1-based).
        policy: Attempts, backoff and the default deadline.
        deadline: Seconds for the whole call; overrides ``policy.deadline``.
        on_failure: Told about every failed attempt and its class (e.g. to slow a limiter).
        clock: Seconds on the event loop's clock, which its timeouts use; injectable for tests.
        sleep: Awaitable sleep; injectable for tests.
        rand: Uniform [0, 1) source for the jitter.

    Raises:
        AiocognitoError: The last attempt's own error, unchanged.
    """
    budget = deadline if deadline is not None else policy.deadline
    give_up_at = None if budget is None else clock() + budget
    attempt = 0
    while True:
        attempt += 1
        try:
            if give_up_at is None:
                return await attempt_once(attempt)
            remaining = give_up_at - clock()
            with anyio.move_on_after(max(remaining, 0.0)) as scope:
                return await attempt_once(attempt)
            if scope.cancelled_caught:
                raise DeadlineExceededError(
                    f"no answer within the call's deadline of {budget:g} s "
                    f"(attempt {attempt}); the attempt may still have been applied"
                )
        except AiocognitoError as exc:
            kind = classify(exc)
            if on_failure is not None:
                on_failure(exc, kind)
            if isinstance(exc, DeadlineExceededError):
                raise
            delay = retry_delay(
                kind,
                attempt,
                policy,
                remaining=None if give_up_at is None else give_up_at - clock(),
                rand=rand,
            )
            if delay is None:
                raise
            await sleep(delay)
