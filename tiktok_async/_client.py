"""`TikTokClient`: lifecycle, the three lookups, and the one path every request takes.

One request is one call of `_fetch(path, decode)`:

    parse input  ->  attempt, then retrier.after_first(attempt)   (tenacity after a failure)
                       attempt = semaphore slot -> rate token -> GET -> release
                                 -> stats -> decipher_response -> decode

The concurrency slot and the rate token are held around one attempt only: a retry that
is backing off holds neither. A 429 that is retried starts a cool-down every other task
waits out too (`RateLimiter.on_throttled`), for as long as the retrying task waits.

Lifecycle as httpx has it: a client is unopened until `async with` (or `await open()`)
opens it (the aiohttp session is made there, inside the running loop), open until
`aclose()` (idempotent), and closed for good after: using it then, or before opening, or
opening it twice, raises `ClientStateError`.

`with_options(timeout=..., retry=..., hooks=...)` returns a view: the same client (one
session, limiter, rate estimate, stats and lifecycle) whose calls use those options; the
client it came from is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from yarl import URL

from ._adaptive import AdaptiveRate
from ._bulk import Result, fetch_users, fetch_videos
from ._concurrency import AdaptiveConcurrency, workers
from ._exceptions import ClientStateError, RateLimitedError, TikTokError
from ._inputs import make_video_ref, parse_handle, parse_video, user_path, video_path
from ._limiter import ConcurrencyGate, Limiter, RateLimiter
from ._models import UserProfile, Video, decode_user_profile, decode_video
from ._openfiles import make_room
from ._protocol import decipher_response, retry_cause
from ._retry import Retrier, RetryPolicy
from ._runstop import CURRENT_RUN, UNREACHED, NotSentError, RunStop, connect_failed
from ._stats import ClientStats, StatsRecorder
from ._transport import Secret, Transport, Verify, redacted_url
from ._version import __version__

if TYPE_CHECKING:
    from typing_extensions import Self


__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "ClientHooks", "TikTokClient"]

T = TypeVar("T")

API_KEY_ENV = "TIKTOK_API_KEY"
BASE_URL_ENV = "TIKTOK_API_BASE_URL"
USER_AGENT = f"tiktok-async/{__version__}"

_log = logging.getLogger("tiktok_async")
_UNOPENED, _OPEN, _CLOSED = "unopened", "open", "closed"


@dataclass(frozen=True, slots=True)
class ClientHooks:
    """Callables for a caller's own metrics; each is optional and called synchronously.

    - `on_request(path)`: an attempt is about to be sent (after its slot and token).
    - `on_response(path, status, seconds)`: an attempt got a whole answer.
    - `on_error(path, error)`: an attempt got no usable answer (connection, timeout, ...).
    - `on_retry(path, error, attempt, wait)`: attempt number `attempt` failed with `error`;
      the next starts after `wait` seconds.

    An exception raised by a hook propagates into the call that triggered it.
    """

    on_request: Callable[[str], None] | None = None
    on_response: Callable[[str, int, float], None] | None = None
    on_error: Callable[[str, TikTokError], None] | None = None
    on_retry: Callable[[str, TikTokError, int, float], None] | None = None


class TikTokClient:
    """Asyncio client of the hosted TikTok data API.

    ```
    async with TikTokClient() as client:     # TIKTOK_API_KEY, TIKTOK_API_BASE_URL
        profile = await client.get_user("@some.handle")
    ```

    - `api_key`, `base_url`: default to the environment variables `TIKTOK_API_KEY` and
      `TIKTOK_API_BASE_URL` (`https://<id>.execute-api.<region>.amazonaws.com/dev/tiktok`).
      A missing one is a `ValueError` here, naming the variable. The key is shown nowhere.
    - `rate`, `burst`: client-side token bucket with API Gateway's semantics, requests a
      second and bucket size (docs: limits and retries). `rate=None` (default): adaptive,
      the client finds the key's unknown quota from the answers (starts at 10/s, doubles
      until the first 429, then settles just under the quota), never above `max_rate`
      if given; `initial_rate`: where it starts instead of 10/s (a rate the key ran at
      lately: the command line remembers one). `rate=math.inf`: no client-side limit at all.
    - `concurrency`: the most attempts in flight (also the connection pool's size):
      a ceiling. Bulk runs (`fetch_users`, `fetch_videos`) find how many they need below
      it from the answers (Little's law: rate x latency; see `.concurrency`), unless
      `adaptive_concurrency=False` fixes it. Default 4096, lowered to what the process's
      open-file limit allows (its soft limit is raised when needed).
    - `timeout`: seconds for one attempt, answer included (35: API Gateway gives up at
      29 s), kept to a twentieth of it, at most 1 s (one timer for every attempt in
      flight, not one each); `connect_timeout`: seconds to connect (10).
    - `retry`: a `RetryPolicy` (default: up to 6 attempts, backoff from 0.5 s, no retry
      wait ending later than 60 s into the call; an attempt begun before then still has
      its `timeout`); `RetryPolicy.testing()` for tests, `RetryPolicy.never()` for none.
    - `proxy`: an `http://[user:password@]host:port` proxy for every request. Without it,
      with `trust_env` (default), `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and
      `NO_PROXY`, read once here. Over https the proxy only tunnels (`CONNECT`): it never
      sees the key. Over plain http it sees every header, the key included.
    - `verify`: TLS certificate check, as httpx: True (the system's CAs), a CA file or
      folder, an `ssl.SSLContext`, or False (no check: for tests only).
    - `session`: an `aiohttp.ClientSession` to use instead of making one; never closed
      here. It brings its own proxy and TLS settings (then no `proxy` or `verify`).
    - `hooks`: `ClientHooks` for your own metrics.
    - `limiter`: a `Limiter` to use instead of making one, e.g. a `RedisLimiter` shared by
      every process on the key (then give no `rate`, `burst` or `max_rate`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        rate: float | None = None,
        burst: int | None = None,
        max_rate: float | None = None,
        initial_rate: float | None = None,
        concurrency: int | None = None,
        timeout: float = 35.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: Verify = True,
        session: aiohttp.ClientSession | None = None,
        hooks: ClientHooks | None = None,
        limiter: Limiter | None = None,
        adaptive_concurrency: bool = True,
    ) -> None:
        if limiter is not None and not (rate is None and burst is None and max_rate is None
                                        and initial_rate is None):
            raise ValueError("a limiter brings its own rate: give no rate, burst, max_rate or "
                             "initial_rate with limiter=")
        _check_initial_rate(initial_rate, rate)
        self._initial_rate = initial_rate
        self._external = limiter
        secret = _resolve_key(api_key)
        del api_key  # from here on only the Secret holds it (not even this frame's locals)
        self._base_url = resolve_base_url(base_url)
        concurrency = DEFAULT_MAX_CONCURRENCY if concurrency is None else concurrency
        _check_limits(concurrency, timeout, connect_timeout)
        self._rate, self._burst, self._max_rate = rate, 1 if burst is None else burst, max_rate
        self._new_limiter()  # validates rate, burst and max_rate now, not at open
        self._concurrency = concurrency
        self._flow = AdaptiveConcurrency(concurrency) if adaptive_concurrency else None
        self._transport = Transport(
            self._base_url,
            secret,
            pool_size=concurrency,
            timeout=timeout,
            connect_timeout=connect_timeout,
            user_agent=USER_AGENT,
            session=session,
            proxy=proxy,
            trust_env=trust_env,
            verify=verify,
        )
        self._retrier = Retrier(retry or RetryPolicy(), self._before_retry)
        self._hooks = hooks
        self._stats = StatsRecorder()
        self._state = _UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None  # where it was opened
        self._thread = 0  # the thread that opened it (its loop runs there)
        self._limiter: Limiter | None = None
        self._own_limiter: RateLimiter | None = None  # `_limiter` when it is ours
        self._slots: ConcurrencyGate | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def open(self) -> None:
        """Open the client (its aiohttp session is made here, in the running loop): what
        `async with` does, for an app that opens it at startup and calls `aclose()` at
        shutdown. Opening twice, or after closing, raises `ClientStateError`."""
        if self._state != _UNOPENED:
            raise ClientStateError(f"cannot open a client that is {self._state}: make a new one")
        limiter = self._limiter = self._external or self._new_limiter()
        self._own_limiter = limiter if isinstance(limiter, RateLimiter) else None
        self._concurrency = _open_files_allow(self._concurrency)
        if self._flow is not None:
            self._flow.ceiling = min(self._flow.ceiling, self._concurrency)
        self._slots = ConcurrencyGate(self._concurrency)
        self._transport.open()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._state = _OPEN

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its own session (a lent one stays open). Idempotent.
        Calls still waiting for their answer end at once with `ClientStateError`."""
        if self._state == _OPEN:
            if asyncio.get_running_loop() is not self._loop:
                raise self._state_error()
            self._state = _CLOSED
            await self._transport.aclose()
        self._state = _CLOSED

    @property
    def is_closed(self) -> bool:
        """True once `aclose()` ran (or the `async with` block ended)."""
        return self._state == _CLOSED

    # --- the lookups ---------------------------------------------------------------------

    async def get_user(self, handle: str) -> UserProfile:
        """The profile of `handle` (with or without '@', or a profile URL)."""
        value, _ = await self._fetch(user_path(parse_handle(handle)), decode_user_profile)
        return value

    async def get_video(self, handle: str, video_id: str | int) -> Video:
        """The video `video_id` posted by `handle`."""
        value, _ = await self._fetch(video_path(make_video_ref(handle, video_id)), decode_video)
        return value

    async def get_video_by_url(self, url: str) -> Video:
        """The video a TikTok URL points at (`https://www.tiktok.com/@h/video/ID` and kin)."""
        value, _ = await self._fetch(video_path(parse_video(url)), decode_video)
        return value

    def fetch_users(
        self,
        handles: Iterable[object] | AsyncIterable[object],
        *,
        ordered: bool = False,
        dedupe: bool = True,
    ) -> AsyncGenerator[Result[UserProfile], None]:
        """One `Result` per handle (with or without '@', or a profile URL), in the order
        they finish (`ordered=True`: input order).

        The input (any iterable or async iterable) is read only as fast as work is taken;
        at most `concurrency` requests are in flight. With `dedupe`, one handle in any form
        is fetched once (while in flight, and for the last 10,000 distinct handles
        answered: one further back is fetched again) and every duplicate still gets its
        own `Result`. One bad input
        never stops the run: its `Result` carries the error. A bad key (`ForbiddenError`)
        or a used-up quota (`QuotaExceededError`) stops it: what is in flight settles and
        is yielded, then the error is raised. Breaking out of the loop cancels the work;
        to stop early and at once, close the generator (`aclose()`, or
        `contextlib.aclosing` around it): the work in flight is cancelled and awaited.
        """
        if self._state != _OPEN:
            raise self._state_error()
        return fetch_users(self, handles, ordered=ordered, dedupe=dedupe)

    def fetch_videos(
        self,
        items: Iterable[object] | AsyncIterable[object],
        *,
        ordered: bool = False,
        dedupe: bool = True,
    ) -> AsyncGenerator[Result[Video], None]:
        """One `Result` per video URL, `"handle,videoId"` line, `(handle, id)` pair or
        `VideoRef`; otherwise as `fetch_users`."""
        if self._state != _OPEN:
            raise self._state_error()
        return fetch_videos(self, items, ordered=ordered, dedupe=dedupe)

    # --- for the bulk layer ------------------------------------------------------------

    async def _fetch(self, path: str, decode: Callable[[bytes], T]) -> tuple[T, int]:
        """`(value, attempts)` for one GET of `path`, retried under the policy.

        Raises a `TikTokError` with `.attempts` set. `path` is relative to the base URL and
        already percent-encoded (`user_path`, `video_path`).
        """
        # Is the client's loop the running one? Not asked (on Python 3.11 that is a system
        # call, getpid, and the bulk path paid four a request): a thread runs one loop at a
        # time, so in the thread that opened the client, with its loop running, it is.
        loop = self._loop
        if (self._state != _OPEN or loop is None or threading.get_ident() != self._thread
                or not loop.is_running()):
            raise self._state_error()
        started = loop.time()
        try:  # the first attempt directly, as `Retrier.call` would: one coroutine fewer
            return await self._attempt(path, decode), 1
        except TikTokError as exc:
            first = exc
        return await self._retrier.after_first(partial(self._attempt, path, decode), first,
                                               started, path)

    async def _attempt(self, path: str, decode: Callable[[bytes], T]) -> T:
        limiter, slots, stats, hooks = self._limiter, self._slots, self._stats, self._hooks
        # A `RateLimiter` (ours) is asked for a free token without a coroutine, and told
        # an answer directly; any other limiter is awaited and told through `_tell_limiter`.
        flow, own = self._flow, self._own_limiter
        if limiter is None or slots is None:
            raise self._state_error()
        run = CURRENT_RUN.get()  # the bulk run this task works for, if any
        gate = None
        if run is not None and run.gate is not None:  # the run's own cap, taken first
            gate = run.gate
            if not gate.try_enter():
                await run.wait(gate.enter(self._loop))
        try:
            if not slots.try_enter():
                entered = slots.enter(self._loop)
                await (entered if run is None else run.wait(entered))
        except BaseException:
            if gate is not None:
                gate.leave()
            raise
        try:
            if not (limiter.free or (own is not None and own.try_acquire())):
                await (limiter.acquire() if run is None else run.wait(limiter.acquire()))
            if run is not None and run.error is not None:
                raise NotSentError("not sent: the run stopped")  # it stopped while we waited
            if hooks is not None and hooks.on_request is not None:
                hooks.on_request(path)
            sent_count = stats.sent()
            started = time.perf_counter()
            try:
                answer = await self._transport.get(path)
            except TikTokError as exc:
                self._on_error(path, exc)
                raise
            except asyncio.CancelledError:
                stats.failed("cancelled")  # sent, never answered: still accounted for
                raise
        finally:
            slots.leave()
            if gate is not None:
                gate.leave()
        answered = time.perf_counter()
        seconds = answered - started
        status = answer.status
        stats.answered(status, seconds)
        if flow is not None:
            flow.on_answer(answered, seconds, status)
            if gate is not None and gate.limit != flow.limit:
                gate.resize(flow.limit)  # cut by this answer (a 429, a queue): from now on
        if _log.isEnabledFor(logging.DEBUG):  # one call a request, not two
            _log.debug("GET %s -> %d in %.1f ms", path, status, seconds * 1e3)
        if hooks is not None and hooks.on_response is not None:
            hooks.on_response(path, status, seconds)
        if status != 429:
            if own is not None:
                own.answered(seconds, round_trip=status == 200)
            else:
                self._tell_limiter(limiter, status, seconds)
            return decipher_response(status, answer.headers, answer.body, decode)
        try:
            return decipher_response(status, answer.headers, answer.body, decode)
        except RateLimitedError:
            self._tell_limiter(limiter, status, seconds, stats.sent_count - sent_count)
            raise

    @staticmethod
    def _tell_limiter(limiter: Limiter, status: int, seconds: float, sent_after: int = 0
                      ) -> None:
        """An answer with `status` came `seconds` after its attempt went out, and
        `sent_after` attempts went out since (told with a 429). Our own `RateLimiter` is
        told here of 429s only (`_attempt` tells it any other answer, `answered`), and when
        the attempt went out too: after slow start, answers to attempts sent before its
        last cut say nothing of the rate after it, and a 429 read late (the loop stalled)
        says the bucket was empty when it went out, not when it was read."""
        throttled = status == 429
        if isinstance(limiter, RateLimiter):
            if throttled and limiter.adaptive is not None:
                sent_at = asyncio.get_running_loop().time() - seconds
                limiter.on_rate_limited(sent_at=sent_at, sent_after=sent_after)
        elif throttled:
            limiter.on_rate_limited()
        else:
            limiter.on_success()
            hear = getattr(limiter, "on_round_trip", None)  # optional: see `Limiter`
            if hear is not None and status == 200:
                hear(seconds)

    def _on_error(self, path: str, error: TikTokError) -> None:
        self._stats.failed(retry_cause(error) or "other")
        if isinstance(error, UNREACHED) and not self._stats.any_answer:
            connect_failed(error)  # the circuit breaker of the bulk run, if any
        _log.debug("GET %s -> %s", path, error)
        hooks = self._hooks
        if hooks is not None and hooks.on_error is not None:
            hooks.on_error(path, error)

    def _before_retry(self, path: str, error: TikTokError, attempt: int, wait: float) -> None:
        self._stats.retried(retry_cause(error) or "other")
        if isinstance(error, RateLimitedError) and self._limiter is not None:
            self._limiter.on_throttled(wait)
        _log.warning(
            "GET %s: attempt %d failed (%s); retrying in %.2f s", path, attempt, error, wait
        )
        hooks = self._hooks
        if hooks is not None and hooks.on_retry is not None:
            hooks.on_retry(path, error, attempt, wait)

    # --- limits and observability ----------------------------------------------------

    @property
    def concurrency(self) -> int:
        """Attempts in flight allowed now: the adaptive limit bulk runs follow, found from
        latency (`max_concurrency` with `adaptive_concurrency=False`)."""
        return self._concurrency if self._flow is None else self._flow.limit

    @property
    def max_concurrency(self) -> int:
        """The ceiling of attempts in flight (the `concurrency` given, or the default,
        lowered to what the open-file limit allows once the client is open)."""
        return self._concurrency

    def _worker_limit(self, run: RunStop) -> Callable[[int], int]:
        """For the bulk pool of `run`: `busy -> workers allowed now`. Workers of `run`
        backing off before a retry are not requests in flight: they are not `busy` to the
        limit, and get room of their own (`_concurrency.workers`), fixed limit or not."""
        flow = self._flow
        if flow is None:  # the client's slots hold the requests to the limit
            fixed = self._concurrency
            steady = workers(fixed, 0)
            return lambda busy: workers(fixed, run.backing_off) if run.backing_off else steady
        clock = time.perf_counter
        gate = run.gate = ConcurrencyGate(flow.limit)  # the run's requests, to the limit
        # Asked once an input: the tick's time read, and the workers for the limit and the
        # inputs backing off last seen kept, rather than asked for (calls cost here).
        seen, backing, allowed = -1, -1, 0

        def limit(busy: int) -> int:
            nonlocal seen, backing, allowed
            now = clock()
            if now >= flow.next_tick:  # else `tick` would return the limit as is
                limiter = self._limiter
                if limiter is None:
                    flow.tick(now, gate.held)
                else:
                    flow.tick(now, gate.held, limiter.rate, queued=limiter.queued)
            if flow.limit != seen or run.backing_off != backing:
                seen, backing = flow.limit, run.backing_off  # a tick or an answer moved one
                if gate.limit != seen:
                    gate.resize(seen)
                allowed = workers(seen, backing)
            return allowed

        return limit

    @property
    def rate(self) -> float:
        """The client-side rate now, in requests a second: the adaptive mode's current
        target while it runs, `math.inf` when there is no client-side limit. Never None:
        None is what asks for the adaptive mode (`rate=None`, `set_rate(None)`)."""
        limiter = self._limiter or self._external
        if limiter is not None:
            rate = limiter.rate
            return math.inf if rate is None else rate
        if self._rate is None:
            return _initial_adaptive_rate(self._max_rate, self._initial_rate)
        return self._rate

    @property
    def adaptive(self) -> bool:
        """True while the rate is found from the answers (no `rate` was given)."""
        if self._external is not None:
            return bool(getattr(self._external, "adaptive", False))
        return self._rate is None

    def set_rate(self, rate: float | None) -> None:
        """Set the client-side rate now, as `rate=` does: a number of requests a second
        fixes it (ending the adaptive mode), `math.inf` lifts every client-side limit, and
        None is the adaptive mode again, from the rate in force (10/s after no limit).
        Tasks already waiting follow the new rate."""
        if self._external is not None:
            raise ValueError("this client uses a limiter it was given: set the rate there")
        if rate is None:
            self._adapt_again()
            return
        _checked_fixed_rate(rate)
        self._rate = rate
        if isinstance(self._limiter, RateLimiter):
            self._limiter.stop_adapting()
            self._limiter.set_rate(None if math.isinf(rate) else rate)

    def _adapt_again(self) -> None:
        if self._rate is None:
            return  # adaptive already
        start = _initial_adaptive_rate(None) if math.isinf(self._rate) else self._rate
        self._rate = None
        if isinstance(self._limiter, RateLimiter):
            cap = math.inf if self._max_rate is None else self._max_rate
            adaptive = AdaptiveRate(min(start, cap), max_rate=self._max_rate)
            self._limiter.start_adapting(adaptive)

    def _new_limiter(self) -> RateLimiter:
        rate = self._rate
        if rate is None:
            start = _initial_adaptive_rate(self._max_rate, self._initial_rate)
            adaptive = AdaptiveRate(start, max_rate=self._max_rate)
            return RateLimiter(burst=self._burst, adaptive=adaptive)
        _checked_fixed_rate(rate)
        if self._max_rate is not None:
            raise ValueError("max_rate caps the adaptive rate: give it without a rate")
        return RateLimiter(None if math.isinf(rate) else rate, self._burst)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retrier.policy

    @property
    def timeout(self) -> float:
        """Seconds for one attempt, answer included."""
        return self._transport.timeout

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect."""
        return self._transport.connect_timeout

    @property
    def proxy(self) -> str | None:
        """The proxy requests go through (`proxy=` or the environment's), without its
        credentials; None when they go direct."""
        return self._transport.proxy

    def with_options(
        self,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        hooks: ClientHooks | None = None,
    ) -> TikTokClient:
        """This client with other options for the calls made through what it returns.

        ```
        quick = client.with_options(timeout=2, retry=RetryPolicy.never())
        profile = await quick.get_user("someone")
        ```

        A light view, as openai-python's `with_options`: it shares the client's session,
        limiter, rate estimate, concurrency, stats and lifecycle (open and close the
        client, not the view). Options left None are this client's. The client itself is
        unchanged.
        """
        timeout = self.timeout if timeout is None else timeout
        connect_timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        _check_seconds(timeout=timeout, connect_timeout=connect_timeout)
        return _ClientView(
            self._origin(),
            self._transport.with_timeout(timeout, connect_timeout),
            retry or self.retry_policy,
            self._hooks if hooks is None else hooks,
        )

    def _origin(self) -> TikTokClient:
        """The client that owns the session and the state (itself; a view's client)."""
        return self

    @property
    def stats(self) -> ClientStats:
        """Counts and latency percentiles since the client was made (a snapshot)."""
        snapshot = self._stats.snapshot()
        held_back = 0.0 if self._flow is None else self._flow.held_back
        return replace(snapshot, concurrency=self.concurrency, concurrency_held_back=held_back)

    def _state_error(self) -> ClientStateError:
        if self._state == _UNOPENED:
            return ClientStateError(
                "the client is not open: use `async with TikTokClient(...) as client:`"
            )
        if self._state == _OPEN:  # and used from another loop than the one it was opened in
            return ClientStateError(
                "the client was opened in another event loop: its connections belong there; "
                "open, use and close a client in one loop (one asyncio.run)")
        return ClientStateError("the client is closed: make a new one")

    @property
    def base_url(self) -> str:
        """The API base URL, with any password in it shown as `***`."""
        return _redacted(self._base_url)

    def __repr__(self) -> str:
        if "_transport" not in self.__dict__:  # a constructor that raised (a traceback's local)
            return f"<{type(self).__name__}: not made>"
        proxy = "" if self.proxy is None else f", proxy={self.proxy!r}"
        return (
            f"TikTokClient(base_url={self.base_url!r}, api_key=***, state={self._state!r}, "
            f"rate={'adaptive' if self._rate is None else self._rate!r}, "
            f"burst={self._burst!r}, concurrency={self._concurrency!r}{proxy})"
        )


_VIEW_OWN = frozenset({"_root", "_transport", "_retrier", "_hooks"})


class _ClientView(TikTokClient):
    """What `TikTokClient.with_options` returns: its own timeouts (a transport view on the
    same session), retry policy and hooks; every other attribute is its client's, read
    and written there (state, limiter, slots, stats, rate), so the two stay one client."""

    _root: TikTokClient

    def __init__(  # no super().__init__(): the state is the client's
        self, root: TikTokClient, transport: Transport, retry: RetryPolicy,
        hooks: ClientHooks | None,
    ) -> None:
        own = object.__setattr__
        own(self, "_root", root)
        own(self, "_transport", transport)
        own(self, "_hooks", hooks)
        own(self, "_retrier", Retrier(retry, self._before_retry))

    def __getattr__(self, name: str) -> Any:
        if name == "_root":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._root, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _VIEW_OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._root, name, value)

    def _origin(self) -> TikTokClient:
        return self._root

    async def open(self) -> None:
        raise ClientStateError(_VIEW_LIFECYCLE)

    async def aclose(self) -> None:
        raise ClientStateError(_VIEW_LIFECYCLE)

    def __repr__(self) -> str:
        return (f"<view of {self._root!r}: timeout={self.timeout!r}, "
                f"connect_timeout={self.connect_timeout!r}, retry={self.retry_policy!r}>")


_VIEW_LIFECYCLE = ("a view made by with_options() shares its client's lifecycle: open and "
                   "close that client, not the view")


#: The default ceiling of attempts in flight: covers a quota of 1,000 a second at 3 s.
DEFAULT_MAX_CONCURRENCY = 4096

# The adaptive mode starts here and doubles every half second until the first 429 (every
# 35 round trips when they are short: `_adaptive`, rule 1): low enough that a quota of 5 a
# second is overshot only briefly, high enough that a quota in the thousands is reached in
# under five seconds.
_ADAPTIVE_START = 10.0


def _initial_adaptive_rate(max_rate: float | None, initial: float | None = None) -> float:
    start = _ADAPTIVE_START if initial is None else initial
    return start if max_rate is None else min(start, max_rate)


def _check_initial_rate(initial: float | None, rate: float | None) -> None:
    if initial is None:
        return
    if rate is not None:
        raise ValueError("initial_rate is where the adaptive rate starts: give it without a rate")
    if isinstance(initial, bool) or not isinstance(initial, (int, float)) or not (
            math.isfinite(initial) and initial > 0):
        raise ValueError(f"initial_rate must be a positive, finite number of requests a "
                         f"second, not {initial!r}")


def _checked_fixed_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"rate must be a positive number of requests a second (math.inf: "
                         f"no limit; None: adaptive), not {rate!r}")


def _resolve_key(api_key: str | None) -> Secret:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key:
        raise ValueError(f"no API key: pass api_key=... or set the {API_KEY_ENV} variable")
    if not isinstance(key, str):
        raise ValueError(f"the API key must be text (str), not {type(key).__name__}")
    if not key.isprintable() or key != key.strip():
        # Read from a file, a key often ends in a line break; aiohttp refuses it at the first
        # request (a ValueError of its own). Its text is never shown, only what is wrong.
        raise ValueError("the API key has spaces, a line break or other control characters: "
                         "strip it (a key read from a file often ends in a line break)")
    return Secret(key)


def resolve_base_url(base_url: str | None) -> str:
    """The base URL in force: `base_url`, else `$TIKTOK_API_BASE_URL`, checked and without
    a trailing slash (ValueError, naming what is wrong, otherwise)."""
    text = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
    if not text:
        raise ValueError(
            f"no base URL: pass base_url=... or set the {BASE_URL_ENV} variable "
            "(https://<id>.execute-api.<region>.amazonaws.com/<stage>/tiktok)"
        )
    try:
        url = URL(text)
    except (TypeError, ValueError):
        raise ValueError(f"base URL {_shown(text)!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base URL {_shown(text)!r} must be an absolute http(s) URL")
    if url.query_string or url.fragment:
        raise ValueError(f"base URL {_shown(text)!r} must not carry a query or a fragment")
    return text.rstrip("/")


def _shown(text: str) -> str:
    """A URL for a message: its password as `***` (what comes before an `@`, when it
    cannot be parsed)."""
    try:
        return redacted_url(text)
    except (TypeError, ValueError):
        return "***@" + text.rpartition("@")[2] if "@" in text else text


def _check_seconds(**values: float) -> None:
    """Each a finite number of seconds > 0 (a request is always bounded: `math.inf` would
    fail in aiohttp at every request instead of here)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")


def _redacted(base_url: str) -> str:
    url = URL(base_url)
    return str(url.with_password("***")) if url.password else base_url


def _open_files_allow(concurrency: int) -> int:
    """The concurrency the open-file limit allows (its soft limit raised to fit); when the
    hard limit stops that, less, with a warning."""
    allowed = make_room(concurrency)
    if allowed < concurrency:
        _log.warning("concurrency %d lowered to %d: the open-file hard limit stops more "
                     "(raise it with `ulimit -Hn` or in the service's limits)",
                     concurrency, allowed)
    return allowed


def _check_limits(concurrency: int, timeout: float, connect_timeout: float) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, not {concurrency!r}")
    _check_seconds(timeout=timeout, connect_timeout=connect_timeout)
