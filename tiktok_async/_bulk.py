"""Bulk enrichment: one `Result` per input, from a bounded pool of workers.

`fetch_users` and `fetch_videos` parse each input, fetch it through the client (its
limiter, concurrency cap and retry policy), and yield a `Result` per input. The input is
pulled lazily; at most `concurrency` requests are in flight and a bounded number of
results wait for the consumer, so memory does not grow with the input.

One bad input never stops the batch: an invalid input, a missing user or a request
that failed after its retries is a `Result` with `error` set. Only answers that make
every later request fail too stop the batch (`_stops_the_run`): `ForbiddenError` (bad
key), `QuotaExceededError` (quota used up), `MissingRouteError` (the base URL's path is
wrong), a `RateLimitedError` whose `Retry-After` is longer than the policy waits, a
`ClientStateError`, and a `ConnectError` or `RequestTimeoutError` from a host that has
never answered (a circuit breaker). No new input is taken and no request starts after
it (`_runstop`: not even one already waiting for a slot, a token or a retry); the
requests on the wire settle and their results are yielded, then the error is raised from
the iterator. The inputs the stop cut short get no result, so a later run asks for them
again.
"""

from __future__ import annotations

import itertools
import operator
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
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._exceptions import (
    ClientStateError,
    ForbiddenError,
    MissingRouteError,
    QuotaExceededError,
    RateLimitedError,
    TikTokError,
)
from ._inputs import VideoRef
from ._kinds import USERS, VIDEOS, Kind, Parsed
from ._models import Record
from ._pool import bounded_map
from ._protocol import is_retryable
from ._runstop import CURRENT_RUN, UNREACHED, NotSentError, RunStop

if TYPE_CHECKING:
    from ._models import UserProfile, Video
    from ._retry import RetryPolicy
    from ._stats import ClientStats

T = TypeVar("T")
InputT = TypeVar("InputT")


class Fetcher(Protocol):
    """What the bulk layer needs of a `TikTokClient` (which it does not import)."""

    @property
    def max_concurrency(self) -> int: ...

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def stats(self) -> ClientStats: ...

    async def _fetch(self, path: str, decode: Callable[[bytes], T]) -> tuple[T, int]: ...

    def _worker_limit(self, run: RunStop) -> Callable[[int], int]: ...

#: What `fetch_videos` accepts per item: a video URL, a "handle,videoId" line, or a pair.
VideoInput = str | tuple[str, str] | VideoRef

#: The dedupe key of a parsed input (in C: read once an input). Invalid inputs have
#: None, which the pool never dedupes: each gets its own result.
_KEY: Callable[[Parsed[Any]], str | None] = operator.attrgetter("key")

#: Errors after which every later request would fail too: they stop a bulk run.
ABORTING_ERRORS: tuple[type[TikTokError], ...] = (
    ForbiddenError, QuotaExceededError, MissingRouteError, ClientStateError)


class Result(Record, Generic[T], frozen=True, gc=False):
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


def _until_stopped(
    parsed: Iterable[Parsed[InputT]] | AsyncIterable[Parsed[InputT]], stop: RunStop
) -> Iterator[Parsed[InputT]] | AsyncIterator[Parsed[InputT]]:
    if isinstance(parsed, AsyncIterable):
        return _until_stopped_async(parsed, stop)
    return itertools.takewhile(stop.not_yet, parsed)


async def _until_stopped_async(
    parsed: AsyncIterable[Parsed[InputT]], stop: RunStop
) -> AsyncIterator[Parsed[InputT]]:
    async for item in parsed:
        if stop.error is not None:
            return
        yield item


#: What a worker makes of one input: `(parsed, result, body)`. `result` is None when the
#: run stopped before the input got an answer; `body` is the answer's body when `result`
#: has a value: the dedupe memory keeps it instead of the result (`_remembered`).
_Answer = tuple[Parsed[InputT], Result[T] | None, bytes | None]


async def _answer(
    client: Fetcher, kind: Kind[InputT, T], stop: RunStop,
    decode: Callable[[bytes], tuple[T, bytes]], parsed: Parsed[InputT],
) -> _Answer[InputT, T]:
    """What the run makes of `parsed` (`_Answer`); `decode`: `kind.decode` keeping the
    body (`_decoded_with_body`). Runs in a worker task of the run: the client and the
    retries see `stop` there."""
    if parsed.invalid is not None or parsed.target is None:
        return parsed, Result(parsed.raw, None, None, error=parsed.invalid), None
    if stop.error is not None:
        return parsed, None, None
    if CURRENT_RUN.get() is not stop:
        CURRENT_RUN.set(stop)  # the task's own context, kept for its next items
    started = time.monotonic()
    try:
        (value, body), attempts = await client._fetch(kind.path(parsed.target), decode)
    except TikTokError as exc:
        return parsed, _failed(parsed, exc, client, stop, time.monotonic() - started), None
    return parsed, Result(parsed.raw, parsed.key, parsed.handle, value=value,
                          attempts=attempts, elapsed=time.monotonic() - started), body


