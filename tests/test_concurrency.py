"""`AdaptiveConcurrency` (pure, the clock given) and the pool following a dynamic limit."""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tiktok_async._concurrency import (
    BACKOFF_ROOM,
    FLOOR,
    OVERLOAD_CUT,
    QUEUE_FLOOR,
    SPARE,
    START,
    TICK,
    AdaptiveConcurrency,
    workers,
)
from tiktok_async._pool import LIMIT_TICK, bounded_map

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def run_ticks(flow: AdaptiveConcurrency, ticks: int, *, busy: int | None = None,
              start: float = 0.0) -> float:
    """`ticks` ticks with every worker busy (or `busy`), no token wait; the time after."""
    now = start
    flow.tick(now, flow.limit)
    for _ in range(ticks):
        now += TICK
        flow.tick(now, flow.limit if busy is None else busy)
    return now


def test_slow_start_doubles_every_tick_while_saturated_with_tokens_to_spare() -> None:
    flow = AdaptiveConcurrency(4096)
    assert flow.limit == START
    run_ticks(flow, 4)
    assert flow.limit == START * 16


def test_next_tick_says_when_tick_would_judge_again() -> None:
    flow = AdaptiveConcurrency(1000)
    seen = [flow.next_tick <= 5.0]
    flow.tick(5.0, flow.limit)
    seen += [flow.next_tick <= 5.0 + TICK / 2, flow.next_tick <= 5.0 + TICK]
    flow.tick(5.0 + TICK, flow.limit)
    seen.append(flow.next_tick <= 5.0 + TICK * 1.5)
    assert seen == [True, False, True, False]


def test_no_growth_when_the_rate_is_binding() -> None:
    flow = AdaptiveConcurrency(4096)
    flow.tick(0.0, flow.limit)
    for n in range(1, 9):
        flow.tick(n * TICK, flow.limit, 100.0, queued=True)
    assert flow.limit == START


def test_no_growth_when_workers_are_idle() -> None:
    flow = AdaptiveConcurrency(4096)
    run_ticks(flow, 8, busy=START - 1)
    assert flow.limit == START


def test_growth_stops_at_the_ceiling_and_counts_the_time_held_back() -> None:
    flow = AdaptiveConcurrency(100)
    run_ticks(flow, 20)
    assert flow.limit == 100
    assert flow.held_back == pytest.approx(20 * TICK - 3 * TICK)  # 16 -> 32 -> 64 -> 100


def test_overload_answers_cut_at_most_once_a_second_then_growth_is_slower() -> None:
    flow = AdaptiveConcurrency(4096)
    now = run_ticks(flow, 3)
    assert flow.limit == 128
    for _ in range(10):
        flow.on_answer(now, 0.05, 503)
    assert flow.limit == int(128 * 0.9)
    limit = flow.limit
    run_ticks(flow, 1, start=now)
    assert flow.limit == pytest.approx(limit * 1.25, abs=1)


def test_a_few_5xx_at_random_never_cut_and_a_server_failing_most_does() -> None:
    """5 % of answers a 5xx at random (a flaky backend, not an overloaded one): fewer in
    flight would not make it fail less. Every answer a 5xx (down, or shedding load): cut."""
    flow = AdaptiveConcurrency(4096)
    now = run_ticks(flow, 3)
    limit = flow.limit
    rng = random.Random(11)
    for _ in range(5000):
        now += 0.001
        flow.on_answer(now, 0.01, rng.choice((500, 502, 503, 504)) if rng.random() < 0.05
                       else 200)
    assert flow.limit == limit
    for _ in range(8):
        now += 0.001
        flow.on_answer(now, 0.01, 503)
    assert flow.limit == int(limit * OVERLOAD_CUT)


def test_the_share_of_failing_answers_forgets_an_old_5xx_entirely() -> None:
    """It decays by 1/32 a good answer; left alone it would spend some 20,000 answers
    among floats so small that each step is slow, before it reached 0. It stops at 0 once
    negligible, and a server failing most answers is still cut at once after it."""
    flow = AdaptiveConcurrency(4096)
    now = run_ticks(flow, 3)
    flow.on_answer(now, 0.01, 503)
    for _ in range(1000):
        now += 0.001
        flow.on_answer(now, 0.01, 200)
    assert flow._failing == 0.0
    limit = flow.limit
    for _ in range(8):
        now += 0.001
        flow.on_answer(now, 0.01, 503)
    assert flow.limit == int(limit * OVERLOAD_CUT)


