"""Request-rate limits per quota category: paced token buckets that adapt to throttling.

Cognito's quotas are per account and region, per *category* of operation (UserUpdate: 25/s and
not adjustable; UserRead: 120/s). One :class:`RateLimiter` paces one category.

Pacing. Tokens accrue at the allowed rate; the bucket holds at most ``BURST_SECONDS`` worth (a
fifth of a second), well under the one second Cognito's own bucket holds, so the server keeps a
reserve that absorbs network jitter. Callers wait in FIFO order per priority; interactive
callers always go before bulk ones, and a bulk job may be capped at a share of the rate.
A caller may pass a :class:`QuotaClaim` and *promote* it while it waits: it moves to the tail
of the interactive queue and leaves its share cap behind. The engine does so when an
interactive call queues behind a user's bulk row (priority inheritance, see
:mod:`aiocognito._dispatch`). Deadlines are judged on the place a caller has: a claim promoted
before it queues is estimated as interactive, and one promoted while it waits is judged again
at each turn, as every waiter is.

Adapting. Throttles are judged per window of answers, not one by one. A throttle means one of
three things, and the limiter must tell them apart from its own answers alone:

* the quota, and our rate is over it: cut;
* the quota, and other processes on the same account are using it too (web workers, a
  migration): cut, by the same share as every other process, so that all converge on equal
  shares and no one collapses;
* noise, throttles that come whatever the rate (a service under strain, injected faults):
  do not cut, or random throttles walk the rate down without bound.

The rules, and why:

* Windows end on whole seconds of the wall clock, which every process on a host (and, give or
  take NTP, on every host) shares. So the processes on a quota judge the same stretch of
  time, see much the same throttling, and cut together. A window needs ``MIN_SAMPLES``
  answers (``FEW_SAMPLES`` once it has lasted ``LONG_WINDOW`` seconds, for slow senders, or
  while no noise is learned: a small share of a shared quota sends a few requests a second,
  and judging every few seconds piles up throttles in between). It ends early once the last
  ``HEAVY_SPAN`` answers are throttled too heavily to be noise: the server's own burst reserve
  hides an overshoot for a while, so react fast once it shows. That is judged on the last
  answers, not on the whole window, whose first answers the reserve admitted. After a heavy
  cut, answers for ``SETTLE`` seconds are not judged: they answer requests sent before it,
  and on a busy host they arrive in bursts that would cut again and again, to a few
  requests a second, before the other processes have even noticed.
* Pacing is dithered: each request waits for a random part of its token. A sender paced on
  an exact beat at the server's refill rate meets every token as it refills, and throttles
  land on the other processes instead of on it; then the throttling each process sees is no
  longer the same, and neither are the cuts.
* A window's throttling *rose* if the background level (learned, below) would give that many
  throttles less than once in 100 (``RISE_ALPHA``). It is judged by whether throttling rose,
  never by whether it was zero, so slow start and the climb after a cut work under a steady
  background of random throttles. Once a background is learned, and with no contention fresh
  in memory, a mild rise (below ``NOISE_MAX``) cuts only if one of the next
  ``SUSPECT_WINDOWS`` windows rises too (at the looser ``REPEAT_ALPHA``): one window in a
  hundred rises by chance, and the check after a cut cannot tell the next window's return to
  the background from a fall the cut made, so such a cut was kept about half the time. A
  rate that is too high shows again, if only every other window; chance does not. Windows
  that far apart in time (a pause between them) are no pair.
* A rise cuts the rate below what the server admitted (the quota, if the quota throttled us),
  and at least by ``BETA``: a share of the rate, the same for every process, so the largest
  gives up the most. What the server admitted is measured over the window, and also as the
  share of our rate it let through from the window's first throttle on: every process on
  the quota sees the same refused share, so each cuts by it (to no less than ``DEEPEST`` in
  one step). That is what brings four processes that each start at the whole quota down to
  a quarter each within a second, together, rather than the first to notice to a tenth. A
  throttled fraction over ``NOISE_MAX`` cuts at once (heavy throttling is never noise), and
  leaving slow start it cuts by ``SLOW_START_BETA``, since the last doubling overshot. Then
  ``w_max`` too is the share admitted from the first throttle on, not the window's rate:
  the server's burst reserve admitted the overshoot until it ran dry, so the window's rate
  (400/s, ending a climb to a 150/s quota) is the reserve's, and climbing back to it
  overshot again, worse. Elsewhere the window's rate is kept (in a shared quota, a few
  answers from the onset on overstate one process's part of the throttling).
* The next window checks a cut. If throttling fell at least halfway back to the background,
  by more than chance, our rate (or the rates we share the quota with) was the cause, and the
  cut stays. If it fell, but on too few answers to be sure (a small share of a shared quota
  sees a few a second), the cut stays unconfirmed: undoing it would put back the very rate
  that overshot. If it did not fall, the cut is undone: it looked like noise. Only after
  ``NOISE_EVIDENCE`` such checks in a row do their windows teach the background level, and
  never within ``CONTENTION_MEMORY`` windows of heavy throttling or of a cut that worked.
  That is how contention is kept from passing for noise: with several processes, one
  process's cut barely moves the throttling while the others have not yet cut, and a
  process that learned that as noise would keep its rate while the others are cut again
  and again.
* Within those windows, one thing does tell noise: cuts since the confirmed one that have
  taken the rate ``ANCHOR_DROP`` of the way below it without the throttling falling below
  what that cut left. Contention falls as the rates that share the quota fall together;
  noise does not follow the rate. Then the cuts since are undone, back to where the
  confirmed cut left the rate, and their windows teach the background level. Without it, a
  known quota under random throttles that spend quota (as the fake's do) ratchets down: a
  first cut lowers the quota's own throttles of noise's retries and is confirmed, and
  then each window of noise counts as contention and cuts again (150/s to about 30/s in
  ten seconds).
* The background level is the pooled throttled fraction of the windows that taught it (the
  last ``NOISE_WINDOWS``); windows calmer than it let it fade as noise subsides. Below a
  told quota that is all: a window above it is never learned, so that a slow creep of
  contention, or a level taught while sharing the quota, cannot pass for noise. But learning
  only the calm windows drags the level down to their mean (a background of 10.5 % read as
  8.5 %, then lower), where ordinary windows pass for rises. So at the told quota, where
  this rate has not moved, any window the background plausibly gives (``LEARN_ALPHA``) is
  learned too, as long as the level is under a cap: what the failed cuts last taught, plus
  its margin of error (``CAP_Z`` standard errors: two windows teach 10 % as anything from 7.5
  to 14 %), and never above the lowest such bound the level has shown since. So the cap
  follows the level down as noise subsides, and a creep of contention cannot climb past it.
* A window's first answer after a pause (``IDLE_GAP``: a web backend's first after a quiet
  night) starts the window one request's pace before it. Counted, the idle time would pass
  for a server that admitted little, and a cut would go to a quarter of the rate. A gap
  within a window is counted all the same: the answers after it may stand for requests
  sent all through it (a sender in batches, or the fleet's judge reading the fleet's
  counters), and leaving it out read a batch sender's 57/s as 480/s, which the long-run
  rate's floors then held up. (So a quiet night's window that holds a stray answer still
  counts the pause after it.) The first window is the exception: it runs from the
  limiter's making, however late its first answer. Started at that answer, a window that
  heavy throttling ends a tenth of a second later measures the server's burst reserve
  (four processes starting together at a 150/s quota each measured about 600/s), which
  became the long-run rate, whose floors then held every process up: 40 % of requests
  throttled, against 13 %. The cost: a client that gathers thousands of calls before its
  first request (half a second of first steps) finds an unknown quota a window later, and
  one whose first request comes long after it opened judges its first window over all
  that time (its first cut, if throttled at once, goes deep).
* After a cut the rate climbs back along a CUBIC curve to ``w_max``, then probes above it (at
  ``PROBE`` of the curve's pace), never more than ``PROBE_STEP`` a judged window above what
  the last window saw (a slow sender's window takes seconds; after ``CAP_GRACE`` windows
  without a verdict the cap grows on by as much a window), and never above the configured
  ceiling. The probe is slower than the climb, as an overshoot hides behind the server's
  reserve; but not much slower, since the last process of a fleet, once the others finish,
  must win the whole quota back in seconds, not minutes. The curve's pace is absolute, set
  by the quota's size (the ceiling, or the largest long-run rate seen), not by this
  process's share: a big sender takes longer to win back its cut than a small one, which is
  what makes AIMD-style senders converge on equal shares. ``w_max`` never drops below
  ``W_MAX_FLOOR`` of the long-run admitted rate: a window ended early by heavy throttling
  measures little, and ``w_max`` must not follow it down, or the climb has nothing to climb
  back to. Nor does a cut take the rate below ``BASE_FLOOR`` of it: a share that must fall
  further falls over the long run's ten seconds, not in a burst of cuts that leaves a
  process at a few requests a second, where the calls queued behind it fail fast.
* With no ceiling (quota unknown), the limiter starts at Cognito's smallest default (25/s) and
  doubles each saturated window in which throttling did not rise (slow start).

What is left over: processes that start at once on a quota each believe is theirs alone
throttle heavily for the first second; with eight of them, or with random throttles on top
of contention, shares stay uneven for a while; and several processes on a small quota (four
on 25/s: a few requests a second each) keep throttling 15 to 20 % of requests, because each
needs a throttle or two to see an overshoot, which the server's reserve has long hidden by
then (which is why the processes of one host share one bucket by default: see
:mod:`aiocognito._fleet`). Slowing the probe, lowering ``w_max`` after a cut in
contention, pooling a window's throttles with the windows before it, or cutting on a
single throttle each trims that a little, but costs the fairness of processes that start
together, which the probe's pace is what restores. And a known quota under noise that
spends quota still ratchets down for a few seconds before the rule above calls it noise (to
60 or 70 % of the quota, in some seeds). The deterministic simulation in
``tests/test_limits.py`` measures all of this (its strict xfails are the targets not met).

Deadlines. A call is let through only if its expected start plus a high percentile
(``RTT_QUANTILE``) of recently observed round trips fits before its deadline: otherwise it fails
at once with :class:`QuotaDeadlineError` and is never sent, rather than being sent so late that
its answer would come after the deadline (the ambiguous ``DeadlineExceededError``). Deadlines
and pacing are on the event loop's clock (:func:`loop_time`), the engine's too; windows are
aligned on the wall clock through an offset taken once.

Limiters are shared: every client on the same event loop whose region and endpoint (or
``Limits.quota_group``) match draws from the same limiter per category, because the quota is
account-wide. The lowest quota any of the open clients was told binds; when that client
closes, the next lowest does.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections import deque
from collections.abc import Callable

import anyio
import anyio.lowlevel
from attrs import frozen

from ._errors import QuotaDeadlineError

__all__ = [
    "CategoryStatistics",
    "Priority",
    "QuotaClaim",
    "RateLimiter",
    "ShareLimit",
    "loop_time",
    "shared_limiter",
]

# The constants below were tuned in tests/test_limits.py's simulation (known, unknown and
# dropping quotas, random throttles, and 1 to 8 limiters sharing one quota); change them there
# first.
BURST_SECONDS = 0.2  # our burst, well under Cognito's one second, leaves it a jitter reserve
BETA = 0.7  # a cut takes at least 30 % off the rate: the same share for every limiter
SLOW_START_GROWTH = 2.0  # unknown quota: double each saturated window throttling did not rise in
SLOW_START_BETA = 0.35  # leaving slow start on heavy throttling, the last doubling overshot
CUT_MARGIN = 0.9  # cut to 90 % of what was admitted, below the quota it measured
DEEPEST = 0.25  # one cut keeps at least a quarter: a few answers overstate a fraction, and a
# newcomer's first window may be all throttles ("admitted nothing"); the next cuts again if it must
CUBIC_K = 2.0  # seconds to win back a 30 % cut of the whole quota (told, or the largest seen)
PROBE = 0.3  # above w_max, probe at 30 % of the curve's pace: an overshoot of x/s stays hidden
# behind the server's one-second burst reserve for quota/x seconds, so slower than the climb;
# but the last process of a fleet left alone must win the whole quota back in seconds (3 %
# took 40 s from a quarter of it)
PROBE_STEP = 1.5  # ...and at most 50 % above the last judged window: slow senders judge slowly
CAP_GRACE = 2.0  # ...though after this many windows without a verdict, 50 % more a window: a
# sender cut to a few requests a second must not take minutes to climb (windows of 5 s)
WINDOW = 1.0  # seconds of answers judged together
MIN_SAMPLES = 40  # a window with fewer answers is not judged yet: fewer cannot tell 5 % from 15 %
FEW_SAMPLES = 5  # ...unless it has lasted LONG_WINDOW seconds, or no noise is learned (below
LONG_WINDOW = 1.5  # QUIET): then this many will do, or a small share of a shared quota (a few
# requests/s) would judge every few seconds, and pile up throttles in between
QUIET = 0.02  # a background level below this is no noise to tell apart from a rise
HEAVY_SPAN = 10  # heavy throttling is judged on the last this many answers, not the window:
HEAVY_THROTTLES = 7  # ...at least this many throttles among them, and so many that a throttled
HEAVY_ALPHA = 0.02  # fraction of NOISE_MAX would give them this rarely, end a window early
HEAVY_AFTER = 0.1  # ...once a tenth of it has passed (a slow sender sees few in all)
SETTLE = 0.3  # after a heavy cut, answers to requests sent before it are not judged for this
# long: they tell of the old rate, and on a busy host arrive in bursts that cut again and
# again, to a few requests a second, before the other processes have even noticed
NOISE_MAX = 0.3  # a throttled fraction above this is never noise (tested to 15 % noise)
NOISE_WINDOWS = 20  # the background level pools this many windows that taught it
NOISE_FLOOR = 0.003  # assume at least 0.3 % background throttles: at 150 requests/s one
# stray throttle is no rise, while at a few requests/s two are (1 %: three, too late to share)
RISE_ALPHA = 0.01  # throttling "rose" if the background would give this many this rarely
REPEAT_ALPHA = 0.1  # once noise is learned, a mild rise cuts only if a next window rises too, at
# this looser level: noise gives two such windows in a row once in a thousand, while a
# learned background under-read by a point or two made one window in twenty a "rise" (each a
# cut, confirmed half the time by the next window's mere return to the mean)
LEARN_ALPHA = 0.1  # at a told quota, a window is learned unless noise gives as many this rarely:
# learning only the windows calmer than the level drags it down to their mean (8.5 % of 10.5 %),
# where one window in five passes for a rise
CAP_Z = 2.0  # ...up to the level the failed cuts taught plus this many standard errors (two
# windows teach 10 % as 7.5 to 14 %), and never above the lowest such bound the level has shown
# since: the bound follows the level down as noise subsides, so a creep cannot climb it
SUSPECT_WINDOWS = 2  # a mild rise cuts if one of the next two windows rises too: a rate too high
# every other window (20 %, 10 %, 20 %...) is too high; noise gives such a pair 1 time in 500
FELL_ALPHA = 0.05  # ...and a cut is kept if its window's throttles are this rare at the old level
NOISE_EVIDENCE = 2  # cuts in a row must fail to lower throttling before it counts as noise
ANCHOR_DROP = 0.7  # ...or once cuts since a confirmed one took 30 % off, and throttling did
# not fall below what that one left (half: a known quota under 10 % noise fell to 54/s first;
# 80 %: four processes told the whole quota no longer shared it fairly)
CONTENTION_MEMORY = 10  # windows after heavy throttling or a confirmed cut, nothing is noise
LONG_RUN_SECONDS = 10.0  # the long-run admitted rate averages about this many seconds
W_MAX_FLOOR = 0.5  # after a cut, w_max stays above half the long-run admitted rate (higher
# fills a contended quota's climb with stale targets: 0.8 kept four processes 25 % throttled)
BASE_FLOOR = 0.4  # ...and the rate above 40 % of it: a share that falls further does so over
# the long run's ten seconds, not in a burst of cuts on stale answers
INITIAL_UNKNOWN_RATE = 25.0  # unknown quota: start at Cognito's smallest category default
MIN_RATE = 0.5  # never pace slower than one request every two seconds
IDLE_GAP = 0.5  # no answer for half a window, then one: time nothing was sent, not refused
RTT_SAMPLES = 200  # round trips remembered: a few seconds of traffic at Cognito's quotas
RTT_QUANTILE = 0.99  # a deadline must fit this percentile of them: the mean hides the tail
RTT_REFRESH = 20  # recompute the percentile after this many new samples, not on every call
DEADLINE_MARGIN = 0.005  # the send follows the check by a few steps: fail first, cleanly


def loop_time() -> float:
    """The running event loop's clock: what :func:`anyio.current_time` reads on asyncio.

    The engine and the limiter read this one clock, so a deadline set by one is a deadline to
    the other, and a test can run them on virtual time. It is read from the loop itself, so it
    works in a task's done callback too (the engine records each answer there), where anyio
    cannot always tell which library is running.
    """
    return asyncio.get_running_loop().time()


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
        mode: ``local`` (this process paces itself), ``shared`` (the fleet's bucket in
            Redis, or in a directory, paces every process), ``local fallback`` (shared, but
            the store is failing) or ``alone`` (sharing on this host, but no other process
            uses the quota now: this process paces itself).
        fleet_rate: With a shared quota, the fleet's allowed rate as last seen; else None.
        fleet_processes: With a shared quota, the processes that drew from the fleet's bucket
            in the last second, as last seen; else None.
        fallbacks: With a shared quota, the outages of Redis so far (each one a fall back to
            the local limiter); else 0.
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
    mode: str = "local"
    fleet_rate: float | None = None
    fleet_processes: int | None = None
    fallbacks: int = 0


@frozen
class _Saved:
    """What a cut replaced, restored if the check after it shows the throttles were noise."""

    w_max: float
    base: float
    cut_at: float | None
    k: float
    slow_start: bool


@frozen
class _Anchor:
    """A confirmed cut: the rate and throttling it fell to, and the state to go back to."""

    rate: float
    throttled: int
    sent: int
    saved: _Saved


@frozen
class _Check:
    """A cut that ended slow start, waiting for the next window's verdict."""

    fraction: float
    samples: int
    saved: _Saved


