"""Hostile answers: what a proxy, a broken backend or a hostile host can send instead of the API.

Each is a fault kind (`_faults.HOSTILE_KINDS`), injected with `Emulator.inject(kind)` or
`POST /_emulator/faults {"inject": kind}`, so a client's defences are tested over HTTP:

| kind | the answer |
|---|---|
| `gzip_bomb` | 200, `Content-Encoding: gzip`, `Content-Length`: 0.5 MB that inflate to 512 MB |
| `gzip_bomb_chunked` | the same bomb, `Transfer-Encoding: chunked` (no length) |
| `gzip_bomb_eof` | the same bomb, no length, not chunked: the body ends when the connection does |
| `deep_json` | 200: the real answer plus an unknown field nested 100,000 deep |
| `deep_json_404`, `deep_json_429` | 404 / 429 whose JSON error body nests 100,000 deep |
| `broken_json` | 200: the real answer cut in half (`Content-Length` says what is sent) |
| `html_200` | 200: an HTML page (a captive portal, a proxy's error page) |
| `html_404`, `empty_404`, `json_404` | 404: HTML, an empty body, JSON without the API's message |
| `throttle_long`, `throttle_long_date` | 429, `Retry-After: 99999` or a date a year ahead |
| `silent` | the request is read, and nothing ever comes back |
| `bad_status_line` | `HTTP/1.1 2OO OK`: an answer that is not HTTP (a broken proxy or middlebox) |
| `slow_body` | the real answer's headers at once, then its body a byte every half second |

The bomb is made once per size (about 0.2 s for 512 MB: a deflate stream of one
compressed megabyte repeated, since a full flush makes the blocks identical).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import struct
import time
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
DEEP_JSON_DEPTH = 100_000
LONG_RETRY_AFTER = 99_999
LONG_RETRY_AFTER_DATE_SECONDS = 365 * 86_400
SLOW_BODY_PAUSE = 0.5
_MEGABYTE = 1 << 20
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, no mtime, max compression
_WRITE_PIECE = 64 * 1024
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>"
    b"<center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>\n"
)
HTML_200_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head>\n"
    b"<body><h1>Welcome</h1><p>Accept the terms to continue.</p></body></html>\n"
)
JSON_404 = b'{"error":"Not Found","status":404}'

Backend = Callable[[], Awaitable[web.Response]]


@functools.lru_cache(maxsize=4)
def gzip_bomb(megabytes: int) -> bytes:
    """A gzip member that inflates to `megabytes` MiB of spaces (about 1 KB per MiB)."""
    block = b" " * _MEGABYTE
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.flush()
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(block, crc)
    size = (megabytes * _MEGABYTE) & 0xFFFFFFFF
    return b"".join((_GZIP_HEADER, piece * megabytes, tail, struct.pack("<II", crc, size)))


@functools.lru_cache(maxsize=1)
def deep_json(depth: int = DEEP_JSON_DEPTH) -> bytes:
    """A JSON array nested `depth` deep: `[[[...]]]`."""
    return b"[" * depth + b"]" * depth


def long_retry_after(as_date: bool) -> str:
    """`Retry-After` asking for 99,999 s, or for a date a year from now."""
    if as_date:
        return email.utils.formatdate(time.time() + LONG_RETRY_AFTER_DATE_SECONDS, usegmt=True)
    return str(LONG_RETRY_AFTER)


async def answer(
    kind: str, request: web.BaseRequest, backend: Backend, request_id: str, bomb_mb: int
) -> web.StreamResponse:
    """The hostile answer `kind` (not the `throttle_long*` kinds: the gateway sends those)."""
    if kind.startswith("gzip_bomb"):
        return await _bomb(kind, request, gzip_bomb(bomb_mb), request_id)
    if kind == "silent":
        await asyncio.get_running_loop().create_future()  # cancelled when the client goes
    if kind == "bad_status_line":
        return _raw_until_close(request, {"Content-Type": JSON_TYPE}, b"{}", status="2OO OK")
    if kind == "slow_body":
        return await _slow_body(request, await backend())
    if kind in ("deep_json", "broken_json"):
        return _changed_answer(kind, await backend())
    return _error_page(kind, request_id)


async def _slow_body(request: web.BaseRequest, real: web.Response) -> web.StreamResponse:
    """`real`'s status and headers, then its body a byte every `SLOW_BODY_PAUSE` s."""
    body = real.body if isinstance(real.body, bytes) else b""
    response = web.StreamResponse(status=real.status, headers={
        k: v for k, v in real.headers.items() if k.lower() != "content-length"})
    response.content_length = len(body)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client gave up: fine
        for start in range(len(body)):
            await response.write(body[start : start + 1])
            await asyncio.sleep(SLOW_BODY_PAUSE)
        await response.write_eof()
    return response


def _changed_answer(kind: str, real: web.Response) -> web.Response:
    body = real.body if isinstance(real.body, bytes) else b""
    if real.status != 200 or not body.endswith(b"}"):
        return real
    if kind == "broken_json":
        changed = body[: len(body) // 2]
    else:
        changed = body[:-1] + b',"extra":{"nested":' + deep_json() + b"}}"
    headers = {k: v for k, v in real.headers.items() if k.lower() != "content-length"}
    return web.Response(body=changed, status=200, headers=headers)


def _error_page(kind: str, request_id: str) -> web.Response:
    amzn = {"x-amzn-RequestId": request_id}
    if kind == "html_200":
        return web.Response(body=HTML_200_PAGE, headers={"Content-Type": HTML_TYPE})
    if kind == "html_404":
        return web.Response(body=HTML_PAGE, status=404, headers={"Content-Type": HTML_TYPE})
    if kind == "empty_404":
        return web.Response(status=404)
    if kind == "json_404":
        return web.Response(body=JSON_404, status=404, headers={"Content-Type": JSON_TYPE})
    status, message, error_type = (
        (404, "User not found", "NotFoundException") if kind == "deep_json_404"
        else (429, "Too Many Requests", "TooManyRequestsException")
    )
    body = b'{"message":"' + message.encode() + b'","detail":' + deep_json() + b"}"
    headers = {**amzn, "Content-Type": JSON_TYPE, "x-amzn-ErrorType": error_type}
    return web.Response(body=body, status=status, headers=headers)


async def _bomb(
    kind: str, request: web.BaseRequest, bomb: bytes, request_id: str
) -> web.StreamResponse:
    headers = {"Content-Type": JSON_TYPE, "Content-Encoding": "gzip",
               "x-amzn-RequestId": request_id}
    if kind == "gzip_bomb":
        return web.Response(body=bomb, headers=headers)
    if kind == "gzip_bomb_eof":
        return _raw_until_close(request, headers, bomb)
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client stopped reading: fine
        for start in range(0, len(bomb), _WRITE_PIECE):
            await response.write(bomb[start : start + _WRITE_PIECE])
        await response.write_eof()
    return response


def _raw_until_close(
    request: web.BaseRequest, headers: dict[str, str], body: bytes, status: str = "200 OK"
) -> web.StreamResponse:
    """An answer with neither a length nor chunks (the body ends where the connection
    does), written as bytes: `status` may be what no HTTP server would send."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        lines = [f"HTTP/1.1 {status}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        transport.close()  # buffered bytes are sent first
    return web.Response()
