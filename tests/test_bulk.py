"""fetch_users / fetch_videos against the emulator over HTTP: one result per input, bounded."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from types import FrameType

import pytest

from tiktok_async import (
    ClientHooks,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    TikTokClient,
)
from tiktok_async._concurrency import BACKOFF_ROOM, START
from tiktok_async._retry import RetryPolicy
from tiktok_async.emulator import (
    Emulator,
    Faults,
    existing_handle,
    is_missing,
    missing_handle,
    video_id_for,
)

Factory = Callable[..., Awaitable[Emulator]]
TESTING = RetryPolicy.testing()


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def client_for(emu: Emulator, **options: object) -> TikTokClient:
    kwargs: dict[str, object] = {"retry": TESTING, "concurrency": 8, **options}
    return TikTokClient(emu.api_key, emu.base_url, **kwargs)  # type: ignore[arg-type]


async def test_every_input_gets_one_result_and_duplicates_are_fetched_once(
    emulator: Emulator,
) -> None:
    alice, bob = existing_handle(1), existing_handle(2)
    inputs = [alice, f"@{alice.upper()}", f"https://www.tiktok.com/@{alice}?lang=en", bob,
              "bad handle!", missing_handle(0), bob]
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users(inputs)]
    assert sorted(map(str, (r.input for r in results))) == sorted(inputs)
    by_input = {r.input: r for r in results}
    assert by_input[alice].ok
    assert by_input[alice].key == alice.lower()
    assert isinstance(by_input["bad handle!"].error, InvalidInputError)
    assert by_input["bad handle!"].attempts == 0
    assert isinstance(by_input[missing_handle(0)].error, NotFoundError)
    assert sum(r.duplicate for r in results) == 3
    assert emulator.stats().total == 3  # alice, bob, the missing one: once each


async def test_duplicates_in_flight_share_the_same_value(emulator: Emulator) -> None:
    handle = existing_handle(3)
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users([handle, handle.upper(), "@" + handle])]
    assert len({id(r.value) for r in results}) == 1
    assert [r.duplicate for r in results].count(False) == 1


async def test_a_later_duplicate_is_decoded_from_the_kept_body(emulator: Emulator) -> None:
    """The dedupe memory keeps a finished answer's body, not its decoded value (which would
    stay alive for 10,000 more inputs): a duplicate after the first was consumed gets an
    equal value decoded again, with no request."""
    handle = existing_handle(5)
    consumed = asyncio.Event()

    async def inputs() -> AsyncIterator[str]:
        yield handle
        await consumed.wait()  # the first answer is finished and consumed by now
        yield "@" + handle.upper()

    results = []
    async with client_for(emulator) as client:
        async for result in client.fetch_users(inputs()):
            results.append(result)
            consumed.set()
    first, later = results
    assert (first.duplicate, later.duplicate, later.attempts) == (False, True, 0)
    assert later.value == first.value
    assert later.value is not first.value
    assert (later.input, later.key, later.handle) == ("@" + handle.upper(), first.key, handle)
    assert emulator.stats().total == 1


async def test_dedupe_off_fetches_each_input(emulator: Emulator) -> None:
    handle = existing_handle(4)
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users([handle, handle], dedupe=False)]
    assert all(r.ok for r in results)
    assert emulator.stats().total == 2


async def test_ordered_keeps_input_order(emulator: Emulator) -> None:
    handles = [existing_handle(n) for n in range(40)]
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users(handles, ordered=True)]
    assert [r.input for r in results] == handles


async def test_async_iterable_input(emulator: Emulator) -> None:
    async def handles() -> AsyncIterator[str]:
        for n in range(10):
            yield existing_handle(n)

    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users(handles())]
    assert len(results) == 10
    assert all(r.ok for r in results)


async def test_input_is_pulled_lazily_and_break_stops_the_work(emulator: Emulator) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for n in itertools.count():
            pulled += 1
            yield f"user{n}.test"

    async with client_for(emulator, concurrency=4) as client:
        async with aclosing(client.fetch_users(endless(), dedupe=False)) as results:
            seen = 0
            async for _ in results:
                seen += 1
                if seen == 50:
                    break
        assert pulled < 50 + 4 * 8  # never far ahead of what was taken
        assert _pool_tasks() == []


def _pool_tasks() -> list[asyncio.Task[object]]:
    """Worker tasks of the bulk pool that are still alive."""
    return [t for t in asyncio.all_tasks() if "_run_worker" in repr(t.get_coro()) and not t.done()]


async def test_bad_key_stops_the_batch_with_one_error(emulator: Emulator) -> None:
    handles = [f"user{n}.test" for n in range(500)]
    async with TikTokClient("wrong-key", emulator.base_url, retry=TESTING, concurrency=8) as client:
        with pytest.raises(ForbiddenError):
            async for _ in client.fetch_users(handles):
                pass
    assert emulator.stats().total <= 8 * 2  # stopped at once, not one 403 per input


async def test_used_up_quota_stops_the_batch(tiktok_emulator_factory: Factory) -> None:
    emu = await tiktok_emulator_factory(quota=20, upstream_latency_ms=0, upstream_jitter_ms=0)
    handles = [existing_handle(n) for n in range(100)]
    answered: list[bool] = []

    async def run(client: TikTokClient) -> None:
        async for r in client.fetch_users(handles):
            answered.append(r.ok)

    async with client_for(emu) as client:
        with pytest.raises(QuotaExceededError):
            await run(client)
    assert sum(answered) == emu.stats().count(status=200) == 20  # each answer paid for, kept


async def test_cancelling_the_consumer_leaves_nothing_behind(emulator: Emulator) -> None:
    handles = [f"user{n}.test" for n in range(2000)]

    async def consume(client: TikTokClient) -> None:
        async for _ in client.fetch_users(handles):
            await asyncio.sleep(0)

    async with client_for(emulator) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The consumer dropped its iterator; the loop's async-generator finalizer closes it.
        for _ in range(100):
            if not _pool_tasks():
                break
            await asyncio.sleep(0.01)
        assert _pool_tasks() == []
    assert emulator.stats().total < 2000


async def test_fetch_videos_takes_urls_pairs_and_refs(emulator: Emulator) -> None:
    handle = existing_handle(7)
    vid = video_id_for(handle, 0)
    inputs: list[object] = [
        f"https://www.tiktok.com/@{handle}/video/{vid}?lang=en",
        (handle, vid),
        f"{handle},{vid}",
        (handle, int(vid)),  # as get_video takes it: an id from JSON or a DataFrame
        f"https://m.tiktok.com/v/{vid}.html",
        "https://vm.tiktok.com/ZMabc/",
        (handle, True),
    ]
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_videos(inputs, ordered=True)]
    assert [r.ok for r in results] == [True, True, True, True, False, False, False]
    assert all(r.value is not None and r.value.id == vid for r in results[:4])
    assert "handle" in str(results[4].error)
    assert "not a video id" in str(results[6].error)
    assert emulator.stats().total == 1


@pytest.mark.slow
async def test_inputs_with_faults_all_land_once(
    tiktok_emulator_factory: Factory,
) -> None:
    """5% faults, 2% missing: every input answered exactly once, every transient fault
    retried (the command line's test runs the same at 10,000 inputs)."""
    faults = Faults(http_500=0.01, http_502=0.01, http_503=0.01, http_504=0.01, truncate=0.01)
    emu = await tiktok_emulator_factory(faults=faults, missing_share=0.02, seed=7,
                                        upstream_latency_ms=0, upstream_jitter_ms=0)
    handles = [f"user{n}.test" for n in range(3000)]  # about 2% of them do not exist
    retry = RetryPolicy(max_attempts=10, wait=False)
    async with client_for(emu, retry=retry, concurrency=32) as client:
        results = [r async for r in client.fetch_users(handles)]
    outcome = Counter("ok" if r.ok else type(r.error).__name__ for r in results)
    assert sorted(str(r.input) for r in results) == sorted(handles)  # each exactly once
    expected_missing = sum(is_missing(h) for h in handles)
    assert outcome == {"ok": len(handles) - expected_missing, "NotFoundError": expected_missing}
    assert client.stats.retries > 0
    assert emu.stats().count(status=200) == len(handles) - expected_missing


@pytest.mark.parametrize("options", [
    {"concurrency": 4096},  # the limit found from latency, far below its ceiling
    {"concurrency": 4},  # the limit at its ceiling
    {"concurrency": 4, "adaptive_concurrency": False},  # a fixed limit
], ids=["adaptive", "at-the-ceiling", "fixed"])
async def test_inputs_backing_off_leave_room_for_requests(
    emulator: Emulator, options: dict[str, object]
) -> None:
    """Every worker's request gets a 503 at once, and each input waits 1 s before its
    retry. Those inputs hold no request (Little's law counts the wire): other inputs go
    on meanwhile. (With the waiting inputs counted as in flight, nothing was sent for
    that second: the limit, capped by rate x latency, had no room to grow; and at the
    ceiling, or with a fixed limit, the sleepers held every worker the pool had.)"""
    sent: list[str] = []
    retried: list[tuple[str, int]] = []  # (path, requests sent by then) at each retry
    hooks = ClientHooks(on_request=sent.append, on_retry=lambda path, error, attempt, wait:
                        retried.append((path, len(sent))))
    retry = RetryPolicy(initial_wait=1.0, jitter=0.0, max_attempts=2)
    handles = [existing_handle(n) for n in range(2000)]
    async with client_for(emulator, rate=200.0, retry=retry, hooks=hooks,
                          **options) as client:
        results = client.fetch_users(handles)
        async with aclosing(results):
            async for n, _ in aiter_enumerate(results):
                if n == 100:
                    emulator.inject("503", count=client.concurrency)
                if retried and retried[0][0] in sent[retried[0][1]:]:
                    break  # the first input to back off has sent its retry
    path, then = retried[0]
    sent_meanwhile = sent.index(path, then) - then
    assert sent_meanwhile >= 60, (sent_meanwhile, len(retried))


@pytest.mark.slow
async def test_a_fixed_limit_gives_a_down_server_bounded_room(
    tiktok_emulator_factory: Factory,
) -> None:
    """With a fixed limit the inputs backing off get room too, and it is as bounded:
    every answer a 503 for 2.5 s, at most 32 inputs at work (the run's window, twice the
    ceiling), each sending at most 4 attempts (at 0, 0.2, 0.6 and 1.4 s), never more than
    16 at once."""
    emu = await tiktok_emulator_factory(faults=Faults(http_503=1.0), upstream_latency_ms=0,
                                        upstream_jitter_ms=0)
    retry = RetryPolicy(initial_wait=0.2, jitter=0.0)
    most_in_flight = 0

    def count(path: str) -> None:
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, client.stats.in_flight)

    async with client_for(emu, concurrency=16, adaptive_concurrency=False, retry=retry,
                          hooks=ClientHooks(on_request=count)) as client:

        async def run() -> None:
            async for _ in client.fetch_users(existing_handle(n) for n in range(10_000)):
                pass

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run(), 2.5)
    assert emu.stats().total <= 2 * 16 * 4, emu.stats().total
    assert emu.stats().total > 16 * 4  # the room was used: more than the 16 workers alone
    assert most_in_flight <= 16


