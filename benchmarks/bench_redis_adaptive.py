"""Shared adaptive rate, end to end: 4 `tiktok-async worker` processes on one key.

    python -m benchmarks.bench_redis_adaptive [--quota 5 --quota 50 --quota 500]
        [--burst B] [--workers 4] [--kill-after 4] [--local] [--json PATH]

For each quota Q: starts a `redis-server` (free port, temp dir) and the emulator with a
token bucket of rate Q and burst B (`--rate Q --burst B`, full at the start, as API
Gateway; B: 10 for Q=5 and Q=50, 100 for Q=500, a fifth of a second of quota except at
Q=5, where the client's first second at 10/s would not fit in a burst of 1), enqueues
fresh handles (`tiktok-async enqueue`: Q=5: 150, Q=50: 1,200,
Q=500: 12,000, about 25 s of quota), starts the workers with no rate (`tiktok-async
worker`: the shared adaptive rate and concurrency, told nothing; `--claim-idle 10` so the
killed worker's entries are taken over mid-run: a live worker renews its hold on what it
has read, however long that waits for its share of Q), SIGKILLs one of them after
`--kill-after` seconds, waits for the others, collects (`tiktok-async collect`) and reads
the emulator's own arrival times.

Figures, from the emulator's arrivals: the most requests in any 1 s window (the promise:
at most Q + B), 200s a second from the first request to the last as a share of Q (target
>= 90%), 429s as a share of requests (target <= 3%), whether every input was collected
exactly once, and 200s beyond one an input (fetched twice: the killed worker's requests
in flight, any more is a live worker's entry taken over). `--local` adds one
`tiktok-async users` process (the in-process adaptive rate) against the same quota, for
comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tiktok_async.emulator import EmulatorProcess, busiest_window

KEY = "bench-key"
INPUTS = {5: 150, 50: 1_200, 500: 12_000}
BURSTS = {5: 10, 50: 10, 500: 100}
CLI = [sys.executable, "-m", "tiktok_async"]


@dataclass
class Run:
    """What one run produced, from the emulator's arrivals and the collected files."""

    side: str
    quota: float
    burst: int
    inputs: int
    requests: int = 0
    ok: int = 0
    throttled: int = 0
    seconds: float = 0.0
    worst_window: int = 0
    collected_once: bool = False
    exit_codes: list[int] = field(default_factory=list)
    ok_per_second: list[int] = field(default_factory=list)

    @property
    def ok_share(self) -> float:
        """200s a second, first request to last, as a share of the quota."""
        return self.ok / self.seconds / self.quota if self.seconds else 0.0

    @property
    def fetched_twice(self) -> int:
        """200s beyond one an input."""
        return max(0, self.ok - self.inputs)

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    def meets(self) -> bool:
        return (self.worst_window <= self.quota + self.burst and self.ok_share >= 0.9
                and self.throttled_share <= 0.03 and self.collected_once)


# --- processes --------------------------------------------------------------------------


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free port; its URL once it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is missing: apt-get update && apt-get install -y redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(directory)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def cli(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TIKTOK_API_KEY": KEY})


def start_workers(count: int, redis: str, job: str, base_url: str, logs: Path
                  ) -> list[subprocess.Popen[bytes]]:
    command = [*CLI, "worker", "--redis", redis, "--job", job, "--base-url", base_url,
               "--claim-idle", "10"]
    env = {**os.environ, "TIKTOK_API_KEY": KEY}
    procs = []
    for i in range(count):
        with open(logs / f"worker{i}.err", "wb") as err:
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                          stderr=err))
    return procs


def arrivals(emulator: EmulatorProcess) -> list[tuple[float, int]]:
    with urllib.request.urlopen(f"{emulator.url}/_emulator/stats?arrivals=100000") as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return [(float(t), int(s)) for t, s in data["arrivals"]]


def emulator(quota: float, burst: int) -> EmulatorProcess:
    return EmulatorProcess("--rate", f"{quota:g}", "--burst", str(burst), "--key", KEY,
                           "--upstream-latency-ms", "5", "--missing-share", "0")


# --- the two sides ----------------------------------------------------------------------


def shared_run(quota: float, burst: int, count: int, workers: int, kill_after: float,
               tmp: Path) -> Run:
    """`workers` worker processes on one key; one SIGKILLed after `kill_after` s."""
    handles = write_inputs(tmp / "in.txt", count, f"q{quota:g}s")
    proc, url = start_redis(tmp)
    try:
        cli("enqueue", str(tmp / "in.txt"), "--redis", url, "--job", "bench")
        with emulator(quota, burst) as emu:
            procs = start_workers(workers, url, "bench", emu.base_url, tmp)
            codes = wait_killing(procs, kill_after, timeout=count / quota * 4 + 60)
            seen = arrivals(emu)
        for i, code in enumerate(codes):
            if code not in (0, -signal.SIGKILL):
                print(f"worker {i} exited {code}:\n{(tmp / f'worker{i}.err').read_text()[-3000:]}")
        cli("collect", "--redis", url, "--job", "bench", "-o", str(tmp / "out.jsonl"))
    finally:
        proc.terminate()
        proc.wait()
    run = summarise(f"{workers} workers, shared", quota, burst, count, seen)
    run.exit_codes = codes
    run.collected_once = collected(tmp / "out.jsonl") == Counter(handles)
    return run


