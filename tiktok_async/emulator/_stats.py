"""What the emulator served: counts per key, route and status, and recent arrival times.

Keys are never stored or shown: a key appears as the first 12 hex digits of its SHA-256
(`key_label`), a request without a key as `-`. Status 0 means the connection was closed
without an answer (a `drop` fault, or a client that gave up on a `slow` one).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ARRIVALS_KEPT = 100_000
NO_KEY = "-"


def busiest_window(times: Iterable[float], seconds: float = 1.0) -> int:
    """The most of `times` (in any order) within any closed window `seconds` long: how a
    rate limit is judged from arrival or send times."""
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def key_label(key: str | None) -> str:
    """How a key shows in stats: a short SHA-256 prefix (never the key itself)."""
    if not key:
        return NO_KEY
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StatsSnapshot:
    """A copy of the counts at one moment.

    `rows` maps (key label, route, status) to a count; routes are `user`, `video`,
    `unknown`, and `short_link` (TikTok's short-link redirects, `/_short/...`).
    `arrivals` are (time.time() at arrival, status), oldest first, the last
    `ARRIVALS_KEPT` requests. `faults` counts the faults applied, by kind.
    """

    rows: dict[tuple[str, str, int], int] = field(default_factory=dict)
    arrivals: tuple[tuple[float, int], ...] = ()
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Every request counted."""
        return sum(self.rows.values())

    def count(
        self, *, status: int | None = None, route: str | None = None, key: str | None = None
    ) -> int:
        """Requests matching every filter given; `key` is the raw key (it is hashed here)."""
        label = None if key is None else key_label(key)
        return sum(
            n
            for (k, r, s), n in self.rows.items()
            if (status is None or s == status)
            and (route is None or r == route)
            and (label is None or k == label)
        )

    def by(self, what: str) -> dict[Any, int]:
        """Totals by `key`, `route` or `status`."""
        index = {"key": 0, "route": 1, "status": 2}[what]
        totals: Counter[Any] = Counter()
        for row, n in self.rows.items():
            totals[row[index]] += n
        return dict(totals)

    def times(self, status: int | None = 200) -> list[float]:
        """Arrival times of the kept requests with `status` (all when None)."""
        return [t for t, s in self.arrivals if status is None or s == status]

    def max_in_window(self, seconds: float, status: int | None = 200) -> int:
        """The most requests (with `status`) that arrived within any `seconds` window."""
        return busiest_window(self.times(status), seconds)

    def to_json(self) -> dict[str, Any]:
        """The JSON form served at `GET /_emulator/stats`."""
        return {
            "total": self.total,
            "by_key": self.by("key"),
            "by_route": self.by("route"),
            "by_status": {str(s): n for s, n in self.by("status").items()},
            "rows": [
                {"key": k, "route": r, "status": s, "count": n}
                for (k, r, s), n in sorted(self.rows.items())
            ],
            "faults": self.faults,
            "arrivals": [[t, s] for t, s in self.arrivals],
        }


class Stats:
    """The live recorder: one `record()` per request, cheap."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.rows: Counter[tuple[str, str, int]] = Counter()
        # Two deques of plain numbers, not one of tuples: floats and ints are not tracked
        # by the garbage collector, 100,000 tuples would be, and every collection would
        # walk them.
        self.times: deque[float] = deque(maxlen=ARRIVALS_KEPT)
        self.statuses: deque[int] = deque(maxlen=ARRIVALS_KEPT)
        self._labels: dict[str | None, str] = {}

    def label(self, key: str | None) -> str:
        """`key_label(key)`, memoised for known keys."""
        label = self._labels.get(key)
        if label is None:
            label = key_label(key)
            if len(self._labels) < 1000:
                self._labels[key] = label
        return label

    def record(self, key: str | None, route: str, status: int, arrival: float) -> None:
        """Count one request."""
        label = self._labels.get(key) or self.label(key)
        self.rows[(label, route, status)] += 1
        self.times.append(arrival)
        self.statuses.append(status)

    def reset(self) -> None:
        """Forget every count."""
        self.rows.clear()
        self.times.clear()
        self.statuses.clear()

    def snapshot(self, faults: dict[str, int]) -> StatsSnapshot:
        """A frozen copy."""
        arrivals = tuple(zip(self.times, self.statuses, strict=True))
        return StatsSnapshot(dict(self.rows), arrivals, dict(faults))
