"""Scale-out end to end, real processes: redis-server, the emulator, worker processes.

Must show (issue 6): four workers on one key keep the quota and use it; a worker killed
with SIGKILL loses nothing; a Redis restart mid-run loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis
from redis_server import RedisServer

from tiktok_async.cli import main
from tiktok_async.cli._jobkeys import GROUP, JobKeys
from tiktok_async.emulator import EmulatorProcess, busiest_window

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, appendonly=True) as server:
        yield server


def write_handles(path: Path, count: int, extra: tuple[str, ...] = ()) -> list[str]:
    handles = [f"user_{i}" for i in range(count)]
    path.write_text("\n".join([*handles, *extra]) + "\n")
    return handles


def start_workers(count: int, redis_url: str, job: str, base_url: str, *args: str,
                  tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    env["TIKTOK_API_KEY"] = "test-key"
    command = [sys.executable, "-m", "tiktok_async", "worker", "--redis", redis_url,
               "--job", job, "--base-url", base_url, *args]
    procs = []
    for i in range(count):
        with open(tmp_path / f"worker{i}.err", "wb") as err:  # the child keeps its own copy
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                          stderr=err))
    return procs


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float = 90) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait()
            raise
    return codes


def emulator_arrivals(proc: EmulatorProcess) -> list[tuple[float, int]]:
    with urllib.request.urlopen(f"{proc.url}/_emulator/stats?arrivals=100000") as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return [(float(t), int(s)) for t, s in data["arrivals"]]


def collected_inputs(out: Path) -> Counter[str]:
    errors = out.with_name(out.stem + ".errors.jsonl")
    rows = out.read_text().splitlines() + errors.read_text().splitlines()
    return Counter(json.loads(line)["input"] for line in rows)


def cli(*args: str) -> int:
    return main(list(args))


def results_count(url: str, job: str) -> int:
    with syncredis.Redis.from_url(url) as r:
        return int(r.hlen(JobKeys(job).results))


def wait_for_results(url: str, job: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while results_count(url, job) < count:
        assert time.monotonic() < deadline, "the workers made no progress"
        time.sleep(0.05)


def wait_until_holding(url: str, job: str, consumer: str, timeout: float = 30) -> list[Any]:
    """The entries `consumer` holds, once it holds some."""
    deadline = time.monotonic() + timeout
    with syncredis.Redis.from_url(url, decode_responses=True) as r:
        while True:
            held: list[Any] = r.xpending_range(JobKeys(job).queue, GROUP, "-", "+", 1000,
                                               consumername=consumer)
            if held or time.monotonic() > deadline:
                return held
            time.sleep(0.02)


def freeze_while_holding(procs: list[subprocess.Popen[bytes]], url: str, job: str,
                         consumer: str, timeout: float = 30) -> list[Any]:
    """Stop every worker (SIGSTOP, waited for) at a moment `consumer` holds entries, and
    return those entries. With every worker stopped nothing is acked or claimed, so what
    it holds cannot change while it is read (no race against --claim-idle)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
            # Returns once it has stopped (or exited), reaping nothing: Popen still does.
            os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        held = wait_until_holding(url, job, consumer, timeout=0)
        if held or time.monotonic() > deadline:
            return held
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)


def test_four_workers_on_one_key_keep_the_quota_and_use_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    handles = write_handles(tmp_path / "in.txt", 500)
    assert cli("enqueue", str(tmp_path / "in.txt"), "--redis", redis_server.url,
               "--job", "rate") == 0
    with EmulatorProcess("--rate", "50", "--burst", "50", "--upstream-latency-ms", "5") as emu:
        workers = start_workers(4, redis_server.url, "rate", emu.base_url, "--rate", "50",
                                "--burst", "40", "--concurrency", "16", tmp_path=tmp_path)
        assert wait_all(workers) == [0, 0, 0, 0]
        arrivals = emulator_arrivals(emu)
    sent = [t for t, _ in arrivals]
    admitted = [t for t, s in arrivals if s != 429]
    throttled = len(sent) - len(admitted)
    span = max(admitted) - min(admitted)
    rate = (len(admitted) - 40) / span  # the workers' burst aside: the steady rate
    print(f"\n4 workers, quota 50/s burst 50: {len(admitted)} answered in {span:.2f} s, "
          f"steady {rate:.1f}/s ({rate / 50:.0%}), worst 1 s window {busiest_window(sent)} "
          f"sent, {throttled} 429s")
    assert len(admitted) == len(handles)
    assert busiest_window(sent) <= 50 + 50
    assert rate >= 0.9 * 50
    assert throttled <= 0.02 * len(handles)
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "rate", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter(handles)


