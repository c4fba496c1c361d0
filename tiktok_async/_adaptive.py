"""AdaptiveRate: find a request rate nobody told us, from 200s and 429s alone.

The server (API Gateway) meters each key with a token bucket: a rate of Q requests a
second and a burst (typically about Q). The client is not told either. This controller
turns answers into a target rate for the limiter. It is pure: no clock, no I/O; each
call passes `now`, seconds on any monotonic clock, and gets the new target back.

Why plain AIMD is not enough: a bucket as deep as a second of quota tells a client that
runs above Q only once it is empty, seconds later; and halving on every 429 averages
75% of Q. So the controller *measures* Q. The fact it rests on: while the bucket is
empty, the server answers 200 exactly Q times a second, however fast we send.

1. **Slow start.** From `initial`, the rate doubles every `double_every` seconds (0.5)
   until the first 429. By then the full bucket has hidden an overshoot of about 4x
   (with a burst of Q), so the first cut is deep: x`exit_cut` (0.25).
2. **Episode.** The first 429 of an overshoot opens an episode; the bucket is empty at
   that moment. The cut is made once; 429s in the next `settle` seconds (0.2; answers
   to requests sent before the cut) are part of the same overshoot and change nothing.
   After that, answers are reviewed in batches of `batch` (8):
   - a batch with a 429 means we are still above Q, so the bucket has stayed empty
     since the episode began: Q = 200s since then / time since then. The rate goes to
     `hold_at` (0.95) x that, and the next batch is awaited;
   - a clean batch ends the episode: the rate holds.
3. **Hold, then probe.** The rate holds for `probe_after` seconds (10), then creeps up
   by `probe_step` (1%) a second, the step doubling every `probe_doubling` seconds (5),
   so a quota that grew is found without a storm. After a cut that was only a guess (no
   batch measured Q) the probe starts 10x sooner and accelerates 2.5x faster.
4. **Later episodes.** Between the last episode and this one the bucket went from empty
   to empty, so 200s / elapsed time in between is Q again (less what overflowed while
   we ran below it: a lower bound). If that figure is at least `trust` (0.7) x the
   current rate, the cut goes to `hold_at` x it; otherwise, mostly overflow, the cut is
   the classic x`beta` (0.85). Either way the cut happens once per episode.

The rate always stays within [`min_rate`, `max_rate`], and it is not raised while
answers come back at under half of it (the caller is sending less than it may: raising
an unused rate would only store up a burst), nor past 4x the rate of answers seen over
the last second. It grows in steps of at least 0.5%, so the
limiter is retuned a few hundred times a second at most, not on every answer.

Simulated against a bucket of rate Q and burst Q with a 50 ms round trip, 60 s from
10/s (`benchmarks/tools/adaptive_sim.py`; the tests check the same): Q = 5, 50, 500 get
100%, 100% and 97% of Q in 200s, with 1.3%, 0.3% and 0.2% 429s. Where it is weaker:
a burst of 5 x Q at Q = 5 (4-6% 429s: the overshoot out of slow start is larger than
the first cut assumes); a burst of 0.2 x Q (80-90% of Q over the first minute: the
first cut goes too deep and the probes climb back); round trips longer than `settle`
(429s already in flight when the rate is cut are more numerous).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRate"]

# The rate grows in steps of at least 0.5%: a limiter retuned on every answer at
# thousands of answers a second would spend its time retuning.
_MIN_STEP = 1.005
# The rate never grows past this multiple of the answer rate seen over the last second:
# a client capped by its concurrency would otherwise double its rate into the tens of
# thousands, and its bucket (sized to the rate) would allow a burst after an idle spell.
# 4x keeps slow start's pace (x2 every half second).
_USE_HEADROOM = 4.0


@dataclass
class _Episode:
    """One overshoot: from its first 429 until a batch of answers comes back clean."""

    began: float  # the first 429: the server's bucket was empty then
    settled: float  # answers before this were sent before the last cut
    measured: bool  # did this episode measure the quota (from a rate of 200s)?
    ok_since_began: int = 0
    ok: int = 0  # since `settled`
    throttled: int = 0  # since `settled`


class AdaptiveRate:
    """Target request rate from good answers and 429s; see the module docstring."""

    def __init__(
        self,
        initial: float = 10.0,
        *,
        min_rate: float = 0.5,
        max_rate: float | None = None,
        double_every: float = 0.5,
        exit_cut: float = 0.25,
        beta: float = 0.85,
        trust: float = 0.7,
        hold_at: float = 0.95,
        settle: float = 0.2,
        batch: int = 8,
        probe_after: float = 10.0,
        probe_step: float = 0.01,
        probe_doubling: float = 5.0,
    ) -> None:
        if min_rate <= 0:
            raise ValueError(f"min_rate must be > 0, got {min_rate}")
        if max_rate is not None and max_rate < min_rate:
            raise ValueError(f"max_rate ({max_rate}) must be >= min_rate ({min_rate})")
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.rate = self._clamp(initial)
        self.estimate: float | None = None  # the quota as last measured, None in slow start
        self._double_every = double_every
        self._exit_cut = exit_cut
        self._beta = beta
        self._trust = trust
        self._hold_at = hold_at
        self._settle = settle
        self._batch = batch
        self._probe_after = probe_after
        self._probe_step = probe_step
        self._probe_doubling = probe_doubling
        self._episode: _Episode | None = None
        self._last_empty: float | None = None  # when the bucket was last seen empty
        self._ok_since_empty = 0
        self._held_since = 0.0
        self._probing_fast = False
        self._last: float | None = None
        self._answers = 0  # since `_tally_since`: is the rate we set actually used?
        self._tally_since: float | None = None
        self._tally_rate = self.rate
        self._in_use = True
        self._used_rate: float | None = None  # answers a second over the last full window

    @property
    def slow_start(self) -> bool:
        """True until the first 429."""
        return self._last_empty is None

    def on_success(self, now: float) -> float:
        """A 200 (or any answer that was not throttled) came back at `now`."""
        self._ok_since_empty += 1
        self._answers += 1
        episode = self._episode
        if episode is None:
            self._grow(now)
            return self.rate
        episode.ok_since_began += 1
        if now >= episode.settled:
            episode.ok += 1
            self._review(now, episode)
        return self.rate

    def on_throttled(self, now: float) -> float:
        """A 429 `Too Many Requests` came back at `now`."""
        self._answers += 1
        episode = self._episode
        if episode is None:
            self._begin_episode(now)
        elif now >= episode.settled:
            episode.throttled += 1
            self._review(now, episode)
        return self.rate

    # -- internals ------------------------------------------------------------------

    def _begin_episode(self, now: float) -> None:
        measured = False
        if self._last_empty is None:  # leaving slow start: the bucket hid a large overshoot
            rate = self.rate * self._exit_cut
        else:
            rate = self.rate * self._beta
            quota = self._quota_since_last_episode(now)
            if quota is not None:
                self.estimate = quota
                rate, measured = min(self.rate, self._hold_at * quota), True
        self.rate = self._clamp(rate)
        self._last_empty, self._ok_since_empty = now, 0
        self._episode = _Episode(began=now, settled=now + self._settle, measured=measured)

    def _quota_since_last_episode(self, now: float) -> float | None:
        """The rate of 200s between two empty buckets, when it can be trusted.

        The bucket was empty at the last episode and is empty again now, so in between
        it handed out the quota's rate, less what overflowed while we ran well below
        it. Far below the rate we are cut from, the figure is mostly overflow: None.
        """
        assert self._last_empty is not None
        if self._ok_since_empty < 2 * self._batch:
            return None
        quota = self._ok_since_empty / max(now - self._last_empty, 1e-9)
        return quota if quota >= self._trust * self.rate else None

    def _review(self, now: float, episode: _Episode) -> None:
        """After each batch of answers: still throttled? cut to the measured quota."""
        total = episode.ok + episode.throttled
        if total < self._batch:
            return
        if episode.throttled:
            # Still above the quota, so the bucket has stayed empty since the episode
            # began: 200s have come at the quota's rate, whatever we sent.
            self.estimate = episode.ok_since_began / max(now - episode.began, 1e-9)
            self.rate = self._clamp(min(self.rate, self._hold_at * self.estimate))
            episode.settled = now + self._settle
            episode.ok = episode.throttled = 0
            episode.measured = True
            return
        self._episode = None
        if self.estimate is None:
            self.estimate = self.rate / self._hold_at
        self._last = self._held_since = now
        # A cut on a guess may have gone too deep: look for the quota again soon.
        self._probing_fast = not episode.measured

    def _grow(self, now: float) -> None:
        last = self._last
        if last is None or now <= last or not self._rate_in_use(now):
            self._last = now
            return
        grown = self._grown(now - last, now)
        if self._used_rate is not None:  # never far above what answers show is used
            grown = min(grown, max(self.rate, _USE_HEADROOM * self._used_rate))
        if grown == self.rate or grown == self.max_rate or grown >= self.rate * _MIN_STEP:
            self.rate = grown
            self._last = now
        # else: let the time add up, so the rate moves in steps the limiter can follow

    def _grown(self, dt: float, now: float) -> float:
        """The rate after `dt` more seconds of good answers."""
        if self._last_empty is None:
            return self._clamp(self.rate * 2 ** (dt / self._double_every))
        wait, doubling = self._probe_after, self._probe_doubling
        if self._probing_fast:
            wait, doubling = wait / 10, doubling / 2.5
        probing = now - self._held_since - wait
        if probing <= 0:
            return self.rate
        step = min(1.0, self._probe_step * 2 ** min(probing / doubling, 100.0))
        return self._clamp(self.rate * (1 + step * dt))

    def _rate_in_use(self, now: float) -> bool:
        """False while answers come at under half the rate (the caller sends less).

        Raising a rate nobody uses would only make a burst later: hold it instead.
        """
        if self._tally_since is None:
            self._tally_since, self._tally_rate = now, self.rate
        elif now - self._tally_since >= 1.0:
            expected = self._tally_rate * (now - self._tally_since)
            self._in_use = self._answers >= 0.5 * expected
            self._used_rate = self._answers / (now - self._tally_since)
            self._tally_since, self._tally_rate, self._answers = now, self.rate, 0
        return self._in_use

    def _clamp(self, rate: float) -> float:
        if self.max_rate is not None:
            rate = min(rate, self.max_rate)
        return max(self.min_rate, rate)
