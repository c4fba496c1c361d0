"""The emulator's state over HTTP: database across restarts, usage plan, stats and controls."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tiktok_async.emulator import (
    Emulator,
    EmulatorConfig,
    create_app,
    existing_handle,
    key_label,
)
from tiktok_async.emulator._serve import GC_YOUNG_THRESHOLD

KEY = {"x-api-key": "test-key"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=KEY) as s:
        yield s


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def test_database_file_keeps_users_across_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = EmulatorConfig(db_path=str(tmp_path / "emulator.sqlite3"))
    bodies = []
    for _ in range(2):
        async with Emulator(config) as emu:
            bodies.append((await fetch(session, f"{emu.base_url}/user/Some.Handle"))[1])
            fetched = emu.core.store.upstream_fetches
    assert bodies[0] == bodies[1]
    assert bodies[0]["user"]["createdAt"] == bodies[0]["user"]["updatedAt"]
    assert fetched == 0  # the second run answered from the file


async def test_memory_database_starts_empty(session: aiohttp.ClientSession) -> None:
    for _ in range(2):
        async with Emulator() as emu:
            await fetch(session, f"{emu.base_url}/user/some.handle")
            assert emu.core.store.upstream_fetches == 1


async def test_memory_database_runs_on_the_loop_and_a_file_on_its_thread(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """In memory a query takes microseconds, less than a hop to a thread and back (a fifth
    of the emulator's CPU at 1,000 first fetches a second): no thread. A file's queries
    can block on the disk: its own thread."""
    def db_threads() -> int:
        return sum(t.name.startswith("tiktok-emulator-db") for t in threading.enumerate())

    for path, threads in ((":memory:", 0), (str(tmp_path / "e.sqlite3"), 1)):
        async with Emulator(EmulatorConfig(db_path=path)) as emu:
            status, _ = await fetch(session, f"{emu.base_url}/user/{existing_handle(3)}")
            assert (status, db_threads()) == (200, threads), path
        assert db_threads() == 0


async def test_the_route_cache_holds_nothing_the_collector_tracks(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    """The emulator remembers each path it saw (up to 100,000): held as objects the
    collector tracks, they made its full collections stop it for up to 0.35 s at 1,000
    new handles a second."""
    for n in range(50):
        await fetch(session, f"{tiktok_emulator.base_url}/user/cached.{n}")
    entries = list(tiktok_emulator.core._routes.values())
    for _ in range(3):  # a tuple is let go once what it holds is: one level a collection
        gc.collect()
    assert len(entries) == 50
    assert [entry for entry in entries if gc.is_tracked(entry)] == []


def test_the_serving_process_collects_its_young_generation_seldom() -> None:
    """`tiktok-async serve` (a process of its own) tunes its collector; the embedded
    emulator leaves its host's alone (nothing above tuned this process)."""
    assert gc.get_threshold()[0] < GC_YOUNG_THRESHOLD
    script = ("import gc, sys; from tiktok_async.emulator._serve import tune_gc; tune_gc(); "
              "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [str(GC_YOUNG_THRESHOLD), "True"]


async def test_concurrent_first_requests_share_one_fetch(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{tiktok_emulator.base_url}/user/{existing_handle(7)}"
    answers = await asyncio.gather(*(fetch(session, url) for _ in range(10)))
    assert len({str(body) for _, body in answers}) == 1
    assert tiktok_emulator.core.store.upstream_fetches == 1


async def test_token_bucket_bounds_a_flood_by_burst_plus_rate_times_elapsed(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(rate=20, burst=5)
    url = f"{emu.base_url}/user/some.handle"

    async def flood(until: float) -> None:
        while time.monotonic() < until:
            async with session.get(url) as resp:
                await resp.read()

    start = time.monotonic()
    await asyncio.gather(*(flood(start + 1.0) for _ in range(8)))
    elapsed = time.monotonic() - start  # covers every arrival, so the bound cannot flake
    stats = emu.stats()
    ok = stats.count(status=200)
    assert ok <= 5 + 20 * elapsed
    assert ok >= 5  # the bucket starts full
    assert stats.count(status=429) > 0
    assert stats.max_in_window(1.0) <= 5 + 20 * 1.0 + 1


async def test_stats_count_per_key_route_and_status_without_the_key(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(api_keys=("test-key", "second-key"))
    await fetch(session, f"{emu.base_url}/user/some.handle")
    await fetch(session, f"{emu.base_url}/user/missing_x")
    async with session.get(f"{emu.base_url}/user/x.y", headers={"x-api-key": "second-key"}):
        pass
    async with session.get(f"{emu.url}/_emulator/stats") as resp:
        text = await resp.text()
        data = await resp.json()
    assert "test-key" not in text
    assert "second-key" not in text
    assert data["by_key"] == {key_label("test-key"): 2, key_label("second-key"): 1}
    assert data["by_status"] == {"200": 2, "404": 1}
    assert data["by_route"] == {"user": 3}
    assert len(data["arrivals"]) == 3
    async with session.get(f"{emu.url}/_emulator/stats?arrivals=1") as resp:
        assert len((await resp.json())["arrivals"]) == 1
    assert data["db"]["users"] == 2
    snapshot = emu.stats()
    assert snapshot.count(key="second-key") == 1
    assert snapshot.count(route="user", status=404) == 1


async def test_reset_forgets_counts_buckets_and_injections(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(rate=1, burst=1)
    url = f"{emu.base_url}/user/some.handle"
    assert [(await fetch(session, url))[0] for _ in range(2)] == [200, 429]
    emu.inject("500", 5)
    async with session.post(f"{emu.url}/_emulator/reset") as resp:
        assert resp.status == 200
    assert emu.stats().total == 0
    assert (await fetch(session, url))[0] == 200  # a full bucket, no injection left


async def test_reset_with_data_clears_the_database(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{tiktok_emulator.base_url}/user/some.handle"
    await fetch(session, url)
    async with session.post(f"{tiktok_emulator.url}/_emulator/reset", json={"data": True}):
        pass
    await fetch(session, url)
    assert tiktok_emulator.core.store.upstream_fetches == 2


async def test_config_changes_over_http_take_effect(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    control = f"{tiktok_emulator.url}/_emulator/config"
    async with session.post(control, json={"rate": 1, "burst": 1}) as resp:
        config = await resp.json()
    assert (config["rate"], config["burst"]) == (1, 1)
    assert config["api_keys"] == [key_label("test-key")]
    url = f"{tiktok_emulator.base_url}/user/some.handle"
    assert [(await fetch(session, url))[0] for _ in range(2)] == [200, 429]
    async with session.post(control, json={"db_path": "x"}) as resp:
        assert resp.status == 400
    async with session.get(f"{tiktok_emulator.url}/_emulator/nothing") as resp:
        assert resp.status == 404


async def test_factory_fixture_starts_emulators_with_their_own_config(
    tiktok_emulator_factory: Any,
) -> None:
    first = await tiktok_emulator_factory(prefix="/prod/api", api_keys="k1")
    second = await tiktok_emulator_factory()
    assert first.base_url.endswith("/prod/api")
    assert first.api_key == "k1"
    assert first.port != second.port


async def test_the_fixture_is_a_running_emulator(tiktok_emulator: Emulator) -> None:
    assert tiktok_emulator.base_url.startswith("http://127.0.0.1:")
    assert tiktok_emulator.base_url.endswith("/dev/tiktok")
    async with aiohttp.ClientSession(headers=tiktok_emulator.headers) as s:
        status, _ = await fetch(s, f"{tiktok_emulator.base_url}/user/some.handle")
    assert status == 200


async def test_create_app_embeds_in_an_aiohttp_runner(session: aiohttp.ClientSession) -> None:
    app = create_app(EmulatorConfig(upstream_latency_ms=0))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        root = f"http://127.0.0.1:{runner.addresses[0][1]}"
        assert (await fetch(session, f"{root}/dev/tiktok/user/some.handle"))[0] == 200
        assert (await fetch(session, f"{root}/_emulator/stats"))[1]["total"] == 1
    finally:
        await runner.cleanup()


async def test_emulator_lifecycle_is_checked() -> None:
    emu = Emulator()
    assert emu.config.prefix == "/dev/tiktok"
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.base_url
    async with emu:
        with pytest.raises(RuntimeError, match="already started"):
            await emu.start()
        with pytest.raises(ValueError, match="cannot change"):
            emu.configure(port=1)


async def test_a_database_that_cannot_open_fails_the_start(tmp_path: Path) -> None:
    emu = Emulator(db_path=str(tmp_path / "missing-dir" / "db.sqlite3"))
    with pytest.raises(sqlite3.OperationalError):
        await emu.start()
