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
    Callable,
    Iterable,
    Iterator,
)
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._exceptions import ForbiddenError, QuotaExceededError, TikTokError
from ._inputs import VideoRef
from ._kinds import USERS, VIDEOS, Kind, Parsed
from ._pool import bounded_map

if TYPE_CHECKING:
    from ._models import UserProfile, Video

T = TypeVar("T")
InputT = TypeVar("InputT")


class Fetcher(Protocol):
    """What the bulk layer needs of a `TikTokClient` (which it does not import)."""

    @property
    def concurrency(self) -> int: ...

    async def _fetch(self, path: str, decode: Callable[[bytes], T]) -> tuple[T, int]: ...

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


def _parse_each(
    items: Iterable[object] | AsyncIterable[object], parse: Callable[[object], Parsed[InputT]]
) -> Iterable[Parsed[InputT]] | AsyncIterable[Parsed[InputT]]:
    if isinstance(items, AsyncIterable):
        return _parse_async(items, parse)
    return map(parse, items)  # a plain map: the pool pulls it without a lock or a hop


async def _parse_async(
    items: AsyncIterable[object], parse: Callable[[object], Parsed[InputT]]
) -> AsyncIterator[Parsed[InputT]]:
    async for item in items:
        yield parse(item)


def _until_aborted(
    parsed: Iterable[Parsed[InputT]] | AsyncIterable[Parsed[InputT]], abort: _Abort
) -> Iterator[Parsed[InputT]] | AsyncIterator[Parsed[InputT]]:
    if isinstance(parsed, AsyncIterable):
        return _until_aborted_async(parsed, abort)
    return itertools.takewhile(abort.not_yet, parsed)


async def _until_aborted_async(
    parsed: AsyncIterable[Parsed[InputT]], abort: _Abort
) -> AsyncIterator[Parsed[InputT]]:
    async for item in parsed:
        if abort.error is not None:
            return
        yield item


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


def _dedupe_key(parsed: Parsed[InputT]) -> object:
    # Invalid inputs never share a key: each gets its own result.
    return parsed.key if parsed.key is not None else ("invalid", id(parsed))


async def _answer(
    parsed: Parsed[InputT], client: Fetcher, kind: Kind[InputT, T], abort: _Abort
) -> Result[T] | None:
    """The input's result; None when the run was stopped before it got an answer."""
    if parsed.invalid is not None or parsed.target is None:
        return Result(parsed.raw, None, None, error=parsed.invalid)
    if abort.error is not None:
        return None
    started = time.monotonic()
    try:
        value, attempts = await client._fetch(kind.path(parsed.target), kind.decode)
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
    client: Fetcher,
    kind: Kind[InputT, T],
    parsed: Iterable[Parsed[InputT]] | AsyncIterable[Parsed[InputT]],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncGenerator[Result[T], None]:
    """Dedupe and fetch every parsed input; yield one `Result` per input.

    At most `client.concurrency` inputs are worked on at once. A bad key or a used-up
    quota stops taking input; the requests in flight settle and their results are
    yielded; then that error is raised. Inputs it stopped get no result.
    """
    abort = _Abort()

    async def work(item: Parsed[InputT]) -> tuple[Parsed[InputT], Result[T] | None]:
        return item, await _answer(item, client, kind, abort)

    results = bounded_map(_until_aborted(parsed, abort), work,
                          concurrency=client.concurrency, ordered=ordered,
                          key=_dedupe_key if dedupe else None)
    async with aclosing(results):
        async for item, (origin, result) in results:
            if result is None:
                continue  # stopped before it was answered: a later run will ask again
            if origin is item:
                yield result
            else:  # a duplicate: the answer fetched for an earlier input with the same key
                yield replace(result, input=item.raw, attempts=0, elapsed=0.0, duplicate=True)
    if abort.error is not None:
        raise abort.error


def fetch_users(
    client: Fetcher,
    handles: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncIterator[Result[UserProfile]]:
    """Fetch many users; see `TikTokClient.fetch_users`."""
    return run_bulk(client, USERS, _parse_each(handles, USERS.parse), ordered=ordered,
                    dedupe=dedupe)


def fetch_videos(
    client: Fetcher,
    items: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncIterator[Result[Video]]:
    """Fetch many videos; see `TikTokClient.fetch_videos`."""
    return run_bulk(client, VIDEOS, _parse_each(items, VIDEOS.parse), ordered=ordered,
                    dedupe=dedupe)
