"""`tiktok-async bench` as a real subprocess against the emulator: the table, `--json`,
`--plot`, `--compare`, inputs from a file, 429s reported and not retried, usage errors."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import run

from tiktok_async import RetryPolicy, TikTokClient
from tiktok_async.emulator import Emulator, existing_handle
from tiktok_async.loadtest import generated_handles, run_load

Factory = Callable[..., Awaitable[Emulator]]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LATENCY_KEYS = {"p50", "p90", "p99", "p999", "max"}


async def test_bench_prints_the_table_and_writes_json_and_png(
    tiktok_emulator: Emulator, tmp_path: Path
) -> None:
    report, plot = tmp_path / "run.json", tmp_path / "run.png"
    code, out, err = await run(tiktok_emulator, "bench", "--rate", "40", "--duration", "1",
                               "--warm", "5", "--json", str(report), "--plot", str(plot))
    assert code == 0, err
    assert "open loop at 40 requests/s" in out
    assert "first fetch" in out
    assert "cached" in out
    assert "latency p99 ms" in out
    data = json.loads(report.read_text())
    assert {"sent", "answered", "achieved_rate", "status_counts", "latency_ms"} <= data.keys()
    assert data["latency_ms"].keys() >= LATENCY_KEYS
    assert data["sent"] == 40
    assert data["fresh"]["sent"] == data["cached"]["sent"] == 20
    assert data["in_flight"]["cap"] >= math.ceil(40 * 35)  # rate x timeout: room for a stall
    assert plot.read_bytes()[:8] == PNG_MAGIC


async def test_bench_closed_loop_reads_a_file_and_skips_invalid_lines(
    tiktok_emulator: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "handles.txt"
    source.write_text("\n".join([existing_handle(i) for i in range(4)] + ["not a handle!"]))
    report = tmp_path / "run.json"
    code, out, err = await run(tiktok_emulator, "bench", str(source), "--fresh",
                               "--concurrency", "2", "--requests", "10", "--json", str(report))
    assert code == 0, err
    assert "skipped 1 invalid lines" in err
    data = json.loads(report.read_text())
    assert (data["mode"], data["groups"], data["sent"]) == ("closed", ["fresh"], 4)
    assert data["inputs_ran_out"] is True
    assert "the fresh inputs ran out" in out


@pytest.mark.realtime  # 50 a second against a bucket of 10 a second, burst 1: real time
async def test_bench_reports_429s_and_does_not_retry_them(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    emu = await tiktok_emulator_factory(rate=10, burst=1, upstream_latency_ms=0)
    report = tmp_path / "run.json"
    # Two seconds of sends: an open loop sends late requests at once after a stall, and
    # in a one-second run a stall of the busy machine once left no request a token (no
    # 200: exit 1, in a fresh clone's `make test`).
    code, out, err = await run(emu, "bench", "--cached", "--warm", "1", "--rate", "50",
                               "--requests", "100", "--json", str(report))
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["status_counts"]["429"] >= 60
    assert data["retries"] == 0
    assert "status 429" in out
    assert emu.stats().total == 1 + 100  # the warm-up, then each request once


async def test_bench_compare_prints_two_reports_side_by_side(
    tiktok_emulator: Emulator, tmp_path: Path
) -> None:
    paths = [tmp_path / "open.json", tmp_path / "closed.json"]
    async with TikTokClient(tiktok_emulator.api_key, tiktok_emulator.base_url, rate=math.inf,
                            retry=RetryPolicy.never(), concurrency=100) as client:
        first = await run_load(client, rate=100, requests=20, fresh=generated_handles())
        second = await run_load(client, concurrency=2, requests=20, fresh=generated_handles())
    first.write_json(paths[0])
    second.write_json(paths[1])
    plot = tmp_path / "compare.png"
    code, out, err = await run(tiktok_emulator, "bench", "--compare", *map(str, paths),
                               "--plot", str(plot))
    assert code == 0, err
    header = out.splitlines()[3]
    assert header.split() == ["open", "closed", "closed", "/", "open"]
    assert "open: open loop at 100 requests/s" in out
    assert "closed: closed loop, 2 in flight" in out
    assert plot.read_bytes()[:8] == PNG_MAGIC


async def test_bench_compare_refuses_a_file_that_is_not_a_report(
    tiktok_emulator: Emulator, tmp_path: Path
) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    code, _, err = await run(tiktok_emulator, "bench", "--compare", str(other), str(other))
    assert code == 2
    assert "is not a report written by tiktok-async bench --json" in err


async def test_bench_needs_a_rate_or_a_concurrency(tiktok_emulator: Emulator) -> None:
    code, _, err = await run(tiktok_emulator, "bench", "--duration", "1")
    assert code == 2
    assert "give --rate (an open loop) or --concurrency (a closed loop)" in err
    assert tiktok_emulator.stats().total == 0


async def test_bench_generates_handles_only(tiktok_emulator: Emulator) -> None:
    code, _, err = await run(tiktok_emulator, "bench", "--kind", "videos", "--rate", "5")
    assert code == 2
    assert "give a file of video links" in err


async def test_bench_with_a_bad_key_exits_1(tiktok_emulator: Emulator) -> None:
    code, out, err = await run(tiktok_emulator, "bench", "--rate", "20", "--requests", "5",
                               "--fresh", key="wrong-key")
    assert code == 1
    assert "status 403" in out
    assert "no request was answered 200" in err
