"""Section: what HTTPS costs a request, beside plain HTTP.

Two emulators on `SERVER_CPU` (pinned, fast, every user cached), one serving plain HTTP
and one HTTPS with its own CA (`EmulatorProcess(tls=True)`), and one `TikTokClient` on
each (`rate=math.inf`, 64 in flight, the CA passed as `verify=`):

- keep-alive: the two clients take turns in batches (order reversed every other
  round), as the throughput section does; per side the wall and CPU time of its batches
  are summed: requests/s, client CPU per request.
- a new connection per request: one request at a time, each on a client made and closed
  for it (so TCP, and for HTTPS the TLS handshake, every time): the median time of one.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass

from benchmarks._common import (
    FAST,
    KEY,
    SERVER_CPU,
    WORKERS,
    Section,
    cpu_seconds,
    log,
    run_async,
)
from tiktok_async import TikTokClient
from tiktok_async.emulator import EmulatorProcess, existing_handle

HANDLES = [existing_handle(n) for n in range(200)]
PLAIN, TLS = "plain HTTP", "HTTPS (TLS)"
FRESH_REQUESTS = 100  # a side, one at a time, a new connection each (after as many to warm)


@dataclass
class Side:
    """A client on one emulator (process `server_pid`), and what its batches cost."""

    client: TikTokClient
    server_pid: int
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0

    async def batch(self, count: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        server = cpu_seconds(self.server_pid)
        await drive(self.client, count)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.server_cpu += cpu_seconds(self.server_pid) - server
        self.requests += count


async def drive(client: TikTokClient, count: int) -> None:
    """`count` lookups by `WORKERS` workers, handles round-robin."""
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await client.get_user(HANDLES[n % len(HANDLES)])

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


def _client(base_url: str, verify: str | bool) -> TikTokClient:
    return TikTokClient(KEY, base_url, rate=math.inf, concurrency=WORKERS, verify=verify)


Servers = dict[str, tuple[str, "str | bool", int]]  # name -> base URL, verify, pid


async def keep_alive(servers: Servers, rounds: int, batch: int) -> dict[str, Side]:
    sides = {name: Side(_client(url, verify), pid)
             for name, (url, verify, pid) in servers.items()}
    for side in sides.values():
        await side.client.open()
    try:
        for side in sides.values():
            await drive(side.client, len(HANDLES))  # warm: connections and the cache
        for n in range(rounds):
            order = list(sides.values()) if n % 2 == 0 else list(reversed(sides.values()))
            for side in order:
                await side.batch(batch)
    finally:
        for side in sides.values():
            await side.client.aclose()
    return sides


async def fresh_connections(url: str, verify: str | bool, count: int) -> float:
    """Median seconds of one request on a client (a connection) made for it."""
    seconds = []
    for n in range(count):
        started = time.perf_counter()
        async with _client(url, verify) as client:
            await client.get_user(HANDLES[n % len(HANDLES)])
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


async def measure(servers: Servers, rounds: int, batch: int
                  ) -> tuple[dict[str, Side], dict[str, float]]:
    sides = await keep_alive(servers, rounds, batch)
    fresh = {}
    for name in (PLAIN, TLS, PLAIN, TLS):  # twice each, interleaved; the last pair kept
        url, verify, _ = servers[name]
        fresh[name] = await fresh_connections(url, verify, FRESH_REQUESTS)
    return sides, fresh


def run(rounds: int, batch: int, use_uvloop: bool) -> Section:
    section = Section("tls", "HTTPS beside plain HTTP")
    log(f"tls: {rounds} paired rounds of {batch:,} requests a side, then "
        f"2 x {FRESH_REQUESTS} a side on new connections")
    with EmulatorProcess("--key", KEY, *FAST, cpu=SERVER_CPU, start_timeout=60) as plain, \
            EmulatorProcess("--key", KEY, *FAST, cpu=SERVER_CPU, start_timeout=60,
                            tls=True) as tls:
        assert tls.ca_file is not None
        assert plain.pid is not None
        assert tls.pid is not None
        servers: Servers = {PLAIN: (plain.base_url, True, plain.pid),
                            TLS: (tls.base_url, tls.ca_file, tls.pid)}
        sides, fresh = run_async(measure(servers, rounds, batch), use_uvloop)
    _report(section, sides, fresh, rounds, batch)
    return section


def _report(section: Section, sides: dict[str, Side], fresh: dict[str, float], rounds: int,
            batch: int) -> None:
    for name, side in sides.items():
        rate, cpu_us = side.requests / side.wall, side.cpu / side.requests * 1e6
        busy = side.server_cpu / side.wall
        section.rows.append({"side": name, "requests": side.requests, "rate": rate,
                             "cpu_us": cpu_us, "server_busy": busy,
                             "fresh_connection_ms": fresh[name] * 1e3})
        log(f"  {name:12s} {rate:8,.0f} req/s {cpu_us:6.0f} us CPU/request, emulator "
            f"busy {busy:.0%}; new connection {fresh[name] * 1e3:.2f} ms")
    plain, tls = section.rows
    section.figure("HTTPS with keep-alive: requests/s vs plain HTTP",
                   tls["rate"] / plain["rate"], "x", note=f"{tls['rate']:,.0f} vs "
                   f"{plain['rate']:,.0f} req/s")
    section.figure("HTTPS with keep-alive: client CPU per request vs plain HTTP",
                   tls["cpu_us"] / plain["cpu_us"], "x",
                   note=f"{tls['cpu_us']:.0f} us vs {plain['cpu_us']:.0f} us")
    section.figure("a request on a new connection: HTTPS vs plain HTTP",
                   tls["fresh_connection_ms"] / plain["fresh_connection_ms"], "x",
                   note=f"{tls['fresh_connection_ms']:.2f} ms vs "
                        f"{plain['fresh_connection_ms']:.2f} ms (TLS handshake included)")
    section.notes += [
        f"Keep-alive: {rounds} paired rounds of {batch:,} cached lookups a side, 64 in "
        "flight, rate=math.inf; both emulators on one pinned core, "
        "only one busy at a time. The emulator's own TLS work is on that core, not in "
        "the client CPU figure.",
        f"New connection: {FRESH_REQUESTS} requests a side (after as many to warm up), one "
        "at a time, each on a client made and closed for it (TCP connect, and for HTTPS a "
        "TLS handshake with certificate verification, every time); medians, the sides "
        "interleaved.",
        f"Emulator core busy during the batches: {plain['server_busy']:.0%} (plain), "
        f"{tls['server_busy']:.0%} (TLS)"
        + (": it may have been the limit." if max(plain["server_busy"], tls["server_busy"])
           >= 0.9 else ": it was not the limit."),
        "What it means: with keep-alive (the client's default: one pool, reused) TLS adds "
        "the record encryption only; a client made per request would pay a handshake "
        "each time, which is why an app shares one client.",
    ]