def _poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    term = math.exp(-mean)
    total = term
    for i in range(k):
        term *= mean / (i + 1)
        total += term
    return total


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    term = (1.0 - p) ** n  # P(X = 0)
    below = 0.0
    for i in range(k):
        below += term
        term *= (n - i) / (i + 1) * p / (1.0 - p)
    return max(0.0, 1.0 - below)


def _rare(throttles: int, sent: int, level: float, alpha: float = RISE_ALPHA) -> bool:
    """Whether ``throttles`` of ``sent`` answers is too many for a background ``level``.

    A Poisson tail: the chance of at least that many throttles, were each answer throttled
    with probability ``level`` (at least ``NOISE_FLOOR``) and independently, is under
    ``alpha``.
    """
    below = _poisson_cdf(throttles - 1, sent * max(level, NOISE_FLOOR)) if throttles else 0.0
    return 1.0 - below < alpha


class _AdaptiveRate:
    """The allowed rate over time: pure arithmetic on an injected clock, no waiting."""

    def __init__(
        self, ceiling: float | None, *, adaptive: bool, now: float, wall_offset: float = 0.0
    ) -> None:
        self.ceiling = ceiling
        # Windows end on whole seconds of the wall clock (now + wall_offset), which every
        # process on the quota shares: they judge the same seconds, see the same throttling,
        # and cut together, so the check after a cut sees the fall that contention gives.
        self.wall_offset = wall_offset
        self.adaptive = adaptive
        self.slow_start = adaptive and ceiling is None
        self.base = ceiling if ceiling is not None else INITIAL_UNKNOWN_RATE
        self.cut_at: float | None = None
        self.w_max = self.base
        self.k = 0.0  # seconds from the cut back up to w_max
        self.pending_check: _Check | None = None
        # (throttled, sent) of recent calm windows: pooled, they are the background level,
        # what throttling looks like when no rate on the quota is too high.
        self.recent: deque[tuple[int, int]] = deque(maxlen=NOISE_WINDOWS)
        self.long_run: float | None = None  # admitted requests/s, averaged over the long run
        self.scale: float | None = None  # the largest long-run admitted rate so far
        # Above w_max, the rate may climb only so far before a window has judged it: at a low
        # rate a window takes seconds to fill, and the curve must not run away meanwhile.
        self.probe_cap = math.inf
        # For this many windows more, throttling is contention: it has been heavy, or a cut
        # has lowered it, recently. A cut that seems not to help is kept, not undone as
        # noise: the other processes on the quota may simply not have cut yet.
        self.contended = 0  # windows left
        self.failed_checks = 0  # cuts in a row that did not lower throttling
        # A window rose mildly over a learned background: the next SUSPECT_WINDOWS windows
        # (until suspect_until) cut if they rise too, at REPEAT_ALPHA.
        self.suspect = 0  # windows left
        self.suspect_until = -math.inf
        # How high the background level may be learned at a told quota: what the last failed
        # cuts taught, plus its margin of error; it comes down as the level shows lower.
        self.cap = 0.0
        self.anchor: _Anchor | None = None  # the last confirmed cut, while contended
        self.since_anchor = (0, 0)  # (throttled, sent) of the windows judged since it
        self.cuts = 0
        self.window_start = now
        self.window_end = self._boundary(now)
        self.window_sent = 0
        self.window_throttled = 0
        self.window_onset = 0  # answers since the window's first throttle, that one included
        self.answered = False  # whether any answer has come yet
        self.settle_until = now  # answers before this are not judged
        self.last_answers: deque[bool] = deque(maxlen=HEAVY_SPAN)  # True: throttled
        self.last_throttled = 0
        #: Told (reason, old rate, new rate, throttled fraction) when a decision moves the rate.
        self.on_change: Callable[[str, float, float, float], None] | None = None
        self.undone = False  # the last check after a cut undid it

    def _changed(self, reason: str, old: float, now: float, fraction: float) -> None:
        if self.on_change is not None:
            self.on_change(reason, old, self.rate(now), fraction)

    @property
    def tolerance(self) -> float:
        """The background throttled fraction: noise, not the quota."""
        sent = sum(n for _, n in self.recent)
        return sum(t for t, _ in self.recent) / sent if sent else 0.0

    def _upper(self) -> float:
        """The background level plus its margin of error (``CAP_Z`` standard errors)."""
        sent = sum(n for _, n in self.recent)
        level = self.tolerance
        if not sent:
            return 0.0
        return level + CAP_Z * math.sqrt(max(level, NOISE_FLOOR) * (1.0 - level) / sent)

    def set_ceiling(self, ceiling: float | None) -> bool:
        """A new configured quota (the lowest of the clients'); whether it changed.

        Raised back: a rate held at the old ceiling (never cut since) follows it up; a climb
        after a cut goes on to the new one. Unknown again: find it from here. Lowered: the
        rate drops to it at once.
        """
        old = self.ceiling
        if ceiling == old:
            return False
        self.ceiling = ceiling
        if old is not None and (ceiling is None or ceiling > old):
            if self.cut_at is None and self.base >= old:
                self.base = ceiling if ceiling is not None else old
            if ceiling is None:
                self.slow_start = self.adaptive
        elif ceiling is not None:
            self.base = min(self.base, ceiling)
        return True

    def rate(self, now: float) -> float:
        if self.cut_at is None:
            value = self.base
        else:
            # CUBIC: from the cut (t=0) up to w_max (t=k), flat around k, then probing above.
            # The pace is the same for every limiter on a quota (set by the quota's size, not
            # by this limiter's share of it), so a big sender takes longer to win back its cut
            # than a small one: that is what makes limiters converge on equal shares.
            t = now - self.cut_at - self.k
            c = self._pace() * (1.0 if t < 0 else PROBE)
            value = self.w_max + c * t**3
            # The cap grows on by PROBE_STEP a window while none is judged (after CAP_GRACE of
            # them): a sender cut to a few requests a second judges a window in seconds.
            waited = (now - self.window_start) / WINDOW - CAP_GRACE
            cap = self.probe_cap * PROBE_STEP ** max(0.0, waited)
            value = max(self.base, min(value, cap))
        if self.ceiling is not None:
            value = min(value, self.ceiling)
        return max(value, MIN_RATE)

    def _boundary(self, now: float) -> float:
        """The first whole wall-clock window at least half a window after ``now``."""
        wall = now + self.wall_offset
        return (math.floor(wall / WINDOW + 1.5)) * WINDOW - self.wall_offset

    def _scale(self) -> float:
        """The quota's size, as far as this limiter knows: told, or the most it has seen."""
        return self.ceiling or self.scale or self.base

    def _pace(self) -> float:
        """CUBIC's constant: (requests/s) per s³."""
        return self._scale() * (1.0 - BETA) / CUBIC_K**3

    def record(self, now: float, *, throttled: bool) -> None:
        """Count one answer; at the end of a window, judge it."""
        if not self.adaptive:
            return
        if now < self.settle_until:
            return  # an answer to a request sent before the last heavy cut: old news
        if self.window_start < self.settle_until:
            self.window_start = self.settle_until  # settled: a fresh window starts
            self.window_end = self._boundary(now)
        first, self.answered = not self.answered, True
        if not self.window_sent and not first and now - self.window_start > IDLE_GAP:
            # A window's first answer after a pause (a web backend's first after a quiet
            # night): nothing was in flight, so the gap is no time the server refused.
            # Counted, it would pass for a server that admitted little: a cut would go to a
            # quarter of the rate, and the long-run rate to a tenth. The window starts one
            # request's pace before it. (Not the first answer ever: the first window runs
            # from the limiter's making; see the module docstring. Nor a gap within a
            # window: the answers after it may stand for requests sent all through it.)
            self.window_start = max(self.window_start, now - 1.0 / self.rate(now))
            if now >= self.window_end:
                self.window_end = self._boundary(now)
        self.window_sent += 1
        self.window_throttled += throttled
        if throttled or self.window_onset:
            self.window_onset += 1  # answers since the window's first throttle
        if len(self.last_answers) == HEAVY_SPAN:
            self.last_throttled -= self.last_answers[0]
        self.last_answers.append(throttled)
        self.last_throttled += throttled
        elapsed = now - self.window_start
        # Throttling too heavy to be noise ends a window early: waiting costs. It is judged on
        # the last few answers, not on the whole window, whose first answers the server's
        # burst reserve admitted: they would hide the onset.
        heavy = (
            self.last_throttled >= HEAVY_THROTTLES
            and elapsed >= WINDOW * HEAVY_AFTER
            and _binomial_tail(self.last_throttled, len(self.last_answers), NOISE_MAX) < HEAVY_ALPHA
        )
        if now < self.window_end and not heavy:
            return
        # Slow start doubles each window: there, whole seconds matter more than sharp verdicts.
        long_enough = elapsed >= LONG_WINDOW or self.slow_start or self.tolerance < QUIET
        enough = FEW_SAMPLES if long_enough else MIN_SAMPLES
        if self.window_sent < enough and not heavy:
            self.window_end = self._boundary(now)
            return
        sent, thr = self.window_sent, self.window_throttled
        # The throttled fraction from the window's first throttle on (that one left out, as
        # it picked the start): how much of our rate the server refuses once it refuses any.
        onset = (thr - 1) / (self.window_onset - 1) if self.window_onset > 1 else 0.0
        self.window_start, self.window_sent, self.window_throttled = now, 0, 0
        self.window_onset = 0
        self.last_answers.clear()
        self.last_throttled = 0
        self.window_end = self._boundary(now)
        admitted_rate = (sent - thr) / elapsed
        weight = 1.0 - math.exp(-elapsed / LONG_RUN_SECONDS)
        if self.long_run is None:
            self.long_run = admitted_rate
        else:
            self.long_run += weight * (admitted_rate - self.long_run)
        self.scale = self.long_run if self.scale is None else max(self.scale, self.long_run)
        self.contended = max(0, self.contended - 1)
        self._judge(now, thr, sent, elapsed, heavy=heavy, onset=onset)

    def _judge(
        self, now: float, thr: int, sent: int, elapsed: float, *, heavy: bool, onset: float
    ) -> None:
        """Decide on a finished window: check the last cut, cut, undo or grow.

        ``heavy``: the window ended early, its last answers throttled too heavily for noise.
        ``onset``: the throttled fraction from the window's first throttle on.
        """
        fraction = thr / sent
        admitted_rate = (sent - thr) / elapsed
        current = self.rate(now)
        level = self.tolerance
        if self.anchor is not None:
            if heavy or not self.contended:
                self.anchor = None
            else:
                t0, n0 = self.since_anchor
                self.since_anchor = (t0 + thr, n0 + sent)
        if heavy:
            self.pending_check = None  # still (or newly) heavy: no verdict on the last cut
        elif self.pending_check is not None:
            check, self.pending_check = self.pending_check, None
            self.undone = False
            if self._checked(check, thr, sent, level, current):
                if self.undone:
                    self._changed("undo", current, now, fraction)
                return
            # Still heavily throttled: the cut was not deep enough; cut again below.
        if heavy or fraction > NOISE_MAX:
            self.cuts += 1  # heavy throttling is never noise
            self.contended = CONTENTION_MEMORY
            reason = "slow_start_end" if self.slow_start else "cut"
            beta = SLOW_START_BETA if self.slow_start else BETA
            self._cut(now, current, admitted_rate, beta, max(fraction, onset))
            self.settle_until = now + SETTLE
            self._changed(reason, current, now, fraction)
            return
        rose = self._rose(now, thr, sent, level)
        if rose is None:
            return  # a mild rise: the next windows tell
        if rose:
            # Throttling rose above its background level: our rate (or our share of a rate
            # shared with others) is too high. Every limiter on the quota sees the same rise
            # and cuts by the same share. Check the cut next window.
            saved = _Saved(self.w_max, self.base, self.cut_at, self.k, self.slow_start)
            self.pending_check = _Check(fraction, sent, saved)
            reason = "slow_start_end" if self.slow_start else "cut"
            self._cut(now, current, admitted_rate, BETA, onset)
            self._changed(reason, current, now, fraction)
            return
        at_ceiling = self.ceiling is not None and current >= self.ceiling
        if not self.contended and (
            fraction <= level
            or (at_ceiling and level <= self.cap and not _rare(thr, sent, level, LEARN_ALPHA))
        ):
            # Calmer than the background: it fades as the noise does. Below a told quota, a
            # window above it is never learned: so a slow creep of contention cannot pass
            # for noise, and a level taught while sharing the quota (too high) fades. At the
            # told quota, where this rate has not moved, any window noise plausibly gives is
            # learned (LEARN_ALPHA): the level must be the noise's mean, not its calm tail.
            # But never above the cap, which follows the level down: a creep cannot climb it.
            self.recent.append((thr, sent))
            self.cap = min(self.cap, self._upper())
        if self.cut_at is not None:
            self.probe_cap = max(self.w_max, current) * PROBE_STEP
        if self.slow_start and sent / elapsed >= 0.8 * current:
            self.base = current * SLOW_START_GROWTH
            self.w_max = self.base
            self._changed("slow_start", current, now, fraction)

    def _rose(self, now: float, thr: int, sent: int, level: float) -> bool | None:
        """Whether a window's throttling rose over the background; None: wait and see."""
        rose = _rare(thr, sent, level)
        if self.suspect and now <= self.suspect_until:
            # A window just before rose mildly over a learned background: a rise if one of
            # the next few rises too. Noise is independent window to window; a rate too high
            # is not (and one that shows every other window is too high all the same).
            self.suspect -= 1
            return rose or _rare(thr, sent, level, REPEAT_ALPHA)
        self.suspect = 0  # none, or stale: windows that far apart are no pair
        if rose and level >= QUIET and not self.contended and not self.slow_start:
            # One window in a hundred rises by chance at RISE_ALPHA, and the check after a
            # cut cannot tell the return to the background from a fall the cut made: wait
            # for another. (Heavy throttling cuts at once, before this; so does any rise
            # while contention is fresh, or with no background learned.)
            self.suspect = SUSPECT_WINDOWS
            self.suspect_until = now + (SUSPECT_WINDOWS + 0.5) * WINDOW
            return None
        return rose

    def _checked(self, check: _Check, thr: int, sent: int, level: float, current: float) -> bool:
        """Judge the window after a cut; True if that settles the window."""
        fraction = thr / sent
        fell = fraction < (check.fraction + level) / 2
        if fell and _poisson_cdf(thr, sent * check.fraction) < FELL_ALPHA:
            # Throttling fell with our rate, halfway back to the background at least, and by
            # more than chance would: our rate was (part of) the cause.
            self.cuts += 1
            self.failed_checks = 0
            self.contended = CONTENTION_MEMORY
            self.anchor = _Anchor(
                current, thr, sent, _Saved(self.w_max, self.base, self.cut_at, self.k, False)
            )
            self.since_anchor = (0, 0)
            return True
        anchor = self.anchor
        if (
            self.contended
            and anchor is not None
            and fraction <= NOISE_MAX
            and current <= ANCHOR_DROP * anchor.rate
            and self.since_anchor[0] * anchor.sent >= anchor.throttled * self.since_anchor[1]
        ):
            # Cut after cut since the last confirmed one has taken the rate well below it, and
            # throttling has not fallen below what that cut left: it does not follow the rate.
            # It is noise, and the confirmed cut's fall was chance (or the quota's own
            # throttles of noise's retries): back to where that cut left the rate, and learn
            # the level. Contention falls as the rates sharing the quota fall together.
            saved = anchor.saved
            self.w_max, self.base, self.cut_at = saved.w_max, saved.base, saved.cut_at
            self.k = saved.k
            self.probe_cap = max(self.probe_cap, saved.w_max)
            self.recent.append((anchor.throttled, anchor.sent))
            self.recent.append(self.since_anchor)
            self.cap = self._upper()
            self.anchor = None
            self.contended = 0
            self.undone = True
            return True
        if fraction > NOISE_MAX or self.contended:
            return False  # not noise: judge the window as any other
        if fell and not check.saved.slow_start:
            # Lower, but by too few answers to be sure (a small share of a shared quota sees
            # a few a second): keep the cut, unconfirmed. Undoing it would put back the very
            # rate that overshot.
            return True
        # Cutting did not lower throttling: it was not our rate. Undo.
        saved = check.saved
        self.w_max, self.base, self.cut_at = saved.w_max, saved.base, saved.cut_at
        self.k, self.slow_start = saved.k, saved.slow_start
        self.probe_cap = max(self.probe_cap, saved.w_max)
        self.undone = True
        self.failed_checks += 1
        # In slow start nobody else's rate is in question yet (the quota is not even found),
        # so one failed check is evidence enough.
        if self.failed_checks >= NOISE_EVIDENCE or saved.slow_start:
            self.recent.append((round(check.fraction * check.samples), check.samples))
            self.recent.append((thr, sent))
            self.cap = self._upper()
        return True

    def _cut(
        self, now: float, current: float, admitted_rate: float, beta: float, onset: float
    ) -> None:
        """Cut below what the server admitted (the quota, if the quota throttled us).

        What it admitted is measured two ways: over the window, and as the share of our rate
        it let through once it began to refuse (``onset``, the fraction refused since). Every
        process on the quota sees that same fraction, so each cuts by the same share.
        """
        leaving_slow_start, self.slow_start = self.slow_start, False
        self.suspect = 0
        admitted = min(admitted_rate, current * max(1.0 - onset, DEEPEST))
        # Leaving slow start, the window's admitted rate is no measure of the quota: the last
        # doubling overshot, and the server's burst reserve admitted the overshoot until it
        # ran dry, so that rate (400/s at the end of a climb to a 150/s quota) sends the climb
        # back into the same overshoot. The share of our rate admitted since the first
        # throttle is the quota's. Elsewhere the window's rate is kept: with several processes
        # on the quota, the onset's few answers overstate each one's share of the throttling.
        # One window never takes more than DEEPEST off: a newcomer's first answers may all
        # be throttled, and "admitted nothing" is no rate to cut to.
        w_max = max(
            min(current, admitted if leaving_slow_start else admitted_rate), DEEPEST * current
        )
        if self.long_run is not None:
            # A short window (one ended early by heavy throttling) measures little: the rate
            # to climb back to never falls far below what was admitted over the long run.
            w_max = max(w_max, W_MAX_FLOOR * self.long_run)
        self.w_max = max(MIN_RATE, w_max)
        base = min(current * beta, admitted * CUT_MARGIN, self.w_max)
        if self.long_run is not None:
            # Nor does the rate: cut after cut on a burst of stale answers took a process of
            # a fleet to a few requests a second, where its queued calls fail fast.
            base = max(base, BASE_FLOOR * self.long_run)
        self.base = max(MIN_RATE, base, DEEPEST * CUT_MARGIN * current)
        self.k = ((self.w_max - self.base) / self._pace()) ** (1 / 3)
        self.cut_at = now
        self.probe_cap = self.w_max


