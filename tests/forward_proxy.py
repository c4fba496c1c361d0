"""A real forward HTTP proxy on 127.0.0.1 for the tests, on asyncio streams.

It does what a corporate proxy does, no more: `CONNECT host:port` opens a tunnel (then
it only relays bytes it cannot read, TLS); a request in absolute form
(`GET http://host:port/path HTTP/1.1`) is forwarded to that host with `Connection: close`
and its answer relayed. Each request is recorded (`.requests`: method, target, headers
as the proxy saw them) and every byte that went through a tunnel towards the server is
kept (`.tunnelled`), so a test can check what the proxy could read. With `credentials`
("user:password"), a request without the matching `Proxy-Authorization` gets 407.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field

from yarl import URL


@dataclass
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)  # names lowercased


class ForwardProxy:
    """`async with ForwardProxy() as proxy:` `proxy.url` is `http://127.0.0.1:PORT`."""

    def __init__(self, credentials: str | None = None) -> None:
        self.requests: list[Seen] = []
        self.tunnelled = bytearray()
        self._expected = None if credentials is None else (
            "Basic " + base64.b64encode(credentials.encode()).decode())
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen = _parse(head)
            self.requests.append(seen)
            if self._expected and seen.headers.get("proxy-authorization") != self._expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            elif seen.method == "CONNECT":
                await self._tunnel(seen, reader, writer)
            else:
                await self._forward(seen, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tunnel(self, seen: Seen, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        host, _, port = seen.target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(_relay(reader, up_writer, self.tunnelled),
                                 _relay(up_reader, writer, None))
        finally:
            up_writer.close()

    async def _forward(self, seen: Seen, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        url = URL(seen.target, encoded=True)
        up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
        try:
            lines = [f"{seen.method} {url.raw_path_qs} HTTP/1.1"]
            lines += [f"{name}: {value}" for name, value in seen.headers.items()
                      if not name.startswith("proxy-") and name != "connection"]
            up_writer.write(("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode())
            answer = await up_reader.readuntil(b"\r\n\r\n")
            kept = [line for line in answer.split(b"\r\n")[:-2]
                    if not line.lower().startswith((b"connection:", b"keep-alive:"))]
            writer.write(b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n")
            await _relay(up_reader, writer, None)
        finally:
            up_writer.close()


def _parse(head: bytes) -> Seen:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return Seen(method, target, headers)


async def _relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                 copy: bytearray | None) -> None:
    """Bytes from `source` to `sink` until the end (kept in `copy` too, if given)."""
    try:
        while chunk := await source.read(65536):
            if copy is not None:
                copy += chunk
            sink.write(chunk)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.write_eof()