def local_run(quota: float, burst: int, count: int, tmp: Path) -> Run:
    """One `tiktok-async users` process (the in-process adaptive rate)."""
    handles = write_inputs(tmp / "in.txt", count, f"q{quota:g}l")
    with emulator(quota, burst) as emu:
        code = subprocess.run([*CLI, "users", str(tmp / "in.txt"), "-o", str(tmp / "out.jsonl"),
                               "--base-url", emu.base_url, "--quiet"],
                              env={**os.environ, "TIKTOK_API_KEY": KEY},
                              stdout=subprocess.DEVNULL, check=False).returncode
        seen = arrivals(emu)
    run = summarise("1 process, local", quota, burst, count, seen)
    run.exit_codes = [code]
    run.collected_once = collected(tmp / "out.jsonl") == Counter(handles)
    return run


def wait_killing(procs: list[subprocess.Popen[bytes]], kill_after: float, timeout: float
                 ) -> list[int]:
    """SIGKILL the first process after `kill_after` s (if > 0); wait for all."""
    deadline = time.monotonic() + timeout
    if kill_after > 0:
        time.sleep(kill_after)
        procs[0].send_signal(signal.SIGKILL)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def write_inputs(path: Path, count: int, prefix: str) -> list[str]:
    handles = [f"{prefix}{i}.test" for i in range(count)]
    path.write_text("\n".join(handles) + "\n")
    return handles


def collected(out: Path) -> Counter[str]:
    errors = out.with_name(out.stem + ".errors.jsonl")
    lines = out.read_text().splitlines() if out.exists() else []
    lines += errors.read_text().splitlines() if errors.exists() else []
    return Counter(json.loads(line)["input"] for line in lines)


def summarise(side: str, quota: float, burst: int, count: int,
              seen: list[tuple[float, int]]) -> Run:
    times = [t for t, _ in seen]
    statuses = Counter(s for _, s in seen)
    start = min(times, default=0.0)
    per_second = [0] * (int(max(times, default=0.0) - start) + 1)
    for t, status in seen:
        if status == 200:
            per_second[int(t - start)] += 1
    return Run(side, quota, burst, count, requests=len(seen), ok=statuses[200],
               throttled=statuses[429], seconds=max(times, default=0.0) - start,
               worst_window=busiest_window(times), ok_per_second=per_second)


# --- the command line -------------------------------------------------------------------


def print_table(runs: list[Run]) -> None:
    print("\n| side | Q (burst) | inputs | requests | seconds | worst 1 s window (limit) "
          "| 200s/s (share of Q) | 429s (share) | every input once | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in runs:
        print(f"| {r.side} | {r.quota:g} ({r.burst}) | {r.inputs:,} | {r.requests:,} | "
              f"{r.seconds:.1f} | {r.worst_window} ({r.quota + r.burst:g}) | "
              f"{r.ok / r.seconds:.1f} ({r.ok_share:.1%}) | {r.throttled} "
              f"({r.throttled_share:.2%}) | {'yes' if r.collected_once else 'NO'} | "
              f"{'yes' if r.meets() else 'NO'} |")


def run_side(side: str, quota: float, args: argparse.Namespace) -> Run:
    """One run (`shared`: the workers; `local`: one process) in a temp dir of its own."""
    count = args.inputs or INPUTS.get(int(quota), int(quota * 25))
    burst = args.burst or BURSTS.get(int(quota), max(1, int(quota / 5)))
    with tempfile.TemporaryDirectory() as tmp:
        run = (shared_run(quota, burst, count, args.workers, args.kill_after, Path(tmp))
               if side == "shared" else local_run(quota, burst, count, Path(tmp)))
    print(f"{run.side}, Q={quota:g}: worst window {run.worst_window}, 200s "
          f"{run.ok_share:.1%} of Q, 429s {run.throttled_share:.2%}, fetched twice "
          f"{run.fetched_twice}, exit codes {run.exit_codes}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quota", type=float, action="append", default=None)
    parser.add_argument("--burst", type=int, default=0, help="default: BURSTS[Q], else Q / 5")
    parser.add_argument("--inputs", type=int, default=0, help="default: about 25 s of quota")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-after", type=float, default=4.0, help="0: kill none")
    parser.add_argument("--local", action="store_true", help="also run one local process")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    runs = [run_side(side, quota, args) for quota in args.quota or [5.0, 50.0, 500.0]
            for side in (["shared", "local"] if args.local else ["shared"])]
    print_table(runs)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))


if __name__ == "__main__":
    main()
