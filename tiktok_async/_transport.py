"""HTTP on aiohttp: one `ClientSession`, timeouts, a body cap, every aiohttp error mapped to ours.

This is the only module of the client that imports aiohttp. `Transport.get(path)` sends
one GET and returns `(status, headers, body)`; it never interprets the answer (that is
`_protocol`'s job) and never retries (that is `_retry`'s).

- The session is made in `open()`, inside the running loop: a `TCPConnector` whose pool
  is the client's concurrency, keep-alive, `ClientTimeout(connect=connect_timeout)`, no
  cookie jar, and the headers `User-Agent` and `x-api-key`.
  A session the caller lends is used as is (our headers and timeout go with each
  request) and never closed here; it brings its own proxy and TLS settings.
- TLS: `verify` as httpx has it: True (the system's CAs), False (no check), a CA file or
  folder, or an `ssl.SSLContext`; given to the connector. A certificate that fails the
  check is a `ConnectError` that says so.
- Proxy: `proxy=` (an `http://` URL), else with `trust_env` the environment's
  `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` for the base URL's scheme unless `NO_PROXY`
  names its host, read once here as httpx reads them when a client is made. The session
  itself gets `trust_env=False`: aiohttp would otherwise look the environment and
  `~/.netrc` up in a thread on every request. Over https the proxy gets a `CONNECT
  host:port` (with `Proxy-Authorization` when its URL has credentials) and then carries
  TLS it cannot read: the key never reaches it. aiohttp puts a session's own headers on
  that CONNECT too, so through a proxy our headers go with each request instead. Over
  plain http a forward proxy sees the whole request, the key included.
- Credentials in a URL (the base URL's `user:password@`, the proxy's) are taken out of
  it into an `aiohttp.BasicAuth` when the transport is made, so no URL we hold, log or
  put in an error carries them.
- The URL is `base_url + "/" + path` with the path already percent-encoded
  (`URL(..., encoded=True)`, so `%2E` is not collapsed); redirects are not followed (the
  API does not redirect, and a redirect must not carry the key to another host).
- The body is read inside `async with`, in pieces, at most 10 MiB *after decoding*: a
  body announced longer, or whose decoded bytes pass the cap (a gzip answer of 0.5 MB
  that inflates to 512 MB), raises `ResponseTooLargeError` (not retried) as soon as the
  cap is passed. `resp.read()` only for a body that is not encoded and announces a
  length within the cap (the API's own answers): for an encoded one it would let aiohttp
  inflate the whole body at once. Read piece by piece, aiohttp (>= 3.14) inflates at
  most one read buffer (256 KiB) ahead of the reader, so memory stays bounded whatever
  the ratio and the framing (`Content-Length`, chunked, or up to the end of the
  connection).
- Errors: connection failures -> `ConnectError`; a timeout -> `RequestTimeoutError`; a
  body cut short (`ClientPayloadError`, or the connection lost after the answer began)
  -> `TruncatedBodyError`; anything else aiohttp raises -> `TransportError`. The aiohttp
  exception stays only as `__cause__`, without its traceback (the locals of aiohttp's
  frames hold the request's headers) and with the secret headers of the request it keeps
  (`request_info`) redacted. Each request says `raise_for_status=False`: a lent session
  made to raise for 4xx would hide the API's answers behind aiohttp's error.
- Timeouts: aiohttp gets the connect timeout only. The whole request's (`timeout`,
  answer included) is kept here: each request's task is tracked until it ends (a dict,
  two operations a request) with its deadline, and one timer, set for the earliest
  deadline, cancels those past theirs (`RequestTimeoutError`). aiohttp's total timeout
  is a timer a request, which cost 11-17 us of CPU a request on a bulk run of cached
  users (a sixth of all of it). Deadlines sit on a grid of a twentieth of the timeout
  (at most 1 s), so a request ends up to that much after its timeout (aiohttp rounds a
  timeout of 5 s or more up to a whole second too) and a server that never answers
  wakes the timer once a grid step, not once a request.
- `aclose()` ends the requests in flight with `ClientStateError`: aiohttp's close drops
  a connection's body reader without waking it (it would wait out its timeout), so the
  tracked tasks are cancelled, and the cancel is taken back (`uncancel`) before the
  error is raised.
- aiohttp itself resends a GET once, at once, when the connection drops before an answer
  (RFC 9112 9.3.1: a stale keep-alive connection). That resend is not an attempt of ours:
  the limiter, the stats and the hooks do not see it.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple, TypeAlias

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._exceptions import (
    CertificateError,
    ClientStateError,
    ConnectError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    TruncatedBodyError,
)
from ._models import Record
from ._protocol import REQUEST_ID_HEADER
from ._runstop import CutShort

__all__ = ["MAX_BODY_BYTES", "RawResponse", "Secret", "Transport", "Verify", "redacted_url"]

#: Largest answer body read (10 MiB); a user or video is a few KB.
MAX_BODY_BYTES = 10 * 1024 * 1024
_KEEPALIVE_SECONDS = 30.0
#: Request headers that carry a secret: never kept in an error's cause.
_SECRET_HEADERS = ("x-api-key", "authorization", "proxy-authorization")

#: What `verify=` takes: True, False, a CA file or folder (str or path), an SSLContext.
Verify: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"


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


class RawResponse(Record, frozen=True, gc=False):
    """One HTTP answer as received: `status`, `headers` (case-insensitive), whole `body`.
    (A Struct: made in C, a fifth of a NamedTuple's cost, once a request.)"""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """API Gateway's `x-amzn-RequestId`, when the answer carried one."""
        return self.headers.get(REQUEST_ID_HEADER)


#: Why `CutShort` ended a request: the transport closed, or the request's deadline passed.
_CLOSED, _TIMED_OUT = "closed", "timed out"
#: A deadline is set on a grid of at most this many seconds (and a twentieth of the timeout).
_MAX_GRID = 1.0


class _Timing(NamedTuple):
    """One request's timeouts: `total` seconds for the whole of it, kept by the transport
    (`Transport._track`); `wire`, what aiohttp is given (the connect timeout only);
    `whole`, the same with the total, for a request sent outside a task."""

    total: float
    grid: float
    wire: aiohttp.ClientTimeout
    whole: aiohttp.ClientTimeout

    @classmethod
    def of(cls, total: float, connect: float) -> _Timing:
        return cls(total, min(_MAX_GRID, total / 20),
                   aiohttp.ClientTimeout(total=None, connect=connect),
                   aiohttp.ClientTimeout(total=total, connect=connect))


class Transport:
    """Sends GETs for one client through one `aiohttp.ClientSession`."""

    __slots__ = (
        "_api_key",
        "_auth",
        "_base",
        "_loop",
        "_owned",
        "_pool_size",
        "_proxy",
        "_proxy_auth",
        "_proxy_headers",
        "_request_headers",
        "_requests",
        "_session",
        "_ssl",
        "_sweep",
        "_sweep_at",
        "_timing",
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
        proxy: str | None = None,
        trust_env: bool = True,
        verify: Verify = True,
    ) -> None:
        if session is not None and (proxy is not None or verify is not True):
            raise ValueError("a lent session brings its own proxy and TLS settings: give no "
                             "proxy= or verify= with session=")
        url = URL(base_url)
        self._auth = _basic_auth(url)  # None without user:password@
        self._base = str(url.with_user(None)).rstrip("/") + "/"
        self._api_key = api_key
        self._pool_size = pool_size
        self._timing = _Timing.of(timeout, connect_timeout)
        self._user_agent = user_agent
        self._ssl = _ssl_setting(verify)
        self._proxy, self._proxy_auth = (None, None) if session is not None else _proxy_for(
            url, proxy, trust_env)
        # The proxy's credentials: on the CONNECT only (https), or on each request (http,
        # where the proxy gets every request and forwards it without them).
        self._proxy_headers = None
        if self._proxy_auth is not None and url.scheme == "https":
            self._proxy_headers = {"Proxy-Authorization": self._proxy_auth.reveal()}
        self._session = session
        self._owned = session is None
        # Tasks in `get`, each until its deadline: `aclose` cuts them short (aiohttp's
        # close drops a connection's body reader without waking it), and one timer for
        # them all ends those that outlast their timeout (`_sweep_due`).
        self._requests = CutShort()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it was opened in
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        # Our headers go with every request when a session is lent (it does not carry
        # them), or through a proxy: aiohttp sends a session's own headers to the proxy
        # too, on the CONNECT, and the key must not go there.
        per_request = session is not None or self._proxy is not None
        self._request_headers = self._headers() if per_request else None

    def open(self) -> None:
        """Make the session (inside the running loop), unless one was lent."""
        self._loop = asyncio.get_running_loop()
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=None if self._request_headers is not None else self._headers(),
                timeout=self._timing.wire,
                cookie_jar=aiohttp.DummyCookieJar(),
                proxy=self._proxy,
                trust_env=False,  # the proxy was looked up once, in __init__
            )

    async def aclose(self) -> None:
        """Close the session if we made it; a lent one is left open. Idempotent. A request
        still reading its answer ends at once with `ClientStateError`."""
        session, self._session = self._session, None
        self._requests.cut(_CLOSED)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, math.inf
        if session is not None and self._owned:
            await session.close()

    async def get(self, path: str, timing: _Timing | None = None) -> RawResponse:
        """GET `path` (already percent-encoded, relative to the base URL); `timing`: this
        request's timeouts, instead of the transport's."""
        session = self._session
        if session is None:
            raise ClientStateError("the transport is not open")
        if not self._owned and session.closed:
            raise ClientStateError("the aiohttp session lent to the client was closed")
        url = URL(self._base + path, encoded=True)
        timing = timing or self._timing
        task = self._track(timing)
        answered = False
        try:
            async with session.get(
                url,
                headers=self._request_headers,
                timeout=timing.wire if task is not None else timing.whole,
                allow_redirects=False,
                proxy_headers=self._proxy_headers,
                raise_for_status=False,  # a lent session's own setting would hide the answer
            ) as resp:
                answered = True
                # Not `_read_capped` for every answer: one coroutine fewer a request.
                body = await resp.read() if _read_at_once(resp) else await _read_capped(resp)
                return RawResponse(resp.status, resp.headers, body)
        except asyncio.CancelledError:
            reason = self._requests.cut_reason(task)
            if reason is None:
                raise  # the caller's cancel
            raise _cut_error(reason, timing) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            reason = self._requests.cut_reason(task)
            if reason is not None:  # aiohttp made our cancel an error of its own
                raise _cut_error(reason, timing) from None
            if self._session is None:  # closed while this request waited for its answer
                raise _closed_meanwhile() from None
            raise _mapped(exc, answered=answered) from _without_secrets(exc)
        finally:
            self._requests.leave(task)

    def _track(self, timing: _Timing) -> asyncio.Task[object] | None:
        """The task sending a request, tracked until its deadline (None outside a task:
        aiohttp keeps its timeout, with a timer of its own).

        aiohttp's own total timeout is a timer a request (a handle on the loop's heap, a
        context, a heap the loop rebuilds as cancelled timers pile up): measured on a bulk
        run of cached users, 11-17 us of CPU a request, a sixth of all of it. Here one
        timer waits for the earliest deadline of all, set on a grid of `timing.grid`
        seconds (as aiohttp rounds a timeout of 5 s or more up to a whole second), so a
        request ends between `timing.total` and `timing.total + timing.grid` seconds."""
        # The loop given: without it Python 3.11's `current_task` asks for the running
        # loop, and that makes a system call (getpid) a request.
        task = asyncio.current_task(self._loop)
        if task is None:
            return None
        loop = task.get_loop()
        grid = timing.grid
        deadline = math.ceil((loop.time() + timing.total) / grid) * grid
        self._requests.enter(task, deadline)
        if deadline < self._sweep_at:
            self._sweep_from(loop, deadline)
        return task

    def _sweep_from(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep, self._sweep_at = loop.call_at(when, self._sweep_due, loop), when

    def _sweep_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """End the requests past their deadline; wait for the next deadline, if any."""
        self._sweep, self._sweep_at = None, math.inf
        earliest = self._requests.expire(loop.time(), _TIMED_OUT)
        if earliest != math.inf:
            self._sweep_from(loop, earliest)

    def with_timeout(self, timeout: float, connect_timeout: float) -> Transport:
        """A view of this transport (its session, made or not yet) with other timeouts."""
        return _TimedView(self, _Timing.of(timeout, connect_timeout))

    @property
    def timeout(self) -> float:
        """Seconds for one request, answer included."""
        return self._timing.total

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect."""
        return float(self._timing.wire.connect or 0.0)

    @property
    def proxy(self) -> str | None:
        """The proxy requests go through (without its credentials), if any."""
        return None if self._proxy is None else str(self._proxy)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent, "x-api-key": self._api_key.reveal()}
        if self._auth is not None:
            headers["Authorization"] = self._auth.reveal()
        if self._proxy_auth is not None and self._proxy_headers is None:
            headers["Proxy-Authorization"] = self._proxy_auth.reveal()
        return headers

    def __repr__(self) -> str:
        proxy = "" if self._proxy is None else f", proxy={str(self._proxy)!r}"
        return f"Transport(base_url={self._base[:-1]!r}, api_key=***{proxy})"


