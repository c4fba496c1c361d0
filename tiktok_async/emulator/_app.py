"""The emulator's request handling: one handler does the gateway's work, then the backend's.

A single catch-all handler (no aiohttp middleware) keeps the hot path short: match the
raw path, check the key, the usage plan and the faults, then answer a cached, already
encoded body. Order, as API Gateway: route (403 Missing Authentication Token), key (403
Forbidden), forced fault, throttle and quota (429), random fault and latency, then the
backend: handle rule (400), existence (404), data (200). Hostile answers (`_hostile`)
take the place of the backend's, as a 500 does.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from aiohttp import web

from . import _data, _hostile
from ._config import EmulatorConfig
from ._control import handle_control
from ._db import Database
from ._faults import HOSTILE_KINDS, FaultPlan
from ._gateway import ERRORS, GatewayError, RequestIds, Route, UsagePlan, bad_request, match_route
from ._profiles import PROFILES
from ._shortlinks import SHORT_LINK_PREFIX, short_link_answer
from ._stats import Stats, StatsSnapshot
from ._store import IntegrationTimeout, Store, encode, route_key

CONTROL_PREFIX = "/_emulator/"
SHORT_LINK_PATH = SHORT_LINK_PREFIX + "/"
JSON_TYPE = "application/json"
BAD_HANDLE = bad_request(
    "Invalid userHandle: 2-30 characters of letters, digits, '_' and '.' expected"
)
BAD_VIDEO_ID = bad_request("Invalid videoId: digits expected")
_GATEWAY_FAULTS = frozenset({"throttle", "quota", "forbidden"})
_LONG_THROTTLES = frozenset({"throttle_long", "throttle_long_date"})
_FIXED = frozenset({"host", "port", "db_path", "quirks", "idle_timeout", "control_token",
                    "tls"})
ROUTE_CACHE_SIZE = 100_000
_NO_ROUTE: tuple[Route | None, str | None] = (None, None)


class EmulatorCore:
    """The state of one emulator (config, usage plan, faults, store, stats) and its handler."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.db = Database(config.db_path)
        self._jitter = random.Random(config.seed + 1)
        self.store = Store(self.db, missing_share=config.missing_share,
                           upstream_delay=self._upstream_delay, quirks=config.quirks,
                           upstream_workers=config.upstream_workers,
                           integration_timeout=config.integration_timeout)
        self.stats = Stats()
        self.ids = RequestIds()
        self.faults = FaultPlan(config.faults, config.seed)
        self.plan = self._make_plan(config)
        self._keys = frozenset(config.api_keys)
        self._prefix = config.prefix
        self._bodies: dict[GatewayError, bytes] = {}
        self._routes: dict[str, tuple[Route | None, str | None]] = {}
        #: The header names (lowercase) of the last short-link requests, newest last.
        self.short_link_headers: deque[tuple[str, ...]] = deque(maxlen=1000)

    async def open(self) -> None:
        """Open the database."""
        await self.db.open()

    async def close(self) -> None:
        """Cancel fetches in flight, close the database."""
        await self.store.close()
        await self.db.close()

    @staticmethod
    def _make_plan(config: EmulatorConfig) -> UsagePlan:
        return UsagePlan(config.rate, config.burst, config.quota, config.quota_period)

    def _upstream_delay(self) -> float:
        c = self.config
        if c.latency_profile is not None:
            return PROFILES[c.latency_profile].draw(self._jitter)
        jitter = self._jitter.uniform(0, c.upstream_jitter_ms) if c.upstream_jitter_ms else 0.0
        return (c.upstream_latency_ms + jitter) / 1000

    def reconfigure(self, **changes: Any) -> EmulatorConfig:
        """Apply config changes at run time; return the new config.

        Not `host`, `port`, `db_path`, `quirks`, `idle_timeout`, `control_token`. A value
        the config refuses (`ConfigError`, a ValueError naming the field) changes nothing.
        """
        fixed = _FIXED & changes.keys()
        if fixed:
            raise ValueError(f"cannot change {', '.join(sorted(fixed))} while running")
        old, new = self.config, replace(self.config, **changes)
        self.config = new
        if (new.rate, new.burst, new.quota, new.quota_period) != (
            old.rate, old.burst, old.quota, old.quota_period
        ):
            self.plan = self._make_plan(new)
        if new.faults != old.faults:
            self.faults.configure(new.faults, new.seed)
        self._keys = frozenset(new.api_keys)
        self._prefix = new.prefix
        self._routes.clear()
        self.store.missing_share = new.missing_share
        if new.upstream_workers != old.upstream_workers:
            self.store.set_upstream_workers(new.upstream_workers)
        self.store.integration_timeout = new.integration_timeout
        return new

    def reset(self) -> None:
        """Forget counts, pending injections, and the usage plan's buckets and quotas."""
        self.stats.reset()
        self.faults.clear()
        self.short_link_headers.clear()
        self.plan = self._make_plan(self.config)

    def snapshot(self) -> StatsSnapshot:
        """A frozen copy of the counts."""
        return self.stats.snapshot(self.faults.applied)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The one handler of every request."""
        path = request.raw_path
        if path.startswith(CONTROL_PREFIX):
            return await handle_control(self, request)
        if path.startswith(SHORT_LINK_PATH):
            return self.short_link(request)
        arrival = time.time()
        key = request.headers.get("x-api-key")
        route, cache_key = self._route(path) if request.method == "GET" else _NO_ROUTE
        if route is not None and cache_key is not None and key in self._keys \
                and not self._guarded():
            body = self.store.cache.get(cache_key)
            if body is not None:  # the fast path: a cached answer, nothing to check
                self.stats.record(key, route[0], 200, arrival)
                return web.Response(body=body, headers={
                    "Content-Type": JSON_TYPE, "x-amzn-RequestId": self.ids.next()})
        status = 0
        try:
            response = await self._answer(request, route, key)
            transport = request.transport
            if transport is not None and not transport.is_closing():
                status = response.status
            return response
        finally:
            self.stats.record(key, route[0] if route else "unknown", status, arrival)

    def short_link(self, request: web.BaseRequest) -> web.Response:
        """TikTok's web host answering a short link (`_shortlinks`): a redirect, no key.

        `GET /_short/{host}{path}` is answered as `GET https://{host}{path}` would be."""
        arrival = time.time()
        self.short_link_headers.append(tuple(name.lower() for name in request.headers))
        host, _, path = request.path.removeprefix(SHORT_LINK_PREFIX + "/").partition("/")
        status, location = short_link_answer(host.lower(), "/" + path)
        self.stats.record(request.headers.get("x-api-key"), "short_link", status, arrival)
        headers = {"Location": location} if location is not None else {}
        body = "<html><body>TikTok</body></html>" if status == 200 else ""
        return web.Response(status=status, headers=headers, text=body, content_type="text/html")

    def _guarded(self) -> bool:
        """Whether a usage plan or a fault may change the answer."""
        return self.plan.active or self.faults.armed

    def _route(self, path: str) -> tuple[Route | None, str | None]:
        entry = self._routes.get(path)
        if entry is None:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            route = match_route(path, self._prefix)
            cache_key = route_key(*route) if route is not None else None
            entry = self._routes[path] = (route, cache_key)
        return entry

    async def _answer(
        self, request: web.BaseRequest, route: Route | None, key: str | None
    ) -> web.StreamResponse:
        if route is None:
            return self.error(ERRORS["route"])
        if key is None or key not in self._keys:
            return self.error(ERRORS["forbidden"])
        fault = self.faults.pick() if self.faults.armed else None
        if fault is not None and fault in _GATEWAY_FAULTS:
            return self.error(ERRORS[fault])
        if fault is not None and fault in _LONG_THROTTLES:
            retry_after = _hostile.long_retry_after(fault == "throttle_long_date")
            return self.error(ERRORS["throttle"], retry_after=retry_after)
        if self.plan.active:
            limited = self.plan.check(key)
            if limited is not None:
                return self.error(ERRORS[limited])
        if self.faults.armed or fault is not None:
            return await self._faulty(request, route, fault)
        return await self._backend(route)

    async def _faulty(
        self, request: web.BaseRequest, route: Route, fault: str | None
    ) -> web.StreamResponse:
        delay = self.faults.delay() + self.faults.frozen_for()
        if fault == "slow":
            delay += self.faults.faults.slow_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "drop":
            _close(request)
            return web.Response()
        if fault == "truncate":
            return await _truncate(request, await self._backend(route))
        if fault in HOSTILE_KINDS:
            return await _hostile.answer(
                fault, request, lambda: self._backend(route), self.ids.next(),
                self.faults.faults.bomb_mb,
            )
        if fault is not None and fault != "slow":
            return self.error(ERRORS[fault])
        return await self._backend(route)

    async def _backend(self, route: Route) -> web.Response:
        lookup = self._lookup(route)
        if isinstance(lookup, GatewayError):
            return self.error(lookup)
        fetched, missing = lookup
        try:
            body = await fetched
        except IntegrationTimeout:
            return self.error(ERRORS["504"])  # API Gateway's integration timeout
        return self.ok(body) if body is not None else self.error(missing)

    def _lookup(self, route: Route) -> tuple[Awaitable[bytes | None], GatewayError] | GatewayError:
        """The store's lookup for `route` and the answer when it finds nothing; or the 400
        for a handle or video id the API refuses."""
        name, parts = route
        if not _data.is_valid_handle(parts[0]):
            return BAD_HANDLE
        if name == "user":
            return self.store.user(parts[0]), ERRORS["user_missing"]
        if not _data.is_valid_video_id(parts[1]):
            return BAD_VIDEO_ID
        return self.store.video(parts[0], parts[1]), ERRORS["video_missing"]

    def ok(self, body: bytes) -> web.Response:
        """A 200 with a JSON body."""
        headers = {"Content-Type": JSON_TYPE, "x-amzn-RequestId": self.ids.next()}
        return web.Response(body=body, headers=headers)

    def error(self, err: GatewayError, retry_after: str | None = None) -> web.Response:
        """API Gateway's answer for `err`: `{"message": ...}` and `x-amzn-ErrorType`.

        A 429 `Too Many Requests` carries `Retry-After`: `retry_after`, else the config's.
        """
        body = self._bodies.get(err)
        if body is None:
            body = self._bodies[err] = encode({"message": err.message})
        headers = {
            "Content-Type": JSON_TYPE,
            "x-amzn-RequestId": self.ids.next(),
            "x-amzn-ErrorType": err.error_type,
        }
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        elif err.error_type == "TooManyRequestsException" and self.config.retry_after is not None:
            headers["Retry-After"] = self._retry_after(self.config.retry_after)
        return web.Response(body=body, status=err.status, headers=headers)

    def _retry_after(self, seconds: int) -> str:
        if self.config.retry_after_date:
            return email.utils.formatdate(time.time() + seconds, usegmt=True)
        return str(seconds)


def _close(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def _truncate(request: web.BaseRequest, full: web.Response) -> web.StreamResponse:
    """Announce the whole body, send half of it, close the connection."""
    body = full.body if isinstance(full.body, bytes) else b""
    response = web.StreamResponse(status=full.status)
    response.headers.update(full.headers)
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    _close(request)
    return response


CORE_KEY = web.AppKey("tiktok_emulator_core", EmulatorCore)


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """An aiohttp application serving the emulator; its state is `app[CORE_KEY]`.

    The database opens on the app's startup and closes on its cleanup. Served beyond
    loopback, give `config` a `control_token`, and the runner
    `keepalive_timeout=config.idle_timeout` (`Emulator` does both).
    """
    core = EmulatorCore(config or EmulatorConfig())
    app = web.Application()
    app[CORE_KEY] = core
    app.router.add_route("*", "/{tail:.*}", core.handle)
    app.on_startup.append(_open_db)
    app.on_cleanup.append(_close_db)
    return app


async def _open_db(app: web.Application) -> None:
    await app[CORE_KEY].open()


async def _close_db(app: web.Application) -> None:
    await app[CORE_KEY].close()
