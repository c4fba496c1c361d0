"""Users and videos as the API serves them: encoded bodies, cache, database, upstream fetch.

The first request for a user or video "fetches it from TikTok" (sleeps the upstream
latency), stamps it with `createdAt`/`updatedAt` and saves it; later requests answer the
saved body, timestamps unchanged. A dict of encoded bodies sits in front of the database
(write-through), so a cached lookup is one dict access. Concurrent first requests for the
same key share one fetch. Bodies are saved as the wire carries them (`_data.apply_quirks`
with the emulator's quirks), so quirks apply to what is first fetched after they are set.

A request that waits longer than `integration_timeout` for its fetch (a worker's turn
included) gets `IntegrationTimeout`, which the app answers as API Gateway does (504
"Endpoint request timed out"); the fetch goes on and saves what it got, as a Lambda
behind the gateway would, so a later request finds it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _data
from ._db import Database

CACHE_SIZE = 500_000


class IntegrationTimeout(Exception):
    """A request waited longer than the integration timeout for its fetch."""


def iso_timestamp(seconds: float) -> str:
    """`seconds` since the epoch as ISO 8601 UTC with milliseconds: `2024-03-01T12:00:00.000Z`."""
    millis = int(seconds * 1000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return f"{base}.{millis % 1000:03d}Z"


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the API sends it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def user_key(handle: str) -> str:
    """The cache key of a user."""
    return "u/" + _data.handle_key(handle)


def video_key(handle: str, number: int) -> str:
    """The cache key of a video."""
    return f"v/{_data.handle_key(handle)}/{number}"


def route_key(name: str, parts: tuple[str, ...]) -> str | None:
    """The cache key a well-formed route would have (ASCII parts only), else None."""
    if not parts[0].isascii():
        return None
    if name == "user":
        return user_key(parts[0])
    number = _data.video_number(parts[1]) if _data.is_valid_video_id(parts[1]) else None
    return None if number is None else video_key(parts[0], number)


class Store:
    """Encoded bodies by key: cache, then database, then the upstream fetch."""

    def __init__(
        self,
        db: Database,
        *,
        missing_share: float,
        upstream_delay: Callable[[], float],
        clock: Callable[[], float] = time.time,
        quirks: tuple[str, ...] = (),
        upstream_workers: int | None = None,
        integration_timeout: float | None = None,
    ) -> None:
        self.db = db
        self.quirks = quirks
        self.missing_share = missing_share
        #: Seconds a request waits for its fetch before `IntegrationTimeout` (None: no end).
        self.integration_timeout = integration_timeout
        self._delay = upstream_delay
        self._clock = clock
        self.cache: dict[str, bytes] = {}
        self._pending: dict[str, asyncio.Task[bytes]] = {}
        self.upstream_fetches = 0
        self._workers: asyncio.Semaphore | None = None
        self.set_upstream_workers(upstream_workers)

    def cached(self, key: str) -> bytes | None:
        """The cached body for `key` (`u/<handle>` or `v/<handle>/<id>`), or None."""
        return self.cache.get(key)

    async def user(self, handle: str) -> bytes | None:
        """The body of user `handle`; None when the user does not exist."""
        key = _data.handle_key(handle)
        if _data.is_missing(key, self.missing_share):
            return None
        return await self._once(user_key(key), lambda: self._load_user(key))

    async def video(self, handle: str, video_id: str) -> bytes | None:
        """The body of a video; None when it does not exist."""
        key = _data.handle_key(handle)
        if _data.is_video_missing(key, video_id, self.missing_share):
            return None
        number = _data.video_number(video_id)
        if number is None:  # pragma: no cover - is_video_missing says so first
            return None
        return await self._once(video_key(key, number), lambda: self._load_video(key, str(number)))

    async def close(self) -> None:
        """Cancel fetches still in flight."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def clear(self) -> None:
        """Forget every user and video (cache and database)."""
        self.cache.clear()
        await self.db.clear()

    async def _once(self, key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        body = self.cache.get(key)
        if body is not None:
            return body
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        body = await self._waited(task)
        self._remember(key, body)
        return body

    async def _waited(self, task: asyncio.Task[bytes]) -> bytes:
        """The fetch's body, within the integration timeout; the fetch itself is never
        cancelled by a request that stops waiting (it goes on, and saves what it got)."""
        timeout = self.integration_timeout
        if timeout is None:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            raise IntegrationTimeout from None

    def _remember(self, key: str, body: bytes) -> None:
        if len(self.cache) >= CACHE_SIZE:
            del self.cache[next(iter(self.cache))]
        self.cache[key] = body

    def set_upstream_workers(self, workers: int | None) -> None:
        """First fetches made at once from now on (None: no limit); those waiting for a
        worker of the old limit are served by it."""
        self._workers = None if workers is None else asyncio.Semaphore(workers)

    async def _upstream(self) -> str:
        self.upstream_fetches += 1
        workers = self._workers
        if workers is None:
            await self._fetch_upstream()
        else:
            async with workers:  # a queue: first come, first served
                await self._fetch_upstream()
        return iso_timestamp(self._clock())

    async def _fetch_upstream(self) -> None:
        delay = self._delay()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _load_user(self, key: str) -> bytes:
        stored = await self.db.get_user(key)
        if stored is not None:
            return stored
        stamp = await self._upstream()
        return await self._save_user(key, stamp)

    async def _save_user(self, key: str, stamp: str) -> bytes:
        user = {**_data.make_user(key), "createdAt": stamp, "updatedAt": stamp}
        profile = {"user": user, "stats": _data.make_user_stats(key)}
        body = encode(_data.apply_quirks(profile, self.quirks))
        stored = await self.db.add_user(key, body, stamp)
        self._remember(user_key(key), stored)
        return stored

    async def _load_video(self, key: str, video_id: str) -> bytes:
        stored = await self.db.get_video(key, video_id)
        if stored is not None:
            return stored
        stamp = await self._upstream()
        author = self.cache.get(user_key(key)) or await self.db.get_user(key)
        if author is None:
            author = await self._save_user(key, stamp)
        profile = json.loads(author)
        video = _data.make_video(key, video_id)
        video["music"].update(createdAt=stamp, updatedAt=stamp)
        video.update(author=profile["user"], authorStats=profile["stats"])
        body = encode(_data.apply_quirks(video, self.quirks))
        return await self.db.add_video(key, video_id, body, stamp)
