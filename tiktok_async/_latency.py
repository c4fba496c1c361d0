"""Latency histograms for load runs: HdrHistogram (the `hdrhistogram` package), in microseconds.

An HDR histogram keeps every value to 3 significant digits (0.1%) from 1 µs to an hour in
a fixed few kilobytes, so a run of any length is summarised without a sorted list, and two
histograms add up exactly. Only this module imports `hdrh`; it comes with the `bench` extra.
"""

from __future__ import annotations

import math
from typing import Any

try:
    from hdrh.histogram import HdrHistogram
except ImportError as exc:  # pragma: no cover - the dev extra installs it
    raise ImportError(
        f"load runs need the bench extra: pip install 'tiktok-async[bench]' ({exc})"
    ) from exc

__all__ = ["PERCENTILES", "LatencyHistogram"]

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000  # an hour
_DIGITS = 3
#: The summary's keys and the percentile each one is.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class LatencyHistogram:
    """Latencies recorded in seconds, summarised in milliseconds."""

    def __init__(self, hdr: Any = None) -> None:
        self._hdr = hdr if hdr is not None else HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)

    def record(self, seconds: float) -> None:
        """Add one latency (clamped to 1 µs .. 1 h)."""
        micros = min(max(round(seconds * 1e6), _LOWEST_US), _HIGHEST_US)
        self._hdr.record_value(micros)

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return int(self._hdr.get_total_count())

    def add(self, other: LatencyHistogram) -> None:
        """Add every value of `other` to this one."""
        self._hdr.add(other._hdr)

    def at(self, percentile: float) -> float:
        """The latency at `percentile` (0-100), in milliseconds (0 when empty)."""
        return _ms(self._hdr.get_value_at_percentile(percentile)) if self.count else 0.0

    def summary(self) -> dict[str, float]:
        """`p50`, `p90`, `p99`, `p999`, `max`, `mean` in milliseconds (all 0 when empty)."""
        if not self.count:
            return dict.fromkeys([*PERCENTILES, "max", "mean"], 0.0)
        found = {key: self.at(level) for key, level in PERCENTILES.items()}
        found["max"] = _ms(self._hdr.get_max_value())
        found["mean"] = round(float(self._hdr.get_mean_value()) / 1000, 3)
        return found

    def curve(self, points: int = 200) -> list[tuple[float, float]]:
        """(percentile, ms) pairs from p0 to the last one the count resolves (1 - 1/count)."""
        if not self.count:
            return []
        nines = max(1.0, math.log10(self.count))
        levels = (100 * (1 - 10 ** (-nines * i / points)) for i in range(points + 1))
        return [(level, self.at(level)) for level in levels]

    def encode(self) -> str:
        """The histogram in HdrHistogram's interchange form (compressed, base64)."""
        return bytes(self._hdr.encode()).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """A histogram from `encode()`'s text (or any HdrHistogram tool's)."""
        return cls(HdrHistogram.decode(text.encode("ascii")))


def _ms(micros: Any) -> float:
    return round(int(micros) / 1000, 3)
