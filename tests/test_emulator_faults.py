"""Faults over real HTTP: what a client sees when the connection or the answer goes wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tiktok_async.emulator import Emulator, Faults

KEY = {"x-api-key": "test-key"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=KEY) as s:
        yield s


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    """The status, or 0 when no complete answer came."""
    try:
        async with session.get(url) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return 0


async def test_drop_closes_the_connection_without_an_answer(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    # aiohttp's client itself sends an idempotent request once more after a disconnect
    # that came before any answer; so two drops in a row reach the caller.
    tiktok_emulator.inject("drop", count=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(f"{tiktok_emulator.base_url}/user/some.handle") as resp:
            await resp.read()
    assert await status_of(session, f"{tiktok_emulator.base_url}/user/some.handle") == 200
    assert tiktok_emulator.stats().count(status=0) == 2


async def test_truncate_sends_part_of_the_announced_body(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    tiktok_emulator.inject("truncate")
    async with session.get(f"{tiktok_emulator.base_url}/user/some.handle") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert tiktok_emulator.stats().faults == {"truncate": 1}


async def test_slow_answers_outlast_a_client_timeout(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    tiktok_emulator.configure(faults=Faults(slow_seconds=5))
    tiktok_emulator.inject("slow")
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(f"{tiktok_emulator.base_url}/user/some.handle",
                               timeout=timeout) as resp:
            await resp.read()
    assert await status_of(session, f"{tiktok_emulator.base_url}/user/some.handle") == 200


async def test_latency_delays_every_answer(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{tiktok_emulator.base_url}/user/some.handle"
    await status_of(session, url)
    tiktok_emulator.configure(faults=Faults(latency_ms=60, jitter_ms=20))
    start = time.perf_counter()
    for _ in range(3):
        assert await status_of(session, url) == 200
    assert time.perf_counter() - start >= 3 * 0.06


async def test_random_faults_repeat_with_the_same_seed(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    faults = Faults(http_500=0.15, http_503=0.1, drop=0.05, truncate=0.05)
    runs = []
    for _ in range(2):
        emu = await tiktok_emulator_factory(faults=faults, seed=42)
        url = f"{emu.base_url}/user/some.handle"
        runs.append([await status_of(session, url) for _ in range(60)])
    assert runs[0] == runs[1]
    assert {0, 200, 500, 503} <= set(runs[0])


async def test_faults_never_touch_the_observation_endpoints(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    tiktok_emulator.configure(faults=Faults(http_500=1.0))
    assert await status_of(session, f"{tiktok_emulator.url}/_emulator/stats") == 200
    assert await status_of(session, f"{tiktok_emulator.base_url}/user/some.handle") == 500


async def test_faults_can_be_set_over_http(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    control = f"{tiktok_emulator.url}/_emulator/faults"
    async with session.post(control, json={"inject": "502", "count": 1}) as resp:
        assert resp.status == 200
    assert await status_of(session, f"{tiktok_emulator.base_url}/user/some.handle") == 502
    async with session.post(control, json={"http_504": 1.0}) as resp:
        assert (await resp.json())["http_504"] == 1.0
    assert await status_of(session, f"{tiktok_emulator.base_url}/user/some.handle") == 504
    async with session.post(control, json={"teapot": 1}) as resp:
        assert resp.status == 400
