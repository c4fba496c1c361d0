"""Section: goodput, the share of the quota a bulk run of new handles gets answered.

For each quota Q (requests/s, burst Q, a token bucket as API Gateway's) and first-fetch
latency L (every handle is new to the service, so every answer is a first fetch of
exactly L: `--upstream-latency-ms`, no jitter), `N = Q x SECONDS` new handles go through
`fetch_users` in a fresh client process (`_goodput_child`, which imports `tiktok_async`
only: its peak RSS is the client's), once with the defaults (`TikTokClient(key, url)`:
the adaptive rate and the concurrency found from latency) and once with the old fixed 64
(`concurrency=64, adaptive_concurrency=False`), in alternating order, against one
emulator process per (Q, L) (its counts reset between the two).

Judged from the emulator's own counts and arrival times:
- share of Q: answers of 200 that arrived within the send window, over Q x the window;
  the window runs from the client's start to the last 200's arrival (a run stopped at
  its cap: to the cap less L). Target with the defaults: >= 85 %.
- 429 share: 429s over every request the emulator saw. Target with the defaults: <= 3 %.
- wall time against the ideal N/Q + L: start to the last answer (a run is stopped at
  `CAP` x the ideal; a fixed 64 needs N / (64 / L) seconds, minutes at 1,000/s x 3 s).

The heavy-tailed `service` preset (median 1.5 s, p99 10 s) runs as an extra cell at
Q = 200 (full runs only): the grid uses fixed latencies so that the ideal is exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks._common import KEY, ROOT, Section, Server, log

DEFAULTS, FIXED = "defaults", "fixed 64"
SIDES = (DEFAULTS, FIXED)
#: A run is stopped at this multiple of its ideal wall time.
CAP = 2.0
#: Seconds of work at the quota a full run gives each cell (N = Q x this).
FULL_SECONDS = 20.0
#: Targets with the defaults, in every cell.
MIN_SHARE, MAX_THROTTLED = 0.85, 0.03


@dataclass(frozen=True)
class Cell:
    """One quota and first-fetch latency; `profile` names a preset instead of `latency`
    (then `latency` is its median, used for the ideal)."""

    quota: int
    latency: float
    profile: str = ""

    @property
    def label(self) -> str:
        where = f"{self.profile} preset" if self.profile else f"{self.latency:g} s"
        return f"Q={self.quota}/s x {where}"

    def server_args(self) -> tuple[str, ...]:
        latency = (("--latency-profile", self.profile) if self.profile else
                   ("--upstream-latency-ms", f"{self.latency * 1000:g}",
                    "--upstream-jitter-ms", "0"))
        return ("--rate", str(self.quota), "--burst", str(self.quota),
                "--missing-share", "0", *latency)


def grid(quotas: tuple[int, ...], latencies: tuple[float, ...], extra: bool) -> list[Cell]:
    cells = [Cell(q, latency) for q in quotas for latency in latencies]
    return cells + ([Cell(200, 1.5, "service")] if extra else [])


def _child(server: Server, cell: Cell, side: str, count: int, cap: float) -> dict[str, Any]:
    """One run in a fresh client process; its JSON report."""
    prefix = f"g{cell.quota}l{int(cell.latency * 1000)}{cell.profile[:1]}{side[0]}x"
    command = [sys.executable, "-m", "benchmarks._goodput_child", server.base_url, KEY,
               prefix, str(count), f"{cap:.3f}"] + (["64"] if side == FIXED else [])
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"goodput child {cell.label} {side} failed: {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def _per_second(times: list[float], since: float) -> list[int]:
    """Answers of 200 per whole second from `since` (for the chart)."""
    counts = [0] * (int(max(times, default=since) - since) + 1)
    for t in times:
        counts[int(t - since)] += 1
    return counts


def _row(server: Server, cell: Cell, side: str, count: int, cap: float,
         child: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    """One side of one cell, judged from the emulator's counts and arrival times."""
    stats = server.stats(arrivals=100_000)
    by_status = {int(s): n for s, n in stats["by_status"].items()}
    total, throttled = sum(by_status.values()), by_status.get(429, 0)
    started = child["started"]
    ok_times = sorted(t for t, s in stats["arrivals"] if s == 200 and t >= started)
    end = ok_times[-1] if child["finished"] and ok_times else started + cap - cell.latency
    in_window = sum(1 for t in ok_times if t <= end)
    window = max(end - started, 1e-9)
    ideal = count / cell.quota + cell.latency
    samples = child.pop("samples")
    return {
        "quota": cell.quota, "latency_s": cell.latency, "profile": cell.profile,
        "cell": cell.label, "side": side, "handles": count, "cap_s": cap,
        "finished": child["finished"], "answered": child["results"], "wall_s": child["wall"],
        "ideal_s": ideal, "wall_vs_ideal": child["wall"] / ideal,
        "ok": by_status.get(200, 0), "requests": total, "throttled": throttled,
        "by_status": by_status, "send_window_s": window,
        "share_of_quota": in_window / window / cell.quota,
        "throttled_share": throttled / total if total else 0.0,
        "peak_rss_mb": child["peak_rss_mb"], "emulator_peak_rss_mb": server.peak_rss_mb(),
        "emulator_busy": server_cpu / child["wall"],
        "client": child, "samples": samples[::2],
        "ok_per_second": _per_second(ok_times, started),
    }


