"""`RunStop.wait` and `CutShort`: a wait the run's stop cuts short ends with the run's own
error, and a cancel from anyone else still cancels, even when both come in one turn."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tiktok_async._exceptions import ForbiddenError
from tiktok_async._runstop import CutShort, NotSentError, RunStop

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


async def waiting_in(cut_short: CutShort, deadline: float) -> asyncio.Task[str]:
    """A task waiting (until `deadline`) for a future nobody sets; ends with the reason its
    cancel was given, when it was `cut_short`'s."""
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait() -> str:
        task = asyncio.current_task()
        cut_short.enter(task, deadline)
        try:
            await never
        except asyncio.CancelledError:
            reason = cut_short.cut_reason(task)
            if reason is None:
                raise
            return reason
        finally:
            cut_short.leave(task)
        return "answered"

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    return task


async def test_expire_ends_the_waits_past_their_deadline_and_says_why() -> None:
    cut_short = CutShort()
    early, late = await waiting_in(cut_short, 10.0), await waiting_in(cut_short, 20.0)
    assert cut_short.expire(5.0) == 10.0  # none due: the earliest deadline
    assert cut_short.expire(10.0, "timed out") == 20.0
    assert await early == "timed out"
    assert not late.done()
    cut_short.cut("closed")
    assert await late == "closed"
    assert cut_short.expire(30.0) == float("inf")  # nobody left


@needs_uncancel
async def test_a_cancel_in_the_turn_the_deadline_passes_still_cancels() -> None:
    """The transport's timer ends a request and its caller cancels it in the same turn:
    the caller's cancel goes on (taken back with the timer's, the task would go on as if
    nobody had cancelled it)."""
    cut_short = CutShort()
    task = await waiting_in(cut_short, 1.0)
    cut_short.expire(2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@needs_uncancel
async def test_a_wait_expired_twice_is_cancelled_once() -> None:
    """A sweep that comes again before the task ran (a busy loop) does not cancel it a
    second time: one cancel to take back, and the task answers for itself."""
    cut_short = CutShort()
    task = await waiting_in(cut_short, 1.0)
    cut_short.expire(2.0)
    cut_short.expire(3.0)
    assert await task == "expired"
    assert getattr(task, "cancelling")() == 0  # noqa: B009 (Python 3.11+, mypy checks 3.10)
