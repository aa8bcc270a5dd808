"""Virtual time for tests whose I/O is all in memory: the event loop's clock jumps ahead.

:class:`VirtualTimeLoop` is an asyncio event loop whose clock moves only when the loop would
otherwise sleep: when every task is waiting and the next thing due is a timer (a sleep, a
timeout, the limiter pacing a call, a retry's backoff), the clock jumps to it at once. The
engine and the limiter read the event loop's clock, so a test of a thousand calls at 25/s runs
forty seconds of loop time in milliseconds, and its timings are exact rather than approximate.

Only for tests whose every answer comes from memory (``tests/fakes.py``, ``tests/gates.py``):
a socket, a subprocess or a thread answers in real time, and virtual time would race past its
timeouts meanwhile. Tests over the fake server or moto stay on the real clock.

Usage: decorate an ``async def`` test with :func:`virtual_time`; it then runs on its own
``VirtualTimeLoop`` instead of pytest-asyncio's loop.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

P = ParamSpec("P")

#: Where the virtual clock starts: far from zero, so nothing can mistake an instant for "unset".
START = 10_000.0
#: Loop time each turn of the loop takes. A real turn takes at least this long, and code may
#: rely on the clock moving while it runs: a token bucket a hair short of a whole token waits
#: a few femtoseconds, and on a clock that never moved it would wait for ever.
TICK = 1e-6


class _Selector(selectors.BaseSelector):
    """A real selector that, when nothing is ready, moves the loop's clock instead of waiting."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._loop.advance(TICK)
        ready = self._real.select(0)  # the loop's own wake-up pipe, chiefly
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # Nothing is due at all: only real I/O (another thread) can wake the loop.
            return self._real.select(None)
        self._loop.advance(max(timeout - TICK, 0.0))  # straight to the next timer
        return []

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever it would wait for it.

    Each turn of the loop moves the clock by ``TICK`` as well, so busy code sees time pass
    (slowly) and a wait of less than a tick ends on the next turn.
    """

    def __init__(self) -> None:
        self._now = START
        super().__init__(_Selector(self, selectors.DefaultSelector()))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (the loop does this itself when it would wait)."""
        self._now += seconds


def virtual_time(
    test: Callable[P, Coroutine[Any, Any, None]],
) -> Callable[P, None]:
    """Run an ``async def`` test on a fresh :class:`VirtualTimeLoop` (see the module docs)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run
