"""Micro-benchmark of `bounded_map` against `asyncio.gather` over every input.

200,000 items through a trivial async worker (`await asyncio.sleep(0)`, so every item
really suspends once, as a request would). Each variant runs in its own process so its
peak RSS (`resource.getrusage`) is its own. The best of `--repeat` runs is kept.

    python -m benchmarks.tools.pool_micro [--items 200000] [--concurrency 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from benchmarks._common import tool_parser
from tiktok_async._pool import bounded_map

Runner = Callable[[int, int], Coroutine[Any, Any, int]]


async def work(item: int) -> int:
    await asyncio.sleep(0)
    return item


async def no_suspend(item: int) -> int:
    return item


async def run_gather(n: int, _: int) -> int:
    return len(await asyncio.gather(*(work(i) for i in range(n))))


async def run_semaphore_gather(n: int, concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> int:
        async with sem:
            return await work(i)

    return len(await asyncio.gather(*(guarded(i) for i in range(n))))


async def _consume(pairs: AsyncIterator[tuple[int, int]]) -> int:
    count = 0
    async for _ in pairs:
        count += 1
    return count


async def run_pool(n: int, concurrency: int) -> int:
    return await _consume(bounded_map(range(n), work, concurrency=concurrency))


async def run_pool_no_suspend(n: int, concurrency: int) -> int:
    return await _consume(bounded_map(range(n), no_suspend, concurrency=concurrency))


async def run_pool_ordered(n: int, concurrency: int) -> int:
    return await _consume(bounded_map(range(n), work, concurrency=concurrency, ordered=True))


async def run_pool_dedupe(n: int, concurrency: int) -> int:
    items = (i % (n // 2) for i in range(n))  # every key twice, far apart
    return await _consume(bounded_map(items, work, concurrency=concurrency, key=lambda i: i))


async def run_pool_async_input(n: int, concurrency: int) -> int:
    async def source() -> AsyncIterator[int]:
        for i in range(n):
            yield i

    return await _consume(bounded_map(source(), work, concurrency=concurrency))


async def run_nothing(n: int, _: int) -> int:
    return n


async def run_sequential(n: int, _: int) -> int:
    for i in range(n):
        await work(i)
    return n


VARIANTS: dict[str, Runner] = {
    "interpreter only (no work)": run_nothing,
    "plain loop, one item at a time": run_sequential,
    "asyncio.gather over all": run_gather,
    "Semaphore + gather over all": run_semaphore_gather,
    "bounded_map": run_pool,
    "bounded_map, worker never suspends": run_pool_no_suspend,
    "bounded_map ordered=True": run_pool_ordered,
    "bounded_map key= (50% dups)": run_pool_dedupe,
    "bounded_map, async generator input": run_pool_async_input,
}


def measure(name: str, n: int, concurrency: int) -> dict[str, float]:
    """Run one variant here; return items/s and this process's peak RSS in MB."""
    started = time.perf_counter()
    count = asyncio.run(VARIANTS[name](n, concurrency))
    elapsed = time.perf_counter() - started
    assert count == n, (name, count)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return {"items_per_s": n / elapsed, "us_per_item": elapsed / n * 1e6, "peak_mb": peak_kb / 1024}


def run_child(name: str, n: int, concurrency: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.tools.pool_micro", "--child", name,
           "--items", str(n), "--concurrency", str(concurrency)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = tool_parser(__doc__, "benchmarks.tools.pool_micro")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.items, args.concurrency)))
        return
    print(f"{args.items:,} items, concurrency {args.concurrency}, best of {args.repeat}, "
          f"Python {sys.version.split()[0]}")
    print(f"{'variant':<42} {'items/s':>10} {'us/item':>8} {'peak RSS MB':>12}")
    for name in VARIANTS:
        runs = [run_child(name, args.items, args.concurrency) for _ in range(args.repeat)]
        best = max(runs, key=lambda r: r["items_per_s"])
        peak = min(r["peak_mb"] for r in runs)
        rate = "-" if name.startswith("interpreter") else f"{best['items_per_s']:,.0f}"
        us = "-" if name.startswith("interpreter") else f"{best['us_per_item']:.2f}"
        print(f"{name:<42} {rate:>10} {us:>8} {peak:>12.1f}")


if __name__ == "__main__":
    main()