def test_a_429_cuts_even_among_good_answers() -> None:
    flow = AdaptiveConcurrency(4096)
    now = answers(flow, run_ticks(flow, 3), 100, 0.01)
    flow.on_answer(now, 0.01, 429)
    assert flow.limit == int(128 * OVERLOAD_CUT)


def test_workers_backing_off_get_room_beside_the_limit_up_to_a_bound() -> None:
    """Beside the limit on requests: spare workers (an input ready when a slot frees) or,
    when more inputs back off, as many as those, up to a bound."""
    flow = AdaptiveConcurrency(4096, start=10)
    assert [workers(flow.limit, n) for n in (0, 7, 25, 10 * BACKOFF_ROOM, 10_000)] == [
        10 + 10 * SPARE, 10 + 10 * SPARE, 35, 10 + 10 * BACKOFF_ROOM, 10 + 10 * BACKOFF_ROOM]


def test_steady_heavy_tailed_latency_never_cuts() -> None:
    """First fetches: median about 1.5 s, p99 about 10 s, independent of the load."""
    flow = AdaptiveConcurrency(4096)
    rng = random.Random(7)
    now = run_ticks(flow, 6)
    limit = flow.limit
    for _ in range(5000):
        now += 0.001
        flow.on_answer(now, rng.lognormvariate(0.4, 0.8), 200)
    assert flow.limit == limit


def answers(flow: AdaptiveConcurrency, now: float, count: int, seconds: float,
            spacing: float = 0.002) -> float:
    for _ in range(count):
        now += spacing
        flow.on_answer(now, seconds, 200)
    return now


def test_latency_that_climbs_with_load_is_cut_and_the_cut_kept_when_latency_falls() -> None:
    flow = AdaptiveConcurrency(4096)
    now = answers(flow, run_ticks(flow, 6), 300, 0.1)
    limit = flow.limit
    now = answers(flow, now, 40, 0.5)  # the server queues: latency x5
    assert flow.limit == int(limit * 0.8)
    now = answers(flow, now, 200, 0.12)  # the queue drains with the cut
    assert flow.limit == int(limit * 0.8)


def test_slower_answers_that_do_not_follow_the_cut_undo_it() -> None:
    """Cached users first, then unseen ones fetched first: slower, but not a queue."""
    flow = AdaptiveConcurrency(4096)
    now = answers(flow, run_ticks(flow, 6), 300, 0.05)
    limit = flow.limit
    now = answers(flow, now, 60, 2.0)
    assert flow.limit == int(limit * 0.8)
    now = answers(flow, now, 600, 2.0, spacing=0.01)  # over a round trip later, as slow
    assert flow.limit == limit


def test_rate_caps_growth_at_what_it_can_use() -> None:
    """Little's law: 10 a second at 1 s latency needs 10 in flight; 2x headroom."""
    flow = AdaptiveConcurrency(4096, start=4)
    answers(flow, 0.0, 10, 1.0)
    now = 0.0
    for _ in range(20):
        now += TICK
        flow.tick(now, flow.limit, 10.0)
    assert flow.limit == 20


def served(flow: AdaptiveConcurrency, seconds: float, capacity: float, floor_s: float
           ) -> int:
    """Every worker busy for `seconds` against a server that answers `capacity` a
    second at most (its CPU, or ours) and never faster than `floor_s`: each tick brings
    min(limit / floor_s, capacity) answers, with latency from Little's law; the most
    the limit reached."""
    now, most = 0.0, flow.limit
    flow.tick(now, flow.limit)
    while now < seconds:
        per_s = min(flow.limit / floor_s, capacity)
        for _ in range(int(per_s * TICK)):
            flow.on_answer(now, flow.limit / per_s, 200)
        now += TICK
        flow.tick(now, flow.limit)
        most = max(most, flow.limit)
    return most


def test_growth_that_brings_no_more_answers_is_undone() -> None:
    """A cached server on the same cores: 4,000 answers a second at most, whatever is in
    flight (10 ms each at 40 in flight). Growth stops near 40, not in the hundreds."""
    flow = AdaptiveConcurrency(4096)
    most = served(flow, 20.0, capacity=4000, floor_s=0.01)
    assert most <= 2 * 64  # one growth beyond the plateau at a time, each undone
    assert 32 <= flow.limit <= 64


def test_growth_that_brings_answers_goes_on() -> None:
    """Answers in 10 ms however many are in flight: every growth shows, none is undone."""
    flow = AdaptiveConcurrency(4096)
    served(flow, 2.0, capacity=1e9, floor_s=0.01)
    assert flow.limit == 4096


