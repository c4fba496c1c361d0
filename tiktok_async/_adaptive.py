"""The adaptive rate: find a request rate nobody told us, from 200s and 429s alone.

One algorithm, written down here once and run in two places: `AdaptiveRate` runs it in
process (the client's default, through `_limiter.RateLimiter`), and `lua_rules()` is the
same rules in Lua, run by `RedisLimiter(rate=None)` inside its Redis script on the state
every worker of a key shares. Both read their constants from one `Tuning` (the Lua text
is generated from it), and tests/test_adaptive_scenarios.py feeds both the same answers
and checks they take the same decisions, then drives both against one simulated token
bucket through one table of scenarios.

The server (API Gateway) meters each key with a token bucket: Q requests a second and a
burst B, neither told to the client. The controller is pure: no clock, no I/O; each call
says what happened by `now` (seconds on any monotonic clock: the loop's in process,
Redis's `TIME` when shared): `on_answers(now, ok, throttled, sent)`, with the requests
sent (a token taken and used) counted as well as the answers. Both matter because the
service answers an unseen user only after fetching it from TikTok (seconds), while a 429
comes from the gateway at once: answers of 200 lag the requests by a round trip of up to
seconds, so only the requests sent say how much of the rate is used now, and the
server let through exactly the requests sent less the 429s. The fact it rests on: while
the bucket is empty, the server lets exactly Q requests a second through, however fast
we send. The rules (the constants are `Tuning`'s):

1. **Slow start.** From `initial`, the rate doubles every `double_every` s (0.5) until
   the first 429, on the requests' clock (it need not wait for answers seconds away).
   A full bucket hides the overshoot (about 4x with B = Q), so the first cut is deep:
   x `exit_cut` (0.25).
   **Quick start**: when answers come back fast, it doubles every `rtt_doubling` (35)
   round trips instead, the shortest of the first `rtt_samples` (8) told
   (`on_round_trip`: the client tells those of 200s only; the service answers a handle
   that does not exist, or a fault, at once while a fetch takes seconds, and a quick
   start on those sent bursts of its first requests into a bucket another run had just
   emptied: 4-17 429s in the demo's second run, none before), but no faster than every
   `fastest_doubling` s (0.02), and only
   when that comes to at most `quick_limit` s (0.25: round trips of 7 ms or less; a
   server next door, or this machine). What it costs is the requests sent between the
   moment the bucket runs dry and the first 429 coming back: the rate then times a
   round trip, about ln 2 / 35 = 2% of the requests sent so far. But a bucket run dry
   this fast was full a second before, so the requests of that second already come to
   about B, and any more in the same second would pass Q + B (the bound of
   tests/test_adaptive_scenarios.py). So its first 429 pauses every request for
   `quick_pause` s (0.25) and cuts the rate to `exit_cut` x the requests let through a
   second so far (or `initial`, if more): under Q for any B up to 3Q. Answers in the
   pause are left out, and slow start goes on at the usual pace, its next first 429
   the usual exit. The requests sent are tallied every `quick_tally` (3) doublings
   instead of every `tally` s, so the rate runs no further ahead of them than
   `use_headroom` allows (in the first half second it would otherwise reach millions a
   second, a bucket that deep a burst in waiting). Against a server with no limit (the
   command line's first run on cached users) it reaches 8,000/s in about 0.3 s instead
   of 5; against a quota it costs a few tenths of a second. Longer round trips keep the
   half second: at 20 ms (the scenario table), 35 round trips is more than half a second
   anyway, and doubling faster there broke the table's rows (docs/benchmarks.md).
   `RedisLimiter` tells the shared rate the shortest round trip of each report; its
   script holds every worker through the pause.
2. **Episode.** The first 429 of an overshoot opens an episode; the bucket is empty at
   that moment. The rate is cut once; 429s in the next `settle` s (0.2: answers to
   requests sent before the cut) change nothing, and the measuring starts after them
   (`began`). Then answers are reviewed in batches of `batch` (8):
   - a batch with a 429: we are still above Q, so the bucket has stayed empty since the
     episode began, and Q = (requests sent less 429s from `began` to the last 429) / that
     time (at least 2 x `settle`): the bucket is known to be empty only when a 429 comes,
     so the window ends there, not at the review. In process it ends when that 429's
     request went out (`empty_at`, with `sent_after`, the requests sent since): a client
     that stalls (a collection of 0.1-0.3 s at 1,000/s) reads its 429s late, and counted
     to then the window took in time nobody sent in (quota 10-18% low, traced). The rate
     goes to `hold_at` (0.95) x Q, and the next batch is awaited. If the 429s stop before
     the window is long enough, the client has sent under Q since (its slots still held
     by the overshoot, traced at 0.05 s: counted up to the review, the quota came out at
     0.74 Q): the batch is clean;
   - a clean batch ends the episode.
   If the 429s since `began` outnumber the requests sent since, they answer requests
   sent before the cut (a round trip longer than `settle`): the measuring starts again
   then, lasts at least as long as that wait, and counts the 200s instead when those
   are more (late 429s of the faster requests before the cut would count against Q).
   In process the client knows when each request went out, and once slow start is
   over an answer, 200 or 429, of a request sent before `began` is not told at all
   (`sent_before_measuring`): the measuring counts the requests sent since `began`,
   so only their answers may count against them or end the episode. Told, a server
   that fell behind the overshoot answered 429s of earlier requests up to a second
   late and the quota came out 10-25% low; and with first fetches of 3 s, the 200s of
   requests sent before the overshoot ended each episode as clean within a tenth of a
   second. The shared limiter has no send times and relies on `settle` and the rule
   above alone.
3. **After a measured episode** the rate holds `probe_after` s (10), then creeps up by
   `probe_step` (1%) a second, the step doubling every `probe_doubling` s (5), so a
   quota that grew is found without a storm. A quota measured over less than
   `sure_after` s (1) is provisional: taken in the half second after a cut, while the
   overshoot's answers still hold the client's slots and the server's queue, it came out
   at 0.74-0.89 Q in traced runs at 3 s. The rate goes to it all the same, but is
   probed as after a guess (below), without the climb back.
4. **After a guess** (the episode ended clean without measuring: the cut went below Q),
   the rate climbs back at slow start's pace up to `regrow` (0.5) x the rate it was cut
   from (with a small burst the slow start overshoots far less than 4x, and a cut of
   x0.25 lands well under Q), then probes after `fast_after` s (1) with the step
   doubling every `fast_doubling` s (2).
5. **Later episodes.** Between the last episode's `began` and this one the bucket went
   from empty to empty, so q = requests let through / time in between is a lower bound
   of Q (less what overflowed while we ran below it). The cut goes to `hold_at` x q when
   q is at least `trust` (0.7) x the rate, or after a guess; otherwise (mostly overflow)
   to x `beta` (0.85). The cut counts as measured when q is at least `sure` (0.9) x the
   rate. After a guess, a q under that is a lower bound: probed again as after a guess,
   but no sooner than `bound_spacing` (100) requests later when it came out within
   `agree` (2%) of the last estimate (a bound that does not move is the quota; at
   Q = 5 the probe after a guess climbs 30% past Q before the bucket runs dry, so every
   later q counted as a bound, and a probe every 10 s cost a 429 each, 2% of the
   requests). Simulated (20 ms round trips, 3 seeds): Q = 5 with B = 2Q 3.1% -> 2.2-2.6%
   429s; the cost, where the bucket is small and the bounds agree while low: Q = 20 with
   B = 0.2Q 95% -> 93% of Q.

The rate always stays within [`min_rate`, `max_rate`]. It is not raised while requests
go out at under `use_floor` (0.5) of it over the last `tally` s (0.5: the caller sends
less than it may, and raising an unused rate would only store up a burst), nor past
`use_headroom` (4) x the rate of requests over that window. It grows in steps of at
least `min_step` (0.5%), so a limiter is retuned a few hundred times a second at most.

Simulated (benchmarks/tools/adaptive_sim.py, 60 s from 10/s, B = Q): Q = 5, 50, 500 at
98-100% of Q with 2.0%, 0.2%, 0.1% 429s at a 20 ms round trip; 100%, 99%, 97% with
3.2%, 1.1%, 1.2% at 200 ms. New handles whose first fetch takes 1 or 3 s (the goodput
grid in benchmarks/bench_goodput.py) no longer hold slow start back a round trip
a step. Where it is weaker: Q = 5 (each 429 of the slow start's overshoot is a percent
of a minute's requests; 3-4% at round trips of 200-300 ms); a burst of 0.02 x Q (the
first cut lands at a quarter of Q and the climb back takes seconds). A faster slow start
(doubling every 0.2 s while answers keep up) was tried and left out: at Q = 500, B = 100
it lost up to 14% of Q and broke the busiest-second bound in 6 of 8 seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["TUNING", "AdaptiveRate", "AdaptiveState", "Tuning", "lua_rules"]


@dataclass(frozen=True)
class Tuning:
    """The algorithm's constants (the module docstring says what each does)."""

    double_every: float = 0.5
    rtt_doubling: float = 35.0
    fastest_doubling: float = 0.02
    quick_limit: float = 0.25
    rtt_samples: int = 8
    quick_pause: float = 0.25
    quick_tally: float = 3.0
    exit_cut: float = 0.25
    beta: float = 0.85
    trust: float = 0.7
    sure: float = 0.9
    hold_at: float = 0.95
    settle: float = 0.2
    batch: int = 8
    probe_after: float = 10.0
    probe_step: float = 0.01
    probe_doubling: float = 5.0
    regrow: float = 0.5
    fast_after: float = 1.0
    fast_doubling: float = 2.0
    use_floor: float = 0.5
    use_headroom: float = 4.0
    tally: float = 0.5
    min_step: float = 1.005
    sure_after: float = 1.0
    bound_spacing: float = 100.0
    agree: float = 0.02


