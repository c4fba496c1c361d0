"""Section: `tiktok-async users` against a bare loop that writes the same JSON lines.

N cached users (the emulator has answered each once: the bulk case at its cheapest,
where the client's own cost shows most) go through, each side a fresh process a round,
in alternating order (reversed every other round), against one emulator process:

- `tiktok-async users INPUT -o OUT.jsonl -q` with its defaults (the adaptive rate and
  concurrency, resume, the output lock), a first run: nothing remembered (a fresh
  `XDG_STATE_HOME` every round), so its adaptive rate starts at 10/s: the judged side;
- the same, a later run: the state folder kept from round to round (and a run before the
  rounds), so it starts at the rate the key reached last time (`cli/_ratememory.py`);
- the same with `--rate 100000 --burst 64 --concurrency 64 --fixed-concurrency` (no
  ramp, and a bucket no request waits on: the command line's own cost at the bare
  loop's 64 in flight);
- `python -m benchmarks._bare_jsonl` (aiohttp + msgspec + a buffered file, 64 workers,
  one line per input): the baseline.

Inputs per second: N over the process's wall time (start to exit: interpreter start,
imports, the run, the file closed); CPU: the process's user + system time from its
resource usage (`os.wait4`), so each side's CPU is measured in its own process. Both
are summed over the rounds. A start-up run per side on one input gives the fixed cost,
reported beside the totals (the command line's on an empty input would stop before its
loop, client and files, and understate it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import FAST, KEY, ROOT, Section, Server, interleaved, log
from benchmarks.bench_bulk import warm_handles

BARE, CLI, CLI_LATER, CLI_FIXED = (
    "bare aiohttp+msgspec+file", "tiktok-async users, a first run",
    "tiktok-async users, a later run",
    "tiktok-async users, 64 fixed, no ramp")
SIDES = (BARE, CLI, CLI_LATER, CLI_FIXED)
CLI_BIN = Path(sys.executable).with_name("tiktok-async")
MIN_RATE = 0.8


@dataclass
class Tally:
    """Summed wall and CPU seconds of one side's processes."""

    inputs: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def add(self, inputs: int, wall: float, cpu: float) -> None:
        self.inputs += inputs
        self.wall += wall
        self.cpu += cpu


def _command(side: str, source: Path, target: Path, base_url: str) -> list[str]:
    if side == BARE:
        return [sys.executable, "-m", "benchmarks._bare_jsonl", str(source), str(target),
                base_url, KEY]
    fixed = ["--rate", "100000", "--burst", "64", "--concurrency", "64", "--fixed-concurrency"]
    return [str(CLI_BIN), "users", str(source), "-o", str(target), "-q",
            "--base-url", base_url, *(fixed if side == CLI_FIXED else [])]


def _state_home(side: str, folder: Path) -> str:
    """`XDG_STATE_HOME` for a run of `side`: kept for the later runs, new for the rest."""
    if side == CLI_LATER:
        return str(folder / "state-kept")
    return tempfile.mkdtemp(dir=folder, prefix="state-")


