"""Section: rate accuracy at a fixed rate, judged from the emulator's arrival times.

Each side sends cached `/user` lookups from 64 workers for `seconds`; the emulator
records when every request arrived (the figures), and the client when its limiter let
each one go (`on_request` hook; for aiolimiter, inside `async with limiter`): the
difference between the two is the network and the two event loops' jitter. Two figures
per run: the most requests in any 1 s window (the limit's promise: at most rate + burst)
and the mean rate, (arrivals - 1) / (last - first arrival). Sides, interleaved:

- TikTokClient(rate=10, burst=1) and TikTokClient(rate=100, burst=1);
- the two common aiolimiter usages at 50/s, each in front of a plain aiohttp loop:
  `AsyncLimiter(50, 1)` (a bucket 50 deep) and `AsyncLimiter(1, 1/50)` (one at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from benchmarks._baselines import session
from benchmarks._common import (
    FAST,
    KEY,
    WORKERS,
    Section,
    Server,
    interleaved,
    log,
    median,
    run_async,
)
from tiktok_async import ClientHooks, TikTokClient

HANDLES = [f"rate{i}.user" for i in range(200)]


@dataclass(frozen=True)
class Side:
    name: str
    rate: float
    burst: int
    kind: str  # "client", "aiolimiter-bucket", "aiolimiter-smooth"


SIDES = (
    Side("tiktok_async rate=10 burst=1", 10, 1, "client"),
    Side("tiktok_async rate=100 burst=1", 100, 1, "client"),
    Side("aiolimiter AsyncLimiter(50, 1)", 50, 50, "aiolimiter-bucket"),
    Side("aiolimiter AsyncLimiter(1, 1/50)", 50, 1, "aiolimiter-smooth"),
)


async def _loop(one: Callable[[str], Awaitable[object]], seconds: float) -> None:
    """`WORKERS` workers calling `one` for `seconds`; then every worker is cancelled (a
    worker still waiting for the limiter would otherwise send after the end)."""

    async def worker(offset: int) -> None:
        for n in itertools.count(offset, WORKERS):
            await one(HANDLES[n % len(HANDLES)])

    with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError on Python 3.10
        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(WORKERS))), seconds)


async def _client_side(side: Side, base_url: str, seconds: float, sends: list[float]) -> None:
    hooks = ClientHooks(on_request=lambda _path: sends.append(time.time()))
    async with TikTokClient(KEY, base_url, rate=side.rate, burst=side.burst,
                            concurrency=WORKERS, hooks=hooks) as client:
        await _loop(client.get_user, seconds)


async def _aiolimiter_side(side: Side, base_url: str, seconds: float, sends: list[float]
                           ) -> None:
    if side.kind == "aiolimiter-bucket":
        limiter = AsyncLimiter(side.rate, 1)
    else:
        limiter = AsyncLimiter(1, 1 / side.rate)
    async with contextlib.AsyncExitStack() as stack:
        http = await session(stack)

        async def one(handle: str) -> bytes:
            async with limiter:
                sends.append(time.time())
                async with http.get(f"{base_url}/user/{handle}") as resp:
                    return await resp.read()

        await _loop(one, seconds)


def worst_window(times: list[float], seconds: float = 1.0) -> int:
    """The most arrivals within any window of `seconds` (half-open: [t, t + seconds))."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def mean_rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def measure(server: Server, side: Side, seconds: float) -> tuple[list[float], list[float]]:
    """Arrival times at the emulator of one run of `side` (every status: the limit counts
    requests), and the times the client let each request go (after its limiter)."""
    server.reset()
    since = time.time()
    sends: list[float] = []
    if side.kind == "client":
        run_async(_client_side(side, server.base_url, seconds, sends))
    else:
        run_async(_aiolimiter_side(side, server.base_url, seconds, sends))
    return sorted(t for t, _ in server.arrivals(since=since)), sorted(sends)


def run(seconds: float, runs: int) -> Section:
    """The section; each row keeps its first run's arrival offsets (for the chart)."""
    section = Section("rate", "Rate accuracy at a fixed rate")
    windows: dict[str, list[int]] = {}
    sent_windows: dict[str, list[int]] = {}
    means: dict[str, list[float]] = {}
    first_run: dict[str, list[float]] = {}
    log(f"rate accuracy: {runs} interleaved runs of {seconds:g} s per side")
    with Server(*FAST) as server:
        server.warm(HANDLES)
        for _, side in interleaved(SIDES, runs):
            times, sends = measure(server, side, seconds)
            windows.setdefault(side.name, []).append(worst_window(times))
            sent_windows.setdefault(side.name, []).append(worst_window(sends))
            means.setdefault(side.name, []).append(mean_rate(times))
            first_run.setdefault(side.name, times)
            log(f"  {side.name:36s} worst 1 s {windows[side.name][-1]:4d} "
                f"(sent {sent_windows[side.name][-1]:4d})  mean {means[side.name][-1]:7.2f}/s")
    section.notes.append(
        "The figures are judged at the emulator, as API Gateway would count. The emulator "
        "stamps an arrival when its event loop reads the request: when its core is busy, "
        "requests wait and are stamped close together, so a 1 s window can hold more at "
        "the emulator than the client sent in any 1 s. The column \"as sent\" (the client's "
        "own send times) separates the limiter from that jitter.")
    for side in SIDES:
        worst, mean = max(windows[side.name]), median(means[side.name])
        section.rows.append({
            "side": side.name, "rate": side.rate, "burst": side.burst, "runs": runs,
            "seconds": seconds, "worst_1s_window": worst, "worst_1s_each_run": windows[side.name],
            "worst_1s_sent": max(sent_windows[side.name]),
            "worst_1s_sent_each_run": sent_windows[side.name],
            "mean_rate": mean, "mean_share": mean / side.rate,
            "first_run_arrivals": [round(t - first_run[side.name][0], 4)
                                   for t in first_run[side.name]],
        })
        bound = side.rate + (1 if side.kind == "aiolimiter-bucket" else side.burst)
        label = f"{side.name}: worst 1 s window"
        target = f"<= {bound:g}"
        if side.kind == "aiolimiter-bucket":
            target += " (rate + 1, as a smooth limit would)"
        sent = max(sent_windows[side.name])
        section.figure(label, worst, "requests", target, worst <= bound,
                       note=f"{sent} as the client sent them")
        section.figure(f"{side.name}: mean rate", mean / side.rate, "x rate", ">= 0.97x",
                       mean / side.rate >= 0.97, note=f"{mean:.2f}/s")
    return section
