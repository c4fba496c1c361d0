"""An event loop on a virtual clock that still does real I/O (to a real Redis).

`VirtualClockLoop.time()` is a number that jumps straight to the next timer whenever
nothing else can happen: no callback ready and no real I/O on its way (and moves on by a
microsecond a turn of the loop). Real I/O is what
`CountingRedis` has in flight (it counts its commands in `io_pending`): while a command
waits for Redis, the clock stands still, so a simulated minute of a limiter's life costs
only its Redis round trips, and no simulated time passes during them. Only public
asyncio API: the loop is a `SelectorEventLoop` given a selector that, instead of
sleeping, moves the clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

T = TypeVar("T")

# Real seconds to wait for a reply before looking again (a reply always comes first).
_REAL_WAIT = 5.0
# Virtual seconds each turn of the loop takes, as real turns do: code that re-arms a timer
# for "now" until the clock moves (aiolimiter does, on rounding) would otherwise spin.
_TURN = 1e-6


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` only moves when the loop would sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.io_pending = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class _JumpingSelector(selectors.BaseSelector):
    """The default selector, but a sleep with no real I/O pending moves the clock."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._loop.now += _TURN
        if timeout is not None and timeout <= 0:
            return self._real.select(0)
        if self._loop.io_pending:
            return self._real.select(_REAL_WAIT)  # a reply is on its way: wait for it
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            return self._real.select(_REAL_WAIT)
        self._loop.now += timeout
        return []


class CountingRedis(aioredis.Redis):
    """A Redis client that tells the virtual clock while one of its commands is out."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        loop.io_pending += 1
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        finally:
            loop.io_pending -= 1


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` on a fresh `VirtualClockLoop` (its clock starts at 0), out of asyncio's
    debug mode: these are simulations of minutes of a limiter's life, where debug mode's
    bookkeeping on every callback costs 9x the run (its checks are the real-loop tests')."""
    loop = VirtualClockLoop()
    loop.set_debug(False)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
