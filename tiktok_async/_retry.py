"""Retries on tenacity, kept off the fast path.

The first attempt of every call runs directly: no tenacity object is touched, so a call
that succeeds pays nothing for retries (tenacity costs 13-20 us a call even when nothing
fails, a fifth of a request's whole client-side budget). Only after a retryable failure
does the call hand over to a tenacity `AsyncRetrying` for the waits, the stop conditions
and the retry predicate. The `AsyncRetrying` is built once per client; each retried call
runs on a `copy()` of it, because tenacity keeps per-run state in a thread-local that
every task of the thread would otherwise share.

What is retried is `_protocol.is_retryable`: 429 `Too Many Requests`, 408, 500, 502,
503, 504, connection errors, timeouts, truncated bodies and a 200 whose body is not
well-formed JSON (`MalformedBodyError`); never 400/403/404, a used-up quota, a body that
is well-formed but does not fit the schema, one over the size cap, or a cancelled task.

How long to wait before attempt n+1 (`RetryPolicy` defaults, stamina-like):

| after attempt | wait (s)                | from                                      |
|---------------|-------------------------|-------------------------------------------|
| 1             | 0.5 + U(0, 0.5)         | `initial_wait * exp_base ** (n - 1)`      |
| 2             | 1.0 + U(0, 0.5)         | plus uniform jitter up to `jitter`,       |
| 3             | 2.0 + U(0, 0.5)         | capped at `max_wait`                      |
| 4             | 4.0 + U(0, 0.5)         |                                           |
| 5             | 8.0 + U(0, 0.5)         |                                           |
| 6             | (stop: `max_attempts`)  |                                           |

A 429 with `Retry-After` waits exactly what it asks (seconds or an HTTP date) when that is
at most `max_retry_after`; beyond it the call fails at once with the `RateLimitedError`,
whose `retry_after` says how long. No retry starts whose wait would end more than
`total_timeout` seconds after the call began. `RetryPolicy.testing()` keeps every
decision but waits 0 s, so tests never sleep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_exponential_jitter
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import _runstop as runstop
from ._exceptions import RateLimitedError, TikTokError
from ._protocol import is_retryable

__all__ = ["Retrier", "RetryPolicy"]

T = TypeVar("T")

#: Called before each backoff sleep: (the call's label, the error, the attempt that failed
#: (1-based), the wait in seconds).
BeforeSleep = Callable[[str, TikTokError, int, float], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried after a retryable failure.

    `max_attempts` counts every attempt (1 = never retry). The wait before attempt n+1 is
    `initial_wait * exp_base ** (n - 1)` plus a uniform jitter in `[0, jitter]`, at most
    `max_wait`. `Retry-After` is obeyed up to `max_retry_after` seconds; a longer one fails
    the call at once. No retry starts if its wait would end more than `total_timeout`
    seconds after the call began. `wait=False` keeps every decision but never sleeps.
    """

    max_attempts: int = 6
    initial_wait: float = 0.5
    exp_base: float = 2.0
    max_wait: float = 10.0
    jitter: float = 0.5
    total_timeout: float = 60.0
    max_retry_after: float = 60.0
    wait: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts!r}")
        for name in ("initial_wait", "max_wait", "jitter", "total_timeout", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not (math.isfinite(self.exp_base) and self.exp_base >= 1):
            raise ValueError(f"exp_base must be a finite number >= 1, not {self.exp_base!r}")

    @classmethod
    def testing(cls, max_attempts: int = 6) -> RetryPolicy:
        """Same decisions as the defaults, but every wait is 0 s: for tests."""
        return cls(max_attempts=max_attempts, wait=False)

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt per call, no retries."""
        return cls(max_attempts=1)


class Retrier:
    """Runs one call under a `RetryPolicy`: first attempt direct, tenacity after a failure."""

    __slots__ = ("_before_sleep", "_policy", "_template")

    def __init__(self, policy: RetryPolicy, before_sleep: BeforeSleep | None = None) -> None:
        self._policy = policy
        self._before_sleep = before_sleep
        self._template = AsyncRetrying(
            sleep=runstop.sleep,
            wait=_PolicyWait(policy),
            retry=_RetryWhen(self),
            reraise=True,
        )

    @property
    def policy(self) -> RetryPolicy:
        """The policy this retrier applies."""
        return self._policy

    async def call(self, attempt: Callable[[], Awaitable[T]], label: str = "") -> tuple[T, int]:
        """`(value, attempts)` of `attempt()` retried under the policy.

        Raises the last error, with `.attempts` set, when it is not retryable or the
        policy stops. Cancellation is never retried. `label` (the path) goes to
        `before_sleep`.
        """
        started = asyncio.get_running_loop().time()
        try:
            return await attempt(), 1
        except TikTokError as exc:
            first = exc
        return await self.after_first(attempt, first, started, label)

    async def after_first(
        self, attempt: Callable[[], Awaitable[T]], first: TikTokError, started: float,
        label: str = "",
    ) -> tuple[T, int]:
        """What `call` does after its first attempt (begun at loop time `started`) raised
        `first`: raise it when it earns no retry, else retry. A caller that runs the first
        attempt itself (the client's hot path: one coroutine fewer a request) goes on here."""
        if not self.should_retry(first, 1):
            raise first
        return await self._after_failure(attempt, first, started, label)

    def should_retry(self, exc: BaseException, attempt_number: int) -> bool:
        """Whether attempt `attempt_number`, which raised `exc`, earns another attempt."""
        if attempt_number >= self._policy.max_attempts or not is_retryable(exc):
            return False
        if runstop.stopped():  # the bulk run this task works for has stopped: no retry
            return False
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after <= self._policy.max_retry_after
        return True

    async def _after_failure(
        self, attempt: Callable[[], Awaitable[T]], first: TikTokError, started: float, label: str
    ) -> tuple[T, int]:
        """Continue a call whose first attempt (begun at loop time `started`) raised `first`,
        which passed `should_retry(first, 1)`."""
        calls = 1
        replay: TikTokError | None = first

        async def next_attempt() -> T:
            nonlocal calls, replay
            if replay is not None:  # tenacity's attempt 1 is the failure we already had
                error, replay = replay, None
                raise error
            calls += 1
            return await attempt()

        deadline = started + self._policy.total_timeout
        stop = stop_after_attempt(self._policy.max_attempts) | _StopAtDeadline(deadline)
        try:
            retrying = self._template.copy(stop=stop, before_sleep=partial(self._announce, label))
            value: T = await retrying(next_attempt)
        except TikTokError as exc:
            exc.attempts = calls
            raise
        return value, calls

    def _announce(self, label: str, state: RetryCallState) -> None:
        if self._before_sleep is not None:
            error = _failure(state)
            if isinstance(error, TikTokError):
                self._before_sleep(label, error, state.attempt_number, state.upcoming_sleep)


def _failure(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome is not None and outcome.failed else None


class _RetryWhen(retry_base):
    """tenacity predicate: `Retrier.should_retry` on the attempt that just failed."""

    def __init__(self, retrier: Retrier) -> None:
        self._retrier = retrier

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _failure(retry_state)
        return error is not None and self._retrier.should_retry(error, retry_state.attempt_number)


class _PolicyWait(wait_base):
    """`Retry-After` when the server gave one (within the cap), else exponential + jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._enabled = policy.wait
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_wait,
            max=policy.max_wait,
            exp_base=policy.exp_base,
            jitter=policy.jitter,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        if not self._enabled:
            return 0.0
        error = _failure(retry_state)
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        return self._backoff(retry_state)


class _StopAtDeadline(stop_base):
    """Stop when the next wait would end after `deadline` (event-loop time)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        now = asyncio.get_running_loop().time()
        return now + retry_state.upcoming_sleep > self._deadline