class _TimedView(Transport):
    """`Transport.with_timeout`: sends through its parent (so through the parent's session,
    whenever that is made) with its own timeouts; it has no lifecycle of its own."""

    __slots__ = ("_parent",)

    def __init__(self, parent: Transport, timing: _Timing) -> None:
        self._parent = parent
        self._timing = timing
        self._base = parent._base
        self._proxy = parent._proxy

    def open(self) -> None:
        raise ClientStateError("a transport view shares its parent's session: open that")

    async def aclose(self) -> None:
        raise ClientStateError("a transport view shares its parent's session: close that")

    async def get(self, path: str, timing: _Timing | None = None) -> RawResponse:
        return await self._parent.get(path, timing or self._timing)

    def with_timeout(self, timeout: float, connect_timeout: float) -> Transport:
        return self._parent.with_timeout(timeout, connect_timeout)


def redacted_url(url: str | URL) -> str:
    """`url` with any password shown as `***` (for reprs and messages)."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(url)


def _ssl_setting(verify: Verify) -> ssl.SSLContext | bool:
    """What the connector's `ssl=` gets for `verify` (a CA file is loaded now)."""
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    if not isinstance(verify, (str, os.PathLike)):
        raise TypeError(f"verify must be True, False, a CA file path or an ssl.SSLContext, "
                        f"not {type(verify).__name__}")
    path = os.fspath(verify)
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"verify: cannot load CA certificates from {path!r}: {exc}") from exc