TUNING = Tuning()
#: `AdaptiveState.measured` of a quota measured over less than `sure_after` s.
_PROVISIONAL = 2
#: `AdaptiveState.measured` of a later episode's q that is only a lower bound.
_BOUND = 3


@dataclass
class AdaptiveState:
    """Everything the controller remembers: numbers only (flags are 0/1), so the same
    fields live in a Redis hash for the shared rate."""

    rate: float
    started: int = 0  # 1 once slow start's clock runs: `last` and `tally_since` are set
    emptied: int = 0  # 1 after the first 429 (0: slow start)
    estimate: float = 0.0  # the quota as last measured; 0: none yet
    episode: int = 0  # 1 while an episode is open
    began: float = 0.0  # the last episode's first 429 + `settle`: its measuring starts
    admitted: int = 0  # requests sent less 429s since `began`
    passed: int = 0  # good answers since `began`
    throttled_at: float = 0.0  # the last 429 since `began` came back (before it: none yet)
    empty_at: float = 0.0  # its request went out (the bucket was empty): the window's end
    let_by_then: int = 0  # requests let through from `began` to `empty_at`
    cut_at: float = 0.0  # the last episode's first 429
    settled: float = 0.0  # answers before this belong to the overshoot already cut for
    measured: int = 0  # did this episode measure the quota? 1: yes, 2: provisionally, 3: a bound
    cut_from: float = 0.0  # the rate before this episode's cut
    ep_ok: int = 0  # answers since `settled`
    ep_throttled: int = 0
    held_since: float = 0.0  # when the last episode ended
    fast: int = 0  # 1 after a guess: regrow, then probe sooner
    ceiling: float = 0.0  # where regrowing after a guess stops
    last: float = 0.0  # when the rate last grew (or was held)
    sent: int = 0  # requests sent since `tally_since`
    tally_since: float = 0.0
    tally_rate: float = 0.0
    in_use: int = 1
    used_rate: float = 0.0  # requests sent a second over the last tally
    used_known: int = 0
    base_rtt: float = 0.0  # the shortest round trip of the first answers; 0: none yet
    rtt_seen: int = 0  # round trips told so far (up to `rtt_samples`)
    quick: int = 0  # 1 once the quick slow start has ended (its first 429: a pause)
    paused_until: float = 0.0  # no request goes out before this
    born: float = 0.0  # the first call


