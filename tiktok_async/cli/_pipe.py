"""Input that comes when its writer sends it (a pipe, a terminal), read in a thread.

`tiktok-async users -` reads its lines with plain blocking reads, which is right for a
file (the disk answers at once) but not for `slow-producer | tiktok-async users -`: a read
that waits for the writer would hold the event loop, so nothing answered would be written,
the bar would stand still and Ctrl-C would wait for the next line. `ThreadedLines` runs
the blocking iterator in a daemon thread, at most `ahead` items ahead of the loop, and
hands the loop what has arrived, in order, without waiting for a whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["ThreadedLines"]

T = TypeVar("T")


class _End:
    """The iterator is exhausted (`error`: or it raised)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ThreadedLines(Generic[T]):
    """`items` read in a daemon thread; `await batch(n)` in the loop. Make it in the loop."""

    def __init__(self, items: Iterator[T], ahead: int) -> None:
        self._items = items
        self._ready: deque[T | _End] = deque()
        self._room = threading.Semaphore(ahead)  # items read and not yet taken, at most
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._waiting = False
        self._closed = False
        threading.Thread(target=self._read, name="tiktok-async input", daemon=True).start()

    async def batch(self, most: int) -> list[T]:
        """The items arrived, in order, at most `most`; at least one unless the input is
        done ([]). An error the iterator raised is raised here, after the items before it."""
        while not self._ready:
            if self._closed:
                return []
            await self._wait()
        taken: list[T] = []
        while self._ready and len(taken) < most:
            item = self._ready[0]
            if isinstance(item, _End):
                if item.error is not None and not taken:
                    raise item.error
                break
            taken.append(self._ready.popleft())  # type: ignore[arg-type]
            self._room.release()
        return taken

    def close(self) -> None:
        """Take no more (in the loop): a `batch` waiting returns [] now, and the thread
        stops before its next item (one blocked in a read ends with the process: it is a
        daemon, reading a descriptor of its own, see `_inputfile.read_table`)."""
        self._closed = True
        self._room.release()
        self._wake()

    async def _wait(self) -> None:
        self._waiting = True  # before the check: the reader signals from now on
        try:
            if not self._ready and not self._closed:
                self._waiter = self._loop.create_future()
                await self._waiter
        finally:
            self._waiter = None
            self._waiting = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _read(self) -> None:  # the thread
        end = _End()
        try:
            for item in self._items:
                self._room.acquire()
                if self._closed:
                    return
                self._put(item)
        except BaseException as exc:  # bad input (not UTF-8, a line too long): the loop's
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> None:  # the thread
        self._ready.append(item)
        if self._waiting:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._wake)
