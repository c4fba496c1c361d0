"""This process's side of a bucket kept elsewhere (`RedisLimiter`): who may book next,
and when each booked slot is due.

The bucket counts slots in tokens: token v is due at `at + (v - av) / ar` by the anchor
(`at`, `av`, `ar`) in the bucket's clock (Redis's `TIME`). `follow()` takes the newest
anchor a reply brought and the clock offset it showed; booked slots wait in a heap by
token and one timer wakes the earliest, re-armed when a new anchor moves them. A worker
books a new slot only while its newest one (and one slot for each booking on its way) is
due within `_HORIZON`: the rest of its tasks wait in line here, first come first served.
Pure asyncio, no I/O: the limiter runs the bookings.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque

__all__ = ["Slots"]

# A worker books a new slot only while its newest one is due within this many seconds.
_HORIZON = 0.05
# Bookings one worker may have on the way to the bucket at once.
_BOOKING_AT_ONCE = 8
# A slot this close is due now (timers fire a little early or late).
_EARLY = 1e-4


class Slots:
    """One process's booked slots and its line of tasks waiting to book (module doc)."""

    def __init__(self) -> None:
        self._heard = -math.inf  # loop time of the last reply
        self._anchor = (0.0, 0.0, 1.0)  # Redis time, token due then, tokens a second
        self._anchor_time = -math.inf
        self._offset = math.inf  # loop time - Redis time, at the last reply
        self._newest = -math.inf  # the token of this worker's newest booking
        self._booking = 0  # bookings on their way to Redis
        self._line: deque[asyncio.Future[None]] = deque()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.Handle | None = None

    def loop_time(self, token: float) -> float:
        """When `token` is due, in loop time."""
        at, av, ar = self._anchor
        return at + (token - av) / ar + self._offset

    def follow(self, at: float, av: float, ar: float, server_now: float) -> None:
        """A reply: its anchor, when newer, and the clock offset it shows."""
        now = asyncio.get_running_loop().time()
        self._heard = now
        self._offset = now - server_now
        if at >= self._anchor_time:
            self._anchor, self._anchor_time = (at, av, ar), at
        self._wake()

    def turn_now(self) -> bool:
        """Take the turn to book if it is free now (no waiting)."""
        if not self._line and self._may_book(asyncio.get_running_loop().time()):
            self._booking += 1
            return True
        return False

    async def take_turn(self) -> None:
        """Return when this task may book a slot (`turn_now()` said no)."""
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        self._wake()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.end_turn(None)  # the turn came as we were cancelled: pass it on
            raise

    def end_turn(self, token: float | None) -> None:
        """A booking came back with `token` (None: it failed)."""
        self._booking -= 1
        if token is not None:
            self._newest = max(self._newest, token)
        self._wake()

    def due(self, token: float | None) -> bool:
        """Is the slot of `token` due now? (None: there is none to wait for.)"""
        now = asyncio.get_running_loop().time()
        return token is None or self.loop_time(token) <= now + _EARLY

    def waiting(self) -> bool:
        """Do tasks wait for a slot or for the turn to book one?"""
        return bool(self._sleepers or self._line)

    def stale(self, after: float) -> bool:
        """Do tasks wait while nothing was heard from Redis for `after` seconds?"""
        return self.waiting() and asyncio.get_running_loop().time() - self._heard >= after

    async def wait_for(self, token: float) -> None:
        """Return when the slot of `token` is due (`due()` said no)."""
        due = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (token, next(self._order), due))
        self._wake()
        await due

    def _may_book(self, now: float) -> bool:
        return self._booking < _BOOKING_AT_ONCE and self._book_at() <= now

    def _book_at(self) -> float:
        """When the next booking may go: this worker's newest slot (and one more slot for
        each booking on its way) is then due within the horizon."""
        if self._newest == -math.inf:
            return -math.inf
        return self.loop_time(self._newest) + self._booking / self._anchor[2] - _HORIZON

    def _wake(self) -> None:
        """Let the due sleepers go and the next in line book; arm the timer for the rest."""
        now = asyncio.get_running_loop().time()
        sleepers, line = self._sleepers, self._line
        while sleepers and self.loop_time(sleepers[0][0]) <= now + _EARLY:
            due = heapq.heappop(sleepers)[2]
            if not due.done():
                due.set_result(None)
        while line and self._may_book(now):
            turn = line.popleft()
            if not turn.done():
                self._booking += 1
                turn.set_result(None)
        self._arm(now)

    def _arm(self, now: float) -> None:
        times = []
        if self._sleepers:
            times.append(self.loop_time(self._sleepers[0][0]))
        if self._line and self._booking < _BOOKING_AT_ONCE:
            times.append(self._book_at())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if times:
            self._timer = asyncio.get_running_loop().call_at(max(now, min(times)), self._wake)