class _Bucket:
    """Tokens accruing at a rate, up to a capacity.

    With ``dither``, each request waits for a random part of its token (uniform in (0, 1])
    instead of all of it, and the next one owes the rest: the long-run rate is the same, but
    sends no longer fall due on a fixed beat. A sender paced at exactly the server's refill
    rate would otherwise meet every token as it refills, and starve senders in other
    processes of the same quota: throttles would land on them, not on it.
    """

    __slots__ = ("dither", "last", "need", "tokens")

    def __init__(self, tokens: float, now: float, dither: random.Random | None = None) -> None:
        self.tokens = tokens
        self.last = now
        self.dither = dither
        self.need = 1.0  # tokens the next request waits for

    def refill(self, now: float, rate: float) -> None:
        capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = min(capacity, self.tokens + (now - self.last) * rate)
        self.last = now

    def ready(self) -> bool:
        return self.tokens >= self.need

    def wait(self, rate: float) -> float:
        """Seconds until the next request may go, at ``rate``."""
        return 0.0 if self.tokens >= self.need else (self.need - self.tokens) / rate

    def take(self) -> None:
        self.tokens -= 1.0
        if self.dither is not None:
            self.need = 1.0 - self.dither.random()


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


class QuotaClaim:
    """One caller's request for a token, which its caller may *promote* while it waits.

    Why: priority inheritance. The engine sends one user's calls in order, one at a time, so an
    interactive call queued behind that user's bulk row cannot go before the row. If the row
    kept waiting for quota at bulk priority, the interactive call would wait for every bulk row
    queued ahead of it (dozens, at a bulk job's read-ahead), however high its own priority. So
    the engine passes a claim with each request for quota, and promotes it when an interactive
    call queues behind it: the row takes the interactive queue's tail (after the interactive
    callers already waiting, FIFO among them), and its job's share cap no longer applies
    (interactive work is never share-capped). Passing a priority alone could not do it: the
    request is already waiting when the interactive call arrives.

    A claim serves one :meth:`RateLimiter.acquire`. Promoted before it queues, it queues as
    interactive; while it waits, it moves; once granted, or after its caller left, promoting
    it changes nothing. After a grant, :attr:`share` is the share the token was charged to
    (``None`` if promoted in time): the one to give back if the request is never sent.

    Attributes:
        priority: The priority it waits at (waited at, once granted).
        share: The share it is drawn from; ``None`` for interactive, or once promoted.
        promoted: Whether :meth:`promote` was called before its grant.
        granted: Whether the limiter let it through.
    """

    __slots__ = ("_movable", "_queues", "granted", "priority", "promoted", "share", "wake")

    # Made when it queues (:meth:`_Queues.join`), not here: most requests find a token at once
    # and never wait, and an event costs a few microseconds on every call.
    wake: anyio.Event

    def __init__(self) -> None:
        self.priority = Priority.INTERACTIVE
        self.share: ShareLimit | None = None
        self.promoted = False
        self.granted = False
        self._queues: _Queues | None = None  # the queue it waits in, if any
        # Waiting where its limiter may send it elsewhere (the fleet's bucket), see _moved:
        # 0 no; 1 yes, on through _moved_on; 2 yes, back ungranted to a caller that loops.
        self._movable = 0

    def promote(self) -> None:
        """Wait as interactive from now on, without a share cap; see the class docstring."""
        if self.granted:
            return  # charged as it was: a refund must give back what was taken
        self.promoted = True
        self.share = None
        self.priority = Priority.INTERACTIVE
        if self._queues is not None:
            self._queues.promote(self)

    def _bind(self, priority: Priority, share: ShareLimit | None) -> None:
        """Take the caller's priority and share as :meth:`RateLimiter.acquire` starts, unless
        already promoted (a limiter that passes the claim on binds it again: the same values)."""
        if self.granted:
            raise RuntimeError("a QuotaClaim serves one acquire")
        if not self.promoted:
            self.priority, self.share = priority, share


