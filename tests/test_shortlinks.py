"""Short links (issue 14 item 5): resolved through the emulator's redirects, never with the key,
only on TikTok's hosts, bounded, and on a rate limit of their own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from aioresponses import CallbackResult
from conftest import Aiohttp314Mock, Aiohttp314Response

from tiktok_async import (
    APIStatusError,
    ClientStateError,
    ConnectError,
    InvalidInputError,
    RateLimitedError,
    ShortLinkResolver,
    TikTokClient,
    parse_handle,
    parse_video,
    resolve_short_link,
)
from tiktok_async.emulator import Emulator, short_link_target

Factory = Callable[..., Awaitable[Emulator]]
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def resolver_for(emu: Emulator, **options: Any) -> ShortLinkResolver:
    return ShortLinkResolver(rate=None, short_link_base=emu.short_link_base, **options)


def full_url(code: str) -> str:
    handle, video_id = short_link_target(code)
    return f"https://www.tiktok.com/@{handle}/video/{video_id}?_r=1&_t={code}"


def short_link_requests(emu: Emulator) -> int:
    return emu.stats().count(route="short_link")


async def test_a_short_link_resolves_through_the_redirect_without_the_api_key(
    emulator: Emulator,
) -> None:
    async with TikTokClient(emulator.api_key, emulator.base_url) as client, \
            resolver_for(emulator) as resolver:
        url = await resolver.resolve("https://vm.tiktok.com/ZMabc123/")
        ref = parse_video(url)
        video = await client.get_video(ref.handle, ref.video_id)  # the API: with the key
    assert url == full_url("ZMabc123")
    assert video.id == ref.video_id
    (seen,) = emulator.core.short_link_headers
    assert "x-api-key" not in seen
    assert "user-agent" in seen
    stats = emulator.stats()
    assert stats.count(route="short_link") == 1
    assert stats.count(route="short_link", key=emulator.api_key) == 0  # recorded as no key
    assert stats.count(route="video", key=emulator.api_key) == 1


@pytest.mark.parametrize(
    ("link", "code"),
    [
        ("https://vt.tiktok.com/ZSxyz789/", "ZSxyz789"),
        ("https://www.tiktok.com/t/ZTRabc123/", "ZTRabc123"),
        ("https://m.tiktok.com/t/ZTRabc123", "ZTRabc123"),
        ("vm.tiktok.com/ZMabc123", "ZMabc123"),
        ("http://tiktok.com/t/ZTRq?lang=en", "ZTRq"),
    ],
)
async def test_every_short_link_form_resolves(emulator: Emulator, link: str, code: str) -> None:
    async with resolver_for(emulator) as resolver:
        assert await resolver.resolve(link) == full_url(code)


async def test_expand_takes_the_short_link_out_of_share_text_and_leaves_the_rest(
    emulator: Emulator,
) -> None:
    full = "https://www.tiktok.com/@a.b/video/7301234567890123456"
    async with resolver_for(emulator) as resolver:
        shared = "Check out Sam's video! #TikTok > https://vm.tiktok.com/ZMshare1/ "
        assert await resolver.expand(shared) == full_url("ZMshare1")
        for text in (full, "some.handle", "not a handle!", "https://evil.example/t/x"):
            assert await resolver.expand(text) == text
    assert short_link_requests(emulator) == 1


async def test_a_profile_short_link_gives_the_profile(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        url = await resolver.resolve("https://vm.tiktok.com/profileZM1/")
    assert parse_handle(url) == short_link_target("profileZM1")[0]


async def test_chains_and_scheme_relative_locations_are_followed(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        assert await resolver.resolve("https://vm.tiktok.com/chainZS9/") == full_url("ZS9")
        handle, video_id = short_link_target("relativeZM")
        assert await resolver.resolve("https://vm.tiktok.com/relativeZM/") == (
            f"https://www.tiktok.com/@{handle}/video/{video_id}")
    assert short_link_requests(emulator) == 3


async def test_a_lite_link_leading_to_a_link_without_a_handle_says_so(
    emulator: Emulator,
) -> None:
    video_id = short_link_target("ZTRlite")[1]
    async with resolver_for(emulator) as resolver:
        with pytest.raises(InvalidInputError) as caught:
            await resolver.resolve("https://lite.tiktok.com/t/ZTRlite/")
    assert caught.value.reason == (
        f"the short link leads to 'https://t.tiktok.com/i18n/share/video/{video_id}/?_r=1': "
        "a share link (/i18n/share/video/ID): this link carries no handle: the API needs "
        f"the author's handle; pair the video id with it as 'handle,{video_id}'"
    )
    assert short_link_requests(emulator) == 2  # the lite link, then the share link (a 200)


async def test_a_redirect_off_tiktok_is_never_followed(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        with pytest.raises(InvalidInputError) as caught:
            await resolver.resolve("https://vm.tiktok.com/offsiteZM/")
    assert caught.value.reason.startswith(
        "the short link leads to 'https://example.com/phish', which is not followed: "
        "not a TikTok URL (host 'example.com')"
    )
    assert short_link_requests(emulator) == 1


async def test_a_redirect_to_the_home_page_is_not_followed(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        with pytest.raises(InvalidInputError, match="not a TikTok profile or video URL"):
            await resolver.resolve("https://vm.tiktok.com/homeZM/")
    assert short_link_requests(emulator) == 1


async def test_redirects_are_bounded(emulator: Emulator) -> None:
    async with resolver_for(emulator, max_redirects=3) as resolver:
        with pytest.raises(InvalidInputError, match=r"more than 3 redirects \(the last to "):
            await resolver.resolve("https://vm.tiktok.com/loopZM/")
    assert short_link_requests(emulator) == 3


async def test_a_link_that_does_not_exist_says_so(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        with pytest.raises(InvalidInputError) as caught:
            await resolver.resolve("https://vm.tiktok.com/missingZM/")
    assert caught.value.reason == "no such short link: vm.tiktok.com answered 404"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example/t/ZMabc", "not a TikTok short link: only TikTok's short links"),
        ("https://vm.tiktok.com.evil.io/ZMabc/", "not a TikTok short link"),
        ("https://user@vm.tiktok.com/ZMabc/", "not a TikTok short link"),
        ("https://www.tiktok.com/@a.b/video/1", "not a short link: it is a full TikTok link"),
        ("some.handle", "not a TikTok short link"),
    ],
)
async def test_anything_but_a_tiktok_short_link_is_refused_without_a_request(
    emulator: Emulator, url: str, reason: str
) -> None:
    async with resolver_for(emulator) as resolver:
        with pytest.raises(InvalidInputError) as caught:
            await resolver.resolve(url)
    assert caught.value.reason.startswith(reason)
    assert emulator.stats().total == 0


async def test_a_link_resolved_once_is_not_asked_again(emulator: Emulator) -> None:
    async with resolver_for(emulator) as resolver:
        first = await resolver.resolve("https://vm.tiktok.com/ZMonce/")
        again = await resolver.expand("Check out https://vm.tiktok.com/ZMonce/")
    assert first == again
    assert short_link_requests(emulator) == 1


async def test_resolve_short_link_is_the_one_call_form(emulator: Emulator) -> None:
    url = await resolve_short_link(
        "https://vt.tiktok.com/ZSone/", short_link_base=emulator.short_link_base
    )
    assert url == full_url("ZSone")


async def test_no_answer_is_a_connect_error(emulator: Emulator) -> None:
    base = emulator.short_link_base
    await emulator.close()
    async with ShortLinkResolver(short_link_base=base) as resolver:
        with pytest.raises(ConnectError):
            await resolver.resolve("https://vm.tiktok.com/ZMabc/")


async def test_the_resolver_has_a_lifecycle() -> None:
    resolver = ShortLinkResolver()
    with pytest.raises(ClientStateError, match="inside 'async with'"):
        await resolver.resolve("https://vm.tiktok.com/ZMabc/")
    async with resolver:
        pass
    with pytest.raises(ClientStateError, match="cannot be reopened"):
        await resolver.__aenter__()


@pytest.mark.parametrize(
    "options", [{"rate": 0}, {"rate": -1.0}, {"max_redirects": 0}, {"timeout": 0}]
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by option
        ShortLinkResolver(**options)


# --- its own rate limit, on virtual time (aioresponses: no sockets) ----------------------

SHORT = re.compile(r"^https://vm\.tiktok\.com/.*$")


def redirect_recording(times: list[float]) -> Callable[..., CallbackResult]:
    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        times.append(asyncio.get_running_loop().time())
        location = f"https://www.tiktok.com/@a.b/video/{len(times)}"
        return CallbackResult(
            status=301, headers={"Location": location}, response_class=Aiohttp314Response
        )

    return answer


def test_requests_follow_the_resolvers_own_rate(run_virtual: Runner) -> None:
    times: list[float] = []

    async def scenario() -> list[str]:
        with Aiohttp314Mock() as mocked:
            mocked.get(SHORT, callback=redirect_recording(times), repeat=True)
            async with ShortLinkResolver(rate=2.0) as resolver:
                links = [f"https://vm.tiktok.com/ZM{n}/" for n in range(6)]
                return await asyncio.gather(*(resolver.resolve(link) for link in links))

    resolved = run_virtual(scenario())
    assert len(set(resolved)) == 6
    # burst 1 at 2/s: the first at once, then one every 0.5 s (the half token of slack
    # lets the second through at 0.25 s, as the client's own limiter does)
    assert times == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 2.25], abs=1e-3)


def test_a_429_pauses_the_resolver_for_its_retry_after(run_virtual: Runner) -> None:
    times: list[float] = []

    async def scenario() -> RateLimitedError:
        with Aiohttp314Mock() as mocked:
            mocked.get(SHORT, status=429, headers={"Retry-After": "3"})
            mocked.get(SHORT, callback=redirect_recording(times))
            async with ShortLinkResolver(rate=None) as resolver:
                with pytest.raises(RateLimitedError) as caught:
                    await resolver.resolve("https://vm.tiktok.com/ZM1/")
                await resolver.resolve("https://vm.tiktok.com/ZM2/")
                return caught.value

    error = run_virtual(scenario())
    assert error.retry_after == 3.0
    assert times == pytest.approx([3.0], abs=1e-3)


def test_another_status_is_an_api_status_error(run_virtual: Runner) -> None:
    async def scenario() -> APIStatusError:
        with Aiohttp314Mock() as mocked:
            mocked.get(SHORT, status=503)
            async with ShortLinkResolver() as resolver:
                with pytest.raises(APIStatusError) as caught:
                    await resolver.resolve("https://vm.tiktok.com/ZM1/")
                return caught.value

    error = run_virtual(scenario())
    assert (error.status, error.message) == (503, "vm.tiktok.com answered 503 to a short link")
