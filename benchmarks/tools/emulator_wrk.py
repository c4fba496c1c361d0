"""Emulator throughput under `wrk`, side by side with a minimal aiohttp server.

Server pinned to CPU 0, wrk to CPU 1, cached `/user` lookups, runs alternated so every
server sees the same machine noise; prints every run and the medians. For scale, two
minimal aiohttp servers of one fixed body (`emulator_bare.py`, beside this file): a
`web.Application` with one route, and aiohttp's low-level `web.Server` (what the
emulator is built on).

Two figures per run: requests/s as wrk saw them, and requests per CPU-second of the
server process (its user + system time from /proc during the run). The second is what
one core can serve; it stays meaningful when other work on the machine takes part of
the server's core away (a shared or busy machine), where the first does not.

    python -m benchmarks.tools.emulator_wrk [--runs 5] [--duration 10] [--connections 64]

Needs `wrk` (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import cpu_seconds, tool_parser
from tiktok_async.emulator import EmulatorProcess

HANDLE = "some.handle"
KEY = "test-key"
BARE = str(Path(__file__).with_name("emulator_bare.py"))


class BareProcess(EmulatorProcess):
    """The minimal aiohttp server of `emulator_bare.py` as a child process."""

    @property
    def command(self) -> list[str]:
        return [sys.executable, BARE, *self.args]


def wrk(url: str, seconds: int, connections: int, cpu: int) -> tuple[float, int]:
    """(requests/s, requests) that wrk measured against `url`."""
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "-H", f"x-api-key: {KEY}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} non-2xx answers from {url}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if match is None or total is None:
        raise RuntimeError(out)
    return float(match.group(1)), int(total.group(1))


def measure(proc: EmulatorProcess, args: argparse.Namespace) -> tuple[float, float]:
    """Start `proc`, warm the cache, run wrk once, stop it: (req/s, req per CPU-second)."""
    with proc:
        assert proc.pid is not None
        url = f"{proc.base_url}/user/{HANDLE}"
        request = urllib.request.Request(url, headers={"x-api-key": KEY})
        with urllib.request.urlopen(request) as answer:
            answer.read()
        before = cpu_seconds(proc.pid)
        rate, total = wrk(url, args.duration, args.connections, args.wrk_cpu)
        used = cpu_seconds(proc.pid) - before
        return rate, total / used if used > 0 else 0.0


def _servers(args: argparse.Namespace) -> dict[str, Callable[[], EmulatorProcess]]:
    """The servers compared, each a fresh process per run, pinned to `--server-cpu`."""
    extra = ["--no-uvloop"] if args.no_uvloop else []
    cpu = args.server_cpu
    return {
        "emulator": lambda: EmulatorProcess(*extra, cpu=cpu),
        "bare aiohttp": lambda: BareProcess(*extra, cpu=cpu),
        "bare web.Server": lambda: BareProcess(*extra, "--low-level", cpu=cpu),
    }


def main() -> None:
    parser = tool_parser(__doc__, "benchmarks.tools.emulator_wrk")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    servers = _servers(args)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for run in range(args.runs):
        for name, make in servers.items():
            rate, per_cpu = measure(make(), args)
            results[name].append((rate, per_cpu))
            print(f"run {run + 1}: {name:15s} {rate:10,.0f} req/s "
                  f"{per_cpu:10,.0f} req/CPU-s", flush=True)
    loop = "asyncio" if args.no_uvloop else "uvloop"
    for name, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        per_cpu = statistics.median(c for _, c in rows)
        print(f"median {name:15s} {rate:10,.0f} req/s {per_cpu:10,.0f} req/CPU-s ({loop})")

if __name__ == "__main__":
    main()
