"""The adaptive rate, simulated against a token-bucket server on a virtual clock.

Nothing here waits: each simulated client paces with the limiter's own bucket and rate code, a
simulated server admits with the fake's token bucket, and answers come back after the client's
own round-trip time (each way half of it, with jitter). Several clients may share the server's
one bucket, as processes on one account share Cognito's quota; each has its own monotonic clock
(an offset: the limiter must only ever use differences, or the wall clock they share), its own
start time and its own latency.

Every client always has work. A throttled call is retried after the default retry policy's
backoff (full jitter, 0.1 s doubling), at the client's first free token after that and before
new work (the harshest order for a call's streak of throttles). It counts as failed after
``MAX_ATTEMPTS`` throttles, as the default retry policy gives up after 8 attempts.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import attrs
import pytest

from aiocognito import DeadlineExceededError, Limits, QuotaDeadlineError, RetryPolicy
from aiocognito._dispatch import Dispatcher
from aiocognito._limits import RateLimiter, _AdaptiveRate, _Bucket
from aiocognito.testing._quota import TokenBucket
from tests.fake_helpers import ManualClock
from tests.fakes import FakeTransport
from tests.virtual_time import virtual_time

STEP = 0.001
RTT = 0.02
MAX_ATTEMPTS = 8  # RetryPolicy's defaults
BACKOFF_BASE = 0.1
BACKOFF_CAP = 20.0


@attrs.define
class Client:
    """One simulated process: its limiter, and per simulated second what it sent and got."""

    rate_state: _AdaptiveRate
    bucket: _Bucket
    offset: float
    start: float
    rtt: float
    sent: list[int]
    admitted: list[int]
    throttled: list[int]
    rate: list[float]
    retries: list[tuple[float, int]] = attrs.field(factory=list)  # (due, attempt) heap
    failed: int = 0
    longest_streak: int = 0
    work: int | None = None  # updates left to start; None: always more
    first_sent: float | None = None
    last_answer: float = 0.0  # when the last call (admitted or given up on) ended

    def wall(self) -> float:
        """From this client's first request to its last answer, as the benchmark times it."""
        return self.last_answer - (self.first_sent or 0.0)

    def answered(self, now: float, throttled: bool, attempt: int, rng: random.Random) -> None:
        """An answer came back: tell the limiter; a throttled call is retried, or fails."""
        self.rate_state.record(now + self.offset, throttled=throttled)
        if not throttled or attempt >= MAX_ATTEMPTS:
            self.last_answer = now
        if throttled:
            self.longest_streak = max(self.longest_streak, attempt)
            if attempt >= MAX_ATTEMPTS:
                self.failed += 1
            else:
                backoff = rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
                heapq.heappush(self.retries, (now + backoff, attempt + 1))

    def next_attempt(self, now: float) -> int | None:
        """The attempt to send at ``now``: a retry that fell due first, then new work."""
        if self.retries and self.retries[0][0] <= now:
            return heapq.heappop(self.retries)[1]
        if self.work is not None:
            if self.work == 0:
                return None
            self.work -= 1
        if self.first_sent is None:
            self.first_sent = now
        return 1


@attrs.define
class Trace:
    """The whole run, per simulated second, summed over clients; and each client's own."""

    clients: list[Client]

    def _sum(self, field: str, start: int, end: int) -> int:
        return sum(sum(getattr(c, field)[start:end]) for c in self.clients)

    @property
    def sent(self) -> list[int]:
        return [sum(c.sent[s] for c in self.clients) for s in range(len(self.clients[0].sent))]

    @property
    def rate(self) -> list[float]:
        return self.clients[0].rate

    def admitted_rate(self, start: int, end: int) -> float:
        return self._sum("admitted", start, end) / (end - start)

    def throttled_share(self, start: int, end: int) -> float:
        return self._sum("throttled", start, end) / max(self._sum("sent", start, end), 1)

    def shares(self, start: int, end: int) -> list[float]:
        return [sum(c.admitted[start:end]) / (end - start) for c in self.clients]

    def fairness(self, start: int, end: int) -> float:
        """Jain's index of the clients' admitted rates: 1 is equal shares, 1/N one client."""
        x = self.shares(start, end)
        return sum(x) ** 2 / (len(x) * sum(v * v for v in x)) if any(x) else 0.0

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.clients)

    def min_rate(self, start: int, end: int) -> float:
        return min(min(c.rate[start:end]) for c in self.clients)

    @property
    def wall(self) -> float:
        """The longest of the clients' own wall times (the benchmark's aggregate wall)."""
        return max(c.wall() for c in self.clients)

    def wall_fairness(self, work: int) -> float:
        """Jain's index of the clients' own rates, ``work`` updates over their wall times."""
        x = [work / c.wall() for c in self.clients]
        return sum(x) ** 2 / (len(x) * sum(v * v for v in x))


