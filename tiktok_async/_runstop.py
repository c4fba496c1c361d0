"""A bulk run's stop signal, seen by the client and the retry layer in that run's tasks.

When an answer stops a bulk run (a bad key, a used-up quota, a wrong base URL, a host
that never answered, a `Retry-After` beyond the policy), no request may start after it:
requests already on the wire settle, but a task still waiting for a concurrency slot or
a rate token, or backing off before a retry, must not send. The bulk layer makes one
`RunStop` per run and puts it in a context variable inside each of the run's worker tasks
(a task's context is its own copy, so runs side by side never see each other's); the
client checks it right before sending, and the retry layer does not retry, and wakes
from its backoff sleep, once it is set.

It is also the run's circuit breaker: while no request of the client has ever been
answered, failures to reach the host (`UNREACHED`: connections refused or failing, or
requests timing out before any answer: a host that accepts and never answers) that go
on for `BREAKER_SECONDS` (at least `BREAKER_FAILURES` of them) stop the run: the host
is not there, and retrying every input against it would take hours.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConnectError, RequestTimeoutError, TikTokError

if TYPE_CHECKING:
    from ._limiter import ConcurrencyGate

T = TypeVar("T")


class NotSentError(TikTokError):
    """The request was not sent: the bulk run it belongs to had already stopped."""


class RunInterrupted(TikTokError):
    """The caller stopped the run (the command line's Ctrl-C): not an answer's doing."""


BREAKER_SECONDS = 5.0
BREAKER_FAILURES = 5
#: Errors that, while nothing was ever answered, say the host is not there.
UNREACHED: tuple[type[TikTokError], ...] = (ConnectError, RequestTimeoutError)


class CutShort:
    """Tasks in a wait that another task may cut short (`cut`), or that may outlast a
    deadline (`expire`): each is cancelled, and the task, catching the `CancelledError`,
    asks `cut_reason` (or `was_cut`) whether that cancel was ours. If so the cancel is
    taken back (its caller cancelled nothing) and the task raises an error of its own
    instead; else the cancel is its caller's, and goes on."""

    __slots__ = ("_cut", "_waiting")

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Task[Any], float] = {}  # task -> its deadline
        self._cut: dict[asyncio.Task[Any], str] = {}  # task -> why it was cancelled

    def enter(self, task: asyncio.Task[Any] | None, deadline: float = math.inf) -> None:
        """`task` waits now, until `deadline` at most (on the clock `expire` is given);
        None, outside a task: nothing to cut."""
        if task is not None:
            self._waiting[task] = deadline

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        """`task` waits no more (a cut it did not ask about is forgotten)."""
        self._waiting.pop(task, None)  # type: ignore[arg-type]
        if self._cut:
            self._cut.pop(task, None)  # type: ignore[arg-type]

    def cut(self, reason: str = "cut") -> None:
        """Cancel every task waiting."""
        for task in self._waiting:
            self._cancel(task, reason)

    def expire(self, now: float, reason: str = "expired") -> float:
        """Cancel every task waiting whose deadline is `now` or before; the earliest
        deadline of the others (inf: none)."""
        earliest = math.inf
        for task, deadline in self._waiting.items():
            if deadline <= now:
                if task not in self._cut:
                    self._cancel(task, reason)
            elif deadline < earliest:
                earliest = deadline
        return earliest

    def _cancel(self, task: asyncio.Task[Any], reason: str) -> None:
        self._cut[task] = reason
        task.cancel()

    def was_cut(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether `cut` or `expire` cancelled `task` and nobody else did (`cut_reason`)."""
        return self.cut_reason(task) is not None

    def cut_reason(self, task: asyncio.Task[Any] | None) -> str | None:
        """Why `cut` or `expire` cancelled `task`, if one did and nobody else did; that
        cancel is then taken back. Cancelled by someone else too (in the same turn: the
        bulk pool closing as the run stops), the cancel is theirs and goes on (None):
        taken back, the task went on as if only the cut had come, and whoever awaited its
        end waited for good."""
        if task is None:
            return None
        reason = self._cut.pop(task, None)
        if reason is None:
            return None
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+ counts cancels; 3.10 not
        return reason if uncancel is None or uncancel() == 0 else None


class RunStop:
    """The first error that stopped a run (None while it runs)."""

    __slots__ = ("_failures", "_first_failure", "_loop", "_sleepers", "_waiting", "backing_off",
                 "error", "gate")

    def __init__(self) -> None:
        self.error: TikTokError | None = None
        #: The run's own cap on requests in flight, when its limit is adaptive (the client
        #: takes a slot of it for each attempt of the run; its pool keeps more workers).
        self.gate: ConcurrencyGate | None = None
        #: Tasks of the run sleeping before a retry: they hold an input, no request.
        self.backing_off = 0
        self._sleepers: set[asyncio.Future[None]] = set()  # backoff sleeps, woken by `set`
        self._first_failure = 0.0
        self._failures = 0
        self._waiting = CutShort()
        self._loop: asyncio.AbstractEventLoop | None = None  # the run's, once it waits

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` (a slot, a rate token): cut short with `NotSentError` when the
        run stops meanwhile (the task waiting is cancelled, and that cancel is consumed)."""
        loop = self._loop
        if loop is None:  # asked once a run: on Python 3.11 each ask is a system call
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        self._waiting.enter(task)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._waiting.was_cut(task):
                raise NotSentError("not sent: the run stopped", status=None) from None
            raise
        finally:
            self._waiting.leave(task)

    def connect_failed(self, error: TikTokError, now: float) -> None:
        """A connection failed and nothing was ever answered: trip after long enough."""
        if not self._failures:
            self._first_failure = now
        self._failures += 1
        if self._failures >= BREAKER_FAILURES and now - self._first_failure >= BREAKER_SECONDS:
            self.set(error)

    def not_yet(self, _item: object = None) -> bool:
        """True while the run goes on (an `itertools.takewhile` predicate)."""
        return self.error is None

    def set(self, error: TikTokError) -> None:
        """Stop the run with `error` (the first one wins); wake every backoff sleep."""
        if self.error is None:
            self.error = error
            for sleeper in self._sleepers:
                _wake(sleeper)
            self._waiting.cut()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the run stops meanwhile.

        A future the stop or a timer resolves, not `asyncio.wait_for` on an event: before
        Python 3.12 that returned normally when its caller was cancelled in the turn the
        stop woke it, and the bulk pool closing then waited for a task that went on."""
        if self.error is not None:
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, woken)
        self._sleepers.add(woken)
        self.backing_off += 1
        try:
            await woken
        finally:
            timer.cancel()
            self._sleepers.discard(woken)
            self.backing_off -= 1


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


#: The run the current task works for; None outside a bulk run (a plain `get_user`).
CURRENT_RUN: ContextVar[RunStop | None] = ContextVar("tiktok_async_run", default=None)



def connect_failed(error: TikTokError) -> None:
    """Tell the current task's run (if any) that a connection failed before any answer."""
    run = CURRENT_RUN.get()
    if run is not None:
        run.connect_failed(error, time.monotonic())


def stopped() -> bool:
    """True when the current task's run has stopped."""
    run = CURRENT_RUN.get()
    return run is not None and run.error is not None


async def sleep(seconds: float) -> None:
    """A retry's backoff sleep: cut short when the current task's run stops."""
    run = CURRENT_RUN.get()
    if run is None:
        await asyncio.sleep(seconds)
    else:
        await run.sleep(seconds)
