"""The baselines: what a user would write instead of the client, each written once.

- `open_bare`: aiohttp + msgspec, the floor (no validation of the input, no limits, no
  retries); `open_json`: aiohttp + dicts from `json.loads`; `open_httpx`: httpx + the
  pydantic mirror of the schema. Each `open_*(stack, base_url, key)` returns
  `one(handle)`, one `GET /user/{handle}` decoded, over a pool of `WORKERS` connections
  closed with `stack`.
- `session(stack)`: the plain aiohttp session they use (the rate section puts aiolimiter
  in front of it).
- The pydantic mirror of the schema (`PUserProfile`, `PVideo`, ...), used by httpx +
  pydantic and by the decode section.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import msgspec
from pydantic import AliasGenerator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from benchmarks._common import KEY, WORKERS
from tiktok_async import UserProfile

#: `one(handle)`: one lookup by one side (the client or a baseline).
One = Callable[[str], Awaitable[object]]


async def session(stack: contextlib.AsyncExitStack, key: str = KEY) -> aiohttp.ClientSession:
    """A plain aiohttp session with a pool of `WORKERS` connections, closed with `stack`."""
    connector = aiohttp.TCPConnector(limit=WORKERS)
    return await stack.enter_async_context(
        aiohttp.ClientSession(connector=connector, headers={"x-api-key": key}))


async def _read(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}")
        return body


async def open_bare(stack: contextlib.AsyncExitStack, base_url: str, key: str = KEY) -> One:
    """The floor: aiohttp, `resp.read()`, a reused `msgspec.json.Decoder(UserProfile)`; no
    input validation, no limits, no retries."""
    http, decoder = await session(stack, key), msgspec.json.Decoder(UserProfile, strict=False)

    async def one(handle: str) -> UserProfile:
        return decoder.decode(await _read(http, f"{base_url}/user/{handle}"))

    return one


async def open_json(stack: contextlib.AsyncExitStack, base_url: str, key: str = KEY) -> One:
    """aiohttp with plain dicts from `json.loads`: no types, no validation."""
    http = await session(stack, key)

    async def one(handle: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(await _read(http, f"{base_url}/user/{handle}"))
        return data

    return one


async def open_httpx(stack: contextlib.AsyncExitStack, base_url: str, key: str = KEY) -> One:
    """What many would write: `httpx.AsyncClient` (same pool size) + a pydantic model."""
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    http = await stack.enter_async_context(
        httpx.AsyncClient(headers={"x-api-key": key}, limits=limits, timeout=35))

    async def one(handle: str) -> PUserProfile:
        resp = await http.get(f"{base_url}/user/{handle}")
        resp.raise_for_status()
        return PUserProfile.model_validate_json(resp.content)

    return one


# --- the pydantic mirror of the schema ---------------------------------------------------------
# Field for field what `tiktok_async._models` decodes, typed as the API sends it: timestamps
# are RFC 3339 text (`createdAt`) or epoch seconds as text (`createTime`), decoded into aware
# datetimes as the client's Structs do; `id_dup` keeps its name on the wire.


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=AliasGenerator(to_camel))


class PUser(_Model):
    id: str
    nickname: str | None = None
    id_dup: str | None = Field(default=None, alias="id_dup")
    sec_uid: str | None = None
    profile_bio: str | None = None
    profile_picture_url: str | None = None
    is_verified: bool = False
    is_private_account: bool = False
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class PUserStats(_Model):
    digg_count: int
    follower_count: int
    following_count: int
    friend_count: int
    heart_count: int
    heart: int
    video_count: int


class PUserProfile(_Model):
    user: PUser
    stats: PUserStats


class PMusic(_Model):
    id: str
    title: str | None = None
    author_name: str | None = None
    album: str | None = None
    duration: int = 0
    original: bool = False
    private: bool = False
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class PVideoStats(_Model):
    digg_count: int
    collect_count: int
    comment_count: int
    play_count: int
    repost_count: int
    share_count: int


class PVideo(_Model):
    id: str
    description: str | None = None
    create_time: AwareDatetime
    duration: int
    music: PMusic | None = None
    stats: PVideoStats
    author: PUser
    author_stats: PUserStats
