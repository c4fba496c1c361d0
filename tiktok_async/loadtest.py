"""Load runs against the API, measured without coordinated omission (`tiktok-async bench`).

Two ways to load a server, and why the first is the one to trust for latency:

- **open loop** (`rate=`): request *i* is sent at `start + i / rate`, whether or not the
  earlier ones were answered, and its latency is counted from that scheduled time. When
  the server stalls, requests keep coming and each one waits: the stall shows in every
  percentile it should.
- **closed loop** (`concurrency=`): N workers, each sends its next request when its last
  one is answered. That measures throughput, but when the server stalls the workers stop
  sending, so the stall gets N samples instead of the hundreds a real caller would have
  seen, and p99 looks fine (coordinated omission: the load generator coordinates with the
  server it measures).

```python
import math

from tiktok_async import RetryPolicy, TikTokClient
from tiktok_async.loadtest import generated_handles, open_loop_concurrency, run_load

async def main() -> None:
    client = TikTokClient(rate=math.inf, retry=RetryPolicy.never(),
                          concurrency=open_loop_concurrency(40, timeout=35.0))
    async with client:
        report = await run_load(client, rate=40, duration=10, fresh=generated_handles())
    print(report.to_dict()["latency_ms"])      # {'p50': 24.9, 'p90': ..., 'max': ...}
    report.write_json("run.json")
    report.plot("run.png")                     # needs matplotlib
```

Give the client no rate limit (`rate=math.inf`), no retries (a 429 is then reported, not
retried away) and room for every request a stall can pile up (`open_loop_concurrency`):
while the client's `concurrency` requests are in flight, the next one waits for a slot and the
loop is no longer open; the report counts those (`in_flight.cap_hits`).

Inputs: `fresh` are asked once each (handles never asked before: the API's first-fetch
path); `cached` is a warm set, asked once each before the run (not measured), then
repeated. Given both, requests alternate between them; the report keeps them apart.

Needs the `bench` extra (`pip install 'tiktok-async[bench]'`: hdrhistogram, and
matplotlib for the plots). `import tiktok_async` does not load this module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._client import TikTokClient
from ._exceptions import (
    APIStatusError,
    ConnectError,
    DecodeError,
    InvalidInputError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TikTokError,
    TransportError,
    TruncatedBodyError,
)
from ._inputs import parse_video
from ._latency import LatencyHistogram
from ._openfiles import make_room

__all__ = [
    "GroupStats",
    "LoadReport",
    "Samples",
    "generated_handles",
    "open_loop_concurrency",
    "plot_comparison",
    "run_load",
]

#: The input groups, in the report's order: first fetches, then the warm set.
GROUPS = ("fresh", "cached")
_ERROR_NAMES: tuple[tuple[type[TikTokError], str], ...] = (
    (InvalidInputError, "invalid"), (RequestTimeoutError, "timeout"), (ConnectError, "connect"),
    (TruncatedBodyError, "truncated"), (TransportError, "transport"),
    (ResponseTooLargeError, "too_large"), (DecodeError, "decode"),
)
_WARM_CONCURRENCY = 16


def generated_handles(prefix: str | None = None) -> Iterator[str]:
    """Handles never asked before: `<prefix><n>` for n = 0, 1, ...; the default prefix is
    `b` + 8 random hex digits + `_`, new on every call."""
    stem = prefix if prefix is not None else f"b{secrets.token_hex(4)}_"
    return (f"{stem}{n}" for n in itertools.count())


def open_loop_concurrency(rate: float, timeout: float = 35.0) -> int:
    """The client concurrency an open loop at `rate` needs: every request of a `timeout`
    long stall in flight at once (`ceil(rate * timeout) + 1`), as far as the open-file
    limit allows (its soft limit is raised to fit when the hard limit allows)."""
    return make_room(math.ceil(rate * timeout) + 1)


@dataclass
class GroupStats:
    """One group's requests: sent, answered (any HTTP status), statuses, errors, latency.

    `latency` holds answered requests only; a request with no answer (timeout, refused
    connection...) is in `error_counts`, by cause.
    """

    sent: int = 0
    answered: int = 0
    status_counts: Counter[str] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def merge(self, other: GroupStats) -> None:
        """Add `other`'s counts and latencies to these."""
        self.sent += other.sent
        self.answered += other.answered
        self.status_counts.update(other.status_counts)
        self.error_counts.update(other.error_counts)
        self.latency.add(other.latency)

    def summary(self, achieved_rate: float) -> dict[str, Any]:
        """The JSON keys of a group: `sent`, `answered`, `achieved_rate` (given: answers a
        second), `status_counts`, `error_counts`, `latency_ms`."""
        return {
            "sent": self.sent,
            "answered": self.answered,
            "achieved_rate": round(achieved_rate, 3),
            "status_counts": dict(sorted(self.status_counts.items())),
            "error_counts": dict(sorted(self.error_counts.items())),
            "latency_ms": self.latency.summary(),
        }


