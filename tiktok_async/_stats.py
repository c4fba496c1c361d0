"""What a client did: counts, retries by cause, latency percentiles.

Recording is cheap enough for the hot path (a few dict increments and one logarithm per
attempt); `snapshot()` does the work of turning counts into a `ClientStats`. Latency is
kept in a fixed log-scale histogram (buckets 5 % wide from 10 us to 1,000 s), so memory
is constant however long the client runs and a percentile is exact to within 2.5 %.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ClientStats", "StatsRecorder"]

_MIN_SECONDS = 1e-5
_GROWTH = 1.05
_INV_LOG_GROWTH = 1.0 / math.log(_GROWTH)
_BUCKETS = int(math.log(1e3 / _MIN_SECONDS) * _INV_LOG_GROWTH) + 1
#: Where each bucket but the first begins: a latency's bucket is a binary search (in C),
#: not a logarithm (the same bucket but at an edge's last bit).
_EDGES = tuple(_MIN_SECONDS * _GROWTH ** (index + 1) for index in range(_BUCKETS - 1))


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's traffic since it was made.

    - `requests`: attempts sent (every retry is one more).
    - `responses`: answers received, by HTTP status.
    - `errors`: attempts that got no complete answer, by cause (`"timeout"`,
      `"connect"`, `"truncated"`, `"transport"`, `"cancelled"`: the task was cancelled
      while the attempt was on the wire, e.g. by leaving a `fetch_users` loop).
      Every attempt sent ends in one or the other: see `in_flight`.
    - `retries`, `retries_by_cause`: retries started, by the cause of the failure they
      follow (`"throttled"`, `"server_error"`, `"timeout"`, `"connect"`, `"malformed"`
      for a 200 whose body is not JSON, ...).
    - `throttled`: 429 answers of any kind (throttles and used-up quotas).
    - `latency_p50`, `latency_p95`, `latency_p99`: seconds from sending an attempt to
      having its whole body, over every answered attempt; None before the first answer.
    - `concurrency`: attempts in flight allowed now (the adaptive limit bulk runs follow,
      or the fixed one); `concurrency_held_back`: seconds bulk runs spent with every
      worker busy at the ceiling while the rate had room (raise `concurrency` to go
      faster).
    """

    requests: int
    responses: Mapping[int, int]
    errors: Mapping[str, int]
    retries: int
    retries_by_cause: Mapping[str, int]
    throttled: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    concurrency: int = 0
    concurrency_held_back: float = 0.0

    @property
    def in_flight(self) -> int:
        """Attempts sent that have neither an answer nor an error yet: `requests` less
        the responses and errors (0 once nothing runs)."""
        return self.requests - sum(self.responses.values()) - sum(self.errors.values())


class StatsRecorder:
    """Live counters behind `TikTokClient.stats`. Not thread-safe (one event loop)."""

    __slots__ = ("_errors", "_histogram", "_requests", "_responses", "_retries")

    def __init__(self) -> None:
        self._requests = 0
        self._responses: dict[int, int] = {}
        self._errors: dict[str, int] = {}
        self._retries: dict[str, int] = {}
        self._histogram = [0] * _BUCKETS

    def sent(self) -> int:
        """An attempt went out; the attempts sent so far."""
        self._requests += 1
        return self._requests

    @property
    def sent_count(self) -> int:
        """The attempts sent so far."""
        return self._requests

    def answered(self, status: int, seconds: float) -> None:
        """An attempt got a whole answer with `status` after `seconds`."""
        responses = self._responses
        responses[status] = responses.get(status, 0) + 1
        self._histogram[bisect_right(_EDGES, seconds)] += 1

    @property
    def any_answer(self) -> bool:
        """True once any attempt got a whole answer (of any status)."""
        return bool(self._responses)

    def failed(self, cause: str) -> None:
        """An attempt got no complete answer (`cause` as `_protocol.retry_cause` names it,
        or `"cancelled"`)."""
        self._errors[cause] = self._errors.get(cause, 0) + 1

    def retried(self, cause: str) -> None:
        """A retry is about to start after a failure of kind `cause`."""
        self._retries[cause] = self._retries.get(cause, 0) + 1

    def snapshot(self) -> ClientStats:
        """The counts so far, with latency percentiles."""
        p50, p95, p99 = _percentiles(self._histogram, (0.50, 0.95, 0.99))
        return ClientStats(
            requests=self._requests,
            responses=MappingProxyType(dict(self._responses)),
            errors=MappingProxyType(dict(self._errors)),
            retries=sum(self._retries.values()),
            retries_by_cause=MappingProxyType(dict(self._retries)),
            throttled=self._responses.get(429, 0),
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
        )


def _percentiles(histogram: list[int], quantiles: tuple[float, ...]) -> list[float | None]:
    """Each quantile of the histogram: the middle of the bucket it falls in."""
    total = sum(histogram)
    if total == 0:
        return [None] * len(quantiles)
    results: list[float | None] = []
    for quantile in quantiles:
        rank = max(1, math.ceil(quantile * total))
        seen = 0
        for index, count in enumerate(histogram):
            seen += count
            if seen >= rank:
                results.append(_MIN_SECONDS * _GROWTH ** (index + 0.5))
                break
    return results
