"""Shared test helpers: a virtual-clock event loop, and aioresponses made to work on aiohttp 3.14.

Both are test-only; nothing here ships in the package.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
from aioresponses import aioresponses

T = TypeVar("T")

#: `make test` runs the tests marked `realtime` alone, from these files only (Makefile).
REALTIME_FILES = ("test_loadtest.py", "test_bench_command.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a `realtime` test outside REALTIME_FILES: `make test` would never run it."""
    stray = [item.nodeid for item in items
             if item.get_closest_marker("realtime") and item.path.name not in REALTIME_FILES]
    if stray:
        raise pytest.UsageError(f"realtime tests outside {REALTIME_FILES}: {stray}")


@pytest.fixture(autouse=True)
def _own_state_folder(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test its own XDG_STATE_HOME: the command line remembers the rate a key reached
    there (cli/_ratememory.py); a test must neither read another's nor write the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


# --- virtual time -----------------------------------------------------------------------
#
# Where timing is the point (limiter, retry waits), tests run on an event loop whose clock
# only moves when every task is waiting on a timer: the loop then jumps straight to the
# next timer instead of sleeping. Results are exact and a test of a 60 s schedule takes
# milliseconds. (aiolimiter's own tests patch `loop.time` for the same reason.)


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, instead of blocking for `timeout`, moves the loop's clock by it."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready:
            return ready
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            real: list[Any] = super().select(None)
            return real
        # Move at least a nanosecond per turn of the loop, as a real clock would: a timer
        # re-armed within float rounding of now must not leave the clock standing still.
        self._clock[0] += max(timeout, 1e-9)
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: `time()` starts at 0 and jumps to the next timer.

    Each turn of the loop also moves the clock by a nanosecond, so times are exact to
    within a few microseconds, never to the last bit: compare with `pytest.approx`.
    """

    def __init__(self) -> None:
        self._clock = [0.0]
        super().__init__(selector=_JumpingSelector(self._clock))

    def time(self) -> float:
        return self._clock[0]


def run_on_virtual_clock(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh `VirtualClockLoop`, then close the loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def run_virtual() -> Callable[[Coroutine[Any, Any, T]], T]:
    """`run_virtual(coro)`: run a coroutine on virtual time (see `VirtualClockLoop`).

    For synchronous tests only: a test run by pytest-asyncio already has a real loop.
    """
    return run_on_virtual_clock


# --- aioresponses on aiohttp 3.14 --------------------------------------------------------
#
# aioresponses 0.7.9 (the newest) builds `ClientResponse(method, url, **kwargs)` without
# the keyword-only `stream_writer` that aiohttp 3.14 made required, so every mocked request
# raises TypeError (upstream pnuckowski/aioresponses#289, open). aiohttp 3.14.0 is a
# security release, so pinning below it is the wrong fix. The adapter below hands
# aioresponses a ClientResponse subclass that supplies a finished writer (`output_size`
# 0: nothing was uploaded). Delete it when aioresponses ships a fix.


class _FinishedWriter:
    """Stands in for the request's stream writer: the upload is over, 0 bytes sent."""

    output_size = 0


class Aiohttp314Response(aiohttp.ClientResponse):
    """`ClientResponse` that tolerates aioresponses 0.7.9 omitting `stream_writer`."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedWriter())
        super().__init__(method, url, **kwargs)


class Aiohttp314Mock(aioresponses):
    """aioresponses whose mocked answers use `Aiohttp314Response` unless told otherwise."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", Aiohttp314Response)
        super().add(*args, **kwargs)


@pytest.fixture
def mock_http() -> Iterator[Aiohttp314Mock]:
    """aioresponses (with the aiohttp 3.14 adapter): shape one exact answer, no network."""
    mocked = Aiohttp314Mock()
    with mocked:
        yield mocked
