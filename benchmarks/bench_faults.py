"""Section: with 5% of answers failing, what share of inputs is answered, at what cost.

The emulator fails 5% of answers (`--faults 0.05`: 500/502/503/504 in equal parts); N
fresh handles go through `TikTokClient(key, url).fetch_users(...)` with the default retry
policy. Figures: the share of inputs answered with a profile, and the extra requests per
answer (requests the emulator saw / answers - 1). The floor for the latter is one retry
per failed answer: 0.05 / 0.95 = 0.053.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import FAST, KEY, Section, Server, log, run_async
from tiktok_async import TikTokClient

FAULT_SHARE = 0.05
FLOOR = FAULT_SHARE / (1 - FAULT_SHARE)


async def _stream(base_url: str, count: int) -> dict[str, Any]:
    ok = failed = attempts = 0
    async with TikTokClient(KEY, base_url) as client:
        async for result in client.fetch_users(f"fault{n}.test" for n in range(count)):
            ok += result.ok
            failed += not result.ok
            attempts += result.attempts
    return {"ok": ok, "failed": failed, "attempts": attempts}


def run(count: int) -> Section:
    section = Section("faults", f"Faults: {FAULT_SHARE:.0%} of answers failing")
    log(f"faults: {count:,} handles, {FAULT_SHARE:.0%} of answers failing")
    with Server(*FAST, "--faults", str(FAULT_SHARE)) as server:
        started = time.perf_counter()
        counts = run_async(_stream(server.base_url, count))
        seconds = time.perf_counter() - started
        by_status = server.by_status()
    requests = sum(by_status.values())
    answered = counts["ok"] / count
    extra = requests / counts["ok"] - 1 if counts["ok"] else float("inf")
    section.rows.append({"inputs": count, "seconds": seconds, "requests": requests,
                         "by_status": by_status, **counts, "answered_share": answered,
                         "extra_requests_per_answer": extra})
    section.figure("inputs answered", answered, "share", "100%", counts["ok"] == count,
                   note=f"{counts['ok']:,} of {count:,} in {seconds:.1f} s")
    failures = requests - by_status.get(200, 0)
    # One retry per failed answer and no answer fetched twice: the 200s are the inputs.
    # The emulator's fault draws are random, so the share failing is 5% +- noise.
    wasted = by_status.get(200, 0) - counts["ok"]
    section.figure("extra requests per answer", extra, "requests",
                   f"<= {FLOOR * 1.5:.3f} (floor {FLOOR:.3f}: one retry per failure), "
                   "no 200 wasted", extra <= FLOOR * 1.5 and wasted == 0,
                   note=f"{requests:,} requests, {failures:,} failed answers "
                        f"({failures / requests:.1%}), {wasted} 200s wasted")
    return section