class _Queues:
    """Callers waiting for quota: FIFO per priority, interactive before bulk."""

    __slots__ = ("by_priority",)

    def __init__(self) -> None:
        self.by_priority: tuple[deque[QuotaClaim], deque[QuotaClaim]] = (deque(), deque())

    def __len__(self) -> int:
        return len(self.by_priority[0]) + len(self.by_priority[1])

    def ahead(self, priority: Priority) -> int:
        """Callers that go before a new caller of ``priority``."""
        return sum(len(q) for q in self.by_priority[: priority + 1])

    def head(self) -> QuotaClaim | None:
        for queue in self.by_priority:
            if queue:
                return queue[0]
        return None

    def wake_head(self) -> None:
        head = self.head()
        if head is not None:
            head.wake.set()

    def wake_all(self) -> None:
        """Wake every caller waiting, so that each looks again at where it should wait."""
        for queue in self.by_priority:
            for waiter in queue:
                waiter.wake.set()

    def join(self, waiter: QuotaClaim) -> None:
        waiter.wake = anyio.Event()
        self.by_priority[waiter.priority].append(waiter)
        waiter._queues = self

    def leave(self, waiter: QuotaClaim) -> None:
        """Take ``waiter`` out (if still in); the next one is woken if it was the head."""
        if waiter._queues is self:
            waiter._queues = None
        queue = self.by_priority[waiter.priority]
        if waiter in queue:
            was_head = self.head() is waiter
            queue.remove(waiter)
            if was_head:
                self.wake_head()

    def promote(self, waiter: QuotaClaim) -> None:
        """Move a bulk ``waiter`` to the interactive queue's tail (:meth:`QuotaClaim.promote`)."""
        bulk = self.by_priority[Priority.BULK]
        if waiter in bulk:
            bulk.remove(waiter)
            self.by_priority[Priority.INTERACTIVE].append(waiter)
        if self.head() is waiter:
            # Its turn now, or already: its wait is judged again, without the share cap. (A
            # bulk head it overtook finds, when its timer ends, that it waits behind it.)
            waiter.wake.set()


