"""Request-rate limits per quota category: paced token buckets that adapt to throttling.

Cognito's quotas are per account and region, per *category* of operation (UserUpdate: 25/s and
not adjustable; UserRead: 120/s). One :class:`RateLimiter` paces one category.

Pacing. Tokens accrue at the allowed rate; the bucket holds at most ``BURST_SECONDS`` worth (a
fifth of a second), well under the one second Cognito's own bucket holds, so the server keeps a
reserve that absorbs network jitter. Callers wait in FIFO order per priority; interactive
callers always go before bulk ones, and a bulk job may be capped at a share of the rate.

Adapting. Throttles are judged per window (about a second of traffic), not one by one:

* If a window's throttled fraction exceeds the noise tolerance, the rate is cut below what
  the server actually admitted in that window (the quota, if the quota is what throttled
  us), and at least by ``BETA``.
* The next window checks the cut. If throttling did not at least halve, it was not our rate
  that caused it (random throttles, a fault): the cut is undone and the tolerance raised, so
  noise cannot walk the rate down without bound. The tolerance fades slowly (2 % a window).
  Heavy throttling (over ``NOISE_MAX``) is never taken for noise: it cuts again.
* A window ends early, after a tenth of a second, once ``HEAVY_THROTTLES`` have come back:
  the server's own burst reserve hides an overshoot for a while, so react fast once it shows.
  So does the check after a cut, if throttling is still too heavy to be noise: the cut was
  not deep enough (leaving slow start, the first estimate is inflated by that reserve).
* After a cut the rate climbs back along a CUBIC curve towards the admitted rate, reaching it
  in ``CUBIC_K`` seconds and probing above it after that (at a tenth of the curve's pace),
  but never above the configured ceiling.
* With no ceiling (quota unknown), the limiter starts at Cognito's smallest default (25/s) and
  doubles each window in which it was saturated and not throttled (slow start).

Limiters are shared: every client on the same event loop whose region and endpoint (or
``Limits.quota_group``) match draws from the same limiter per category, because the quota is
account-wide.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping

import anyio
import anyio.lowlevel
from attrs import frozen

from ._errors import QuotaDeadlineError

__all__ = [
    "CATEGORY",
    "CategoryStatistics",
    "Priority",
    "RateLimiter",
    "ShareLimit",
    "shared_limiter",
]

#: Operation -> Cognito quota category.
CATEGORY: Mapping[str, str] = {
    "UpdateUserAttributes": "UserUpdate",
    "AdminUpdateUserAttributes": "UserUpdate",
    "DeleteUserAttributes": "UserUpdate",
    "AdminDeleteUserAttributes": "UserUpdate",
    "GetUserAttributeVerificationCode": "UserUpdate",
    "VerifyUserAttribute": "UserUpdate",
    "GetUser": "UserRead",
    "AdminGetUser": "UserRead",
}

# The constants below were tuned in tests/test_limits.py's simulation (known, unknown and
# dropping quotas, and random throttles); change them there first.
BURST_SECONDS = 0.2  # our burst, well under Cognito's one second, leaves it a jitter reserve
BETA = 0.7  # a cut takes at least 30 % off the rate
SLOW_START_GROWTH = 2.0  # unknown quota: double each unthrottled, saturated window
SLOW_START_BETA = 0.35  # leaving slow start, the last doubling overshot behind the reserve
CUT_MARGIN = 0.9  # cut to 90 % of what was admitted, below the quota it measured
CUBIC_K = 2.0  # seconds to climb back to the admitted rate after a cut
PROBE = 0.1  # beyond that, probe at a tenth of the curve's pace: overshoot hides for a while
WINDOW = 1.0  # seconds of answers judged together
MIN_SAMPLES = 10  # a window with fewer answers is not judged yet
HEAVY_THROTTLES = 20  # this many throttles end a window early...
HEAVY_AFTER = 0.1  # ...once a tenth of it has passed
CONFIRM = 0.5  # a cut is confirmed if the next window's throttled fraction at least halves
NOISE_MAX = 0.4  # a throttled fraction above this is never taken for noise
TOLERANCE_DECAY = 0.98  # the learned noise tolerance fades 2 % a window
INITIAL_UNKNOWN_RATE = 25.0  # unknown quota: start at Cognito's smallest category default
MIN_RATE = 0.5  # never pace slower than one request every two seconds
RTT_SAMPLES = 200  # round trips remembered: a few seconds of traffic at Cognito's quotas
RTT_QUANTILE = 0.99  # a deadline must fit this percentile of them: the mean hides the tail
RTT_REFRESH = 20  # recompute the percentile after this many new samples, not on every call
DEADLINE_MARGIN = 0.005  # the retry loop reads its clock apart from ours: fail first, cleanly


class Priority(enum.IntEnum):
    """Who waits first for quota: per-call (interactive) work before bulk work."""

    INTERACTIVE = 0
    BULK = 1


@frozen(kw_only=True)
class CategoryStatistics:
    """One quota category as the engine sees it.

    Attributes:
        category: ``UserUpdate`` or ``UserRead``.
        rate: The rate allowed now, in requests/s; ``None`` if unlimited.
        ceiling: The configured quota; ``None`` if unknown (or unlimited and not adaptive).
        adaptive: Whether the rate adapts to throttling.
        sent: Requests let through.
        throttled: Throttle answers reported back.
        queued: Callers waiting for quota now.
        cuts: Times the rate was cut and the cut confirmed.
        noise_tolerance: The throttled fraction treated as noise, not as the quota.
    """

    category: str
    rate: float | None
    ceiling: float | None
    adaptive: bool
    sent: int
    throttled: int
    queued: int
    cuts: int
    noise_tolerance: float


class _AdaptiveRate:
    """The allowed rate over time: pure arithmetic on an injected clock, no waiting."""

    def __init__(self, ceiling: float | None, *, adaptive: bool, now: float) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.slow_start = adaptive and ceiling is None
        self.base = ceiling if ceiling is not None else INITIAL_UNKNOWN_RATE
        self.cut_at: float | None = None
        self.w_max = self.base
        # After a cut: (throttled fraction before it, and the state to restore if it was noise).
        self.pending_check: tuple[float, float, float, float | None, bool] | None = None
        self.tolerance = 0.0
        self.cuts = 0
        self.window_start = now
        self.window_sent = 0
        self.window_throttled = 0

    def rate(self, now: float) -> float:
        if self.cut_at is None:
            value = self.base
        else:
            # CUBIC: from the cut rate (t=0) up to w_max (t=K), flat around K, then probing.
            t = now - self.cut_at
            c = max(self.w_max - self.base, 0.0) / CUBIC_K**3
            if t > CUBIC_K:
                c *= PROBE  # probe above the known-good rate gently
            value = max(self.base, self.w_max + c * (t - CUBIC_K) ** 3)
        if self.ceiling is not None:
            value = min(value, self.ceiling)
        return max(value, MIN_RATE)

    def record(self, now: float, *, throttled: bool) -> None:
        """Count one answer; at the end of a window, decide whether to cut, undo or grow."""
        if not self.adaptive:
            return
        self.window_sent += 1
        self.window_throttled += throttled
        elapsed = now - self.window_start
        heavy = self.window_throttled >= HEAVY_THROTTLES and elapsed >= WINDOW * HEAVY_AFTER
        if heavy and self.pending_check is not None:
            # A check after a cut runs its full window, unless throttling is still so heavy
            # that it cannot be noise: then the cut was not deep enough, and waiting costs.
            heavy = self.window_throttled > NOISE_MAX * self.window_sent
        if (elapsed < WINDOW and not heavy) or self.window_sent < MIN_SAMPLES:
            return
        sent, thr = self.window_sent, self.window_throttled
        fraction = thr / sent
        admitted_rate = (sent - thr) / elapsed
        current = self.rate(now)
        self.window_start, self.window_sent, self.window_throttled = now, 0, 0
        self.tolerance *= TOLERANCE_DECAY  # noise estimates fade, so a real change shows later

        if self.pending_check is not None:
            f_before, w_max, base, cut_at, slow_start = self.pending_check
            self.pending_check = None
            if fraction < CONFIRM * f_before:
                self.cuts += 1  # the cut worked: our rate was the cause
                return
            if fraction <= NOISE_MAX:
                # Cutting did not help: the throttles were not about our rate. Undo.
                self.w_max, self.base, self.cut_at, self.slow_start = (
                    w_max,
                    base,
                    cut_at,
                    slow_start,
                )
                self.tolerance = min(NOISE_MAX, max(self.tolerance, fraction * 1.25))
                return
            self.cuts += 1  # still heavily throttled: the cut was not deep enough; cut again

        if fraction > self.tolerance + 0.01:
            if fraction <= NOISE_MAX:
                self.pending_check = (fraction, self.w_max, self.base, self.cut_at, self.slow_start)
            else:
                self.cuts += 1  # heavy throttling is never noise
            # If the quota throttled us, what got through is the quota: aim back at that.
            # Leaving slow start, the last doubling overshot: cut at least by half.
            beta = SLOW_START_BETA if self.slow_start else BETA
            self.slow_start = False
            self.w_max = max(MIN_RATE, min(current, admitted_rate))
            self.base = max(MIN_RATE, min(current * beta, admitted_rate * CUT_MARGIN))
            self.cut_at = now
            return

        if self.slow_start and thr == 0 and sent / elapsed >= 0.8 * current:
            self.base = current * SLOW_START_GROWTH
            self.w_max = self.base


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now

    def refill(self, now: float, rate: float) -> None:
        capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = min(capacity, self.tokens + (now - self.last) * rate)
        self.last = now


class ShareLimit:
    """Caps one bulk job at a fraction of a category's rate, leaving room for other traffic."""

    def __init__(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("max_share must be in (0, 1]")
        self.fraction = fraction
        self._bucket: _Bucket | None = None

    def _ready(self, now: float, rate: float) -> float:
        """Seconds until this share has a token (0 if it has one)."""
        share_rate = rate * self.fraction
        if self._bucket is None:
            self._bucket = _Bucket(1.0, now)
        self._bucket.refill(now, share_rate)
        return 0.0 if self._bucket.tokens >= 1.0 else (1.0 - self._bucket.tokens) / share_rate

    def _take(self) -> None:
        assert self._bucket is not None
        self._bucket.tokens -= 1.0


class _Waiter:
    __slots__ = ("priority", "share", "wake")

    def __init__(self, priority: Priority, share: ShareLimit | None) -> None:
        self.priority = priority
        self.share = share
        self.wake = anyio.Event()


class RateLimiter:
    """Paces one quota category; see the module docstring."""

    def __init__(
        self,
        category: str,
        ceiling: float | None,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.category = category
        self._clock = clock
        now = clock()
        self._unlimited = ceiling is None and not adaptive
        self._rate = _AdaptiveRate(ceiling, adaptive=adaptive, now=now)
        self._bucket = _Bucket(max(1.0, self._rate.rate(now) * BURST_SECONDS), now)
        self._queues: tuple[deque[_Waiter], deque[_Waiter]] = (deque(), deque())
        self._sent = 0
        self._throttled = 0
        self._round_trips: deque[float] = deque(maxlen=RTT_SAMPLES)
        self._round_trip = 0.0  # RTT_QUANTILE of _round_trips; 0 until one is observed
        self._new_round_trips = 0

    # -- configuration shared between clients ------------------------------------------------

    def lower_ceiling(self, ceiling: float | None) -> None:
        """A second client joined with a lower configured quota: honour the lower one."""
        current = self._rate.ceiling
        if ceiling is not None and (current is None or ceiling < current):
            self._rate.ceiling = ceiling
            self._rate.base = min(self._rate.base, ceiling)
            self._unlimited = False

    # -- pacing ------------------------------------------------------------------------------

    def round_trip(self) -> float:
        """A high percentile (``RTT_QUANTILE``) of recently observed round-trip times, in s."""
        fresh = self._new_round_trips
        if fresh >= RTT_REFRESH or (fresh and len(self._round_trips) <= RTT_REFRESH):
            ordered = sorted(self._round_trips)
            self._round_trip = ordered[min(len(ordered) - 1, int(RTT_QUANTILE * len(ordered)))]
            self._new_round_trips = 0
        return self._round_trip

    def _too_late(self, start: float, deadline: float | None, ahead: int) -> None:
        """Fail fast if a call starting at ``start`` would not be answered by ``deadline``."""
        if deadline is None:
            return
        round_trip = self.round_trip()
        if start + round_trip + DEADLINE_MARGIN > deadline:
            rate = self._rate.rate(self._clock())
            raise QuotaDeadlineError(
                f"the {self.category} quota ({rate:.1f} requests/s, {ahead} waiting ahead) "
                f"cannot fit this call and its round trip ({round_trip * 1000:.0f} ms) before "
                "its deadline; it was not sent",
                code="TooManyRequestsException",
            )

    def rate(self) -> float | None:
        """The rate allowed now; None if unlimited."""
        return None if self._unlimited else self._rate.rate(self._clock())

    def _head(self) -> _Waiter | None:
        for queue in self._queues:
            if queue:
                return queue[0]
        return None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.wake.set()

    def _wait_time(self, now: float, share: ShareLimit | None) -> float:
        rate = self._rate.rate(now)
        self._bucket.refill(now, rate)
        wait = 0.0 if self._bucket.tokens >= 1.0 else (1.0 - self._bucket.tokens) / rate
        if share is not None:
            wait = max(wait, share._ready(now, rate))
        return wait

    def _take(self, share: ShareLimit | None) -> None:
        self._bucket.tokens -= 1.0
        if share is not None:
            share._take()
        self._sent += 1

    async def acquire(
        self,
        priority: Priority = Priority.INTERACTIVE,
        *,
        deadline: float | None = None,
        share: ShareLimit | None = None,
    ) -> None:
        """Wait for this category's quota to allow one request.

        Args:
            priority: Interactive callers are served before bulk callers.
            deadline: A :func:`time.monotonic`-style instant (on this limiter's clock) by which
                the call must be answered. If the expected start plus a high percentile of
                recent round trips (:meth:`round_trip`) would pass it, raise
                :class:`QuotaDeadlineError` at once instead, and again at the turn of a call
                that waited if the rate fell meanwhile: the call is never sent.
            share: A bulk job's cap, drawn from as well as the category's bucket.

        Raises:
            QuotaDeadlineError: The quota cannot fit this call and its round trip before its
                deadline.
        """
        if self._unlimited:
            self._sent += 1
            return
        now = self._clock()
        if self._head() is None and self._wait_time(now, share) == 0.0:
            self._too_late(now, deadline, 0)
            self._take(share)
            return
        if deadline is not None:
            rate = self._rate.rate(now)
            ahead = sum(len(q) for q in self._queues[: priority + 1])
            self._too_late(now + max(0.0, ahead + 1 - self._bucket.tokens) / rate, deadline, ahead)
        waiter = _Waiter(priority, share)
        queue = self._queues[priority]
        queue.append(waiter)
        try:
            while True:
                now = self._clock()
                if self._head() is waiter:
                    wait = self._wait_time(now, share)
                    # The rate may have fallen since the estimate: check again at every turn.
                    self._too_late(now + wait, deadline, 0)
                    if wait == 0.0:
                        queue.popleft()
                        self._take(share)
                        self._wake_head()
                        return
                    waiter.wake = anyio.Event()
                    with anyio.move_on_after(wait):
                        await waiter.wake.wait()
                else:
                    waiter.wake = anyio.Event()
                    if deadline is None:
                        await waiter.wake.wait()
                        continue
                    # Give up while the call can still fail cleanly, before its deadline.
                    give_up = deadline - self.round_trip() - DEADLINE_MARGIN - now
                    with anyio.move_on_after(max(give_up, 0.0)) as scope:
                        await waiter.wake.wait()
                    if scope.cancelled_caught:
                        ahead = sum(len(q) for q in self._queues[: priority + 1]) - 1
                        self._too_late(deadline, deadline, ahead)
        except BaseException:
            if waiter in queue:
                was_head = self._head() is waiter
                queue.remove(waiter)
                if was_head:
                    self._wake_head()
            raise

    # -- feedback ----------------------------------------------------------------------------

    def record(self, *, throttled: bool, latency: float | None = None) -> None:
        """Report one answer for this category.

        Args:
            throttled: Whether the answer was a throttle.
            latency: Seconds from the request's admission to its answer, if known; a high
                percentile of these is what a deadline must leave room for.
        """
        if latency is not None:
            self._round_trips.append(latency)
            self._new_round_trips += 1
        if throttled:
            self._throttled += 1
        if not self._rate.adaptive:
            return  # a fixed rate: nothing to learn
        now = self._clock()
        before = self._rate.rate(now)
        self._rate.record(now, throttled=throttled)
        if self._rate.rate(now) > before:
            self._wake_head()  # the rate rose: the sleeping head may go sooner

    def statistics(self) -> CategoryStatistics:
        """A snapshot of this category's state."""
        r = self._rate
        return CategoryStatistics(
            category=self.category,
            rate=self.rate(),
            ceiling=r.ceiling,
            adaptive=r.adaptive,
            sent=self._sent,
            throttled=self._throttled,
            queued=len(self._queues[0]) + len(self._queues[1]),
            cuts=r.cuts,
            noise_tolerance=round(r.tolerance, 4),
        )


_SHARED: anyio.lowlevel.RunVar[dict[tuple[str, str], RateLimiter]] = anyio.lowlevel.RunVar(
    "aiocognito_limiters"
)


def shared_limiter(
    group: str, category: str, ceiling: float | None, *, adaptive: bool
) -> RateLimiter:
    """The limiter for ``(group, category)`` on the current event loop, created on first use."""
    try:
        registry = _SHARED.get()
    except LookupError:
        registry = {}
        _SHARED.set(registry)
    key = (group, category)
    limiter = registry.get(key)
    if limiter is None:
        limiter = registry[key] = RateLimiter(category, ceiling, adaptive=adaptive)
    else:
        limiter.lower_ceiling(ceiling)
    return limiter