async def aiter_enumerate(items: AsyncIterator[object]) -> AsyncIterator[tuple[int, object]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


@pytest.mark.slow
async def test_a_server_down_for_good_gets_fewer_requests_not_more(
    tiktok_emulator_factory: Factory,
) -> None:
    """Every answer a 503: the limit on requests only falls, and the inputs backing off
    get bounded room. (Counted as in flight, they kept every worker busy, and the limit
    grew against a down server: to 34 in these 2.5 s; with the default backoff, to 148
    in 3 s and 3,343 in 20 s, sending 850 requests a second.)"""
    emu = await tiktok_emulator_factory(faults=Faults(http_503=1.0), upstream_latency_ms=0,
                                        upstream_jitter_ms=0)
    retry = RetryPolicy(initial_wait=0.2, jitter=0.0)
    limits: list[int] = []
    async with client_for(emu, concurrency=4096, retry=retry) as client:

        async def run() -> None:
            async for _ in client.fetch_users(existing_handle(n) for n in range(10_000)):
                pass

        async def watch() -> None:
            while True:
                limits.append(client.concurrency)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run(), 2.5)
        watcher.cancel()
    assert max(limits) <= START, limits
    assert limits[-1] < START, limits
    # At most START x (1 + BACKOFF_ROOM) inputs at work, each sending at most 4 attempts
    # in 2.5 s (at 0, 0.2, 0.6 and 1.4 s).
    assert emu.stats().total <= START * (1 + BACKOFF_ROOM) * 4, emu.stats().total