def _population(
    seconds: int, ceiling: float | None, seed: int, rtts: Sequence[float], stagger: float
) -> list[Client]:
    clocks = random.Random(-seed)  # drawn apart, so that one client's noise stays as it was
    population = []
    for i, rtt in enumerate(rtts):
        offset = clocks.uniform(-1e6, 1e6)  # each process's monotonic clock has its own zero
        start = i * stagger
        population.append(
            Client(
                _AdaptiveRate(
                    ceiling,
                    adaptive=True,
                    now=start + offset,
                    # The wall clock: shared, give or take the few ms NTP leaves between hosts.
                    wall_offset=-offset + clocks.uniform(-0.01, 0.01),
                ),
                _Bucket(1.0, start + offset, dither=random.Random(seed * 100 + i)),
                offset,
                start,
                rtt,
                [0] * seconds,
                [0] * seconds,
                [0] * seconds,
                [0.0] * seconds,
            )
        )
    return population


def _throttles(server: TokenBucket, rng: random.Random, noise: float, *, spends: bool) -> bool:
    """Whether the server throttles one request: at random (spending a token or not), or
    for want of a token."""
    if rng.random() < noise:
        if spends:
            server.try_take()
        return True
    return not server.try_take()


def simulate(
    seconds: int,
    *,
    ceiling: float | None,
    quota: Callable[[float], float],
    noise: float = 0.0,
    noise_spends: bool = False,
    seed: int = 1,
    clients: int = 1,
    rtts: Sequence[float] | None = None,
    stagger: float = 0.0,
    work: int | None = None,
) -> Trace:
    """Run ``clients`` limiters against one server bucket for ``seconds`` of virtual time.

    Args:
        ceiling: What every client is told the quota is; None if not told.
        quota: The server's quota at a given second.
        noise: The chance that a request is throttled at random, whatever the quota.
        noise_spends: Whether a random throttle spends a token of the quota, as in the fake
            server (and the benchmarks); by default it does not.
        clients: Limiters sharing the server's bucket.
        rtts: Each client's round-trip time; by default spread from 15 to 45 ms.
        stagger: The seconds between one client's start and the next's.
        work: Each client's updates, as in the benchmark's workers scenarios; by default
            every client always has more. A client with no work left sends only its retries.
    """
    rng = random.Random(seed)
    now = 0.0
    server = TokenBucket(quota(0.0), lambda: now)
    if rtts is None:
        rtts = [RTT] if clients == 1 else [0.015 + 0.03 * i / (clients - 1) for i in range(clients)]
    population = _population(seconds, ceiling, seed, rtts, stagger)
    for client in population:
        client.work = work
    jitter = random.Random(seed + 1)
    # Requests on their way, (when, order, client, attempt, second sent), and answers on
    # theirs, (when, client, throttled, attempt). Each way takes half the client's round
    # trip, give or take half of that: without jitter, a client paced at the quota's own rate
    # would meet every token just as it refills and starve the others.
    requests: list[tuple[float, int, int, int, int]] = []
    answers: list[tuple[float, int, bool, int]] = []
    order = 0
    for tick in range(int(seconds / STEP)):
        now = tick * STEP
        second = int(now)
        q = quota(now)
        if q != server.rate:
            server.rate, server.capacity = q, q
        while requests and requests[0][0] <= now:
            _, _, i, attempt, sent_in = heapq.heappop(requests)
            client = population[i]
            throttled = _throttles(server, rng, noise, spends=noise_spends)
            client.throttled[sent_in] += throttled
            client.admitted[sent_in] += not throttled
            back = now + client.rtt / 2 * jitter.uniform(0.5, 1.5)
            heapq.heappush(answers, (back, i, throttled, attempt))
        while answers and answers[0][0] <= now:
            _, i, throttled, attempt = heapq.heappop(answers)
            population[i].answered(now, throttled, attempt, rng)
        for i, client in enumerate(population):
            if now < client.start:
                continue
            local = now + client.offset
            rate = client.rate_state.rate(local)
            client.bucket.refill(local, rate)
            while client.bucket.ready():
                next_attempt = client.next_attempt(now)
                if next_attempt is None:
                    break  # nothing to send until a retry falls due
                client.bucket.take()
                client.sent[second] += 1
                order += 1
                there = now + client.rtt / 2 * jitter.uniform(0.5, 1.5)
                heapq.heappush(requests, (there, order, i, next_attempt, second))
            client.rate[second] = rate
    if work is not None:
        for client in population:
            if sum(client.admitted) + client.failed < work:
                client.last_answer = seconds  # not finished: as the benchmark's time limit
    return Trace(population)


