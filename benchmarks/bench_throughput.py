"""Section 1: throughput and client CPU per request, with `client_bench`'s sides.

TikTokClient (as users get it: no rate given) beside a bare aiohttp + msgspec loop (the
floor), aiohttp with dicts from `json`, and httpx + pydantic; cached `/user` lookups, 64
workers, one pool of 64, interleaved runs, medians.
"""

from __future__ import annotations

from benchmarks import client_bench
from benchmarks.bench_common import FAST, KEY, Section, Server, log


def run(requests: int, httpx_requests: int, runs: int, use_uvloop: bool) -> Section:
    section = Section("throughput", "Throughput and client CPU per request")
    sides: list[tuple[client_bench.Side, int]] = [
        (client_bench.bare, requests),
        (client_bench.client, requests),
        (client_bench.aiohttp_json, requests),
        (client_bench.httpx_pydantic, httpx_requests),
    ]
    with Server(*FAST) as server:
        server.warm(client_bench.HANDLES)
        client_bench.server_pid = server.pid
        log(f"throughput: {runs} interleaved runs of {requests:,} requests "
            f"({httpx_requests:,} for httpx)")
        results = client_bench.compare(server.base_url, KEY, sides, runs, use_uvloop)
    rows = client_bench.median_rows(results)
    for row in rows:
        row["requests_per_run"] = results[row["side"]][0].requests
        row["all_rates"] = [round(r.rate) for r in results[row["side"]]]
    section.rows = rows
    by_side = {row["side"]: row for row in rows}
    ours, bare = by_side["TikTokClient"], by_side["bare aiohttp+msgspec"]
    httpx = by_side["httpx+pydantic"]
    section.figure("tiktok_async requests/s", ours["rate"], "req/s")
    section.figure("bare aiohttp+msgspec requests/s", bare["rate"], "req/s")
    section.figure("requests/s vs bare aiohttp+msgspec", ours["rate_vs_bare"], "x",
                   ">= 0.85x", ours["rate_vs_bare"] >= 0.85)
    section.figure("client CPU per request vs bare", ours["cpu_vs_bare"], "x",
                   "<= 1.3x", ours["cpu_vs_bare"] <= 1.3,
                   note=f"{ours['cpu_us']:.0f} us vs {bare['cpu_us']:.0f} us")
    versus_httpx = ours["rate"] / httpx["rate"]
    section.figure("requests/s vs httpx+pydantic", versus_httpx, "x", ">= 10x",
                   versus_httpx >= 10)
    busiest = max(row["server_busy"] for row in rows)
    section.notes.append(
        f"Emulator core busy at most {busiest:.0%} (median per side): "
        + ("it was not the limit." if busiest < 0.9 else "it may have been the limit.")
    )
    return section
