"""RedisLimiter against a real redis-server: API Gateway's bucket shared by many limiters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer
from virtual_clock import CountingRedis, run_virtual

from tiktok_async import RedisLimiter, TikTokClient
from tiktok_async._pool import bounded_map
from tiktok_async._redis_limiter import Redis, bucket_key, connect
from tiktok_async.emulator import Emulator, busiest_window

KEY = "secret-api-key-123"
# Python 3.10 does not count cancels (Task.cancelling): a cancel lost inside redis-py
# (its asyncio.wait_for) cannot be told from none.
counts_cancels = pytest.mark.skipif(sys.version_info < (3, 11),
                                    reason="counting cancels (Task.cancelling) is Python 3.11+")
# Grant times on the virtual clock are judged to a millisecond: it moves a microsecond a
# turn of the loop, and a slot within 0.1 ms counts as due; slots here are >= 10 ms apart.
SLOP = 1e-3


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def grant_times(limiters: list[RedisLimiter], count: int, tasks: int = 8) -> list[float]:
    """Loop times at which `count` acquires, spread over the limiters, got through."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    remaining = [count]

    async def worker(limiter: RedisLimiter) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await limiter.acquire()
            times.append(loop.time())

    await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(tasks)))
    return times


@contextlib.asynccontextmanager
async def limiters_on_loop_time(url: str, count: int, **options: Any
                                ) -> AsyncIterator[list[RedisLimiter]]:
    """`count` limiters on one key, each on its own connection, keeping time by the
    running (virtual) loop's clock; closed at the end."""
    clock = asyncio.get_running_loop().time
    clients = [CountingRedis.from_url(url, decode_responses=True) for _ in range(count)]
    limiters = [RedisLimiter(client, KEY, clock=clock, **options) for client in clients]
    try:
        yield limiters
    finally:
        for limiter, client in zip(limiters, clients, strict=True):
            await limiter.aclose()
            await client.aclose()


def test_limiters_on_one_key_share_one_bucket(redis_server: RedisServer) -> None:
    """Three limiters, 24 tasks: every closed half second holds the bucket's bound and
    the busiest reaches it; 110 grants take (110 - 10) / 100 s, the whole rate shared."""

    async def main() -> list[float]:
        async with limiters_on_loop_time(redis_server.url, 3, rate=100, burst=10) as limiters:
            return await grant_times(limiters, count=110)

    times = run_virtual(main)
    assert busiest_window(times, 0.5 + SLOP) == 100 * 0.5 + 10
    assert max(times) - min(times) == pytest.approx(1.0, abs=SLOP)


def test_bucket_starts_full_and_lets_the_burst_through_at_once(
    redis_server: RedisServer,
) -> None:
    async def main() -> list[float]:
        async with limiters_on_loop_time(redis_server.url, 1, rate=10, burst=20) as limiters:
            return await grant_times(limiters, count=21)

    times = sorted(run_virtual(main))
    assert times[19] - times[0] == pytest.approx(0.0, abs=SLOP)  # the burst at once
    assert times[20] - times[0] == pytest.approx(0.1, abs=SLOP)  # then one at the rate


async def test_the_key_itself_never_reaches_redis(redis: Redis) -> None:
    limiter = RedisLimiter(redis, KEY, rate=10)
    await limiter.acquire()
    keys = [k async for k in redis.scan_iter("*")]
    assert keys == [bucket_key(KEY)]
    assert KEY not in keys[0]
    assert KEY not in repr(limiter)
    assert KEY not in str(await redis.hgetall(keys[0]))
    await limiter.aclose()


def test_a_429_cool_down_holds_every_limiter(redis_server: RedisServer) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with limiters_on_loop_time(redis_server.url, 2, rate=1000, burst=100) as pair:
            one, other = pair
            one.on_throttled(0.5)
            publishing = asyncio.create_task(one.acquire())  # publishes the pause, waits
            await asyncio.sleep(0.05)
            await other.acquire()
            other_at = loop.time()
            await publishing
        return other_at

    assert 0.5 <= run_virtual(main) <= 0.5 + 2 * SLOP  # the pause, then a slot at the rate