class RateLimiter:
    """Paces one quota category; see the module docstring.

    Create it in the event loop it serves: it keeps to that loop's clock (the engine's, see
    :func:`loop_time`), also when its statistics are read from outside the loop, unless given
    another ``clock``, as the simulation in the tests does.
    """

    def __init__(
        self,
        category: str,
        ceiling: float | None,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.category = category
        if clock is None:
            clock = asyncio.get_running_loop().time
        self._clock = clock
        now = clock()
        self._unlimited = ceiling is None and not adaptive
        self._ceilings: list[float | None] = [ceiling]  # one per client that joined
        # Windows are judged on whole seconds of the wall clock, which other processes share.
        self._rate = _AdaptiveRate(
            ceiling, adaptive=adaptive, now=now, wall_offset=time.time() - now
        )
        self._bucket = _Bucket(
            max(1.0, self._rate.rate(now) * BURST_SECONDS), now, dither=random.Random()
        )
        self._queues = _Queues()
        self._sent = 0
        self._throttled = 0
        self._round_trips: deque[float] = deque(maxlen=RTT_SAMPLES)
        self._round_trip = 0.0  # RTT_QUANTILE of _round_trips; 0 until one is observed
        self._new_round_trips = 0
        #: Told (category, reason, old rate, new rate, throttled fraction) when the rate moves;
        #: the client points it at the ``aiocognito`` logger.
        self.on_rate_change: Callable[[str, str, float, float, float], None] | None = None
        self._rate.on_change = self._rate_changed

    def _rate_changed(self, reason: str, old: float, new: float, fraction: float) -> None:
        if self.on_rate_change is not None:
            self.on_rate_change(self.category, reason, old, new, fraction)

    # -- configuration shared between clients ------------------------------------------------

    async def attach(self) -> None:
        """A client opened on this limiter. (A local limiter holds no connection.)"""

    async def detach(self) -> None:
        """A client using this limiter closed."""

    def lower_ceiling(self, ceiling: float | None) -> None:
        """Another client joined with its configured quota: honour the lowest of them.

        Each call counts one client until :meth:`release_ceiling` is called for it.
        """
        self._ceilings.append(ceiling)
        self._apply_ceiling()

    def release_ceiling(self, ceiling: float | None) -> None:
        """A client that joined with ``ceiling`` left: the lowest of the others binds now,
        so a quota lowered for that client is raised back."""
        if ceiling in self._ceilings and len(self._ceilings) > 1:
            self._ceilings.remove(ceiling)
        elif ceiling in self._ceilings:
            self._ceilings.clear()  # the last one left: the next to join sets the quota
            return
        self._apply_ceiling()

    def _apply_ceiling(self) -> None:
        known = [c for c in self._ceilings if c is not None]
        ceiling = min(known) if known else None
        state = self._rate
        old = state.ceiling
        if not state.set_ceiling(ceiling):
            return
        if old is not None and (ceiling is None or ceiling > old):
            if ceiling is None:
                self._unlimited = not state.adaptive
            self._wake_head()
        elif ceiling is not None:  # lowered
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

    def _head(self) -> QuotaClaim | None:
        return self._queues.head()

    def _wake_head(self) -> None:
        self._queues.wake_head()

    def _wait_time(self, now: float, share: ShareLimit | None) -> float:
        rate = self._rate.rate(now)
        self._bucket.refill(now, rate)
        wait = self._bucket.wait(rate)
        if share is not None:
            wait = max(wait, share._ready(now, rate))
        return wait

    def _take(self, claim: QuotaClaim) -> None:
        """Grant ``claim`` a token, charged to its share as it stands now."""
        self._bucket.take()
        if claim.share is not None:
            claim.share._take()
        self._sent += 1
        claim.granted = True

    def _take_now(self, claim: QuotaClaim, deadline: float | None) -> bool:
        """Grant ``claim`` a token if one is free and nobody waits; with no await, so a caller
        that finds one pays for no scheduling at all."""
        if self._unlimited:
            self._sent += 1
            claim.granted = True
            return True
        now = self._clock()
        if self._head() is None and self._wait_time(now, claim.share) == 0.0:
            self._too_late(now, deadline, 0)
            self._take(claim)
            return True
        return False

    async def acquire(
        self,
        priority: Priority = Priority.INTERACTIVE,
        *,
        deadline: float | None = None,
        share: ShareLimit | None = None,
        claim: QuotaClaim | None = None,
    ) -> None:
        """Wait for this category's quota to allow one request.

        Args:
            priority: Interactive callers are served before bulk callers.
            deadline: The instant, on this limiter's clock (the event loop's, as the engine
                uses), by which the call must be answered. If the expected start plus a high
                percentile of recent round trips (:meth:`round_trip`) would pass it, raise
                :class:`QuotaDeadlineError` at once instead, and again at the turn of a call
                that waited if the rate fell meanwhile: the call is never sent.
            share: A bulk job's cap, drawn from as well as the category's bucket.
            claim: A new :class:`QuotaClaim` through which the caller may promote this request
                while it waits (then its place and its deadline are judged as interactive);
                afterwards, its ``share`` is the share the token was charged to.

        Raises:
            QuotaDeadlineError: The quota cannot fit this call and its round trip before its
                deadline.
        """
        if claim is None:
            claim = QuotaClaim()
        claim._bind(priority, share)
        if claim._movable and self._moved():  # made while paced here, first run after a move
            await self._move(claim, deadline)
            return
        if self._take_now(claim, deadline):
            return
        now = self._clock()
        if deadline is not None:
            rate = self._rate.rate(now)
            ahead = self._queues.ahead(claim.priority)
            owed = ahead + self._bucket.need - self._bucket.tokens
            self._too_late(now + max(0.0, owed) / rate, deadline, ahead)
        waiter = claim
        self._queues.join(waiter)
        try:
            while True:
                if waiter._movable and self._moved():
                    break
                now = self._clock()
                if self._head() is waiter:
                    # The share as of now: a promotion drops it.
                    wait = self._wait_time(now, waiter.share)
                    # The rate may have fallen since the estimate: check again at every turn.
                    self._too_late(now + wait, deadline, 0)
                    if wait == 0.0:
                        self._queues.leave(waiter)
                        self._take(waiter)
                        return
                    waiter.wake = anyio.Event()
                    with anyio.move_on_after(wait):
                        await waiter.wake.wait()
                else:
                    await self._wait_behind(self._queues, waiter, deadline)
        except BaseException:
            self._queues.leave(waiter)
            raise
        # Sent elsewhere before its grant (it never held a token): see _moved.
        self._queues.leave(waiter)
        await self._move(waiter, deadline)

    async def _move(self, claim: QuotaClaim, deadline: float | None) -> None:
        """A movable caller leaves: on to :meth:`_moved_on`, or back to the caller that loops
        over the places to wait (``_movable == 2``), ungranted."""
        if claim._movable == 1:
            claim._movable = 0
            await self._moved_on(claim, deadline)

    def _moved(self) -> bool:
        """Whether a movable waiter must leave this queue for another (the fleet's bucket,
        when it paces again: Redis back, or another process on a quota of this host) and go
        on there (:meth:`_moved_on`); never, here."""
        return False

    async def _moved_on(self, claim: QuotaClaim, deadline: float | None) -> None:
        """Wait for a token elsewhere, for a caller that :meth:`_moved` sent away."""
        raise NotImplementedError  # pragma: no cover - _moved is never true here

    async def _wait_behind(
        self, queues: _Queues, waiter: QuotaClaim, deadline: float | None
    ) -> None:
        """Wait until woken, behind the head of ``queues``; with a deadline, give up while the
        call can still fail cleanly (:class:`QuotaDeadlineError`), before the deadline."""
        waiter.wake = anyio.Event()
        if deadline is None:
            await waiter.wake.wait()
            return
        give_up = deadline - self.round_trip() - DEADLINE_MARGIN - self._clock()
        with anyio.move_on_after(max(give_up, 0.0)) as scope:
            await waiter.wake.wait()
        if scope.cancelled_caught:
            self._too_late(deadline, deadline, queues.ahead(waiter.priority) - 1)

    def refund(self, share: ShareLimit | None = None) -> None:
        """Give back the token of a request :meth:`acquire` let through but that was never sent."""
        self._sent -= 1
        if self._unlimited:
            return
        self._bucket.tokens += 1.0  # the next refill caps it at the bucket's size again
        if share is not None and share._bucket is not None:
            share._bucket.tokens += 1.0
        self._wake_head()

    # -- feedback ----------------------------------------------------------------------------

    def record(self, *, throttled: bool, latency: float | None = None) -> None:
        """Report one answer for this category.

        Args:
            throttled: Whether the answer was a throttle.
            latency: Seconds from the request's admission to its answer, if known; a high
                percentile of these is what a deadline must leave room for.
        """
        self._note(throttled=throttled, latency=latency)
        if not self._rate.adaptive:
            return  # a fixed rate: nothing to learn
        now = self._clock()
        before = self._rate.rate(now)
        self._rate.record(now, throttled=throttled)
        if self._rate.rate(now) > before:
            self._wake_head()  # the rate rose: the sleeping head may go sooner

    def _note(self, *, throttled: bool, latency: float | None) -> None:
        """Count one answer, and its round trip for the deadline check."""
        if latency is not None:
            self._round_trips.append(latency)
            self._new_round_trips += 1
        if throttled:
            self._throttled += 1

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
            queued=len(self._queues),
            cuts=r.cuts,
            noise_tolerance=round(r.tolerance, 4),
        )