class Samples:
    """Every request, for the plot: when it was due (s from the start), its latency (s, to
    its answer or failure), its group (an index in the report's `groups`) and status (0: no
    answer)."""

    def __init__(self) -> None:
        self.due = array("d")
        self.latency = array("d")
        self.group = array("B")
        self.status = array("H")

    def add(self, due: float, latency: float, group: int, status: int) -> None:
        """Record one request."""
        self.due.append(due)
        self.latency.append(latency)
        self.group.append(group)
        self.status.append(status)


@dataclass
class LoadReport:
    """What a load run did and saw. `to_dict()` is the JSON form; `total()` every group."""

    mode: Literal["open", "closed"]
    kind: str
    rate: float | None
    concurrency: int
    duration: float | None
    requests: int | None
    target: str = ""
    client_max_attempts: int = 1
    groups: dict[str, GroupStats] = field(default_factory=dict)
    samples: Samples = field(default_factory=Samples)
    elapsed: float = 0.0
    send_span: float = 0.0
    in_flight_max: int = 0
    cap_hits: int = 0
    max_send_lag: float = 0.0
    inputs_ran_out: bool = False
    warmed: int = 0
    started_at: str = ""

    def total(self) -> GroupStats:
        """Every group's counts and latencies together."""
        total = GroupStats()
        for stats in self.groups.values():
            total.merge(stats)
        return total

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: the run's settings, the totals (`sent`,
        `answered`, `achieved_rate`, `status_counts`, `error_counts`, `latency_ms` with
        `p50 p90 p99 p999 max mean`), `in_flight`, then each group under its name and
        the HDR histograms (base64) under `hdr`."""
        total = self.total()
        return {
            **self._settings(),
            **total.summary(self._per_second(total.answered)),
            "send_rate": round(self._send_rate(total.sent), 3),
            "in_flight": {"cap": self.concurrency if self.mode == "open" else None,
                          "max": self.in_flight_max, "cap_hits": self.cap_hits},
            "max_send_lag_ms": round(self.max_send_lag * 1000, 3),
            "inputs_ran_out": self.inputs_ran_out,
            **{name: stats.summary(self._per_second(stats.answered))
               for name, stats in self.groups.items()},
            "hdr": {"all": total.latency.encode(),
                    **{name: stats.latency.encode() for name, stats in self.groups.items()}},
        }

    def _per_second(self, answered: int) -> float:
        """The achieved rate: answers a second over the run, from its start to its last
        answer (an open loop: to the end of its schedule if that is later). The wait for
        the last answers counts, so a slow answer lowers it by about latency / duration."""
        return answered / self.elapsed if self.elapsed > 0 else 0.0

    def _send_rate(self, sent: int) -> float:
        """Requests sent a second, first send to last: `(sent - 1) / span`; whether the
        sender held its schedule."""
        return (sent - 1) / self.send_span if sent > 1 and self.send_span > 0 else 0.0

    def _settings(self) -> dict[str, Any]:
        return {
            "version": 1, "started_at": self.started_at, "target": self.target,
            "kind": self.kind, "mode": self.mode, "rate": self.rate,
            "concurrency": self.concurrency, "duration_s": self.duration,
            "requests_asked": self.requests, "retries": self.client_max_attempts - 1,
            "groups": list(self.groups), "warmed": self.warmed,
            "elapsed_s": round(self.elapsed, 3),
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write `to_dict()` as indented JSON."""
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.to_dict(), out, indent=2)
            out.write("\n")

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Draw latency over time and the percentile curve to a PNG (needs matplotlib)."""
        from ._loadplot import plot_report

        plot_report(self, path)


def plot_comparison(
    reports: Sequence[Mapping[str, Any]], labels: Sequence[str], path: str | os.PathLike[str]
) -> None:
    """Draw the percentile curves of reports read back from JSON side by side (a PNG)."""
    from ._loadplot import plot_comparison as draw

    draw(reports, labels, path)


# -- the run ------------------------------------------------------------------------------


async def run_load(
    client: TikTokClient,
    *,
    rate: float | None = None,
    concurrency: int | None = None,
    duration: float | None = None,
    requests: int | None = None,
    fresh: Iterable[str] | None = None,
    cached: Sequence[str] | None = None,
    kind: Literal["users", "videos"] = "users",
) -> LoadReport:
    """Load the API through `client` and measure it.

    - `rate` (requests a second): an open loop; or `concurrency` (workers): a closed one.
      Exactly one.
    - `duration` (seconds) or `requests` (a count): when to stop sending; at least one
      (the run stops at whichever comes first). What was sent is then awaited.
    - `fresh`: inputs asked once each, in order (the run stops early if they run out);
      `cached`: a warm set asked once before the run, then repeated. At least one.
    - `kind`: `"users"` (handles) or `"videos"` (video links or `handle,videoId`).

    Raises `ValueError` for settings that do not make a run; the API's errors never
    leave it: they are counted in the report.
    """
    _check(rate, concurrency, duration, requests, fresh, cached, kind)
    report = LoadReport("open" if rate else "closed", kind, float(rate) if rate else None,
                        _slots(client) if rate else concurrency or 0, duration, requests)
    _describe(report, client, fresh is not None, bool(cached))
    ask = _asker(client, kind)
    report.warmed = await _warm(ask, cached or ())
    inputs = _Inputs(iter(fresh) if fresh is not None else None, cached)
    run = _LoadRun(ask, inputs, report, duration, requests)
    await (run.open_loop(rate) if rate else run.closed_loop(concurrency or 1))
    return report


def _check(rate: float | None, concurrency: int | None, duration: float | None,
           requests: int | None, fresh: object, cached: Sequence[str] | None,
           kind: str) -> None:
    if (rate is None) == (concurrency is None):
        raise ValueError("give rate (an open loop) or concurrency (a closed loop): one of them")
    if rate is not None and not (0 < rate < math.inf):
        raise ValueError(f"rate must be a number above 0, not {rate!r}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be 1 or more, not {concurrency!r}")
    if duration is None and requests is None:
        raise ValueError("give duration or requests: when to stop sending")
    if (duration is not None and not duration > 0) or (requests is not None and requests < 1):
        raise ValueError("duration must be above 0 and requests 1 or more")
    if fresh is None and not cached:
        raise ValueError("give fresh inputs, a non-empty cached set, or both")
    if kind not in ("users", "videos"):
        raise ValueError(f"kind must be 'users' or 'videos', not {kind!r}")


def _describe(report: LoadReport, client: TikTokClient, fresh: bool, cached: bool) -> None:
    """The client's side of the report: its URL, its retries, the groups."""
    report.target = client.base_url
    report.client_max_attempts = client.retry_policy.max_attempts
    used = zip(GROUPS, (fresh, cached), strict=True)
    report.groups = {name: GroupStats() for name, on in used if on}