async def test_a_backend_that_queues_is_not_buried(tiktok_emulator_factory: Factory) -> None:
    """The service fetches from TikTok with 4 workers, 50 ms a user: 80 first fetches a
    second, and the rest wait in its queue. A bulk run under its default ceiling (4,096)
    and no rate limit grows while answers come faster (its first ticks, the answers still
    starting), and a growth that brings no more answers is undone: it holds 32 in
    flight, as a fixed client held 64 (traced: 16, 32, 64, then 32 to the end)."""
    emu = await tiktok_emulator_factory(upstream_workers=4, upstream_latency_ms=50,
                                        upstream_jitter_ms=0, missing_share=0)
    limits: list[int] = []
    async with TikTokClient(emu.api_key, emu.base_url, retry=TESTING,
                            rate=float("inf")) as client:

        async def watch() -> None:
            while True:
                limits.append(client.concurrency)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        results = [r async for r in client.fetch_users(existing_handle(n) for n in range(160))]
        watcher.cancel()
        stats = client.stats
    assert all(r.ok for r in results)
    assert client.max_concurrency == 4096
    # One growth past the plateau, undone (64). On a loaded machine the answers can come a
    # tick late, and slow start doubles once more before a round trip judges it (128, seen
    # once in a full suite run): still far from sending all 160 at once (p95 about 2 s).
    assert max(limits) <= 8 * START, limits
    assert limits[-1] <= 2 * START, limits
    assert stats.latency_p95 is not None
    assert stats.latency_p95 < 1.5, stats


