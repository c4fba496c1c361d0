"""Plots of load runs (matplotlib, from the `bench` extra; only this module imports it).

One run: latency over time (each request at the time it was due) beside the percentile
curve. Several runs read back from JSON: their percentile curves on one chart. The
percentile axis is HdrHistogram's: evenly spaced nines (0%, 90%, 99%, 99.9%, ...), so the
tail gets as much room as the median. Latency axes start at 0 ms.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator
except ImportError as exc:  # pragma: no cover - the dev extra installs it
    raise ImportError(
        f"plots need matplotlib, in the bench extra: pip install 'tiktok-async[bench]' ({exc})"
    ) from exc

from ._latency import LatencyHistogram

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .loadtest import LoadReport

__all__ = ["plot_comparison", "plot_report"]

_COLORS = {"fresh": "#d95f02", "cached": "#1b9e77", "all": "#444444"}
_LABELS = {"fresh": "first fetch", "cached": "cached", "all": "all"}
_SERIES = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def plot_report(report: LoadReport, path: str | os.PathLike[str]) -> None:
    """Latency over time and the percentile curve of `report`, as a PNG at `path`."""
    _report_figure(report).savefig(path, dpi=110)


def plot_comparison(
    reports: Sequence[Mapping[str, Any]], labels: Sequence[str], path: str | os.PathLike[str]
) -> None:
    """The percentile curves of reports (as `LoadReport.to_dict()` wrote them), one chart."""
    _comparison_figure(reports, labels).savefig(path, dpi=110)


def _report_figure(report: LoadReport) -> Figure:
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    over_time, curve = figure.subplots(1, 2, width_ratios=(3, 2))
    _draw_over_time(over_time, report)
    histograms = {name: stats.latency for name, stats in report.groups.items()}
    if len(histograms) > 1:
        histograms["all"] = report.total().latency
    _draw_curves(curve, [(_LABELS[name], _COLORS[name], h) for name, h in histograms.items()])
    figure.suptitle(_title(report.to_dict()))
    return figure


def _comparison_figure(reports: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> Figure:
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    series = [(f"{label}: {_title(report)}", _SERIES[i % len(_SERIES)],
               LatencyHistogram.decode(report["hdr"]["all"]))
              for i, (label, report) in enumerate(zip(labels, reports, strict=True))]
    _draw_curves(axes, series)
    axes.set_title("latency by percentile")
    return figure


def _title(report: Mapping[str, Any]) -> str:
    if report["mode"] == "open":
        load = f"open loop at {report['rate']:g} requests/s"
    else:
        load = f"closed loop, {report['concurrency']} in flight"
    return f"{load}, {report['sent']} requests, {report['kind']}"


def _draw_over_time(axes: Axes, report: LoadReport) -> None:
    samples = report.samples
    rows = list(zip(samples.due, samples.latency, samples.group, samples.status, strict=True))
    for index, name in enumerate(report.groups):
        points = [(due, latency * 1000) for due, latency, group, status in rows
                  if group == index and status]
        _scatter(axes, points, _COLORS[name], _LABELS[name], "o")
    failed = [(due, latency * 1000) for due, latency, _, status in rows if not status]
    _scatter(axes, failed, "#e41a1c", "no answer", "x")
    _time_axes(axes, report.mode)


def _time_axes(axes: Axes, mode: str) -> None:
    """Time from 0 s, latency from 0 ms, labels and legend."""
    since = "its scheduled send" if mode == "open" else "its send"
    axes.set_xlabel("time since the run started (s)")
    axes.set_ylabel(f"latency from {since} (ms)")
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    axes.set_title("latency over time")


def _scatter(axes: Axes, points: list[tuple[float, float]], color: str, label: str,
             marker: str) -> None:
    if points:
        xs, ys = zip(*points, strict=True)
        axes.scatter(xs, ys, s=6, color=color, label=f"{label} ({len(points)})",
                     marker=marker, alpha=0.6, linewidths=0.8 if marker == "x" else 0)


def _draw_curves(axes: Axes, series: list[tuple[str, str, LatencyHistogram]]) -> None:
    most = 1.0
    for label, color, histogram in series:
        curve = histogram.curve()
        if curve:
            xs = [_nines(level) for level, _ in curve]
            axes.plot(xs, [ms for _, ms in curve], color=color, label=label, linewidth=1.6)
            most = max(most, xs[-1])
    _percentile_axes(axes, most)


def _percentile_axes(axes: Axes, most: float) -> None:
    """Ticks at each nine up to `most`, latency from 0 ms, labels and legend."""
    ticks = range(math.ceil(most) + 1)
    axes.xaxis.set_major_locator(FixedLocator(list(ticks)))
    axes.set_xticklabels([_percent(n) for n in ticks])
    axes.set_xlim(0, math.ceil(most))
    axes.set_ylim(bottom=0)
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    axes.set_title("latency by percentile")


def _nines(level: float) -> float:
    """`level` (0-100) as a count of nines: 90% is 1, 99% is 2 (at most 9)."""
    return -math.log10(max(1 - level / 100, 1e-9))


def _percent(nines: int) -> str:
    return "0%" if nines == 0 else f"{100 - 10 ** (2 - nines):.{max(0, nines - 2)}f}%"