def one_cell(cell: Cell, seconds: float, flip: bool) -> list[dict[str, Any]]:
    """Both sides of `cell` against one emulator process (reset between them)."""
    count = int(cell.quota * seconds)
    cap = CAP * (count / cell.quota + cell.latency)
    rows = []
    with Server(*cell.server_args()) as server:
        for side in (reversed(SIDES) if flip else SIDES):
            server.reset()
            log(f"  {cell.label}, {side}: {count:,} new handles (cap {cap:.0f} s)")
            cpu = server.cpu_seconds()
            child = _child(server, cell, side, count, cap)
            row = _row(server, cell, side, count, cap, child, server.cpu_seconds() - cpu)
            log(f"    {row['share_of_quota']:.1%} of Q, 429s {row['throttled_share']:.2%}, "
                f"{row['wall_s']:.1f} s (ideal {row['ideal_s']:.1f} s), emulator busy "
                f"{row['emulator_busy']:.0%}"
                + ("" if row["finished"] else f", stopped: {row['answered']:,} answered"))
            rows.append(row)
    return sorted(rows, key=lambda r: SIDES.index(r["side"]))


def _figures(section: Section, row: dict[str, Any]) -> None:
    """The targets, judged on the defaults."""
    label = row["cell"]
    share, throttled = row["share_of_quota"], row["throttled_share"]
    met = share >= MIN_SHARE and throttled <= MAX_THROTTLED
    stopped = "" if row["finished"] else f", stopped at the cap: {row['answered']:,} answered"
    section.figure(f"{label}: 200s, defaults", share, "x Q", ">= 85% of Q, <= 3% 429s", met,
                   note=f"429s {throttled:.2%}; wall {row['wall_s']:.1f} s vs ideal "
                        f"{row['ideal_s']:.1f} s{stopped}")


def run(quotas: tuple[int, ...], latencies: tuple[float, ...], seconds: float,
        extra: bool = True) -> Section:
    section = Section("goodput", "Goodput: new handles at a quota, slow first fetches")
    cells = grid(quotas, latencies, extra)
    log(f"goodput: {len(cells)} cells x {len(SIDES)} sides, {seconds:g} s of work each")
    for n, cell in enumerate(cells):
        rows = one_cell(cell, seconds, flip=n % 2 == 1)
        section.rows += rows
        if not cell.profile:
            _figures(section, rows[0])
    _peak_figure(section)
    section.notes += _notes(seconds)
    if seconds < FULL_SECONDS:
        section.notes.append(f"Quick run: {seconds:g} s of work a run and a reduced grid, "
                             f"NOT the {FULL_SECONDS:g} s of the target; indicative only.")
    return section


def _peak_figure(section: Section) -> None:
    biggest = max((r for r in section.rows if r["side"] == DEFAULTS and not r["profile"]),
                  key=lambda r: (r["quota"], r["latency_s"]))
    section.figure(f"Q={biggest['quota']}/s x {biggest['latency_s']:g} s: client peak RSS",
                   biggest["peak_rss_mb"], "MB", "(reported)", None,
                   note=f"defaults; fixed 64: "
                        f"{_other(section, biggest)['peak_rss_mb']:.0f} MB; emulator "
                        f"{biggest['emulator_peak_rss_mb']:.0f} MB")


def _other(section: Section, row: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in section.rows if r["cell"] == row["cell"] and r["side"] != row["side"])


def _notes(seconds: float) -> list[str]:
    return [
        f"N = Q x {seconds:g} new handles a run, every one a first fetch (the emulator "
        "fetches an unseen user from 'TikTok' first). Share of Q: the emulator's 200s "
        "within the send window (from the client's start to the last 200's arrival) over "
        "Q x the window; the bucket starts full (burst Q), so up to (window + 1) x Q can "
        "pass and a share a little over 100% is possible. 429 share: over every request "
        "the emulator saw (status 0 is a connection the client closed at the cap). Wall: "
        "the client's start to its last answer, against N/Q + L; runs are stopped at "
        f"{CAP:g}x the ideal.",
        "Each run is a fresh client process (imports `tiktok_async` only), on the client's "
        "core; the emulator on its own core, one process per cell, reset between the two "
        "sides (its peak RSS is over both). The client's rate, concurrency limit and "
        "attempts in flight, sampled every 0.5 s, are in the JSON (`samples`: seconds, "
        "rate, concurrency, in flight, answers).",
    ]
