"""The shared adaptive rate end to end: worker processes, real Redis, the emulator over HTTP.

A smaller run of benchmarks/bench_redis_adaptive.py's Q=50 scenario (issue 10): four
`tiktok-async worker` processes on one key, no rate given, against a quota of 50/s with
a burst of 10, one worker SIGKILLed after 3 s. The emulator's own arrival times must
keep the server's envelope, few requests may be answered 429, and every input is
collected exactly once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from test_redis_scale import (
    cli,
    collected_inputs,
    emulator_arrivals,
    start_workers,
    wait_all,
    write_handles,
)

from tiktok_async.emulator import EmulatorProcess, busiest_window

pytestmark = pytest.mark.slow

QUOTA, BURST = 50, 10


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


def test_four_workers_told_nothing_find_the_quota_and_keep_its_envelope(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    handles = write_handles(tmp_path / "in.txt", 600)
    assert cli("enqueue", str(tmp_path / "in.txt"), "--redis", redis_server.url,
               "--job", "adaptive") == 0
    with EmulatorProcess("--rate", str(QUOTA), "--burst", str(BURST),
                         "--upstream-latency-ms", "5", "--missing-share", "0") as emu:
        # A worker holds up to 64 entries (5 s of its share): claim only a dead one's.
        workers = start_workers(4, redis_server.url, "adaptive", emu.base_url,
                                "--claim-idle", "8", tmp_path=tmp_path)
        time.sleep(3)
        workers[0].send_signal(signal.SIGKILL)
        codes = wait_all(workers)
        arrivals = emulator_arrivals(emu)
    sent = [t for t, _ in arrivals]
    statuses = Counter(s for _, s in arrivals)
    ok_share = statuses[200] / (max(sent) - min(sent)) / QUOTA
    print(f"\n4 workers, no rate, quota {QUOTA}/s burst {BURST}: worst 1 s window "
          f"{busiest_window(sent)}, 200s {ok_share:.1%} of the quota, "
          f"429s {statuses[429]} of {len(sent)}")
    assert codes == [-signal.SIGKILL, 0, 0, 0]
    assert busiest_window(sent) <= QUOTA + BURST
    assert statuses[429] <= 0.03 * len(sent)
    assert ok_share >= 0.75  # 90% in the 25 s benchmark; a 13 s run has a longer tail
    out = tmp_path / "out.jsonl"
    assert cli("collect", "--redis", redis_server.url, "--job", "adaptive", "-o", str(out)) == 0
    assert collected_inputs(out) == Counter(handles)
