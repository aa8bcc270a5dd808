"""The fleet: one account quota shared by every process and host, through Redis.

Cognito's quotas belong to the AWS account and region, not to a process: a web backend's
workers, a migration and a nightly sync all draw from the same 25 requests/s. Limiters that
pace themselves alone only learn about each other by being throttled. With
``Limits(shared_quota_url=...)`` every process draws from one bucket kept in Redis instead.

The bucket. One hash per quota group and category (``aiocognito:{<group>}:<category>:bucket``)
holds a GCRA bucket: its *theoretical arrival time* (``tat``) and the fleet's allowed rate. One
Lua script (:data:`_TAKE`), run atomically by Redis, does everything a request needs in one
round trip:

* it takes up to ``wanted`` tokens, or says how long until the next one. GCRA keeps one
  number per bucket (no refill loop), and a rate change applies from the next token on. The
  burst is ``BURST_SECONDS`` of the rate, as in the local limiter;
* it reports this process's answers since its last call (sent, throttled) into the fleet's
  counters;
* it keeps the fleet's *judge* (below) elected, and stores the rate the judge decided;
* it counts the processes that drew in the last ``PROCESS_WINDOW`` seconds (a sorted set).

Times are Redis's own (``TIME``), so hosts need not agree on their clocks. Every key carries a
TTL (``KEY_TTL``), renewed on use, so nothing outlives a fleet that stopped.

Leasing. At high rates one round trip per request would make Redis the bottleneck, so a process
with several callers waiting takes a few tokens at once: at most ``LEASE_SECONDS`` of the rate,
never more than it has callers waiting, and never beyond the bucket's burst. A token leased but
not used (its caller went away, or a request was never sent) is kept for ``BURST_SECONDS`` and
then dropped: quota lost, never quota overdrawn.

Shared adaptation. The adaptive rules of :mod:`aiocognito._limits` are unchanged, but they judge
the *fleet's* answers: every process adds its answers to counters in Redis, and one process, the
judge (the one holding a lease that the script renews while it keeps taking), pulls the
counters every ``PULL_EVERY`` seconds into its :class:`~aiocognito._limits._AdaptiveRate` and
writes the resulting rate back with its next take. So four processes discover an unknown quota
together, as fast as one process would alone, and nobody's throttles pass for noise. A judge
that stops taking loses the lease after ``JUDGE_LEASE`` seconds and a process still taking
becomes the judge, starting from the rate and the state the last judge stored. A configured
quota is a ceiling for the whole fleet: each process clamps the shared rate to its own, so the
lowest configured quota wins, as it does between clients in one process.

Priority. Interactive calls go ahead of bulk work in every process: a bulk caller may take a
token only while the bucket keeps ``RESERVE_SHARE`` of its burst (at least one token, when the
burst holds two or more) for interactive callers. A bulk job's ``max_share`` caps its share of
the fleet's rate, since the rate its :class:`~aiocognito._limits.ShareLimit` is paced from is the
fleet's.

Promotion (priority inheritance, see :mod:`aiocognito._dispatch`) works as in the local
limiter: a promoted :class:`~aiocognito._limits.QuotaClaim` moves to the tail of this process's
interactive queue, and from its next draw on it draws as interactive, so the reserve is open
to it and it asks for the interactive callers' tokens only; its share is not charged. The
claim goes with its caller between the fleet's queue and the local limiter's (Redis failing or
slow), so a promotion holds wherever it waits. A draw already on its way to Redis when the
claim is promoted was sent as bulk: if the reserve refused it, the claim asks again at once.
The wait a bulk draw is told ("no token before then") leaves the reserve out, so an
interactive head, promoted or not, does not wait for it but asks the bucket itself. Other
processes' bulk callers are not reordered: each process orders its own callers; across
processes, the reserve is what puts interactive work first.

Redis failing never fails a call. A round trip over ``REDIS_BUDGET`` (slow), a connection error
(unreachable) or any Redis error falls back, within that request, to the process's own adaptive
limiter. It starts at the fleet's rate divided by the processes last seen drawing (this
process's fair share), logs one WARNING on the ``aiocognito`` logger, and reconnects in the
background with capped, jittered backoff. When Redis answers again the process rejoins; keys
lost in a restart are recreated, the bucket starting from this process's local rate times the
processes it last saw. :meth:`FleetLimiter.statistics` says which mode it is in.

Sharing on one host, the default. With no URL configured, the processes of one user on one
host share each quota through files in a private directory (:mod:`aiocognito._hostquota`), but
only while more than one of them uses it: a limiter made ``when_shared`` marks its process on
the quota (:class:`~aiocognito._hostquota.Presence`, a record lock the kernel drops when the
process dies) and looks every ``PRESENCE_EVERY`` seconds whether another process holds a mark.
Alone (mode ``alone``), it paces with the inherited local limiter, with no file I/O per request,
so one process (every benchmark of a single client, a script) runs exactly as without sharing.
When another process comes, it goes to the bucket as when Redis comes back: the callers waiting
locally move to the bucket's queue, and a new bucket starts from the local rate. When no other
process has been seen for ``ALONE_AFTER`` checks in a row, it paces alone again from the
fleet's whole rate, and the callers waiting on the bucket go on locally. Neither switch hands
out a fresh burst: the local bucket starts empty, and the shared one is charged the local
burst as a debt; otherwise a process that opens and closes clients would push the others
over the quota at every flip (to 31/s of 20/s, flipping every 0.3 s). A directory that cannot
be used leaves the process pacing alone (mode ``local``), said once per process: at INFO, or at
WARNING if the directory is not this user's alone (another user may have made it, in a shared
``/tmp``). A limiter told a ``file://`` URL marks its process too (and always shares), so that
the default's processes see it.

A single slow answer is not an outage: its request goes on under the local limiter at once, and
the answer, when it comes, still counts. If it granted a token, that token paid for the request;
if it was a refusal, the request is a *debt* that the next draw charges to the bucket (up to its
burst) before anything is granted, as of when the request went: a bucket that has refilled
since owes nothing. A request that never went after all (its caller left, or its deadline
passed, while it waited under the local limiter) is no debt, and the late token it had taken is
kept for the next caller. So a Redis that is slow now and then does not let the fleet overdraw
the quota: with a fifth of the answers 60 ms late, four processes took about 66/s of a 50/s
quota before, and take 50/s now.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from . import _log
from ._config import is_file_url
from ._errors import ConfigurationError, QuotaDeadlineError
from ._limits import (
    BURST_SECONDS,
    MIN_RATE,
    CategoryStatistics,
    Priority,
    QuotaClaim,
    RateLimiter,
    ShareLimit,
    _AdaptiveRate,
    _Queues,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._hostquota import HostStore, Presence

__all__ = ["ALONE", "LOCAL", "LOCAL_FALLBACK", "SHARED", "FleetLimiter", "require_redis"]

#: Modes reported by ``CategoryStatistics.mode``.
LOCAL = "local"
SHARED = "shared"
LOCAL_FALLBACK = "local fallback"
ALONE = "alone"  # sharing on this host when another process uses the quota; none does now

REDIS_BUDGET = 0.05  # a take slower than this is "Redis is slow": fall back, never wait on it
SLOW_STRIKES = 3  # ...the request that waited goes on locally at once; this many in a row (a
# slow Redis, not a starved host's hiccup) and the process falls back as if it were down
SERVE_LOCALLY = -1.0  # _draw's answer when Redis was slow: this one request goes on locally
CONNECT_BUDGET = 1.0  # the first connection (TCP, TLS, AUTH) at open may take longer
LEASE_SECONDS = 0.02  # take up to 20 ms of the rate at once: 2 tokens at 120/s, 1 at 25/s
RESERVE_SHARE = 0.1  # bulk callers leave a tenth of the burst (at least 1 token) to interactive
JUDGE_LEASE = 1.0  # a judge that has not taken for this long (or for 3 of its turns at the
# fleet's rate, if longer) hands over to one that takes
CEILING_MEMORY = 10.0  # the lowest configured quota binds the fleet this long after its
# process last took
PULL_EVERY = 0.1  # the judge reads the fleet's counters this often: windows are 1 s long
PROCESS_WINDOW = 1.0  # "processes drawing" counts those that took in the last second
KEY_TTL = 3600  # seconds an idle fleet's keys live; renewed by every take
RECONNECT_FIRST = 0.1  # the first reconnect attempt after a failure, in seconds...
RECONNECT_CAP = 5.0  # ...doubling, with full jitter, up to this
TRIP_WEIGHT = 0.1  # the smoothed Redis round trip follows the last ten or so
EPOCH = 1_700_000_000  # Redis TIME minus this keeps microseconds exact in a double
_SHARING_OFF_SAID: set[str] = set()  # directories this process said it cannot share through
PRESENCE_EVERY = 0.25  # sharing on this host by default: look this often whether another
# process uses the quota. A newcomer shares from its first request, and the others within
# this long: a quarter of a second of one process's rate over the quota at most, which the
# server's one-second burst reserve absorbs
ALONE_AFTER = 4  # ...and pace alone only after this many checks in a row found no other: a
# process that opens and closes clients must not flip the others between their two buckets,
# each switch a fresh burst

# KEYS: 1 the bucket hash, 2 the processes' sorted set.
# ARGV: 1 member, 2 wanted, 3 bulk (0/1), 4 answers, 5 throttled answers, 6 the judge's rate
# ('' unless the caller judges), 7 the rate for a bucket not yet made, 8 the caller's ceiling
# (''), 9 burst seconds, 10 reserve share, 11 judge lease, 12 pull every, 13 ttl,
# 14 process window, 15 now ('' for Redis's TIME; tests pass one), 16 the judge's state (''),
# 17 ceiling memory, 18 debt (requests sent on without a token, to charge now), 19 the debt's
# age (s since the last of them went).
# Returns: granted; wait (s: until the tokens wanted are there; none were granted, or as many
# again; never 0 when none were); rate; judges (0/1); pulled answers (-1 if none); pulled
# throttles; processes; stored state (for a new judge); now; the fleet's ceiling ('' if none).
_TAKE = """
local key, procs = KEYS[1], KEYS[2]
local function num(x) return string.format('%.17g', x) end
local now
if ARGV[15] ~= '' then
  now = tonumber(ARGV[15])