async def test_spare_workers_never_put_more_requests_in_flight_than_the_limit(
    tiktok_emulator_factory: Factory,
) -> None:
    """A bulk run keeps an input ready for each slot (twice the limit in workers: an
    input ready as a slot frees cost about a tenth less CPU a request on cached users);
    its own gate holds the requests to the adaptive limit, however many workers wait.

    Against the highest limit so far, not the limit now: a slot handed to a waiting
    task before a cut is its own (the task runs a turn later), so a request may start
    above a limit cut meanwhile (seen: 98 and 113 in flight at a limit of 64 just cut
    from 128). The limit moves only at an answer or when the pool asks it, each followed
    by a request or an answer hook, so sampling it there sees every value it took.
    Without the gate the spare workers put twice the limit in flight from the start."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=200, upstream_jitter_ms=0,
                                        missing_share=0)
    over: list[tuple[int, int]] = []
    highest = START

    def sample(*_: object) -> None:
        nonlocal highest
        highest = max(highest, client.concurrency)

    def check(path: str) -> None:
        sample()
        in_flight = client.stats.in_flight + 1  # this one is not counted yet
        if in_flight > highest:
            over.append((in_flight, highest))

    async with TikTokClient(emu.api_key, emu.base_url, retry=TESTING, rate=float("inf"),
                            hooks=ClientHooks(on_request=check, on_response=sample)) as client:
        results = [r async for r in client.fetch_users(existing_handle(n) for n in range(300))]
        assert over == []
        assert client.concurrency > START  # it grew: the gate followed
    assert all(r.ok for r in results)


async def test_a_slow_backend_that_queues_is_not_buried(tiktok_emulator_factory: Factory) -> None:
    """16 workers x 300 ms: 53 first fetches a second, each answer more than a tick after
    its request. Before the round-trip rule, a run with no rate limit grew to 512 in
    flight and more, sending every input at once. Now slow start's blind first round
    trips reach 256, the growth that brought no more answers is undone, and each later
    growth waits a round trip to be judged: at most 4 x the server's workers."""
    emu = await tiktok_emulator_factory(upstream_workers=16, upstream_latency_ms=300,
                                        upstream_jitter_ms=0, missing_share=0)
    limits: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()
    async with TikTokClient(emu.api_key, emu.base_url, retry=TESTING,
                            rate=float("inf")) as client:
        started = loop.time()

        async def watch() -> None:
            while True:
                limits.append((loop.time() - started, client.concurrency))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        results = [r async for r in client.fetch_users(existing_handle(n) for n in range(300))]
        watcher.cancel()
    assert all(r.ok for r in results)
    assert max(limit for _, limit in limits) <= 16 * START, limits  # blind: 16 -> 256
    assert max(limit for at, limit in limits if at >= 2.5) <= 64, limits


def _called_from_our_client(frame: FrameType | None) -> bool:
    """Whether the first frame outside asyncio (`current_task` asks for the loop too) is
    in the client's package (the emulator shares the process, not the count)."""
    while frame is not None and f"{os.sep}asyncio{os.sep}" in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is None:
        return False
    path = frame.f_code.co_filename
    return f"{os.sep}tiktok_async{os.sep}" in path and f"{os.sep}emulator{os.sep}" not in path


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive limit", "fixed limit"])
async def test_the_bulk_path_does_not_ask_for_the_running_loop_a_request(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch, adaptive: bool) -> None:
    """On Python 3.11 each `asyncio.get_running_loop()` (and `current_task()`, which asks
    for it) is a getpid system call. The bulk path asked four times a request, spare
    workers waiting for a slot included (in a paired run, removing three of them took
    fetch_users from 0.89x to 0.91x the bare loop's requests a second). With no rate
    limit: a task waiting for a rate token asks once a wait, not a request."""
    asked = 0
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        nonlocal asked
        frame = inspect.currentframe()
        asked += _called_from_our_client(frame and frame.f_back)
        return real()

    count = 400
    async with TikTokClient(emulator.api_key, emulator.base_url, retry=TESTING, concurrency=16,
                            rate=math.inf, adaptive_concurrency=adaptive) as client:
        await client.get_user(existing_handle(0))
        monkeypatch.setattr(asyncio, "get_running_loop", counting)
        monkeypatch.setattr(asyncio.events, "get_running_loop", counting)
        results = [r async for r in client.fetch_users(existing_handle(n) for n in range(count))]
        monkeypatch.undo()
    assert all(r.ok for r in results)
    assert len(results) == count
    assert client.stats.requests >= count
    assert asked < count / 10, f"{asked / count:.2f} asks a request"
