"""The emulator over real HTTP on 127.0.0.1: both routes, and API Gateway's own answers."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tiktok_async.emulator import (
    Emulator,
    existing_handle,
    missing_handle,
    missing_video_id,
    video_id_for,
)

KEY = "test-key"

USER_SCHEMA: dict[str, Any] = {
    "user": {
        "id": str, "nickname": str, "id_dup": str, "secUid": str, "profileBio": str,
        "profilePictureUrl": str, "isVerified": bool, "isPrivateAccount": bool,
        "createdAt": str, "updatedAt": str,
    },
    "stats": {
        "diggCount": int, "followerCount": int, "followingCount": int, "friendCount": int,
        "heartCount": int, "heart": int, "videoCount": int,
    },
}
VIDEO_SCHEMA: dict[str, Any] = {
    "id": str, "description": str, "createTime": str, "duration": int,
    "music": {
        "id": str, "title": str, "authorName": str, "album": str, "duration": int,
        "original": bool, "private": bool, "createdAt": str, "updatedAt": str,
    },
    "stats": {
        "diggCount": int, "collectCount": int, "commentCount": int, "playCount": int,
        "repostCount": int, "shareCount": int,
    },
    "author": USER_SCHEMA["user"],
    "authorStats": USER_SCHEMA["stats"],
}


def assert_fits(value: Any, schema: Any, path: str = "$") -> None:
    """`value` has exactly the schema's fields, each of its type (bool is not an int)."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), path
        assert list(value) == list(schema), path
        for name, sub in schema.items():
            assert_fits(value[name], sub, f"{path}.{name}")
        return
    types = schema if isinstance(schema, tuple) else (schema,)
    assert type(value) in types, f"{path}: {type(value).__name__}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(
    session: aiohttp.ClientSession, url: str, key: str | None = KEY, method: str = "GET"
) -> tuple[int, Any, Any]:
    """(status, JSON body or None, headers) of one request; `url` is sent as encoded."""
    headers = {"x-api-key": key} if key is not None else {}
    async with session.request(method, URL(url, encoded=True), headers=headers) as resp:
        raw = await resp.read()
        body = await resp.json(content_type=None) if raw else None
        return resp.status, body, resp.headers


# --- the two routes -----------------------------------------------------------------------