else
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - EPOCH) + tonumber(t[2]) / 1000000
end
local member = ARGV[1]
local answers, throttled = tonumber(ARGV[4]), tonumber(ARGV[5])
if answers > 0 then redis.call('HINCRBY', key, 'answers', answers) end
if throttled > 0 then redis.call('HINCRBY', key, 'throttled', throttled) end

redis.call('ZADD', procs, now, member)
redis.call('ZREMRANGEBYSCORE', procs, '-inf', now - tonumber(ARGV[14]))
local processes = redis.call('ZCARD', procs)

-- The judge: the caller, if it judges already or the last judge's lease ran out.
local judge = redis.call('HGET', key, 'judge')
local judge_until = tonumber(redis.call('HGET', key, 'judge_until') or '0')
local judges = 0
local state = ''
if judge == member or not judge or judge_until < now then
  judges = 1
  if judge ~= member then
    redis.call('HSET', key, 'judge', member, 'pulled_at', num(now))
    state = redis.call('HGET', key, 'state') or ''
  else
    if ARGV[6] ~= '' then redis.call('HSET', key, 'rate', ARGV[6]) end
    if ARGV[16] ~= '' then redis.call('HSET', key, 'state', ARGV[16]) end
  end
end

local stored = redis.call('HGET', key, 'rate')
if not stored then
  stored = ARGV[7]
  redis.call('HSET', key, 'rate', stored)
