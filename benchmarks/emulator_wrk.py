"""Emulator throughput under `wrk`, side by side with a minimal aiohttp server.

Server pinned to CPU 0, wrk to CPU 1, cached `/user` lookups, runs alternated so both
servers see the same machine noise; prints every run and the medians.

    python benchmarks/emulator_wrk.py [--runs 5] [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

from tiktok_async.emulator import EmulatorProcess

HANDLE = "some.handle"
KEY = "test-key"
BARE = str(Path(__file__).with_name("emulator_bare.py"))


class BareProcess(EmulatorProcess):
    """The minimal aiohttp server of `emulator_bare.py` as a child process."""

    @property
    def command(self) -> list[str]:
        return [sys.executable, BARE, *self.args]


def wrk(url: str, seconds: int, connections: int, cpu: int) -> float:
    """Requests/s that wrk measured against `url`."""
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "-H", f"x-api-key: {KEY}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} non-2xx answers from {url}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(out)
    return float(match.group(1))


def measure(proc: EmulatorProcess, args: argparse.Namespace) -> float:
    """Start `proc`, warm the cache, run wrk once, stop it."""
    with proc:
        url = f"{proc.base_url}/user/{HANDLE}"
        request = urllib.request.Request(url, headers={"x-api-key": KEY})
        with urllib.request.urlopen(request) as answer:
            answer.read()
        return wrk(url, args.duration, args.connections, args.wrk_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    extra = ["--no-uvloop"] if args.no_uvloop else []
    results: dict[str, list[float]] = {"emulator": [], "bare aiohttp": []}
    for run in range(args.runs):
        for name, proc in (("emulator", EmulatorProcess(*extra, cpu=args.server_cpu)),
                           ("bare aiohttp", BareProcess(*extra, cpu=args.server_cpu))):
            rate = measure(proc, args)
            results[name].append(rate)
            print(f"run {run + 1}: {name:13s} {rate:10,.0f} req/s", flush=True)
    loop = "asyncio" if args.no_uvloop else "uvloop"
    for name, rates in results.items():
        print(f"median {name:13s} {statistics.median(rates):10,.0f} req/s ({loop})")


if __name__ == "__main__":
    main()
