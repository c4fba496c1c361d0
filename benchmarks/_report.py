"""Writing the results of `make bench`: the machine, JSON, the Markdown table, the charts.

`machine()` (what the figures were measured on), `write_json(path, report)`,
`markdown(report, img_prefix)` (the table section between the markers),
`replace_marked(page, text)` (only between `<!-- bench:table -->` and
`<!-- /bench:table -->`; the markers are added at the end when missing), and `charts()`
(one PNG per section that has one: `_charts`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._common import CLIENT_CPU, ROOT, SERVER_CPU

START, END = "<!-- bench:table -->", "<!-- /bench:table -->"
PACKAGES = ("tiktok-async", "aiohttp", "msgspec", "aiolimiter", "tenacity", "uvloop",
            "httpx", "pydantic", "orjson", "matplotlib")


# --- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def machine(client_uvloop: bool) -> dict[str, Any]:
    """CPU, cores, RAM, Python, package versions, event loops, date, load."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in PACKAGES},
        "client_loop": "uvloop" if client_uvloop else "asyncio",
        "emulator_loop": "uvloop" if _version("uvloop") else "asyncio",
        "pinning": f"emulator on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "git_commit": _git_commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- JSON ----------------------------------------------------------------------------------


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


# --- Markdown ------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    """A figure as text in its unit."""
    if unit in ("x Q", "x rate"):
        return f"{value:.1%} of {unit[2:]}"
    if unit in ("share", "of requests", "growth"):
        sign = "+" if unit == "growth" and value >= 0 else ""
        return f"{sign}{value:.2%}" if unit == "of requests" else f"{sign}{value:.1%}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("req/s", "acquires/s"):
        return f"{value:,.0f} {unit}"
    if unit == "µs":
        return f"{value:.2f} µs"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "requests":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3f}"
    return f"{value:g} {unit}"


def verdict(met: bool | None) -> str:
    return "—" if met is None else ("**met**" if met else "**NOT met**")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def summary_table(sections: list[dict[str, Any]]) -> list[str]:
    lines = ["| section | figure | value | target | |", "|---|---|---:|---|---|"]
    for section in sections:
        for fig in section["figures"]:
            value = fmt(fig["value"], fig["unit"])
            if fig["note"]:
                value += f" ({fig['note']})"
            lines.append("| " + " | ".join(_cell(c) for c in (
                section["title"], fig["name"], value, fig["target"] or "—",
                verdict(fig["met"]))) + " |")
    return lines


def _details(section: dict[str, Any]) -> list[str]:
    """A per-section table of the rows behind the figures."""
    rows, key = section["rows"], section["key"]
    if key == "throughput":
        out = ["| side | rounds | requests/s | client CPU µs/request | vs bare | emulator busy |",
               "|---|---:|---:|---:|---|---:|"]
        for r in rows:
            versus = (f"{r['rate_vs_bare']:.0%} req/s, {r['cpu_vs_bare']:.2f}x CPU"
                      if "rate_vs_bare" in r else "(the floor)")
            out.append(f"| {r['side']} | {r['runs']} | {r['rate']:,.0f} | {r['cpu_us']:.0f} | "
                       f"{versus} | {r['server_busy']:.0%} |")
        return out
    if key == "decode":
        out = ["| decoder | user µs | video µs |", "|---|---:|---:|"]
        out += [f"| {r['decoder']} | {r['user_us']:.2f} | {r['video_us']:.2f} |" for r in rows]
        return out
    if key == "rate":
        out = ["| side | rate | worst 1 s window at the emulator (each run) | "
               "worst 1 s window as sent (each run) | mean rate (median) |",
               "|---|---:|---:|---:|---:|"]
        out += [f"| {r['side']} | {r['rate']:g}/s | {r['worst_1s_window']} "
                f"({', '.join(map(str, r['worst_1s_each_run']))}) | "
                f"{r.get('worst_1s_sent', '—')} "
                f"({', '.join(map(str, r.get('worst_1s_sent_each_run', [])))}) | "
                f"{r['mean_rate']:.2f}/s ({r['mean_share']:.1%}) |" for r in rows]
        return out
    if key == "adaptive":
        out = ["| Q | seconds | requests | 200s | 200s/s (share of Q) | 429s (share) |",
               "|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {r['quota']} | {r['seconds']:.0f} | {r['requests']:,} | {r['ok']:,} | "
                f"{r['ok'] / r['seconds']:.1f} ({r['ok_share_of_quota']:.1%}) | "
                f"{r['throttled']:,} ({r['throttled_share']:.2%}) |" for r in rows]
        return out
    if key == "memory":
        out = ["| handles | results | seconds | client peak RSS | emulator peak RSS |",
               "|---:|---:|---:|---:|---:|"]
        out += [f"| {r['count']:,} | {r['results']:,} | {r['seconds']:.0f} | "
                f"{r['peak_rss_mb']:.1f} MB | {r['emulator_peak_rss_mb']:.0f} MB |"
                for r in rows]
        return out
    if key == "redis":
        return _redis_details(rows)
    if key in ("bulk", "cli"):
        return _paired_details(rows, "requests/s" if key == "bulk" else "inputs/s")
    if key == "goodput":
        return _goodput_details(rows)
    if key == "faults":
        return _faults_details(rows)
    return []


