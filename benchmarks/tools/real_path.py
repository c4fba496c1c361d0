"""The bulk path's layers, one at a time, paired inside a real run: where the µs go.

`hot_path` measures the client's own Python without the network; a real run pays more
for the same code (a loop of 0.74 µs in `timeit` cost 5.1 µs a request inside a bulk run
of cached users here) and pays for things the lab cannot show: aiohttp's timer a request
(11-17 µs, found with this tool), slots left idle between an answer and the next input
(10 µs). So the sides here are real requests to the emulator (in its own process, cached
users), each a layer more of ours than the one before, all in one event loop, interleaved
round by round (order reversed every other round); the figure is the median CPU
(`time.process_time()`, this process) a request, and its ratio to the bare loop, with the
cyclic collector's runs per 1,000 requests (`--no-gc`: the collector off, to see its share).

- `bare`: 64 workers, aiohttp + msgspec (the baseline of `bench_bulk`);
- `transport`: 64 workers calling the client's `Transport.get` and decoding the answer;
- `get_user`: 64 workers calling `get_user` (64 fixed, no rate limit);
- `fetch_users fixed`, `... no dedupe`: the bulk path with the same settings;
- `fetch_users defaults`: `TikTokClient(key, url)`, after two runs (its rate and limit).

    python -m benchmarks.tools.real_path [--inputs 5000] [--rounds 12] [--no-gc]

The collector column is there because of what it found (docs/benchmarks.md, stop 29):
with the spare workers, answers free their objects in one part of a loop turn and the
requests the freed slots let go allocate theirs in the next, so CPython's count of new
objects (which does not go below zero) only climbs; at 32 or more in flight it passes
700 every 20-30 requests and the collector runs for nothing (it finds no garbage).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import statistics
from collections.abc import Awaitable, Callable

from benchmarks._baselines import open_bare
from benchmarks._common import FAST, KEY, WORKERS, Server, tool_parser
from benchmarks.bench_bulk import drain, handles, warm_handles
from benchmarks.tools.hot_path import in_workers, median_cpu
from tiktok_async import TikTokClient
from tiktok_async._inputs import parse_handle, user_path
from tiktok_async._models import decode_user_profile
from tiktok_async._protocol import decipher_response

Side = Callable[[], Awaitable[None]]


async def _sides(stack: contextlib.AsyncExitStack, base_url: str, names: list[str]
                 ) -> dict[str, Side]:
    bare = await open_bare(stack, base_url, KEY)
    fixed = await stack.enter_async_context(TikTokClient(
        KEY, base_url, rate=math.inf, concurrency=WORKERS, adaptive_concurrency=False))
    defaults = await stack.enter_async_context(TikTokClient(KEY, base_url))
    for _ in range(2):  # its adaptive rate and concurrency find their level
        await drain(defaults, names)
    transport = fixed._transport

    async def transport_only(name: str) -> object:
        answer = await transport.get(user_path(parse_handle(name)))
        return decipher_response(answer.status, answer.headers, answer.body,
                                 decode_user_profile)

    return {
        "bare": lambda: in_workers(bare, names),
        "transport": lambda: in_workers(transport_only, names),
        "get_user": lambda: in_workers(fixed.get_user, names),
        "fetch_users fixed, no dedupe": lambda: drain(fixed, names, dedupe=False),
        "fetch_users fixed": lambda: drain(fixed, names),
        "fetch_users defaults": lambda: drain(defaults, names),
    }


def _collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


def _counted(run: Side, into: list[int]) -> Side:
    """`run`, adding to `into` the collector's runs while it ran."""

    async def counted() -> None:
        before = _collections()
        await run()
        into.append(_collections() - before)

    return counted


async def measure(base_url: str, inputs: int, rounds: int
                  ) -> tuple[dict[str, float], dict[str, float]]:
    """Median CPU µs a request per side, and the collector's median runs a 1,000."""
    names = handles(inputs)
    async with contextlib.AsyncExitStack() as stack:
        sides = await _sides(stack, base_url, names)
        for run in sides.values():
            await run()  # connections made, code warm
        runs: dict[str, list[int]] = {name: [] for name in sides}
        counted = {name: _counted(run, runs[name]) for name, run in sides.items()}
        cpu = await median_cpu(counted, inputs, rounds)
        return cpu, {name: statistics.median(r) * 1000 / inputs for name, r in runs.items()}


def main() -> None:
    parser = tool_parser(__doc__, "benchmarks.tools.real_path")
    parser.add_argument("--inputs", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--no-gc", action="store_true",
                        help="the cyclic collector off for the measured rounds")
    args = parser.parse_args()
    with Server(*FAST) as server:
        warm_handles(server.base_url, handles(args.inputs))
        if args.no_gc:
            gc.disable()  # nothing here makes cyclic garbage: memory stays as it is
        figures, collections = asyncio.run(measure(server.base_url, args.inputs, args.rounds))
    bare = figures["bare"]
    for name, value in figures.items():
        print(f"{name:30s} {value:7.1f} µs a request  ({value / bare:4.2f}x the bare loop)"
              f"  {collections[name]:5.1f} collections a 1,000")


if __name__ == "__main__":
    main()