async def test_user_route_answers_every_field_with_its_type(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    for i in range(20):
        status, body, headers = await get(
            session, f"{tiktok_emulator.base_url}/user/{existing_handle(i)}")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert_fits(body, USER_SCHEMA)
        assert body["user"]["createdAt"].endswith("Z")


async def test_video_route_answers_every_field_with_its_type(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    handle = existing_handle(1)
    for i in range(20):
        video_id = video_id_for(handle, i)
        status, body, _ = await get(
            session, f"{tiktok_emulator.base_url}/video/{handle}/{video_id}")
        assert status == 200
        assert_fits(body, VIDEO_SCHEMA)
        assert body["id"] == video_id
        assert body["createTime"] == str(int(video_id) >> 32)


async def test_second_request_comes_from_the_database_unchanged(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{tiktok_emulator.base_url}/user/Some.Handle"
    first = await get(session, url)
    again = await get(session, url.lower())
    assert first[1] == again[1]
    assert tiktok_emulator.core.store.upstream_fetches == 1


async def test_video_fetch_saves_its_author(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    handle = existing_handle(2)
    _, video, _ = await get(
        session, f"{tiktok_emulator.base_url}/video/{handle}/{video_id_for(handle)}")
    _, profile, _ = await get(session, f"{tiktok_emulator.base_url}/user/{handle}")
    assert profile == {"user": video["author"], "stats": video["authorStats"]}
    assert tiktok_emulator.core.store.upstream_fetches == 1


async def test_broken_handles_answer_a_body_that_does_not_fit(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await get(session, f"{tiktok_emulator.base_url}/user/broken_one")
    assert status == 200
    assert isinstance(body["stats"]["followerCount"], str)


# --- the table of DESIGN.md section 1 -----------------------------------------------------


def assert_gateway_error(answer: tuple[int, Any, Any], status: int, message: str,
                         error_type: str) -> None:
    got_status, body, headers = answer
    assert (got_status, body) == (status, {"message": message})
    assert headers["x-amzn-ErrorType"] == error_type
    assert headers["Content-Type"] == "application/json"
    uuid.UUID(headers["x-amzn-RequestId"])


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_missing_or_wrong_key_is_403_forbidden(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession, key: str | None
) -> None:
    answer = await get(session, f"{tiktok_emulator.base_url}/user/some.handle", key=key)
    assert_gateway_error(answer, 403, "Forbidden", "ForbiddenException")


@pytest.mark.parametrize(
    ("path", "method"),
    [("/user/", "GET"), ("/user", "GET"), ("/video/h/", "GET"), ("/users/x", "GET"),
     ("/user/some.handle", "POST"), ("/user/some.handle", "DELETE"), ("", "GET")],
)
async def test_unknown_route_or_method_is_403_missing_authentication_token(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession, path: str, method: str
) -> None:
    answer = await get(session, f"{tiktok_emulator.base_url}{path}", method=method)
    assert_gateway_error(answer, 403, "Missing Authentication Token",
                         "MissingAuthenticationTokenException")


async def test_unknown_route_is_403_even_without_a_key(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    answer = await get(session, f"{tiktok_emulator.url}/somewhere", key=None)
    assert answer[1] == {"message": "Missing Authentication Token"}


async def test_throttle_is_429_too_many_requests_without_retry_after(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(rate=1, burst=1)
    url = f"{emu.base_url}/user/some.handle"
    assert (await get(session, url))[0] == 200
    answer = await get(session, url)
    assert_gateway_error(answer, 429, "Too Many Requests", "TooManyRequestsException")
    assert "Retry-After" not in answer[2]


async def test_retry_after_is_sent_when_configured(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{tiktok_emulator.base_url}/user/some.handle"
    tiktok_emulator.configure(retry_after=3)
    tiktok_emulator.inject("throttle")
    assert (await get(session, url))[2]["Retry-After"] == "3"
    tiktok_emulator.configure(retry_after_date=True)
    tiktok_emulator.inject("throttle")
    assert (await get(session, url))[2]["Retry-After"].endswith(" GMT")


async def test_quota_is_429_limit_exceeded_until_the_period_ends(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(quota=2, quota_period=3600)
    url = f"{emu.base_url}/user/some.handle"
    assert [(await get(session, url))[0] for _ in range(2)] == [200, 200]
    answer = await get(session, url)
    assert_gateway_error(answer, 429, "Limit Exceeded", "LimitExceededException")
    other = await get(session, url, key="other-key")
    assert other[0] == 403  # a key not configured is still refused first


@pytest.mark.parametrize(
    ("kind", "status", "message", "error_type"),
    [
        ("500", 500, "Internal server error", "InternalServerErrorException"),
        ("502", 502, "Internal server error", "InternalServerErrorException"),
        ("503", 503, "Service Unavailable", "ServiceUnavailableException"),
        ("504", 504, "Endpoint request timed out", "IntegrationTimeoutException"),
        ("408", 408, "Request Timeout", "RequestTimeoutException"),
        ("forbidden", 403, "Forbidden", "ForbiddenException"),
        ("throttle", 429, "Too Many Requests", "TooManyRequestsException"),
        ("quota", 429, "Limit Exceeded", "LimitExceededException"),
    ],
)
async def test_injected_status_faults_answer_as_api_gateway(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession,
    kind: str, status: int, message: str, error_type: str,
) -> None:
    url = f"{tiktok_emulator.base_url}/user/some.handle"
    tiktok_emulator.inject(kind, count=2)
    for _ in range(2):
        assert_gateway_error(await get(session, url), status, message, error_type)
    assert (await get(session, url))[0] == 200
    assert tiktok_emulator.stats().faults == {kind: 2}


async def test_unknown_user_is_404_user_not_found(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    for handle in ("missing_someone", missing_handle(0), missing_handle(1)):
        answer = await get(session, f"{tiktok_emulator.base_url}/user/{handle}")
        assert_gateway_error(answer, 404, "User not found", "NotFoundException")


async def test_unknown_video_is_404_video_not_found(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    handle = existing_handle(0)
    for path in (f"{handle}/{missing_video_id(handle)}", f"{handle}/{'9' * 40}",
                 f"missing_x/{video_id_for(handle)}"):
        answer = await get(session, f"{tiktok_emulator.base_url}/video/{path}")
        assert_gateway_error(answer, 404, "Video not found", "NotFoundException")


@pytest.mark.parametrize(
    "path", ["/user/a", "/user/" + "a" * 31, "/user/a%2Fb", "/user/%C3%A9t%C3%A9",
             "/user/a%20b", "/video/some.handle/12ab", "/video/some.handle/%D9%A3",
             "/video/x/1"],
)
async def test_bad_path_parts_are_400_with_a_message(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession, path: str
) -> None:
    status, body, headers = await get(session, f"{tiktok_emulator.base_url}{path}")
    assert status == 400
    assert body["message"].startswith("Invalid ")
    assert headers["x-amzn-ErrorType"] == "BadRequestException"


async def test_every_answer_has_a_distinct_request_id(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    base = tiktok_emulator.base_url
    ids = set()
    for path, key in [("/user/some.handle", KEY), ("/user/some.handle", KEY),
                      ("/user/some.handle", None), ("/nope", KEY), ("/user/a", KEY)]:
        _, _, headers = await get(session, base + path, key=key)
        ids.add(uuid.UUID(headers["x-amzn-RequestId"]))
    assert len(ids) == 5


async def test_many_connections_at_once_are_all_accepted(tiktok_emulator: Emulator) -> None:
    """A bulk client opens hundreds of connections at once (up to its ceiling of 4,096).
    Here the emulator's loop is kept busy (this test blocks it) while 600 connect: the
    kernel completes each handshake into the listen backlog. With aiohttp's default
    backlog (128) the SYNs past it were dropped, and each of those connections waited a
    second or more for the retransmit (11,414 drops in one goodput cell at 1,000/s)."""
    count = min(600, _somaxconn() - 8)  # the kernel's cap on any backlog (4,096 here)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            # A local handshake takes microseconds; only a dropped SYN takes 0.5 s.
            sockets.append(socket.create_connection(("127.0.0.1", tiktok_emulator.port),
                                                    timeout=0.5))
    except TimeoutError:
        pass
    finally:
        for sock in sockets:
            sock.close()
    assert len(sockets) == count, f"connection {len(sockets) + 1} timed out"


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:  # not Linux: assume the common default of today's kernels
        return 4096


# --- a backend that queues ----------------------------------------------------------------


async def test_with_few_upstream_workers_first_fetches_queue_and_cached_answers_do_not(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession,
) -> None:
    """Two workers, 100 ms a first fetch: six new users at once take three turns (the
    last about 300 ms); cached ones are answered at once, beside a queue of first fetches."""
    emu = await tiktok_emulator_factory(upstream_workers=2, upstream_latency_ms=100,
                                        upstream_jitter_ms=0, missing_share=0)
    cached = f"{emu.base_url}/user/{existing_handle(99)}"
    assert (await get(session, cached))[0] == 200
    started = time.perf_counter()

    async def timed(url: str) -> float:
        assert (await get(session, url))[0] == 200
        return time.perf_counter() - started

    fresh = [timed(f"{emu.base_url}/user/{existing_handle(n)}") for n in range(6)]
    seconds = await asyncio.gather(*fresh, timed(cached))
    assert sorted(seconds[:6])[-1] >= 0.28  # the third turn: never sooner
    assert sorted(seconds[:6])[1] < 0.2  # the first turn did not wait for a worker
    assert seconds[6] < sorted(seconds[:6])[-1]  # the cached one did not queue


# --- API Gateway's integration timeout ---------------------------------------------------


async def test_a_first_fetch_longer_than_the_integration_timeout_is_a_504_and_goes_on(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession,
) -> None:
    """As API Gateway in front of the service's function: the request gets 504 "Endpoint
    request timed out" when the fetch outlasts the timeout, and the fetch finishes anyway
    and saves the user, so the next request is answered at once from the database."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=600, upstream_jitter_ms=0,
                                        integration_timeout=0.2, missing_share=0)
    url = f"{emu.base_url}/user/{existing_handle(7)}"
    started = time.perf_counter()
    status, body, headers = await get(session, url)
    waited = time.perf_counter() - started
    assert (status, body) == (504, {"message": "Endpoint request timed out"})
    assert headers["x-amzn-ErrorType"] == "IntegrationTimeoutException"
    assert 0.2 <= waited < 0.55  # the timeout's answer, not the fetch's
    await asyncio.sleep(0.6)  # the fetch goes on and saves the user
    started = time.perf_counter()
    status, body, _ = await get(session, url)
    assert status == 200
    assert body["user"]["nickname"]
    assert time.perf_counter() - started < 0.3  # from the database, no second fetch
    assert emu.core.store.upstream_fetches == 1


async def test_the_wait_for_a_worker_counts_toward_the_integration_timeout(
    tiktok_emulator_factory: Any, session: aiohttp.ClientSession,
) -> None:
    """One worker, 150 ms a fetch, a timeout of 250 ms: of three new users asked at once
    the first is answered, the later ones wait their turn past the timeout (504); cached
    answers never wait. Raised over the control API, the timeout lets them all through."""
    emu = await tiktok_emulator_factory(upstream_workers=1, upstream_latency_ms=150,
                                        upstream_jitter_ms=0, integration_timeout=0.25,
                                        missing_share=0)
    urls = [f"{emu.base_url}/user/{existing_handle(n)}" for n in range(3)]
    statuses = sorted(s for s, _, _ in await asyncio.gather(*(get(session, u) for u in urls)))
    assert statuses == [200, 504, 504]
    async with session.post(f"{emu.url}/_emulator/config",
                            json={"integration_timeout": None}) as resp:
        assert resp.status == 200
        assert (await resp.json())["integration_timeout"] is None
    fresh = [f"{emu.base_url}/user/{existing_handle(n)}" for n in range(10, 13)]
    assert [s for s, _, _ in await asyncio.gather(*(get(session, u) for u in fresh))] == [200] * 3


async def test_by_default_the_integration_timeout_is_api_gateways_29_seconds(
    tiktok_emulator: Any,
) -> None:
    assert tiktok_emulator.config.integration_timeout == 29.0
    assert tiktok_emulator.core.store.integration_timeout == 29.0
