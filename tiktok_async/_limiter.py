"""Client-side rate limit: API Gateway's token bucket, built on aiolimiter.

API Gateway throttles each key with a token bucket: the bucket holds at most `burst`
tokens, starts full and refills at `rate` tokens a second; a request takes one token or
gets 429. Any window of T seconds therefore holds at most `rate * T + burst` requests.

aiolimiter's `AsyncLimiter(max_rate, time_period)` is a leaky bucket (a meter): each
acquire pours one unit in, the bucket leaks `max_rate / time_period` units a second, and
an acquire waits while the bucket would overflow `max_rate`. With capacity `burst` and a
leak of `rate` a second that is the same envelope as the token bucket (an empty meter is
a full token bucket). The details that matter:

- With `burst=1` the bucket here is 1.5 deep, not 1. asyncio wakes timers up to about a
  millisecond late; with a bucket exactly one deep the meter runs dry during that
  lateness and the lost drain is never made up (aiolimiter's `AsyncLimiter(1, 1/r)`
  measured 5 % under `r` at 200/s here). Half a token of slack absorbs the lateness and
  can never let a whole extra request through a window whose `rate * T` is a whole
  number: the bound is `floor(rate * T + 1.5)` requests in any T-second window. The
  price: a request may follow the one before by less than `1 / rate` (by up to half of
  it, after an idle spell or a late wake-up), which a server bucket exactly one deep
  answers with 429. Against a plan of burst 1, run a little under its rate.
- With `burst >= 2` the bucket is exactly `burst` deep: a late wake-up leaves the meter
  above empty, so nothing is lost, and the client never asks before the server's bucket
  has a token (when both run the same figures).
- The adaptive rate's own bucket, 64 or more deep (6,400/s and up), is taken from a
  sixteenth at a time when that many tokens are free, and the credit handed out one a
  request (`_chunk`): an aiolimiter acquire costs a coroutine each. A fixed rate, the
  server's plan, never holds credit, so its window bound stays exact.
- `burst=1` (the default) is the smooth schedule: one request every `1 / rate` seconds.
  Above a few hundred requests a second, give a larger burst (about `rate / 100`), or
  timer lateness, not the limiter, caps the rate.

A 429 slows the whole client: `on_throttled(pause)` starts a shared cool-down, and every
`acquire()` waits it out before taking a token, so the tasks that did not get the 429 do
not keep hammering the exhausted bucket. `rate=None` means no client-side rate limit (the
cool-down still applies). `set_rate()` changes the rate at any time, also while tasks wait
(the adaptive mode drives it).

aiolimiter fixes a bucket's leak rate when it is made and has no public way to change it
(mjpieters/aiolimiter#98), so `set_rate()` swaps the bucket for a new one, using only
aiolimiter's public API (tests/test_limiter.py pins each behaviour relied on):

- the new bucket starts as full as the old one is now (the tokens carry over, as when a
  live bucket is retuned). The level is read through `has_capacity(amount)` (True while
  level + amount <= `max_rate`) by bisection, and poured into the new bucket with one
  `acquire(level)`, which has room and so returns without waiting. A bucket made smaller
  than its level keeps only its new depth: a token bucket never owes tokens.
- one task at a time waits in the bucket; the others line up behind it, first come first
  served. A swap lets the task waiting in the old bucket through (its `max_rate` set to
  infinity, then an `acquire(0)` wakes it), and `acquire()` sends a task that got
  through a bucket no longer current to queue again on the new one. So the waiting tasks
  are rescheduled at the new rate, in their order, and a swap costs the same however
  many tasks wait (the adaptive mode swaps up to a few hundred times a second).

`ConcurrencyGate` caps the attempts in flight (the client's `concurrency`).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from ._adaptive import AdaptiveRate

__all__ = ["ConcurrencyGate", "Limiter", "RateLimiter"]

# Extra depth of a one-deep bucket, in requests; see the module docstring.
_SLACK = 0.5
# The adaptive controller hears of sends and answers at most this often (seconds).
_REPORT_EVERY = 1e-3


#: The most sends and answers `_report_gate` lets go untold (a rate far above the traffic,
#: a remembered one against a slow server, holds them up to this many events).
_MAX_REPORT_GATE = 8


def _report_gate(rate: float | None) -> int:
    """Sends and answers counted before `_report` reads the clock: about a millisecond's
    worth at the rate, at most `_MAX_REPORT_GATE` (the clock is read about once in 8
    events at 8,000/s and above, not twice a request; every event at 1,000/s and below)."""
    return 1 if rate is None else max(1, min(_MAX_REPORT_GATE, int(rate * _REPORT_EVERY)))
# The adaptive bucket depth from which tokens are taken a sixteenth of it at a time.
_CHUNKED_FROM = 64
# Cool-down after a 429 when the caller gives none and there is no rate to derive it from.
_DEFAULT_PAUSE = 0.5
# A swapped bucket's level carries over to within this many seconds of drain, erring
# full (reading it takes about 20 steps of half a microsecond each).
_CARRY_SECONDS = 1e-6


class Limiter(Protocol):
    """What `TikTokClient` asks of a rate limiter (`TikTokClient(..., limiter=...)`).

    `RateLimiter` is the one-process implementation; `RedisLimiter` shares one bucket
    between processes and hosts. The client calls `acquire()` before every attempt
    unless `free` is True, then `on_success()` for any answer but a 429,
    `on_rate_limited()` for a 429 `Too Many Requests`, and `on_throttled(wait)` when it
    retries after a 429 (the retry's wait, so the limiter can hold everyone back). A
    limiter that also has a method `on_round_trip(seconds)` is told, after `on_success()`
    for a 200, how long that answer took (`RedisLimiter`'s shared slow start paces itself
    by it; a 404 or a fault answered at once says nothing of how long a fetch takes).
    """

    #: True while `acquire()` has nothing to do: the client's hot path skips the call.
    free: bool

    @property
    def rate(self) -> float | None:
        """Requests a second now, or None for no limit."""
        ...

    @property
    def queued(self) -> bool:
        """True while tasks wait for the rate (it, not concurrency, holds them back)."""
        ...

    async def acquire(self) -> None:
        """Return when the next attempt may be sent."""
        ...

    def on_success(self) -> None:
        """An attempt got an answer that was not a 429."""
        ...

    def on_rate_limited(self) -> None:
        """An attempt got 429 `Too Many Requests`."""
        ...

    def on_throttled(self, pause: float | None = None) -> None:
        """A 429 is being retried after `pause` seconds."""
        ...


class RateLimiter:
    """API Gateway's token bucket (`rate` a second, `burst` deep, starts full) for one client.

    `acquire()` before every attempt; it returns when a token is free and no 429
    cool-down is running. Make it inside the running event loop.
    """

    __slots__ = (
        "_adaptive", "_base_burst", "_bucket", "_burst", "_busy", "_clock", "_credit", "_line",
        "_rate", "_report_at", "_report_gate", "_resume_at", "_timed", "_unreported_ok",
        "_unreported_sent", "free",
    )

    def __init__(
        self, rate: float | None = None, burst: int = 1, *, adaptive: AdaptiveRate | None = None
    ) -> None:
        _check_burst(burst)
        self._adaptive = adaptive
        self._base_burst = burst
        if adaptive is not None:
            rate, burst = adaptive.rate, _adaptive_burst(adaptive.rate, burst)
        self._burst = burst
        self._rate = _checked_rate(rate)
        self._bucket = None if self._rate is None else _new_bucket(self._rate, burst)
        # Adaptive, at high rates: tokens taken from the bucket a few at a time (`_chunk` of
        # them when that many are free) and handed out one a request, since aiolimiter's
        # acquire costs a coroutine and a StopIteration each (see `_chunk`).
        self._credit = 0
        self._resume_at = 0.0  # loop time until which the 429 cool-down runs; 0 = none
        # One task at a time waits in the bucket (so a swap moves one); the rest line up.
        self._busy = False
        self._line: deque[asyncio.Future[bool]] = deque()
        # Sends and good answers not yet told to the adaptive controller (see `_report`).
        self._unreported_sent = self._unreported_ok = 0
        self._report_at = -math.inf  # the controller is told again from this loop time on
        self._report_gate = _report_gate(self._rate)  # events counted before a clock read
        self._clock: Callable[[], float] | None = None  # the running loop's `time`
        # Whether the controller wants a good answer's send time (see `answered`).
        self._timed = adaptive is not None and adaptive.wants_send_times
        #: True while `acquire()` would return at once with nothing to do (no rate, no
        #: cool-down): the hot path reads it to skip the call.
        self.free = self._bucket is None

    @property
    def rate(self) -> float | None:
        """Requests a second, or None for no client-side limit."""
        return self._rate

    @property
    def burst(self) -> int:
        """Requests that may go at once after an idle spell (the token bucket's size)."""
        return self._burst

    @property
    def queued(self) -> bool:
        """True while tasks wait for a token (the rate holds them back)."""
        return self._busy

    @property
    def cooling_down(self) -> bool:
        """True while a 429 cool-down holds every acquire back."""
        return self._resume_at > asyncio.get_running_loop().time()

    def try_acquire(self) -> bool:
        """Take a token now if `acquire()` would return at once with one (a token free, no
        cool-down, nobody waiting): the client's hot path, without a coroutine. False:
        nothing was taken, await `acquire()`."""
        if self._resume_at or self._busy:
            return False
        if self._credit:
            self._credit -= 1
        elif not self._take():
            return False
        self._sent()
        return True

    def _take(self) -> bool:
        """Take one token for now, and up to `_chunk - 1` more as credit when that many are
        free; False (nothing taken) when none is free."""
        bucket = self._bucket
        if bucket is None:
            return False
        chunk = _chunk(self._burst, self._adaptive)
        if chunk > 1 and bucket.has_capacity(chunk):
            _at_once(bucket.acquire(chunk))
            self._credit = chunk - 1
            return True
        return _take_free(bucket)

    async def acquire(self) -> None:
        """Wait out any 429 cool-down, then take one token (returns at once when free)."""
        if self._resume_at:
            await self._wait_cooldown()
        bucket = self._bucket
        if bucket is None or self.try_acquire():  # no rate, credit, or a token free now
            return
        if self._busy:  # another task waits in the bucket: line up behind it
            if await self._line_up():
                self._sent()  # the task before us took a token for us
                return
            bucket = self._bucket
        else:
            self._busy = True
        try:
            while bucket is not None:
                await bucket.acquire()
                if bucket is self._bucket:
                    if self._resume_at:
                        await self._wait_cooldown()
                    self._sent()
                    return
                bucket = self._bucket  # swapped by set_rate() while this task waited
        finally:
            if self._line:
                self._pass_turn()
            else:
                self._busy = False

    @property
    def adaptive(self) -> AdaptiveRate | None:
        """The controller that sets the rate from answers, when the rate is adaptive."""
        return self._adaptive

    def set_rate(self, rate: float | None, burst: int | None = None) -> None:
        """Change the rate (and the bucket's size) now; tasks already waiting are
        rescheduled at the new rate."""
        rate = _checked_rate(rate)
        if burst is not None:
            _check_burst(burst)
        burst = self._burst if burst is None else burst
        if rate == self._rate and burst == self._burst:
            return
        if rate is None or (self._rate is not None and rate < self._rate):
            self._credit = 0  # taken at the old rate: not spent after a cut
        self._rate, self._burst = rate, burst
        self._report_gate = _report_gate(rate)
        old = self._bucket
        self._bucket = None if rate is None else _new_bucket(rate, burst, old)
        if old is not None:
            _release(old)  # its waiters queue again on the new bucket (acquire)
        self._update_free()

    def on_throttled(self, pause: float | None = None) -> None:
        """A 429 came back: hold every acquire for `pause` seconds from now.

        Without `pause`, the time the bucket needs to refill (`burst / rate`), or half a
        second when there is no rate. A running cool-down is extended, never shortened.
        In the adaptive mode the rate cut is the slow-down (`on_rate_limited`): pausing
        every task on top of it would starve a rate the controller has just measured.
        """
        if self._adaptive is not None:
            return
        if pause is None:
            pause = _DEFAULT_PAUSE if self._rate is None else self._burst / self._rate
        if pause > 0:
            self._hold_until(asyncio.get_running_loop().time() + pause)

    def _hold_until(self, resume_at: float) -> None:
        """Hold every acquire until `resume_at` (loop time): a running cool-down is
        extended, never shortened."""
        if resume_at > self._resume_at:
            self._resume_at, self.free = resume_at, False

    def on_success(self, sent_at: float | None = None, round_trip: bool = True) -> None:
        """An attempt got an answer that was not a 429: the adaptive rate may grow.
        `sent_at`: when the attempt went out (the loop's clock), as for `on_rate_limited`.
        `round_trip`: False when the answer's time says nothing of how fast the server
        does its work (a 404 or a fault answered at once, while a fetch takes seconds)."""
        adaptive = self._adaptive
        if adaptive is None or (sent_at is not None and adaptive.sent_before_measuring(sent_at)):
            return
        if round_trip and sent_at is not None and adaptive.wants_round_trips:
            adaptive.on_round_trip(self._now() - sent_at)
            self._timed = adaptive.wants_send_times
        self._unreported_ok += 1
        if self._unreported_ok + self._unreported_sent >= self._report_gate:
            self._report()

    def answered(self, seconds: float, round_trip: bool = True) -> None:
        """`on_success` for an answer that came `seconds` after its attempt went out (the
        client's call): the send time is worked out only while the controller wants it
        (its first round trips, and after slow start), not on every answer."""
        if self._adaptive is None:
            return
        if self._timed:
            self.on_success(self._now() - seconds, round_trip)
            return
        self._unreported_ok += 1
        if self._unreported_ok + self._unreported_sent >= self._report_gate:
            self._report()

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            clock = self._clock = asyncio.get_running_loop().time
        return clock()

    def _sent(self) -> None:
        if self._adaptive is not None:
            self._unreported_sent += 1
            if self._unreported_ok + self._unreported_sent >= self._report_gate:
                self._report()

    def on_rate_limited(self, sent_at: float | None = None, sent_after: int = 0) -> None:
        """An attempt got 429 `Too Many Requests` (not a quota's `Limit Exceeded`):
        the adaptive rate comes down (at once, with the counts not yet told). `sent_at`:
        when the attempt went out (the loop's clock), and `sent_after`: the attempts sent
        since (the bucket was empty when it arrived; a stalled loop reads its 429 late).
        After slow start, an answer to an attempt sent before the adaptive rate began
        measuring (its last cut and the settling after it) is not told: that cut
        already answered it."""
        adaptive = self._adaptive
        if adaptive is None or (sent_at is not None and adaptive.sent_before_measuring(sent_at)):
            return
        self._report(throttled=1, empty_at=sent_at, sent_after=sent_after)

    def _report(self, throttled: int = 0, empty_at: float | None = None,
                sent_after: int = 0) -> None:
        """Tell the controller the sends and answers counted since the last report, at
        most once every `_REPORT_EVERY` s unless a 429 came: its rules work on counts
        over tenths of a second (the shared limiter reports every 20 ms), and a report
        per request cost about 2 us of a bulk run's CPU per input."""
        adaptive = self._adaptive
        now = self._now()
        if adaptive is None or (not throttled and now < self._report_at):
            return
        ok, sent = self._unreported_ok, self._unreported_sent
        self._unreported_ok = self._unreported_sent = 0
        self._report_at = now + _REPORT_EVERY
        self._follow(adaptive.on_answers(now, ok, throttled, sent, empty_at=empty_at,
                                         sent_after=sent_after))
        self._timed = adaptive.wants_send_times
        if adaptive.state.paused_until > now:  # a quick start's first 429 (`_adaptive`)
            self._hold_until(adaptive.state.paused_until)

    def stop_adapting(self) -> None:
        """Keep the rate where it is from now on, whatever the answers."""
        self._adaptive = None
        self._credit = 0  # a fixed rate is exact: no credit carried into it

    def start_adapting(self, adaptive: AdaptiveRate) -> None:
        """Let `adaptive` set the rate from now on, starting at its rate."""
        self._adaptive = adaptive
        self._timed = adaptive.wants_send_times
        self._unreported_ok = self._unreported_sent = 0  # counted for another controller
        self._follow(adaptive.rate)

    def _follow(self, rate: float) -> None:
        if rate != self._rate:
            self.set_rate(rate, _adaptive_burst(rate, self._base_burst))

    async def _line_up(self) -> bool:
        """Wait (FIFO) until the task in the bucket hands this one its turn (False) or a
        token it took for it (True)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._line.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and not waiter.result():
                self._pass_turn()  # the turn came as we were cancelled: pass it on
            raise

    def _pass_turn(self) -> None:
        """Hand the tokens free now to the first in line at once, then the turn to wait
        in the bucket to the next: a grant need not wait a turn of a busy loop each."""
        line, bucket = self._line, self._bucket
        while line:
            waiter = line.popleft()
            if waiter.done():
                continue
            if _take_free(bucket):
                waiter.set_result(True)
                continue
            waiter.set_result(False)
            return
        self._busy = False

    async def _wait_cooldown(self) -> None:
        loop = asyncio.get_running_loop()
        # Not an Event: the deadline can move later while we sleep, so sleep and re-check.
        while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        self._resume_at = 0.0
        self._update_free()

    def _update_free(self) -> None:
        self.free = self._bucket is None and not self._resume_at

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate!r}, burst={self._burst!r})"


class ConcurrencyGate:
    """At most `limit` holders at once, first come first served: `asyncio.Semaphore`'s job.

    The hot path is synchronous: `if not gate.try_enter(): await gate.enter()`, then
    `gate.leave()` in a `finally`. Uncontended that costs a tenth of `async with
    Semaphore` (which builds a generator in `locked()` on every acquire). A freed slot is
    handed straight to the first waiter, so a newcomer can never overtake a waiting task.
    """

    __slots__ = ("_free", "_waiters", "limit")

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, not {limit!r}")
        #: Holders allowed at once: read it, `resize` changes it (an attribute, not a
        #: property: the bulk path reads it once an answer, and a call costs there).
        self.limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    def resize(self, limit: int) -> None:
        """Let `limit` hold slots from now on: waiters are let in at once when it grew;
        when it shrank, holders keep theirs and nobody enters until enough have left."""
        grown = limit - self.limit
        self.limit = limit
        for _ in range(max(0, grown)):
            self.leave()  # a slot more: to the first waiter, or free
        if grown < 0:
            self._free += grown

    def try_enter(self) -> bool:
        """Take a slot if one is free now; never waits."""
        if self._free > 0:
            self._free -= 1
            return True
        return False

    async def enter(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Wait for a slot (FIFO). Cancelled while waiting: no slot is kept. `loop`: the
        running loop, when the caller has it (on Python 3.11 asking is a system call)."""
        if self.try_enter():
            return
        waiter = (loop or asyncio.get_running_loop()).create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # the slot came as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        """Give the slot back, to the first task still waiting if there is one (none when
        the gate shrank below its holders: the slot is gone)."""
        if self._free < 0:
            self._free += 1
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    @property
    def free(self) -> int:
        """Slots free right now."""
        return self._free

    @property
    def held(self) -> int:
        """Slots held right now."""
        return self.limit - self._free


def _check_burst(burst: int) -> None:
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be a whole number >= 1, not {burst!r}")


def _checked_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ValueError(f"rate must be a number of requests a second or None, not {rate!r}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive, finite number, not {rate!r}")
    return float(rate)


def _capacity(burst: int) -> float:
    return burst + _SLACK if burst == 1 else float(burst)


def _new_bucket(rate: float, burst: int, old: AsyncLimiter | None = None) -> AsyncLimiter:
    """A bucket leaking `rate` a second, as full as `old` is now (at most its own depth)."""
    capacity = _capacity(burst)
    bucket = AsyncLimiter(capacity, capacity / rate)
    if old is not None:
        old_rate = old.max_rate / old.time_period
        level = _level(old, precision=_CARRY_SECONDS * min(rate, old_rate))
        if level > 0:
            _at_once(bucket.acquire(min(level, capacity)))
    return bucket


def _chunk(burst: int, adaptive: AdaptiveRate | None) -> int:
    """Tokens taken at once when free. 1 (exact) but for the adaptive rate's own bucket
    64 or more deep (a rate of 6,400/s or more, above the quotas the goodput grid runs):
    a sixteenth of it. Credit held while the bucket refills lets a window hold up to that
    many requests more than `rate * T + burst`: a fixed rate is the server's plan and
    stays exact; the adaptive bucket is only our pacing, a hundredth of a second deep,
    and a sixteenth of it is 0.6 ms of the rate."""
    return burst // 16 if adaptive is not None and burst >= _CHUNKED_FROM else 1


def _adaptive_burst(rate: float, base_burst: int) -> int:
    """The bucket's size at an adaptive `rate`: a hundredth of a second's worth, at least
    `base_burst`, so that late timer wake-ups do not cap a high rate (module docstring)."""
    return max(base_burst, int(rate / 100))


def _level(bucket: AsyncLimiter, precision: float) -> float:
    """How full `bucket` is now, from 0 (every token free) to its `max_rate` (none free),
    read through `has_capacity(amount)` alone (True while level + amount <= max_rate) by
    bisection: the answer is at most `precision` above the level, never below it."""
    depth = bucket.max_rate
    if bucket.has_capacity(depth):
        return 0.0
    low, high = 0.0, depth  # the level is in (low, high]
    while high - low > precision:
        middle = (low + high) / 2
        if bucket.has_capacity(depth - middle):
            high = middle
        else:
            low = middle
    return high


def _release(bucket: AsyncLimiter) -> None:
    """Let every task waiting in `bucket` through: a bottomless bucket has room for all,
    and an acquire of nothing wakes the first waiter, which wakes the next, and so on."""
    bucket.max_rate = math.inf
    _at_once(bucket.acquire(0))


def _take_free(bucket: AsyncLimiter | None) -> bool:
    """Take a token from `bucket` if one is free now (True); never waits."""
    if bucket is None or not bucket.has_capacity():
        return False
    _at_once(bucket.acquire())
    return True


def _at_once(acquire: Coroutine[Any, Any, None]) -> None:
    """Run an aiolimiter `acquire()` that has room: it returns without waiting."""
    try:
        acquire.send(None)
    except StopIteration:
        return
    acquire.close()
    raise RuntimeError("aiolimiter's acquire() waited although the bucket had room")