class AdaptiveRate:
    """Target request rate from good answers and 429s; see the module docstring."""

    def __init__(self, initial: float = 10.0, *, min_rate: float = 0.5,
                 max_rate: float | None = None, tuning: Tuning = TUNING) -> None:
        if min_rate <= 0:
            raise ValueError(f"min_rate must be > 0, got {min_rate}")
        if max_rate is not None and max_rate < min_rate:
            raise ValueError(f"max_rate ({max_rate}) must be >= min_rate ({min_rate})")
        self.min_rate = min_rate
        self.max_rate = max_rate
        self._t = tuning
        self.initial = self._clamp(initial)
        self.state = AdaptiveState(rate=self.initial)

    @property
    def rate(self) -> float:
        """The target rate now, requests a second."""
        return self.state.rate

    @property
    def estimate(self) -> float | None:
        """The quota as last measured (None before the first episode ended)."""
        return self.state.estimate or None

    @property
    def slow_start(self) -> bool:
        """True until the first 429."""
        return not self.state.emptied

    def sent_before_measuring(self, sent_at: float) -> bool:
        """Whether an answer to a request sent at `sent_at` is to be left out: after slow
        start, one sent before `began` (before the last cut, or in the `settle` after it)
        answers a rate the controller has already acted on (see the module docstring)."""
        s = self.state
        return bool(s.emptied or s.quick) and sent_at < s.began

    @property
    def wants_round_trips(self) -> bool:
        """True while `on_round_trip` is still listened to (the first answers)."""
        return self.state.rtt_seen < self._t.rtt_samples

    @property
    def wants_send_times(self) -> bool:
        """True while an answer's send time matters: its round trip is still listened to,
        or `sent_before_measuring` may leave it out (after slow start's first 429)."""
        s = self.state
        return bool(s.emptied or s.quick) or self.wants_round_trips

    def on_round_trip(self, seconds: float) -> None:
        """An answer came `seconds` after its request went out: the shortest of the first
        `rtt_samples` sets how fast slow start may double (rule 1)."""
        s = self.state
        if self.wants_round_trips and seconds > 0:
            s.base_rtt = min(s.base_rtt or seconds, seconds)
            s.rtt_seen += 1

    def on_sent(self, now: float, count: int = 1) -> float:
        """`count` requests were sent (took a token) at `now`."""
        return self.on_answers(now, 0, 0, count)

    def on_success(self, now: float) -> float:
        """A 200 (or any answer that was not throttled) came back at `now`."""
        return self.on_answers(now, 1, 0)

    def on_throttled(self, now: float) -> float:
        """A 429 `Too Many Requests` came back at `now`."""
        return self.on_answers(now, 0, 1)

    def on_answers(self, now: float, ok: int, throttled: int, sent: int = 0, *,
                   empty_at: float | None = None, sent_after: int = 0) -> float:
        """By `now`, `sent` more requests went out, and `ok` good answers and `throttled`
        429s came back; the new rate. With a 429, a caller that knows when the request
        went out says so: `empty_at`, its send time (the bucket was empty then), and
        `sent_after`, the requests sent after it (counted in `sent` by now)."""
        s = self.state
        if not s.started:
            s.started, s.last, s.tally_since, s.tally_rate, s.born = 1, now, now, s.rate, now
        if now < s.paused_until:
            return s.rate  # answers to the quick start's last requests: already acted on
        if throttled and self._quick_now():
            self._end_quick_start(now, sent - throttled)
            return s.rate
        window_end: tuple[float, int] | None = None
        if now >= s.began:
            s.admitted += sent - throttled
            s.passed += ok
            if s.episode and s.admitted <= 0 < throttled:
                # More 429s than requests since `began`: answers to requests sent before
                # it (a round trip longer than `settle`) are still coming; start again.
                s.began, s.admitted, s.passed = now, 0, 0
                s.throttled_at = s.empty_at = now
                s.let_by_then = 0
            elif throttled:  # the bucket was empty then: a measuring window ends there
                s.throttled_at = now
                s.empty_at, s.let_by_then = window_end = self._emptied_at(
                    now, empty_at, sent_after)
        s.sent += sent
        if s.episode:
            if now >= s.settled:
                s.ep_ok += ok
                s.ep_throttled += throttled
                self._review(now)
            return s.rate
        if ok or sent:
            self._grow(now)
        if throttled:
            self._begin_episode(now, *(window_end or self._emptied_at(now, empty_at, sent_after)))
        return s.rate

    # -- the rules ------------------------------------------------------------------------

    def _doubling(self) -> float:
        """Slow start's doubling time: `rtt_doubling` round trips, within
        [`fastest_doubling`, `double_every`]; `double_every` before any round trip is known
        and after the quick start."""
        s, t = self.state, self._t
        quick = t.rtt_doubling * s.base_rtt
        if s.quick or not s.base_rtt or quick > t.quick_limit:
            return t.double_every
        return max(t.fastest_doubling, quick)

    def _quick_now(self) -> bool:
        """True during a quick slow start (rule 1)."""
        return not self.state.emptied and self._doubling() < self._t.double_every

    def _end_quick_start(self, now: float, admitted: int) -> None:
        """The first 429 of a quick slow start: the bucket ran dry within a second, so
        nothing more may go for `quick_pause` s; then slow start again at its usual pace,
        from `exit_cut` x the requests let through a second so far."""
        s, t = self.state, self._t
        let_through = max(0, s.admitted + admitted) / max(now - s.born, 1.0)
        s.quick, s.rate = 1, self._clamp(t.exit_cut * max(let_through, self.initial))
        s.paused_until = s.began = s.last = s.tally_since = now + t.quick_pause
        s.admitted = s.passed = s.sent = s.used_known = 0
        s.tally_rate, s.in_use = s.rate, 1

    def _emptied_at(self, now: float, empty_at: float | None, sent_after: int
                    ) -> tuple[float, int]:
        """When a 429's request found the bucket empty, and the requests let through from
        `began` to then. Without its send time: now, and every request sent by now (a
        client that stalled, a GC pause, reads a 429 late: the time in between then
        counts as sent in, and the quota came out 10-18% low at 1,000/s in traced runs)."""
        if empty_at is None or not self.state.began <= empty_at <= now:
            return now, self._passed()
        return empty_at, max(0, self._passed() - sent_after)

    def _begin_episode(self, now: float, empty_at: float, let_through: int) -> None:
        s, t = self.state, self._t
        s.measured, s.cut_from = 0, s.rate
        rate = self._cut_on_quota(empty_at, let_through) if s.emptied else s.rate * t.exit_cut
        s.rate = self._clamp(rate)
        s.emptied, s.episode, s.admitted, s.passed, s.cut_at = 1, 1, 0, 0, now
        s.began = s.settled = now + t.settle
        s.ep_ok = s.ep_throttled = 0

    def _cut_on_quota(self, now: float, passed: int) -> float:
        """A later episode's cut: to the quota seen since the last one (`passed` requests let
        through from `began` to `now`, when the bucket was empty), when trusted."""
        s, t = self.state, self._t
        quota = 0.0
        if passed >= t.batch and now > s.began:
            if now - s.began < 2 * t.settle and s.rate <= s.estimate:
                return s.rate  # too short to measure in, at a measured rate: the episode will
            quota = passed / (now - s.began)
        if quota > 0 and (s.fast or quota >= t.trust * s.rate):
            # After a guess, a small overshoot means we ran below Q most of the time: the
            # bucket may have overflowed, so q is a lower bound only (probe again soon).
            unsure = s.fast and t.trust * s.rate <= quota < t.sure * s.rate
            measured = 1
            if unsure:  # a bound that did not move since the last is probed less often
                measured = _BOUND if abs(quota - s.estimate) <= t.agree * s.estimate else 0
            s.estimate, s.measured = quota, measured
            return min(s.rate, t.hold_at * quota)
        return s.rate * t.beta

    def _passed(self) -> int:
        """Requests the server let through since `began`: those sent less the 429s, or,
        when the 429s came back a round trip late (`began` was pushed back), the 200s if
        more: late 429s of requests sent faster before the cut would count against it."""
        s = self.state
        if s.began > s.cut_at + self._t.settle:
            return max(s.admitted, s.passed)
        return s.admitted

    def _review(self, now: float) -> None:
        """After each batch of answers: still throttled? cut to the measured quota."""
        s, t = self.state, self._t
        if s.ep_ok + s.ep_throttled < t.batch:
            return
        if s.ep_throttled:
            shortest = max(2 * t.settle, s.began - s.cut_at)
            window = s.empty_at - s.began
            if window >= shortest:  # from `began` to the last 429, the bucket empty at both
                s.estimate = s.let_by_then / window
                s.rate = self._clamp(min(s.rate, t.hold_at * s.estimate))
                s.settled, s.ep_ok, s.ep_throttled = now + t.settle, 0, 0
                s.measured = 1 if window >= t.sure_after else _PROVISIONAL
                return
            if now - s.throttled_at < shortest:
                return  # too short a time to measure the quota in: wait for more
            # The 429s stopped early in the window (we sent less than Q since): clean.
        s.episode = 0
        if not s.estimate:
            s.estimate = s.rate / t.hold_at
        s.last = s.held_since = now
        s.fast = 0 if s.measured == 1 else 1
        s.ceiling = t.regrow * s.cut_from if not s.measured else 0.0

    def _grow(self, now: float) -> None:
        s, t = self.state, self._t
        if now <= s.last or not self._in_use(now):
            s.last = now
            return
        grown = self._grown(now - s.last, now)
        if s.used_known:  # never far above what the answers show is used
            grown = min(grown, max(s.rate, t.use_headroom * s.used_rate))
        if (grown == s.rate or grown == self.max_rate or grown == s.ceiling
                or grown >= s.rate * t.min_step):
            s.rate, s.last = grown, now
        # else: let the time add up, so the rate moves in steps a limiter can follow

    def _grown(self, dt: float, now: float) -> float:
        """The rate after `dt` more seconds of good answers."""
        s, t = self.state, self._t
        if not s.emptied:
            return self._clamp(s.rate * 2 ** (dt / self._doubling()))
        if s.fast and s.rate < s.ceiling:
            return self._clamp(min(s.ceiling, s.rate * 2 ** (dt / t.double_every)))
        wait, doubling = t.probe_after, t.probe_doubling
        if s.fast:
            wait, doubling = t.fast_after, t.fast_doubling
            if s.measured == _BOUND:
                wait = max(wait, t.bound_spacing / s.rate)
        probing = now - s.held_since - wait
        if probing <= 0:
            return s.rate
        step = min(1.0, t.probe_step * 2 ** min(probing / doubling, 100.0))
        return self._clamp(s.rate * (1 + step * dt))

    def _in_use(self, now: float) -> bool:
        """False while answers come at under `use_floor` of the rate (the caller sends
        less): raising a rate nobody uses would only make a burst later."""
        s, t = self.state, self._t
        tally = t.quick_tally * self._doubling() if self._quick_now() else t.tally
        if now - s.tally_since >= min(t.tally, tally):
            expected = s.tally_rate * (now - s.tally_since)
            s.in_use = 1 if s.sent >= t.use_floor * expected else 0
            s.used_rate, s.used_known = s.sent / (now - s.tally_since), 1
            s.tally_since, s.tally_rate, s.sent = now, s.rate, 0
        return bool(s.in_use)

    def _clamp(self, rate: float) -> float:
        if self.max_rate is not None:
            rate = min(rate, self.max_rate)
        return max(self.min_rate, rate)


