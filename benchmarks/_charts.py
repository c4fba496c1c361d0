"""The charts of `make bench`: one PNG per section that has one (matplotlib, Agg).

`charts(sections, img_dir)` draws them from the sections' rows (as in `latest.json`) and
puts the file names into each section's `charts`. Rules every chart keeps: every axis
says what it counts and in which unit; bars start at zero on a linear axis (a bar far
off the scale is cut at the edge and its value written on it, never a log axis that
makes 134 against 157 look like double); a line is never clipped at the top of its
panel; each picture is looked at before it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

HIGHLIGHT, OTHER, FIXED_64, QUOTA = "#1f77b4", "#aaaaaa", "#7f7f7f", "#d62728"
#: A bar longer than this multiple of the longest of the others is cut at the edge.
OFF_SCALE = 4.0


def charts(sections: list[dict[str, Any]], img_dir: Path) -> None:
    """One PNG per section that has one (three for goodput); the file names go into each
    section's `charts`."""
    import matplotlib

    matplotlib.use("Agg")
    img_dir.mkdir(parents=True, exist_ok=True)
    makers = {"throughput": [_throughput], "bulk": [_bulk], "cli": [_cli],
              "decode": [_decode], "rate": [_rate], "adaptive": [_adaptive],
              "goodput": [_goodput, _goodput_rate, _goodput_flow], "memory": [_memory]}
    for section in sections:
        names = []
        for n, maker in enumerate(makers.get(section["key"], [])):
            name = f"bench_{section['key']}{'_' + str(n + 1) if n else ''}.png"
            maker(section, img_dir / name)
            names.append(name)
        if names:
            section["charts"] = names


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax: Any, names: Sequence[str], values: Sequence[float], label: str,
          highlight: str, fmt: str = "{:,.0f}") -> None:
    """Horizontal bars from zero, each with its value written at its end; a bar more
    than `OFF_SCALE` times the longest of the others is cut at the edge."""
    colors = [HIGHLIGHT if n == highlight else OTHER for n in names]
    others = sorted(values)[-2] if len(values) > 1 else max(values)
    edge = max(values) if max(values) <= OFF_SCALE * others else others * 1.6
    shown = [min(v, edge) for v in values]
    ax.barh(list(names), shown, color=colors)
    for y, (value, length) in enumerate(zip(values, shown, strict=True)):
        cut = value > edge
        text = fmt.format(value) + (" (off scale)" if cut else "")
        ax.text(length * (0.98 if cut else 1.01), y, text, va="center",
                ha="right" if cut else "left", fontsize=8, color="white" if cut else "black")
    ax.set_xlim(0, edge * 1.25)
    ax.set_xlabel(label)
    ax.invert_yaxis()


def _paired_bars(rows: list[dict[str, Any]], path: Path, highlight: str, rate_label: str,
                 cpu_label: str, title: str) -> None:
    import matplotlib.pyplot as plt

    names = [r["side"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.6))
    _bars(left, names, [r["rate"] for r in rows], rate_label, highlight)
    _bars(right, names, [r["cpu_us"] for r in rows], cpu_label, highlight)
    right.set_yticklabels([])
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _throughput(section: dict[str, Any], path: Path) -> None:
    _paired_bars(section["rows"], path, "TikTokClient",
                 "requests per second (paired batches, summed)",
                 "client CPU per request, µs (process time)",
                 "Cached /user lookups, 64 in flight: the client beside what users write instead")


def _bulk(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in section["rows"] if r.get("part") == "paired"]
    ramp = next((r for r in section["rows"] if r.get("part") == "ramp"), None)
    names = [r["side"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.55 * len(rows) + 2.0),
                             gridspec_kw={"width_ratios": [1, 1, 1.1]})
    _bars(axes[0], names, [r["rate"] for r in rows], "requests per second (paired, summed)",
          "fetch_users (defaults)")
    _bars(axes[1], names, [r["cpu_us"] for r in rows], "client CPU per request, µs",
          "fetch_users (defaults)")
    axes[1].set_yticklabels([])
    if ramp is not None:
        _ramp(axes[2], ramp)
    fig.suptitle("Cached users through fetch_users beside a bare loop (paired), and a fresh "
                 "client's ramp", fontsize=10)
    _save(fig, path)


