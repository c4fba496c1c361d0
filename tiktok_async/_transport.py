"""HTTP on aiohttp: one `ClientSession`, timeouts, a body cap, every aiohttp error mapped to ours.

This is the only module of the client that imports aiohttp. `Transport.get(path)` sends
one GET and returns `(status, headers, body)`; it never interprets the answer (that is
`_protocol`'s job) and never retries (that is `_retry`'s).

- The session is made in `open()`, inside the running loop: a `TCPConnector` whose pool
  is the client's concurrency, keep-alive, `ClientTimeout(total=timeout,
  connect=connect_timeout)`, no cookie jar, and the headers `User-Agent` and `x-api-key`.
  A session the caller lends is used as is (our headers and timeout go with each
  request) and never closed here.
- The URL is `base_url + "/" + path` with the path already percent-encoded
  (`URL(..., encoded=True)`, so `%2E` is not collapsed); redirects are not followed (the
  API does not redirect, and a redirect must not carry the key to another host).
- The body is read inside `async with`, in pieces, at most 10 MiB *after decoding*: a
  body announced longer, or whose decoded bytes pass the cap (a gzip answer of 0.5 MB
  that inflates to 512 MB), raises `ResponseTooLargeError` (not retried) as soon as the
  cap is passed. Never `resp.read()`: it lets aiohttp inflate the whole body at once.
  Read piece by piece, aiohttp (>= 3.14) inflates at most one read buffer (256 KiB)
  ahead of the reader, so memory stays bounded whatever the ratio and the framing
  (`Content-Length`, chunked, or up to the end of the connection).
- Errors: connection failures -> `ConnectError`; a timeout -> `RequestTimeoutError`; a
  body cut short (`ClientPayloadError`, or the connection lost after the answer began)
  -> `TruncatedBodyError`; anything else aiohttp raises -> `TransportError`. The aiohttp
  exception stays only as `__cause__`.
- aiohttp itself resends a GET once, at once, when the connection drops before an answer
  (RFC 9112 9.3.1: a stale keep-alive connection). That resend is not an attempt of ours:
  the limiter, the stats and the hooks do not see it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
from yarl import URL

from ._exceptions import (
    ClientStateError,
    ConnectError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    TruncatedBodyError,
)
from ._protocol import REQUEST_ID_HEADER

__all__ = ["MAX_BODY_BYTES", "RawResponse", "Secret", "Transport"]

#: Largest answer body read (10 MiB); a user or video is a few KB.
MAX_BODY_BYTES = 10 * 1024 * 1024
_KEEPALIVE_SECONDS = 30.0


class Secret:
    """A string kept out of every repr (the API key): `reveal()` is the only way to it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: hand it only to the HTTP session."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


class RawResponse(NamedTuple):
    """One HTTP answer as received: `status`, `headers` (case-insensitive), whole `body`."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """API Gateway's `x-amzn-RequestId`, when the answer carried one."""
        return self.headers.get(REQUEST_ID_HEADER)


class Transport:
    """Sends GETs for one client through one `aiohttp.ClientSession`."""

    __slots__ = (
        "_api_key",
        "_base",
        "_owned",
        "_pool_size",
        "_request_headers",
        "_session",
        "_timeout",
        "_user_agent",
    )

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        pool_size: int,
        timeout: float,
        connect_timeout: float,
        user_agent: str,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + "/"
        self._api_key = api_key
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._user_agent = user_agent
        self._session = session
        self._owned = session is None
        # A lent session does not carry our headers: they go with every request.
        self._request_headers = None if session is None else self._headers()

    def open(self) -> None:
        """Make the session (inside the running loop), unless one was lent."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, keepalive_timeout=_KEEPALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers(),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def aclose(self) -> None:
        """Close the session if we made it; a lent one is left open. Idempotent."""
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()

    async def get(self, path: str) -> RawResponse:
        """GET `path` (already percent-encoded, relative to the base URL)."""
        session = self._session
        if session is None:
            raise ClientStateError("the transport is not open")
        if not self._owned and session.closed:
            raise ClientStateError("the aiohttp session lent to the client was closed")
        url = URL(self._base + path, encoded=True)
        answered = False
        try:
            async with session.get(
                url, headers=self._request_headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                answered = True
                body = await _read_capped(resp)
                return RawResponse(resp.status, resp.headers, body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, answered=answered) from exc

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": self._user_agent, "x-api-key": self._api_key.reveal()}

    def __repr__(self) -> str:
        return f"Transport(base_url={self._base[:-1]!r}, api_key=***)"


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The whole decoded body, refusing one over `MAX_BODY_BYTES` before or while reading it.

    `iter_any()` hands over decoded bytes as aiohttp inflates them, a read buffer at a
    time, so the count is of what the caller would hold, and a bomb stops at the cap.
    """
    length = resp.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _too_large(resp, f"announces {length} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(resp, f"passed {MAX_BODY_BYTES} bytes once decoded")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(resp: aiohttp.ClientResponse, detail: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"answer body too large: it {detail}, the cap is {MAX_BODY_BYTES} bytes (10 MiB)",
        status=resp.status,
        request_id=resp.headers.get(REQUEST_ID_HEADER),
    )


def _mapped(exc: BaseException, *, answered: bool) -> TransportError:
    """Our exception for an aiohttp/asyncio/OS error; `answered`: the status line had come."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError):  # also aiohttp's ServerTimeoutError
        return RequestTimeoutError(f"request timed out: {detail}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TruncatedBodyError(f"answer body cut short: {detail}")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        if answered:
            return TruncatedBodyError(f"connection lost while reading the answer: {detail}")
        return ConnectError(_connect_detail(exc, detail))
    return TransportError(f"HTTP error: {detail}")


def _connect_detail(exc: BaseException, detail: str) -> str:
    """`cannot connect to HOST:PORT: REASON` in our words (aiohttp's says `ssl:default`
    even for a plain http URL)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        reason = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    return f"connection failed: {detail}"
