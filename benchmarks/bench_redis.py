"""Section (only with `--only redis`): the Redis limiter, from 1 and 4 processes.

Starts its own `redis-server` (a free port, a temp dir), and lets every process it
starts use every core (nothing pinned, the emulator included). Three parts, each side
against its own bucket (its own API key):

1. **Acquire cost.** Acquires that never wait (rate and burst 10^7), from 1 task (the
   latency of one acquire alone) and 32 tasks a process (throughput; latency then
   includes the queueing), for the local `RateLimiter` in one process and
   `RedisLimiter` from 1 and 4 processes: one round trip to Redis running one Lua script.
2. **Rate accuracy.** One shared bucket of 200/s (burst 20) from 1 and 4 processes:
   grants a second after the burst and the most grants in any 1 s window (the promise:
   at most rate + burst = 220), from the times the acquires returned.
3. **End to end** (`e2e_seconds`, 0 to skip): four `tiktok-async worker` processes on
   one key against the emulator with a quota of 50/s, burst 50 (workers `--rate 50
   --burst 40`, then the shared adaptive rate, told nothing), judged on the emulator's
   own arrival times.

Each measuring process is this module run as a child:
`python -m benchmarks.bench_redis --child local|redis --redis URL --key KEY ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import KEY, ROOT, Section, Server, log, redis_server, unpinned
from tiktok_async import RedisLimiter
from tiktok_async._limiter import RateLimiter
from tiktok_async.emulator import busiest_window

TASKS = 32
HUGE = 10_000_000
ACCURACY_RATE, ACCURACY_BURST = 200.0, 20
QUOTA, QUOTA_BURST, WORKER_BURST = 50, 50, 40


# --- one process's measurement (run as a child) -----------------------------------------


async def measure(kind: str, url: str, key: str, seconds: float, rate: float, burst: int,
                  start_at: float, tasks: int) -> dict[str, list[float]]:
    """Acquire for `seconds` from `tasks` tasks: latencies and grant times."""
    limiter: Any = (RateLimiter(rate, burst) if kind == "local"
                    else RedisLimiter(url, key, rate=rate, burst=burst))
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


def run_processes(count: int, kind: str, url: str, key: str, seconds: float, rate: float,
                  burst: int, tasks: int) -> dict[str, list[float]]:
    """`count` child processes measuring at once; their figures merged."""
    start_at = time.time() + 1.5  # every child has imported and connected by then
    command = [sys.executable, "-m", "benchmarks.bench_redis", "--child", kind, "--redis", url,
               "--key", key, "--seconds", str(seconds), "--rate", str(rate), "--burst",
               str(burst), "--start-at", str(start_at), "--tasks", str(tasks)]
    children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
                for _ in range(count)]
    merged: dict[str, list[float]] = {"latencies": [], "grants": []}
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        if child.returncode != 0:
            raise RuntimeError(f"a {kind} child exited with {child.returncode}")
        data = json.loads(out)
        for name in merged:
            merged[name] += data[name]
    return merged


def summary(data: dict[str, list[float]], seconds: float) -> dict[str, float]:
    lat, grants = sorted(data["latencies"]), sorted(data["grants"])
    return {
        "per_s": len(grants) / seconds,
        "p50_us": statistics.median(lat) * 1e6,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
        "worst_1s": busiest_window(grants),
        "span": grants[-1] - grants[0],
        "n": len(grants),
    }


# --- the three parts ------------------------------------------------------------------------

ACQUIRE_SIDES = (("local, 1 process, 1 task", "local", 1, 1),
                 ("local, 1 process, 32 tasks", "local", 1, TASKS),
                 ("redis, 1 process, 1 task", "redis", 1, 1),
                 ("redis, 1 process, 32 tasks", "redis", 1, TASKS),
                 ("redis, 4 processes, 1 task each", "redis", 4, 1),
                 ("redis, 4 processes, 32 tasks each", "redis", 4, TASKS))
ACCURACY_SIDES = (("local, 1 process", "local", 1),
                  ("redis, 1 process", "redis", 1),
                  ("redis, 4 processes", "redis", 4))


def acquire_cost(section: Section, url: str, seconds: float) -> None:
    for n, (label, kind, count, tasks) in enumerate(ACQUIRE_SIDES):
        data = run_processes(count, kind, url, f"{KEY}-acquire-{n}", seconds, HUGE, HUGE, tasks)
        s = summary(data, seconds)
        section.rows.append({"part": "acquire", "side": label, "per_s": s["per_s"],
                             "p50_us": s["p50_us"], "p99_us": s["p99_us"]})
        log(f"  {label:34s} {s['per_s']:10,.0f}/s  p50 {s['p50_us']:7,.0f} us  "
            f"p99 {s['p99_us']:7,.0f} us")
    one, busy = section.rows[2], section.rows[5]
    section.figure("RedisLimiter: one acquire alone, p50", one["p50_us"], "µs",
                   note=f"p99 {one['p99_us']:,.0f} µs")
    section.figure("RedisLimiter: acquires/s, 4 processes x 32 tasks", busy["per_s"],
                   "acquires/s", note=f"p50 {busy['p50_us'] / 1e3:.1f} ms")


def rate_accuracy(section: Section, url: str, seconds: float) -> None:
    rate, burst = ACCURACY_RATE, ACCURACY_BURST
    for n, (label, kind, count) in enumerate(ACCURACY_SIDES):
        data = run_processes(count, kind, url, f"{KEY}-accuracy-{n}", seconds, rate, burst,
                             TASKS)
        s = summary(data, seconds)
        mean = (s["n"] - burst) / s["span"]
        section.rows.append({"part": "accuracy", "side": label, "rate": rate, "burst": burst,
                             "mean_rate": mean, "worst_1s": s["worst_1s"],
                             "p50_wait_ms": s["p50_us"] / 1e3})
        log(f"  {label:22s} {mean:7.1f}/s after the burst, worst 1 s {s['worst_1s']}")
        section.figure(f"{label}: worst 1 s window", s["worst_1s"], "requests",
                       f"<= {rate + burst:g}", s["worst_1s"] <= rate + burst)
        section.figure(f"{label}: mean rate after the burst", mean / rate, "x rate",
                       ">= 0.97x", mean / rate >= 0.97, note=f"{mean:.1f}/s")


def _enqueue(url: str, job: str, count: int, directory: Path) -> None:
    source = directory / f"{job}.txt"
    source.write_text("".join(f"user_{i}\n" for i in range(count)))
    subprocess.run([sys.executable, "-m", "tiktok_async", "enqueue", str(source),
                    "--redis", url, "--job", job], check=True, capture_output=True)


def _workers(url: str, job: str, base_url: str, adaptive: bool, timeout: float) -> list[int]:
    """Four `tiktok-async worker` processes on one key until the job is done: exit codes."""
    limit = [] if adaptive else ["--rate", str(QUOTA), "--burst", str(WORKER_BURST)]
    command = [sys.executable, "-m", "tiktok_async", "worker", "--redis", url, "--job", job,
               "--base-url", base_url, *limit, "--concurrency", "16"]
    env = {**os.environ, "TIKTOK_API_KEY": KEY}
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(4)]
    return [w.wait(timeout=timeout) for w in workers]


def end_to_end(section: Section, url: str, seconds: float, adaptive: bool) -> None:
    count, job = int(seconds * QUOTA), "bench-adaptive" if adaptive else "bench-fixed"
    side = "shared adaptive rate (no --rate)" if adaptive else \
        f"--rate {QUOTA} --burst {WORKER_BURST}"
    with tempfile.TemporaryDirectory() as directory:
        _enqueue(url, job, count, Path(directory))
    # The emulator not pinned (as the workers and Redis), 5 ms upstream latency.
    with Server("--rate", str(QUOTA), "--burst", str(QUOTA_BURST),
                "--upstream-latency-ms", "5", cpu=None) as server:
        codes = _workers(url, job, server.base_url, adaptive, seconds * 3 + 60)
        arrivals = server.arrivals()
    _e2e_row(section, side, count, codes, arrivals)


def _e2e_row(section: Section, side: str, count: int, codes: list[int],
             arrivals: list[tuple[float, int]]) -> None:
    sent = [t for t, _ in arrivals]
    admitted = [t for t, status in arrivals if status != 429]
    span = max(admitted) - min(admitted)
    per_s = (len(admitted) - WORKER_BURST) / span  # after the workers' burst, as before
    worst, throttled, bound = busiest_window(sent), len(sent) - len(admitted), QUOTA + QUOTA_BURST
    section.rows.append({"part": "e2e", "side": side, "inputs": count, "exit_codes": codes,
                         "answered": len(admitted), "seconds": span, "per_s": per_s,
                         "share_of_quota": per_s / QUOTA, "worst_1s_sent": worst,
                         "throttled": throttled, "requests": len(sent)})
    log(f"  4 workers, {side}: {per_s:.2f}/s ({per_s / QUOTA:.1%} of the quota), worst 1 s "
        f"{worst} sent, {throttled} 429s, exit codes {codes}")
    section.figure(f"4 workers, {side}: answers a second", per_s / QUOTA, "x Q",
                   ">= 0.90x Q", per_s / QUOTA >= 0.9, note=f"{per_s:.2f}/s")
    section.figure(f"4 workers, {side}: worst 1 s window sent", worst, "requests",
                   f"<= {bound} (quota + burst)", worst <= bound)
    section.figure(f"4 workers, {side}: 429 share", throttled / len(sent), "of requests",
                   "<= 3%", throttled <= 0.03 * len(sent), note=f"{throttled} of {len(sent)}")


def run(seconds: float, e2e_seconds: float) -> Section:
    section = Section("redis", "Redis limiter: acquire cost, rate accuracy, 4 workers")
    log(f"redis: acquire cost and rate accuracy ({seconds:g} s a side), 4 workers end to end "
        f"({e2e_seconds:g} s of quota a run)")
    with unpinned(), redis_server() as url:
        acquire_cost(section, url, seconds)
        rate_accuracy(section, url, seconds)
        if e2e_seconds > 0:
            end_to_end(section, url, e2e_seconds, adaptive=False)
            end_to_end(section, url, e2e_seconds, adaptive=True)
    section.notes.append(
        "Redis, the measuring processes, the workers and the emulator share both cores "
        "(nothing pinned); latencies are upper bounds on a shared machine. With 32 tasks "
        "a process the latency is queueing (Little's law). End to end, answers a second "
        "are counted after the workers' burst of 40, on the emulator's own arrival times.")
    return section


def main() -> None:
    """The child: one process's measurement, printed as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_redis")
    parser.add_argument("--child", choices=("local", "redis"), required=True)
    parser.add_argument("--redis", default="")
    parser.add_argument("--key", default=KEY)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=HUGE)
    parser.add_argument("--burst", type=int, default=HUGE)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--tasks", type=int, default=TASKS)
    args = parser.parse_args()
    data = asyncio.run(measure(args.child, args.redis, args.key, args.seconds, args.rate,
                               args.burst, args.start_at, args.tasks))
    print(json.dumps(data))


if __name__ == "__main__":
    main()
