"""The client inside someone's app (issue 15): proxies, TLS, per-call options, explicit
open and close, stats that account for cancelled attempts. Against the real emulator and
a real forward proxy (`tests/forward_proxy.py`), over HTTP and HTTPS."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest
from forward_proxy import ForwardProxy

from tiktok_async import (
    CertificateError,
    ClientHooks,
    ClientStateError,
    ConnectError,
    RequestTimeoutError,
    RetryPolicy,
    TikTokClient,
)
from tiktok_async.emulator import Emulator, EmulatorProcess, Faults, existing_handle

Factory = Callable[..., Awaitable[Emulator]]
HANDLE = existing_handle(0)
NEVER = RetryPolicy.never()
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the proxy variables it means (both spellings are read)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


@pytest.fixture
async def tls_emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(tls=True, upstream_latency_ms=0, upstream_jitter_ms=0)


def ca_of(emulator: Emulator) -> str:
    """The CA file a TLS emulator made at start."""
    assert emulator.ca_file is not None
    return emulator.ca_file


def dead_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- proxies -----------------------------------------------------------------------------


async def test_https_proxy_from_the_environment_tunnels_and_never_sees_the_key(
    tls_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = TikTokClient(tls_emulator.api_key, tls_emulator.base_url,
                              verify=ca_of(tls_emulator))
        assert client.proxy == proxy.url
        async with client:
            profile = await client.get_user(HANDLE)
            await client.get_user(HANDLE)  # the same tunnel, kept alive
    assert profile.user.id
    [connect] = proxy.requests
    assert (connect.method, connect.target) == ("CONNECT", f"127.0.0.1:{tls_emulator.port}")
    assert "x-api-key" not in connect.headers
    assert proxy.tunnelled  # the requests went through it, as TLS it cannot read
    assert tls_emulator.api_key.encode() not in proxy.tunnelled
    assert tls_emulator.stats().count(status=200) == 2


async def test_plain_http_proxy_is_counted_and_sees_every_header(emulator: Emulator) -> None:
    """Over plain http a forward proxy reads the request, the key included (documented)."""
    async with ForwardProxy(credentials="me:proxy-PASSWORD") as proxy:
        url = proxy.url.replace("http://", "http://me:proxy-PASSWORD@")
        async with TikTokClient(emulator.api_key, emulator.base_url, proxy=url) as client:
            assert client.proxy == proxy.url  # credentials kept out of the URL shown
            await client.get_user(HANDLE)
    [seen] = proxy.requests
    assert seen.method == "GET"
    assert seen.target == f"{emulator.base_url}/user/{HANDLE}"
    assert seen.headers["x-api-key"] == emulator.api_key
    assert seen.headers["proxy-authorization"].startswith("Basic ")
    assert emulator.stats().count(status=200) == 1


async def test_proxy_credentials_go_on_the_connect_and_a_refusal_is_a_connect_error(
    tls_emulator: Emulator,
) -> None:
    async with ForwardProxy(credentials="me:RIGHT-PASSWORD") as proxy:
        for password in ("RIGHT-PASSWORD", "WRONG-PASSWORD"):
            url = proxy.url.replace("http://", f"http://me:{password}@")
            async with TikTokClient(tls_emulator.api_key, tls_emulator.base_url, proxy=url,
                                    verify=ca_of(tls_emulator), retry=NEVER) as client:
                if password == "RIGHT-PASSWORD":
                    assert (await client.get_user(HANDLE)).user.id
                    continue
                with pytest.raises(ConnectError, match="407") as caught:
                    await client.get_user(HANDLE)
    assert "WRONG-PASSWORD" not in str(caught.value)
    assert [r.method for r in proxy.requests] == ["CONNECT", "CONNECT"]
    assert all("x-api-key" not in r.headers for r in proxy.requests)
    assert proxy.requests[0].headers["proxy-authorization"].startswith("Basic ")
    assert tls_emulator.stats().total == 1  # the refused tunnel never reached it


async def test_dead_proxy_in_the_environment_is_used_not_gone_around(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: a proxy at a dead port; the request must not go direct."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
    async with TikTokClient(emulator.api_key, emulator.base_url, retry=NEVER) as client:
        with pytest.raises(ConnectError, match="proxy"):
            await client.get_user(HANDLE)
    assert emulator.stats().total == 0


@pytest.mark.parametrize("how", ["NO_PROXY", "trust_env=False"])
async def test_no_proxy_or_trust_env_false_goes_direct(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        if how == "NO_PROXY":
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        client = TikTokClient(emulator.api_key, emulator.base_url,
                              trust_env=how != "trust_env=False")
        assert client.proxy is None
        async with client:
            await client.get_user(HANDLE)
    assert proxy.requests == []
    assert emulator.stats().count(status=200) == 1


def test_a_proxy_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="proxy") as caught:
        TikTokClient("k", "https://api.example/dev/tiktok", proxy="socks5://u:SECRET@h:1080")
    assert "SECRET" not in str(caught.value)


# --- TLS -----------------------------------------------------------------------------------


async def test_tls_works_with_the_emulators_ca_and_is_refused_without(
    tls_emulator: Emulator,
) -> None:
    assert tls_emulator.base_url.startswith("https://")
    async with TikTokClient(tls_emulator.api_key, tls_emulator.base_url,
                            verify=ca_of(tls_emulator)) as client:
        assert (await client.get_user(HANDLE)).user.id
    async with TikTokClient(tls_emulator.api_key, tls_emulator.base_url,
                            retry=NEVER) as client:
        with pytest.raises(ConnectError, match="not trusted"):
            await client.get_user(HANDLE)
    assert tls_emulator.stats().count(status=200) == 1  # the refused one never got in


async def test_an_untrusted_certificate_is_not_retried(tls_emulator: Emulator) -> None:
    """The same certificate comes back: under the default policy one attempt, at once."""
    async with TikTokClient(tls_emulator.api_key, tls_emulator.base_url) as client:
        with pytest.raises(CertificateError, match="not trusted") as caught:
            await client.get_user(HANDLE)
        assert client.stats.retries == 0
    assert caught.value.attempts == 1
    assert isinstance(caught.value, ConnectError)


@pytest.mark.parametrize("kind", ["context", "no check"])
async def test_verify_takes_a_context_or_false(tls_emulator: Emulator, kind: str) -> None:
    verify: ssl.SSLContext | bool = False
    if kind == "context":
        verify = ssl.create_default_context(cafile=tls_emulator.ca_file)
    async with TikTokClient(tls_emulator.api_key, tls_emulator.base_url,
                            verify=verify) as client:
        assert (await client.get_user(HANDLE)).user.id


def test_verify_with_a_missing_ca_file_is_refused_at_once(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ValueError, match="CA"):
        TikTokClient("k", "https://api.example/dev/tiktok",
                     verify=os.path.join(tmp_path, "nope.pem"))


async def test_tls_cannot_be_switched_while_running(tls_emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="tls"):
        tls_emulator.configure(tls=False)
    assert tls_emulator.url.startswith("https://")


async def test_serve_tls_child_writes_its_ca_for_clients() -> None:
    with EmulatorProcess("--upstream-latency-ms", "0", tls=True) as child:
        assert child.base_url.startswith("https://")
        assert child.ca_file is not None
        async with TikTokClient("test-key", child.base_url, verify=child.ca_file,
                                retry=NEVER) as client:
            assert (await client.get_user(HANDLE)).user.id


# --- with_options ----------------------------------------------------------------------------


async def test_with_options_times_out_while_the_client_keeps_its_settings(
    tiktok_emulator_factory: Factory,
) -> None:
    slow = await tiktok_emulator_factory(faults=Faults(slow_seconds=1.5))
    async with TikTokClient(slow.api_key, slow.base_url) as client:
        quick = client.with_options(timeout=1, retry=RetryPolicy.never())
        slow.inject("slow")
        with pytest.raises(RequestTimeoutError) as caught:
            await quick.get_user(HANDLE)
        assert caught.value.attempts == 1
        assert (client.timeout, client.retry_policy) == (35.0, RetryPolicy())
        assert (quick.timeout, quick.retry_policy) == (1, RetryPolicy.never())
        slow.inject("slow")
        assert (await client.get_user(HANDLE)).user.id  # 1.5 s is within its 35 s
        stats = client.stats
    assert dict(stats.errors) == {"timeout": 1}  # one client: the view's attempt counts
    assert stats.responses[200] == 1


async def test_a_view_shares_the_clients_state_and_lifecycle(emulator: Emulator) -> None:
    seen: list[str] = []
    client = TikTokClient(emulator.api_key, emulator.base_url, rate=100)
    view = client.with_options(hooks=ClientHooks(on_request=seen.append))  # before open
    async with client:
        await view.get_user(HANDLE)
        await client.get_user(HANDLE)
        view.set_rate(5)
        assert client.rate == 5
        assert view.with_options(retry=NEVER).timeout == view.timeout == client.timeout
        with pytest.raises(ClientStateError, match="view"):
            await view.aclose()
    assert seen == [f"user/{HANDLE}"]  # the view's hooks, not the client's
    assert client.stats.requests == view.stats.requests == 2
    assert view.is_closed
    with pytest.raises(ClientStateError):
        await view.get_user(HANDLE)
    with pytest.raises(ClientStateError, match="view"):
        async with view:
            pass


def test_with_options_checks_its_values() -> None:
    client = TikTokClient("k", "https://api.example/dev/tiktok")
    with pytest.raises(ValueError, match="timeout"):
        client.with_options(timeout=0)
    assert client.with_options(connect_timeout=2).connect_timeout == 2
    assert client.connect_timeout == 10


# --- lifecycle and stats ----------------------------------------------------------------------


async def test_open_and_aclose_without_async_with(emulator: Emulator) -> None:
    client = TikTokClient(emulator.api_key, emulator.base_url)
    await client.open()
    assert (await client.get_user(HANDLE)).user.id
    await client.aclose()
    assert client.is_closed
    with pytest.raises(ClientStateError):
        await client.open()


async def test_stats_account_for_attempts_cancelled_in_flight(
    tiktok_emulator_factory: Factory,
) -> None:
    """Cancel a `fetch_users` loop with requests on the wire: requests = answers + errors."""
    emu = await tiktok_emulator_factory(faults=Faults(latency_ms=200))
    enough = asyncio.Event()
    answers = 0

    def on_response(path: str, status: int, seconds: float) -> None:
        nonlocal answers
        answers += 1
        if answers == 5:
            enough.set()

    async with TikTokClient(emu.api_key, emu.base_url, rate=math.inf, concurrency=16,
                            hooks=ClientHooks(on_response=on_response)) as client:

        async def loop() -> None:
            async for _ in client.fetch_users(f"user{n}.test" for n in range(500)):
                pass

        task = asyncio.create_task(loop())
        await enough.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = client.stats
    assert stats.errors["cancelled"] > 0
    assert stats.in_flight == 0
    assert stats.requests == sum(stats.responses.values()) + sum(stats.errors.values())
