"""The adaptive rate: the default when no rate is given; 429s bring it down, quotas do not."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from tiktok_async import NotFoundError, QuotaExceededError, TikTokClient
from tiktok_async._retry import RetryPolicy
from tiktok_async.emulator import Emulator, busiest_window, existing_handle, missing_handle

Factory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def client_for(emu: Emulator, **options: object) -> TikTokClient:
    kwargs: dict[str, object] = {"retry": RetryPolicy.testing(), **options}
    return TikTokClient(emu.api_key, emu.base_url, **kwargs)  # type: ignore[arg-type]


async def test_no_rate_means_adaptive_from_ten_a_second(emulator: Emulator) -> None:
    client = client_for(emulator)
    assert client.adaptive
    assert client.rate == 10
    assert "rate='adaptive'" in repr(client)


async def test_a_throttled_answer_lowers_the_rate(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        await client.get_user(existing_handle(0))
        before = client.rate
        assert before is not None
        emulator.inject("throttle")
        await client.get_user(existing_handle(1))  # 429, then retried
        after = client.rate
    assert after is not None
    assert after < before


async def test_a_used_up_quota_does_not_touch_the_rate(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        await client.get_user(existing_handle(0))
        before = client.rate
        emulator.inject("quota")
        with pytest.raises(QuotaExceededError):
            await client.get_user(existing_handle(1))
        assert client.rate is not None
        assert before is not None
        assert client.rate >= before  # not cut (the request sent may even grow it)


async def test_max_rate_caps_the_adaptive_rate(emulator: Emulator) -> None:
    async with client_for(emulator, max_rate=4) as client:
        assert client.rate == 4
        for n in range(6):
            await client.get_user(existing_handle(n))
        assert client.rate is not None
        assert client.rate <= 4


async def test_grows_while_answers_are_good(emulator: Emulator) -> None:
    """Slow start: the rate doubles every half second of good answers."""
    async with client_for(emulator, concurrency=4) as client:
        async for _ in client.fetch_users(f"user{n}.test" for n in range(40)):
            pass
        assert client.rate is not None
        assert client.rate > 10


async def test_a_quick_start_against_a_quota_next_door_stays_within_rate_plus_burst(
        tiktok_emulator_factory: Factory) -> None:
    """Answers in a millisecond or two: slow start doubles every few tens of milliseconds,
    drains a bucket of 50/s and 10 deep within a fraction of a second, and its first 429
    pauses the client, so no second at the server holds more than Q + B requests (and
    fewer than 3% are 429s; each is retried, no handle lost)."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0,
                                        rate=50, burst=10, missing_share=0)
    handles = [f"near{n}.test" for n in range(150)]
    async with client_for(emu, retry=RetryPolicy.testing(max_attempts=20)) as client:
        done = [r async for r in client.fetch_users(handles)]
        adaptive = client._limiter.adaptive  # type: ignore[union-attr]
        assert adaptive is not None
        assert adaptive.state.quick == 1  # the quick start ran, and its first 429 ended it
    assert len(done) == len(handles)
    assert {r.input for r in done if r.ok} == set(handles)
    arrivals = emu.stats().times(status=None)
    assert busiest_window(arrivals, 1.0) <= 50 + 10
    assert emu.stats().count(status=429) <= 0.03 * len(arrivals)


async def test_a_404_answered_at_once_does_not_set_the_pace(
        tiktok_emulator_factory: Factory) -> None:
    """The service answers a handle that does not exist at once and fetches one it has
    not seen for 300 ms: only the 200s' round trips set slow start's pace, so it stays
    at the half second (a quick start here sent bursts into a bucket another run had
    emptied: 4-17 429s in the demo's second run)."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=300, upstream_jitter_ms=0)
    async with client_for(emu, concurrency=4) as client:
        for n in range(3):
            with pytest.raises(NotFoundError):
                await client.get_user(missing_handle(n))
        await client.get_user(existing_handle(0))
        adaptive = client._limiter.adaptive  # type: ignore[union-attr]
        assert adaptive is not None
        assert adaptive.state.rtt_seen == 1
        assert adaptive.state.base_rtt >= 0.3


async def test_infinite_rate_means_no_client_side_limit(emulator: Emulator) -> None:
    async with client_for(emulator, rate=math.inf) as client:
        assert not client.adaptive
        assert client.rate == math.inf
        await client.get_user(existing_handle(0))


async def test_set_rate_fixes_the_rate_and_ends_adapting(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        client.set_rate(25)
        emulator.inject("throttle")
        await client.get_user(existing_handle(0))
        assert client.rate == 25
        assert not client.adaptive


def test_max_rate_with_a_fixed_rate_is_refused(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="max_rate"):
        client_for(emulator, rate=5, max_rate=10)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), True])
def test_bad_rates_are_refused(emulator: Emulator, rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        client_for(emulator, rate=rate)
