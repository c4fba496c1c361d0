"""`Emulator`: the emulator as an async context manager, on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._app import EmulatorCore
from ._config import EmulatorConfig
from ._shortlinks import SHORT_LINK_PREFIX
from ._stats import StatsSnapshot
from ._tls import certificate_hosts, server_tls

#: Connections waiting to be accepted. aiohttp's default, 128, is far below what a bulk
#: client opens at once (its ceiling is 4,096 in flight): the kernel drops the SYNs over
#: it, and each of those connections waits for a retransmit, 1 s, then 3, 7, 15 s (11,414
#: drops and a 10 s tail in one goodput cell at 1,000/s). A real gateway accepts them.
#: The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096

if TYPE_CHECKING:
    import ssl


class Emulator:
    """A running emulator of the TikTok API.

    ```python
    async with Emulator(EmulatorConfig(rate=20, burst=5)) as emu:
        url = f"{emu.base_url}/user/some.handle"   # header x-api-key: emu.api_key
        emu.inject("503", count=2)
        assert emu.stats().count(status=200) == ...
    ```

    With `tls=True` it serves HTTPS (`base_url` is `https://...`) with a throwaway
    certificate; trust `.ca_file` (`TikTokClient(..., verify=emu.ca_file)`).

    Keyword arguments are `EmulatorConfig` fields and override `config`. Listening beyond
    loopback (`host="0.0.0.0"`) without a `control_token`, it makes one
    (`.control_token`): the control API then answers only requests that carry it.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        base = config or EmulatorConfig()
        self._initial = replace(base, **overrides) if overrides else base
        self._core: EmulatorCore | None = None
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None
        self._ca_pem: bytes | None = None
        self._ca_file: str | None = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the database and start serving."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        config = self._initial
        if config.control_token is None and not config.loopback:
            config = self._initial = replace(config, control_token=secrets.token_urlsafe(24))
        core = EmulatorCore(config)
        await core.open()
        # aiohttp's low-level server: no router, no middleware, the core's one handler.
        # keepalive_timeout also bounds the wait for a request's headers (from connect).
        server = web.Server(core.handle, handler_cancellation=True, access_log=None,
                            keepalive_timeout=config.idle_timeout)
        runner = web.ServerRunner(server, shutdown_timeout=config.shutdown_timeout)
        self._core, self._runner = core, runner
        try:
            await runner.setup()
            tls = self._start_tls(config) if config.tls else None
            site = web.TCPSite(runner, config.host, config.port, ssl_context=tls,
                               backlog=LISTEN_BACKLOG)
            await site.start()
        except BaseException:
            await self.close()
            raise
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving and close the database."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._core is not None:
            await self._core.close()
        ca_file, self._ca_file = self._ca_file, None
        if ca_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ca_file)

    def _start_tls(self, config: EmulatorConfig) -> ssl.SSLContext:
        """A fresh CA and certificate; the CA's certificate written to a file of its own."""
        tls = server_tls(certificate_hosts(config.host))
        descriptor, self._ca_file = tempfile.mkstemp(prefix="tiktok-emulator-ca-", suffix=".pem")
        with os.fdopen(descriptor, "wb") as out:
            out.write(tls.ca_pem)
        self._ca_pem = tls.ca_pem
        return tls.context

    @property
    def ca_file(self) -> str | None:
        """With `tls=True`: a PEM file of the CA to trust (`verify=`, `--ca-file`), there
        while the emulator runs; None without TLS."""
        return self._ca_file

    @property
    def ca_pem(self) -> bytes | None:
        """With `tls=True`: the CA's certificate (PEM); None without TLS."""
        return self._ca_pem

    @property
    def core(self) -> EmulatorCore:
        """The running state (config, store, stats, faults)."""
        if self._core is None:
            raise RuntimeError("emulator not started")
        return self._core

    @property
    def config(self) -> EmulatorConfig:
        """The config in force."""
        return self._core.config if self._core is not None else self._initial

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's root, `http://127.0.0.1:PORT` (`https://` with `tls=True`)."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API's base URL, `http://127.0.0.1:PORT/dev/tiktok`."""
        return self.url + self.config.prefix

    @property
    def short_link_base(self) -> str:
        """Where TikTok's short links are served, `http://127.0.0.1:PORT/_short`: give it
        to `ShortLinkResolver(short_link_base=...)` (a test hook: no internet needed)."""
        return self.url + SHORT_LINK_PREFIX

    @property
    def api_key(self) -> str:
        """The first accepted API key."""
        return self.config.api_keys[0]

    @property
    def control_token(self) -> str | None:
        """The token `/_emulator/*` requests must carry (header `x-emulator-token`), if any."""
        return self.config.control_token

    @property
    def headers(self) -> dict[str, str]:
        """`{"x-api-key": api_key}`."""
        return {"x-api-key": self.api_key}

    def stats(self) -> StatsSnapshot:
        """What it served so far."""
        return self.core.snapshot()

    def reset(self) -> None:
        """Forget counts, pending injections, buckets and quotas (stored data stays)."""
        self.core.reset()

    async def clear_data(self) -> None:
        """Delete every stored user and video."""
        await self.core.store.clear()

    def inject(self, kind: str, count: int = 1, after: int = 0) -> None:
        """Force `count` API requests to get fault `kind` (see `FAULT_KINDS`), once `after`
        more have passed untouched: `inject("forbidden", 10**9, after=20)` answers 20
        requests, then refuses every later one."""
        self.core.faults.inject(kind, count, after)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change config fields while running (`rate`, `burst`, `quota`, `faults`...)."""
        return self.core.reconfigure(**changes)
