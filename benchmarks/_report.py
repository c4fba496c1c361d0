"""Writing the results of `make bench`: the machine, JSON, the Markdown table, the charts.

`machine()` (what the figures were measured on), `write_json(path, report)`,
`markdown(report, img_prefix)` (the table section between the markers),
`replace_marked(page, text)` (only between `<!-- bench:table -->` and
`<!-- /bench:table -->`; the markers are added at the end when missing), and `charts()`
(one PNG per section that has one; matplotlib, Agg).
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
    if key == "faults":
        out = ["| inputs | answered | requests | by status | extra requests per answer |",
               "|---:|---:|---:|---|---:|"]
        out += [f"| {r['inputs']:,} | {r['ok']:,} | {r['requests']:,} | "
                f"{', '.join(f'{s}: {n}' for s, n in sorted(r['by_status'].items()))} | "
                f"{r['extra_requests_per_answer']:.3f} |" for r in rows]
        return out
    return []


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
    """One PNG per section that has one; the file names go into each section's `charts`."""
    import matplotlib

    matplotlib.use("Agg")
    img_dir.mkdir(parents=True, exist_ok=True)
    makers = {"throughput": _throughput, "decode": _decode, "rate": _rate,
              "adaptive": _adaptive, "memory": _memory}
    for section in sections:
        maker = makers.get(section["key"])
        if maker is None:
            continue
        name = f"bench_{section['key']}.png"
        maker(section, img_dir / name)
        section["charts"] = [name]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _throughput(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    names = [r["side"] for r in rows]
    colors = ["#1f77b4" if n == "TikTokClient" else "#aaaaaa" for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.barh(names, [r["rate"] for r in rows], color=colors)
    left.set_xlabel("requests/s (paired, summed over rounds)")
    left.invert_yaxis()
    right.barh(names, [r["cpu_us"] for r in rows], color=colors)
    right.set_xlabel("client CPU µs per request (log scale)")
    right.set_xscale("log")
    right.invert_yaxis()
    right.set_yticklabels([])
    _save(fig, path)


def _decode(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [r["user_us"] for r in rows], height=0.4, label="user")
    ax.barh([y + 0.2 for y in ys], [r["video_us"] for r in rows], height=0.4, label="video")
    ax.set_yticks(list(ys), [r["decoder"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("µs per object (median)")
    ax.legend()
    _save(fig, path)


def _rate(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.1 * len(rows)), sharex=True)
    for ax, row in zip(axes, rows, strict=True):
        xs, ys = trailing_counts(row.get("first_run_arrivals", []))
        ax.plot(xs, ys, lw=1)
        ax.axhline(row["rate"] + 1, color="red", ls="--", lw=0.8, label="rate + 1")
        ax.axhline(row["rate"], color="grey", ls=":", lw=0.8, label="rate")
        ax.set_title(row["side"], fontsize=9)
        ax.set_ylabel("req in last 1 s", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    axes[-1].set_xlabel("seconds from the first request (first run)")
    _save(fig, path)


def trailing_counts(times: list[float], step: float = 0.05) -> tuple[list[float], list[int]]:
    """Requests in the trailing 1 s, every `step` s from the first arrival (for the chart)."""
    if not times:
        return [], []
    xs, ys, start, end, t0 = [], [], 0, 0, times[0]
    now = t0
    while now <= times[-1] + 1.0:
        while end < len(times) and times[end] <= now:
            end += 1
        while start < end and times[start] <= now - 1.0:
            start += 1
        xs.append(now - t0)
        ys.append(end - start)
        now += step
    return xs, ys


def _adaptive(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.4 * len(rows)), sharex=True)
    for ax, row in zip(axes, rows, strict=True):
        per_second = row["ok_per_second"][:-1] or row["ok_per_second"]
        ax.step(range(len(per_second)), per_second, where="post", label="200s per second")
        samples = row["rate_samples"]
        if samples:
            ax.plot([t for t, _ in samples], [r for _, r in samples], lw=0.8,
                    label="client's rate")
        ax.axhline(row["quota"], color="red", ls="--", lw=0.8, label="quota Q")
        ax.set_ylim(0, row["quota"] * 2.2)
        ax.set_title(f"Q = {row['quota']}/s, burst {row['quota']}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds")
    _save(fig, path)


def _memory(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    for row in section["rows"]:
        samples = row["rss_samples"]
        ax.plot([n for n, _ in samples], [mb for _, mb in samples], marker=".",
                label=f"{row['count']:,} handles (peak {row['peak_rss_mb']:.0f} MB)")
    ax.axhline(150, color="red", ls="--", lw=0.8, label="150 MB target")
    ax.set_xlabel("results so far")
    ax.set_ylabel("client RSS, MB")
    ax.set_xscale("symlog", linthresh=10_000)
    ax.set_ylim(0, 170)
    ax.legend(fontsize=8)
    _save(fig, path)
