"""The emulator's own defences (issue 11): its control API refuses settings that would break
it and wants a token beyond loopback; a connection that never finishes its headers is closed;
it sends the seed's types unless a test switches a quirk on; faults come in every form the
command line takes; the hostile fault modes and 'an aborting answer after N good ones'."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tiktok_async import RetryPolicy, TikTokClient
from tiktok_async.emulator import Emulator, EmulatorConfig, Faults, video_id_for
from tiktok_async.emulator._config import ConfigError
from tiktok_async.emulator._serve import add_arguments, config_from_args, parse_injection

Factory = Callable[..., Awaitable[Emulator]]
TOKEN_HEADER = "x-emulator-token"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def api_status(session: aiohttp.ClientSession, emu: Emulator, key: str | None = None) -> int:
    headers = {"x-api-key": key or emu.api_key}
    async with session.get(f"{emu.base_url}/user/some.handle", headers=headers) as resp:
        await resp.read()
        return resp.status


# --- the control API refuses what would break the emulator --------------------------------

BAD_SETTINGS = [
    ("rate", -5), ("rate", 0), ("rate", "fast"), ("rate", True), ("rate", 1e300),
    ("burst", 0), ("burst", 2.5), ("burst", -1),
    ("quota", -1), ("quota", 1.5), ("quota_period", 0), ("quota_period", -60),
    ("retry_after", -1), ("retry_after", 10**12), ("retry_after", "soon"),
    ("retry_after_date", "yes"), ("missing_share", 1), ("missing_share", -0.1),
    ("upstream_latency_ms", -1), ("upstream_jitter_ms", "x"),
    ("upstream_workers", 0), ("upstream_workers", 1.5),
    ("integration_timeout", 0), ("integration_timeout", -1), ("integration_timeout", "29"),
    ("api_keys", []), ("api_keys", [1]), ("api_keys", ["a\r\nb"]), ("api_keys", [""]),
    ("seed", 1), ("db_path", "x.db"), ("host", "0.0.0.0"), ("nonsense", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_SETTINGS, ids=lambda v: repr(v)[:20])
async def test_a_bad_setting_is_a_400_naming_the_field_and_changes_nothing(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession, field: str, value: Any
) -> None:
    emu = await tiktok_emulator_factory(control_token="t0ken")
    control, headers = f"{emu.url}/_emulator/config", {TOKEN_HEADER: "t0ken"}
    _, before = await call(session, "GET", control, headers=headers)
    status, body = await call(session, "POST", control, json={field: value}, headers=headers)
    assert (status, body["field"]) == (400, field), body
    assert field in body["message"]
    assert (await call(session, "GET", control, headers=headers))[1] == before
    assert await api_status(session, emu) == 200  # the API still answers


async def test_good_settings_still_apply(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    control = f"{tiktok_emulator.url}/_emulator/config"
    changes = {"rate": 0.5, "burst": 1, "quota": 100, "quota_period": 60, "retry_after": 99_999}
    status, config = await call(session, "POST", control, json=changes)
    assert status == 200
    assert {k: config[k] for k in changes} == changes
    assert [await api_status(session, tiktok_emulator) for _ in range(2)] == [200, 429]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"http_500": 2}, "http_500"), ({"drop": -1}, "drop"), ({"latency_ms": "x"}, "latency_ms"),
     ({"teapot": 1}, "teapot"), ({"inject": "nope"}, None), ({"inject": "500", "count": -1}, None),
     ({"inject": "500", "count": 1e30}, None), ({"inject": "500", "after": "x"}, None)],
)
async def test_bad_faults_are_a_400_and_change_nothing(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession, body: dict[str, Any],
    field: str | None,
) -> None:
    status, answer = await call(session, "POST", f"{tiktok_emulator.url}/_emulator/faults",
                                json=body)
    assert (status, answer["field"]) == (400, field), answer
    assert tiktok_emulator.config.faults == Faults()
    assert await api_status(session, tiktok_emulator) == 200


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"[1]", b"{"])
async def test_a_control_body_that_is_not_an_object_is_a_400(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession, raw: bytes
) -> None:
    status, _ = await call(session, "POST", f"{tiktok_emulator.url}/_emulator/config", data=raw)
    assert status == 400


def test_config_refuses_bad_values_in_python_too() -> None:
    with pytest.raises(ConfigError) as caught:
        EmulatorConfig(burst=0)
    assert caught.value.field == "burst"
    assert isinstance(caught.value, ValueError)


# --- the control token ----------------------------------------------------------------------


async def test_keys_cannot_be_replaced_over_http_without_a_control_token(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    control = f"{tiktok_emulator.url}/_emulator/config"
    status, body = await call(session, "POST", control, json={"api_keys": ["mine"]})
    assert (status, body["field"]) == (403, "api_keys")
    assert tiktok_emulator.config.api_keys == ("test-key",)


async def test_with_a_token_every_control_request_needs_it(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(control_token="s3cret")
    stats, config = f"{emu.url}/_emulator/stats", f"{emu.url}/_emulator/config"
    assert (await call(session, "GET", stats))[0] == 401
    assert (await call(session, "GET", stats, headers={TOKEN_HEADER: "wrong"}))[0] == 401
    assert (await call(session, "POST", config, json={"api_keys": ["mine"]}))[0] == 401
    assert emu.config.api_keys == ("test-key",)
    headers = {TOKEN_HEADER: "s3cret"}
    assert (await call(session, "GET", stats, headers=headers))[0] == 200
    status, body = await call(session, "POST", config, json={"api_keys": ["mine"]},
                              headers=headers)
    assert status == 200
    assert body["control_token"] == "***"  # never shown
    assert await api_status(session, emu, key="mine") == 200


async def test_beyond_loopback_a_token_is_made_and_required(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(host="0.0.0.0")
    assert emu.control_token
    root = f"http://127.0.0.1:{emu.port}"
    assert (await call(session, "GET", f"{root}/_emulator/stats"))[0] == 401
    headers = {TOKEN_HEADER: emu.control_token}
    assert (await call(session, "GET", f"{root}/_emulator/stats", headers=headers))[0] == 200


# --- half-open connections ------------------------------------------------------------------


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    tiktok_emulator_factory: Factory,
) -> None:
    emu = await tiktok_emulator_factory(idle_timeout=0.2)
    streams = [await asyncio.open_connection("127.0.0.1", emu.port) for _ in range(20)]
    for _, writer in streams:
        writer.write(b"GET /dev/tiktok/user/some.handle HTTP/1.1\r\nHost: x\r\nx-api-")
        await writer.drain()
    for reader, writer in streams:  # the server hangs up: end of stream, nothing answered
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
    assert emu.stats().total == 0


# --- the seed's types, and named quirks -----------------------------------------------------

HANDLES = [f"user{n}.test" for n in range(40)]


async def bodies(session: aiohttp.ClientSession, emu: Emulator) -> list[dict[str, Any]]:
    """40 videos (which hold their authors): enough for every optional field to be missing."""
    found = []
    for handle in HANDLES[:8]:
        for n in range(5):
            url = f"{emu.base_url}/video/{handle}/{video_id_for(handle, n)}"
            status, body = await call(session, "GET", url, headers=emu.headers)
            if status == 200:
                found.append(body)
    return found


async def test_by_default_every_text_field_is_a_string_as_the_seed_says(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)
    videos = await bodies(session, emu)
    assert all(isinstance(v["music"]["album"], str) for v in videos)
    assert all(isinstance(v["author"]["profileBio"], str) for v in videos)
    assert any(v["music"]["album"] == "" for v in videos)
    assert all("logPb" not in v for v in videos)


async def test_quirks_switch_on_nulls_unknown_fields_and_string_counts(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession
) -> None:
    emu = await tiktok_emulator_factory(
        quirks=("nulls", "unknown_fields", "string_counts"),
        upstream_latency_ms=0, upstream_jitter_ms=0,
    )
    videos = await bodies(session, emu)
    assert any(v["music"]["album"] is None for v in videos)
    assert all(v["logPb"] and v["author"]["region"] for v in videos)
    assert all(isinstance(v["stats"]["playCount"], str) for v in videos)
    async with TikTokClient(api_key=emu.api_key, base_url=emu.base_url,
                            retry=RetryPolicy.never()) as client:
        video = await client.get_video(HANDLES[0], video_id_for(HANDLES[0]))
    assert isinstance(video.stats.play_count, int)  # the client copes with every quirk


def test_an_unknown_quirk_is_refused() -> None:
    with pytest.raises(ConfigError, match="quirks"):
        EmulatorConfig(quirks=("sloppy",))


# --- faults in every accepted form ----------------------------------------------------------


@pytest.mark.parametrize(
    "faults", [{"500": 0.5}, {"http_500": 0.5}, "500=0.5", Faults(http_500=0.5)]
)
async def test_the_factory_takes_faults_as_a_mapping_a_string_or_faults(
    tiktok_emulator_factory: Factory, session: aiohttp.ClientSession, faults: Any
) -> None:
    emu = await tiktok_emulator_factory(faults=faults)
    assert emu.config.faults == Faults(http_500=0.5)
    statuses = {await api_status(session, emu) for _ in range(30)}
    assert statuses == {200, 500}


async def test_faults_of_another_type_are_a_type_error_naming_the_forms(
    tiktok_emulator_factory: Factory,
) -> None:
    with pytest.raises(TypeError, match=r"mapping.*string"):
        await tiktok_emulator_factory(faults=0.5)
    with pytest.raises(ValueError, match="teapot"):
        await tiktok_emulator_factory(faults={"teapot": 0.5})


# --- an aborting answer after N good ones ---------------------------------------------------


async def test_an_injection_after_n_requests_over_http(
    tiktok_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    body = {"inject": "quota", "count": 10**12, "after": 2}  # a huge count costs nothing
    status, _ = await call(session, "POST", f"{tiktok_emulator.url}/_emulator/faults", json=body)
    assert status == 200
    assert [await api_status(session, tiktok_emulator) for _ in range(4)] == [200, 200, 429, 429]


def test_serve_inject_option_reads_kind_count_and_after() -> None:
    assert parse_injection("forbidden:1000000:20") == ("forbidden", 1_000_000, 20)
    assert parse_injection("silent") == ("silent", 1, 0)
    assert parse_injection("500:3") == ("500", 3, 0)
    for bad in ("teapot", "500:x", "500:1:2:3", "500:-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_injection(bad)


@pytest.mark.parametrize(("given", "timeout"), [([], 29.0), (["--integration-timeout", "5"], 5.0),
                                                (["--integration-timeout", "0"], None)])
def test_serve_integration_timeout_defaults_to_api_gateways_and_0_turns_it_off(
    given: list[str], timeout: float | None,
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(given)).integration_timeout == timeout
