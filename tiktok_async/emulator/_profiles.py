"""Named latency profiles for the emulator's first fetch ("fetch from TikTok").

The service answers a user it has in its database at once and fetches an unseen one from
TikTok first: seconds, heavy-tailed. A profile draws that first-fetch delay; cached
answers stay fast (the database). `service` is the preset the demo and the benchmarks
use: log-normal, median 1.5 s, p99 about 10 s, cut at 30 s; a draw over the integration
timeout (29 s, API Gateway's) is answered 504 then, and the fetch still saves the user.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["PROFILES", "LatencyProfile", "profile_names"]

# The standard normal's 99th percentile: sigma = ln(p99 / median) / Z99.
_Z99 = 2.3263


@dataclass(frozen=True)
class LatencyProfile:
    """A log-normal first-fetch delay: `median_ms`, `p99_ms`, cut at `max_ms`."""

    median_ms: float
    p99_ms: float
    max_ms: float = 30_000.0

    def draw(self, rng: random.Random) -> float:
        """One first-fetch delay, in seconds."""
        sigma = math.log(self.p99_ms / self.median_ms) / _Z99
        return min(self.max_ms, self.median_ms * math.exp(rng.gauss(0.0, sigma))) / 1000


PROFILES: dict[str, LatencyProfile] = {
    "service": LatencyProfile(median_ms=1500.0, p99_ms=10_000.0),
    "slow": LatencyProfile(median_ms=3000.0, p99_ms=15_000.0),
    "fast": LatencyProfile(median_ms=50.0, p99_ms=200.0),
}


def profile_names() -> tuple[str, ...]:
    """The preset names, for a command line's choices."""
    return tuple(PROFILES)