def _slots(client: TikTokClient) -> int:
    """Attempts the open client lets in flight at once (its ceiling, where it has an
    adaptive limit below it for bulk runs)."""
    ceiling = client.max_concurrency
    return ceiling


def _asker(client: TikTokClient, kind: str) -> Callable[[str], Awaitable[object]]:
    if kind == "users":
        return client.get_user

    async def video(text: str) -> object:
        ref = parse_video(text)
        return await client.get_video(ref.handle, ref.video_id)

    return video


async def _warm(ask: Callable[[str], Awaitable[object]], cached: Sequence[str]) -> int:
    """Ask each of `cached` once (answers not measured); how many were answered."""
    gate = asyncio.Semaphore(_WARM_CONCURRENCY)

    async def one(text: str) -> bool:
        async with gate:
            return (await _outcome(ask, text))[0] != 0

    return sum(await asyncio.gather(*(one(text) for text in cached)))


async def _outcome(ask: Callable[[str], Awaitable[object]], text: str) -> tuple[int, str | None]:
    """(HTTP status or 0, error cause or None) of one request."""
    try:
        await ask(text)
    except TikTokError as exc:
        return exc.status or 0, None if isinstance(exc, APIStatusError) else _cause(exc)
    return 200, None


def _cause(exc: TikTokError) -> str:
    return next((name for cls, name in _ERROR_NAMES if isinstance(exc, cls)), "other")


