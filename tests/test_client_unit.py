"""TikTokClient without a server: configuration, the key kept secret, exact answers, stats."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import threading
import time
import traceback
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses as MockHTTP

from tiktok_async._client import API_KEY_ENV, BASE_URL_ENV, ClientHooks, TikTokClient
from tiktok_async._exceptions import (
    ClientStateError,
    ConnectError,
    DecodeError,
    ForbiddenError,
    RateLimitedError,
    TikTokError,
)
from tiktok_async._retry import RetryPolicy
from tiktok_async._stats import StatsRecorder

KEY = "sk-live-SECRET-0123456789abcdef"
BASE = "https://abc123.execute-api.us-east-2.amazonaws.com/dev/tiktok"
USER_URL = f"{BASE}/user/someone"
PROFILE = (
    b'{"user":{"id":"1","nickname":"n"},"stats":{"diggCount":1,"followerCount":2,'
    b'"followingCount":3,"friendCount":4,"heartCount":5,"heart":5,"videoCount":6}}'
)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(BASE_URL_ENV, raising=False)


# --- configuration -------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ValueError, match=API_KEY_ENV):
        TikTokClient(base_url=BASE)


@pytest.mark.usefixtures("no_env")
def test_missing_base_url_names_the_variable() -> None:
    with pytest.raises(ValueError, match=BASE_URL_ENV):
        TikTokClient(KEY)


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv(BASE_URL_ENV, BASE + "/")
    client = TikTokClient()
    assert f"base_url={BASE!r}" in repr(client)


@pytest.mark.parametrize("url", ["abc", "ftp://host/x", "https://", f"{BASE}?stage=dev"])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        TikTokClient(KEY, url)


@pytest.mark.parametrize(("key", "words"), [
    ("sk-live-123\n", "line break"),  # open("key.txt").read(): aiohttp refused it at each call
    (" sk-live-123", "spaces"),
    ("sk-live\t123", "control characters"),
    (123, "must be text"),  # aiohttp's TypeError at each call
])
def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(
        key: object, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        TikTokClient(key, BASE)  # type: ignore[arg-type]
    assert "sk-live" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        # aiohttp failed at every request (OverflowError), not here
        ({"timeout": math.inf}, "timeout must be a finite"),
        ({"connect_timeout": math.inf}, "connect_timeout must be a finite"),
        ({"rate": 0}, "rate"),
        ({"burst": 0}, "burst"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        TikTokClient(KEY, BASE, **kwargs)  # type: ignore[arg-type]


# --- the key stays secret --------------------------------------------------------------------


def test_repr_hides_the_key() -> None:
    client = TikTokClient(KEY, BASE)
    assert KEY not in repr(client)
    assert "api_key=***" in repr(client)


def assert_key_nowhere_in(error: BaseException) -> None:
    """Not in the text of the error (or its cause), nor in a local of our frames."""
    for err in (error, error.__cause__):
        if err is not None:
            assert KEY not in str(err)
            assert KEY not in repr(err)
            for frame, _ in traceback.walk_tb(err.__traceback__):
                if "tiktok_async" in frame.f_code.co_filename:
                    for name, value in frame.f_locals.items():
                        assert KEY not in repr(value), (frame.f_code.co_name, name)


async def test_key_is_in_no_log_line_exception_or_traceback_local(
    mock_http: MockHTTP, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tiktok_async")
    mock_http.get(USER_URL, status=500, body=b'{"message":"Internal server error"}')
    mock_http.get(USER_URL, status=403, body=b'{"message":"Forbidden"}')
    mock_http.get(USER_URL, exception=aiohttp.ServerDisconnectedError())
    async with TikTokClient(KEY, BASE, retry=RetryPolicy.testing(max_attempts=2)) as client:
        with pytest.raises(ForbiddenError) as forbidden:
            await client.get_user("someone")
        with pytest.raises(ConnectError) as dropped:
            await client.get_user("someone")
    assert KEY not in caplog.text
    assert caplog.records  # the debug and warning lines were there to check
    assert_key_nowhere_in(forbidden.value)
    assert_key_nowhere_in(dropped.value)


# --- exact answers (aioresponses) ------------------------------------------------------------


class WaitSeen(Exception):
    """Raised by a hook to end a call before its backoff sleep."""


async def test_retry_after_as_http_date_sets_the_wait(mock_http: MockHTTP) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    mock_http.get(
        USER_URL,
        status=429,
        body=b'{"message":"Too Many Requests"}',
        headers={"Retry-After": later},
    )
    waits: list[float] = []

    def stop_before_sleeping(path: str, error: TikTokError, attempt: int, wait: float) -> None:
        waits.append(wait)
        raise WaitSeen  # end the call here: the wait is what we wanted to see

    hooks = ClientHooks(on_retry=stop_before_sleeping)
    async with TikTokClient(KEY, BASE, hooks=hooks) as client:
        with pytest.raises(WaitSeen):
            await client.get_user("someone")
    [wait] = waits
    assert 28.0 <= wait <= 30.0


async def test_retry_after_over_the_cap_fails_at_once(mock_http: MockHTTP) -> None:
    mock_http.get(
        USER_URL,
        status=429,
        body=b'{"message":"Too Many Requests"}',
        headers={"Retry-After": "3600"},
    )
    async with TikTokClient(KEY, BASE) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_user("someone")
        assert client.stats.requests == 1
    assert caught.value.retry_after == 3600.0


async def test_body_that_does_not_fit_names_the_field_and_request(mock_http: MockHTTP) -> None:
    mock_http.get(
        USER_URL,
        body=PROFILE.replace(b'"followerCount":2', b'"followerCount":"x"'),
        headers={"x-amzn-RequestId": "req-42"},
    )
    async with TikTokClient(KEY, BASE) as client:
        with pytest.raises(DecodeError) as caught:
            await client.get_user("someone")
    assert caught.value.path == "$.stats.followerCount"
    assert caught.value.request_id == "req-42"
    assert caught.value.attempts == 1


async def test_hooks_see_every_attempt(mock_http: MockHTTP) -> None:
    mock_http.get(USER_URL, status=503, body=b'{"message":"Service Unavailable"}')
    mock_http.get(USER_URL, body=PROFILE)
    seen: list[tuple[object, ...]] = []
    hooks = ClientHooks(
        on_request=lambda path: seen.append(("request", path)),
        on_response=lambda path, status, seconds: seen.append(("response", path, status)),
        on_retry=lambda path, error, attempt, wait: seen.append(("retry", path, attempt)),
    )
    async with TikTokClient(KEY, BASE, retry=RetryPolicy.testing(), hooks=hooks) as client:
        profile = await client.get_user("@someone")
    assert profile.stats.follower_count == 2
    assert seen == [
        ("request", "user/someone"),
        ("response", "user/someone", 503),
        ("retry", "user/someone", 1),
        ("request", "user/someone"),
        ("response", "user/someone", 200),
    ]


async def test_stats_count_requests_statuses_and_retries(mock_http: MockHTTP) -> None:
    mock_http.get(USER_URL, status=429, body=b'{"message":"Too Many Requests"}')
    mock_http.get(USER_URL, status=502, body=b'{"message":"Internal server error"}')
    mock_http.get(USER_URL, body=PROFILE)
    async with TikTokClient(KEY, BASE, retry=RetryPolicy.testing()) as client:
        await client.get_user("someone")
        stats = client.stats
    assert stats.requests == 3
    assert dict(stats.responses) == {429: 1, 502: 1, 200: 1}
    assert stats.retries == 2
    assert dict(stats.retries_by_cause) == {"throttled": 1, "server_error": 1}
    assert stats.throttled == 1
    assert stats.latency_p50 is not None


async def test_set_rate_before_and_after_opening() -> None:
    client = TikTokClient(KEY, BASE)
    client.set_rate(50)
    rates = [client.rate]
    async with client:
        client.set_rate(math.inf)
        rates.append(client.rate)
        assert rates == [50, math.inf]
        with pytest.raises(ValueError, match="rate"):
            client.set_rate(-1)


async def test_none_is_adaptive_everywhere_and_inf_is_no_limit() -> None:
    """One meaning for None: `rate=None` and `set_rate(None)` both ask for the adaptive
    mode; `math.inf` is no client-side limit, and `.rate` says so (never None)."""
    client = TikTokClient(KEY, BASE, rate=20)
    client.set_rate(None)  # before opening: the client opens adaptive
    assert (client.adaptive, client.rate) == (True, 10)
    async with client:
        assert (client.adaptive, client.rate) == (True, 10)
        client.set_rate(math.inf)
        assert (client.adaptive, client.rate) == (False, math.inf)
        client.set_rate(None)  # from no limit: the adaptive start, 10/s
        assert (client.adaptive, client.rate) == (True, 10)
        client.set_rate(40)
        client.set_rate(None)  # from a fixed rate: adapts from there
        assert (client.adaptive, client.rate) == (True, 40)
    unlimited = TikTokClient(KEY, BASE, rate=math.inf)
    assert (unlimited.adaptive, unlimited.rate) == (False, math.inf)


async def test_max_rate_bounds_a_return_to_the_adaptive_mode() -> None:
    async with TikTokClient(KEY, BASE, max_rate=4) as client:
        client.set_rate(100)
        assert client.rate == 100
        client.set_rate(None)
        assert (client.adaptive, client.rate) == (True, 4)


async def test_initial_rate_is_where_the_adaptive_rate_starts_below_max_rate() -> None:
    async with TikTokClient(KEY, BASE, initial_rate=800) as client:
        assert (client.adaptive, client.rate) == (True, 800)
    async with TikTokClient(KEY, BASE, initial_rate=800, max_rate=300) as capped:
        assert capped.rate == 300


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"initial_rate": 0}, "initial_rate must be a positive"),
    ({"initial_rate": math.inf}, "initial_rate must be a positive"),
    ({"initial_rate": True}, "initial_rate must be a positive"),
    ({"initial_rate": 50, "rate": 20}, "give it without a rate"),
])
def test_a_bad_initial_rate_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TikTokClient(KEY, BASE, **kwargs)


# --- stats recorder ------------------------------------------------------------------------


def test_latency_percentiles_are_within_the_bucket_width() -> None:
    recorder = StatsRecorder()
    for ms in range(1, 1001):  # 1 ms .. 1 s, uniform
        recorder.answered(200, ms / 1000)
    stats = recorder.snapshot()
    assert stats.latency_p50 == pytest.approx(0.500, rel=0.03)
    assert stats.latency_p95 == pytest.approx(0.950, rel=0.03)
    assert stats.latency_p99 == pytest.approx(0.990, rel=0.03)


def test_empty_stats_have_no_percentiles() -> None:
    stats = StatsRecorder().snapshot()
    assert (stats.requests, stats.latency_p50, stats.latency_p99) == (0, None, None)


def test_extreme_latencies_stay_in_range() -> None:
    recorder = StatsRecorder()
    recorder.answered(200, 0.0)
    recorder.answered(200, 1e6)
    stats = recorder.snapshot()
    assert stats.latency_p50 is not None
    assert stats.latency_p99 is not None
    assert stats.latency_p50 < 1e-4 < 100 < stats.latency_p99


def test_a_client_used_from_another_event_loop_says_so() -> None:
    """Opened in one loop (a thread's, as in an app that runs one) and called from
    another: aiohttp's "Timeout context manager should be used inside a task" or "Event
    loop is closed" (a RuntimeError) before; now the client's own error, and it is still
    closed cleanly in its own loop."""
    home = asyncio.new_event_loop()
    thread = threading.Thread(target=home.run_forever)
    thread.start()
    client = TikTokClient(KEY, BASE)
    try:
        asyncio.run_coroutine_threadsafe(client.open(), home).result(5)

        async def elsewhere() -> list[str]:
            seen = []
            calls = (lambda: client.get_user("someone"), lambda: _drain(client, ["someone"]),
                     client.aclose)
            for call in calls:
                with pytest.raises(ClientStateError, match="another event loop") as caught:
                    await call()
                seen.append(type(caught.value).__name__)
            return seen

        assert asyncio.run(elsewhere()) == ["ClientStateError"] * 3
        asyncio.run_coroutine_threadsafe(client.aclose(), home).result(5)
        assert client.is_closed
    finally:
        home.call_soon_threadsafe(home.stop)
        thread.join(5)
        home.close()


def test_a_client_used_in_a_later_loop_of_the_same_thread_says_so() -> None:
    """Opened in one loop and used in the next one run in the same thread: the loop it was
    opened in is not running. The check no longer asks for the running loop (a system
    call a request on Python 3.11); it must still see this."""
    home = asyncio.new_event_loop()
    client = TikTokClient(KEY, BASE)
    try:
        home.run_until_complete(client.open())

        async def later() -> None:
            with pytest.raises(ClientStateError, match="another event loop"):
                await client.get_user("someone")
            with pytest.raises(ClientStateError, match="another event loop"):
                await _drain(client, ["someone"])

        asyncio.run(later())
        home.run_until_complete(client.aclose())
        assert client.is_closed
    finally:
        home.close()


async def _drain(client: TikTokClient, handles: list[str]) -> None:
    async for _ in client.fetch_users(handles):
        pass