def _decoded_with_body(decode: Callable[[bytes], T], body: bytes) -> tuple[T, bytes]:
    return decode(body), body


def _remembered(answer: _Answer[InputT, T]) -> _Answer[InputT, T]:
    """What the dedupe memory keeps of a finished answer: of one with a value, its body
    (one object of about 0.7 KB, not the decoded tree of a few dozen, which would stay
    alive for 10,000 more inputs: that cost a bulk run of cached users 3-6 us an input)."""
    parsed, _, body = answer
    return answer if body is None else (parsed, None, body)


def _recalled(decode: Callable[[bytes], T], kept: _Answer[InputT, T]) -> _Answer[InputT, T]:
    """The answer for a later duplicate of what `_remembered` kept: decoded again (one
    decode a duplicate, not a request)."""
    parsed, _, body = kept
    if body is None:
        return kept
    return parsed, Result(parsed.raw, parsed.key, parsed.handle, value=decode(body)), None


def _failed(parsed: Parsed[InputT], error: TikTokError, client: Fetcher, stop: RunStop,
            elapsed: float) -> Result[T] | None:
    """The result of an input whose fetch raised `error`, or None when it stops the run
    (the first such error is raised at the end; none is recorded) or the stop cut it
    short (a later run asks again)."""
    if _stops_the_run(error, client):
        stop.set(error)
        return None
    if _unanswered(error, stop):
        return None
    return Result(parsed.raw, parsed.key, parsed.handle, error=error, attempts=error.attempts,
                  elapsed=elapsed)


def _stops_the_run(error: TikTokError, client: Fetcher) -> bool:
    """Whether every later request would fail the same way, so sending more is waste."""
    if isinstance(error, ABORTING_ERRORS):
        return True
    if isinstance(error, RateLimitedError):  # asked to wait longer than the policy allows
        wait = error.retry_after
        return wait is not None and wait > client.retry_policy.max_retry_after
    # The circuit breaker: the host never answered anything, so it is not there.
    return isinstance(error, UNREACHED) and not client.stats.responses


def _unanswered(error: TikTokError, stop: RunStop) -> bool:
    """An input the stop cut short: never sent, or failing only because the run stopped."""
    if isinstance(error, NotSentError):
        return True
    return stop.error is not None and is_retryable(error)


async def run_bulk(
    client: Fetcher,
    kind: Kind[InputT, T],
    parsed: Iterable[Parsed[InputT]] | AsyncIterable[Parsed[InputT]],
    *,
    ordered: bool = False,
    dedupe: bool = True,
    stop: RunStop | None = None,
) -> AsyncGenerator[Result[T], None]:
    """Dedupe and fetch every parsed input; yield one `Result` per input.

    At most `client.concurrency` requests are in flight at once (a limit found from
    latency, up to `client.max_concurrency`); inputs backing off before a retry hold none,
    and more inputs are worked on meanwhile (`_concurrency.workers`, within the window).
    An answer that stops the
    run (see the module docstring) stops taking input and sending; the requests on the
    wire settle and their results are yielded; then that error is raised. Inputs it cut
    short get no result. `stop`: a `RunStop` the caller can set to stop the run the same
    way (the command line's Ctrl-C sets it with `RunInterrupted`).
    """
    stop = stop or RunStop()
    # Read-ahead and buffered results stay within twice the ceiling (four times ordered),
    # as much memory as ever; up to that many workers, so that inputs backing off (no
    # request in flight) leave room at the ceiling too: the client's slots hold the
    # requests to the ceiling.
    window = client.max_concurrency * (4 if ordered else 2)
    worker = partial(_answer, client, kind, stop, partial(_decoded_with_body, kind.decode))
    results = bounded_map(_until_stopped(parsed, stop), worker, concurrency=window,
                          window=window, ordered=ordered, key=_KEY if dedupe else None,
                          limit=client._worker_limit(stop), remember=_remembered,
                          recall=partial(_recalled, kind.decode))
    async with aclosing(results):
        async for item, (origin, result, _) in results:
            if result is None:
                continue  # stopped before it was answered: a later run will ask again
            if origin is item:
                yield result
            else:  # a duplicate: the answer fetched for an earlier input with the same key
                yield result.replace(input=item.raw, attempts=0, elapsed=0.0, duplicate=True)
    if stop.error is not None:
        raise stop.error


def fetch_users(
    client: Fetcher,
    handles: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncGenerator[Result[UserProfile], None]:
    """Fetch many users; see `TikTokClient.fetch_users`."""
    return run_bulk(client, USERS, _parse_each(handles, USERS.parse), ordered=ordered,
                    dedupe=dedupe)


def fetch_videos(
    client: Fetcher,
    items: Iterable[object] | AsyncIterable[object],
    *,
    ordered: bool = False,
    dedupe: bool = True,
) -> AsyncGenerator[Result[Video], None]:
    """Fetch many videos; see `TikTokClient.fetch_videos`."""
    return run_bulk(client, VIDEOS, _parse_each(items, VIDEOS.parse), ordered=ordered,
                    dedupe=dedupe)