def _faults_details(rows: list[dict[str, Any]]) -> list[str]:
    """The fresh pass (answered, requests, extra per answer) and the cached passes."""
    fresh = [r for r in rows if "part" not in r]
    out = ["| inputs | answered | requests | by status | extra requests per answer |",
           "|---:|---:|---:|---|---:|"]
    out += [f"| {r['inputs']:,} | {r['ok']:,} | {r['requests']:,} | "
            f"{', '.join(f'{s}: {n}' for s, n in sorted(r['by_status'].items()))} | "
            f"{r['extra_requests_per_answer']:.3f} |" for r in fresh]
    cached = [r for r in rows if r.get("part") == "cached"]
    if cached:
        out += ["", "| cached again | answers/s | seconds a pass |", "|---|---:|---|"]
        out += [f"| {r['side']} | {r['rate']:,.0f} | "
                f"{', '.join(f'{t:.1f}' for t in r['seconds'])} |" for r in cached]
    return out


def _paired_details(rows: list[dict[str, Any]], per: str) -> list[str]:
    """The sides of a paired section, each against the bare loop (its first row)."""
    out = [f"| side | {per} | CPU µs each | vs the bare loop |", "|---|---:|---:|---|"]
    for r in rows:
        if r.get("part", "paired") != "paired":
            continue
        versus = (f"{r['rate_vs_bare']:.2f}x {per}, {r['cpu_vs_bare']:.2f}x CPU"
                  if "rate_vs_bare" in r else "(the floor)")
        start = (f" (start-up {r['startup_cpu_s']:.2f} s CPU a process)"
                 if "startup_cpu_s" in r else "")
        out.append(f"| {r['side']} | {r['rate']:,.0f} | {r['cpu_us']:.0f}{start} | {versus} |")
    return out