def _basic_auth(url: URL) -> Secret | None:
    """The `Basic ...` header value for a URL's `user:password@`, if it has one."""
    if url.user is None:
        return None
    return Secret(aiohttp.encode_basic_auth(url.user, url.password or ""))


def _proxy_for(base: URL, proxy: str | None, trust_env: bool) -> tuple[URL | None, Secret | None]:
    """The proxy for the base URL (without credentials) and its credentials, if any."""
    text = proxy
    if text is None and trust_env and not _bypassed(base.host or ""):
        found = urllib.request.getproxies()
        text = found.get(base.scheme) or found.get("all")
    if not text:
        return None, None
    try:
        url = URL(text if "://" in text else f"http://{text}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"proxy {redacted_url(text)!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"proxy {redacted_url(url)!r} must be an http:// URL "
                         "(aiohttp speaks to HTTP proxies only)")
    return url.with_user(None), _basic_auth(url)


def _bypassed(host: str) -> bool:
    """NO_PROXY (or the system's exceptions) names this host."""
    return bool(urllib.request.proxy_bypass(host))


CONTENT_ENCODING = "Content-Encoding"


def _read_at_once(resp: aiohttp.ClientResponse) -> bool:
    """Whether `resp.read()` may read the body in one go: an answer with a `Content-Length`
    and no `Content-Encoding` (the API's own), whose decoded size is the length announced
    (aiohttp reads exactly that many bytes). A length over `MAX_BODY_BYTES` is refused."""
    length = resp.content_length
    if length is None:
        return False
    if length > MAX_BODY_BYTES:
        raise _too_large(resp, f"announces {length} bytes")
    return CONTENT_ENCODING not in resp.headers


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The whole decoded body of an answer `_read_at_once` leaves (inflated, or without a
    length), refusing it as soon as it passes `MAX_BODY_BYTES`.

    `iter_any()` hands over decoded bytes as aiohttp inflates them, a read buffer at a
    time, so the count is of what the caller would hold, and a bomb stops at the cap.
    """
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
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the CONNECT
        return ConnectError(f"the proxy refused the tunnel: {exc.status} {exc.message}")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        if answered:
            return TruncatedBodyError(f"connection lost while reading the answer: {detail}")
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return CertificateError(_connect_detail(exc, detail))
        return ConnectError(_connect_detail(exc, detail))
    return TransportError(f"HTTP error: {detail}")


def _closed_meanwhile() -> ClientStateError:
    return ClientStateError("the client was closed while this request waited for its answer")


def _cut_error(reason: str, timing: _Timing) -> TransportError | ClientStateError:
    """The error of a request `CutShort` ended: the client closed, or its deadline passed."""
    if reason == _TIMED_OUT:
        return RequestTimeoutError(f"request timed out: no whole answer in {timing.total:g} s")
    return _closed_meanwhile()


def _without_secrets(exc: BaseException) -> BaseException:
    """`exc`, fit to be our error's cause: aiohttp keeps the request's headers (the key)
    in a `ClientResponseError`'s `request_info`, and the locals of its frames hold them,
    which a traceback printed with locals (Sentry's, rich's) would show. Each exception
    of the chain loses its traceback; a `request_info` keeps all but the secret headers."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        err.__traceback__ = None
        if isinstance(err, aiohttp.ClientResponseError):
            err.request_info = _redacted(err.request_info)
        err = err.__cause__ or err.__context__
    return exc


def _redacted(info: aiohttp.RequestInfo) -> aiohttp.RequestInfo:
    headers = CIMultiDict(info.headers)
    for name in _SECRET_HEADERS:
        if name in headers:
            headers[name] = "<redacted>"
    return aiohttp.RequestInfo(info.url, info.method, CIMultiDictProxy(headers), info.real_url)


def _connect_detail(exc: BaseException, detail: str) -> str:
    """`cannot connect to HOST:PORT: REASON` in our words (aiohttp's says `ssl:default`
    even for a plain http URL); TLS and proxy failures say so."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        reason = getattr(error, "verify_message", None) or str(error)
        return (f"TLS certificate of {exc.host}:{exc.port} not trusted ({reason}): for a "
                "private CA pass its file as verify= (--ca-file)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        reason = _os_reason(error)
        if isinstance(exc, aiohttp.ClientConnectorSSLError):
            return f"TLS handshake with {exc.host}:{exc.port} failed: {error}"
        where = "the proxy " if isinstance(exc, aiohttp.ClientProxyConnectionError) else ""
        return f"cannot connect to {where}{exc.host}:{exc.port}: {reason}"
    return f"connection failed: {detail}"


def _os_reason(error: OSError) -> str:
    """Why a connection failed, in the system's words: a failed name lookup's own text
    ("Name or service not known"; its errno is not one `os.strerror` knows)."""
    if isinstance(error, socket.gaierror) and error.strerror:
        return error.strerror
    return os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
