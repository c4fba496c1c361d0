"""`RunStop.wait` and `CutShort`: a wait the run's stop cuts short ends with the run's own
error, and a cancel from anyone else still cancels, even when both come in one turn."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tiktok_async._exceptions import ForbiddenError
from tiktok_async._runstop import NotSentError, RunStop

needs_uncancel = pytest.mark.skipif(sys.version_info < (3, 11),
                                    reason="counting cancels (Task.uncancel) is Python 3.11+")


async def waiting(stop: RunStop) -> asyncio.Task[None]:
    """A task waiting in `stop.wait` for a future nobody sets, already inside the wait."""
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(stop.wait(never))
    await asyncio.sleep(0)
    return task


async def test_the_stop_cuts_a_wait_short_with_not_sent() -> None:
    stop = RunStop()
    task = await waiting(stop)
    stop.set(ForbiddenError("bad key", status=403))
    with pytest.raises(NotSentError):
        await task
    assert not task.cancelled()


@needs_uncancel
async def test_a_cancel_in_the_same_turn_as_the_stop_still_cancels() -> None:
    """The bulk pool cancels its workers as the run stops (Ctrl-C, then the pool closing):
    the stop's cancel was taken back and the caller's with it, so the task went on as if
    only the stop had come, and whoever awaited its end waited for good."""
    stop = RunStop()
    task = await waiting(stop)
    stop.set(ForbiddenError("bad key", status=403))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancel_alone_is_not_taken_for_the_stop() -> None:
    stop = RunStop()
    task = await waiting(stop)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stop.set(ForbiddenError("bad key", status=403))  # after: nothing left to cut


@needs_uncancel
async def test_a_cancel_in_the_turn_the_stop_wakes_a_backoff_sleep_still_cancels() -> None:
    """The stop wakes every backoff sleep. `asyncio.wait_for` (Python < 3.12) returned
    normally when its caller was cancelled in that same turn: the cancel was lost, the
    task went on to its next item, and the bulk pool closing meanwhile waited for it."""
    stop = RunStop()
    went_on = False

    async def backing_off() -> None:
        nonlocal went_on
        await stop.sleep(60)
        went_on = True

    task = asyncio.create_task(backing_off())
    await asyncio.sleep(0)
    assert stop.backing_off == 1
    stop.set(ForbiddenError("bad key", status=403))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not went_on
    assert stop.backing_off == 0


async def test_the_stop_wakes_a_backoff_sleep_at_once_and_its_end_ends_it_too() -> None:
    stop = RunStop()
    await stop.sleep(0.01)  # its time is up
    sleeping = asyncio.create_task(stop.sleep(60))
    await asyncio.sleep(0)
    stop.set(ForbiddenError("bad key", status=403))
    await asyncio.wait_for(sleeping, 5)  # woken: not its 60 s
    await stop.sleep(60)  # stopped already: no sleep at all
    assert stop.backing_off == 0