def test_a_worker_killed_mid_run_loses_nothing(redis_server: RedisServer,
                                               tmp_path: Path) -> None:
    handles = write_handles(tmp_path / "in.txt", 200)
    assert cli("enqueue", str(tmp_path / "in.txt"), "--redis", redis_server.url,
               "--job", "kill") == 0
    with EmulatorProcess("--rate", "100", "--burst", "10", "--upstream-latency-ms", "5") as emu:
        workers = start_workers(3, redis_server.url, "kill", emu.base_url, "--rate", "100",
                                "--burst", "10", "--concurrency", "8", "--claim-idle", "1",
                                tmp_path=tmp_path)
        victim = workers[0]
        name = f"{socket.gethostname()}-{victim.pid}"
        assert wait_until_holding(redis_server.url, "kill", name)
        wait_for_results(redis_server.url, "kill", 40)
        held = freeze_while_holding(workers, redis_server.url, "kill", name)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for proc in workers[1:]:
            proc.send_signal(signal.SIGCONT)
        codes = wait_all(workers)
    assert held, "the victim held no entries when it was killed"
    assert not wait_until_holding(redis_server.url, "kill", name, timeout=0)  # all claimed
    assert codes[0] == -signal.SIGKILL
    assert codes[1:] == [0, 0]
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "kill", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter(handles)


def test_a_redis_restart_mid_run_loses_nothing(redis_server: RedisServer,
                                               tmp_path: Path) -> None:
    handles = write_handles(tmp_path / "in.txt", 200, extra=("not a handle!",))
    assert cli("enqueue", str(tmp_path / "in.txt"), "--redis", redis_server.url,
               "--job", "restart") == 0
    with EmulatorProcess("--rate", "100", "--burst", "10", "--upstream-latency-ms", "5") as emu:
        workers = start_workers(2, redis_server.url, "restart", emu.base_url, "--rate", "100",
                                "--burst", "10", "--concurrency", "8", tmp_path=tmp_path)
        wait_for_results(redis_server.url, "restart", 50)
        redis_server.restart(down_for=1.0)
        assert results_count(redis_server.url, "restart") < len(handles)  # it was mid-run
        codes = wait_all(workers)
    assert codes == [0, 0]
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "restart", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter([*handles, "not a handle!"])


SLOW = ("--upstream-latency-ms", "1500", "--upstream-jitter-ms", "0", "--missing-share", "0")
SLOW_WORKER = ("--rate", "100", "--burst", "10", "--concurrency", "2", "--batch", "4",
               "--claim-idle", "1")


def enqueue_handles(redis_url: str, tmp_path: Path, job: str, count: int) -> list[str]:
    """`count` handles written to in.txt and enqueued as `job`; the handles."""
    handles = write_handles(tmp_path / "in.txt", count)
    assert cli("enqueue", str(tmp_path / "in.txt"), "--redis", redis_url, "--job", job) == 0
    return handles


def start_slow_workers(redis_url: str, job: str, emu: EmulatorProcess, tmp_path: Path
                       ) -> list[subprocess.Popen[bytes]]:
    """Two workers on `job`, each holding 4 entries and fetching 2 at a time."""
    return start_workers(2, redis_url, job, emu.base_url, *SLOW_WORKER, tmp_path=tmp_path)


def test_slow_first_fetches_held_past_claim_idle_are_requested_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Each worker holds 4 entries and fetches 2 at a time, 1.5 s each: every entry is
    held past --claim-idle 1, yet no live worker's entry is taken over and fetched again."""
    handles = enqueue_handles(redis_server.url, tmp_path, "slow", 12)
    with EmulatorProcess(*SLOW) as emu:
        workers = start_slow_workers(redis_server.url, "slow", emu, tmp_path)
        codes = wait_all(workers)
        arrivals = emulator_arrivals(emu)
    assert codes == [0, 0]
    assert Counter(s for _, s in arrivals) == {200: len(handles)}  # one request an input
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "slow", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter(handles)


def test_a_killed_workers_slow_entries_are_taken_over_after_claim_idle(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The keeper renews only while its worker lives: SIGKILLed mid-fetch, its entries go
    to the other worker, and only those can have been requested twice."""
    handles = enqueue_handles(redis_server.url, tmp_path, "slowkill", 8)
    with EmulatorProcess(*SLOW) as emu:
        workers = start_slow_workers(redis_server.url, "slowkill", emu, tmp_path)
        victim = workers[0]
        name = f"{socket.gethostname()}-{victim.pid}"
        held = freeze_while_holding(workers, redis_server.url, "slowkill", name)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        workers[1].send_signal(signal.SIGCONT)
        codes = wait_all(workers)
        arrivals = emulator_arrivals(emu)
    assert held, "the victim held no entries when it was killed"
    assert not wait_until_holding(redis_server.url, "slowkill", name, timeout=0)
    assert codes == [-signal.SIGKILL, 0]
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "slowkill", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter(handles)
    assert len(arrivals) <= len(handles) + len(held)