# Cases the limiter does not meet yet (issue 12): eight limiters, or random throttles on top
# of contention, still leave shares uneven; several limiters on a small quota throttle too
# much. Strict, so that a fix shows here.
GAP = pytest.mark.xfail(strict=True, reason="issue 12: not met by the current limiter")


def _gaps(cases: Sequence[tuple[object, ...]], failing: set[tuple[object, ...]]) -> list[Any]:
    return [pytest.param(*c, marks=GAP) if c in failing else pytest.param(*c) for c in cases]


# ------------------------------------------------------------------------------------------
# One limiter


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
        assert trace.failed == 0


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


@pytest.mark.parametrize("quota", [150.0, 250.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leaving_slow_start_does_not_climb_back_into_the_overshoot(quota: float, seed: int) -> None:
    # Slow start's last doubling overshoots (200/s, then 400/s, on 150/s), and the server's
    # burst reserve hides it until it runs dry: the rate the window admitted is the reserve's,
    # not the quota's. Climbing back to it overshot again, a second later, worse (40 % of a
    # second's requests throttled). No second may throttle more than the first overshoot.
    trace = simulate(12, ceiling=None, quota=lambda _t: quota, seed=seed)
    assert max(trace.throttled_share(s, s + 1) for s in range(10)) <= 0.2
    assert trace.admitted_rate(6, 12) >= 0.9 * quota


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_unknown_quota_is_found_under_random_throttles(seed: int) -> None:
    # The case: 150/s nobody told the client, and 10 % of answers throttled at random.
    # Throttling never drops to zero, so slow start must judge whether it rose with the rate.
    trace = simulate(30, ceiling=None, quota=lambda _t: 150, noise=0.10, seed=seed)
    ceiling = 150 * (1 - 0.10)  # each random throttle spends a token of the quota
    assert trace.admitted_rate(5, 30) >= 0.90 * ceiling
    assert trace.failed == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_known_quota_under_random_throttles_stays_near_it(seed: int) -> None:
    trace = simulate(30, ceiling=150, quota=lambda _t: 150, noise=0.10, seed=seed)
    assert trace.admitted_rate(2, 30) >= 0.95 * 150 * (1 - 0.10)
    assert trace.failed == 0


# The benchmark's noisy-known case, where (as in the fake server) a random throttle spends a
# token of the quota: sending at the quota, the retries of random throttles meet the quota's
# own throttles. A cut that lowers those is confirmed, and for CONTENTION_MEMORY windows
# after it the 10 % of noise counts as contention: each window cut again, from 150/s to about
# 30/s in ten seconds (seeds 7 and 8; two of three benchmark runs on a loaded machine), until
# cuts that take 30 % off without lowering throttling were taken for noise. Seed 8 still falls
# to 74/s before that, and its wall is 1.29 x ideal.
RATCHET = [(seed,) for seed in range(1, 9)]


@pytest.mark.parametrize("seed", _gaps(RATCHET, {(8,)}))
def test_random_throttles_that_spend_quota_do_not_ratchet_a_known_quota_down(seed: int) -> None:
    trace = simulate(
        40, ceiling=150, quota=lambda _t: 150, noise=0.10, noise_spends=True, seed=seed, work=3000
    )
    assert trace.wall <= 1.25 * 3000 / 150
    assert min(trace.rate[2:20]) >= 0.5 * 150
    assert trace.failed == 0


def _window(rate: _AdaptiveRate, start: float, answers: int, throttles: int) -> float:
    """Feed one second of answers, ``throttles`` of them spread evenly; the next second."""
    for i in range(answers):
        rate.record(
            start + (i + 1) / answers,
            throttled=i * throttles // answers != (i + 1) * throttles // answers,
        )
    return start + 1.0


def _confirmed_cut(rate: _AdaptiveRate) -> float:
    """A told 150/s quota: a window 15 % throttled cuts, the next at 5 % confirms the cut."""
    now = _window(rate, 0.0, 150, 23)
    assert rate.rate(now) < 150
    now = _window(rate, now, 120, 6)
    assert rate.contended  # confirmed: for a while, throttling counts as contention
    return now


def test_cuts_that_do_not_lower_throttling_are_noise_even_after_a_confirmed_cut() -> None:
    # The ratchet, step by step: after a confirmed cut, 10 % of every window is throttled
    # whatever the rate. Each window cuts again, until the rate is well below the confirmed
    # cut's and the throttling has not fallen: then it is noise.
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    now = _confirmed_cut(rate)
    confirmed = rate.base
    lowest = 150.0
    for _ in range(8):
        sent = round(rate.rate(now))
        lowest = min(lowest, sent)
        now = _window(rate, now, sent, round(0.1 * sent))
    assert rate.tolerance >= 0.05  # learned as the background level
    assert lowest >= 0.45 * 150  # two cuts past the confirmed one (126/s): not ten, to 30/s
    assert rate.rate(now) >= confirmed  # the cuts since the confirmed one were undone
    for _ in range(10):  # and the same noise cuts no more: the rate climbs back to the quota
        now = _window(rate, now, round(rate.rate(now)), round(0.1 * rate.rate(now)))
    assert rate.rate(now) == 150.0


def test_throttling_that_falls_with_the_rate_is_never_taken_for_noise() -> None:
    # Contention: the same confirmed cut, but then the throttling is the share of the rate
    # above what the quota leaves this process (60/s): it falls as the cuts go on.
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    now = _confirmed_cut(rate)
    for _ in range(8):
        sent = round(rate.rate(now))
        now = _window(rate, now, sent, max(0, sent - 60))
    assert rate.tolerance == 0.0
    assert rate.rate(now) <= 80


def _noise_taught(ceiling: float = 150.0) -> tuple[_AdaptiveRate, float]:
    """A limiter told ``ceiling`` that has learned 10 % of throttles as noise: two cuts that
    did not lower it, each undone."""
    rate = _AdaptiveRate(ceiling, adaptive=True, now=0.0)
    now = 0.0
    for _ in range(4):
        sent = round(rate.rate(now))
        now = _window(rate, now, sent, round(0.1 * sent))
    assert rate.rate(now) == ceiling
    assert rate.tolerance == pytest.approx(0.1, abs=0.005)
    return rate, now


def _binomial_window(rate: _AdaptiveRate, now: float, share: float, rng: random.Random) -> float:
    """One second at the limiter's rate, each answer throttled with probability ``share``."""
    sent = round(rate.rate(now))
    return _window(rate, now, sent, sum(rng.random() < share for _ in range(sent)))


def test_one_window_above_learned_noise_does_not_cut_but_two_in_a_row_do() -> None:
    # At 10 % of noise, one window in a hundred reaches 17 % by chance; the check after a
    # cut cannot tell the next window's return to 10 % from a fall the cut made, so such a
    # cut was kept about half the time (a dip of some seconds, mid-run, in most benchmark
    # runs). A rate that is too high shows again in the next windows; chance does not.
    rate, now = _noise_taught()
    now = _window(rate, now, 150, 27)  # 18 %: noise gives as many one window in 300
    assert rate.rate(now) == 150.0
    for _ in range(2):
        now = _window(rate, now, 150, 15)  # back to 10 %: it was chance
        assert rate.rate(now) == 150.0
    now = _window(rate, now, 150, 27)
    now = _window(rate, now, 150, 27)  # twice in a row: the rate is too high
    assert rate.rate(now) < 150.0


def test_throttling_too_high_every_other_window_is_cut() -> None:
    # A quota exceeded in every other window (20 %, 10 %, 20 %...: the server's refill and
    # our windows out of step) is exceeded all the same. When each calm window cleared the
    # suspicion, no cut came in a minute, and the excess throttles fell on the quota's
    # other users.
    rate, now = _noise_taught()
    now = _window(rate, now, 150, 30)
    now = _window(rate, now, 150, 15)
    assert rate.rate(now) == 150.0
    now = _window(rate, now, 150, 30)
    assert rate.rate(now) < 150.0


def test_a_mild_rise_long_ago_is_no_pair_for_a_new_one() -> None:
    # A mild rise, then an hour's pause: the next window is judged on its own, not as the
    # second of a pair at the looser REPEAT_ALPHA.
    rate, now = _noise_taught()
    now = _window(rate, now, 150, 27)
    now = _window(rate, now + 3600.0, 150, 22)  # 15 %: plausible noise on its own
    assert rate.rate(now) == 150.0


def test_heavy_throttling_over_learned_noise_still_cuts_at_once() -> None:
    rate, now = _noise_taught()
    now = _window(rate, now, 150, 60)  # 40 %: never noise
    assert rate.rate(now) < 150.0


@pytest.mark.parametrize("seed", range(4))
def test_noise_at_a_told_quota_is_learned_at_its_mean_not_its_calm_tail(seed: int) -> None:
    # Windows of 150 answers, each throttled with probability 10 %, at the told quota. When
    # only the windows calmer than the level were learned, the level sank to their mean
    # (6.5 to 8 % after a minute), and one window in five then passed for a rise: 19 of 20
    # seeds cut at least once in a minute.
    rate, now = _noise_taught()
    rng = random.Random(seed)
    levels = []
    for _ in range(60):
        now = _binomial_window(rate, now, 0.1, rng)
        levels.append(rate.tolerance)
    assert min(levels[20:]) >= 0.08
    assert max(levels) <= 0.11  # about what the failed cuts taught, never far above


@pytest.mark.parametrize("seed", range(6))
def test_noise_is_learned_near_its_mean_from_a_fresh_limiter(seed: int) -> None:
    # The same from the start, where two failed cuts teach the level from two windows (10 %
    # reads as 7.5 to 14 %). Capped at exactly that, the level stayed at 7.5 % for good, and
    # the rate spent 37 of 300 seconds below the quota.
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    rng = random.Random(seed)
    now, levels, below = 0.0, [], 0
    for _ in range(300):
        now = _binomial_window(rate, now, 0.1, rng)
        levels.append(rate.tolerance)
        below += rate.rate(now) < 150
    assert statistics.mean(levels[100:]) >= 0.082
    assert max(levels[100:]) <= 0.115
    assert below <= 20


def _creep_until_cut(
    rate: _AdaptiveRate, now: float, rng: random.Random, start: float, step: float
) -> float:
    """Throttling that creeps up from ``start`` by ``step`` a second, at a told 150/s, until
    the first cut (within 400 seconds); the share throttled then."""
    for second in range(400):
        share = start + step * second
        now = _binomial_window(rate, now, share, rng)
        if rate.rate(now) < 150:
            return share
    raise AssertionError(f"no cut in 400 s; throttling crept to {share:.3f}")


@pytest.mark.parametrize("seed", range(1, 4))
def test_throttling_that_creeps_up_at_a_told_quota_is_not_learned_as_noise(seed: int) -> None:
    # Another process takes a tenth of a per cent more of the quota each second: throttling
    # creeps from 10 % up, too slowly for any one window to rise over the level. Learned
    # window by window, the level followed it to 18 %, and the first cut came at 22 to 24 %.
    rate, now = _noise_taught()
    share = _creep_until_cut(rate, now, random.Random(seed), 0.1, 0.001)
    assert share <= 0.18
    assert rate.tolerance <= 0.12


@pytest.mark.parametrize("seed", range(6))
def test_a_level_that_subsided_is_no_room_for_a_creep(seed: int) -> None:
    # 10 % of noise is learned, then it subsides to 3 % (the level follows it down), and then
    # contention creeps up. How high the level may be learned must come down with it: held
    # at what the first failed cuts taught, the level followed the creep to 10 % and the
    # first cut came at up to 13 %.
    rate, now = _noise_taught()
    rng = random.Random(seed)
    for _ in range(40):
        now = _binomial_window(rate, now, 0.03, rng)
    assert rate.rate(now) == 150
    share = _creep_until_cut(rate, now, rng, 0.03, 0.0005)
    assert share <= 0.07
    assert rate.tolerance <= 0.04


def test_a_pause_does_not_pass_for_a_server_that_admitted_nothing() -> None:
    # A web backend's quiet night: the window's first answer comes long after the window
    # opened. Counted from then, the idle time made the admitted rate about 5/s: a burst
    # throttled 13 % cut 150/s to 34/s (the deepest one cut may go), and the long-run rate
    # fell to 11/s.
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    now = _window(rate, 0.0, 150, 0)
    now = _window(rate, now, 150, 0)
    now = _window(rate, now + 30.0, 150, 20)
    assert rate.rate(now) == pytest.approx(150 * 0.7)  # BETA's cut, as after no pause
    assert rate.long_run is not None
    assert rate.long_run >= 120


@pytest.mark.parametrize(("batch", "every"), [(40, 0.7), (60, 1.0), (100, 1.0)])
def test_a_sender_in_batches_is_measured_at_its_rate(batch: int, every: float) -> None:
    # Requests that go out in batches (a job that reads a page of rows, then sends them):
    # the gap between batches is no pause, as the answers after it stand for requests sent
    # all through it. Left out of the window's time, 40 every 0.7 s (57/s) read as 480/s,
    # and the long-run rate's floors then held cuts far above the share left to it.
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    now = 0.0
    for _ in range(int(120 / every)):
        now += every
        for i in range(batch):
            rate.record(now + 0.02 + i * 0.0005, throttled=False)
    assert rate.long_run is not None
    assert rate.long_run <= 1.2 * batch / every


def test_a_burst_at_the_start_is_not_taken_for_the_long_run_rate() -> None:
    # Gathered calls go out together half a second after the client opened: the server's
    # burst reserve admits the first 40 at once, then heavy throttling ends the window. Had
    # the window started at its first answer, it would have measured 300/s admitted, taken
    # as the long-run rate, whose floors then held four such processes far above their
    # share (40 % of requests throttled in the workers benchmark, against 13 %).
    rate = _AdaptiveRate(150.0, adaptive=True, now=0.0)
    now = 0.5
    for i in range(40):
        rate.record(now + i * 0.0005, throttled=False)
    for i in range(60):
        rate.record(now + 0.02 + i * 0.0017, throttled=True)
    assert rate.cuts == 1  # heavy throttling ended the window
    assert rate.long_run is not None
    assert rate.long_run <= 150


# ------------------------------------------------------------------------------------------
# Several limiters on one quota


def _judge_contention(trace: Trace, quota: float, noise: float, seconds: int) -> None:
    settle = 10
    # Together they use the quota: the aggregate of their admitted requests is near it...
    assert trace.admitted_rate(settle, seconds) >= 0.85 * quota * (1 - noise)
    # ...nobody's call fails, and nobody collapses...
    assert trace.failed == 0
    assert trace.min_rate(settle, seconds) >= 0.25 * quota / len(trace.clients)
    # ...and they share it fairly (the bar for the benchmark).
    assert trace.fairness(settle, seconds) >= 0.9


ALL = [(n, noise) for noise in (0.0, 0.10) for n in (1, 2, 4, 8)]


@pytest.mark.parametrize(("n", "noise"), _gaps(ALL, {(8, 0.0), (8, 0.1)}))
def test_limiters_told_the_whole_quota_converge_on_fair_shares(n: int, noise: float) -> None:
    # Every process is told the account's whole quota (what a web app's workers are told).
    trace = simulate(
        40, ceiling=150, quota=lambda _t: 150, noise=noise, clients=n, stagger=0.37, seed=n
    )
    _judge_contention(trace, 150, noise, 40)


@pytest.mark.parametrize(("n", "noise"), _gaps(ALL, {(8, 0.0), (8, 0.1)}))
def test_limiters_told_nothing_converge_on_fair_shares(n: int, noise: float) -> None:
    trace = simulate(
        40, ceiling=None, quota=lambda _t: 150, noise=noise, clients=n, stagger=0.37, seed=n
    )
    _judge_contention(trace, 150, noise, 40)


@pytest.mark.parametrize("n", _gaps([(2,), (4,), (8,)], {(2,), (4,), (8,)}))
def test_limiters_on_the_default_quota_share_it(n: int) -> None:
    # Every worker on 25/s, on a 25/s quota, each pacing itself alone (share_on_host=False, or
    # on several hosts). Out of the box, one host's workers share the bucket instead
    # (tests/test_share_on_host.py); these limiters alone do not meet the bar.
    trace = simulate(40, ceiling=25, quota=lambda _t: 25, clients=n, stagger=0.37, seed=n)
    assert trace.admitted_rate(10, 40) >= 0.85 * 25
    assert trace.throttled_share(0, 40) <= 0.08
    assert trace.failed == 0


def test_a_late_arrival_gets_its_share() -> None:
    # Three processes run at the quota; a fourth starts 15 s later and must win its share.
    trace = simulate(50, ceiling=150, quota=lambda _t: 150, clients=4, stagger=0.0, seed=4)
    late = simulate(50, ceiling=150, quota=lambda _t: 150, clients=4, stagger=5.0, seed=4)
    assert trace.fairness(30, 50) >= 0.95
    assert late.fairness(35, 50) >= 0.9
    assert late.failed == 0


# The benchmark's workers scenarios: every process has its share of the updates, and the
# aggregate wall time is the longest of the processes' own. Start-up is staggered, as
# interpreters on a busy machine start.


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_four_workers_told_the_whole_quota_finish_together(seed: int) -> None:
    # The bar, in every run: 0 failed, wall <= 1.5 x ideal, Jain's index >= 0.9.
    work, quota = 750, 150.0
    trace = simulate(
        60, ceiling=quota, quota=lambda _t: quota, clients=4, stagger=0.37, seed=seed, work=work
    )
    assert trace.failed == 0
    assert trace.wall <= 1.5 * (4 * work / quota)
    assert trace.wall_fairness(work) >= 0.9


@pytest.mark.parametrize("seed", _gaps([(1,), (2,), (3,)], {(1,), (2,), (3,)}))
def test_four_workers_on_the_default_quota_finish_without_much_throttling(seed: int) -> None:
    # Four workers on 25/s each pacing alone, on a 25/s quota: wall <= 1.3 x ideal, and at most
    # 8 % of requests throttled (the start, when each believes the quota is its own, counts).
    # Out of the box, one host's workers share instead (0 %: tests/test_share_on_host.py).
    work, quota = 250, 25.0
    trace = simulate(
        100, ceiling=quota, quota=lambda _t: quota, clients=4, stagger=0.37, seed=seed, work=work
    )
    assert trace.failed == 0
    assert trace.wall <= 1.3 * (4 * work / quota)
    assert trace.throttled_share(0, 100) <= 0.08


# ------------------------------------------------------------------------------------------
# Clients sharing one limiter


def test_a_ceiling_lowered_for_one_client_is_raised_back_when_it_leaves() -> None:
    clock = ManualClock()
    limiter = RateLimiter("UserUpdate", 25.0, clock=clock)  # the first client: 25/s
    limiter.lower_ceiling(None)  # a client that was not told a quota binds nothing
    limiter.lower_ceiling(10.0)  # a client told 10/s: the lowest binds
    assert limiter.rate() == 10.0
    limiter.lower_ceiling(20.0)
    assert limiter.rate() == 10.0
    limiter.release_ceiling(10.0)  # it left: the lowest of those left binds
    assert limiter.rate() == 20.0
    assert limiter.statistics().ceiling == 20.0
    limiter.release_ceiling(20.0)
    limiter.release_ceiling(None)
    assert limiter.rate() == 25.0


def test_a_fixed_rate_set_by_one_client_is_lifted_when_it_leaves() -> None:
    limiter = RateLimiter("UserUpdate", None, adaptive=False, clock=ManualClock())
    assert limiter.rate() is None  # unlimited
    limiter.lower_ceiling(5.0)
    assert limiter.rate() == 5.0
    limiter.release_ceiling(5.0)
    assert limiter.rate() is None


# ------------------------------------------------------------------------------------------
# Deadlines include the round trip


class _SlowTransport(FakeTransport):
    """Answers every call after ``latency`` seconds."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Sequence[str] = ()
    ) -> dict[str, Any]:
        await anyio.sleep(self.latency)
        return await super().call(operation, params, secrets=secrets)


@virtual_time
async def test_sixty_calls_at_five_per_second_with_a_one_second_timeout() -> None:
    # This one runs the whole engine on the event loop's (virtual) clock: an answer that comes
    # after its call's deadline is what it guards against, and that needs the engine's cancel
    # scope and the transport's latency, not only the limiter's arithmetic.
    latency, rps, timeout = 0.02, 5.0, 1.0
    outcomes: dict[int, tuple[str, float]] = {}
    sent: list[str] = []
    transport = _SlowTransport(latency)
    limiter = RateLimiter("UserUpdate", rps)
    dispatcher = Dispatcher(
        transport,
        limits=Limits(user_update_rps=rps),
        retry=RetryPolicy(),
        limiters={"UserUpdate": limiter},
    )

    async def one(i: int) -> None:
        attributes = {"nickname": f"n{i}"}
        job = dispatcher.make_job(
            "AdminUpdateUserAttributes",
            {
                "UserPoolId": "pool",
                "Username": f"user{i}",
                "UserAttributes": [{"Name": "nickname", "Value": f"n{i}"}],
            },
            (),
            attributes=attributes,
            timeout=timeout,
        )
        started = anyio.current_time()
        try:
            await dispatcher.run(job)
            outcomes[i] = ("ok", anyio.current_time() - started)
        except QuotaDeadlineError:
            outcomes[i] = ("quota", anyio.current_time() - started)
        except DeadlineExceededError:
            outcomes[i] = ("ambiguous", anyio.current_time() - started)

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(one, i)
    sent.extend(call.params["Username"] for call in transport.sent)

    assert len(outcomes) == 60
    kinds = [kind for kind, _ in outcomes.values()]
    assert "ambiguous" not in kinds
    succeeded = {f"user{i}" for i, (kind, _) in outcomes.items() if kind == "ok"}
    # The model: one call every 1/rps from t=0, each answered `latency` after it starts; the
    # calls that fit are those that start at most timeout - latency after the first.
    # Pacing is dithered (a request may go once part of its token has accrued), so one more
    # may fit. On virtual time no stall of the test machine can push one out.
    fits = int((timeout - latency) * rps) + 1
    assert fits <= len(succeeded) <= fits + 1
    assert sorted(sent) == sorted(succeeded)  # a call that failed was never sent
    for kind, elapsed in outcomes.values():
        if kind == "ok":
            assert elapsed <= timeout
        else:
            assert elapsed < timeout - latency  # failed fast, before its deadline


async def test_a_deadline_leaves_room_for_a_high_percentile_of_round_trips() -> None:
    clock = ManualClock()
    limiter = RateLimiter("UserUpdate", 5.0, adaptive=False, clock=clock)
    for _ in range(99):
        limiter.record(throttled=False, latency=0.02)
    limiter.record(throttled=False, latency=0.5)  # one slow answer in a hundred
    assert limiter.round_trip() == 0.5  # the tail, not the mean (0.025)
    now = clock()
    with anyio.fail_after(5):  # the manual clock never moves: a wait would be a bug
        await limiter.acquire(deadline=now + 0.6)  # a token is free, and 0.5 s fits
        with pytest.raises(QuotaDeadlineError, match="round trip"):
            # The next token is up to 0.2 s away (dithered): with the round trip's tail, a
            # deadline 0.5 s away cannot fit, although with the mean it would.
            await limiter.acquire(deadline=now + 0.5)
    assert limiter.statistics().sent == 1
