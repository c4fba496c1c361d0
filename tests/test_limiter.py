"""The client-side token bucket, judged on a virtual clock (exact, no sleeping)."""

from __future__ import annotations

import ast
import asyncio
import contextvars
import itertools
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiolimiter import AsyncLimiter
from recording_rate import RecordingRate
from virtual_clock import VirtualClockLoop

from tiktok_async import _limiter
from tiktok_async._adaptive import TUNING, AdaptiveRate
from tiktok_async._limiter import ConcurrencyGate, RateLimiter
from tiktok_async.emulator import busiest_window

Runner = Callable[[Coroutine[Any, Any, Any]], Any]

# The virtual clock moves a nanosecond a turn of the loop, so grants due on the same
# instant land a few nanoseconds apart. A window this much longer than the one judged
# still holds every grant due within it (its closed ends included), and never the next
# one, which is 1 / rate later: no token can hide in the rounding.
DRIFT = 1e-6


def most_in_a_second(times: list[float]) -> int:
    """The most grants in any closed one-second window [t, t + 1]."""
    return busiest_window(times, 1.0 + DRIFT)


def bound(rate: float, burst: int, seconds: float = 1.0) -> int:
    """The most a token bucket lets through in any closed window: rate x seconds plus its
    depth, which is the burst (1.5 for a burst of 1: the half token of slack)."""
    depth = burst + 0.5 if burst == 1 else burst
    return math.floor(rate * seconds + depth)


class Acquirer(Protocol):
    async def acquire(self) -> None: ...


