"""TikTokClient against the emulator over real HTTP: every answer the API and API Gateway give."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from recording_rate import RecordingRate

from tiktok_async._adaptive import TUNING
from tiktok_async._client import ClientHooks, TikTokClient
from tiktok_async._exceptions import (
    ClientStateError,
    DecodeError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    TikTokError,
)
from tiktok_async._limiter import RateLimiter
from tiktok_async._models import UserProfile, Video
from tiktok_async._retry import RetryPolicy
from tiktok_async.emulator import (
    Emulator,
    Faults,
    busiest_window,
    existing_handle,
    missing_handle,
    video_id_for,
)

HANDLE = existing_handle(0)
TESTING = RetryPolicy.testing()


Factory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    """The emulator (our own pytest plugin's factory), without first-fetch latency."""
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def client_for(emu: Emulator, **kwargs: object) -> TikTokClient:
    options: dict[str, object] = {"retry": TESTING, **kwargs}
    return TikTokClient(emu.api_key, emu.base_url, **options)  # type: ignore[arg-type]



async def fetch_one(client: TikTokClient, handle: str) -> tuple[UserProfile, int]:
    """`(profile, attempts)` through the public bulk path (`Result.attempts`)."""
    results = [result async for result in client.fetch_users([handle])]
    assert len(results) == 1
    assert results[0].value is not None, results[0].error
    return results[0].value, results[0].attempts

async def test_get_user(tiktok_emulator: Emulator) -> None:
    async with client_for(tiktok_emulator) as client:
        profile = await client.get_user(f"  @{HANDLE.upper()} ")
    assert isinstance(profile, UserProfile)
    assert profile.user.id.isdigit()
    assert tiktok_emulator.stats().count(status=200) == 1


async def test_get_video_and_by_url(emulator: Emulator) -> None:
    video_id = video_id_for(HANDLE)
    url = f"https://www.tiktok.com/@{HANDLE}/video/{video_id}?lang=en#top"
    async with client_for(emulator) as client:
        video = await client.get_video(HANDLE, video_id)
        again = await client.get_video_by_url(url)
    assert isinstance(video, Video)
    assert video.id == again.id == video_id


async def test_not_found_is_final(emulator: Emulator) -> None:
    async with client_for(emulator, retry=RetryPolicy()) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_user(missing_handle(0))
    assert caught.value.status == 404
    assert caught.value.request_id
    assert caught.value.attempts == 1
    assert emulator.stats().total == 1


async def test_bad_key_is_forbidden_and_not_retried(emulator: Emulator) -> None:
    async with TikTokClient("wrong-key", emulator.base_url) as client:
        with pytest.raises(ForbiddenError):
            await client.get_user(HANDLE)
    assert emulator.stats().count(status=403) == emulator.stats().total == 1


async def test_quota_used_up_is_not_retried(emulator: Emulator) -> None:
    emulator.inject("quota", 1)
    async with client_for(emulator) as client:
        with pytest.raises(QuotaExceededError):
            await client.get_user(HANDLE)
    assert emulator.stats().total == 1


async def test_throttle_is_retried_then_succeeds(emulator: Emulator) -> None:
    emulator.inject("throttle", 2)
    async with client_for(emulator) as client:
        value, attempts = await fetch_one(client, HANDLE)
        stats = client.stats
    assert isinstance(value, UserProfile)
    assert attempts == 3
    assert stats.throttled == 2
    assert stats.retries_by_cause == {"throttled": 2}


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "408"])
async def test_server_errors_are_retried(emulator: Emulator, kind: str) -> None:
    emulator.inject(kind, 2)
    async with client_for(emulator) as client:
        _, attempts = await fetch_one(client, HANDLE)
    assert attempts == 3
    assert emulator.stats().count(status=int(kind)) == 2


async def test_truncated_body_is_retried(emulator: Emulator) -> None:
    emulator.inject("truncate", 1)
    async with client_for(emulator) as client:
        _, attempts = await fetch_one(client, HANDLE)
        stats = client.stats
    assert attempts == 2
    assert stats.errors == {"truncated": 1}


async def test_dropped_connection_is_retried(emulator: Emulator) -> None:
    """aiohttp itself resends a GET once, at once, when the connection drops before an
    answer (RFC 9112 9.3.1); a second drop reaches our retry layer."""
    emulator.inject("drop", 2)
    async with client_for(emulator) as client:
        _, attempts = await fetch_one(client, HANDLE)
        stats = client.stats
    assert attempts == 2
    assert stats.errors == {"connect": 1}
    assert emulator.stats().count(status=0) == 2


