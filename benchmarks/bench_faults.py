"""Section: with 5% of answers failing, what share of inputs is answered, at what cost.

The emulator fails 5% of answers (`--faults 0.05`: 500/502/503/504 in equal parts); N
fresh handles go through `TikTokClient(key, url).fetch_users(...)` with the default retry
policy. Figures: the share of inputs answered with a profile, and the extra requests per
answer (requests the emulator saw / answers - 1). The floor for the latter is one retry
per failed answer: 0.05 / 0.95 = 0.053.
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks._common import FAST, KEY, Section, Server, interleaved, log, run_async
from tiktok_async import TikTokClient

FAULT_SHARE = 0.05
FLOOR = FAULT_SHARE / (1 - FAULT_SHARE)
ROUNDS = 3
DEFAULTS, FIXED = "defaults", "fixed 64"
MIN_VS_FIXED = 0.8


def _handles(count: int) -> list[str]:
    return [f"fault{n}.test" for n in range(count)]


async def _stream(base_url: str, count: int) -> dict[str, Any]:
    ok = failed = attempts = 0
    async with TikTokClient(KEY, base_url) as client:
        async for result in client.fetch_users(_handles(count)):
            ok += result.ok
            failed += not result.ok
            attempts += result.attempts
        rate = client.rate
    return {"ok": ok, "failed": failed, "attempts": attempts, "rate_reached": rate}


async def _cached_pass(base_url: str, count: int, side: str, rate: float) -> float:
    """Seconds for `side` to answer `count` cached handles (each once)."""
    options: dict[str, Any] = (
        {"initial_rate": rate} if side == DEFAULTS
        else {"rate": math.inf, "concurrency": 64, "adaptive_concurrency": False})
    started = time.perf_counter()
    async with TikTokClient(KEY, base_url, **options) as client:
        async for result in client.fetch_users(_handles(count)):
            if not result.ok:
                raise RuntimeError(f"{result.input}: {result.error}")
    return time.perf_counter() - started


def _paired(base_url: str, count: int, rate: float) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {DEFAULTS: [], FIXED: []}
    for _, side in interleaved((DEFAULTS, FIXED), ROUNDS):
        seconds[side].append(run_async(_cached_pass(base_url, count, side, rate)))
    return seconds


def run(count: int) -> Section:
    section = Section("faults", f"Faults: {FAULT_SHARE:.0%} of answers failing")
    log(f"faults: {count:,} handles, {FAULT_SHARE:.0%} of answers failing")
    with Server(*FAST, "--faults", str(FAULT_SHARE)) as server:
        started = time.perf_counter()
        counts = run_async(_stream(server.base_url, count))
        seconds = time.perf_counter() - started
        by_status = server.by_status()
        paired = _paired(server.base_url, count, counts["rate_reached"])
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
    _paired_figure(section, count, paired, counts["rate_reached"])
    return section


def _paired_figure(section: Section, count: int, seconds: dict[str, list[float]],
                   rate: float) -> None:
    rates = {side: count * ROUNDS / sum(times) for side, times in seconds.items()}
    for side, times in seconds.items():
        section.rows.append({"part": "cached", "side": side, "inputs": count,
                             "rounds": ROUNDS, "seconds": times, "rate": rates[side]})
    ratio = rates[DEFAULTS] / rates[FIXED]
    section.figure("cached again, 5% failing: defaults vs a fixed 64, answers/s", ratio, "x",
                   f">= {MIN_VS_FIXED}x", ratio >= MIN_VS_FIXED,
                   note=f"{rates[DEFAULTS]:,.0f} vs {rates[FIXED]:,.0f} answers/s, "
                        f"{ROUNDS} passes each; the defaults start at {rate:,.0f}/s")
