"""bounded_map: lazy, bounded, ordered window, dedupe, aborts and clean closing."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiktok_async._pool import bounded_map

P = TypeVar("P")


def other_tasks() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Counting:
    """An iterable that counts how many items were pulled from it."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count() if self.n is None else range(self.n):
            self.pulled += 1
            yield i


async def double(i: int) -> int:
    await asyncio.sleep(0)
    return i * 2


async def test_every_item_gets_its_result() -> None:
    pairs = [p async for p in bounded_map(range(500), double, concurrency=8)]
    assert sorted(pairs) == [(i, i * 2) for i in range(500)]


async def test_accepts_an_async_iterable() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(100):
            await asyncio.sleep(0)
            yield i

    pairs = [p async for p in bounded_map(source(), double, concurrency=4)]
    assert sorted(pairs) == [(i, i * 2) for i in range(100)]


async def test_empty_input_finishes() -> None:
    empty: list[int] = []
    assert [p async for p in bounded_map(empty, double, concurrency=3)] == []


async def test_ordered_keeps_input_order_with_uneven_latency() -> None:
    rng = random.Random(7)
    delays = [rng.choice([0, 0, 1, 5]) for _ in range(300)]

    async def uneven(i: int) -> int:
        for _ in range(delays[i]):
            await asyncio.sleep(0)
        return i

    pairs = [p async for p in bounded_map(range(300), uneven, concurrency=16, ordered=True)]
    assert pairs == [(i, i) for i in range(300)]


