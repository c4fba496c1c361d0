"""Typical user code of the client: checked by `mypy --strict`, never run.

If a change to the public API breaks code like this, `make typecheck` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime

import aiohttp

from tiktok_async import (
    ClientHooks,
    ClientStats,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RetryPolicy,
    TikTokClient,
    TikTokError,
    UserProfile,
    Video,
)

log = logging.getLogger("my_app")


async def follower_counts(handles: Iterable[str]) -> dict[str, int]:
    """One lookup at a time, skipping users that do not exist."""
    counts: dict[str, int] = {}
    async with TikTokClient(rate=10, burst=5) as client:  # key and URL from the environment
        for handle in handles:
            try:
                profile: UserProfile = await client.get_user(handle)
            except NotFoundError:
                continue
            except InvalidInputError as exc:
                log.warning("skipping %r: %s", exc.value, exc.reason)
                continue
            counts[handle] = profile.stats.follower_count
    return counts


async def video_details(handle: str, url: str) -> tuple[str | None, datetime, int]:
    """Explicit key and base URL; a video by its URL."""
    async with TikTokClient(
        api_key="my-key",
        base_url="https://abc123.execute-api.us-east-2.amazonaws.com/dev/tiktok",
        timeout=20.0,
        retry=RetryPolicy(max_attempts=4, max_wait=5.0, total_timeout=30.0),
    ) as client:
        video: Video = await client.get_video_by_url(url)
        same: Video = await client.get_video(handle, int(video.id))
    return same.description, video.create_time, video.stats.play_count


async def gather_some(handles: list[str]) -> list[UserProfile | TikTokError]:
    """Concurrent lookups with gather; errors kept as values."""
    async with TikTokClient(concurrency=32) as client:
        results = await asyncio.gather(
            *(client.get_user(h) for h in handles), return_exceptions=True
        )
    kept: list[UserProfile | TikTokError] = []
    for result in results:
        if isinstance(result, (UserProfile, TikTokError)):
            kept.append(result)
        elif isinstance(result, BaseException):
            raise result
    return kept


async def bulk_with_metrics(handles: list[str]) -> ClientStats:
    """The bulk iterator, hooks for metrics, and the stats at the end."""
    latencies: list[float] = []

    def on_response(path: str, status: int, seconds: float) -> None:
        latencies.append(seconds)

    def on_retry(path: str, error: TikTokError, attempt: int, wait: float) -> None:
        log.info("retry %d of %s in %.1f s: %s", attempt, path, wait, error)

    hooks = ClientHooks(on_response=on_response, on_retry=on_retry)
    async with TikTokClient(rate=50, burst=10, hooks=hooks) as client:
        try:
            async for result in client.fetch_users(handles):
                if result.ok and result.value is not None:
                    print(result.handle, result.value.user.nickname, result.attempts)
                elif result.error is not None:
                    print(result.input, "failed:", result.error)
        except (ForbiddenError, QuotaExceededError) as exc:
            log.error("run stopped: %s", exc)
        return client.stats


async def first_verified(handles: Iterable[str]) -> str | None:
    """Stop a bulk run early: closing it (here through `aclosing`) cancels the rest."""
    async with TikTokClient() as client, contextlib.aclosing(
            client.fetch_users(handles)) as results:
        async for result in results:
            if result.value is not None and result.value.user.is_verified:
                return result.handle
    return None


async def with_my_session(session: aiohttp.ClientSession, handle: str) -> int | None:
    """A session of my own, lent to the client and still open afterwards."""
    async with TikTokClient(session=session, retry=RetryPolicy.testing()) as client:
        try:
            return (await client.get_user(handle)).stats.video_count
        except RateLimitedError as exc:
            if exc.retry_after is not None:
                await asyncio.sleep(exc.retry_after)
            return None


def report(stats: ClientStats) -> str:
    """Reading the stats."""
    p95 = f"{stats.latency_p95 * 1000:.0f} ms" if stats.latency_p95 is not None else "-"
    return (
        f"{stats.requests} requests, {stats.responses.get(200, 0)} ok, "
        f"{stats.retries} retries ({dict(stats.retries_by_cause)}), {stats.throttled} throttled, "
        f"p95 {p95}"
    )


async def adjust_rate(client: TikTokClient) -> None:
    """Changing the client-side rate while it runs."""
    if client.rate > 5:  # math.inf when there is no client-side limit
        client.set_rate(5)
    await client.aclose()


async def in_an_app(ca_file: str) -> tuple[int, float]:
    """One client for an app: opened at startup, a quicker view for some calls, closed."""
    client = TikTokClient(verify=ca_file, proxy="http://proxy.corp.example:3128")
    await client.open()
    try:
        quick = client.with_options(timeout=2, retry=RetryPolicy.never())
        profile = await quick.get_user("some.handle")
        client.set_rate(None)  # back to the adaptive rate
        return profile.stats.follower_count, client.rate
    finally:
        await client.aclose()
