"""The adaptive rate, simulated against a token-bucket server on a virtual clock.

Nothing here waits: a simulated client paces with the limiter's own bucket and rate code, a
simulated server admits with the fake's token bucket, and answers come back 20 ms later.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import attrs

from aiocognito._limits import _AdaptiveRate, _Bucket
from aiocognito.testing._quota import TokenBucket

STEP = 0.001
RTT = 0.02


@attrs.define
class Trace:
    """Per simulated second: requests sent, admitted, throttled; and the allowed rate."""

    sent: list[int]
    admitted: list[int]
    throttled: list[int]
    rate: list[float]

    def admitted_rate(self, start: int, end: int) -> float:
        return sum(self.admitted[start:end]) / (end - start)

    def throttled_share(self, start: int, end: int) -> float:
        return sum(self.throttled[start:end]) / max(sum(self.sent[start:end]), 1)


def simulate(
    seconds: int,
    *,
    ceiling: float | None,
    quota: Callable[[float], float],
    noise: float = 0.0,
    seed: int = 1,
) -> Trace:
    now = 0.0
    clock = lambda: now  # noqa: E731 - the simulation's clock
    limiter = _AdaptiveRate(ceiling, adaptive=True, now=0.0)
    bucket = _Bucket(1.0, 0.0)
    server = TokenBucket(quota(0.0), clock)
    rng = random.Random(seed)
    answers: list[tuple[float, bool]] = []
    trace = Trace([0] * seconds, [0] * seconds, [0] * seconds, [0.0] * seconds)
    for tick in range(int(seconds / STEP)):
        now = tick * STEP
        second = int(now)
        q = quota(now)
        if q != server.rate:
            server.rate, server.capacity = q, q
        while answers and answers[0][0] <= now:
            _, throttled = heapq.heappop(answers)
            limiter.record(now, throttled=throttled)
        rate = limiter.rate(now)
        bucket.refill(now, rate)
        while bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            throttled = rng.random() < noise or not server.try_take()
            trace.sent[second] += 1
            trace.throttled[second] += throttled
            trace.admitted[second] += not throttled
            heapq.heappush(answers, (now + RTT, throttled))
        trace.rate[second] = rate
    return trace


def test_known_quota_runs_at_the_quota_without_throttles() -> None:
    trace = simulate(20, ceiling=250, quota=lambda _t: 250)
    assert trace.admitted_rate(1, 20) >= 0.99 * 250
    assert trace.throttled_share(0, 20) == 0.0


def test_unknown_quota_is_discovered() -> None:
    for quota in (100.0, 250.0, 400.0):

        def constant(_t: float, q: float = quota) -> float:
            return q

        # The benchmark's shape: 20 s of work against a quota nobody told the client.
        trace = simulate(20, ceiling=None, quota=constant)
        assert trace.admitted_rate(5, 20) >= 0.90 * quota
        assert trace.throttled_share(0, 20) <= 0.05


def test_converges_after_the_quota_drops_and_recovers_after_it_returns() -> None:
    # Another caller starts using 100/s of the account's 250/s at t=10 and stops at t=40.
    trace = simulate(60, ceiling=250, quota=lambda t: 150 if 10 <= t < 40 else 250)
    assert trace.admitted_rate(15, 40) >= 0.95 * 150
    # Probing above the admitted rate costs a few throttles per cycle, never many.
    assert trace.throttled_share(15, 40) <= 0.08
    assert max(trace.rate[15:40]) <= 1.5 * 150
    assert trace.admitted_rate(46, 60) >= 0.90 * 250
    assert max(trace.rate) <= 250  # never above the configured ceiling


def test_random_throttles_do_not_walk_the_rate_down() -> None:
    # 15 % of answers are throttles that have nothing to do with the rate.
    trace = simulate(60, ceiling=250, quota=lambda _t: 10_000, noise=0.15)
    assert min(trace.rate[10:]) >= 0.6 * 250
    assert sum(trace.rate[10:]) / 50 >= 0.85 * 250
