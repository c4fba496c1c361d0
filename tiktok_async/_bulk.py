"""Bulk enrichment: one `Result` per input, from a bounded pool of workers.

`fetch_users` and `fetch_videos` parse each input, fetch it through the client (its
limiter, concurrency cap and retry policy), and yield a `Result` per input. The input is
pulled lazily; at most `concurrency` requests are in flight and a bounded number of
results wait for the consumer, so memory does not grow with the input.

One bad input never stops the batch: an invalid input, a missing user or a request
that failed after its retries is a `Result` with `error` set. Only answers that make
every later request fail too stop the batch: `ForbiddenError` (bad key) and
`QuotaExceededError` (quota used up). No new input is taken, the requests in flight
settle and their results are yielded, then the error is raised from the iterator.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from ._exceptions import ForbiddenError, InvalidInputError, QuotaExceededError, TikTokError
from ._inputs import VideoRef, handle_key, make_video_ref, parse_handle, parse_video
from ._pool import bounded_map

if TYPE_CHECKING:
    from ._client import TikTokClient
    from ._models import UserProfile, Video

T = TypeVar("T")
InputT = TypeVar("InputT")

#: What `fetch_videos` accepts per item: a video URL, a "handle,videoId" line, or a pair.
VideoInput = str | tuple[str, str] | VideoRef

#: Errors after which every later request would fail too: they stop a bulk run.
ABORTING_ERRORS: tuple[type[TikTokError], ...] = (ForbiddenError, QuotaExceededError)


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """The outcome for one input of a bulk run.

    `input` is the item as given; `key` the normalised form used for dedupe and resume
    (`None` when the input was invalid); `handle` the (author's) handle; exactly one of
    `value` and `error` is set. `attempts` counts HTTP attempts (0 for an invalid input
    or a duplicate served from another input's answer); `elapsed` is seconds spent.
    """

    input: object
    key: str | None
    handle: str | None
    value: T | None = None
    error: TikTokError | None = None
    attempts: int = 0
    elapsed: float = 0.0
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """True when the input was answered with a value."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Parsed(Generic[InputT]):
    """An input with what parsing made of it: a target to fetch, or the reason it is invalid."""

    raw: object
    key: str | None
    handle: str | None
    target: InputT | None
    invalid: InvalidInputError | None


def _parse_user(raw: object) -> _Parsed[str]:
    try:
        handle = parse_handle(_as_text(raw))
    except InvalidInputError as exc:
        return _Parsed(raw, None, None, None, exc)
    return _Parsed(raw, handle_key(handle), handle, handle, None)


def _parse_video(raw: object) -> _Parsed[VideoRef]:
    try:
        ref = _video_ref(raw)
    except InvalidInputError as exc:
        return _Parsed(raw, None, None, None, exc)
    return _Parsed(raw, f"{handle_key(ref.handle)}/{ref.video_id}", ref.handle, ref, None)


def _video_ref(raw: object) -> VideoRef:
    if isinstance(raw, VideoRef):
        return make_video_ref(raw.handle, raw.video_id)
    if isinstance(raw, tuple) and len(raw) == 2:
        return make_video_ref(_as_text(raw[0]), _as_text(raw[1]))
    return parse_video(_as_text(raw))


def _as_text(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise InvalidInputError(repr(raw)[:80], f"expected text, got {type(raw).__name__}")


def _parsed_stream(
    items: Iterable[object] | AsyncIterable[object],
    parse: Callable[[object], _Parsed[InputT]],
    abort: _Abort,
) -> Iterator[_Parsed[InputT]] | AsyncIterator[_Parsed[InputT]]:
    if isinstance(items, AsyncIterable):
        return _parsed_async(items, parse, abort)
    # A plain generator for a plain iterable: the pool pulls it without a lock or a hop.
    return (parse(item) for item in itertools.takewhile(abort.not_yet, items))


async def _parsed_async(
    items: AsyncIterable[object], parse: Callable[[object], _Parsed[InputT]], abort: _Abort
) -> AsyncIterator[_Parsed[InputT]]:
    async for item in items:
        if abort.error is not None:
            return
        yield parse(item)


class _Abort:
    """The first error that stops a bulk run. Once set, no new input is taken; what is in
    flight settles (an answer already paid for is kept), then the error is raised."""

    def __init__(self) -> None:
        self.error: TikTokError | None = None

    def not_yet(self, _item: object = None) -> bool:
        return self.error is None

    def set(self, error: TikTokError) -> None:
        if self.error is None:
            self.error = error


def _dedupe_key(parsed: _Parsed[InputT]) -> object:
    # Invalid inputs never share a key: each gets its own result.
    return parsed.key if parsed.key is not None else ("invalid", id(parsed))


async def _answer(
    parsed: _Parsed[InputT], fetch: Callable[[InputT], Awaitable[tuple[T, int]]], abort: _Abort
) -> Result[T] | None:
    """The input's result; None when the run was stopped before it got an answer."""
    if parsed.invalid is not None or parsed.target is None:
        return Result(parsed.raw, None, None, error=parsed.invalid)
    if abort.error is not None:
        return None
    started = time.monotonic()
    try:
        value, attempts = await fetch(parsed.target)
    except ABORTING_ERRORS as exc:
        abort.set(exc)
        return None
    except TikTokError as exc:
        elapsed = time.monotonic() - started
        return Result(parsed.raw, parsed.key, parsed.handle, error=exc, attempts=exc.attempts,
                      elapsed=elapsed)
    elapsed = time.monotonic() - started
    return Result(parsed.raw, parsed.key, parsed.handle, value=value, attempts=attempts,
                  elapsed=elapsed)


async def run_bulk(
    items: Iterable[object] | AsyncIterable[object],
    parse: Callable[[object], _Parsed[InputT]],
    fetch: Callable[[InputT], Awaitable[tuple[T, int]]],
    *,
    concurrency: int,
    ordered: bool,
    dedupe: bool,
) -> AsyncGenerator[Result[T], None]:
    """Parse, dedupe and fetch every input; yield one `Result` per input.

    A bad key or a used-up quota stops taking input; the requests in flight settle and
    their results are yielded; then that error is raised. Inputs it stopped get no result.
    """
    abort = _Abort()

    async def work(parsed: _Parsed[InputT]) -> tuple[_Parsed[InputT], Result[T] | None]:
        return parsed, await _answer(parsed, fetch, abort)

    results = bounded_map(
        _parsed_stream(items, parse, abort),
        work,
        concurrency=concurrency,
        ordered=ordered,
        key=_dedupe_key if dedupe else None,
    )
    async with aclosing(results):
        async for parsed, (origin, result) in results:
            if result is None:
                continue  # stopped before it was answered: a later run will ask again
            if origin is parsed:
                yield result
            else:  # a duplicate: the answer fetched for an earlier input with the same key
                yield replace(result, input=parsed.raw, attempts=0, elapsed=0.0, duplicate=True)
    if abort.error is not None:
        raise abort.error


def fetch_users(
    client: TikTokClient,
    handles: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncIterator[Result[UserProfile]]:
    """Fetch many users; see `TikTokClient.fetch_users`."""
    return run_bulk(handles, _parse_user, client._fetch_user, concurrency=client.concurrency,
                    ordered=ordered, dedupe=dedupe)


def fetch_videos(
    client: TikTokClient,
    items: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncIterator[Result[Video]]:
    """Fetch many videos; see `TikTokClient.fetch_videos`."""
    return run_bulk(items, _parse_video, client._fetch_video, concurrency=client.concurrency,
                    ordered=ordered, dedupe=dedupe)
