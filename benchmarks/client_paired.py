"""Client throughput, paired: every side in ONE event loop, alternating short batches.

    python benchmarks/client_paired.py [--rounds 30] [--batch 1000] [--uvloop] [--httpx]

`client_bench.py` runs each side in its own `asyncio.run`, one after the other; on a
machine shared with other work, a burst of someone else's load lands on one side's run
and not the other's, and the medians swing by tens of percent. Here the sides are open
side by side (the same emulator process, pinned to core 0; this process on core 1) and
take turns in batches of `--batch` requests for `--rounds` rounds (the order reversed
every other round), so a spell of outside load hits both about equally. Per side the
wall and CPU time of its batches are summed: requests/s = requests / wall, CPU per
request = `time.process_time()` / requests.

Same requests as `client_bench.py`: cached `GET /user/{handle}` of 200 warmed handles,
64 workers, one pool of 64 connections, the body decoded into a typed object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.client_bench import HANDLES, WORKERS, PUserProfile, drive
from tiktok_async import TikTokClient, UserProfile
from tiktok_async.emulator import EmulatorProcess

One = Callable[[str], Awaitable[object]]
SERVER_CPU, CLIENT_CPU = 0, 1


@dataclass
class Tally:
    """Summed wall and CPU seconds of one side's batches."""

    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    batches: list[float] = field(default_factory=list)  # CPU us/request per batch

    def add(self, requests: int, wall: float, cpu: float) -> None:
        self.requests += requests
        self.wall += wall
        self.cpu += cpu
        self.batches.append(cpu / requests * 1e6)


async def open_bare(stack: contextlib.AsyncExitStack, base_url: str, key: str) -> One:
    decoder = msgspec.json.Decoder(UserProfile, strict=False)
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=WORKERS), headers={"x-api-key": key}
        )
    )

    async def one(handle: str) -> UserProfile:
        async with session.get(f"{base_url}/user/{handle}") as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")
            return decoder.decode(body)

    return one


async def open_client(stack: contextlib.AsyncExitStack, base_url: str, key: str) -> One:
    client = await stack.enter_async_context(TikTokClient(key, base_url, concurrency=WORKERS))
    stack.callback(lambda: print(f"TikTokClient: {client.stats}", file=sys.stderr))
    return client.get_user


async def open_httpx(stack: contextlib.AsyncExitStack, base_url: str, key: str) -> One:
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    http = await stack.enter_async_context(
        httpx.AsyncClient(headers={"x-api-key": key}, limits=limits, timeout=35)
    )

    async def one(handle: str) -> PUserProfile:
        resp = await http.get(f"{base_url}/user/{handle}")
        resp.raise_for_status()
        return PUserProfile.model_validate_json(resp.content)

    return one


async def paired(
    base_url: str, key: str, rounds: int, batch: int, with_httpx: bool
) -> dict[str, Tally]:
    openers: dict[str, Callable[..., Awaitable[One]]] = {
        "bare aiohttp+msgspec": open_bare,
        "TikTokClient": open_client,
    }
    if with_httpx:
        openers["httpx+pydantic"] = open_httpx
    async with contextlib.AsyncExitStack() as stack:
        sides = {name: await opener(stack, base_url, key) for name, opener in openers.items()}
        for one in sides.values():
            await drive(len(HANDLES), one)  # warm connections and the emulator's cache
        tallies = {name: Tally() for name in sides}
        for n in range(rounds):
            order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
            for name, one in order:
                count = batch if not name.startswith("httpx") else max(batch // 20, 50)
                wall, cpu = time.perf_counter(), time.process_time()
                await drive(count, one)
                tallies[name].add(count, time.perf_counter() - wall, time.process_time() - cpu)
    return tallies


def report(tallies: dict[str, Tally], loop_name: str) -> None:
    bare = tallies["bare aiohttp+msgspec"]
    bare_rate, bare_cpu = bare.requests / bare.wall, bare.cpu / bare.requests * 1e6
    print(f"\n{loop_name}, paired: {len(bare.batches)} rounds")
    print("| side | requests | requests/s | client CPU us/request | vs bare (req/s, CPU) |")
    print("|---|---:|---:|---:|---|")
    for name, tally in tallies.items():
        rate, cpu = tally.requests / tally.wall, tally.cpu / tally.requests * 1e6
        versus = "-" if tally is bare else f"{rate / bare_rate:.0%}, {cpu / bare_cpu:.2f}x"
        print(f"| {name} | {tally.requests:,} | {rate:,.0f} | {cpu:.0f} | {versus} |")


def run(coro: Awaitable[dict[str, Tally]], use_uvloop: bool) -> dict[str, Tally]:
    async def main() -> dict[str, Tally]:
        return await coro

    if not use_uvloop:
        return asyncio.run(main())
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        result: dict[str, Tally] = loop.run_until_complete(main())
    finally:
        loop.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1000, help="requests per side per round")
    parser.add_argument("--uvloop", action="store_true", help="run the client process on uvloop")
    parser.add_argument("--httpx", action="store_true", help="add httpx+pydantic (batch / 20)")
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    key = "bench-key"
    server_args = ("--key", key, "--upstream-latency-ms", "0", "--missing-share", "0")
    with EmulatorProcess(*server_args, cpu=SERVER_CPU) as server:
        coro = paired(server.base_url, key, args.rounds, args.batch, args.httpx)
        tallies = run(coro, args.uvloop)
    report(tallies, "uvloop" if args.uvloop else "asyncio")


if __name__ == "__main__":
    main()
