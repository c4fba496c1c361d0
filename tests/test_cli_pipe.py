"""`ThreadedLines`: a blocking iterator read in a thread, handed to the loop as it comes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tiktok_async.cli._pipe import ThreadedLines


def gated(items: list[str], gate: threading.Event, after: int) -> Iterator[str]:
    """`items`, stopping before item `after` until `gate` is set (a silent writer)."""
    for index, item in enumerate(items):
        if index == after:
            gate.wait(10)
        yield item


async def test_a_batch_is_what_has_arrived_not_a_full_one() -> None:
    gate = threading.Event()
    lines = ThreadedLines(gated(["a", "b", "c", "d"], gate, after=2), ahead=16)
    first = await asyncio.wait_for(lines.batch(100), 10)
    while len(first) < 2:  # the thread may hand them over one at a time
        first += await asyncio.wait_for(lines.batch(100), 10)
    gate.set()
    rest = await asyncio.wait_for(lines.batch(100), 10)
    while rest[-1:] != ["d"]:
        rest += await asyncio.wait_for(lines.batch(100), 10)
    assert (first, rest) == (["a", "b"], ["c", "d"])
    assert await asyncio.wait_for(lines.batch(100), 10) == []


async def test_an_error_comes_after_the_items_before_it() -> None:
    def broken() -> Iterator[str]:
        yield "a"
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    lines = ThreadedLines(broken(), ahead=4)
    assert await asyncio.wait_for(lines.batch(10), 10) == ["a"]
    with pytest.raises(UnicodeDecodeError):
        await asyncio.wait_for(lines.batch(10), 10)


async def test_close_ends_a_wait_for_a_silent_writer() -> None:
    gate = threading.Event()
    lines = ThreadedLines(gated(["a", "b"], gate, after=0), ahead=4)
    waiting = asyncio.ensure_future(lines.batch(10))
    await asyncio.sleep(0.05)
    lines.close()
    assert await asyncio.wait_for(waiting, 10) == []
    gate.set()


async def test_the_thread_reads_at_most_ahead_of_the_loop() -> None:
    read: list[int] = []

    def counted() -> Iterator[int]:
        for n in range(100):
            read.append(n)
            yield n

    lines = ThreadedLines(counted(), ahead=5)
    await asyncio.sleep(0.2)
    assert len(read) <= 6  # 5 handed over, and the one the thread holds until room comes
    assert await asyncio.wait_for(lines.batch(3), 10) == [0, 1, 2]
    lines.close()
