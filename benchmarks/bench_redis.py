"""The Redis limiter: acquire cost and rate accuracy from 1 and 4 processes, beside the local one.

    python -m benchmarks.bench_redis [--seconds 5] [--e2e-seconds 30]

Starts its own `redis-server` (free port, temp dir). Three parts:

1. **Acquire cost.** Acquires that never wait (rate 10^7, burst 10^7), from 1 task (the
   latency of one acquire alone) and 32 tasks a process (throughput; latency then
   includes the queueing), for the local `RateLimiter` in one process and
   `RedisLimiter` from 1 and 4 processes. A Redis acquire is one round trip to a local
   Redis running one Lua script.
2. **Rate accuracy.** One shared bucket of 200/s (burst 20) from 1 and 4 processes:
   grants a second (mean after the burst) and the most grants in any 1 s window
   (the promise: at most rate + burst = 220), from the times the acquires returned.
3. **End to end** (`--e2e-seconds`, 0 to skip): four `tiktok-async worker` processes on
   one key against the emulator with a quota of 50/s, burst 50 (workers: `--rate 50
   --burst 40`, then the shared adaptive rate, told nothing): what the emulator saw (its
   own arrival times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tiktok_async._limiter import RateLimiter
from tiktok_async._redis_limiter import RedisLimiter, connect
from tiktok_async.emulator import busiest_window

KEY = "bench-key"
TASKS = 32
HUGE = 10_000_000


# --- one process's measurement (also run as a child: --child) --------------------------


async def measure(kind: str, url: str, seconds: float, rate: float, burst: int,
                  start_at: float, tasks: int = TASKS) -> dict[str, Any]:
    """Acquire for `seconds` from `tasks` tasks; latencies and grant times."""
    limiter: Any = (RateLimiter(rate, burst) if kind == "local"
                    else RedisLimiter(url, KEY, rate=rate, burst=burst))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stop = time.time() + seconds
    latencies: list[float] = []
    grants: list[float] = []

    async def task() -> None:
        while time.time() < stop:
            began = time.perf_counter()
            await limiter.acquire()
            latencies.append(time.perf_counter() - began)
            grants.append(time.time())

    await asyncio.gather(*(task() for _ in range(tasks)))
    if isinstance(limiter, RedisLimiter):
        await limiter.aclose()
    return {"latencies": latencies, "grants": grants}


def run_processes(count: int, kind: str, url: str, seconds: float, rate: float,
                  burst: int, tasks: int = TASKS) -> dict[str, list[float]]:
    """`count` child processes measuring at once; their figures merged."""
    start_at = time.time() + 1.5  # every child has imported and connected by then
    command = [sys.executable, "-m", "benchmarks.bench_redis", "--child", kind, "--redis", url,
               "--seconds", str(seconds), "--rate", str(rate), "--burst", str(burst),
               "--start-at", str(start_at), "--tasks", str(tasks)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(count)]
    merged: dict[str, list[float]] = {"latencies": [], "grants": []}
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        data = json.loads(out)
        for name in merged:
            merged[name] += data[name]
    return merged


def summary(data: dict[str, list[float]], seconds: float) -> dict[str, float]:
    lat = sorted(data["latencies"])
    grants = sorted(data["grants"])
    return {
        "per_s": len(grants) / seconds,
        "p50_us": statistics.median(lat) * 1e6,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
        "worst_1s": busiest_window(grants),
        "span": grants[-1] - grants[0],
        "n": len(grants),
    }


# --- the three parts ------------------------------------------------------------------


def acquire_cost(url: str, seconds: float) -> None:
    print(f"\n1. acquire cost (never waits; {seconds:g} s)")
    print(f"{'side':<34}{'acquires/s':>12}{'p50 us':>10}{'p99 us':>10}")
    sides = [("local, 1 process, 1 task", "local", 1, 1),
             ("local, 1 process, 32 tasks", "local", 1, TASKS),
             ("redis, 1 process, 1 task", "redis", 1, 1),
             ("redis, 1 process, 32 tasks", "redis", 1, TASKS),
             ("redis, 4 processes, 1 task each", "redis", 4, 1),
             ("redis, 4 processes, 32 tasks each", "redis", 4, TASKS)]
    for label, kind, count, tasks in sides:
        s = summary(run_processes(count, kind, url, seconds, HUGE, HUGE, tasks), seconds)
        print(f"{label:<34}{s['per_s']:>12,.0f}{s['p50_us']:>10,.0f}{s['p99_us']:>10,.0f}")


def rate_accuracy(url: str, seconds: float, rate: float = 200.0, burst: int = 20) -> None:
    print(f"\n2. rate accuracy: one bucket of {rate:g}/s, burst {burst} ({seconds:g} s)")
    print(f"{'side':<22}{'mean/s':>10}{'worst 1 s':>11}{'p50 wait ms':>13}")
    for label, kind, count in [("local, 1 process", "local", 1),
                               ("redis, 1 process", "redis", 1),
                               ("redis, 4 processes", "redis", 4)]:
        if kind == "redis":
            _reset(url)
        s = summary(run_processes(count, kind, url, seconds, rate, burst), seconds)
        mean = (s["n"] - burst) / s["span"]
        print(f"{label:<22}{mean:>10.1f}{s['worst_1s']:>11}{s['p50_us'] / 1e3:>13.1f}")


def _reset(url: str) -> None:
    async def reset() -> None:
        redis = connect(url)
        await redis.flushdb()
        await redis.aclose()

    asyncio.run(reset())


def end_to_end(url: str, seconds: float, tmp: Path, *, adaptive: bool = False) -> None:
    from tiktok_async._cli import main
    from tiktok_async.emulator import EmulatorProcess

    count = int(seconds * 50)
    source = tmp / "in.txt"
    source.write_text("".join(f"user_{i}\n" for i in range(count)))
    job = "bench-adaptive" if adaptive else "bench"
    main(["enqueue", str(source), "--redis", url, "--job", job])
    limit = [] if adaptive else ["--rate", "50", "--burst", "40"]
    env = {**os.environ, "TIKTOK_API_KEY": "test-key"}
    with EmulatorProcess("--rate", "50", "--burst", "50", "--upstream-latency-ms", "5") as emu:
        command = [sys.executable, "-m", "tiktok_async", "worker", "--redis", url, "--job",
                   job, "--base-url", emu.base_url, *limit, "--concurrency", "16"]
        workers = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
                   for _ in range(4)]
        codes = [w.wait(timeout=seconds * 3 + 60) for w in workers]
        with urllib.request.urlopen(f"{emu.url}/_emulator/stats?arrivals=100000") as answer:
            arrivals = json.loads(answer.read())["arrivals"]
    sent = [t for t, _ in arrivals]
    admitted = [t for t, s in arrivals if s != 429]
    span = max(admitted) - min(admitted)
    how = "shared adaptive rate" if adaptive else "--rate 50 --burst 40"
    print(f"\n3. end to end: 4 workers ({how}), quota 50/s burst 50, {count} inputs "
          f"(exit codes {codes})")
    print(f"   answered {len(admitted)} in {span:.1f} s: {(len(admitted) - 40) / span:.2f}/s "
          f"after the burst ({(len(admitted) - 40) / span / 50:.1%} of the quota); "
          f"worst 1 s window {busiest_window(sent)} sent (limit 100); "
          f"{len(sent) - len(admitted)} 429s")


# --- redis-server and the command line --------------------------------------------------


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is missing: apt-get update && apt-get install -y redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(directory)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--e2e-seconds", type=float, default=30.0)
    parser.add_argument("--child", choices=("local", "redis"))
    parser.add_argument("--redis", default="")
    parser.add_argument("--rate", type=float, default=HUGE)
    parser.add_argument("--burst", type=int, default=HUGE)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--tasks", type=int, default=TASKS)
    args = parser.parse_args()
    if args.child:
        data = asyncio.run(measure(args.child, args.redis, args.seconds, args.rate,
                                   args.burst, args.start_at, args.tasks))
        print(json.dumps(data))
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            print(f"redis-server on {url}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
            acquire_cost(url, args.seconds)
            rate_accuracy(url, args.seconds)
            if args.e2e_seconds > 0:
                end_to_end(url, args.e2e_seconds, Path(tmp))
                end_to_end(url, args.e2e_seconds, Path(tmp), adaptive=True)
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