def one_process(command: list[str], state_home: str | None = None) -> tuple[float, float]:
    """Run `command` to its end: (wall seconds, CPU seconds of the process)."""
    env = {**os.environ, "TIKTOK_API_KEY": KEY}
    if state_home is not None:
        env["XDG_STATE_HOME"] = state_home
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {proc.returncode}: {stderr[-1500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def _lines(path: Path) -> int:
    with path.open("rb") as out:
        return sum(1 for _ in out)


def _rounds(base_url: str, handles: list[str], rounds: int, folder: Path
            ) -> dict[str, Tally]:
    source = folder / "handles.txt"
    source.write_text("".join(f"{h}\n" for h in handles))
    tallies = {side: Tally() for side in SIDES}
    first = folder / "out-first.jsonl"  # the later runs' first: it leaves a rate behind
    one_process(_command(CLI_LATER, source, first, base_url), _state_home(CLI_LATER, folder))
    first.unlink()
    for n, side in interleaved(SIDES, rounds):
        target = folder / f"out-{n}-{SIDES.index(side)}.jsonl"
        wall, cpu = one_process(_command(side, source, target, base_url),
                                _state_home(side, folder))
        written = _lines(target)
        if written != len(handles):
            raise RuntimeError(f"{side} wrote {written} lines for {len(handles)} inputs")
        tallies[side].add(len(handles), wall, cpu)
        target.unlink()
    return tallies


def _startup(base_url: str, handles: list[str], folder: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) of each side on one input: the fixed cost of a process."""
    costs = {}
    source = folder / "start.txt"
    source.write_text(f"{handles[0]}\n")
    for side in SIDES:
        target = folder / f"start-{SIDES.index(side)}.jsonl"
        costs[side] = one_process(_command(side, source, target, base_url),
                                  _state_home(BARE, folder))
        target.unlink(missing_ok=True)
    return costs


def _rows(tallies: dict[str, Tally], startup: dict[str, tuple[float, float]], rounds: int
          ) -> list[dict[str, Any]]:
    bare = tallies[BARE]
    rows = []
    for side, tally in tallies.items():
        start_wall, start_cpu = startup[side]
        row: dict[str, Any] = {
            "side": side, "rounds": rounds, "inputs": tally.inputs,
            "rate": tally.inputs / tally.wall, "cpu_us": tally.cpu / tally.inputs * 1e6,
            "startup_wall_s": start_wall, "startup_cpu_s": start_cpu,
            "cpu_us_net": (tally.cpu - rounds * start_cpu) / tally.inputs * 1e6,
        }
        if side != BARE:
            row.update(rate_vs_bare=row["rate"] / (bare.inputs / bare.wall),
                       cpu_vs_bare=tally.cpu / bare.cpu)
        rows.append(row)
        log(f"  {side:38s} {row['rate']:7,.0f} inputs/s {row['cpu_us']:5.0f} us CPU/input "
            f"(start-up {start_wall:.2f} s, {start_cpu:.2f} s CPU)")
    return rows


def run(rounds: int, count: int) -> Section:
    section = Section("cli", "Command line against a bare loop writing JSON lines")
    log(f"cli: {rounds} rounds of {count:,} cached users a side, a process each")
    handles = [f"bulk{i}.user" for i in range(count)]
    with Server(*FAST) as server, tempfile.TemporaryDirectory() as folder:
        warm_handles(server.base_url, handles)
        startup = _startup(server.base_url, handles, Path(folder))
        tallies = _rounds(server.base_url, handles, rounds, Path(folder))
    section.rows = _rows(tallies, startup, rounds)
    _figures(section)
    section.notes.append(
        f"{rounds} rounds, a fresh process per side per round, the order reversed every "
        f"other round; {count:,} cached users a run; inputs/s and CPU summed over the "
        "rounds, per process from start to exit (start-up included: the start-up column "
        "is a run on one input). The bare loop writes the "
        "answer's fields under the API's camelCase names, the command line snake_case: "
        "the same decode, encode and write. The command line's first run includes its "
        "whole ramp (the adaptive rate starts at 10/s); a later run starts at the rate "
        "the key reached in the run before (kept in its state folder, a run before the "
        "rounds leaving the first).")
    return section


def _figures(section: Section) -> None:
    by_side = {row["side"]: row for row in section.rows}
    bare, cli, later, fixed = by_side[BARE], by_side[CLI], by_side[CLI_LATER], by_side[CLI_FIXED]
    section.figure("bare loop writing JSONL: inputs/s", bare["rate"], "req/s",
                   note=f"{bare['cpu_us']:.0f} us CPU an input")
    for name, row in ((CLI, cli), (f"{CLI_LATER} (rate remembered)", later)):
        section.figure(f"{name}: inputs/s vs the bare loop", row["rate_vs_bare"], "x",
                       f">= {MIN_RATE}x", row["rate_vs_bare"] >= MIN_RATE,
                       note=f"{row['rate']:,.0f}/s, {row['cpu_us']:.0f} us CPU an input "
                            f"({row['cpu_vs_bare']:.2f}x the loop's)")
    section.figure("tiktok-async users, 64 fixed, no ramp: vs the bare loop",
                   fixed["rate_vs_bare"], "x", "(for comparison)", None,
                   note=f"{fixed['rate']:,.0f}/s, CPU {fixed['cpu_vs_bare']:.2f}x")
