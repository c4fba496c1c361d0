"""The aiohttp transport: exact answers shaped with aioresponses, broken ones from a raw socket
or the emulator's hostile fault modes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses as MockHTTP
from yarl import URL

from tiktok_async._exceptions import (
    ClientStateError,
    ConnectError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    TruncatedBodyError,
)
from tiktok_async._transport import MAX_BODY_BYTES, Secret, Transport, _os_reason
from tiktok_async.emulator import Emulator

BASE = "https://api.example.test/dev/tiktok"
KEY = "sk-test-key-0123456789"


def make_transport(
    base: str = BASE, *, timeout: float = 5.0, session: aiohttp.ClientSession | None = None
) -> Transport:
    return Transport(
        base,
        Secret(KEY),
        pool_size=8,
        timeout=timeout,
        connect_timeout=1.0,
        user_agent="tiktok-async/test",
        session=session,
    )


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = make_transport()
    t.open()
    yield t
    await t.aclose()


async def test_answer_comes_back_whole_with_headers_and_request_id(
    transport: Transport, mock_http: MockHTTP
) -> None:
    mock_http.get(
        f"{BASE}/user/someone",
        status=404,
        body=b'{"message":"User not found"}',
        headers={"x-amzn-RequestId": "req-1"},
    )
    answer = await transport.get("user/someone")
    assert (answer.status, answer.body, answer.request_id) == (
        404,
        b'{"message":"User not found"}',
        "req-1",
    )
    assert answer.headers["X-AMZN-REQUESTID"] == "req-1"  # case-insensitive


async def test_key_and_user_agent_go_with_the_request(
    transport: Transport, mock_http: MockHTTP
) -> None:
    mock_http.get(f"{BASE}/user/someone", body=b"{}")
    await transport.get("user/someone")
    [call] = next(iter(mock_http.requests.values()))
    headers = call.kwargs["headers"]
    assert headers["x-api-key"] == KEY
    assert headers["User-Agent"] == "tiktok-async/test"
    assert call.kwargs["allow_redirects"] is False


async def test_body_announced_over_the_cap_is_refused_unread(
    transport: Transport, mock_http: MockHTTP
) -> None:
    mock_http.get(
        f"{BASE}/user/big", body=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1)}
    )
    with pytest.raises(ResponseTooLargeError, match="too large") as caught:
        await transport.get("user/big")
    assert not isinstance(caught.value, TransportError)  # not retryable


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), ConnectError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), ConnectError),
        (ConnectionRefusedError(111, "Connection refused"), ConnectError),
        (asyncio.TimeoutError(), RequestTimeoutError),
        (aiohttp.ServerTimeoutError("read timeout"), RequestTimeoutError),
        (aiohttp.ClientPayloadError("Response payload is not completed"), TruncatedBodyError),
        (aiohttp.ClientError("something else"), TransportError),
    ],
    ids=lambda value: type(value).__name__,
)
async def test_aiohttp_errors_become_ours(
    transport: Transport,
    mock_http: MockHTTP,
    raised: Exception,
    expected: type[TransportError],
) -> None:
    mock_http.get(f"{BASE}/user/someone", exception=raised)
    with pytest.raises(expected) as caught:
        await transport.get("user/someone")
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


async def test_get_before_open_is_a_state_error() -> None:
    with pytest.raises(ClientStateError):
        await make_transport().get("user/someone")


async def test_repr_hides_the_key() -> None:
    t = make_transport()
    assert KEY not in repr(t)
    assert repr(Secret(KEY)) == str(Secret(KEY)) == "***"


# --- against a raw socket: answers aiohttp must fail to read ----------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a TCP server running `handler` per connection; returns its base URL."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> str:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await reader.readuntil(b"\r\n\r\n")
                await handler(reader, writer)
            finally:
                writer.close()
                tasks.discard(task)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/dev/tiktok"

    yield start
    for task in list(tasks):
        task.cancel()
    for server in servers:
        server.close()
        await server.wait_closed()


async def fetch_from(base: str, path: str = "user/someone", timeout: float = 5.0) -> None:
    t = make_transport(base, timeout=timeout)
    t.open()
    try:
        await t.get(path)
    finally:
        await t.aclose()


async def test_body_shorter_than_announced_is_truncated(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"user":')
        await writer.drain()

    with pytest.raises(TruncatedBodyError):
        await fetch_from(await raw_server(half_answer))


def chunked(body: bytes, piece: int = 1 << 20) -> bytes:
    frames = [
        b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece])
        for i in range(0, len(body), piece)
    ]
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(frames) + b"0\r\n\r\n"
    )


async def test_chunked_body_over_the_cap_is_refused(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(chunked(b"x" * (MAX_BODY_BYTES + 1)))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    with pytest.raises(ResponseTooLargeError, match="too large") as caught:
        await fetch_from(await raw_server(huge))
    assert not isinstance(caught.value, TransportError)  # not retryable


async def test_chunked_body_at_the_cap_is_read(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def full(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(chunked(b"x" * MAX_BODY_BYTES))
        await writer.drain()

    t = make_transport(await raw_server(full))
    t.open()
    try:
        assert len((await t.get("user/big")).body) == MAX_BODY_BYTES
    finally:
        await t.aclose()


async def test_connection_closed_before_an_answer_is_a_connect_error(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    with pytest.raises(ConnectError):
        await fetch_from(await raw_server(hang_up))


async def test_no_answer_in_time_is_a_timeout(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    with pytest.raises(RequestTimeoutError):
        await fetch_from(await raw_server(stall), timeout=0.2)


async def test_refused_connection_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectError):
        await fetch_from(f"http://127.0.0.1:{port}/dev/tiktok")


async def test_encoded_path_is_sent_as_is(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        await record(reader, writer)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await capture(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await fetch_from(f"http://127.0.0.1:{port}/dev/tiktok/", "user/%2E%2E")
    finally:
        server.close()
        await server.wait_closed()
    request_line = seen[0].split(b"\r\n")[0]
    assert request_line == b"GET /dev/tiktok/user/%2E%2E HTTP/1.1"
    assert URL("http://x/user/%2E%2E", encoded=True).raw_path == "/user/%2E%2E"


async def test_lent_session_gets_our_headers_and_is_not_closed(
    mock_http: MockHTTP,
) -> None:
    mock_http.get(f"{BASE}/user/someone", body=b"{}")
    async with aiohttp.ClientSession() as session:
        t = make_transport(session=session)
        t.open()
        await t.get("user/someone")
        await t.aclose()
        assert not session.closed
    [call] = next(iter(mock_http.requests.values()))
    assert call.kwargs["headers"]["x-api-key"] == KEY


async def test_lent_session_closed_by_its_owner_is_a_state_error() -> None:
    session = aiohttp.ClientSession()
    t = make_transport(session=session)
    t.open()
    await session.close()
    with pytest.raises(ClientStateError, match="lent"):
        await t.get("user/someone")


# --- compressed answers: the cap counts decoded bytes -----------------------------------


@pytest.mark.parametrize("kind", ["gzip_bomb", "gzip_bomb_chunked", "gzip_bomb_eof"])
async def test_gzip_bomb_stops_at_the_cap_on_every_framing(
    tiktok_emulator: Emulator, kind: str
) -> None:
    """0.5 MB on the wire, 512 MB inflated: with a length, chunked, or up to the close."""
    tiktok_emulator.inject(kind)
    t = Transport(tiktok_emulator.base_url, Secret(tiktok_emulator.api_key), pool_size=2,
                  timeout=30.0, connect_timeout=5.0, user_agent="tiktok-async/test")
    t.open()
    try:
        with pytest.raises(ResponseTooLargeError, match="once decoded") as caught:
            await t.get("user/some.handle")
        assert caught.value.status == 200
        assert not isinstance(caught.value, TransportError)  # not retryable
        assert (await t.get("user/some.handle")).status == 200  # the client goes on
    finally:
        await t.aclose()


async def test_deflate_body_over_the_cap_once_inflated_is_refused(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    squeezed = zlib.compress(b" " * (MAX_BODY_BYTES + 1), 9)  # about 10 KB on the wire

    async def bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n"
        writer.write(head % len(squeezed) + squeezed)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    with pytest.raises(ResponseTooLargeError):
        await fetch_from(await raw_server(bomb))


async def test_gzip_body_under_the_cap_is_read_decoded(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    document = b'{"pad":"' + b"x" * (MAX_BODY_BYTES - 20) + b'"}'
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
    squeezed = squeezer.compress(document) + squeezer.flush()

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        writer.write(head % len(squeezed) + squeezed)
        await writer.drain()

    t = make_transport(await raw_server(gzipped))
    t.open()
    try:
        assert (await t.get("user/big")).body == document
    finally:
        await t.aclose()


@pytest.mark.parametrize(("error", "reason"), [
    # a failed lookup: its errno (-2) is not one os.strerror knows ("Unknown error -2")
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
     "Name or service not known"),
    # asyncio's own text names the address; the errno's says why
    (OSError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)"), "Connection refused"),
    (OSError("no errno"), "no errno"),
])
def test_a_connection_failure_says_why_in_the_system_s_words(error: OSError, reason: str) -> None:
    assert _os_reason(error) == reason


# --- timeouts: one timer for every request in flight, not one each -------------------------


async def _stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def _started(t: Transport, path: str = "user/someone") -> asyncio.Task[object]:
    """A task sending `path` through `t`, already waiting for its answer."""
    task: asyncio.Task[object] = asyncio.create_task(t.get(path))
    for _ in range(20):  # its connection made and its request sent
        await asyncio.sleep(0.01)
    assert not task.done()
    return task


async def test_a_request_ends_at_its_timeout_give_or_take_a_twentieth(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    t = make_transport(await raw_server(_stall), timeout=0.5)
    t.open()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(RequestTimeoutError, match=r"no whole answer in 0\.5 s"):
            await t.get("user/someone")
        waited = loop.time() - started
    finally:
        await t.aclose()
    assert 0.5 <= waited < 0.5 + 0.5 / 20 + 0.5  # the grid, and a busy machine's slack


async def test_a_body_that_trickles_past_the_timeout_is_a_timeout(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """The timeout is for the whole answer: headers in time and a body a byte a tenth of a
    second are not let run for ever."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)

    with pytest.raises(RequestTimeoutError):
        await fetch_from(await raw_server(trickle), timeout=0.5)


