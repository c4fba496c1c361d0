"""`make bench` / `make bench-quick`: every benchmark, each beside its baseline and target.

    python -m benchmarks.run [--quick] [--only SECTION ...] [--uvloop]

Sections: throughput, decode, rate, adaptive, memory, faults (`bench_<section>.py`).
The emulator runs in its own process pinned to CPU 0, this process (and the children it
starts) on CPU 1; compared sides run interleaved and the figures are medians.

A full run writes `benchmarks/results/latest.json`, the table between the markers in
`docs/benchmarks.md` and the charts in `docs/img/`. `--quick` (under two minutes, short
runs, memory up to 100,000 handles) and `--only` write `benchmarks/results/quick.json`,
`quick.md` and charts beside them instead, so a quick look never replaces the figures
in the docs. `--only SECTION --merge` re-runs full-length sections into `latest.json`
(each section records the command and time that made it) and rewrites the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import bench_common as common
from benchmarks import bench_report as report
from benchmarks.bench_common import ROOT, Section, log

RESULTS = ROOT / "benchmarks" / "results"
DOCS_PAGE, DOCS_IMG = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img"
SECTIONS = ("throughput", "decode", "rate", "adaptive", "memory", "faults")


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


FULL = Plan()
QUICK = Plan(rounds=4, batch=500, httpx_batch=25, decode_number=2_000,
             decode_repeat=3, rate_seconds=1.5, rate_runs=1, adaptive_seconds=15.0,
             memory_counts=(10_000, 100_000), fault_inputs=500)


def run_section(name: str, plan: Plan, use_uvloop: bool) -> Section:
    """Run one section (imported here, so `--only` loads only what it runs)."""
    if name == "throughput":
        from benchmarks import bench_throughput

        return bench_throughput.run(plan.rounds, plan.batch, plan.httpx_batch, use_uvloop)
    if name == "decode":
        from benchmarks import bench_decode

        return bench_decode.run(plan.decode_number, plan.decode_repeat)
    if name == "rate":
        from benchmarks import bench_rate

        return bench_rate.run(plan.rate_seconds, plan.rate_runs)
    if name == "adaptive":
        from benchmarks import bench_adaptive

        return bench_adaptive.run(plan.adaptive_seconds)
    if name == "memory":
        from benchmarks import bench_memory

        return bench_memory.run(plan.memory_counts)
    if name == "faults":
        from benchmarks import bench_faults

        return bench_faults.run(plan.fault_inputs)
    raise ValueError(f"unknown section {name!r}")


def _failed_section(name: str, error: BaseException) -> Section:
    section = Section(name, name)
    section.figure("section ran", 0, "share", "runs without error", False,
                   note=f"{type(error).__name__}: {error}"[:300])
    return section


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--merge", action="store_true",
                        help="with --only (full length): replace those sections in "
                             "latest.json and rewrite the docs table and charts")
    parser.add_argument("--uvloop", action="store_true",
                        help="run the client sides of the throughput section on uvloop")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.merge and (args.quick or not args.only):
        parser.error("--merge goes with --only and without --quick")
    plan = QUICK if args.quick else FULL
    names = [s for s in SECTIONS if s in args.only] if args.only else list(SECTIONS)
    given = sys.argv[1:] if argv is None else argv
    command = "make bench-quick" if args.quick else "make bench"
    if args.only or args.uvloop:
        command = shlex.join(["python", "-m", "benchmarks.run", *given])
    pinned = common.pin_client()
    machine = common.machine(args.uvloop)
    machine["client_pinned"] = pinned
    started = time.perf_counter()
    sections: list[Section] = []
    for name in names:
        section_started = time.perf_counter()
        try:
            section = run_section(name, plan, args.uvloop)
        except Exception as exc:  # one broken section must not lose the others' figures
            log(f"{name}: FAILED: {exc!r}")
            section = _failed_section(name, exc)
        section.seconds = time.perf_counter() - section_started
        section.command = command
        section.measured_utc = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        sections.append(section)
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