def test_a_client_at_full_speed_with_stalls_keeps_what_it_needs_in_flight() -> None:
    """Cached answers on the same machine: 6,000 a second at most (this process's CPU),
    0.5 ms each when nothing waits. At full speed the latency is this process's own
    queue (a few ms), and a stall now and then (a collection, the machine busy: 20 ms)
    delays the answers in flight, then it is over whatever the limit did. Traced in the
    bulk benchmark: each stall's cut looked like a queue that drained, and the limit
    went down to 4-5 in flight (0.60x the bare loop's answers a second)."""
    flow = AdaptiveConcurrency(4096)
    now, lowest = 0.0, flow.limit
    flow.tick(now, flow.limit)
    for tick in range(200):
        per_s = min(flow.limit / 0.0005, 6000.0)
        stalled = flow.limit if tick % 4 == 3 else 0  # one stall a second
        for n in range(int(per_s * TICK)):
            now += 1 / per_s
            flow.on_answer(now, flow.limit / per_s + (0.02 if n < stalled else 0.0), 200)
        flow.tick(now, flow.limit)
        lowest = min(lowest, flow.limit)
    assert lowest >= QUEUE_FLOOR


def keep_in_flight(flow: AdaptiveConcurrency, seconds: float,
                   finish: Callable[[float], float]) -> tuple[list[int], list[float]]:
    """A client keeping `flow.limit` requests in flight for `seconds` (simulated time);
    `finish(sent)`: when the server answers a request sent then. The limit at each tick
    and every answer's latency."""
    now, next_tick, in_flight = 0.0, 0.0, 0
    answers: list[tuple[float, float]] = []  # a heap of (answered at, sent at)
    limits: list[int] = []
    latencies: list[float] = []
    while now < seconds:
        for _ in range(flow.limit - in_flight):
            heapq.heappush(answers, (finish(now), now))
            in_flight += 1
        if answers and answers[0][0] < next_tick:
            now, sent = heapq.heappop(answers)
            in_flight -= 1
            latencies.append(now - sent)
            flow.on_answer(now, now - sent, 200)
        else:
            now = next_tick
            limits.append(flow.tick(now, in_flight))
            next_tick += TICK
    return limits, latencies


def queue_of(workers: int, service: float) -> Callable[[float], float]:
    """A server whose `workers` take requests in arrival order, `service` s each."""
    free = [0.0] * workers

    def finish(sent: float) -> float:
        done = max(sent, heapq.heappop(free)) + service
        heapq.heappush(free, done)
        return done

    return finish


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values))]


def test_a_slow_server_that_queues_is_not_buried() -> None:
    """8 workers x 200 ms: 40 answers a second whatever is in flight. Before the round
    trip rule the limit grew to 4,096 and the answers' p95 reached 27 s (the timeout is
    35); a fixed 64 waits 1.6 s."""
    flow = AdaptiveConcurrency(4096)
    limits, latencies = keep_in_flight(flow, 30.0, queue_of(8, 0.2))
    assert max(limits) <= 128, limits
    assert max(limits[-40:]) <= 64, limits  # the last 10 s
    assert p95(latencies) < 2.0


def test_once_a_queue_took_a_growth_each_growth_waits_to_be_judged() -> None:
    """16 workers x 300 ms. Growing a quarter a tick while a judgment waits two round
    trips (the queue's wait, seconds), the limit went back up to 1,162 between undos
    (p95 9.5 s); paced, one growth a round trip, it stays within 4 x the workers."""
    flow = AdaptiveConcurrency(4096)
    limits, latencies = keep_in_flight(flow, 40.0, queue_of(16, 0.3))
    assert max(limits[int(10 / TICK):]) <= 64, limits  # the last 30 s
    assert p95(latencies) < 5.0


def test_a_growth_that_a_queue_took_is_undone_a_round_trip_later() -> None:
    """64 workers x 1 s: slow start doubles blind for the first round trip (the price of
    finding 3,000 in flight for 1,000/s at 3 s), then the growth that brought no more
    answers is undone, and no growth comes while that overshoot drains."""
    flow = AdaptiveConcurrency(4096)
    limits, _ = keep_in_flight(flow, 30.0, queue_of(64, 1.0))
    assert max(limits[-80:]) <= 128, limits  # the last 20 s