async def test_a_429_seen_by_one_worker_lowers_the_shared_adaptive_rate(redis: Redis) -> None:
    one, other = RedisLimiter(redis, KEY, initial=200), RedisLimiter(redis, KEY, initial=200)
    await other.acquire()
    assert other.rate == pytest.approx(200, rel=0.05)
    one.on_rate_limited()
    await one.acquire()
    await other.acquire()
    assert other.rate is not None
    assert other.rate < 120
    for limiter in (one, other):
        await limiter.aclose()  # its reporter task ends with it, not with the loop


def test_the_shared_rate_grows_from_every_workers_requests_up_to_max_rate(
    redis_server: RedisServer,
) -> None:
    """Slow start counts the requests every worker sends (answers may be seconds away)."""

    async def main() -> list[float | None]:
        loop = asyncio.get_running_loop()
        redis = CountingRedis.from_url(redis_server.url, decode_responses=True)
        one, other = (RedisLimiter(redis, KEY, initial=10, max_rate=30, clock=loop.time)
                      for _ in range(2))
        await one.reset()
        for _ in range(40):  # 2 s of requests, 10 a second from each worker, no answers
            await asyncio.sleep(0.1)
            for limiter in (one, other):
                await limiter.acquire()
                await limiter.report()
        rates = [one.rate, other.rate]
        for limiter in (one, other):
            await limiter.aclose()
        await redis.aclose()
        return rates

    assert run_virtual(main) == [30, 30]


async def test_a_rate_nobody_uses_is_not_raised(redis: Redis) -> None:
    clock = [100.0]
    limiter = RedisLimiter(redis, KEY, initial=10, clock=lambda: clock[0])
    for _ in range(10):  # 5 s of answers at 2 a second, under half the rate of 10
        clock[0] += 0.5
        limiter.on_success()
        await limiter.report()
    assert limiter.rate == 10
    await limiter.aclose()


def test_tasks_beyond_the_horizon_wait_at_home(redis_server: RedisServer) -> None:
    """Few slots are booked ahead in Redis, however many tasks wait: at 10/s, the eight
    that may be on their way at once before any reply came (due 0 to 700 ms), then one
    more each time the newest is due within the 50 ms horizon (at 650, 750, ... ms)."""

    async def main() -> list[float]:
        redis = CountingRedis.from_url(redis_server.url, decode_responses=True)
        limiter = RedisLimiter(redis, KEY, rate=10, clock=asyncio.get_running_loop().time)
        tasks = [asyncio.create_task(limiter.acquire()) for _ in range(20)]
        booked = []
        for _ in range(3):
            await asyncio.sleep(0.4)
            booked.append(float(await redis.hget(bucket_key(KEY), "vtat") or 0))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await limiter.aclose()
        await redis.aclose()
        return booked

    assert run_virtual(main) == [8, 10, 14]  # tokens booked by 0.4 s, 0.8 s, 1.2 s


