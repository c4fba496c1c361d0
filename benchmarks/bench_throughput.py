"""Section: throughput and client CPU per request, paired.

TikTokClient as users get it (no rate given: the adaptive rate, run for
`SLOW_START_SECONDS` first so its slow start is over), and with no client-side limit
(`rate=math.inf`), beside the baselines of `_baselines`: a bare aiohttp + msgspec loop (the
floor), aiohttp with dicts from `json`, and httpx + pydantic; cached `/user` lookups of
200 warmed handles, 64 workers, one pool of 64 each. The targets are judged on the
default client. Every side is open in one event loop and they take turns in batches
(order reversed every other round), so a spell of outside load on this shared machine
hits every side about equally; per side the wall and CPU time of its batches are summed:
requests/s = requests / wall, CPU per request = `time.process_time()` / requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._baselines import One, open_bare, open_httpx, open_json
from benchmarks._common import (
    FAST,
    KEY,
    WORKERS,
    Section,
    Server,
    Tally,
    cpu_seconds,
    log,
    run_async,
)
from tiktok_async import TikTokClient

BARE, OURS, UNLIMITED, JSON, HTTPX = (
    "bare aiohttp+msgspec", "TikTokClient", "TikTokClient(rate=inf)", "aiohttp+json dicts",
    "httpx+pydantic")
HANDLES = [f"bench{i}.user" for i in range(200)]
#: How long the default (adaptive) client runs before the rounds, to leave its slow start.
SLOW_START_SECONDS = 6.0


async def drive(count: int, one: One) -> None:
    """`count` calls of `one(handle)` by `WORKERS` workers, handles round-robin."""
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            await one(HANDLES[i % len(HANDLES)])

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def open_client(stack: contextlib.AsyncExitStack, base_url: str, key: str) -> One:
    """TikTokClient as users get it: no rate given, so the adaptive rate runs."""
    client = await stack.enter_async_context(TikTokClient(key, base_url, concurrency=WORKERS))
    return client.get_user


async def open_unlimited(stack: contextlib.AsyncExitStack, base_url: str, key: str) -> One:
    """TikTokClient with no client-side limit at all (`rate=math.inf`)."""
    client = await stack.enter_async_context(
        TikTokClient(key, base_url, rate=math.inf, concurrency=WORKERS))
    return client.get_user


async def _leave_slow_start(one: One, seconds: float) -> None:
    """Requests for `seconds`: the adaptive rate doubles from 10/s every half second."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        await drive(len(HANDLES), one)


OPENERS: dict[str, Callable[..., Awaitable[One]]] = {
    BARE: open_bare,
    OURS: open_client,
    UNLIMITED: open_unlimited,
    JSON: open_json,
    HTTPX: open_httpx,
}


async def _take_turns(sides: dict[str, One], rounds: int, batch: int, httpx_batch: int,
                      server_pid: int) -> tuple[dict[str, Tally], dict[str, float]]:
    """`rounds` rounds of one batch a side, the order reversed every other round."""
    tallies = {name: Tally() for name in sides}
    server_cpu = dict.fromkeys(sides, 0.0)
    for n in range(rounds):
        order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
        for name, one in order:
            count = httpx_batch if name == HTTPX else batch
            wall, cpu = time.perf_counter(), time.process_time()
            server = cpu_seconds(server_pid)
            await drive(count, one)
            tallies[name].add(count, time.perf_counter() - wall, time.process_time() - cpu)
            server_cpu[name] += cpu_seconds(server_pid) - server
    return tallies, server_cpu


async def paired(base_url: str, rounds: int, batch: int, httpx_batch: int, server_pid: int
                 ) -> tuple[dict[str, Tally], dict[str, float], float]:
    """Tallies per side, the emulator's CPU seconds per side (summed over batches), and
    the default client's adaptive rate at the end."""
    async with contextlib.AsyncExitStack() as stack:
        sides = {name: await opener(stack, base_url, KEY) for name, opener in OPENERS.items()}
        for one in sides.values():
            await drive(len(HANDLES), one)  # warm connections
        await _leave_slow_start(sides[OURS], SLOW_START_SECONDS)
        tallies, server_cpu = await _take_turns(sides, rounds, batch, httpx_batch, server_pid)
        default = getattr(sides[OURS], "__self__", None)  # the client behind get_user
        adaptive_rate = float(getattr(default, "rate", None) or 0.0)
    return tallies, server_cpu, adaptive_rate