def _goodput_details(rows: list[dict[str, Any]]) -> list[str]:
    """A line per cell: the defaults beside a fixed 64."""
    out = ["| Q (burst Q) | first fetch | N | defaults: 200s, share of Q | 429s | wall "
           "(ideal) | fixed 64: 200s, share of Q | 429s | wall (ideal) |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(r["cell"], {})[r["side"]] = r
    for sides in cells.values():
        first = next(iter(sides.values()))
        latency = (f"{first['profile']} preset" if first["profile"]
                   else f"{first['latency_s']:g} s")
        line = f"| {first['quota']:,} | {latency} | {first['handles']:,} |"
        for side in ("defaults", "fixed 64"):
            if side not in sides:
                line += " — | — | — |"
                continue
            r = sides[side]
            stopped = "" if r["finished"] else f", stopped: {r['answered']:,} answered"
            line += (f" {r['share_of_quota']:.1%} | {r['throttled_share']:.2%} | "
                     f"{r['wall_s']:.1f} s ({r['ideal_s']:.1f} s{stopped}) |")
        out.append(line)
    return out + _time_goes(rows)


def _first(samples: list[list[float]], index: int, level: float) -> str:
    """When a sampled figure first reached `level`, as text."""
    when = next((s[0] for s in samples if s[index] >= level), None)
    return "never" if when is None else f"{when:.1f} s"


def _time_goes(rows: list[dict[str, Any]]) -> list[str]:
    """Where the defaults' time went, from the client's samples (seconds from its start):
    when its rate first reached Q, when the attempts in flight first reached 90% of
    Q x L (what the quota needs in flight), and the rate and limit at the end."""
    out = ["", "Where the time goes with the defaults (the client's own samples, every "
           "0.5 s):", "",
           "| Q | first fetch | rate >= Q after | in flight >= 0.9 Q x L after | "
           "rate at the end | concurrency limit at the end (most in flight) |",
           "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        samples = r.get("samples") or []
        if r["side"] != "defaults" or not samples:
            continue
        latency = (f"{r['profile']} preset" if r["profile"] else f"{r['latency_s']:g} s")
        needed = 0.9 * r["quota"] * r["latency_s"]
        out.append(f"| {r['quota']:,} | {latency} | {_first(samples, 1, r['quota'])} | "
                   f"{_first(samples, 3, needed)} ({needed:,.0f}) | "
                   f"{samples[-1][1]:,.{0 if samples[-1][1] >= 10 else 1}f}/s | "
                   f"{samples[-1][2]:,.0f} "
                   f"({max(s[3] for s in samples):,.0f}) |")
    return out


def _redis_details(rows: list[dict[str, Any]]) -> list[str]:
    """Three tables: acquire cost, rate accuracy, four workers end to end."""
    part = {name: [r for r in rows if r["part"] == name] for name in ("acquire", "accuracy", "e2e")}
    out = ["| side | acquires/s | p50 | p99 |", "|---|---:|---:|---:|"]
    out += [f"| {r['side']} | {r['per_s']:,.0f} | {r['p50_us']:,.0f} µs | "
            f"{r['p99_us']:,.0f} µs |" for r in part["acquire"]]
    out += ["", "| side | mean rate after the burst | worst 1 s window | p50 wait |",
            "|---|---:|---:|---:|"]
    out += [f"| {r['side']} | {r['mean_rate']:.1f}/s | {r['worst_1s']} (limit "
            f"{r['rate'] + r['burst']:g}) | {r['p50_wait_ms']:.1f} ms |" for r in part["accuracy"]]
    if part["e2e"]:
        out += ["", "| 4 workers | answers a second after the burst | worst 1 s window sent | "
                "429s |", "|---|---:|---:|---:|"]
        out += [f"| {r['side']} | {r['per_s']:.2f}/s ({r['share_of_quota']:.1%} of the quota) | "
                f"{r['worst_1s_sent']} | {r['throttled']} of {r['requests']} |"
                for r in part["e2e"]]
    return out


def _merge_lines(report: dict[str, Any]) -> list[str]:
    """Sections re-measured since the full run (`--merge`), newest first: when, at which
    commit, and the packages that differ from the line above (only runs whose sections are
    still the ones shown)."""
    full, shown, lines = report["machine"]["packages"], set[str](), []
    for merge in reversed(report.get("merged", [])):
        keys = [key for key in merge["sections"] if key not in shown]
        shown.update(merge["sections"])
        if not keys:
            continue
        m = merge["machine"]
        changed = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v and full.get(k) != v)
        lines.append(
            f"- {', '.join(keys)}: re-measured on {m['date_utc']} UTC (commit "
            f"`{m['git_commit']}`{'; ' + changed if changed else ''}); load average at the "
            f"start {', '.join(map(str, m['load_average_at_start']))}.")
    if not lines:
        return []
    return ["Sections re-measured since (`--merge`), newest first; their own figures say "
            "when too:", "", *lines, ""]


def markdown(report: dict[str, Any], img_prefix: str) -> str:
    """The results section: command, machine, summary, then each section's details."""
    m = report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    lines = [
        f"Made by `{report['command']}` on {m['date_utc']} UTC "
        f"({report['seconds'] / 60:.1f} min, commit `{m['git_commit']}`).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['python']}; "
        f"{packages}. Client loop: {m['client_loop']}; emulator loop: {m['emulator_loop']}; "
        f"{m['pinning']}. Load average (1, 5, 15 min) at the start "
        f"{', '.join(map(str, m['load_average_at_start']))}, at the end "
        f"{', '.join(map(str, m['load_average_at_end']))}: the machine was shared, so "
        "single runs are noisy; the sides are interleaved and the figures are medians or "
        "paired sums.",
        "",
        *_merge_lines(report),
    ]
    if report.get("quick"):
        lines += ["**Quick run** (`--quick`): short runs, and the adaptive runs are shorter "
                  "than the 60 s target; read these figures as a first look only.", ""]
    lines += summary_table(report["sections"])
    for section in report["sections"]:
        lines += ["", f"### {section['title']}", ""]
        if section.get("command") and section["command"] != report["command"]:
            lines += [f"Re-measured by `{section['command']}` at {section['measured_utc']} "
                      "UTC.", ""]
        lines += _details(section)
        for note in section["notes"]:
            lines += ["", note]
        for chart in section["charts"]:
            lines += ["", f"![{section['title']}]({img_prefix}{chart})"]
    return "\n".join(lines) + "\n"


def replace_marked(page: Path, text: str) -> None:
    """Put `text` between the markers of `page` (markers appended when missing)."""
    content = page.read_text() if page.exists() else ""
    block = f"{START}\n{text}{END}"
    if START in content and END in content:
        pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
        content = pattern.sub(lambda _: block, content, count=1)
    else:
        content = content.rstrip("\n") + ("\n\n" if content else "") + block + "\n"
    page.write_text(content)


# --- charts --------------------------------------------------------------------------------


def charts(sections: list[dict[str, Any]], img_dir: Path) -> None:
    """One PNG per section that has one (`_charts`, matplotlib loaded only here)."""
    from benchmarks import _charts

    _charts.charts(sections, img_dir)
