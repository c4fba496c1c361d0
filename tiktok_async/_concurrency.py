"""How many requests a bulk run keeps in flight: found from the answers, not guessed.

Little's law: requests in flight = rate x latency. A run allowed Q requests a second
against an API that answers in W seconds needs Q x W of them in flight: 10 for 200/s at
50 ms, but 3,000 for 1,000/s at 3 s (the service's first fetch of a user it has not
seen). A fixed cap is wrong one way or the other: too low and the quota is never
reached (64 in flight at 2 s latency is 32 requests a second, whatever the quota), too
high and a server that queues is buried.

`AdaptiveConcurrency` is the bulk layer's limit on inputs worked on at once. It is pure:
the caller passes the clock (`now`, seconds on a monotonic clock) and tells it what
happened. The rules (the constants are the module's):

1. **Grow while the limit is what holds the run back**: at a tick (every `TICK` s) every
   worker is busy (`busy >= limit`) and no task is queued for a rate token (the limiter
   has tokens to spare). Slow start: x2 a tick until the first
   cut, then x1.25 a tick (found again in seconds after a cut, not in round trips: a
   round trip can be 3 s long). When answers come back within a tick, a growth must
   show: if the next tick brings fewer than `PLATEAU_GAIN` x the answers a second of the
   tick before it, the server (or this process's CPU) is the limit and more in flight
   would only queue: the growth is undone and growth waits `PLATEAU_HOLD` s. When
   answers take longer (W, the long-run mean latency, a tick or more), a growth shows
   a round trip later: the answers a second over the last W are judged against those
   over the W before, and the limits one and two round trips ago (`_round_trip_paid`).
   If the limit grew between those two and the answers did not grow by `PLATEAU_GAIN`,
   a server that queues took the growth (its workers, not our requests in flight, set
   its pace): the limit goes back to where it was two round trips ago and growth waits
   2 W (at least `PLATEAU_HOLD` s). A server that answers in parallel, however slowly
   (3 s, or median 1.5 s and p99 10 s), brings more answers with each growth, a round
   trip late, and is never judged so. Once a queue took a growth, growth is paced until
   one pays again: one at a time, each waiting a round trip to be judged. And no growth
   while more are in flight than twice the limit (the requests of a limit just undone,
   still queued at the server).
   Measured before this (a queue of 8 workers x 200 ms, 600 new users, no rate limit):
   the limit grew to 1,024 and the answers' p95 was 13 s; simulated with 3,000 users, it
   reached 4,096 and a p95 of 27-36 s, about to time out. Still blind: slow start's
   first round trip (it doubles a tick before any answer comes back: a queue of 1 s a
   request is sent about 2^8 x 16 before the first judgment).
2. **Shrink when latency climbs with the number in flight** (queueing at the server, as
   TCP Vegas and Netflix's gradient limiter read it): the mean latency of the last
   answers (`SHORT` of them) above `QUEUE_FACTOR` x the base, the lowest long-run mean
   (`LONG` answers) seen, cuts x`QUEUE_CUT`. One round trip later the cut is checked: if
   latency did not fall with it (`PROBE_DROP`), the rise was not queueing but slower
   answers (cached users, then unseen ones that are fetched first): the cut is undone
   and the base moves up to the new latency. A heavy-tailed but steady latency (median
   1-2 s, p99 10 s) keeps the short mean within a few tenths of the base: no cut.
   This rule stops at `QUEUE_FLOOR` in flight (the overload rules below may go lower):
   it cannot tell a queue at the server from this process's own, and a client at full
   speed on cached answers waits mostly on its own event loop; a stall there (a
   collection, the machine busy) delays every answer in flight, then ends whatever the
   limit did, so its cut looked like a queue that drained and was kept. Traced in the
   bulk benchmark: stall after stall, the limit went down to 4-5 in flight, and the run
   to 0.60x the bare loop's answers a second (64 fixed: 0.81x). Against a server that
   queues, this rule alone takes the limit no lower than 16 (a fixed client sent 64).
3. **Shrink on overload answers**: a 429 Too Many Requests cuts x`OVERLOAD_CUT`, at most
   once a second (the adaptive rate does the main work on 429s); so does a 5xx while 5xx
   are at least `OVERLOAD_SHARE` of the recent answers (a mean over about `SHORT`). A
   backend that fails a few requests at random (a flaky upstream, a bad node behind the
   balancer) is not overloaded: fewer in flight would not make it fail less, and the
   retries, each backing off, would set the pace. A server shedding load, or down,
   answers most requests so (Google SRE's client-side throttling likewise lets up to
   half the requests be refused before it holds back).
4. Within [`floor`, `ceiling`]; the ceiling is the user's `concurrency` (or the default,
   lowered to what the open-file limit allows). With a client-side rate, growth also
   stops at `LITTLE_HEADROOM` x rate x the long-run mean latency: more in flight than
   the rate can use would only wait for tokens.
5. **A worker backing off before a retry is not in flight**: it holds its input but no
   request (Little's law counts requests on the wire). The limit is on requests; the
   bulk pool gets one more worker for each input backing off, up to `BACKOFF_ROOM` x
   the limit (`workers()`), so a backend failing a share of requests at random does not
   leave the wire idle while retries wait. The room is bounded so that a server down
   for good (every input failing, then waiting) gets few requests: its fresh inputs
   wait for a sleeper to finish. The room is there at the ceiling too, within the bulk
   run's window of twice the ceiling (the client's slots keep requests to the ceiling),
   and for a fixed limit (`adaptive_concurrency=False`): under 5 % of answers a 5xx, a
   fixed 64 whose sleepers held its workers did 769 answers a second, the defaults 1,337.

6. **An input ready for each slot.** A bulk run keeps up to `SPARE` x the limit (at most
   `MAX_SPARE`) more workers than requests it may have in flight (the room for inputs
   backing off counts toward them): each has taken its input and waits for a slot, so a
   slot that frees is used at once. A run's own gate (`RunStop.gate`, sized to the limit)
   holds its requests to the limit, and the client's slots to the ceiling (a fixed limit:
   the client's slots alone). Measured on cached users, paired: the fixed client 1.19x ->
   1.09x the bare loop's CPU a request, the defaults 1.26x -> 1.17x (requests/s 0.84x ->
   0.92x and 0.79x -> 0.85x); a worker that took its next input only after its answer left
   its slot idle meanwhile.

`held_back` counts the seconds the run was saturated at the ceiling with tokens to
spare: concurrency, not the rate, held it back (the command line's summary says so).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["AdaptiveConcurrency", "workers"]

TICK = 0.25
START = 16
FLOOR = 4
GROW_SLOW_START = 2.0
GROW_AFTER = 1.25
SHORT = 32
LONG = 256
QUEUE_FACTOR = 3.0
QUEUE_FLOOR = START
QUEUE_CUT = 0.8
PROBE_DROP = 0.9
OVERLOAD_CUT = 0.9
OVERLOAD_EVERY = 1.0
OVERLOAD_SHARE = 0.2
# A share of failing answers this small counts as none.
NEGLIGIBLE = 1e-9
LITTLE_HEADROOM = 2.0
PLATEAU_GAIN = 1.1
PLATEAU_HOLD = 2.0
BACKOFF_ROOM = 4
# Workers beside the limit a bulk run keeps at least, as a share of it (rule 6), and at
# most (thousands of idle tasks at a limit of thousands only feed the collector).
SPARE = 1
MAX_SPARE = 64
# Answers before the latency means are trusted for the queueing rule.
WARM_UP = LONG
# Ticks remembered for `_round_trip_paid` (two round trips of up to a minute).
HISTORY = 512
# Answers in the earlier round trip below which `_round_trip_paid` does not judge.
JUDGED_AFTER = 8


def workers(limit: int, backing_off: int) -> int:
    """Workers a bulk run may have while `backing_off` of them wait before a retry: the
    `limit` on requests, and beside it room for those (rule 5), at least `SPARE` x the
    limit, up to `MAX_SPARE` (rule 6). A fixed limit gets the same."""
    return limit + max(min(SPARE * limit, MAX_SPARE), min(backing_off, BACKOFF_ROOM * limit))


class AdaptiveConcurrency:
    """The limit on inputs in flight; see the module docstring for the rules."""

    __slots__ = ("_answers", "_answers_then", "_base", "_cut_at", "_failing", "_grown",
                 "_history", "_hold_until", "_last_tick", "_long", "_overload_at", "_paced",
                 "_probe", "_short", "_slow_start", "ceiling", "floor", "held_back", "limit",
                 "next_tick")

    def __init__(self, ceiling: int, *, start: int = START, floor: int = FLOOR) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, not {ceiling!r}")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = max(self.floor, min(start, ceiling))
        self.held_back = 0.0
        self._slow_start = True
        self._last_tick: float | None = None
        #: From when `tick` judges the limit again; before it, `tick` returns the limit as
        #: is (the bulk path reads this once an input and skips gathering its arguments).
        self.next_tick = -math.inf
        self._short = self._long = 0.0  # exponential means of latency, seconds
        self._base = math.inf  # the lowest long-run mean: latency without a queue
        self._answers = 0
        self._failing = 0.0  # mean of "was a 5xx" over about the last SHORT answers
        self._cut_at = self._overload_at = -math.inf
        self._probe: tuple[int, float] | None = None  # (limit before, short mean) at a cut
        self._answers_then = 0  # `_answers` at the last tick
        self._grown: tuple[int, float] | None = None  # (limit, answers/s) before a growth
        self._hold_until = -math.inf
        # (time, limit, answers so far) at each tick, for `_round_trip_paid`
        self._history: deque[tuple[float, int, int]] = deque(maxlen=HISTORY)
        self._paced = False  # a queue took a growth: one growth a round trip, each judged

    def on_answer(self, now: float, seconds: float, status: int) -> None:
        """An attempt got an answer with `status` after `seconds`."""
        if status >= 500:
            self._failing += (1.0 - self._failing) / SHORT
            if self._failing >= OVERLOAD_SHARE:
                self._overloaded(now)
            return
        failing = self._failing
        if failing:  # decays towards 0; snapped there (floats that small are slow)
            self._failing = failing - failing / SHORT if failing > NEGLIGIBLE else 0.0
        if status == 429:
            self._overloaded(now)
            return
        answers = self._answers = self._answers + 1
        if answers == 1:
            self._short = self._long = seconds
            return
        short = self._short = self._short + (seconds - self._short) / SHORT
        long = self._long = self._long + (seconds - self._long) / min(answers, LONG)
        if answers >= WARM_UP:
            if long < self._base:
                self._base = long
            if self._probe is not None or short > QUEUE_FACTOR * self._base:
                self._check_queueing(now)  # a cut to judge, or one to make

    def tick(self, now: float, busy: int, rate: float | None = None, *,
             queued: bool = False) -> int:
        """The limit now, given `busy` workers, the client-side `rate` (None or inf: no
        limit) and whether tasks are `queued` for it; grows at most once every `TICK` s."""
        last = self._last_tick
        if last is None:
            self._last_tick, self.next_tick = now, now + TICK
            self._history.append((now, self.limit, self._answers))
        elif now >= self.next_tick:
            self._last_tick, self.next_tick = now, now + TICK
            answered = self._answered_per_second(now - last)
            trip_ago = self._at(now - self._long)  # the tick a round trip ago, if kept
            paid = self._growth_paid(now, answered) and self._round_trip_paid(now, trip_ago)
            # Saturated, and not by the requests of a limit just lowered (still queued).
            if (paid and self.limit <= busy <= 2 * self.limit and not queued
                    and not self._unjudged_growth(trip_ago)):
                before = self.limit
                self._grow(now - last, self._little_cap(rate))
                self._grown = (before, answered) if self.limit > before else None
            self._history.append((now, self.limit, self._answers))
        return self.limit

    def _answered_per_second(self, elapsed: float) -> float:
        count, self._answers_then = self._answers - self._answers_then, self._answers
        return count / elapsed

    def _growth_paid(self, now: float, answered: float) -> bool:
        """Undo the last growth if it brought no more answers a second (when answers come
        back within a tick, so that it would show); False while growth waits after that."""
        grown, self._grown = self._grown, None
        if grown is not None and self._long < TICK:
            limit_before, answered_before = grown
            if answered < PLATEAU_GAIN * answered_before:
                self.limit = max(self.floor, min(self.limit, limit_before))
                self._hold_until = now + PLATEAU_HOLD
        return now >= self._hold_until

    def _round_trip_paid(self, now: float, grown_at: tuple[float, int, int] | None) -> bool:
        """When answers take a tick or more: undo a growth that brought no more answers a
        round trip later (rule 1; `grown_at`: the tick a round trip ago); False while
        growth waits after that."""
        trip = self._long
        if trip >= TICK and grown_at is not None:
            before = self._at(grown_at[0] - trip)
            if before is not None and grown_at[1] > before[1]:
                self._judge_round_trip(now, trip, before, grown_at)
        return now >= self._hold_until

    def _judge_round_trip(self, now: float, trip: float, before: tuple[float, int, int],
                          grown_at: tuple[float, int, int]) -> None:
        earlier = grown_at[2] - before[2]
        if earlier < JUDGED_AFTER:
            return  # too few answers to tell a queue from chance
        recent_per_s = (self._answers - grown_at[2]) / (now - grown_at[0])
        self._paced = recent_per_s < PLATEAU_GAIN * earlier / (grown_at[0] - before[0])
        if self._paced:
            self.limit = max(self.floor, min(self.limit, before[1]))
            self._slow_start = False
            self._hold_until = now + max(PLATEAU_HOLD, 2 * trip)
            self._history.clear()

    def _unjudged_growth(self, trip_ago: tuple[float, int, int] | None) -> bool:
        """Once a queue took a growth (until a growth pays again): whether the limit grew
        since `trip_ago` (the tick a round trip ago), too late to show yet. Growing a
        quarter a tick, the limit went from 32 to 380 in the two round trips a judgment
        waits (traced)."""
        if not self._paced:
            return False
        return trip_ago is None or trip_ago[1] < self.limit

    def _at(self, when: float) -> tuple[float, int, int] | None:
        """The last tick at or before `when` (None: none that old is remembered)."""
        found = None
        for entry in self._history:
            if entry[0] > when:
                break
            found = entry
        return found

    def _little_cap(self, rate: float | None) -> int:
        """The most in flight `rate` can use (Little's law, with headroom)."""
        if rate is None or math.isinf(rate) or not self._answers:
            return self.ceiling
        return max(self.floor, math.ceil(LITTLE_HEADROOM * rate * self._long))

    def _grow(self, elapsed: float, cap: int) -> None:
        if self.limit >= self.ceiling:
            self.held_back += elapsed
            return
        factor = GROW_SLOW_START if self._slow_start else GROW_AFTER
        grown = max(self.limit + 1, math.ceil(self.limit * factor))
        self.limit = max(self.limit, min(self.ceiling, cap, grown))

    def _check_queueing(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            if now - self._cut_at >= self._short:  # a round trip after the cut: judge it
                self._probe = None
                self._judge_cut(*probe)
            return
        if self._short > QUEUE_FACTOR * self._base:
            self._probe = (self.limit, self._short)
            self._cut(now, QUEUE_CUT, floor=max(self.floor, min(QUEUE_FLOOR, self.limit)))

    def _judge_cut(self, limit_before: int, short_then: float) -> None:
        if self._short > PROBE_DROP * short_then:  # latency did not follow the cut down
            self._base = self._long = self._short
            self.limit = max(self.limit, limit_before)

    def _overloaded(self, now: float) -> None:
        if now - self._overload_at >= OVERLOAD_EVERY:
            self._overload_at = now
            self._cut(now, OVERLOAD_CUT)

    def _cut(self, now: float, factor: float, floor: int | None = None) -> None:
        self._slow_start = False
        self._cut_at = now
        self.limit = max(self.floor if floor is None else floor, math.floor(self.limit * factor))