def _rows(tallies: dict[str, Tally], server_cpu: dict[str, float], rounds: int
          ) -> list[dict[str, Any]]:
    """One row a side; every side but the bare loop compared with it."""
    bare = tallies[BARE]
    bare_rate, bare_cpu = bare.requests / bare.wall, bare.cpu / bare.requests * 1e6
    rows = []
    for name, tally in tallies.items():
        rate, cpu = tally.requests / tally.wall, tally.cpu / tally.requests * 1e6
        row: dict[str, Any] = {
            "side": name, "runs": rounds, "requests": tally.requests, "rate": rate,
            "cpu_us": cpu, "cpu_us_median_batch": statistics.median(tally.batches),
            "server_busy": server_cpu[name] / tally.wall,
        }
        if name != BARE:
            row.update(rate_vs_bare=rate / bare_rate, cpu_vs_bare=cpu / bare_cpu)
        rows.append(row)
        log(f"  {name:22s} {rate:8,.0f} req/s {cpu:6.0f} us CPU/request")
    return rows


def _figures(section: Section) -> None:
    by_side = {row["side"]: row for row in section.rows}
    bare, ours = by_side[BARE], by_side[OURS]
    httpx, unlimited = by_side[HTTPX], by_side[UNLIMITED]
    section.figure("tiktok_async requests/s", ours["rate"], "req/s")
    section.figure("bare aiohttp+msgspec requests/s", bare["rate"], "req/s")
    section.figure("requests/s vs bare aiohttp+msgspec", ours["rate_vs_bare"], "x",
                   ">= 0.85x", ours["rate_vs_bare"] >= 0.85)
    section.figure("client CPU per request vs bare", ours["cpu_vs_bare"], "x",
                   "<= 1.3x", ours["cpu_vs_bare"] <= 1.3,
                   note=f"{ours['cpu_us']:.0f} us vs {bare['cpu_us']:.0f} us")
    section.figure("rate=inf: requests/s vs bare", unlimited["rate_vs_bare"], "x",
                   "(no client-side limit; for comparison)", None,
                   note=f"CPU {unlimited['cpu_vs_bare']:.2f}x bare")
    versus_httpx = ours["rate"] / httpx["rate"]
    section.figure("requests/s vs httpx+pydantic", versus_httpx, "x", ">= 10x",
                   versus_httpx >= 10)


def run(rounds: int, batch: int, httpx_batch: int, use_uvloop: bool) -> Section:
    section = Section("throughput", "Throughput and client CPU per request")
    log(f"throughput: {rounds} paired rounds of {batch:,} requests a side "
        f"({httpx_batch} for httpx)")
    with Server(*FAST) as server:
        server.warm(HANDLES)
        tallies, server_cpu, adaptive_rate = run_async(
            paired(server.base_url, rounds, batch, httpx_batch, server.pid), use_uvloop)
    section.rows = _rows(tallies, server_cpu, rounds)
    _figures(section)
    busiest = max(row["server_busy"] for row in section.rows)
    section.notes += [
        f"Paired: {rounds} rounds, every side open in one event loop, taking turns in "
        f"batches of {batch:,} requests ({httpx_batch} for httpx), order reversed every "
        "other round; figures are sums over the batches (the JSON also has the median "
        "CPU per batch). A spell of outside load hits every side about equally.",
        f"TikTokClient (the default, adaptive) ran {SLOW_START_SECONDS:g} s of requests "
        "before the rounds, so its slow start (from 10/s, doubling every 0.5 s) is over; "
        "against this emulator no 429 ever comes, and the limiter stays in the path of "
        f"every request. Its adaptive rate after the last round: {adaptive_rate:,.0f}/s.",
        f"Emulator core busy at most {busiest:.0%} during any side's batches: "
        + ("it was not the limit." if busiest < 0.9 else "it may have been the limit."),
        "httpx runs here without `sniffio` installed (anyio no longer requires it), as a "
        "fresh `pip install httpx` gets it: httpcore then tries a failing import on every "
        "lock, part of its cost.",
    ]
    return section
