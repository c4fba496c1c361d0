"""`tiktok-async bench`'s tables: one report, or two side by side (plain text, stdlib only).

Both read the JSON form of a report (`LoadReport.to_dict()`), so a run just made and two
files read back print the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["comparison_table", "headline", "report_table"]

_GROUP_TITLES = {"fresh": "first fetch", "cached": "cached"}
_LATENCY_ROWS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"),
                 ("max", "max"))
Row = tuple[str, list[str]]


def headline(report: Mapping[str, Any]) -> str:
    """One line: the load, its length, the kind and the target."""
    if report["mode"] == "open":
        load = f"open loop at {report['rate']:g} requests/s"
    else:
        load = f"closed loop, {report['concurrency']} in flight"
    length = (f"for {report['duration_s']:g} s" if report["duration_s"] is not None
              else f"{report['requests_asked']} requests")
    return f"{load}, {length}, {report['kind']} at {report['target']}"


def report_table(report: Mapping[str, Any]) -> str:
    """The report as a table: a column for all requests, then one a group (if two)."""
    parts: list[Mapping[str, Any]] = [report]
    names = ["all"]
    if len(report["groups"]) > 1:
        parts += [report[name] for name in report["groups"]]
        names += [_GROUP_TITLES[name] for name in report["groups"]]
    else:
        names = [_GROUP_TITLES[report["groups"][0]]]
    lines = [headline(report), _notes(report), ""]
    lines += _format(["", *names], _rows(parts))
    lines.append(_in_flight(report))
    return "\n".join(lines)


def comparison_table(reports: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """Two (or more) reports' totals side by side; the last column is the last over the
    first."""
    rows = _rows(reports)
    header = ["", *labels]
    if len(reports) == 2:
        header.append(f"{labels[1]} / {labels[0]}")
        rows = [(label, [*values, _ratio(values[0], values[1])]) for label, values in rows]
    heads = [f"{label}: {headline(report)}" for label, report in zip(labels, reports,
                                                                      strict=True)]
    return "\n".join([*heads, "", *_format(header, rows)])


def _notes(report: Mapping[str, Any]) -> str:
    retries = report["retries"]
    notes = ["retries off" if not retries else f"up to {retries} retries (counted in latency)"]
    if report["warmed"] or "cached" in report["groups"]:
        notes.append(f"warm set asked once first ({report['warmed']} answered)")
    if report["inputs_ran_out"]:
        notes.append("the fresh inputs ran out before the end")
    return "; ".join(notes)


def _rows(parts: Sequence[Mapping[str, Any]]) -> list[Row]:
    rows: list[Row] = [
        ("sent", [str(p["sent"]) for p in parts]),
        ("answered", [str(p["answered"]) for p in parts]),
        ("achieved rate /s", [f"{p['achieved_rate']:.1f}" for p in parts]),
    ]
    rows += _count_rows(parts, "status_counts", "status {}")
    rows += _count_rows(parts, "error_counts", "no answer: {}")
    rows += [(f"latency {title} ms", [_ms(p["latency_ms"][key]) for p in parts])
             for key, title in _LATENCY_ROWS]
    return rows


def _count_rows(parts: Sequence[Mapping[str, Any]], key: str, label: str) -> list[Row]:
    names = sorted({name for p in parts for name in p[key]})
    return [(label.format(name), [str(p[key].get(name, 0)) for p in parts]) for name in names]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _ratio(first: str, second: str) -> str:
    try:
        a, b = float(first.replace(",", "")), float(second.replace(",", ""))
    except ValueError:
        return ""
    return f"{b / a:.2f}x" if a else ""


def _format(header: list[str], rows: list[Row]) -> list[str]:
    table = [header, *([label, *values] for label, values in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width
                                                  in zip(row[1:], widths[1:], strict=True))])
            for row in table]


def _in_flight(report: Mapping[str, Any]) -> str:
    flight = report["in_flight"]
    if report["mode"] != "open":
        return f"\nin flight: at most {flight['max']} at once"
    lag = (f"; sent {report['send_rate']:.1f} a second, at most "
           f"{report['max_send_lag_ms']:.1f} ms behind schedule")
    if not flight["cap_hits"]:
        return (f"\nin flight: at most {flight['max']} at once (room for {flight['cap']}, "
                f"never full: the loop stayed open){lag}")
    return (f"\nin flight: the client's {flight['cap']} slots were full for "
            f"{flight['cap_hits']} sends: those waited for a slot, so the loop was not open "
            f"then and latency from their schedule includes the wait{lag}")