end
local rate = tonumber(stored)

-- The fleet's ceiling: the lowest quota a process configured, held while that process
-- keeps taking (it renews it), then the next lowest.
local ceiling = tonumber(redis.call('HGET', key, 'ceiling') or '')
if ceiling and tonumber(redis.call('HGET', key, 'ceiling_until') or '0') < now then
  ceiling = nil
end
if ARGV[8] ~= '' then
  local mine = tonumber(ARGV[8])
  if not ceiling or mine <= ceiling or redis.call('HGET', key, 'ceiling_by') == member then
    ceiling = mine
    redis.call('HSET', key, 'ceiling', num(mine), 'ceiling_by', member,
               'ceiling_until', num(now + tonumber(ARGV[17])))
  end
end
if ceiling then rate = math.min(rate, ceiling) end

if judges == 1 then
  -- A judge keeps its lease while it takes about as often as a process does at this rate.
  local lease = math.max(tonumber(ARGV[11]), 3 * processes / rate)
  redis.call('HSET', key, 'judge_until', num(now + lease))
end

local period = 1.0 / rate
local capacity = math.max(1.0, rate * tonumber(ARGV[9]))
local limit = capacity
if ARGV[3] == '1' and capacity >= 2.0 then
  local reserve = math.max(1.0, math.floor(capacity * tonumber(ARGV[10]) + 0.5))
  limit = math.max(1.0, capacity - reserve)
end
local tat = tonumber(redis.call('HGET', key, 'tat') or '0')
-- Requests the caller sent on without a token (its take was slow, and then refused) are
-- charged first, up to the burst, as of when they went: the fleet pays them back from its next
-- tokens, unless the bucket has refilled since.
local debt = math.min(tonumber(ARGV[18]), capacity)
if debt > 0 then tat = math.max(tat, now - tonumber(ARGV[19])) + debt * period end
if tat < now then tat = now end
if debt > 0 then redis.call('HSET', key, 'tat', num(tat)) end
local room = math.floor((now + limit * period - tat) / period + 1e-6)
local wanted = math.max(1, math.min(tonumber(ARGV[2]), math.floor(limit)))
local granted = math.max(0, math.min(wanted, room))
local wait
if granted > 0 then
  -- Granted: the wait is until as many tokens are there again, so it need not ask before.
  tat = tat + granted * period
  redis.call('HSET', key, 'tat', num(tat))
  wait = math.max(0, tat + wanted * period - now - limit * period)
else
  -- Refused: the wait is until all the tokens it wanted are there, to take them in one trip.
  wait = math.max(1e-6, tat + wanted * period - now - limit * period)
end

local pulled, pulled_throttled = -1, 0
if judges == 1 then
  local pulled_at = tonumber(redis.call('HGET', key, 'pulled_at') or '0')
  if now - pulled_at >= tonumber(ARGV[12]) then
    pulled = tonumber(redis.call('HGET', key, 'answers') or '0')
    pulled_throttled = tonumber(redis.call('HGET', key, 'throttled') or '0')
    redis.call('HSET', key, 'answers', 0, 'throttled', 0, 'pulled_at', num(now))
  end
end

redis.call('EXPIRE', key, tonumber(ARGV[13]))
redis.call('EXPIRE', procs, tonumber(ARGV[13]))
return {granted, num(wait), num(rate), judges, pulled, pulled_throttled, processes, state,
        num(now), ceiling and num(ceiling) or ''}
