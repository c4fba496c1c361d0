"""The memory section's client process: streams N handles, prints one JSON line.

    python -m benchmarks._memory_child N BASE_URL KEY

It imports `tiktok_async` and the standard library only, as a user's program would:
`_common` brings pydantic and httpx (the baselines), 15 MB that are not the client's.
A generator of handles `user{n}.test` goes through `TikTokClient(key,
url).fetch_users(...)`, results are counted and dropped; RSS is sampled every
`SAMPLE_EVERY` results (for the chart) and the peak read at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tiktok_async import TikTokClient

SAMPLE_EVERY = 10_000
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_MB


def _peak_rss_mb() -> float:
    """This process's peak RSS since its `exec` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _stream(count: int, base_url: str, key: str) -> dict[str, Any]:
    done = ok = 0
    samples: list[tuple[int, float]] = [(0, _rss_mb())]
    started = time.perf_counter()
    async with TikTokClient(key, base_url) as client:
        async for result in client.fetch_users(f"user{n}.test" for n in range(count)):
            done += 1
            ok += result.ok
            if done % SAMPLE_EVERY == 0:
                samples.append((done, _rss_mb()))
    return {"count": count, "results": done, "ok": ok,
            "seconds": time.perf_counter() - started, "rss_samples": samples}


def main(argv: list[str]) -> None:
    """Stream, then print one JSON line with the peak RSS.

    The peak is VmHWM, not `ru_maxrss`: Linux carries the high-water mark of the memory
    a process had before `exec` into `ru_maxrss`, and `subprocess` starts children with
    `vfork`, so a child's `ru_maxrss` starts at its parent's peak (the runner's). Both
    are reported.
    """
    count, base_url, key = int(argv[0]), argv[1], argv[2]
    report = asyncio.run(_stream(count, base_url, key))
    report["peak_rss_mb"] = _peak_rss_mb()
    report["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
