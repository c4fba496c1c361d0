"""The API key and a base URL's password, looked for on every surface in one place.

Surfaces: the client's and a view's repr and `base_url`, the text of every kind of error
(and of its cause), a formatted traceback, the locals of our frames in it, log lines at
DEBUG (ours and aiohttp's), what a construction error says, the command line's stdout,
stderr and every file it writes, and the spans OpenTelemetry's aiohttp instrumentation
records. The key and the password are distinctive strings, so a leak anywhere is found.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import run
from forward_proxy import ForwardProxy
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tiktok_async import RetryPolicy, TikTokClient, TikTokError
from tiktok_async.emulator import Emulator, Faults, existing_handle, missing_handle

KEY = "sk-live-KEY-5f2b9c0e7d1a"
PASSWORD = "pw-SECRET-83hd72"
SECRETS = (KEY, PASSWORD)
NEVER = RetryPolicy.never()
Factory = Callable[..., Awaitable[Emulator]]


def with_password(url: str) -> str:
    return url.replace("://", f"://reader:{PASSWORD}@", 1)


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:500]}"


def assert_error_clean(error: BaseException, *, frames: bool = True) -> None:
    """Its text, its cause's (aiohttp's, with the request it keeps), the traceback printed,
    and the locals of our frames and of every frame of the cause (aiohttp's: a traceback
    printed with locals, as Sentry prints one, shows them)."""
    assert_clean("".join(traceback.format_exception(error)), "a formatted traceback")
    for err in (error, error.__cause__):
        if err is None:
            continue
        assert_clean(f"{err}\n{err!r}", f"the text of {type(err).__name__}")
        for frame, _ in traceback.walk_tb(err.__traceback__) if frames else ():
            if err is not error or "tiktok_async" in frame.f_code.co_filename:
                for name, value in frame.f_locals.items():
                    assert_clean(repr(value), f"local {name} of {frame.f_code.co_name}")


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(api_keys=(KEY,), upstream_latency_ms=0,
                                         faults=Faults(slow_seconds=2))


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records  # there were lines to check
    for record in caplog.records:
        assert_clean(f"{record.getMessage()}\n{record.exc_text or ''}", "a log line")


def dead_base_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return with_password(f"http://127.0.0.1:{port}/dev/tiktok")


def files_in(folder: Path, but: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir() if p.name != but}


async def failure(client: TikTokClient) -> TikTokError:
    with pytest.raises(TikTokError) as caught:
        await client.get_user(existing_handle(0))
    return caught.value


async def test_every_error_and_repr_is_clean(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, aiohttp's, asyncio's
    base = with_password(emulator.base_url)
    errors: list[BaseException] = []
    async with TikTokClient(KEY, base, retry=RetryPolicy.testing(max_attempts=2)) as client:
        view = client.with_options(timeout=0.5, retry=NEVER)
        for text in (repr(client), str(client), repr(view), client.base_url):
            assert_clean(text, "a repr")
        assert (await client.get_user(existing_handle(0))).user.id  # the password went too
        emulator.inject("500", count=2)  # retried (a warning line), then failed
        errors.append(await failure(client))
        emulator.inject("forbidden")
        errors.append(await failure(client))
        emulator.inject("slow")
        errors.append(await failure(view))
        emulator.inject("truncate")
        errors.append(await failure(view))
        emulator.inject("bad_status_line")  # aiohttp's error keeps the request's headers
        errors.append(await failure(view))
        errors += [r.error async for r in client.fetch_users([missing_handle(1)]) if r.error]
    async with TikTokClient(KEY, dead_base_url(), retry=NEVER) as client:
        errors.append(await failure(client))
    assert [type(e).__name__ for e in errors] == [
        "ServerError", "ForbiddenError", "RequestTimeoutError", "TruncatedBodyError",
        "TransportError", "NotFoundError", "ConnectError"]
    for error in errors:
        assert_error_clean(error)
    assert_logs_clean(caplog)


async def test_tls_and_proxy_errors_are_clean(
    tiktok_emulator_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tls = await tiktok_emulator_factory(tls=True, api_keys=(KEY,))
    assert tls.ca_file is not None
    errors: list[BaseException] = []
    async with TikTokClient(KEY, with_password(tls.base_url), retry=NEVER) as client:
        errors.append(await failure(client))  # the CA is not trusted
    async with ForwardProxy(credentials=f"me:{PASSWORD}x") as proxy:
        proxy_url = with_password(proxy.url)
        async with TikTokClient(KEY, with_password(tls.base_url), proxy=proxy_url,
                                verify=tls.ca_file, retry=NEVER) as client:
            assert_clean(repr(client), "the repr of a client with a proxy")
            errors.append(await failure(client))  # 407: the proxy wants another password
    assert [type(e).__name__ for e in errors] == ["CertificateError", "ConnectError"]
    for error in errors:
        assert_error_clean(error)
    assert_logs_clean(caplog)


@pytest.mark.parametrize("bad", ["http://reader:{p}@host/x?q=1", "ftp://reader:{p}@host/x",
                                 "http://reader:{p}@[::1"])
def test_a_refused_base_url_is_shown_without_its_password(bad: str) -> None:
    """(The constructor's frame holds the URL it was given, as the caller's does.)"""
    with pytest.raises(ValueError, match="base URL") as caught:
        TikTokClient(KEY, bad.format(p=PASSWORD))
    assert_error_clean(caught.value, frames=False)


async def test_the_command_line_shows_and_writes_neither(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The key from --api-key-file (the environment's is wrong), a password in
    --base-url; ok rows, not-found rows and failed rows written."""
    (tmp_path / "key.txt").write_text(KEY + "\n")
    (tmp_path / "in.txt").write_text(f"{existing_handle(1)}\n{missing_handle(2)}\nfails.here\n")
    emulator.inject("500", count=1, after=2)
    code, out, err = await run(
        emulator, "users", "in.txt", "-o", "out.jsonl", "--api-key-file", "key.txt",
        "--max-retries", "0", "-q", key="wrong-key-in-the-environment",
        base_url=with_password(emulator.base_url), cwd=tmp_path)
    assert code == 1, err  # one input failed
    written = files_in(tmp_path, but="key.txt")
    assert {"out.jsonl", "out.errors.jsonl"} <= written.keys()
    assert written["out.jsonl"].count("\n") == 1
    assert written["out.errors.jsonl"].count("\n") == 2  # not found, failed (a 500)
    for name, text in {**written, "stdout": out, "stderr": err}.items():
        assert_clean(text, name)


async def test_tracing_spans_carry_neither(emulator: Emulator) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    try:
        async with TikTokClient(KEY, with_password(emulator.base_url)) as client:
            await client.get_user(existing_handle(0))
    finally:
        AioHttpClientInstrumentor().uninstrument()
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["http.status_code"] == 200
    assert_clean(span.to_json(), "a span")
