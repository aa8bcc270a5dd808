"""The virtual-time loop the engine and limiter tests run on keeps time as a real loop would."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest

from tests.virtual_time import START, TICK, virtual_time


@virtual_time
async def test_sleeps_take_loop_time_not_real_time() -> None:
    real, began = time.perf_counter(), anyio.current_time()
    assert began == pytest.approx(START, abs=10 * TICK)
    await anyio.sleep(3600)
    assert anyio.current_time() - began == pytest.approx(3600, abs=10 * TICK)
    assert time.perf_counter() - real < 1.0


@virtual_time
async def test_timers_fire_in_order_and_timeouts_at_their_instant() -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await anyio.sleep(seconds)
        woke.append((name, round(anyio.current_time() - START, 3)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 2.5)
        tg.start_soon(sleeper, "early", 0.5)
        with anyio.move_on_after(1.0) as scope:
            await anyio.Event().wait()  # never set: only the timeout ends it
    assert scope.cancelled_caught
    assert woke == [("early", 0.5), ("late", 2.5)]


@virtual_time
async def test_busy_tasks_move_the_clock_a_tick_a_turn() -> None:
    before = anyio.current_time()
    for _ in range(1000):
        await anyio.lowlevel.checkpoint()
    assert anyio.current_time() - before == pytest.approx(1000 * TICK, rel=0.01)


@virtual_time
async def test_a_wait_shorter_than_a_tick_ends() -> None:
    # What a token bucket a hair short of a whole token does: on a clock that did not move
    # with each turn, this would spin for ever.
    deadline = anyio.current_time() + TICK / 1000
    while anyio.current_time() < deadline:  # noqa: ASYNC110 - the pattern under test
        await anyio.sleep(deadline - anyio.current_time())


@virtual_time
async def test_a_thread_still_wakes_the_loop() -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set)).start()
    await done.wait()  # nothing is due: the loop waits for real I/O, not for a timer
