"""Faults: seeded, repeatable, off by default. They apply to API routes only.

Kinds:

- `500`, `502`, `503`, `504`, `408`: that status with API Gateway's body.
- `drop`: the connection is closed without an answer.
- `truncate`: the headers announce the full body, half of it is sent, then the
  connection is closed (a client sees a payload error).
- `slow`: the answer waits `slow_seconds` (longer than a client's timeout).
- `throttle`, `quota`, `forbidden`: 429 Too Many Requests, 429 Limit Exceeded, 403
  Forbidden, as if the usage plan or the key said so (injection only).

`Faults` says what share of requests gets each random fault (drawn in arrival order from a
`random.Random(seed)`, so a run repeats) and the added latency. `FaultPlan.inject(kind, n)`
forces the next `n` API requests to get `kind`, before any random draw.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, fields

FAULT_KINDS = (
    "500", "502", "503", "504", "408", "drop", "truncate", "slow", "throttle", "quota", "forbidden",
)
_RANDOM = {"500": "http_500", "502": "http_502", "503": "http_503", "504": "http_504",
           "drop": "drop", "truncate": "truncate", "slow": "slow"}
_SPREAD = ("http_500", "http_502", "http_503", "http_504")


@dataclass(frozen=True)
class Faults:
    """Shares (0 to 1) of API requests that get each fault, and added latency."""

    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    http_504: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 30.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        shares = [getattr(self, name) for name in _RANDOM.values()]
        if any(s < 0 for s in shares) or sum(shares) > 1:
            raise ValueError("fault shares must be >= 0 and add up to at most 1")
        if self.slow_seconds < 0 or self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("slow_seconds, latency_ms and jitter_ms must be >= 0")

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Faults from a command-line spec.

        A bare number (`0.05`) is spread evenly over 500, 502, 503 and 504. Otherwise a
        comma list of `kind=value`, kinds `500 502 503 504 drop truncate slow` (shares) and
        `slow_seconds latency_ms jitter_ms`: `500=0.02,drop=0.01,slow=0.001,slow_seconds=5`.
        """
        spec = spec.strip()
        if not spec:
            return cls()
        if "=" not in spec:
            share = float(spec) / len(_SPREAD)
            return cls(**dict.fromkeys(_SPREAD, share))
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for item in spec.split(","):
            kind, _, value = item.partition("=")
            name = _RANDOM.get(kind.strip(), kind.strip())
            if name not in names:
                raise ValueError(f"unknown fault {kind.strip()!r}")
            values[name] = float(value)
        return cls(**values)

    def table(self) -> list[tuple[float, str]]:
        """Cumulative (threshold, kind) pairs for one uniform draw."""
        rows, total = [], 0.0
        for kind, name in _RANDOM.items():
            share = float(getattr(self, name))
            if share > 0:
                total += share
                rows.append((total, kind))
        return rows


class FaultPlan:
    """Decides, request by request, which fault (if any) an API request gets."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self._forced: deque[str] = deque()
        self.applied: dict[str, int] = {}
        self.armed = False
        self.configure(faults, seed)

    def configure(self, faults: Faults, seed: int) -> None:
        """New shares and latency, and a fresh draw from `seed`; pending injections stay."""
        self.faults = faults
        self._rng = random.Random(seed)
        self._table = faults.table()
        self._rearm()

    def _rearm(self) -> None:
        f = self.faults
        self.armed = bool(self._forced or self._table or f.latency_ms or f.jitter_ms)

    def inject(self, kind: str, count: int = 1) -> None:
        """Force the next `count` API requests to get `kind` (see `FAULT_KINDS`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count < 0:
            raise ValueError("count must be >= 0")
        self._forced.extend([kind] * count)
        self._rearm()

    def clear(self) -> None:
        """Drop pending injections and the count of applied faults."""
        self._forced.clear()
        self.applied.clear()
        self._rearm()

    def pick(self) -> str | None:
        """The fault for this request, or None."""
        kind: str | None = None
        if self._forced:
            kind = self._forced.popleft()
            self._rearm()
        elif self._table:
            draw = self._rng.random()
            kind = next((k for limit, k in self._table if draw < limit), None)
        if kind is not None:
            self.applied[kind] = self.applied.get(kind, 0) + 1
        return kind

    def delay(self) -> float:
        """Seconds of added latency for this request (fixed plus uniform jitter)."""
        f = self.faults
        jitter = self._rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0
        return (f.latency_ms + jitter) / 1000
