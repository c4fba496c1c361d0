"""Simulate `AdaptiveRate` against API Gateway's token bucket, with a simulated clock.

The server holds a token bucket of rate Q and burst Q (full at the start) that the
client is not told. The client sends evenly spaced requests at the controller's rate;
each request is told to the controller as it goes, and its answer comes back one round
trip later (with some jitter) and is fed to the controller. Deterministic: a seeded RNG,
no real time. `tests/test_adaptive.py` loads
this file by its path and checks the controller with `simulate`, so it imports nothing
of `benchmarks`.

    python -m benchmarks.tools.adaptive_sim [--seconds 60] [--rtt 0.05] [--initial 10]
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass

from tiktok_async._adaptive import AdaptiveRate


@dataclass
class SimResult:
    """What one simulated run produced."""

    quota: float
    seconds: float
    ok: int
    throttled: int
    final_rate: float

    @property
    def ok_rate_share(self) -> float:
        """200s per second as a share of the quota."""
        return self.ok / self.seconds / self.quota

    @property
    def throttled_share(self) -> float:
        """429s as a share of all requests."""
        total = self.ok + self.throttled
        return self.throttled / total if total else 0.0


class TokenBucket:
    """API Gateway's throttle: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def simulate(
    quota: float,
    *,
    seconds: float = 60.0,
    initial: float = 10.0,
    rtt: float = 0.05,
    jitter: float = 0.5,
    seed: int = 1,
    burst: float | None = None,
    max_rate: float | None = None,
) -> SimResult:
    """Run the controller against a bucket of rate `quota` (burst: `quota` unless
    given) for `seconds`; round trips are `rtt` +- `jitter`/2 of it."""
    rng = random.Random(seed)
    bucket = TokenBucket(quota, quota if burst is None else burst)
    control = AdaptiveRate(initial, max_rate=max_rate)
    answers: list[tuple[float, bool]] = []  # (arrival time, was it a 200), a heap
    ok = throttled = 0
    t = 0.0
    while t < seconds:
        while answers and answers[0][0] <= t:
            arrived, good = heapq.heappop(answers)
            (control.on_success if good else control.on_throttled)(arrived)
        control.on_sent(t)
        trip = rtt * (1 + jitter * (rng.random() - 0.5))
        good = bucket.take(t + trip / 2)
        heapq.heappush(answers, (t + trip, good))
        ok, throttled = ok + good, throttled + (not good)
        t += 1.0 / control.rate
    return SimResult(quota, seconds, ok, throttled, control.rate)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.adaptive_sim",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rtt", type=float, default=0.05, help="round trip, seconds")
    parser.add_argument("--initial", type=float, default=10.0)
    parser.add_argument("--burst", type=float, default=1.0, help="bucket depth, x Q")
    args = parser.parse_args()
    print(f"{args.seconds:.0f} simulated seconds from {args.initial:g}/s, "
          f"RTT {args.rtt * 1000:.0f} ms, burst {args.burst:g} x Q")
    print(f"{'Q':>6} {'200s':>8} {'429s':>6} {'200/s as % of Q':>16} {'429s % of all':>14} "
          f"{'final rate':>11}")
    for quota in (5, 50, 500):
        r = simulate(quota, seconds=args.seconds, initial=args.initial, rtt=args.rtt,
                     burst=max(1.0, quota * args.burst))
        print(f"{quota:>6} {r.ok:>8} {r.throttled:>6} {r.ok_rate_share:>16.1%} "
              f"{r.throttled_share:>14.2%} {r.final_rate:>11.1f}")


if __name__ == "__main__":
    main()