def _ramp(ax: Any, ramp: dict[str, Any]) -> None:
    step = ramp["step"]
    per_second = [n / step for n in ramp["answers_per_step"]]
    ax.step([i * step for i in range(len(per_second))], per_second, where="post",
            color=HIGHLIGHT, label="fetch_users (defaults), fresh client")
    ax.axhline(ramp["bare_rate"], color=OTHER, ls="--", lw=1,
               label=f"bare loop, paired: {ramp['bare_rate']:,.0f}/s")
    ax.axhline(0.9 * ramp["bare_rate"], color=QUOTA, ls=":", lw=1, label="90% of it")
    ax.set_ylim(0, max([*per_second, ramp["bare_rate"]]) * 1.45)  # room for the legend
    ax.set_xlabel("seconds from the client's first request")
    ax.set_ylabel("answers per second (0.25 s bins)")
    ax.set_title("ramp against a server with no limit", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def _cli(section: dict[str, Any], path: Path) -> None:
    _paired_bars(section["rows"], path, "tiktok-async users, a first run",
                 "inputs per second (process start to exit, summed)",
                 "CPU per input, µs (the process's user + system)",
                 "JSON lines written from cached users: the command line beside a bare loop")


def _decode(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [r["user_us"] for r in rows], height=0.4, label="user")
    ax.barh([y + 0.2 for y in ys], [r["video_us"] for r in rows], height=0.4, label="video")
    ax.set_yticks(list(ys), [r["decoder"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("µs per object decoded (median of the repeats)")
    ax.legend()
    _save(fig, path)


def _rate(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = section["rows"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.1 * len(rows)), sharex=True)
    for ax, row in zip(axes, rows, strict=True):
        xs, ys = trailing_counts(row.get("first_run_arrivals", []))
        ax.plot(xs, ys, lw=1)
        ax.axhline(row["rate"] + 1, color=QUOTA, ls="--", lw=0.8, label="rate + 1")
        ax.axhline(row["rate"], color="grey", ls=":", lw=0.8, label="rate")
        ax.set_ylim(0, max([*ys, row["rate"] + 1]) * 1.15)
        ax.set_title(row["side"], fontsize=9)
        ax.set_ylabel("requests in the\nlast 1 s (count)", fontsize=8)
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
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.5 * len(rows)), sharex=True)
    for ax, row in zip(axes, rows, strict=True):
        per_second = row["ok_per_second"][:-1] or row["ok_per_second"]
        ax.step(range(len(per_second)), per_second, where="post", label="200s per second")
        samples = row["rate_samples"]
        if samples:
            ax.plot([t for t, _ in samples], [r for _, r in samples], lw=0.8,
                    label="client's rate")
        ax.axhline(row["quota"], color=QUOTA, ls="--", lw=0.8, label="quota Q")
        top = max([*per_second, *(r for _, r in samples), row["quota"]])
        ax.set_ylim(0, top * 1.1)
        ax.set_ylabel("requests per second")
        ax.set_title(f"Q = {row['quota']}/s, burst {row['quota']}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds from the start")
    _save(fig, path)


def _cells(section: dict[str, Any]) -> tuple[list[int], list[float], dict[Any, Any]]:
    """The goodput grid: quotas, latencies, and (Q, L, side) -> row (presets left out)."""
    rows = [r for r in section["rows"] if not r["profile"]]
    quotas = sorted({r["quota"] for r in rows})
    latencies = sorted({r["latency_s"] for r in rows})
    return quotas, latencies, {(r["quota"], r["latency_s"], r["side"]): r for r in rows}


def _grid(quotas: list[int], latencies: list[float]) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(quotas), len(latencies), squeeze=False,
                             figsize=(4.2 * len(latencies), 2.6 * len(quotas)))
    return fig, axes


def _goodput(section: dict[str, Any], path: Path) -> None:
    """Answers of 200 per second at the emulator, each cell, both sides; Q dashed."""
    quotas, latencies, by_cell = _cells(section)
    fig, axes = _grid(quotas, latencies)
    for i, quota in enumerate(quotas):
        for j, latency in enumerate(latencies):
            ax = axes[i][j]
            top = float(quota)
            for side, color in (("defaults", HIGHLIGHT), ("fixed 64", FIXED_64)):
                row = by_cell.get((quota, latency, side))
                if row is None:
                    continue
                counts = row["ok_per_second"]
                ax.step(range(len(counts)), counts, where="post", color=color, lw=1,
                        label=f"{side}: {row['share_of_quota']:.0%} of Q")
                top = max(top, *counts)
            ax.axhline(quota, color=QUOTA, ls="--", lw=0.8)
            ax.set_ylim(0, top * 1.15)
            ax.set_title(f"Q = {quota}/s, first fetch {latency:g} s", fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
            if j == 0:
                ax.set_ylabel("200s per second\n(at the emulator)", fontsize=8)
            if i == len(quotas) - 1:
                ax.set_xlabel("seconds from the client's start")
    _save(fig, path)


def _each_default(section: dict[str, Any], path: Path, ylabel: str,
                  draw: Any) -> None:
    """A panel per cell of the defaults' runs: `draw(ax, row, quota, latency)` returns
    the highest value it drew (the panel's scale starts at zero and holds it all)."""
    quotas, latencies, by_cell = _cells(section)
    fig, axes = _grid(quotas, latencies)
    for i, quota in enumerate(quotas):
        for j, latency in enumerate(latencies):
            ax = axes[i][j]
            row = by_cell.get((quota, latency, "defaults"))
            if row is None:
                continue
            top = draw(ax, row, quota, latency)
            ax.set_ylim(0, top * 1.15)
            ax.set_title(f"Q = {quota}/s, first fetch {latency:g} s (defaults)", fontsize=9)
            ax.legend(fontsize=6, loc="best")
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if i == len(quotas) - 1:
                ax.set_xlabel("seconds from the client's start")
    _save(fig, path)


def _goodput_rate(section: dict[str, Any], path: Path) -> None:
    """Where the time goes (1): the adaptive rate, sampled in the client, against Q."""

    def draw(ax: Any, row: dict[str, Any], quota: int, _: float) -> float:
        t, rate = [s[0] for s in row["samples"]], [s[1] for s in row["samples"]]
        ax.plot(t, rate, color="#ff7f0e", lw=1, label="client's rate")
        ax.axhline(quota, color=QUOTA, ls="--", lw=0.8, label="quota Q")
        return float(max([quota, *rate]))

    _each_default(section, path, "requests per second", draw)


def _goodput_flow(section: dict[str, Any], path: Path) -> None:
    """Where the time goes (2): the concurrency limit and the attempts in flight,
    against Q x latency (what the quota needs in flight, Little's law)."""

    def draw(ax: Any, row: dict[str, Any], quota: int, latency: float) -> float:
        t = [s[0] for s in row["samples"]]
        limit, flying = [s[2] for s in row["samples"]], [s[3] for s in row["samples"]]
        ax.plot(t, limit, color=HIGHLIGHT, lw=1, label="concurrency limit")
        ax.plot(t, flying, color="#2ca02c", lw=1, label="in flight")
        ax.axhline(quota * latency, color=QUOTA, ls="--", lw=0.8, label="Q x latency")
        return float(max([quota * latency, *limit, *flying]))

    _each_default(section, path, "requests (count)", draw)


def _memory(section: dict[str, Any], path: Path) -> None:
    """A panel per size, each on its own linear scale of results, one RSS scale."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rows = sorted(section["rows"], key=lambda r: r["count"])
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.4), sharey=True,
                             squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        samples = row["rss_samples"]
        ax.plot([n for n, _ in samples], [mb for _, mb in samples], marker=".",
                color=HIGHLIGHT, label=f"RSS (peak {row['peak_rss_mb']:.0f} MB)")
        ax.axhline(150, color=QUOTA, ls="--", lw=0.8, label="150 MB target")
        ax.set_xlim(0, row["count"])
        ax.set_ylim(0, 170)
        ax.set_title(f"{row['count']:,} handles", fontsize=9)
        ax.set_xlabel("results so far (handles)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("client RSS, MB")
    _save(fig, path)
