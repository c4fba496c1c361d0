"""`make bench` / `make bench-quick`: every benchmark, each beside its baseline and target.

    python -m benchmarks.run [--quick] [--only SECTION ...] [--merge] [--render] [--uvloop]

Sections (a module each, `benchmarks/bench_<section>.py`): throughput, bulk, cli,
decode, rate, adaptive, goodput, memory, faults, tls; and, only when asked for by
`--only` (it starts its own `redis-server`), redis. The emulator runs in its own
process pinned to CPU 0, this process (and the children it starts) on CPU 1; compared
sides run interleaved and the figures are medians or paired sums. The shared fixtures
are in `_common`, the baselines (what a user would write instead) in `_baselines` (and
the process ones in `_bare_jsonl`), the writing of results in `_report` and `_charts`.

A full run writes `benchmarks/results/latest.json`, the table between the markers in
`docs/benchmarks.md` and the charts in `docs/img/`. `--quick` (short runs, memory up to
100,000 handles) and `--only` write `benchmarks/results/quick.json`, `quick.md` and
charts beside them instead, so a quick look never replaces the figures in the docs.
`--only SECTION --merge` re-runs full-length sections into `latest.json` (each section
records the command and time that made it) and rewrites the docs; `--render` runs
nothing and rewrites the docs table and charts from `latest.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import _report as report
from benchmarks._common import ROOT, Section, log, pin_client

RESULTS = ROOT / "benchmarks" / "results"
DOCS_PAGE, DOCS_IMG = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img"


@dataclass(frozen=True)
class Plan:
    """How long each section runs."""

    rounds: int = 30  # paired throughput rounds
    batch: int = 1_000  # requests a side a round (bare, client, json)
    httpx_batch: int = 50  # requests a round for httpx + pydantic (slow)
    decode_number: int = 20_000
    decode_repeat: int = 5
    rate_seconds: float = 8.0
    rate_runs: int = 2
    adaptive_seconds: float = 60.0
    memory_counts: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    fault_inputs: int = 5_000
    redis_seconds: float = 5.0  # acquire cost and rate accuracy, per side
    redis_e2e_seconds: float = 30.0  # four workers end to end, per run
    bulk_rounds: int = 10  # paired fetch_users rounds
    bulk_batch: int = 4_000  # handles a side a round
    ramp_seconds: float = 10.0  # the default client's ramp, before the rounds
    cli_rounds: int = 5  # a process a side a round
    cli_inputs: int = 20_000
    goodput_quotas: tuple[int, ...] = (20, 200, 1000)
    goodput_latencies: tuple[float, ...] = (0.05, 1.0, 3.0)
    goodput_seconds: float = 20.0  # of work at the quota: N = Q x this
    goodput_extra: bool = True  # the heavy-tailed `service` preset at Q = 200 too


FULL = Plan()
QUICK = Plan(rounds=4, batch=500, httpx_batch=25, decode_number=2_000,
             decode_repeat=3, rate_seconds=1.5, rate_runs=1, adaptive_seconds=15.0,
             memory_counts=(10_000, 100_000), fault_inputs=500, redis_seconds=1.0,
             redis_e2e_seconds=8.0, bulk_rounds=3, bulk_batch=1_000, ramp_seconds=6.0,
             cli_rounds=2, cli_inputs=5_000, goodput_quotas=(20, 1000),
             goodput_latencies=(0.05, 3.0), goodput_seconds=8.0, goodput_extra=False)

#: section -> (its module in `benchmarks`, the arguments of its `run` from the plan and
#: --uvloop). Modules are imported when their section runs, so `--only` loads only those.
SECTIONS: dict[str, tuple[str, Callable[[Plan, bool], tuple[Any, ...]]]] = {
    "throughput": ("bench_throughput",
                   lambda p, uvloop: (p.rounds, p.batch, p.httpx_batch, uvloop)),
    "bulk": ("bench_bulk", lambda p, _: (p.bulk_rounds, p.bulk_batch, p.ramp_seconds)),
    "cli": ("bench_cli", lambda p, _: (p.cli_rounds, p.cli_inputs)),
    "decode": ("bench_decode", lambda p, _: (p.decode_number, p.decode_repeat)),
    "rate": ("bench_rate", lambda p, _: (p.rate_seconds, p.rate_runs)),
    "adaptive": ("bench_adaptive", lambda p, _: (p.adaptive_seconds,)),
    "memory": ("bench_memory", lambda p, _: (p.memory_counts,)),
    "faults": ("bench_faults", lambda p, _: (p.fault_inputs,)),
    "goodput": ("bench_goodput", lambda p, _: (p.goodput_quotas, p.goodput_latencies,
                                               p.goodput_seconds, p.goodput_extra)),
    "tls": ("bench_tls", lambda p, uvloop: (max(4, p.rounds // 3), p.batch, uvloop)),
    "redis": ("bench_redis", lambda p, _: (p.redis_seconds, p.redis_e2e_seconds)),
}
#: What `make bench` runs: every section but those that need a Redis server.
DEFAULT = ("throughput", "bulk", "cli", "decode", "rate", "adaptive", "goodput", "memory",
           "faults", "tls")


def run_section(name: str, plan: Plan, use_uvloop: bool) -> Section:
    module_name, arguments = SECTIONS[name]
    module = importlib.import_module(f"benchmarks.{module_name}")
    section: Section = module.run(*arguments(plan, use_uvloop))
    return section


def _failed_section(name: str, error: BaseException) -> Section:
    section = Section(name, name)
    section.figure("section ran", 0, "share", "runs without error", False,
                   note=f"{type(error).__name__}: {error}"[:300])
    return section


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}; "
                             f"without it: {', '.join(DEFAULT)}")
    parser.add_argument("--merge", action="store_true",
                        help="with --only (full length): replace those sections in "
                             "latest.json and rewrite the docs table and charts")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite the docs table and charts from "
                             "latest.json (after a change to the report or the charts)")
    parser.add_argument("--uvloop", action="store_true",
                        help="run the client sides of the throughput section on uvloop")
    return parser


def _run_all(names: list[str], plan: Plan, use_uvloop: bool, command: str
             ) -> list[Section]:
    sections: list[Section] = []
    for name in names:
        started = time.perf_counter()
        try:
            section = run_section(name, plan, use_uvloop)
        except Exception as exc:  # one broken section must not lose the others' figures
            log(f"{name}: FAILED: {exc!r}")
            section = _failed_section(name, exc)
        section.seconds = time.perf_counter() - started
        section.command = command
        section.measured_utc = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        sections.append(section)
    return sections


def _command(args: argparse.Namespace, given: list[str]) -> str:
    """How this run is named in the results: the make target, or the command line."""
    if args.only or args.uvloop:
        return shlex.join(["python", "-m", "benchmarks.run", *given])
    return "make bench-quick" if args.quick else "make bench"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.merge and (args.quick or not args.only):
        parser.error("--merge goes with --only and without --quick")
    if args.render:
        _write(json.loads((RESULTS / "latest.json").read_text()), full=True)
        return 0
    plan = QUICK if args.quick else FULL
    names = [s for s in SECTIONS if s in args.only] if args.only else list(DEFAULT)
    given = sys.argv[1:] if argv is None else argv
    command = _command(args, given)
    pinned = pin_client()
    machine = report.machine(args.uvloop)
    machine["client_pinned"] = pinned
    started = time.perf_counter()
    sections = _run_all(names, plan, args.uvloop, command)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data: dict[str, Any] = {
        "command": command,
        "argv": [sys.executable, "-m", "benchmarks.run", *given],
        "quick": args.quick,
        "plan": plan.__dict__,
        "machine": machine,
        "seconds": time.perf_counter() - started,
        "sections": [s.as_dict() for s in sections],
    }
    if args.merge:
        data = _merged(data)
    _write(data, full=not args.quick and (not args.only or args.merge))
    failed = [f for s in data["sections"] for f in s["figures"] if f["met"] is False]
    print(report.markdown(data, ""))
    log(f"done in {(time.perf_counter() - started) / 60:.1f} min; {len(failed)} figure(s) "
        "not meeting their target")
    return 0


def _merged(new: dict[str, Any]) -> dict[str, Any]:
    """latest.json with the sections of `new` in place of its own; the run that made each
    section stays recorded in it (`command`, `measured_utc`)."""
    old = json.loads((RESULTS / "latest.json").read_text())
    replaced = {s["key"]: s for s in new["sections"]}
    old["sections"] = [replaced.pop(s["key"], s) for s in old["sections"]]
    old["sections"] += list(replaced.values())
    order = list(SECTIONS)  # the suite's order, new sections in their place
    old["sections"].sort(key=lambda s: order.index(s["key"]) if s["key"] in order else 99)
    old.setdefault("merged", []).append({
        "command": new["command"], "sections": [s["key"] for s in new["sections"]],
        "machine": new["machine"],
    })
    return dict(old)


def _write(data: dict[str, Any], full: bool) -> None:
    """Charts, JSON and Markdown: into the docs for a full run, beside the JSON otherwise."""
    if full:
        json_path, img_dir, img_prefix = RESULTS / "latest.json", DOCS_IMG, "img/"
    else:
        json_path, img_dir, img_prefix = RESULTS / "quick.json", RESULTS / "quick-img", \
            "quick-img/"
    try:
        report.charts(data["sections"], img_dir)
    except Exception as exc:  # charts are a view of the figures: never lose the figures
        log(f"charts: FAILED: {exc!r}")
    report.write_json(json_path, data)
    text = report.markdown(data, img_prefix)
    if full:
        report.replace_marked(DOCS_PAGE, text)
        log(f"wrote {json_path.relative_to(ROOT)}, {DOCS_PAGE.relative_to(ROOT)} "
            f"and {img_dir.relative_to(ROOT)}/")
    else:
        (RESULTS / "quick.md").write_text(text)
        log(f"wrote {json_path.relative_to(ROOT)}, benchmarks/results/quick.md "
            f"and {img_dir.relative_to(ROOT)}/ (the docs keep the last full run)")


if __name__ == "__main__":
    raise SystemExit(main())
