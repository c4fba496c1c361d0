"""Client throughput: TikTokClient beside a bare aiohttp + msgspec loop and httpx + pydantic.

    python benchmarks/client_bench.py [--requests 20000] [--runs 5] [--uvloop] [--json OUT]

The emulator runs in its own process pinned to core 0 (`EmulatorProcess(cpu=0)`, on
uvloop, no upstream latency, every handle exists); this process pins itself to core 1.
Every side does the same thing: cached `GET /user/{handle}` lookups of a fixed set of 200
handles (warmed first), 64 workers over one connection pool of 64, the body decoded into
a typed object. Sides run interleaved, `--runs` times each; the table gives medians of
requests/s, of client CPU per request (`time.process_time()` delta / requests), and of
the share of its core the emulator used ("server busy": near 100 % means it was the limit).

1. bare: one `aiohttp.ClientSession`, `resp.read()`, a reused `msgspec.json.Decoder`.
2. client: `TikTokClient(concurrency=64)` (no rate limit), `get_user(handle)`.
3. httpx: `httpx.AsyncClient` + a pydantic model (`model_validate_json`): what many write.
4. (`--json-side`) aiohttp + `json.loads`: the bare loop with plain dicts, no validation.

`compare()` is the same comparison as a function (`benchmarks/bench_throughput.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import msgspec
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from tiktok_async import TikTokClient, UserProfile
from tiktok_async.emulator import EmulatorProcess

WORKERS = 64
HANDLES = [f"bench{i}.user" for i in range(200)]
SERVER_CPU, CLIENT_CPU = 0, 1


#: The emulator's process id, to read its CPU time (`/proc/PID/stat`) around each run.
server_pid: int | None = None


def server_cpu_seconds() -> float:
    """User + system CPU seconds of the emulator process so far (0 where unknown)."""
    if server_pid is None:
        return 0.0
    try:
        with open(f"/proc/{server_pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    side: str
    requests: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.requests * 1e6

    @property
    def server_busy(self) -> float:
        """Share of one core the emulator used during the run (near 1: it was the limit)."""
        return self.server_cpu_seconds / self.seconds


async def drive(count: int, one: Callable[[str], Awaitable[object]]) -> None:
    """`count` calls of `one(handle)` by `WORKERS` workers, handles round-robin."""
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            await one(HANDLES[i % len(HANDLES)])

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def timed(side: str, count: int, one: Callable[[str], Awaitable[object]]) -> Run:
    await drive(len(HANDLES), one)  # warm this side's connections
    wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu_seconds()
    await drive(count, one)
    return Run(
        side,
        count,
        time.perf_counter() - wall,
        time.process_time() - cpu,
        server_cpu_seconds() - server,
    )


# --- 1. bare aiohttp + msgspec -------------------------------------------------------------


async def bare(base_url: str, key: str, count: int) -> Run:
    decoder = msgspec.json.Decoder(UserProfile, strict=False)
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": key}) as session:

        async def one(handle: str) -> UserProfile:
            async with session.get(f"{base_url}/user/{handle}") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
                return decoder.decode(body)

        return await timed("bare aiohttp+msgspec", count, one)


async def aiohttp_json(base_url: str, key: str, count: int) -> Run:
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": key}) as session:

        async def one(handle: str) -> dict[str, Any]:
            async with session.get(f"{base_url}/user/{handle}") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
                data: dict[str, Any] = json.loads(body)
                return data

        return await timed("aiohttp+json dicts", count, one)


# --- 2. TikTokClient -------------------------------------------------------------------------


async def client(base_url: str, key: str, count: int) -> Run:
    async with TikTokClient(key, base_url, concurrency=WORKERS) as tiktok:
        return await timed("TikTokClient", count, tiktok.get_user)


# --- 3. httpx + pydantic ---------------------------------------------------------------------


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class PUser(_Camel):
    id: str
    nickname: str | None = None
    id_dup: str | None = None
    sec_uid: str | None = None
    profile_bio: str | None = None
    profile_picture_url: str | None = None
    is_verified: bool = False
    is_private_account: bool = False
    created_at: str | None = None
    updated_at: str | None = None


class PUserStats(_Camel):
    digg_count: int
    follower_count: int
    following_count: int
    friend_count: int
    heart_count: int
    heart: int
    video_count: int


class PUserProfile(_Camel):
    user: PUser
    stats: PUserStats


async def httpx_pydantic(base_url: str, key: str, count: int) -> Run:
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(headers={"x-api-key": key}, limits=limits, timeout=35) as http:

        async def one(handle: str) -> PUserProfile:
            resp = await http.get(f"{base_url}/user/{handle}")
            resp.raise_for_status()
            return PUserProfile.model_validate_json(resp.content)

        return await timed("httpx+pydantic", count, one)


# --- running ---------------------------------------------------------------------------------

Side = Callable[[str, str, int], Coroutine[Any, Any, Run]]


def run_side(side: Side, base_url: str, key: str, count: int, use_uvloop: bool) -> Run:
    coro = side(base_url, key, count)
    if not use_uvloop:
        return asyncio.run(coro)
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        run: Run = loop.run_until_complete(coro)
    finally:
        loop.close()
    return run


def median_row(runs: list[Run], reference: Run | None) -> dict[str, Any]:
    rate = statistics.median(r.rate for r in runs)
    cpu = statistics.median(r.cpu_us for r in runs)
    busy = statistics.median(r.server_busy for r in runs)
    row: dict[str, Any] = {
        "side": runs[0].side,
        "runs": len(runs),
        "rate": rate,
        "cpu_us": cpu,
        "server_busy": busy,
    }
    if reference is not None:
        row["rate_vs_bare"] = rate / reference.rate
        row["cpu_vs_bare"] = cpu / reference.cpu_us
    return row


def print_table(rows: list[dict[str, Any]], loop_name: str) -> None:
    print(f"\n{loop_name}: medians")
    print(
        "| side | runs | requests/s | client CPU us/request | vs bare (req/s, CPU) | server busy |"
    )
    print("|---|---|---:|---:|---|---:|")
    for row in rows:
        versus = (
            f"{row['rate_vs_bare']:.0%}, {row['cpu_vs_bare']:.2f}x"
            if "rate_vs_bare" in row
            else "-"
        )
        cells = [
            row["side"],
            str(row["runs"]),
            f"{row['rate']:,.0f}",
            f"{row['cpu_us']:.0f}",
            versus,
            f"{row['server_busy']:.0%}",
        ]
        print("| " + " | ".join(cells) + " |")


def compare(
    base_url: str,
    key: str,
    sides: list[tuple[Side, int]],
    runs: int,
    use_uvloop: bool = False,
) -> dict[str, list[Run]]:
    """Every side `runs` times, interleaved (every other round reversed): runs by side."""
    results: dict[str, list[Run]] = {}
    for n in range(runs):
        for side, count in sides if n % 2 == 0 else reversed(sides):
            run = run_side(side, base_url, key, count, use_uvloop)
            results.setdefault(run.side, []).append(run)
            print(
                f"run {n + 1}: {run.side:22s} {run.rate:9,.0f} req/s {run.cpu_us:6.0f} us CPU/req"
                f"  server busy {run.server_busy:4.0%}",
                file=sys.stderr,
            )
    return results


def median_rows(results: dict[str, list[Run]]) -> list[dict[str, Any]]:
    """One row of medians per side; every side but the bare loop is compared with it."""
    bare_runs = results["bare aiohttp+msgspec"]
    reference = Run(
        "bare",
        1,
        1 / statistics.median(r.rate for r in bare_runs),
        statistics.median(r.cpu_us for r in bare_runs) / 1e6,
    )
    return [
        median_row(runs, None if name.startswith("bare") else reference)
        for name, runs in results.items()
    ]


def benchmark(args: argparse.Namespace, base_url: str, key: str) -> list[dict[str, Any]]:
    sides: list[tuple[Side, int]] = [(bare, args.requests), (client, args.requests)]
    if args.json_side:
        sides.append((aiohttp_json, args.requests))
    if not args.no_httpx:
        sides.append((httpx_pydantic, args.httpx_requests))
    return median_rows(compare(base_url, key, sides, args.runs, args.uvloop))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="per run, bare and client")
    parser.add_argument("--httpx-requests", type=int, default=2_000, help="per run, httpx side")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run the client side on uvloop")
    parser.add_argument("--no-httpx", action="store_true", help="skip the (slow) httpx side")
    parser.add_argument("--json-side", action="store_true", help="add aiohttp + json.loads")
    parser.add_argument("--json", metavar="OUT", help="also write the medians as JSON")
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    key = "bench-key"
    server_args = ("--key", key, "--upstream-latency-ms", "0", "--missing-share", "0")
    global server_pid
    with EmulatorProcess(*server_args, cpu=SERVER_CPU) as server:
        server_pid = server.pid
        rows = benchmark(args, server.base_url, key)
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print_table(rows, loop_name)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"loop": loop_name, "args": vars(args), "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()