async def test_never_more_than_concurrency_in_flight() -> None:
    in_flight = peak = 0

    async def tracked(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return i

    assert len([p async for p in bounded_map(range(200), tracked, concurrency=5)]) == 200
    assert peak == 5


async def test_infinite_input_can_be_broken_out_of() -> None:
    source = Counting()
    got = []
    async with aclosing(bounded_map(source, double, concurrency=4)) as pairs:
        async for pair in pairs:
            got.append(pair)
            if len(got) == 10:
                break
    assert len(got) == 10
    assert source.pulled <= 10 + 2 * 4
    assert other_tasks() == set()


async def test_slow_consumer_stops_the_workers() -> None:
    source = Counting(10_000)
    pairs = bounded_map(source, double, concurrency=4)
    await anext(pairs)
    await settle(50)  # the workers had every chance to run ahead
    assert source.pulled <= 1 + 8
    await pairs.aclose()


async def test_ordered_window_bounds_read_ahead_behind_a_slow_item() -> None:
    source = Counting(10_000)
    release = asyncio.Event()

    async def first_is_slow(i: int) -> int:
        if i == 0:
            await release.wait()
        return i

    pairs = bounded_map(source, first_is_slow, concurrency=4, ordered=True, window=12)
    first = asyncio.ensure_future(anext(pairs))
    await settle(50)
    assert source.pulled == 12
    release.set()
    assert await first == (0, 0)
    await pairs.aclose()


def recording_lower() -> tuple[list[str], Callable[[str], Awaitable[str]]]:
    """A worker that records each item it runs on and answers it in lower case after a
    turn of the loop; and its record."""
    calls: list[str] = []

    async def fetch(item: str) -> str:
        calls.append(item)
        await asyncio.sleep(0)
        return item.lower()

    return calls, fetch


async def test_duplicates_run_once_and_each_gets_its_pair() -> None:
    calls, fetch = recording_lower()
    items = ["A", "a", "b", "A", "B", "c", "a"]
    pairs = [p async for p in bounded_map(items, fetch, concurrency=3, key=str.lower)]
    assert sorted(pairs) == sorted((i, i.lower()) for i in items)
    assert sorted(c.lower() for c in calls) == ["a", "b", "c"]


async def test_items_without_a_key_are_never_deduplicated() -> None:
    calls, fetch = recording_lower()
    items = ["X", "a", "X", "a", "X"]
    pairs = [p async for p in bounded_map(items, fetch, concurrency=2,
                                          key=lambda item: None if item == "X" else item)]
    assert sorted(pairs) == sorted((i, i.lower()) for i in items)
    assert sorted(calls) == ["X", "X", "X", "a"]  # every "X" ran; "a" once


async def test_the_memory_keeps_what_remember_gives_and_recall_turns_back() -> None:
    kept: list[object] = []

    async def fetch(item: str) -> str:
        return item.lower()

    def remember(result: str) -> tuple[str]:
        kept.append(result)
        return (result,)

    items = iter(["A", "b", "a"])  # "a" is taken after "A" finished: from the memory
    pairs = [p async for p in bounded_map(items, fetch, concurrency=1, key=str.lower,
                                          remember=remember, recall=lambda t: t[0] + "!")]
    assert pairs == [("A", "a"), ("b", "b"), ("a", "a!")]
    assert kept == ["a", "b"]


def test_remember_and_recall_go_together() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        bounded_map([1], asyncio.sleep, concurrency=1, remember=str)


async def test_duplicate_of_an_in_flight_key_waits_for_it() -> None:
    release = asyncio.Event()
    calls = 0

    async def slow(item: str) -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    pairs = bounded_map(["x", "x", "x"], slow, concurrency=3, key=lambda s: s)
    task = asyncio.ensure_future(_collect(pairs))
    await settle()
    assert calls == 1
    release.set()
    assert await task == [("x", "answer")] * 3


async def test_ordered_dedupe_keeps_order() -> None:
    items = [i % 7 for i in range(100)]
    pairs = [p async for p in bounded_map(items, double, concurrency=4, ordered=True,
                                          key=lambda i: i)]
    assert pairs == [(i, i * 2) for i in items]


async def test_dedupe_memory_is_bounded_lru() -> None:
    calls: list[int] = []

    async def fetch(i: int) -> int:
        calls.append(i)
        return i

    items = [1, 2, 3, 1, 4, 5, 6, 1, 2]  # 2 falls out of a memory of 4 keys; 1 stays fresh
    pairs = bounded_map(items, fetch, concurrency=1, key=lambda i: i, dedupe_memory=4)
    assert [p async for p in pairs] == [(i, i) for i in items]
    assert calls == [1, 2, 3, 4, 5, 6, 2]


async def test_worker_exception_aborts_and_cancels_the_others() -> None:
    cancelled = 0

    async def fragile(i: int) -> int:
        nonlocal cancelled
        if i == 5:
            await settle()  # let the other seven start first
            raise PermissionError("bad key")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return i

    with pytest.raises(PermissionError, match="bad key"):
        async for _ in bounded_map(Counting(), fragile, concurrency=8):
            pass
    assert cancelled == 7
    assert other_tasks() == set()


async def test_key_exception_aborts() -> None:
    def bad_key(i: int) -> int:
        raise KeyError(i)

    with pytest.raises(KeyError):
        async for _ in bounded_map(range(5), double, concurrency=2, key=bad_key):
            pass
    assert other_tasks() == set()


async def test_failing_input_propagates_after_cancelling() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        async for _ in bounded_map(source(), double, concurrency=2):
            pass
    assert other_tasks() == set()


async def test_failing_async_input_propagates() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise OSError("stream broke")

    with pytest.raises(OSError, match="stream broke"):
        async for _ in bounded_map(source(), double, concurrency=3):
            pass
    assert other_tasks() == set()


async def test_aclose_cancels_work_in_flight() -> None:
    started = asyncio.Event()
    cancelled = 0

    async def hang(i: int) -> int:
        nonlocal cancelled
        if i == 0:
            return i
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return i

    pairs = bounded_map(range(100), hang, concurrency=4)
    assert await anext(pairs) == (0, 0)
    await started.wait()
    await pairs.aclose()
    assert cancelled == 4
    assert other_tasks() == set()


async def test_cancelling_the_consumer_cancels_the_work() -> None:
    async def hang(i: int) -> int:
        await asyncio.sleep(10)
        return i

    consumer = asyncio.ensure_future(_collect(bounded_map(range(100), hang, concurrency=4)))
    await settle()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert other_tasks() == set()


async def test_unfinished_async_input_is_closed() -> None:
    closed = False

    async def source() -> AsyncIterator[int]:
        nonlocal closed
        try:
            for i in itertools.count():
                yield i
        finally:
            closed = True

    async with aclosing(bounded_map(source(), double, concurrency=2)) as pairs:
        async for _ in pairs:
            break
    assert closed


async def test_garbage_collected_iterator_stops_its_workers() -> None:
    pairs = bounded_map(Counting(), double, concurrency=4)
    await anext(pairs)
    assert other_tasks()
    del pairs
    gc.collect()
    await settle(10)  # the loop's async-generator finalizer runs aclose() in a task
    assert other_tasks() == set()


async def test_a_worker_cancelled_from_outside_does_not_hang_the_map() -> None:
    async def cancel_self(i: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        if i == 3:
            task.cancel()
        await asyncio.sleep(0)
        return i

    with pytest.raises(asyncio.CancelledError):
        async for _ in bounded_map(range(10), cancel_self, concurrency=2):
            pass
    assert other_tasks() == set()


@pytest.mark.parametrize("kwargs", [{"concurrency": 0}, {"concurrency": 2, "window": 0},
                                    {"concurrency": 2, "dedupe_memory": -1}])
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        bounded_map(range(3), double, **kwargs)


async def _collect(pairs: AsyncIterator[P]) -> list[P]:
    return [p async for p in pairs]


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(0, 15), max_size=60),
    concurrency=st.integers(1, 6),
    window=st.none() | st.integers(1, 12),
    ordered=st.booleans(),
    dedupe=st.booleans(),
    delays=st.lists(st.integers(0, 3), min_size=1, max_size=8),
)
def test_every_item_yields_once_with_its_result(
    items: list[int], concurrency: int, window: int | None, ordered: bool, dedupe: bool,
    delays: list[int],
) -> None:
    """Whatever the settings: one pair per item, the right result, order when asked."""

    async def uneven(i: int) -> int:
        for _ in range(delays[i % len(delays)]):
            await asyncio.sleep(0)
        return i * 3

    async def run() -> list[tuple[int, int]]:
        pairs = bounded_map(items, uneven, concurrency=concurrency, window=window,
                            ordered=ordered, key=(lambda i: i) if dedupe else None)
        return [p async for p in pairs]

    pairs = asyncio.run(run())
    expected = [(i, i * 3) for i in items]
    assert (pairs if ordered else sorted(pairs)) == (expected if ordered else sorted(expected))


async def test_results_finished_before_an_abort_are_still_yielded() -> None:
    """An answer already paid for is handed out before the error that stops the map."""

    class Stop(Exception):
        pass

    async def worker(n: int) -> int:
        if n == 5:
            await asyncio.sleep(0.01)  # the others finish first
            raise Stop
        return n

    got: list[int] = []

    async def consume() -> None:
        async for _, result in bounded_map(range(6), worker, concurrency=6):
            got.append(result)

    with pytest.raises(Stop):
        await consume()
    assert sorted(got) == [0, 1, 2, 3, 4]
