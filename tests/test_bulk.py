"""fetch_users / fetch_videos against the emulator over HTTP: one result per input, bounded."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing

import pytest

from tiktok_async import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    TikTokClient,
)
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


async def test_duplicates_share_the_same_value(emulator: Emulator) -> None:
    handle = existing_handle(3)
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users([handle, handle.upper(), "@" + handle])]
    assert len({id(r.value) for r in results}) == 1
    assert [r.duplicate for r in results].count(False) == 1


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
        f"https://m.tiktok.com/v/{vid}.html",
        "https://vm.tiktok.com/ZMabc/",
    ]
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_videos(inputs, ordered=True)]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert all(r.value is not None and r.value.id == vid for r in results[:3])
    assert "handle" in str(results[3].error)
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
