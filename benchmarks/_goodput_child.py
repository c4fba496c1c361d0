"""The goodput section's client process: N new handles through `fetch_users`, one JSON line.

    python -m benchmarks._goodput_child BASE_URL KEY PREFIX N CAP_SECONDS [FIXED]

It imports `tiktok_async` and the standard library only, as a user's program would, so
its peak RSS (VmHWM) is the client's. `TikTokClient(key, url)` with its defaults, or with
`concurrency=FIXED, adaptive_concurrency=False` (the old fixed 64) when FIXED is given,
streams the handles `PREFIX{n}.new` (n < N) through `fetch_users` until every one is
answered or CAP_SECONDS have passed. Every 0.25 s it samples the client's rate, its
concurrency limit and the attempts in flight (where the time goes). `started` is
`time.time()` just before the client opens: the emulator's arrival times use that clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from benchmarks._memory_child import _peak_rss_mb
from tiktok_async import TikTokClient

SAMPLE_EVERY = 0.25


def _client(base_url: str, key: str, fixed: int) -> TikTokClient:
    if fixed:
        return TikTokClient(key, base_url, concurrency=fixed, adaptive_concurrency=False)
    return TikTokClient(key, base_url)


async def _sample(client: TikTokClient, started: float, into: list[list[float]]) -> None:
    """(seconds, rate, concurrency limit, in flight, answers so far) every SAMPLE_EVERY."""
    while True:
        stats = client.stats
        into.append([round(time.perf_counter() - started, 3), client.rate, client.concurrency,
                     stats.in_flight, sum(stats.responses.values())])
        await asyncio.sleep(SAMPLE_EVERY)


async def _run(base_url: str, key: str, prefix: str, count: int, cap: float, fixed: int
               ) -> dict[str, Any]:
    done = ok = 0
    samples: list[list[float]] = []
    started_epoch, started = time.time(), time.perf_counter()
    async with _client(base_url, key, fixed) as client:
        sampler = asyncio.create_task(_sample(client, started, samples))

        async def consume() -> None:
            nonlocal done, ok
            async for result in client.fetch_users(f"{prefix}{n}.new" for n in range(count)):
                done += 1
                ok += result.ok

        # asyncio.TimeoutError: not the builtin TimeoutError on Python 3.10
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), cap)
        wall = time.perf_counter() - started
        sampler.cancel()
        stats = client.stats
        report = {"results": done, "ok": ok, "finished": done == count, "wall": wall,
                  "started": started_epoch, "max_concurrency": client.max_concurrency,
                  "requests": stats.requests, "throttled": stats.throttled,
                  "retries": stats.retries, "held_back": stats.concurrency_held_back,
                  "latency_p50": stats.latency_p50, "latency_p99": stats.latency_p99,
                  "samples": samples}
    return report


def main(argv: list[str]) -> None:
    base_url, key, prefix = argv[0], argv[1], argv[2]
    count, cap = int(argv[3]), float(argv[4])
    fixed = int(argv[5]) if len(argv) > 5 else 0
    report = asyncio.run(_run(base_url, key, prefix, count, cap, fixed))
    report["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
