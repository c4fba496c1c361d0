"""Section: peak RSS of a process streaming N handles through `fetch_users`.

Each N runs in a fresh child process (`python -m benchmarks._memory_child N URL KEY`,
pinned to the client's core, importing nothing but `tiktok_async`): a generator of
handles `user{n}.test` goes through `TikTokClient(key, url).fetch_users(...)`, results
are counted and dropped. The child reports its peak RSS (VmHWM) and its RSS every 10,000
results (for the chart). The emulator (no upstream latency, every user exists) runs in
its own process, one for all sizes; its peak RSS is reported too (not the client's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from benchmarks._common import FAST, KEY, ROOT, Section, Server, log


def one_size(server: Server, count: int) -> dict[str, Any]:
    """A fresh client process streaming `count` handles through `server`."""
    command = [sys.executable, "-m", "benchmarks._memory_child", str(count), server.base_url,
               KEY]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {count:,} failed: {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    report["emulator_peak_rss_mb"] = server.peak_rss_mb()
    report["emulator_db_users"] = server.stats()["db"]["users"]
    return report


def run(counts: tuple[int, ...]) -> Section:
    section = Section("memory", "Memory streaming handles through fetch_users")
    # One emulator for every size, smallest first: each run finds the previous run's users
    # already stored (a tenth of its handles), which only saves time; the client cannot
    # tell. The emulator's own peak RSS is therefore cumulative.
    with Server(*FAST) as server:
        for count in sorted(counts):
            log(f"memory: {count:,} handles in a fresh process")
            row = one_size(server, count)
            log(f"  peak RSS {row['peak_rss_mb']:.1f} MB, {row['results']:,} results in "
                f"{row['seconds']:.0f} s; emulator peak {row['emulator_peak_rss_mb']:.0f} MB")
            section.rows.append(row)
            answered = row["results"] == count
            big = count >= 1_000_000
            section.figure(f"{count:,} handles: peak RSS", row["peak_rss_mb"], "MB",
                           "<= 150 MB" if big else "", row["peak_rss_mb"] <= 150 if big else None,
                           note=f"{row['results']:,} results, "
                                f"{row['count'] / row['seconds']:,.0f}/s"
                                + ("" if answered else " (NOT every input answered)"))
    peaks = {row["count"]: row["peak_rss_mb"] for row in section.rows}
    if 100_000 in peaks and 1_000_000 in peaks:
        growth = peaks[1_000_000] / peaks[100_000] - 1
        section.figure("peak RSS at 1,000,000 vs at 100,000", growth, "growth", "<= +20%",
                       growth <= 0.2)
    elif 10_000 in peaks and 100_000 in peaks:
        growth = peaks[100_000] / peaks[10_000] - 1
        section.figure("peak RSS at 100,000 vs at 10,000", growth, "growth",
                       "(quick: no 1,000,000 run; the target is 1M vs 100k <= +20%)")
    section.notes.append(
        "One emulator serves every size (each run finds the previous run's users stored); "
        "its peak RSS is cumulative and is the emulator's, not the client's: it stores "
        "every user it serves (SQLite in memory, plus a cache of up to 500,000 bodies).")
    return section

