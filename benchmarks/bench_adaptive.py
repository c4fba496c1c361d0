"""Section: the adaptive rate against a quota nobody told the client.

For Q in 5, 50, 500 the emulator throttles the key with a token bucket of rate Q and
burst Q (`--rate Q --burst Q`, full at the start, as API Gateway). The client streams
fresh handles through `fetch_users` (as users do) for `seconds` and is told nothing. From
the emulator's counts: answers of 200 per second as a share of Q (target >= 90%), and
429s as a share of all requests (target <= 3%), over the whole run, slow start included.

The client is `TikTokClient(key, url)`: no rate given, so the adaptive rate (the default)
is what runs, as users get it. Its current rate (`client.rate`) is sampled for the chart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

from benchmarks._common import KEY, Section, Server, log, run_async
from tiktok_async import TikTokClient

QUOTAS = (5, 50, 500)


def _handles(prefix: str) -> Iterator[str]:
    return (f"{prefix}{n}.test" for n in itertools.count())


async def _drive(base_url: str, quota: int, seconds: float) -> dict[str, Any]:
    """Stream fresh handles for `seconds`; the client's rate sampled every 0.25 s."""
    samples: list[tuple[float, float]] = []
    results = 0
    async with TikTokClient(KEY, base_url) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def sample() -> None:
            while True:
                if client.rate is not None:
                    samples.append((loop.time() - started, client.rate))
                await asyncio.sleep(0.25)

        async def consume() -> None:
            nonlocal results
            async for _ in client.fetch_users(_handles(f"q{quota}x")):
                results += 1

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.wait_for(consume(), seconds)
        except asyncio.TimeoutError:  # not TimeoutError on Python 3.10
            pass
        finally:
            sampler.cancel()
        stats = client.stats
    return {"results": results, "rate_samples": samples, "client_retries": stats.retries,
            "client_throttled": stats.throttled}


def _row(server: Server, quota: int, since: float, until: float, driven: dict[str, Any]
         ) -> dict[str, Any]:
    """One quota's figures from its emulator's counts and arrival times."""
    arrivals = server.arrivals(since=since, until=until)
    counts = server.by_status()
    elapsed = until - since
    ok, throttled = counts.get(200, 0), counts.get(429, 0)
    total = sum(counts.values())
    per_second = [0] * (int(elapsed) + 1)
    for t, status in arrivals:
        if status == 200:
            per_second[int(t - since)] += 1
    return {
        "quota": quota, "seconds": elapsed, "requests": total, "ok": ok, "throttled": throttled,
        "ok_share_of_quota": ok / elapsed / quota,
        "throttled_share": throttled / total if total else 0.0,
        "by_status": counts, "results": driven["results"],
        "client_retries": driven["client_retries"],
        "ok_per_second": per_second, "rate_samples": driven["rate_samples"],
        "emulator_cpu_share": server.cpu_seconds() / elapsed,
    }


def all_quotas(seconds: float) -> list[dict[str, Any]]:
    """Every quota at once: an emulator process each (all on the emulator's core), a
    client each in one event loop. The small quotas add little work (55 requests/s)."""

    async def together(servers: list[Server]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(
            _drive(server.base_url, quota, seconds)
            for server, quota in zip(servers, QUOTAS, strict=True))))

    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(Server("--rate", str(q), "--burst", str(q),
                                              "--missing-share", "0")) for q in QUOTAS]
        since = time.time()
        driven = run_async(together(servers))
        until = time.time()
        return [_row(server, quota, since, until, one)
                for server, quota, one in zip(servers, QUOTAS, driven, strict=True)]


def run(seconds: float, target_seconds: float = 60.0) -> Section:
    section = Section("adaptive", "Adaptive rate against an undisclosed quota")
    section.notes.append(
        "`TikTokClient(key, url)` with no rate (the adaptive default, as users get it) "
        "streaming fresh handles through `fetch_users`; the emulator throttles with a token "
        "bucket of rate Q and burst Q, full at the start. Shares are over the whole run, "
        "slow start included; 200s/s per second and the client's rate are in the chart. "
        "The three quotas run at the same time, each against its own emulator process, "
        "each client in the same event loop.")
    if seconds < target_seconds:
        section.notes.append(f"Quick run: {seconds:g} s per quota, NOT the target duration "
                             f"of {target_seconds:g} s; the figures are indicative only.")
    log(f"adaptive: Q={', '.join(map(str, QUOTAS))} at once, {seconds:g} s")
    for row in all_quotas(seconds):
        quota = row["quota"]
        log(f"  Q={quota}: 200s {row['ok_share_of_quota']:.1%} of Q, "
            f"429s {row['throttled_share']:.2%}")
        section.rows.append(row)
        short = "" if seconds >= target_seconds else f" (only {seconds:g} s)"
        section.figure(f"Q={quota}: 200s per second", row["ok_share_of_quota"], "x Q",
                       ">= 0.90x Q" + short, row["ok_share_of_quota"] >= 0.9,
                       note=f"{row['ok'] / row['seconds']:.1f}/s over {row['seconds']:.0f} s")
        section.figure(f"Q={quota}: 429 share", row["throttled_share"], "of requests",
                       "<= 3%" + short, row["throttled_share"] <= 0.03,
                       note=f"{row['throttled']} of {row['requests']}")
    return section