async def test_each_request_ends_at_its_own_timeout(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A view with a short timeout, sent after a request of the transport's long one: the
    one timer, set for the long deadline, is brought forward to the short one."""
    t = make_transport(await raw_server(_stall), timeout=30.0)
    t.open()
    try:
        slow = await _started(t)
        with pytest.raises(RequestTimeoutError, match=r"in 0\.3 s"):
            await asyncio.wait_for(t.with_timeout(0.3, 1.0).get("user/other"), 5.0)
        assert not slow.done()  # its own deadline is 30 s away
    finally:
        await t.aclose()
    with pytest.raises(ClientStateError):
        await slow


async def test_the_callers_cancel_stays_a_cancel(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    t = make_transport(await raw_server(_stall), timeout=0.3)
    t.open()
    try:
        task = await _started(t)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        await asyncio.sleep(0.5)  # past its deadline: nothing left to time out
    finally:
        await t.aclose()


async def test_requests_do_not_each_set_a_timer(tiktok_emulator: Emulator) -> None:
    """aiohttp's total timeout sets a timer a request (11-17 us of a cached bulk run's CPU
    each, a sixth of it): 200 requests here set a handful."""
    loop = asyncio.get_running_loop()
    t = Transport(tiktok_emulator.base_url, Secret(tiktok_emulator.api_key), pool_size=8,
                  timeout=30.0, connect_timeout=5.0, user_agent="tiktok-async/test")
    t.open()
    timers = 0
    call_at = loop.call_at

    def counting_call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal timers
        timers += 1
        return call_at(*args, **kwargs)

    try:
        await t.get("user/warm.up")  # the connection's own timers
        setattr(loop, "call_at", counting_call_at)  # noqa: B010 (counted, not replaced)
        try:
            for _ in range(25):
                answers = await asyncio.gather(*(t.get("user/warm.up") for _ in range(8)))
                assert {a.status for a in answers} == {200}
        finally:
            delattr(loop, "call_at")
    finally:
        await t.aclose()
    assert timers < 20, timers