""".replace("EPOCH", str(EPOCH))


def require_redis() -> None:
    """Raise :class:`ConfigurationError` naming the extra if redis-py is not installed."""
    try:
        import redis.asyncio  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            "a shared quota needs redis-py: pip install 'aiocognito[redis]'"
        ) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Served:
    """A request whose draw answered late: it goes on under the local limiter meanwhile.

    ``used`` is how many of the late answer's tokens it took (1, or 0 once it is known that it
    was never sent); ``landed`` whether the answer came; ``charged`` whether that answer had no
    token for it, so that it became a debt.
    """

    __slots__ = ("charged", "landed", "used")

    def __init__(self, used: int) -> None:
        self.used = used
        self.landed = False
        self.charged = False


class FleetLimiter(RateLimiter):
    """Paces one quota category from a bucket in Redis shared by every process.

    Falls back to the inherited local limiter whenever Redis fails; see the module docstring.
    It is opened by each client that uses it (:meth:`attach`) and closes its connection when
    the last one leaves (:meth:`detach`).

    Args:
        category: ``UserUpdate`` or ``UserRead``.
        ceiling: The configured quota (a ceiling for the whole fleet), or None if unknown.
        adaptive: Whether the fleet's rate adapts to throttling.
        url: The Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        group: The quota group, which namespaces the keys.
        clock: This process's clock for deadlines and windows; by default the event loop's,
            as the engine's (see :func:`~aiocognito._limits.loop_time`).
    """

    def __init__(
        self,
        category: str,
        ceiling: float | None,
        *,
        adaptive: bool,
        url: str,
        group: str,
        clock: Callable[[], float] | None = None,
        when_shared: bool = False,
    ) -> None:
        super().__init__(category, ceiling, adaptive=adaptive, clock=clock)
        self._url = url
        # Sharing on this host by default: draw from the bucket only while another process
        # uses the quota; alone, pace locally (no file I/O per request).
        self._when_shared = when_shared and is_file_url(url)
        self._presence: Presence | None = None
        self._watch: asyncio.Task[None] | None = None
        self._alone_checks = 0  # checks in a row that found no other process
        # The group in braces is a Redis Cluster hash tag: a category's keys share one slot,
        # as a script's keys must.
        prefix = f"aiocognito:{{{group}}}:{category}"
        self.keys = (f"{prefix}:bucket", f"{prefix}:processes")
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._redis: Redis | HostStore | None = None
        self._script: Any = None
        self._users = 0
        self.mode = SHARED
        self._on_host = is_file_url(url)
        self._log = _log.FallbackLog(
            f"the shared {category} quota ({'file' if self._on_host else 'redis'})",
            "the local adaptive limiter",
        )
        self._reconnect: asyncio.Task[None] | None = None
        self.fleet_rate: float | None = None  # the fleet's allowed rate, as last seen
        self.processes = 0  # processes that drew in the last PROCESS_WINDOW, as last seen
        self._judge: _AdaptiveRate | None = None  # the fleet's rate, while this process judges
        self._answers = 0  # answers not yet reported to the fleet
        self._throttles = 0
        self._leased: deque[float] = deque()  # expiry instants of tokens taken ahead
        self._due = -math.inf  # when the bucket will next have a token for us, as last told
        # ...to a draw at this priority: a bulk draw's answer leaves out the interactive reserve
        self._due_for = Priority.INTERACTIVE
        self._waiting = _Queues()  # callers waiting for the fleet's bucket
        self.takes = 0  # round trips to Redis that answered
        self._slow = 0  # round trips in a row over REDIS_BUDGET
        self._trip = 0.0  # the round trip to Redis, smoothed
        self._asked = 1  # tokens the last draw asked for
        self._asked_as = Priority.INTERACTIVE  # ...and at which priority
        self._debt = 0  # requests sent on locally that no token paid for, to charge
        self._debt_at = -math.inf  # when the last of them went
        self._served: _Served | None = None  # the request the last slow draw sent on locally
        self._backoff = RECONNECT_FIRST  # the next wait before trying Redis again
        self._rejoined_at = -math.inf

    # -- lifecycle -----------------------------------------------------------------------------

    async def attach(self) -> None:
        """A client opened on this limiter: connect if it is the first."""
        self._users += 1
        if self._redis is not None:
            return
        if self._on_host:
            from ._hostquota import HostStore  # noqa: PLC0415 - imports this module

            self._redis = HostStore(self._url)
        else:
            from redis.asyncio import Redis as RedisClient  # noqa: PLC0415 - the optional extra

            self._redis = RedisClient.from_url(
                self._url, socket_connect_timeout=CONNECT_BUDGET, socket_timeout=CONNECT_BUDGET
            )
        self._script = self._redis.register_script(_TAKE)
        self.mode = SHARED
        if self._on_host and not self._mark():
            return
        try:
            with anyio.fail_after(CONNECT_BUDGET):
                await self._redis.ping()
        except Exception as exc:
            self._fall_back(exc)

    def _mark(self) -> bool:
        """Sharing by default: mark this process on the quota and watch for others; False if
        it paces locally for now (alone, or the directory is unusable)."""
        from ._hostquota import (  # noqa: PLC0415 - imports this module
            HostStore,
            Presence,
            QuotaDirectoryNotPrivateError,
        )

        store = self._redis
        assert isinstance(store, HostStore)
        presence = Presence(store, self.keys[0])
        try:
            alone = presence.alone()
        except OSError as exc:
            presence.close()
            if not self._when_shared:
                return True  # a named directory: the check that follows falls back, loudly
            # Not asked for: a directory that cannot be written leaves this process pacing
            # alone, as it would without sharing; said once per process, at INFO. One that is
            # not this user's alone may be another user's doing (made in advance, in a shared
            # /tmp): said at WARNING.
            self.mode = LOCAL
            if self._url not in _SHARING_OFF_SAID:
                _SHARING_OFF_SAID.add(self._url)
                kind = type(exc).__name__
                _log.logger.log(
                    logging.WARNING
                    if isinstance(exc, QuotaDirectoryNotPrivateError)
                    else logging.INFO,
                    "the quota is not shared on this host (%s: %s); each process paces alone",
                    kind,
                    "the directory is not this user's alone"
                    if isinstance(exc, QuotaDirectoryNotPrivateError)
                    else "the directory cannot be used",
                    extra={"event": "host sharing off", "code": kind},
                )
            return False
        self._presence = presence
        store.sweep_unused()
        self._watch = asyncio.get_running_loop().create_task(self._watch_presence())
        if alone and self._when_shared:
            self.mode = ALONE
            return False
        return True

    async def _watch_presence(self) -> None:
        """Every ``PRESENCE_EVERY`` seconds: share while another process uses the quota."""
        while self._presence is not None:
            await anyio.sleep(PRESENCE_EVERY)
            self._check_presence()

    def _check_presence(self) -> None:
        """Go from pacing alone to sharing when another process comes, and back when none is
        left. A store that failed is the reconnect loop's business, not this one's."""
        presence = self._presence
        if presence is None:
            return
        try:
            alone = presence.alone()
        except OSError:
            return  # the directory went wrong: keep the mode; the next check tries again
        if not self._when_shared:
            return  # a named directory: marked, so that the default's processes see this one
        self._alone_checks = self._alone_checks + 1 if alone else 0
        if self.mode == SHARED and self._alone_checks >= ALONE_AFTER:
            self._go_alone()
        elif not alone and self.mode == ALONE:
            self._go_shared()

    def _go_alone(self) -> None:
        """No other process uses the quota: pace locally from the fleet's whole rate.

        The local bucket starts empty: its tokens accrued while the shared bucket paced this
        process, and spending them now would add a burst on top of the shared one's.
        """
        self.mode = ALONE
        self._judge = None
        self._leased.clear()
        if self.fleet_rate is not None:
            self._seed(self.fleet_rate)
        self.fleet_rate = None  # no fleet to report while alone
        self._bucket.tokens, self._bucket.last = 0.0, self._clock()
        self._waiting.wake_all()  # they go on locally

    def _go_shared(self) -> None:
        """Another process uses the quota: draw from the bucket, this process's callers too.

        The bucket knows nothing of what this process sent alone: its burst (a fifth of a
        second of the rate) is charged to it as a debt, so that the first draws do not add a
        full burst of the shared bucket's on top of the one just spent.
        """
        self.mode = SHARED
        self._alone_checks = 0
        local = RateLimiter.rate(self) or 1.0
        self._debt += max(1, math.floor(local * BURST_SECONDS))
        self._debt_at = self._clock()
        self.fleet_rate = None  # a new bucket starts from the local rate, not an old share
        self._queues.wake_all()  # the callers waiting locally go to the bucket's queue

    async def detach(self) -> None:
        """A client closed: disconnect when the last one has left."""
        self._users = max(0, self._users - 1)
        if self._users or self._redis is None:
            return
        redis, self._redis = self._redis, None
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._presence is not None:
            self._presence.close()
            self._presence = None
        self._judge = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_BUDGET):
            await redis.aclose()

    @property
    def _ceiling(self) -> float | None:
        """The lowest quota among the open clients (see :meth:`RateLimiter.lower_ceiling`)."""
        return self._rate.ceiling

    # -- pacing ------------------------------------------------------------------------------

    def rate(self) -> float | None:
        """The rate allowed now: the fleet's while shared, the local limiter's otherwise."""
        if self.mode == SHARED and self.fleet_rate is not None:
            return self.fleet_rate
        return super().rate()

    def _lease(self, now: float) -> bool:
        """Use a token taken ahead, if one is still fresh."""
        while self._leased and self._leased[0] < now:
            self._leased.popleft()
        if self._leased:
            self._leased.popleft()
            return True
        return False

    def acquire(
        self,
        priority: Priority = Priority.INTERACTIVE,
        *,
        deadline: float | None = None,
        share: ShareLimit | None = None,
        claim: QuotaClaim | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Wait for the fleet's quota to allow one request; see :meth:`RateLimiter.acquire`.

        The claim goes with the caller from queue to queue (the fleet's, the local limiter's
        while Redis fails or is slow, or while no other process shares a quota of this host),
        so a promotion takes effect wherever it waits; see the module docstring. Paced locally,
        the caller waits in the local limiter's own coroutine, movable: if the bucket paces
        again before its grant, it goes on there (:meth:`_moved_on`). So pacing alone costs no
        object per caller beyond the local limiter's, nor the collector's time over them.
        """
        if claim is None:
            claim = QuotaClaim()
        if self.mode != SHARED:
            claim._movable = 1
            return RateLimiter.acquire(self, priority, deadline=deadline, share=share, claim=claim)
        claim._bind(priority, share)
        return self._moved_on(claim, deadline)

    async def _moved_on(self, claim: QuotaClaim, deadline: float | None) -> None:
        """Wait until granted, on the bucket while it paces and under the local limiter while
        it does not, moving as the mode changes. A caller left in the local queue once the
        bucket paces again would be paced locally *and* the bucket would pace the new ones:
        together, over the quota. One frame loops over both places, so a caller moved back and
        forth for minutes (a flapping store) does not nest deeper at each move."""
        while not claim.granted:
            if self.mode == SHARED:
                await self._acquire_shared(claim, deadline)
                continue
            claim._movable = 2  # back here, ungranted, if the bucket paces again first
            try:
                await RateLimiter.acquire(
                    self, claim.priority, deadline=deadline, share=claim.share, claim=claim
                )
            finally:
                claim._movable = 0

    def _moved(self) -> bool:
        """A caller waiting locally goes to the bucket's queue once the bucket paces again."""
        return self.mode == SHARED

    async def _acquire_shared(self, claim: QuotaClaim, deadline: float | None) -> None:
        """Wait for a token from the bucket (the local limiter's, for this caller alone, if
        the bucket was slow); return ungranted if the bucket stops pacing meanwhile."""
        if deadline is not None:
            ahead = self._waiting.ahead(claim.priority)
            rate = self.fleet_rate or super().rate() or 1.0
            self._too_late(self._clock() + ahead / rate, deadline, ahead)
        waiter = claim
        self._waiting.join(waiter)
        try:
            while True:
                if self.mode != SHARED:  # Redis failed meanwhile: the caller goes on locally
                    self._waiting.leave(waiter)
                    return None
                if self._waiting.head() is not waiter:
                    await self._wait_behind(self._waiting, waiter, deadline)
                    continue
                waiter.wake = anyio.Event()
                wait = await self._turn(claim, deadline)
                if wait is None:
                    continue  # Redis failed: the loop goes on locally
                if wait == 0.0:
                    self._waiting.leave(waiter)
                    return None
                if wait == SERVE_LOCALLY:  # Redis was slow: this caller goes on locally,
                    self._waiting.leave(waiter)  # at no more than this process's fair share
                    served = self._served
                    if self.fleet_rate is not None:
                        fair = self.fleet_rate / max(1, self.processes)
                        if (RateLimiter.rate(self) or math.inf) > fair * 1.01:
                            self._seed(fair)
                    try:
                        # Not movable: the bucket is the one that was slow for this caller.
                        return await RateLimiter.acquire(
                            self, claim.priority, deadline=deadline, share=claim.share, claim=claim
                        )
                    except BaseException:
                        if served is not None:
                            self._unserved(served)
                        raise
                with anyio.move_on_after(wait):
                    await waiter.wake.wait()
        except BaseException:
            self._waiting.leave(waiter)
            raise

    def _unserved(self, served: _Served) -> None:
        """A request meant to go on locally never went (cancelled, or past its deadline)."""
        if not served.landed:
            served.used = 0  # its draw's tokens are all kept when the answer comes
        elif served.charged:
            self._debt = max(0, self._debt - 1)  # nothing to charge, if not charged already
        elif self.mode == SHARED:
            self._keep(self._clock())  # the late token it took serves the next caller
        served.used = 0

    async def _turn(self, claim: QuotaClaim, deadline: float | None) -> float | None:
        """The head's turn: 0.0 if it has its token, else the seconds to wait; None on failure,
        :data:`SERVE_LOCALLY` if Redis was slow.

        The claim's priority and share are read as they stand at each step: a promotion during
        the round trip to Redis means the token granted is not charged to the share, and a
        refusal (the bulk reserve) is asked again at once, as interactive.
        """
        now = self._clock()
        wait = 0.0
        if claim.share is not None:
            wait = claim.share._ready(now, self.fleet_rate or super().rate() or 1.0)
        # When the bucket has a token for us again, as last told; an interactive head does not
        # wait for a time told to a bulk draw, which the reserve held back: it asks itself.
        bulk_due = self._due_for is Priority.BULK and claim.priority is Priority.INTERACTIVE
        if wait == 0.0 and not self._leased and not bulk_due:
            wait = max(0.0, self._due - now)
        if wait == 0.0:
            self._too_late(now + self._redis_trip(), deadline, 0)
            if not self._lease(now):
                # A token for every caller waiting (leased: up to LEASE_SECONDS of the rate);
                # an interactive head asks for the interactive callers only, and so waits for
                # no more tokens than they need.
                priority = claim.priority
                wanted = (
                    len(self._waiting.by_priority[Priority.INTERACTIVE])
                    if priority is Priority.INTERACTIVE
                    else len(self._waiting)
                )
                taken = await self._draw(priority, wanted)
                if taken is None or taken == SERVE_LOCALLY:
                    return taken
                wait = taken
            if wait == 0.0:
                try:
                    # The round trip to Redis took time too: the call must still fit.
                    self._too_late(self._clock(), deadline, 0)
                except QuotaDeadlineError:
                    self._keep(self._clock())  # the token serves the next caller
                    raise
                if claim.share is not None:
                    claim.share._take()
                self._sent += 1
                claim.granted = True
                return 0.0
        # The rate may have fallen since the estimate: check again at every turn.
        self._too_late(self._clock() + wait, deadline, 0)
        return wait

    def _redis_trip(self) -> float:
        """The round trip to Redis a draw is expected to add before a call can go."""
        return min(self._trip, REDIS_BUDGET)

    def _keep(self, now: float) -> None:
        """Keep a token for the next caller while it is fresh, up to the bucket's burst."""
        rate = self.fleet_rate or super().rate() or 1.0
        if len(self._leased) < max(1, math.floor(rate * BURST_SECONDS)):
            self._leased.append(now + BURST_SECONDS)

    async def _draw(self, priority: Priority, wanted: int) -> float | None:
        """One round trip: take tokens (0.0), or the wait for the next; None if Redis failed,
        :data:`SERVE_LOCALLY` if it was slow."""
        assert self._script is not None
        rate = self.fleet_rate or super().rate() or 1.0
        wanted = max(1, min(wanted, math.floor(rate * LEASE_SECONDS)))
        answers, throttles, debt = self._answers, self._throttles, self._debt
        self._answers = self._throttles = self._debt = 0
        self._asked, self._asked_as = wanted, priority
        now = self._clock()
        args = self._arguments(
            now, priority, wanted, answers, throttles, debt=debt, debt_age=now - self._debt_at
        )
        call = asyncio.ensure_future(self._script(keys=list(self.keys), args=args))
        # Wait for the answer within the budget, but never cancel the call: a cancelled
        # command costs the connection (and the tokens the script took). A late answer still
        # counts when it comes; its tokens are kept for the next callers while fresh.
        try:
            await asyncio.wait({call}, timeout=REDIS_BUDGET)
        except BaseException:  # the caller was cancelled: the answer still counts
            call.add_done_callback(functools.partial(self._late, served=_Served(used=0)))
            raise
        if not call.done():
            # The head goes on locally: that is what the first token granted pays for.
            self._served = _Served(used=1)
            call.add_done_callback(functools.partial(self._late, served=self._served))
            self._slow += 1
            if self._slow >= SLOW_STRIKES:
                self._fall_back(TimeoutError(f"{SLOW_STRIKES} round trips over the budget"))
                return None
            return SERVE_LOCALLY
        self._trip += TRIP_WEIGHT * (self._clock() - now - self._trip)
        try:
            return self._answered(call.result())
        except Exception as exc:  # an error, or an answer that is not the script's
            self._fall_back(exc)
            return None

    def _arguments(
        self,
        now: float,
        priority: Priority,
        wanted: int,
        answers: int,
        throttles: int,
        *,
        debt: int = 0,
        debt_age: float = 0.0,
    ) -> list[Any]:
        """The script's ARGV (see :data:`_TAKE`)."""
        judge = self._judge
        return [
            self.member,
            wanted,
            1 if priority is Priority.BULK else 0,
            answers,
            throttles,
            repr(judge.rate(now)) if judge is not None else "",
            repr(self._start_rate()),
            "" if self._ceiling is None else repr(float(self._ceiling)),
            BURST_SECONDS,
            RESERVE_SHARE,
            JUDGE_LEASE,
            PULL_EVERY,
            KEY_TTL,
            PROCESS_WINDOW,
            "",
            self._state() if judge is not None else "",
            CEILING_MEMORY,
            debt,
            repr(max(0.0, debt_age)) if debt else "0",
        ]

    def _late(self, call: asyncio.Future[Any], *, served: _Served) -> None:
        """An answer that came after its budget: its tokens (but the one ``served`` took, if
        its request went on locally) are kept for the next callers."""
        if call.cancelled():
            return
        failure = call.exception()  # retrieved, whatever happens next
        if self._redis is None or self.mode != SHARED:
            return  # closed, or already fallen back: the answer no longer matters
        if failure is not None:
            self._fall_back(failure)
            return
        try:
            self._answered(call.result(), used=served.used, late=True, served=served)
        except Exception as exc:  # an answer that is not the script's
            self._fall_back(exc)

    def _answered(
        self, reply: list[Any], *, used: int = 1, late: bool = False, served: _Served | None = None
    ) -> float:
        """Take in the script's answer: 0.0 if granted, else the wait for the next token.

        ``used`` of the tokens granted are spent (the head's); the rest are kept for the next
        callers, who are woken if the answer came ``late``.
        """
        granted, wait, fleet_rate, judges, pulled, pulled_throttles, processes = (
            int(reply[0]),
            float(reply[1]),
            float(reply[2]),
            int(reply[3]),
            int(reply[4]),
            int(reply[5]),
            int(reply[6]),
        )
        state, ceiling = _text(reply[7]), _text(reply[9])
        if not (fleet_rate > 0 and math.isfinite(wait) and granted >= 0):
            raise ValueError("not the take script's answer")
        self.takes += 1
        self._slow = 0
        self.fleet_rate = fleet_rate
        self.processes = processes
        now = self._clock()
        if judges:
            if self._judge is None:
                self._judge = self._new_judge(now, fleet_rate, state)
            own = self._ceiling
            fleet = float(ceiling) if ceiling else None
            # The fleet's ceiling binds the judge, and is raised back when its process leaves.
            self._judge.set_ceiling(min((c for c in (own, fleet) if c is not None), default=None))
            if pulled >= 0:
                self._feed(now, pulled, pulled_throttles)
        else:
            self._judge = None
        # Jitter on when to ask again, up to the time of the tokens asked for: processes told
        # the same instant would otherwise race for each token, and the one nearer Redis
        # would win nearly all. (Another process takes what one leaves.) Alone, no jitter:
        # at a low rate the bucket holds one token and a late draw loses time.
        jitter = random.random() * self._asked / fleet_rate if processes > 1 else 0.0
        if served is not None:
            served.landed = True
        if late and granted < used:
            # The caller went on locally and this answer has no token to pay for it: the next
            # draw charges the bucket, so a Redis slow now and then does not overdraw the quota.
            self._debt += used - granted
            self._debt_at = now
            if served is not None:
                served.charged = True
        if granted == 0:
            return max(wait, 1e-6) + jitter
        self._due = now + wait + jitter
        self._due_for = self._asked_as
        for _ in range(granted - used):
            self._keep(now)
        if late:
            self._waiting.wake_head()
        return 0.0

    def _start_rate(self) -> float:
        """The rate for a bucket not yet made (a new fleet, or keys lost in a restart)."""
        if self.fleet_rate is not None:
            return self.fleet_rate  # as last seen, before an outage too
        return super().rate() or 1.0

    # -- the judge -----------------------------------------------------------------------------

    def _new_judge(self, now: float, fleet_rate: float, state: str) -> _AdaptiveRate:
        """Judge the fleet from now on, carrying on from the rate and state the last judge left."""
        judge = self._fresh_rate(now)
        try:
            saved = json.loads(state) if state else {}
        except ValueError:
            saved = {}
        if not isinstance(saved, dict):
            saved = {}
        if saved.get("held") and judge.ceiling is not None:
            # The last judge held its rate at a ceiling, never cut: so does this one, at its own
            # (a lower one in the fleet still binds, through set_ceiling).
            return judge
        if saved or abs(fleet_rate - judge.rate(now)) > 1e-9:
            # Not a new fleet: carry on from where the fleet is, not from the start.
            judge.slow_start = judge.slow_start and bool(saved.get("slow_start", False))
            w_max = float(saved.get("w_max", judge.w_max))  # else: the ceiling, if told
            scale = saved.get("scale")
            judge.scale = float(scale) if isinstance(scale, int | float) else None
            judge.base = fleet_rate
            judge.w_max = max(w_max, fleet_rate)
            if judge.w_max > judge.base:
                judge.cut_at = now
                judge.k = ((judge.w_max - judge.base) / judge._pace()) ** (1 / 3)
                judge.probe_cap = judge.w_max
        return judge

    def _state(self) -> str:
        """What the next judge needs to carry on: a few numbers, nothing secret."""
        judge = self._judge
        assert judge is not None
        held = judge.cut_at is None and not judge.slow_start and judge.ceiling is not None
        return json.dumps(
            {
                "slow_start": judge.slow_start,
                "w_max": judge.w_max,
                "scale": judge.scale,
                "held": held,  # at the ceiling, never cut: a new judge starts at its own
            },
            separators=(",", ":"),
        )

    def _feed(self, now: float, answers: int, throttles: int) -> None:
        """The fleet's answers since the last pull, into the judge's windows."""
        judge = self._judge
        assert judge is not None
        for _ in range(max(0, answers - throttles)):
            judge.record(now, throttled=False)
        for _ in range(min(answers, throttles)):
            judge.record(now, throttled=True)

    # -- feedback ------------------------------------------------------------------------------

    def refund(self, share: ShareLimit | None = None) -> None:
        """A token let through was never used: keep it for the next caller while it is fresh."""
        if self.mode != SHARED:
            super().refund(share)
            return
        self._sent -= 1
        self._keep(self._clock())
        if share is not None and share._bucket is not None:
            share._bucket.tokens += 1.0
        self._waiting.wake_head()

    def record(self, *, throttled: bool, latency: float | None = None) -> None:
        """Report one answer: to the fleet's counters while shared, locally otherwise."""
        if self.mode != SHARED:
            super().record(throttled=throttled, latency=latency)
            return
        self._note(throttled=throttled, latency=latency)
        self._answers += 1
        self._throttles += throttled

    # -- falling back and rejoining -------------------------------------------------------------

    def _fall_back(self, cause: BaseException) -> None:
        """Redis failed: pace locally from this process's fair share, and try to reconnect."""
        if self.mode != SHARED:
            return
        self.mode = LOCAL_FALLBACK
        self._judge = None
        self._leased.clear()
        self._log.unreachable(cause)
        if self.fleet_rate is not None:
            self._seed(self.fleet_rate / max(1, self.processes))
        self._waiting.wake_all()
        if self._redis is not None and self._reconnect is None:
            self._reconnect = asyncio.get_running_loop().create_task(self._rejoin())

    def _seed(self, rate: float) -> None:
        """Start the local limiter at ``rate`` (under its ceiling), out of slow start."""
        local = self._fresh_rate(self._clock())
        if self._ceiling is not None:
            rate = min(rate, self._ceiling)
        local.base = local.w_max = max(rate, MIN_RATE)
        local.slow_start = False
        local.cuts = self._rate.cuts  # statistics count every cut of this process's limiter
        self._rate = local

    def _fresh_rate(self, now: float) -> _AdaptiveRate:
        """A new adaptive rate with this limiter's ceiling and settings, logging its changes."""
        fresh = _AdaptiveRate(
            self._ceiling, adaptive=self._rate.adaptive, now=now, wall_offset=time.time() - now
        )
        fresh.on_change = self._rate_changed
        return fresh

    async def _rejoin(self) -> None:
        """Try the bucket with capped, jittered backoff until it answers in time; then share.

        The probe is a real draw (its token is kept), not a PING: a server that answers PING
        but cannot run the script (a read-only replica) must not be rejoined. The backoff
        carries over from an outage that ended less than ``RECONNECT_CAP`` seconds of sharing
        ago, so a flapping Redis is not hammered.
        """
        if self._clock() - self._rejoined_at > RECONNECT_CAP:
            self._backoff = RECONNECT_FIRST
        try:
            while True:
                await anyio.sleep(random.uniform(0.5, 1.0) * self._backoff)
                self._backoff = min(self._backoff * 2, RECONNECT_CAP)
                if self._redis is None or self._script is None:
                    return
                started = self._clock()
                args = self._arguments(started, Priority.BULK, 1, 0, 0)
                try:
                    with anyio.fail_after(CONNECT_BUDGET):
                        reply = await self._script(keys=list(self.keys), args=args)
                    if self._clock() - started > REDIS_BUDGET:
                        continue  # up, but still too slow to pace by
                    self.mode = SHARED
                    self._answered(reply, used=0, late=True)
                except Exception:
                    self.mode = LOCAL_FALLBACK
                    continue
                self._rejoined_at = self._clock()
                self._log.reachable()
                self._queues.wake_all()  # the callers waiting locally go back to the fleet's queue
                return
        finally:
            self._reconnect = None

    # -- statistics ------------------------------------------------------------------------------

    def statistics(self) -> CategoryStatistics:
        """A snapshot, with the mode and the fleet's rate and processes as last seen."""
        local = super().statistics()
        queued = local.queued + len(self._waiting)
        fleet = self.mode in (SHARED, LOCAL_FALLBACK)
        return CategoryStatistics(
            category=local.category,
            rate=self.rate(),
            ceiling=local.ceiling,
            adaptive=local.adaptive,
            sent=local.sent,
            throttled=local.throttled,
            queued=queued,
            cuts=local.cuts + (self._judge.cuts if self._judge is not None else 0),
            noise_tolerance=local.noise_tolerance,
            mode=self.mode,
            # The fleet as last seen, while this process is in it (or falls back from it).
            fleet_rate=self.fleet_rate if fleet else None,
            fleet_processes=self.processes if fleet and self.fleet_rate is not None else None,
            fallbacks=self._log.outages,
        )