# -- the same rules in Lua, for the rate every worker of a key shares in Redis ----------

_LUA_RULES = """
local T = {tuning}
local PROVISIONAL = {provisional}
local BOUND = {bound}
local function clamp(r)
  if max_rate > 0 and r > max_rate then r = max_rate end
  if r < min_rate then r = min_rate end
  return r
end
local function passed(s)
  if s.began > s.cut_at + T.settle then return math.max(s.admitted, s.passed) end
  return s.admitted
end
local function cut_on_quota(s, now)
  local quota, let_through = 0, passed(s)
  if let_through >= T.batch and now > s.began then
    if now - s.began < 2 * T.settle and s.rate <= s.estimate then return s.rate end
    quota = let_through / (now - s.began)
  end
  if quota > 0 and (s.fast == 1 or quota >= T.trust * s.rate) then
    local unsure = s.fast == 1 and T.trust * s.rate <= quota and quota < T.sure * s.rate
    local measured = 1
    if unsure then
      if math.abs(quota - s.estimate) <= T.agree * s.estimate then measured = BOUND
      else measured = 0 end
    end
    s.estimate = quota
    s.measured = measured
    return math.min(s.rate, T.hold_at * quota)
  end
  return s.rate * T.beta
end
local function doubling(s)
  local quick = T.rtt_doubling * s.base_rtt
  if s.quick == 1 or s.base_rtt == 0 or quick > T.quick_limit then return T.double_every end
  return math.max(T.fastest_doubling, quick)
end
local function on_round_trip(s, seconds)
  if s.rtt_seen < T.rtt_samples and seconds > 0 then
    if s.base_rtt == 0 or seconds < s.base_rtt then s.base_rtt = seconds end
    s.rtt_seen = s.rtt_seen + 1
  end
end
local function quick_now(s)
  return s.emptied == 0 and doubling(s) < T.double_every
end
local function end_quick_start(s, now, admitted)
  local let_through = math.max(0, s.admitted + admitted) / math.max(now - s.born, 1.0)
  s.quick = 1
  s.rate = clamp(T.exit_cut * math.max(let_through, clamp(initial)))
  s.paused_until = now + T.quick_pause
  s.began = s.paused_until; s.last = s.paused_until; s.tally_since = s.paused_until
  s.admitted = 0; s.passed = 0; s.sent = 0; s.used_known = 0
  s.tally_rate = s.rate; s.in_use = 1
end
local function begin_episode(s, now)
  s.measured = 0
  s.cut_from = s.rate
  local rate
  if s.emptied == 0 then rate = s.rate * T.exit_cut else rate = cut_on_quota(s, now) end
  s.rate = clamp(rate)
  s.emptied = 1; s.episode = 1; s.admitted = 0; s.passed = 0; s.cut_at = now
  s.began = now + T.settle; s.settled = now + T.settle
  s.ep_ok = 0; s.ep_throttled = 0
end
local function review(s, now)
  if s.ep_ok + s.ep_throttled < T.batch then return end
  if s.ep_throttled > 0 then
    local shortest = math.max(2 * T.settle, s.began - s.cut_at)
    local window = s.empty_at - s.began
    if window >= shortest then
      s.estimate = s.let_by_then / window
      s.rate = clamp(math.min(s.rate, T.hold_at * s.estimate))
      s.settled = now + T.settle; s.ep_ok = 0; s.ep_throttled = 0
      if window >= T.sure_after then s.measured = 1 else s.measured = PROVISIONAL end
      return
    end
    if now - s.throttled_at < shortest then return end
  end
  s.episode = 0
  if s.estimate == 0 then s.estimate = s.rate / T.hold_at end
  s.last = now; s.held_since = now
  if s.measured == 1 then s.fast = 0 else s.fast = 1 end
  if s.measured == 0 then s.ceiling = T.regrow * s.cut_from else s.ceiling = 0 end
end
local function in_use(s, now)
  local tally = T.tally
  if quick_now(s) then tally = math.min(T.tally, T.quick_tally * doubling(s)) end
  if now - s.tally_since >= tally then
    local expected = s.tally_rate * (now - s.tally_since)
    if s.sent >= T.use_floor * expected then s.in_use = 1 else s.in_use = 0 end
    s.used_rate = s.sent / (now - s.tally_since); s.used_known = 1
    s.tally_since = now; s.tally_rate = s.rate; s.sent = 0
  end
  return s.in_use == 1
end
local function grown(s, dt, now)
  if s.emptied == 0 then return clamp(s.rate * math.pow(2, dt / doubling(s))) end
  if s.fast == 1 and s.rate < s.ceiling then
    return clamp(math.min(s.ceiling, s.rate * math.pow(2, dt / T.double_every)))
  end
  local wait, doubling = T.probe_after, T.probe_doubling
  if s.fast == 1 then
    wait, doubling = T.fast_after, T.fast_doubling
    if s.measured == BOUND then wait = math.max(wait, T.bound_spacing / s.rate) end
  end
  local probing = now - s.held_since - wait
  if probing <= 0 then return s.rate end
  local step = math.min(1.0, T.probe_step * math.pow(2, math.min(probing / doubling, 100.0)))
  return clamp(s.rate * (1 + step * dt))
end
local function grow(s, now)
  if now <= s.last or not in_use(s, now) then s.last = now; return end
  local g = grown(s, now - s.last, now)
  if s.used_known == 1 then g = math.min(g, math.max(s.rate, T.use_headroom * s.used_rate)) end
  if g == s.rate or g == max_rate or g == s.ceiling or g >= s.rate * T.min_step then
    s.rate = g; s.last = now
  end
end
local function on_answers(s, now, ok, throttled, sent)
  if s.started == 0 then
    s.started = 1; s.last = now; s.tally_since = now; s.tally_rate = s.rate; s.born = now
  end
  if now < s.paused_until then return end
  if throttled > 0 and quick_now(s) then
    end_quick_start(s, now, sent - throttled)
    return
  end
  if now >= s.began then
    s.admitted = s.admitted + sent - throttled
    s.passed = s.passed + ok
    if s.episode == 1 and s.admitted <= 0 and throttled > 0 then
      s.began = now; s.admitted = 0; s.passed = 0
      s.throttled_at = now; s.empty_at = now; s.let_by_then = 0
    elseif throttled > 0 then
      s.throttled_at = now; s.empty_at = now; s.let_by_then = passed(s)
    end
  end
  s.sent = s.sent + sent
  if s.episode == 1 then
    if now >= s.settled then
      s.ep_ok = s.ep_ok + ok; s.ep_throttled = s.ep_throttled + throttled
      review(s, now)
    end
    return
  end
  if ok + sent > 0 then grow(s, now) end
  if throttled > 0 then begin_episode(s, now) end
end
"""

#: The state's fields, in the order the Lua loads and stores them.
STATE_FIELDS = tuple(f.name for f in fields(AdaptiveState))


def lua_rules(tuning: Tuning = TUNING) -> str:
    """The rules above in Lua, with `tuning`'s constants: defines `clamp(r)`,
    `on_round_trip(s, seconds)` and `on_answers(s, now, ok, throttled, sent)` on a table `s`
    of `AdaptiveState`'s fields. The script that runs them must define the locals
    `min_rate`, `max_rate` (0: none) and `initial`."""
    constants = ", ".join(f"{name} = {value!r}" for name, value in asdict(tuning).items())
    return (_LUA_RULES.replace("{tuning}", "{" + constants + "}")
            .replace("{provisional}", str(_PROVISIONAL)).replace("{bound}", str(_BOUND)))
