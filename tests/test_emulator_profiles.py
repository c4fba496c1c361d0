"""The emulator's named first-fetch latency profiles."""

from __future__ import annotations

import random
import statistics
import time

import aiohttp
import pytest

from tiktok_async.emulator import Emulator, EmulatorConfig
from tiktok_async.emulator._profiles import PROFILES


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_draws_have_the_named_median_and_p99(name: str) -> None:
    profile = PROFILES[name]
    rng = random.Random(1)
    draws = sorted(profile.draw(rng) * 1000 for _ in range(40_000))
    assert statistics.median(draws) == pytest.approx(profile.median_ms, rel=0.05)
    assert draws[int(0.99 * len(draws))] == pytest.approx(profile.p99_ms, rel=0.1)
    assert max(draws) <= profile.max_ms


def test_unknown_profile_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"latency_profile.*service"):
        EmulatorConfig(latency_profile="glacial")


async def test_first_fetch_waits_out_a_draw_of_the_profile() -> None:
    """The fast profile (median 50 ms) never draws under 5 ms with this seed."""
    async with Emulator(latency_profile="fast", seed=3) as emu:
        first = await emu_get_seconds(emu, "profile.user")
        assert emu.config.latency_profile == "fast"
    assert first > 0.005


async def emu_get_seconds(emu: Emulator, handle: str) -> float:
    async with aiohttp.ClientSession(headers=emu.headers) as session:
        started = time.perf_counter()
        async with session.get(f"{emu.base_url}/user/{handle}") as resp:
            assert resp.status == 200
            await resp.read()
        return time.perf_counter() - started