@pytest.mark.parametrize("latency", [
    pytest.param(lambda rng: rng.uniform(2.7, 3.3), id="3 s"),
    pytest.param(lambda rng: rng.lognormvariate(math.log(1.5), 0.8), id="median 1.5 s, p99 10 s"),
])
def test_a_slow_server_that_answers_in_parallel_gets_all_it_needs(
    latency: Callable[[random.Random], float],
) -> None:
    """First fetches of seconds, however many at once: 1,000/s at 3 s needs 3,000 in
    flight, and every growth brings answers a round trip later: none is undone."""
    flow = AdaptiveConcurrency(4096)
    rng = random.Random(3)
    limits, _ = keep_in_flight(flow, 15.0, lambda sent: sent + latency(rng))
    assert limits[int(4 / TICK)] == 4096, limits  # within 4 s
    assert min(limits[int(4 / TICK):]) >= 4000, limits


def test_no_growth_while_the_requests_of_a_lowered_limit_are_in_flight() -> None:
    flow = AdaptiveConcurrency(4096, start=64)
    now = run_ticks(flow, 2)
    assert flow.limit == 256
    flow.tick(now + TICK, busy=600)  # a limit just undone: its requests still queued
    assert flow.limit == 256


def test_latency_cuts_stop_at_the_queue_floor_and_overload_goes_below() -> None:
    """The server queues again and again, and each time the queue drains with the cut:
    the latency rule stops at `QUEUE_FLOOR`; 429s may take the limit lower."""
    flow = AdaptiveConcurrency(4096, start=64)
    now = answers(flow, 0.0, 300, 0.1)
    for _ in range(20):
        now = answers(flow, now, 40, 0.5)  # a queue: latency x5
        now = answers(flow, now, 200, 0.12)  # it drains with the cut
    assert flow.limit == QUEUE_FLOOR
    for second in range(30):
        flow.on_answer(now + second, 0.1, 429)
    assert flow.limit == FLOOR


def test_never_below_the_floor() -> None:
    flow = AdaptiveConcurrency(4096, start=5)
    for second in range(30):
        flow.on_answer(float(second), 0.1, 429)
    assert flow.limit == FLOOR


async def test_pool_grows_and_shrinks_with_a_dynamic_limit() -> None:
    """Workers are added while all are busy and below the limit; they leave above it."""
    allowed = 2
    running = peak = 0
    peaks: list[int] = []

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return item

    results = bounded_map(range(400), work, concurrency=50, limit=lambda busy: allowed)
    seen = 0
    async for _ in results:
        seen += 1
        if seen == 100:
            peaks.append(peak)
            allowed, peak = 20, 0
        elif seen == 250:
            peaks.append(peak)
            allowed, peak = 3, 0
    peaks.append(peak)
    assert seen == 400
    assert peaks[0] == 2
    assert 10 < peaks[1] <= 20
    assert peaks[2] <= 20  # workers leave as they finish an item
    assert running == 0


def test_pool_never_stalls_when_the_limit_drops_while_many_workers_finish_at_once(
        run_virtual: Runner) -> None:
    """All 16 workers finish an item in the same turn of the loop as the limit falls to 8:
    exactly 8 leave. Counting the workers by their tasks (a finished one is dropped a turn
    later) let all 16 leave, and the run stood still until the consumer's next tick."""
    allowed = [16]
    running: list[int] = []

    async def work(item: int) -> int:
        running.append(item)
        await asyncio.sleep(0.001)  # on the virtual clock every worker wakes in one turn
        running.remove(item)
        return item

    async def main() -> list[float]:
        loop, gaps, last = asyncio.get_running_loop(), [], 0.0
        async for item, _ in bounded_map(range(2000), work, concurrency=64,
                                         limit=lambda busy: allowed[0]):
            gaps.append(loop.time() - last)
            last = loop.time()
            if item == 500:
                allowed[0] = 8
        return gaps

    gaps = run_virtual(main())
    assert len(gaps) == 2000
    assert max(gaps) < LIMIT_TICK / 10, f"stood still {max(gaps):.3f} s"
    assert running == []


async def test_pool_asks_the_limit_while_the_consumer_waits() -> None:
    """With no result coming for a while, the consumer still grows the pool."""
    asked: list[int] = []
    release = asyncio.Event()

    async def work(item: int) -> int:
        await release.wait()
        return item

    def limit(busy: int) -> int:
        asked.append(busy)
        return 8

    async def consume() -> int:
        return len([pair async for pair in bounded_map(range(8), work, concurrency=8,
                                                          limit=limit)])

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.6)
    busy_seen = max(asked)
    release.set()
    assert await task == 8
    assert busy_seen == 8
