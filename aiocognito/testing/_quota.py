"""Account-wide request-rate quotas per category, and an optional per-user write limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from attrs import frozen

from ._rules import CATEGORY, DEFAULT_QUOTAS

__all__ = ["CATEGORY", "QuotaStats", "Quotas", "TokenBucket"]

#: The categories the attribute operations fall in; setup calls are not limited by default.
DEFAULT_RATES: Mapping[str, float | None] = {
    c: DEFAULT_QUOTAS[c] for c in ("UserUpdate", "UserRead")
}


class TokenBucket:
    """A token bucket holding at most one second's worth of requests."""

    __slots__ = ("capacity", "clock", "last", "rate", "tokens")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def try_take(self) -> bool:
        """Take one token if there is one."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@frozen(kw_only=True)
class QuotaStats:
    """One category's quota state.

    Attributes:
        category: The quota category, e.g. ``UserUpdate``.
        rate: The allowed rate in requests/s; ``None`` if unlimited.
        admitted: Requests the quota let through.
        throttled: Requests refused by the account-wide quota.
        throttled_per_user: Requests refused by the per-user write limit.
        timeline: ``(second, admitted, throttled)`` per second since the server started.
    """

    category: str
    rate: float | None
    admitted: int
    throttled: int
    throttled_per_user: int
    timeline: tuple[tuple[int, int, int], ...]

    @property
    def observed_rate(self) -> float:
        """Admitted requests per second over the seconds that saw any traffic."""
        if not self.timeline:
            return 0.0
        first, last = self.timeline[0][0], self.timeline[-1][0]
        return self.admitted / max(last - first + 1, 1)


class Quotas:
    """The buckets of one fake account: one per category, and one per user for writes."""

    def __init__(
        self,
        rates: Mapping[str, float | None],
        *,
        per_user_write_rps: float | None = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.started = clock()
        self.rates = dict(rates)
        self.per_user_write_rps = per_user_write_rps
        self._buckets = {c: TokenBucket(r, clock) for c, r in self.rates.items() if r is not None}
        self._users: dict[str, TokenBucket] = {}
        self._admitted: dict[str, int] = {}
        self._throttled: dict[str, int] = {}
        self._throttled_user: dict[str, int] = {}
        self._timeline: dict[str, dict[int, list[int]]] = {}

    def set_rate(self, category: str, rate: float | None) -> None:
        """Change a category's allowed rate (``None`` lifts it), e.g. to test convergence."""
        self.rates[category] = rate
        if rate is None:
            self._buckets.pop(category, None)
        else:
            self._buckets[category] = TokenBucket(rate, self.clock)

    def admit(self, operation: str, user_key: str | None) -> str | None:
        """Count one request; return None if admitted, else the reason it was throttled."""
        category = CATEGORY.get(operation, "Other")
        second = int(self.clock() - self.started)
        slot = self._timeline.setdefault(category, {}).setdefault(second, [0, 0])
        bucket = self._buckets.get(category)
        if bucket is not None and not bucket.try_take():
            self._throttled[category] = self._throttled.get(category, 0) + 1
            slot[1] += 1
            return "account"
        if (
            category == "UserUpdate"
            and user_key is not None
            and self.per_user_write_rps is not None
        ):
            user_bucket = self._users.get(user_key)
            if user_bucket is None:
                if len(self._users) > 50_000:
                    self._forget_idle_users()
                user_bucket = self._users[user_key] = TokenBucket(
                    self.per_user_write_rps, self.clock
                )
            if not user_bucket.try_take():
                self._throttled_user[category] = self._throttled_user.get(category, 0) + 1
                slot[1] += 1
                return "user"
        self._admitted[category] = self._admitted.get(category, 0) + 1
        slot[0] += 1
        return None

    def _forget_idle_users(self) -> None:
        # A bucket idle for over a second is full again; dropping it changes nothing.
        now = self.clock()
        self._users = {k: b for k, b in self._users.items() if now - b.last < 1.0}

    def stats(self) -> dict[str, QuotaStats]:
        """Per-category statistics."""
        categories = set(self.rates) | set(self._timeline)
        return {
            c: QuotaStats(
                category=c,
                rate=self.rates.get(c),
                admitted=self._admitted.get(c, 0),
                throttled=self._throttled.get(c, 0),
                throttled_per_user=self._throttled_user.get(c, 0),
                timeline=tuple(
                    (second, counts[0], counts[1])
                    for second, counts in sorted(self._timeline.get(c, {}).items())
                ),
            )
            for c in sorted(categories)
        }