async def acquire_times(limiter: Acquirer, count: int, tasks: int = 16) -> list[float]:
    """Loop times at which `count` acquires, spread over `tasks` tasks, got through."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await limiter.acquire()
            times.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return times


@pytest.mark.parametrize(
    ("rate", "burst"), [(20, 1), (50, 1), (10, 5), (100, 20), (2.5, 1), (1000, 10), (7, 3)]
)
def test_worst_second_holds_exactly_rate_plus_depth(
    rate: float, burst: int, run_virtual: Runner
) -> None:
    """Tasks that always wait fill the worst second to the bound and not one grant over:
    one token more or less in the bucket fails here."""

    async def scenario() -> list[float]:
        return await acquire_times(RateLimiter(rate, burst), count=int(rate * 2) + burst)

    assert most_in_a_second(run_virtual(scenario())) == bound(rate, burst)


@pytest.mark.parametrize(("rate", "burst"), [(20, 1), (50, 1), (10, 5), (1000, 10)])
def test_mean_rate_reaches_the_rate(rate: float, burst: int, run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        return await acquire_times(RateLimiter(rate, burst), count=int(rate * 2) + burst)

    times = sorted(run_virtual(scenario()))
    steady = times[burst:]  # after the initial burst, the bucket refills at `rate`
    mean = (len(steady) - 1) / (steady[-1] - steady[0])
    assert mean >= 0.97 * rate


def test_bucket_starts_full_so_burst_goes_at_once(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        return await acquire_times(RateLimiter(rate=1, burst=5), count=6)

    times = sorted(run_virtual(scenario()))
    assert times[:5] == pytest.approx([0.0] * 5, abs=1e-6)
    assert times[5] == pytest.approx(1.0)  # then one a second, as a token bucket refills


def test_one_deep_bucket_has_half_a_token_of_slack(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        return await acquire_times(RateLimiter(rate=1, burst=1), count=3)

    assert sorted(run_virtual(scenario())) == pytest.approx([0.0, 0.5, 1.5], abs=1e-6)


def test_no_rate_means_no_wait(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        return await acquire_times(RateLimiter(None), count=1000)

    assert max(run_virtual(scenario())) < 1e-3


def test_set_rate_reschedules_tasks_already_waiting(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(rate=1, burst=1)
        job = asyncio.ensure_future(acquire_times(limiter, count=21, tasks=21))
        await asyncio.sleep(0.1)  # one went through; twenty wait at 1/s
        limiter.set_rate(100)
        return await job

    times = sorted(run_virtual(scenario()))
    assert times[-1] < 0.5  # at 1/s the last would have gone at ~20 s
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:])]
    assert min(gaps) == pytest.approx(0.01, abs=1e-6)  # and they went at 100/s, not at once


def test_set_rate_down_slows_tasks_already_waiting(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(rate=100, burst=1)
        job = asyncio.ensure_future(acquire_times(limiter, count=11, tasks=11))
        await asyncio.sleep(0)
        limiter.set_rate(1)
        return await job

    times = sorted(run_virtual(scenario()))
    assert times[-1] == pytest.approx(9.5, abs=0.01)  # 0, then 0.5 (slack), then 1 a second
    assert most_in_a_second(times) <= bound(1, 1)


def test_set_rate_none_releases_waiters_and_set_rate_from_none_starts_limiting(
    run_virtual: Runner,
) -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        limiter = RateLimiter(rate=1, burst=1)
        job = asyncio.ensure_future(acquire_times(limiter, count=10, tasks=10))
        await asyncio.sleep(0.1)
        limiter.set_rate(None)
        released = await job
        limiter.set_rate(10)
        limited = await acquire_times(limiter, count=21)
        return released, limited

    released, limited = run_virtual(scenario())
    assert max(released) == pytest.approx(0.1)
    assert most_in_a_second(limited) <= bound(10, 1)


def test_set_rate_carries_the_bucket_level_over(run_virtual: Runner) -> None:
    """The tokens left when the rate changes are the ones the new rate starts from."""

    async def scenario() -> list[float]:
        limiter = RateLimiter(rate=1, burst=1)  # 1.5 deep
        await limiter.acquire()  # level 1 at t = 0
        await asyncio.sleep(0.25)  # level 0.75
        limiter.set_rate(2)  # the next needs the level at 0.5: 0.125 s at 2/s
        return await acquire_times(limiter, count=2, tasks=1)

    assert run_virtual(scenario()) == pytest.approx([0.375, 0.875], abs=1e-4)


def test_a_smaller_bucket_keeps_only_its_new_depth(run_virtual: Runner) -> None:
    """A token bucket never owes tokens: shrunk below its level, it is just full."""

    async def scenario() -> list[float]:
        limiter = RateLimiter(rate=1, burst=5)
        await acquire_times(limiter, count=5)  # all five tokens gone at t = 0
        limiter.set_rate(1, burst=2)
        return await acquire_times(limiter, count=2, tasks=1)

    assert run_virtual(scenario()) == pytest.approx([1.0, 2.0])


def test_tasks_waiting_keep_their_order_across_a_rate_change(run_virtual: Runner) -> None:
    async def scenario() -> list[int]:
        limiter = RateLimiter(rate=1, burst=1)
        await limiter.acquire()
        order: list[int] = []

        async def task(n: int) -> None:
            await limiter.acquire()
            order.append(n)

        tasks = [asyncio.ensure_future(task(n)) for n in range(8)]
        await asyncio.sleep(0.1)
        limiter.set_rate(50)
        await asyncio.sleep(0.01)
        limiter.set_rate(20, burst=3)
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario()) == list(range(8))


def test_a_rate_changed_often_while_tasks_wait_holds_the_higher_rate(
    run_virtual: Runner,
) -> None:
    """Swapped every 50 ms between 10/s and 20/s: no task lost, no window over 20 + 1.5."""

    async def scenario() -> list[float]:
        limiter = RateLimiter(rate=10, burst=1)
        job = asyncio.ensure_future(acquire_times(limiter, count=60))
        for step in range(200):
            await asyncio.sleep(0.05)
            limiter.set_rate(10 if step % 2 else 20)
        return await job

    times = sorted(run_virtual(scenario()))
    assert len(times) == 60
    assert most_in_a_second(times) <= bound(20, 1)
    assert (len(times) - 2) / (times[-1] - times[1]) >= 0.97 * 10


def test_a_waiter_cancelled_before_a_rate_change_is_not_served(run_virtual: Runner) -> None:
    async def scenario() -> tuple[bool, float]:
        limiter = RateLimiter(rate=1, burst=1)
        await limiter.acquire()
        gone = asyncio.ensure_future(limiter.acquire())
        kept = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.1)
        gone.cancel()
        limiter.set_rate(10)
        await kept
        return gone.cancelled(), asyncio.get_running_loop().time()

    cancelled, served_at = run_virtual(scenario())
    assert cancelled
    assert served_at == pytest.approx(0.14, abs=1e-5)  # level 0.9 at 0.1; 0.5 at 10/s


def test_a_turn_handed_to_a_task_cancelled_at_that_moment_is_passed_on(
    run_virtual: Runner,
) -> None:
    """One task at a time waits in the bucket, the others line up; a task cancelled in
    line, or just as its turn came, keeps no turn and takes no token."""

    async def scenario() -> tuple[list[bool], float]:
        limiter = RateLimiter(rate=1, burst=1)
        await limiter.acquire()  # t = 0; the next token at 0.5, then one a second
        line: list[asyncio.Future[None]] = []

        async def first() -> None:
            await limiter.acquire()  # in the bucket: served at 0.5, hands its turn on...
            line[0].cancel()  # ...to the first in line, cancelled before it runs again

        served = asyncio.ensure_future(first())
        await asyncio.sleep(0)
        line += [asyncio.ensure_future(limiter.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        line[1].cancel()  # cancelled while in line
        await served
        await line[2]
        return [task.cancelled() for task in line], asyncio.get_running_loop().time()

    cancelled, last_served_at = run_virtual(scenario())
    assert cancelled == [True, True, False]
    assert last_served_at == pytest.approx(1.5)  # the token after 0.5: nobody took it between


def test_many_in_line_cancelled_at_once_leave_the_rest_served_in_order_at_the_rate(
    run_virtual: Runner,
) -> None:
    """Ctrl-C in a big run: half of 200 tasks waiting in line (and the one in the bucket)
    are cancelled together, some just as tokens came free for them. The rest are served
    in their order, no faster than the bucket allows, and none is left waiting."""

    async def scenario() -> tuple[list[int], list[float], int]:
        limiter = RateLimiter(rate=100, burst=10)
        loop = asyncio.get_running_loop()
        served: list[tuple[int, float]] = []

        async def one(number: int) -> None:
            await limiter.acquire()
            served.append((number, loop.time()))

        tasks = [asyncio.ensure_future(one(n)) for n in range(200)]
        await asyncio.sleep(0.5)  # 10 at once, then one every 10 ms: about 60 served
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(task.cancelled() for task in tasks)
        return [n for n, _ in served], [t for _, t in served], cancelled

    order, times, cancelled = run_virtual(scenario())
    assert len(order) + cancelled == 200
    assert order == sorted(order)  # first come, first served, cancels or not
    assert cancelled >= 60  # the even numbers not yet served when cancelled
    assert most_in_a_second(times) <= bound(100, 10)
    assert times[-1] == pytest.approx((len(order) - 10) / 100, abs=0.011)  # no lost turn


def test_throttle_holds_every_acquire_for_the_pause(run_virtual: Runner) -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(None)
        await limiter.acquire()
        limiter.on_throttled(2.0)
        assert limiter.cooling_down
        return await acquire_times(limiter, count=5)

    assert run_virtual(scenario()) == pytest.approx([2.0] * 5)


def test_throttle_extends_a_running_cooldown_but_never_shortens_it(run_virtual: Runner) -> None:
    async def scenario() -> tuple[float, float]:
        limiter = RateLimiter(None)
        limiter.on_throttled(3.0)
        limiter.on_throttled(1.0)
        loop = asyncio.get_running_loop()
        await limiter.acquire()
        first = loop.time()
        limiter.on_throttled(1.0)
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.5)
        limiter.on_throttled(2.0)  # extends the running pause to 5.5
        await waiter
        return first, loop.time()

    assert run_virtual(scenario()) == pytest.approx((3.0, 5.5))


@pytest.mark.parametrize(("rate", "expected"), [(None, 0.5), (20, 0.05), (2, 0.5)])
def test_default_pause_is_the_bucket_refill_time(
    rate: float | None, expected: float, run_virtual: Runner
) -> None:
    async def scenario() -> float:
        limiter = RateLimiter(rate, burst=1)
        limiter.on_throttled()
        await limiter.acquire()
        return asyncio.get_running_loop().time()

    assert run_virtual(scenario()) == pytest.approx(expected)


def test_a_quick_start_s_first_429_holds_every_acquire_for_the_pause(run_virtual: Runner
                                                                   ) -> None:
    """Round trips of 2 ms: the adaptive slow start is quick, and its first 429 pauses the
    client. No acquire returns during the pause, not even one waiting in the bucket when
    it began (the cut's new bucket lets it through at once)."""

    async def scenario() -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(adaptive=AdaptiveRate(10.0))
        times: list[float] = []

        async def worker() -> None:
            while loop.time() < 1.0:
                await limiter.acquire()
                times.append(loop.time())
                await asyncio.sleep(0.002)
                limiter.on_success(sent_at=times[-1])

        workers = [asyncio.ensure_future(worker()) for _ in range(8)]
        await asyncio.sleep(0.4)
        limiter.on_rate_limited(sent_at=loop.time() - 0.002)
        await asyncio.gather(*workers)
        return limiter.adaptive.state.paused_until, times  # type: ignore[union-attr]

    paused_until, times = run_virtual(scenario())
    assert paused_until == pytest.approx(0.4 + TUNING.quick_pause)
    assert len([t for t in times if t < 0.4]) > 30  # quick: the half-second pace sends 5
    assert not [t for t in times if 0.4 < t < paused_until]
    assert [t for t in times if t >= paused_until]


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan"), "10", True])
def test_bad_rate_is_refused(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("burst", [0, -1, 1.5, True])
def test_bad_burst_is_refused(burst: object) -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst)  # type: ignore[arg-type]


class LateTimersLoop(VirtualClockLoop):
    """A virtual clock on which every timer fires `late` seconds after it is due, as on
    a real loop (asyncio wakes timers up to about a millisecond late, more when busy)."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    # typeshed types `call_at` with a TypeVarTuple, which Python 3.10 (the oldest we
    # support) cannot spell without typing_extensions: the override is looser, same at run time.
    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return super().call_at(when + self.late, callback, *args, context=context)


def times_with_late_timers(bucket: Acquirer, late: float, count: int) -> list[float]:
    loop = LateTimersLoop(late)
    try:
        return sorted(loop.run_until_complete(acquire_times(bucket, count)))
    finally:
        loop.close()


def mean_rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


@pytest.mark.parametrize(("rate", "late"), [(50, 0.001), (200, 0.002)])
def test_mean_rate_survives_late_timer_wakeups(rate: float, late: float) -> None:
    """Timers that fire late must not cost burst=1 its rate: the half token of slack
    keeps the meter draining through the lateness."""
    times = times_with_late_timers(RateLimiter(rate, burst=1), late, count=101)
    assert mean_rate(times) >= 0.97 * rate
    assert most_in_a_second(times) <= bound(rate, 1)


def test_a_bucket_exactly_one_deep_loses_rate_to_late_timers() -> None:
    """Why the slack: aiolimiter's `AsyncLimiter(1, 1 / rate)` runs dry during each late
    wake-up and never makes the drain up (so the test above can fail)."""
    times = times_with_late_timers(AsyncLimiter(1, 1 / 50), 0.001, count=101)
    assert mean_rate(times) < 0.97 * 50


# --- the concurrency gate -----------------------------------------------------------------


def test_tokens_free_at_once_go_to_the_line_in_one_turn_of_the_loop(
    run_virtual: Runner,
) -> None:
    """When several tokens are free at once (a late wake-up; here a deeper bucket), the
    task leaving the bucket hands them to the tasks in line at once, in order, instead
    of one a turn of the loop (a loop busy with thousands of connections turns slowly)."""

    async def scenario() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(rate=10, burst=4)
        for _ in range(4):
            await limiter.acquire()  # the bucket is empty: the next token in 0.1 s
        turns, returned = [0], list[tuple[int, int]]()

        def count_turns() -> None:
            turns[0] += 1
            if turns[0] < 50:
                loop.call_soon(count_turns)

        async def task(n: int) -> None:
            await limiter.acquire()
            returned.append((n, turns[0]))

        waiting = [loop.create_task(task(n)) for n in range(4)]
        await asyncio.sleep(0)  # all four in line, the first waiting in the bucket
        count_turns()
        limiter.set_rate(10, burst=8)  # 4 more tokens, free now
        await asyncio.gather(*waiting)
        return [n for n, _ in returned], [turn for _, turn in returned]

    order, turns = run_virtual(scenario())
    assert order == [0, 1, 2, 3]
    assert turns[1] == turns[2] == turns[3]  # the three behind the first: one turn
    assert turns[1] - turns[0] <= 1


def test_gate_holds_at_most_limit_and_serves_in_order(run_virtual: Runner) -> None:
    async def scenario() -> tuple[int, list[int]]:
        gate = ConcurrencyGate(3)
        inside, most, order = 0, 0, []

        async def task(n: int) -> None:
            nonlocal inside, most
            if not gate.try_enter():
                await gate.enter()
            try:
                order.append(n)
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(1)
                inside -= 1
            finally:
                gate.leave()

        await asyncio.gather(*(task(n) for n in range(10)))
        assert gate.free == 3
        return most, order

    most, order = run_virtual(scenario())
    assert most == 3
    assert order == list(range(10))


def test_gate_cancelled_waiter_keeps_no_slot(run_virtual: Runner) -> None:
    async def scenario() -> int:
        gate = ConcurrencyGate(1)
        assert gate.try_enter()
        waiter = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.leave()
        return gate.free

    assert run_virtual(scenario()) == 1


def test_gate_slot_handed_to_a_task_cancelled_at_that_moment_is_passed_on(
    run_virtual: Runner,
) -> None:
    async def scenario() -> bool:
        gate = ConcurrencyGate(1)
        assert gate.try_enter()
        first = asyncio.ensure_future(gate.enter())
        second = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        gate.leave()  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await first
        await second  # so the slot went on to `second`
        return gate.try_enter()

    assert run_virtual(scenario()) is False  # `second` holds the only slot


def test_gate_resized_lets_waiters_in_or_holds_newcomers_until_enough_left(
    run_virtual: Runner,
) -> None:
    async def scenario() -> None:
        gate = ConcurrencyGate(2)
        assert gate.try_enter()
        assert gate.try_enter()
        waiters = [asyncio.ensure_future(gate.enter()) for _ in range(3)]
        await asyncio.sleep(0)
        gate.resize(4)  # two more: the first two waiters, in order
        await asyncio.sleep(0)
        assert [w.done() for w in waiters] == [True, True, False]
        assert (gate.held, gate.limit) == (4, 4)
        gate.resize(1)  # four hold: they keep their slots, nobody new comes in
        for _ in range(3):
            gate.leave()
        await asyncio.sleep(0)
        assert not waiters[2].done()  # one still holds: the limit is reached
        gate.leave()
        await waiters[2]
        assert (gate.held, gate.free) == (1, 0)

    run_virtual(scenario())


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_gate_bad_limit_is_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyGate(limit)  # type: ignore[arg-type]


def test_free_flag_follows_rate_and_cooldown(run_virtual: Runner) -> None:
    async def scenario() -> list[bool]:
        limiter = RateLimiter(None)
        seen = [limiter.free]
        limiter.on_throttled(1.0)
        seen.append(limiter.free)
        await limiter.acquire()  # waits the cool-down out
        seen.append(limiter.free)
        limiter.set_rate(10)
        seen.append(limiter.free)
        limiter.set_rate(None)
        seen.append(limiter.free)
        return seen

    assert run_virtual(scenario()) == [True, False, True, False, True]


def test_try_acquire_takes_only_what_acquire_would_give_at_once(run_virtual: Runner) -> None:
    async def scenario() -> list[object]:
        limiter = RateLimiter(10, burst=2)
        seen: list[object] = [limiter.try_acquire(), limiter.try_acquire(), limiter.try_acquire()]
        waiter = asyncio.ensure_future(limiter.acquire())  # waits in the bucket
        await asyncio.sleep(0.1)  # a token is free again, but the waiter is first
        seen.append(limiter.try_acquire())
        await waiter
        seen.append(asyncio.get_running_loop().time())
        limiter.on_throttled(1.0)
        await asyncio.sleep(0.5)  # tokens are free, but the cool-down runs
        seen.append(limiter.try_acquire())
        return seen

    assert run_virtual(scenario()) == [True, True, False, False, pytest.approx(0.1), False]


def test_try_acquire_is_false_with_no_bucket_so_the_client_reads_free_first(
    run_virtual: Runner,
) -> None:
    async def scenario() -> tuple[bool, bool]:
        limiter = RateLimiter(None)
        return limiter.free, limiter.try_acquire()

    assert run_virtual(scenario()) == (True, False)


@pytest.mark.parametrize("burst", [32, 100])
def test_a_fixed_rate_takes_one_token_a_request_however_deep_its_bucket(
    burst: int, run_virtual: Runner
) -> None:
    """A fixed rate is the server's plan: no credit, so a window never holds more than
    `rate x T + burst` requests even after an idle spell (credit held while the bucket
    refilled would add to it)."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(1000, burst)
        assert limiter.try_acquire()
        times = [loop.time()]
        await asyncio.sleep(1.0)  # the bucket refills to its depth
        while len(times) < burst + 1001:
            if not limiter.try_acquire():
                await limiter.acquire()
            times.append(loop.time())
        return times

    assert most_in_a_second(run_virtual(scenario())) == bound(1000, burst)


class _CountingBucket(AsyncLimiter):
    """aiolimiter's bucket, counting the acquires made of it."""

    acquires = 0

    async def acquire(self, amount: float = 1) -> None:
        type(self).acquires += 1
        await super().acquire(amount)


def test_a_high_adaptive_rate_takes_tokens_a_sixteenth_of_its_bucket_at_a_time(
    run_virtual: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 6,400/s the adaptive bucket is 64 deep. Asked faster than the rate, it holds
    the rate and the bound of any second (plus the 3 of credit). Asked at half the rate,
    tokens are taken 4 at a time (one aiolimiter acquire, not four) and handed out one a
    request."""
    monkeypatch.setattr(_limiter, "AsyncLimiter", _CountingBucket)

    async def take(limiter: RateLimiter, count: int, gap: float) -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []
        while len(times) < count:
            if not limiter.try_acquire():
                await limiter.acquire()
            times.append(loop.time())
            if gap:
                await asyncio.sleep(gap)
        return times

    async def scenario() -> tuple[list[float], int]:
        limiter = RateLimiter(adaptive=AdaptiveRate(6400.0, max_rate=6400.0))
        times = await take(limiter, 2 * 6400, 0.0)
        before = _CountingBucket.acquires
        await take(limiter, 3200, 1 / 3200)
        return times, _CountingBucket.acquires - before

    times, acquires = run_virtual(scenario())
    assert most_in_a_second(times) <= bound(6400, 64) + 3
    assert (len(times) - 64) / times[-1] >= 0.97 * 6400
    assert acquires <= 3200 / 4 + 8  # a few single tokens while the emptied bucket refills


def test_an_adaptive_rate_under_6400_takes_one_token_a_request(
    run_virtual: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to the quotas the goodput grid runs (a slow start overshoots Q = 1,000 to about
    4,000/s) the adaptive bucket hands out tokens exactly as a fixed one does."""
    monkeypatch.setattr(_limiter, "AsyncLimiter", _CountingBucket)

    async def scenario() -> int:
        limiter = RateLimiter(adaptive=AdaptiveRate(6399.0, max_rate=6399.0))
        before = _CountingBucket.acquires
        for _ in range(1000):
            if not limiter.try_acquire():
                await limiter.acquire()
            await asyncio.sleep(1 / 3200)
        return _CountingBucket.acquires - before

    assert run_virtual(scenario()) == 1000


def test_a_rate_cut_drops_the_credit_taken_at_the_higher_rate(run_virtual: Runner) -> None:
    async def scenario() -> tuple[bool, bool]:
        limiter = RateLimiter(adaptive=AdaptiveRate(6400.0, max_rate=6400.0))
        assert limiter.try_acquire()  # takes 4: one now, 3 of credit
        limiter.set_rate(10.0, burst=1)  # a cut: the credit is not spent at 10/s
        first = limiter.try_acquire()  # the new bucket is as full as the old: empty
        await asyncio.sleep(0.15)
        return first, limiter.try_acquire()

    assert run_virtual(scenario()) == (False, True)


def test_a_rate_fixed_after_adapting_spends_no_credit(
    run_virtual: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`set_rate(n)` on a client stops the adaptive mode: from then on each request takes
    its own token, as a fixed rate's window bound needs, even at the same rate."""
    monkeypatch.setattr(_limiter, "AsyncLimiter", _CountingBucket)

    async def scenario() -> int:
        limiter = RateLimiter(adaptive=AdaptiveRate(6400.0, max_rate=6400.0))
        assert limiter.try_acquire()  # 4 taken: 3 of credit
        limiter.stop_adapting()
        before = _CountingBucket.acquires
        assert limiter.try_acquire()
        return _CountingBucket.acquires - before

    assert run_virtual(scenario()) == 1


def test_adaptive_counts_reach_the_controller_once_a_millisecond_and_at_once_on_a_429(
    run_virtual: Runner,
) -> None:
    async def scenario() -> list[tuple[float, int, int, int]]:
        adaptive = RecordingRate()
        limiter = RateLimiter(adaptive=adaptive)
        limiter.on_success()  # the first report goes at once
        for _ in range(3):
            assert limiter.try_acquire()
            limiter.on_success()
        await asyncio.sleep(0.002)
        limiter.on_success()  # a millisecond on: the three sends and four answers
        limiter.on_success()
        limiter.on_rate_limited()  # at once, with the one answer not yet told
        return adaptive.told

    told = run_virtual(scenario())
    assert [entry[1:] for entry in told] == [(1, 0, 0), (4, 0, 3), (1, 1, 0)]
    assert told[1][0] == pytest.approx(0.002, abs=1e-6)


def test_a_429_is_told_with_when_its_request_went_out_and_what_went_since(
    run_virtual: Runner,
) -> None:
    async def scenario() -> list[tuple[float | None, int]]:
        adaptive = RecordingRate()
        limiter = RateLimiter(adaptive=adaptive)
        limiter.on_rate_limited(sent_at=0.0, sent_after=3)
        limiter.on_rate_limited()  # a caller that does not know
        return [(empty_at, after) for _, empty_at, after in adaptive.throttled_told]

    assert run_virtual(scenario()) == [(0.0, 3), (None, 0)]


def test_a_429_of_a_request_sent_before_the_cut_is_not_told(run_virtual: Runner) -> None:
    """The overshoot's 429s that come back late (a server behind on its queue) say nothing
    of the rate after the cut they caused: counted, they measured the quota 10-25% low."""

    async def scenario() -> tuple[list[tuple[float, int, int, int]], float, float]:
        loop = asyncio.get_running_loop()
        adaptive = RecordingRate()
        limiter = RateLimiter(adaptive=adaptive)
        sent_before = loop.time()
        await asyncio.sleep(0.01)
        limiter.on_rate_limited(sent_at=sent_before)  # the first 429: the cut
        cut_rate = adaptive.rate
        await asyncio.sleep(0.5)
        limiter.on_rate_limited(sent_at=sent_before)  # late, of a request before the cut
        sent_after = loop.time()
        await asyncio.sleep(0.01)
        limiter.on_rate_limited(sent_at=sent_after)  # of a request after it: told
        return adaptive.told, cut_rate, adaptive.state.cut_at

    told, cut_rate, cut_at = run_virtual(scenario())
    assert cut_rate == pytest.approx(1000.0 * TUNING.exit_cut)
    assert [entry[2] for entry in told] == [1, 1]
    assert told[1][0] == pytest.approx(cut_at + 0.51, abs=1e-3)


def test_answers_to_requests_sent_before_the_measuring_began_are_not_told(
    run_virtual: Runner,
) -> None:
    """After a cut, the 200s of requests sent before it (first fetches of 3 s come back
    long after the cut) neither end the episode as clean nor count; nor do 429s of requests
    sent in the settling after it. Answers to requests sent since the measuring began do."""

    async def scenario() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        adaptive = RecordingRate()
        limiter = RateLimiter(adaptive=adaptive)
        early = loop.time()
        await asyncio.sleep(0.01)
        limiter.on_rate_limited(sent_at=early)  # the first 429: the cut, an episode opens
        settling = loop.time()
        await asyncio.sleep(TUNING.settle + 0.01)
        for _ in range(2 * TUNING.batch):  # 200s of requests sent before the cut
            limiter.on_success(sent_at=early)
        limiter.on_rate_limited(sent_at=settling)  # a 429 of one sent while settling
        episode_after_stale = [adaptive.state.episode, len(adaptive.told)]
        since = loop.time()
        await asyncio.sleep(0.01)
        for _ in range(TUNING.batch):  # a clean batch of requests sent since it began
            await asyncio.sleep(0.002)
            limiter.on_success(sent_at=since)
        return episode_after_stale, [adaptive.state.episode]

    stale, fresh = run_virtual(scenario())
    assert stale == [1, 1]  # still open, and nothing told after the cut
    assert fresh == [0]  # the clean batch ended it


# --- what the limiter relies on in aiolimiter (public API only) ---------------------------
#
# `set_rate()` swaps the aiolimiter bucket (aiolimiter cannot retune a live one); the tests
# below pin each behaviour the swap relies on, so an aiolimiter release that changes one
# fails here, not in a run. pyproject.toml bounds aiolimiter to the versions tested.


def test_aiolimiter_admits_while_level_plus_amount_fits_and_leaks_at_its_rate(
    run_virtual: Runner,
) -> None:
    """`has_capacity(amount)` is `level + amount <= max_rate`, the level leaking at
    `max_rate / time_period` a second: how `_level` reads a bucket."""

    async def scenario() -> list[bool]:
        bucket = AsyncLimiter(1.5, 1.5 / 2)  # 2 a second, 1.5 deep
        await bucket.acquire()  # level 1
        seen = [bucket.has_capacity(0.5), bucket.has_capacity(0.5001)]
        await asyncio.sleep(0.25)  # level 0.5
        return [*seen, bucket.has_capacity(1.0), bucket.has_capacity(1.0001)]

    assert run_virtual(scenario()) == [True, False, True, False]


def test_aiolimiter_acquire_with_room_returns_without_waiting(run_virtual: Runner) -> None:
    """How a new bucket is filled to the old one's level inside the synchronous set_rate."""

    async def scenario() -> list[bool]:
        bucket = AsyncLimiter(1.5, 1.5)
        step = bucket.acquire(1.2)
        with pytest.raises(StopIteration):
            step.send(None)  # done on its first step: it never suspended
        full = bucket.acquire(1)  # no room now: this one would wait
        with pytest.raises(RuntimeError, match="waited"):
            _limiter._at_once(full)
        return [bucket.has_capacity(0.3), bucket.has_capacity(0.3001)]

    assert run_virtual(scenario()) == [True, False]


def test_aiolimiter_bottomless_bucket_lets_its_waiters_through_in_order(
    run_virtual: Runner,
) -> None:
    """`max_rate` set to infinity on a live bucket, then `acquire(0)`: every task waiting
    goes through at once, first come first served. How a swap frees the old bucket."""

    async def scenario() -> tuple[list[int], float]:
        bucket = AsyncLimiter(1, 10)  # one every 10 s
        await bucket.acquire()
        order: list[int] = []

        async def task(n: int) -> None:
            await bucket.acquire()
            order.append(n)

        tasks = [asyncio.ensure_future(task(n)) for n in range(5)]
        await asyncio.sleep(1)
        bucket.max_rate = math.inf
        await bucket.acquire(0)
        await asyncio.gather(*tasks)
        return order, asyncio.get_running_loop().time()

    order, done_at = run_virtual(scenario())
    assert order == list(range(5))
    assert done_at == pytest.approx(1.0)


def test_aiolimiter_waiters_are_served_first_come_first_served(run_virtual: Runner) -> None:
    async def scenario() -> list[int]:
        bucket = AsyncLimiter(1, 0.1)
        order: list[int] = []

        async def task(n: int) -> None:
            await bucket.acquire()
            order.append(n)

        await asyncio.gather(*(task(n) for n in range(6)))
        return order

    assert run_virtual(scenario()) == list(range(6))


def test_limiter_reads_no_private_name_of_another_object() -> None:
    """`_limiter.py` touches a `_name` only on `self` (or a module-level name of its own):
    never aiolimiter's internals, which a minor release may change."""
    tree = ast.parse(Path(_limiter.__file__).read_text(encoding="utf-8"))
    foreign = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert foreign == []