_Registry = dict[tuple[str, str, str, bool], RateLimiter]
_SHARED: anyio.lowlevel.RunVar[_Registry] = anyio.lowlevel.RunVar("aiocognito_limiters")


def shared_limiter(
    group: str,
    category: str,
    ceiling: float | None,
    *,
    adaptive: bool,
    shared_quota_url: str | None = None,
    when_shared: bool = False,
) -> RateLimiter:
    """The limiter for ``(group, category)`` on the current event loop, created on first use.

    With ``shared_quota_url`` (and a quota to pace: told, or adaptive), the limiter draws from
    the fleet's bucket in Redis or a directory (:class:`aiocognito._fleet.FleetLimiter`);
    ``when_shared`` (a directory only) draws from it only while another process uses it.
    """
    try:
        registry = _SHARED.get()
    except LookupError:
        registry = {}
        _SHARED.set(registry)
    shared = shared_quota_url if (ceiling is not None or adaptive) else None
    when_shared = when_shared and bool(shared)
    key = (group, category, shared or "", when_shared)
    limiter = registry.get(key)
    if limiter is None:
        if shared:
            from ._fleet import FleetLimiter  # noqa: PLC0415 - the optional redis extra

            limiter = FleetLimiter(
                category,
                ceiling,
                adaptive=adaptive,
                url=shared,
                group=group,
                when_shared=when_shared,
            )
        else:
            limiter = RateLimiter(category, ceiling, adaptive=adaptive)
        registry[key] = limiter
    else:
        limiter.lower_ceiling(ceiling)
    return limiter