async def test_server_errors_give_up_after_max_attempts(emulator: Emulator) -> None:
    emulator.inject("502", 10)
    async with client_for(emulator, retry=RetryPolicy.testing(max_attempts=3)) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_user(HANDLE)
    assert caught.value.attempts == 3
    assert emulator.stats().total == 3


async def test_body_that_does_not_fit_raises_decode_error_with_path(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(DecodeError) as caught:
            await client.get_user("broken_profile")
    error = caught.value
    assert error.path is not None
    assert error.path.startswith("$.")
    assert error.request_id
    assert error.attempts == 1
    assert emulator.stats().total == 1


async def test_slow_answer_times_out_and_is_retried(tiktok_emulator_factory: Factory) -> None:
    """The 5 s answer would have been a success at the first attempt: two attempts and a
    timeout mean the 0.3 s limit cut it short (no stopwatch needed)."""
    emu = await tiktok_emulator_factory(faults=Faults(slow_seconds=5.0), upstream_latency_ms=0)
    emu.inject("slow", 1)
    async with client_for(emu, timeout=0.3) as client:
        _, attempts = await fetch_one(client, HANDLE)
        assert client.stats.errors == {"timeout": 1}
    assert attempts == 2


async def test_invalid_input_sends_nothing(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        for bad in ("", "@", "a b", "https://vm.tiktok.com/ZM123/", "https://tiktok.com.evil/@x"):
            with pytest.raises(InvalidInputError):
                await client.get_user(bad)
        with pytest.raises(InvalidInputError):
            await client.get_video(HANDLE, "12ab")
        with pytest.raises(InvalidInputError):
            await client.get_video_by_url("https://www.tiktok.com/embed/7301234567890123456")
    assert emulator.stats().total == 0


# --- Retry-After, both forms -------------------------------------------------------------


class _Stop(Exception):
    """Raised from a hook to end a call once the wait it was going to make is known."""


def waits_seen() -> tuple[list[float], ClientHooks]:
    waits: list[float] = []
    return waits, ClientHooks(on_retry=lambda path, error, attempt, wait: waits.append(wait))


# A policy whose own backoff (>= 5 s) cannot be mistaken for a Retry-After of 1 s.
SLOW_BACKOFF = RetryPolicy(initial_wait=5.0, jitter=0.0)
# Gaps between two arrivals are judged only as far as load cannot move them: at least
# the wait (a busy machine only adds), and well short of the backoff it is not.
NOT_THE_BACKOFF = SLOW_BACKOFF.initial_wait - 1.0


async def test_retry_after_in_seconds_is_honoured(tiktok_emulator_factory: Factory) -> None:
    emu = await tiktok_emulator_factory(retry_after=1, upstream_latency_ms=0)
    emu.inject("throttle", 1)
    waits, hooks = waits_seen()
    async with client_for(emu, retry=SLOW_BACKOFF, hooks=hooks) as client:
        await client.get_user(HANDLE)
    arrivals = emu.stats().times(status=None)
    assert waits == [1.0]
    assert 0.95 <= arrivals[1] - arrivals[0] < NOT_THE_BACKOFF


async def test_retry_after_as_http_date_is_honoured(tiktok_emulator_factory: Factory) -> None:
    emu = await tiktok_emulator_factory(retry_after=1, retry_after_date=True, upstream_latency_ms=0)
    emu.inject("throttle", 1)
    waits, hooks = waits_seen()
    async with client_for(emu, retry=SLOW_BACKOFF, hooks=hooks) as client:
        await client.get_user(HANDLE)
    arrivals = emu.stats().times(status=None)
    # An HTTP date has whole seconds: "now + 1 s" truncated is 0 to 1 s away.
    [wait] = waits
    assert 0.0 <= wait <= 1.0
    assert wait - 0.05 <= arrivals[1] - arrivals[0] < NOT_THE_BACKOFF


# --- a 429 slows the whole client ----------------------------------------------------------


async def test_throttle_holds_back_every_task_for_the_wait(emulator: Emulator) -> None:
    """At a fixed rate (or none) a 429 pauses the whole client; adaptive cuts the rate."""
    retried = asyncio.Event()
    hooks = ClientHooks(on_retry=lambda *args: retried.set())
    policy = RetryPolicy(initial_wait=0.4, jitter=0.0)
    emulator.inject("throttle", 1)
    async with client_for(emulator, retry=policy, hooks=hooks, rate=math.inf) as client:
        first = asyncio.ensure_future(client.get_user(HANDLE))
        await retried.wait()
        await client.get_user(existing_handle(1))  # another task, no 429 of its own
        await first
    arrivals = emulator.stats().arrivals
    throttled_at = next(t for t, status in arrivals if status == 429)
    others = [t for t, status in arrivals if status == 200]
    assert min(others) - throttled_at >= 0.38


async def test_a_backoff_holds_no_concurrency_slot(emulator: Emulator) -> None:
    """Another call is answered while the only slot's task backs off for 5 s: before
    that backoff ends (a margin of seconds, not milliseconds), and before its retry."""
    loop = asyncio.get_running_loop()
    retried, retry_due = asyncio.Event(), []

    def on_retry(path: str, error: TikTokError, attempt: int, wait: float) -> None:
        retry_due.append(loop.time() + wait)
        retried.set()

    emulator.inject("503", 1)
    hooks = ClientHooks(on_retry=on_retry)
    async with client_for(emulator, concurrency=1, retry=SLOW_BACKOFF, hooks=hooks) as client:
        first = asyncio.ensure_future(client.get_user(HANDLE))
        await retried.wait()  # the only slot's task now backs off for 5 s
        await client.get_user(existing_handle(1))
        answered_at = loop.time()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert answered_at < retry_due[0]
    assert [status for _, status in emulator.stats().arrivals] == [503, 200]


# --- the rate, judged by the server -------------------------------------------------------


async def test_rate_20_burst_1_never_sends_more_than_21_in_a_second(emulator: Emulator) -> None:
    """Every request of 40 at once goes through the limiter. Judged at each send on the
    loop's clock, where the bucket keeps its bound whatever the load (the server's
    arrival times add scheduling noise; test_limiter judges the rate on a virtual clock),
    and every send reached the server."""
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    hooks = ClientHooks(on_request=lambda path: sent.append(loop.time()))
    async with client_for(emulator, rate=20, burst=1, hooks=hooks) as client:
        await asyncio.gather(*(client.get_user(existing_handle(n % 5)) for n in range(40)))
    assert len(sent) == emulator.stats().count(status=200) == emulator.stats().total == 40
    assert busiest_window(sent, 1.0 + 1e-6) <= 21  # 20 a second and the half token of slack


# --- lifecycle -----------------------------------------------------------------------------


async def test_use_before_open_after_close_and_reopen_raise(emulator: Emulator) -> None:
    client = client_for(emulator)
    with pytest.raises(ClientStateError, match="not open"):
        await client.get_user(HANDLE)
    async with client:
        await client.get_user(HANDLE)
    assert client.is_closed
    with pytest.raises(ClientStateError, match="closed"):
        await client.get_user(HANDLE)
    with pytest.raises(ClientStateError):
        async with client:
            pass
    await client.aclose()  # idempotent


async def test_lent_session_is_used_and_left_open(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with client_for(emulator, session=session) as client:
            await client.get_user(HANDLE)
        assert not session.closed
        async with session.get(f"{emulator.base_url}/user/{HANDLE}") as resp:
            assert resp.status == 403  # our key went per request, not into the session


async def test_a_lent_session_that_raises_for_status_still_gives_the_api_s_answers(
    emulator: Emulator,
) -> None:
    """An app's session made with `raise_for_status=True` raised aiohttp's own error for
    every 4xx, which became a retried `TransportError`: a 404 took 6 attempts, a wrong key
    never stopped a bulk run."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with client_for(emulator, session=session) as client:
            with pytest.raises(NotFoundError) as caught:
                await client.get_user("missing_user")
            assert caught.value.attempts == 1
        async with TikTokClient("wrong-key", emulator.base_url, session=session,
                                retry=TESTING, concurrency=1) as client:
            with pytest.raises(ForbiddenError):
                async for _ in client.fetch_users([HANDLE, "other.user"]):
                    pass
    assert emulator.stats().total == 2  # each answered once: no retry, no second input


@pytest.mark.parametrize("kind", ["slow_body", "silent"])
async def test_closing_the_client_ends_the_requests_it_has_on_the_wire(
    emulator: Emulator, kind: str,
) -> None:
    """A call reading a body that trickles ran on to its own timeout after `aclose()`
    (aiohttp's close drops the connection's reader without waking it); one waiting for
    its answer ended with "Connector is closed", a ConnectError."""
    emulator.inject(kind)
    client = client_for(emulator, timeout=30.0, retry=RetryPolicy.never())
    await client.open()
    call = asyncio.get_running_loop().create_task(client.get_user(HANDLE))
    await asyncio.sleep(0.3)  # the request is out: headers read (slow_body) or awaited
    assert not call.done()
    started = time.monotonic()
    await client.aclose()
    with pytest.raises(ClientStateError, match="closed while this request"):
        await asyncio.wait_for(call, 5)
    assert time.monotonic() - started < 1.0
    assert not call.cancelled()


async def test_closing_an_unopened_client_closes_it(emulator: Emulator) -> None:
    client = client_for(emulator)
    await client.aclose()
    with pytest.raises(ClientStateError):
        async with client:
            pass


async def test_error_after_retries_reports_attempts_in_its_text(emulator: Emulator) -> None:
    emulator.inject("500", 10)
    async with client_for(emulator, retry=RetryPolicy.testing(max_attempts=2)) as client:
        with pytest.raises(TikTokError, match="after 2 attempts"):
            await client.get_user(HANDLE)


async def test_retry_after_beyond_the_cap_fails_at_once(tiktok_emulator_factory: Factory) -> None:
    emu = await tiktok_emulator_factory(retry_after=120, upstream_latency_ms=0)
    emu.inject("throttle", 1)
    async with client_for(emu, retry=RetryPolicy()) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_user(HANDLE)
    assert caught.value.retry_after == 120.0
    assert caught.value.attempts == 1


# --- the bulk layer's way in -----------------------------------------------------------------


async def test_fetch_users_answers_every_input_through_the_client(emulator: Emulator) -> None:
    inputs = [HANDLE, f"@{HANDLE.upper()}", existing_handle(1), missing_handle(0), "not a handle"]
    emulator.inject("503", 1)
    async with client_for(emulator) as client:
        results = [r async for r in client.fetch_users(inputs, ordered=True)]
    assert [r.input for r in results] == inputs
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert isinstance(results[3].error, NotFoundError)
    assert isinstance(results[4].error, InvalidInputError)
    assert sum(r.attempts for r in results) == 4  # 3 lookups (one retried once), a duplicate


async def test_fetch_users_on_a_closed_client_raises_at_once(emulator: Emulator) -> None:
    client = client_for(emulator)
    with pytest.raises(ClientStateError):
        client.fetch_users([HANDLE])


async def test_a_429_is_told_with_its_send_time_and_the_requests_sent_after_it(
    tiktok_emulator_factory: Factory,
) -> None:
    """Over HTTP: a client that stalls (a collection) reads a 429 late; the bucket was
    empty when its request went out, so the client tells that time and how many requests
    went out after it. Here a hook holds the loop 0.2 s after each of the three 429'd
    requests goes out while two more are sent behind it."""
    emu = await tiktok_emulator_factory(rate=0.01, burst=1)
    adaptive = RecordingRate()
    policy = RetryPolicy(max_attempts=1)

    def stall(path: str) -> None:
        if "/late." in path:
            time.sleep(0.2)  # the 429 of the request before arrives meanwhile

    hooks = ClientHooks(on_request=stall)
    async with client_for(emu, limiter=RateLimiter(adaptive=adaptive), retry=policy,
                          hooks=hooks) as client:
        await client.get_user("first.one")  # the bucket's one token
        for n in range(3):
            await asyncio.sleep(TUNING.settle)  # sent after the last cut: told
            calls = [client.get_user(f"early.t{n}"), client.get_user(f"late.t{n}"),
                     client.get_user(f"after.t{n}")]
            await asyncio.gather(*calls, return_exceptions=True)
    told = adaptive.throttled_told
    assert len(told) >= 3
    early = [(now, at, after) for now, at, after in told if after == 2]
    assert early, told
    assert all(at is not None and now - at >= 0.2 for now, at, _ in early)


async def test_a_200_of_a_request_sent_before_the_cut_is_not_told_one_sent_after_is(
    tiktok_emulator_factory: Factory,
) -> None:
    """Over HTTP: the client gives its own adaptive limiter each answer's send time. A
    first fetch of 0.5 s sent before a cut (a 429 of another request) comes back after
    it: not told, it would end the measuring as clean. One sent after the settling is."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=500, upstream_jitter_ms=0)
    adaptive = RecordingRate()
    limiter = RateLimiter(adaptive=adaptive)
    async with client_for(emu, limiter=limiter) as client:
        early = asyncio.create_task(client.get_user(existing_handle(1)))
        await asyncio.sleep(0.1)  # sent, its answer 0.4 s away
        limiter.on_rate_limited(sent_at=asyncio.get_running_loop().time())  # the cut
        await early
        told_for_early = adaptive.ok_told
        await asyncio.sleep(TUNING.settle)
        await client.get_user(existing_handle(2))
    assert told_for_early == 0
    assert adaptive.ok_told == 1