class _Inputs:
    """The next (text, group): fresh inputs once each, the warm set round and round,
    alternating when both are given."""

    def __init__(self, fresh: Iterator[str] | None, cached: Sequence[str] | None) -> None:
        self._sources: list[tuple[str, Iterator[str]]] = []
        if fresh is not None:
            self._sources.append(("fresh", fresh))
        if cached:
            self._sources.append(("cached", itertools.cycle(cached)))
        self._turns = itertools.cycle(self._sources)
        self.ran_out = False

    def next(self) -> tuple[str, str] | None:
        group, source = next(self._turns)
        text = next(source, None)
        if text is None:
            self.ran_out = True
            return None
        return text, group


class _LoadRun:
    """One run's loop, clock and in-flight count; it fills the report."""

    def __init__(self, ask: Callable[[str], Awaitable[object]], inputs: _Inputs,
                 report: LoadReport, duration: float | None, requests: int | None) -> None:
        self._ask, self._inputs, self.report = ask, inputs, report
        self._duration, self._requests = duration, requests
        self._clock = time.monotonic  # not loop.time(): uvloop's counts whole milliseconds
        self._start = self._last = 0.0
        self._sent = self._in_flight = 0
        self._group_index = {name: i for i, name in enumerate(report.groups)}

    def _begin(self) -> None:
        self._start = self._last = self._clock()
        self.report.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _may_send(self, due: float) -> bool:
        if self._requests is not None and self._sent >= self._requests:
            return False
        return self._duration is None or due < self._start + self._duration

    def _next(self, due: float) -> tuple[str, str] | None:
        """The next input if the run goes on at `due`, counted as sent; else None."""
        item = self._inputs.next() if self._may_send(due) else None
        if item is None:
            self.report.inputs_ran_out = self._inputs.ran_out
            return None
        self._sent += 1
        self.report.groups[item[1]].sent += 1
        return item

    async def open_loop(self, rate: float) -> None:
        """Send request i at start + i / rate, each in its own task; await them all."""
        self._begin()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while (item := self._next(due := self._start + self._sent / rate)) is not None:
                await self._sleep_until(due)
                self._note_cap()
                task = asyncio.create_task(self._one(item, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await _settle(tasks)
        finally:
            await _cancel(tasks)
        self._finish(self._start + self._sent / rate)

    async def _sleep_until(self, due: float) -> None:
        wait = due - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self.report.max_send_lag = max(self.report.max_send_lag, self._clock() - due)

    def _note_cap(self) -> None:
        if self._in_flight >= self.report.concurrency:
            self.report.cap_hits += 1

    async def closed_loop(self, concurrency: int) -> None:
        """`concurrency` workers, each sending its next request once its last is done."""
        self._begin()
        await asyncio.gather(*(self._worker() for _ in range(concurrency)))
        self._finish()

    async def _worker(self) -> None:
        while (item := self._next(self._clock())) is not None:
            await self._one(item, self._clock())

    async def _one(self, item: tuple[str, str], due: float) -> None:
        self.report.send_span = self._clock() - self._start
        self._in_flight += 1
        self.report.in_flight_max = max(self.report.in_flight_max, self._in_flight)
        try:
            status, cause = await _outcome(self._ask, item[0])
        finally:
            self._in_flight -= 1
        self._record(item[1], due, status, cause)

    def _record(self, group: str, due: float, status: int, cause: str | None) -> None:
        now = self._last = self._clock()
        stats = self.report.groups[group]
        if status:
            stats.answered += 1
            stats.status_counts[str(status)] += 1
            stats.latency.record(now - due)
        if cause is not None:
            stats.error_counts[cause] += 1
        self.report.samples.add(due - self._start, now - due, self._group_index[group], status)

    def _finish(self, schedule_end: float = 0.0) -> None:
        """The run lasts to its last answer; an open loop's, at least its schedule: n
        requests at `rate` fill n / rate seconds."""
        self.report.elapsed = max(self._last, schedule_end) - self._start


async def _settle(tasks: set[asyncio.Task[None]]) -> None:
    await asyncio.gather(*list(tasks))


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