def test_a_cut_stretches_the_slots_another_worker_booked_already(
    redis_server: RedisServer,
) -> None:
    """Worker A books 4 slots at 100/s (due 0, 10, 20, 30 ms); worker B's 429 cuts the
    rate to 25/s at once: A hears of it within 20 ms and its last slots move out."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        clients = [CountingRedis.from_url(redis_server.url, decode_responses=True)
                   for _ in range(2)]
        one, other = (RedisLimiter(r, KEY, initial=100, clock=loop.time) for r in clients)
        times: list[float] = []

        async def acquire() -> None:
            await one.acquire()
            times.append(loop.time())

        tasks = [asyncio.create_task(acquire()) for _ in range(4)]
        await asyncio.sleep(0.001)
        other.on_rate_limited()
        await asyncio.gather(*tasks)
        for limiter, client in zip((one, other), clients, strict=True):
            await limiter.aclose()
            await client.aclose()
        return times

    times = run_virtual(main)
    assert times[-1] > 0.1  # 30 ms at the old rate; (3 - 0.1) / 25 s at the new


def test_answers_reach_redis_without_a_booking(redis_server: RedisServer) -> None:
    """Good answers within 20 ms, a 429 at once, though no task books a slot."""

    async def main() -> tuple[dict[Any, Any], dict[Any, Any]]:
        redis = CountingRedis.from_url(redis_server.url, decode_responses=True)
        limiter = RedisLimiter(redis, KEY, clock=asyncio.get_running_loop().time)
        for _ in range(3):
            limiter.on_success()
        await asyncio.sleep(0.03)
        after_oks = await redis.hgetall(bucket_key(KEY))
        limiter.on_rate_limited()
        await asyncio.sleep(0.001)
        after_429 = await redis.hgetall(bucket_key(KEY))
        await limiter.aclose()
        await redis.aclose()
        return after_oks, after_429

    after_oks, after_429 = run_virtual(main)
    assert after_oks["passed"] == "3"
    assert after_oks["emptied"] == "0"
    assert after_429["emptied"] == "1"  # slow start is over
    assert float(after_429["rate"]) == 2.5  # 10 x 0.25


def test_runs_on_uvloop_as_the_worker_does(redis_server: RedisServer) -> None:
    """uvloop's timers differ from asyncio's (a timer already due is a plain Handle)."""
    import uvloop

    async def main() -> float | None:
        limiter = RedisLimiter(redis_server.url, KEY, initial=50)
        for _ in range(5):
            await limiter.acquire()
            limiter.on_success()
        limiter.on_rate_limited()  # reported at once: a timer due now, a plain Handle
        limiter.on_success()  # in the same turn of the loop
        await asyncio.sleep(0.05)
        await limiter.aclose()
        return limiter.rate

    rate = uvloop.run(main())
    assert rate is not None
    assert rate < 50 / 2


def test_acquire_survives_a_flushed_script_cache(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH (Redis restarted) the script is loaded again and still books:
    at 10/s, burst 1, the grant after the flush waits its slot and the next waits for it."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        redis = CountingRedis.from_url(redis_server.url, decode_responses=True)
        async with limiters_on_loop_time(redis_server.url, 1, rate=10, burst=1) as limiters:
            times = []
            for flush in (False, True, False):
                if flush:
                    await redis.script_flush()
                await limiters[0].acquire()  # after the flush: NOSCRIPT, then EVAL
                times.append(loop.time())
        await redis.aclose()
        return times

    assert run_virtual(main) == pytest.approx([0.0, 0.1, 0.2], abs=SLOP)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        RedisLimiter("redis://127.0.0.1:1/0", KEY, rate=1, burst=0)
    with pytest.raises(ValueError, match="max_rate"):
        RedisLimiter("redis://127.0.0.1:1/0", KEY, rate=1, max_rate=5)


def test_a_client_given_a_limiter_refuses_its_own_rate() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", KEY, rate=10)
    with pytest.raises(ValueError, match="limiter"):
        TikTokClient(KEY, "http://127.0.0.1:1/dev/tiktok", limiter=limiter, rate=5)
    with pytest.raises(ValueError, match="limiter"):
        TikTokClient(KEY, "http://127.0.0.1:1/dev/tiktok", limiter=limiter, burst=5)
    client = TikTokClient(KEY, "http://127.0.0.1:1/dev/tiktok", limiter=limiter)
    assert client.rate == 10
    with pytest.raises(ValueError, match="limiter"):
        client.set_rate(5)


async def test_two_clients_on_one_redis_limiter_keep_the_servers_limit(
    redis_server: RedisServer,
) -> None:
    async with Emulator(rate=40, burst=5, upstream_latency_ms=0) as emulator:
        limiters = [RedisLimiter(redis_server.url, emulator.api_key, rate=40, burst=5)
                    for _ in range(2)]
        clients = [TikTokClient(emulator.api_key, emulator.base_url, limiter=lim)
                   for lim in limiters]
        handles = [f"user_{i}" for i in range(60)]

        async def run(client: TikTokClient, part: list[str]) -> int:
            async with client:
                return sum([1 async for r in client.fetch_users(part) if r.ok])

        oks = await asyncio.gather(run(clients[0], handles[::2]), run(clients[1], handles[1::2]))
        for lim in limiters:
            await lim.aclose()
        stats = emulator.stats()
    assert sum(oks) >= 55  # a few handles do not exist (404)
    assert stats.count(status=429) <= 3
    assert stats.max_in_window(1.0, status=None) <= 40 + 5 + 1


async def test_the_client_tells_a_shared_adaptive_rate_its_round_trips(
    redis_server: RedisServer,
) -> None:
    """Over HTTP: the client hands each answer's round trip to a limiter that takes them
    (`on_round_trip`); `RedisLimiter` sends the shortest of each report, and the shared
    state keeps the shortest of the first ones (the quick start's pace, rule 1)."""
    async with Emulator(upstream_latency_ms=0, missing_share=0) as emulator:
        limiter = RedisLimiter(redis_server.url, emulator.api_key)
        try:
            async with TikTokClient(emulator.api_key, emulator.base_url,
                                    limiter=limiter) as client:
                for n in range(5):
                    await client.get_user(f"trip{n}.test")
                    await limiter.report()
            redis = aioredis.from_url(redis_server.url, decode_responses=True)
            state = await redis.hgetall(bucket_key(emulator.api_key))
            await redis.aclose()
        finally:
            await limiter.aclose()
    assert 1 <= float(state["rtt_seen"]) <= 5
    assert 0 < float(state["base_rtt"]) < 1.0


async def lost_cancels(call: Callable[[], Awaitable[object]], turns: int = 12) -> list[int]:
    """Cancel a task running `call()` after 0, 1, ... turns of the loop: the turns after
    which the task went on past `call()` as if no cancel had come."""
    lost = []
    for turn in range(turns):
        went_on = False

        async def command() -> None:
            nonlocal went_on
            await call()
            went_on = True  # in the step that ends the task: not done, so not yet here

        task = asyncio.create_task(command())
        for _ in range(turn):
            await asyncio.sleep(0)
        if task.done():
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if went_on:
            lost.append(turn)
    return lost


@counts_cancels
async def test_a_cancel_as_a_command_goes_out_is_not_lost(redis: Redis) -> None:
    # redis-py sends through asyncio.wait_for, which (Python < 3.12) returns the answer
    # when the cancel comes in the turn the send ends (turns 1-3 here): the task went on,
    # and the bulk pool closing on Ctrl-C waited for it for good (the worker hang).
    await redis.ping()  # connected: the sweep starts at the send
    assert await lost_cancels(redis.ping) == []


@counts_cancels
async def test_a_limiter_on_a_lent_redis_loses_no_cancel(redis_server: RedisServer) -> None:
    lent = aioredis.Redis.from_url(redis_server.url, decode_responses=True)  # not connect()'s
    limiter = RedisLimiter(lent, KEY, rate=1e6, burst=1_000_000)
    try:
        await limiter.acquire()
        assert await lost_cancels(limiter.acquire) == []
    finally:
        await limiter.aclose()
        await lent.aclose()


@counts_cancels
async def test_closing_a_bulk_run_of_redis_limited_requests_ends_whenever_it_comes(
    redis: Redis,
) -> None:
    limiter = RedisLimiter(redis, KEY, rate=1e6, burst=1_000_000)

    async def request(item: int) -> int:
        await limiter.acquire()
        return item

    await limiter.acquire()
    for turn in range(12):  # a pool over an endless input, closed (Ctrl-C) after `turn` turns
        async def run() -> None:
            async with contextlib.aclosing(
                    bounded_map(itertools.count(), request, concurrency=4)) as results:
                async for _ in results:
                    pass

        task = asyncio.create_task(run())
        for _ in range(turn):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        if not done:  # a worker lost its cancel and went on: the pool waits for it for good
            await cancel_for_good(task)
            pytest.fail(f"a bulk run closed after {turn} turns did not end")
    await limiter.aclose()


async def cancel_for_good(task: asyncio.Task[None]) -> None:
    """End `task` and its pool's workers, cancelling them until they end (a failed test)."""
    while not task.done():
        for worker in asyncio.all_tasks():
            if worker.get_coro().__qualname__ == "_Pool._run_worker":  # type: ignore[union-attr]
                worker.cancel()
        await asyncio.wait([task], timeout=0.1)
