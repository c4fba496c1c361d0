"""Retry decisions and waits, on a virtual clock: the wait table is checked exactly."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from tenacity import AsyncRetrying

from tiktok_async._exceptions import (
    BadRequestError,
    ConnectError,
    DecodeError,
    ForbiddenError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TikTokError,
    TruncatedBodyError,
)
from tiktok_async._retry import Retrier, RetryPolicy

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
NO_JITTER = RetryPolicy(jitter=0.0)


class Script:
    """An attempt that raises the scripted errors in turn, then returns "ok"; notes loop times."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(asyncio.get_running_loop().time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    @property
    def waits(self) -> list[float]:
        return [round(b - a, 6) for a, b in zip(self.times, self.times[1:], strict=False)]


def server_error(status: int = 500) -> ServerError:
    return ServerError("Internal server error", status=status)


def run_script(
    run_virtual: Runner, policy: RetryPolicy, script: Script
) -> tuple[object, int] | TikTokError:
    async def scenario() -> tuple[object, int] | TikTokError:
        try:
            return await Retrier(policy).call(script)
        except TikTokError as exc:
            return exc

    result: tuple[object, int] | TikTokError = run_virtual(scenario())
    return result


# The wait table of the defaults without jitter: wait after attempt n (1-based).
WAIT_TABLE = [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]


@pytest.mark.parametrize(("attempt", "wait"), WAIT_TABLE)
def test_wait_table_of_the_defaults(attempt: int, wait: float, run_virtual: Runner) -> None:
    script = Script(*(server_error() for _ in range(5)))
    assert run_script(run_virtual, NO_JITTER, script) == ("ok", 6)
    assert script.waits[attempt - 1] == pytest.approx(wait, abs=1e-5)


def test_waits_are_capped_by_max_wait(run_virtual: Runner) -> None:
    policy = RetryPolicy(max_attempts=8, jitter=0.0, max_wait=3.0, total_timeout=1000)
    script = Script(*(server_error() for _ in range(7)))
    assert run_script(run_virtual, policy, script) == ("ok", 8)
    assert script.waits == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0], abs=1e-5)


def test_jitter_adds_up_to_half_a_second(run_virtual: Runner) -> None:
    random.seed(7)
    for _ in range(20):
        script = Script(*(server_error() for _ in range(5)))
        run_script(run_virtual, RetryPolicy(), script)
        for (_, base), wait in zip(WAIT_TABLE, script.waits, strict=True):
            assert base - 1e-5 <= wait <= base + 0.5 + 1e-5


@pytest.mark.parametrize(
    "error",
    [
        server_error(500),
        server_error(502),
        server_error(503),
        server_error(504),
        server_error(408),
        RateLimitedError("Too Many Requests"),
        ConnectError("connection refused"),
        RequestTimeoutError("timed out"),
        TruncatedBodyError("body cut short"),
    ],
    ids=repr,
)
def test_retryable_errors_are_retried(error: TikTokError, run_virtual: Runner) -> None:
    script = Script(error)
    assert run_script(run_virtual, RetryPolicy.testing(), script) == ("ok", 2)


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("Bad request", status=400),
        ForbiddenError("Forbidden", status=403),
        NotFoundError("User not found", status=404),
        QuotaExceededError("Limit Exceeded", status=429),
        DecodeError("Expected `int`", path="$.stats.followerCount", status=200),
        server_error(501),
    ],
    ids=repr,
)
def test_final_answers_are_not_retried(error: TikTokError, run_virtual: Runner) -> None:
    script = Script(error)
    result = run_script(run_virtual, RetryPolicy(), script)
    assert result is error
    assert error.attempts == 1
    assert len(script.times) == 1


def test_gives_up_after_max_attempts_with_the_last_error(run_virtual: Runner) -> None:
    errors = [server_error() for _ in range(6)]
    script = Script(*errors)
    result = run_script(run_virtual, RetryPolicy.testing(), script)
    assert result is errors[-1]
    assert errors[-1].attempts == 6


def test_a_final_answer_after_retries_carries_the_attempt_count(run_virtual: Runner) -> None:
    missing = NotFoundError("User not found", status=404)
    result = run_script(run_virtual, RetryPolicy.testing(), Script(server_error(), missing))
    assert result is missing
    assert missing.attempts == 2


def test_retry_after_is_waited_exactly(run_virtual: Runner) -> None:
    script = Script(RateLimitedError("Too Many Requests", retry_after=3.0), server_error())
    assert run_script(run_virtual, NO_JITTER, script) == ("ok", 3)
    assert script.waits == pytest.approx([3.0, 1.0], abs=1e-5)


def test_retry_after_beyond_the_cap_fails_at_once(run_virtual: Runner) -> None:
    throttled = RateLimitedError("Too Many Requests", retry_after=3600.0)
    script = Script(throttled)
    assert run_script(run_virtual, RetryPolicy(), script) is throttled
    assert throttled.retry_after == 3600.0
    assert len(script.times) == 1


def test_retry_after_beyond_the_cap_on_a_later_attempt_stops_there(run_virtual: Runner) -> None:
    throttled = RateLimitedError("Too Many Requests", retry_after=61.0)
    script = Script(server_error(), throttled)
    assert run_script(run_virtual, RetryPolicy.testing(), script) is throttled
    assert throttled.attempts == 2


def test_no_retry_starts_whose_wait_ends_after_total_timeout(run_virtual: Runner) -> None:
    errors = [server_error() for _ in range(5)]
    script = Script(*errors)
    policy = RetryPolicy(jitter=0.0, total_timeout=5.0)
    # attempts at 0, 0.5, 1.5, 3.5; the next wait (4 s) would end at 7.5 > 5
    assert run_script(run_virtual, policy, script) is errors[3]
    assert script.times == pytest.approx([0.0, 0.5, 1.5, 3.5], abs=1e-5)
    assert errors[3].attempts == 4


def test_testing_policy_never_sleeps(run_virtual: Runner) -> None:
    script = Script(RateLimitedError("Too Many Requests", retry_after=30.0), server_error())
    assert run_script(run_virtual, RetryPolicy.testing(), script) == ("ok", 3)
    assert max(script.times) < 1e-3


def test_never_policy_makes_one_attempt(run_virtual: Runner) -> None:
    error = server_error()
    assert run_script(run_virtual, RetryPolicy.never(), Script(error)) is error


def test_cancelled_attempt_is_not_retried(run_virtual: Runner) -> None:
    script = Script(server_error(), asyncio.CancelledError())

    async def scenario() -> None:
        await Retrier(RetryPolicy.testing()).call(script)

    with pytest.raises(asyncio.CancelledError):
        run_virtual(scenario())
    assert len(script.times) == 2


def test_cancelling_during_a_backoff_stops_at_once(run_virtual: Runner) -> None:
    script = Script(server_error(), server_error())

    async def scenario() -> float:
        task = asyncio.ensure_future(Retrier(NO_JITTER).call(script))
        await asyncio.sleep(0.2)  # inside the first 0.5 s backoff
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return asyncio.get_running_loop().time()

    assert run_virtual(scenario()) == pytest.approx(0.2, abs=1e-5)
    assert len(script.times) == 1


def test_before_sleep_sees_error_attempt_and_wait(run_virtual: Runner) -> None:
    seen: list[tuple[str, TikTokError, int, float]] = []
    errors = [RateLimitedError("Too Many Requests", retry_after=2.0), server_error()]

    async def scenario() -> tuple[object, int]:
        retrier = Retrier(NO_JITTER, lambda label, e, n, w: seen.append((label, e, n, w)))
        return await retrier.call(Script(*errors), "user/someone")

    assert run_virtual(scenario()) == ("ok", 3)
    assert seen == [("user/someone", errors[0], 1, 2.0), ("user/someone", errors[1], 2, 1.0)]


def test_first_attempt_touches_no_tenacity_object(
    run_virtual: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("tenacity used on the fast path")

    async def scenario() -> tuple[object, int]:
        retrier = Retrier(RetryPolicy())
        monkeypatch.setattr(AsyncRetrying, "copy", forbidden)
        monkeypatch.setattr(AsyncRetrying, "__call__", forbidden)
        return await retrier.call(Script())

    assert run_virtual(scenario()) == ("ok", 1)


def test_concurrent_retried_calls_do_not_share_state(run_virtual: Runner) -> None:
    async def scenario() -> list[tuple[object, int]]:
        retrier = Retrier(NO_JITTER)
        scripts = [Script(*(server_error() for _ in range(n % 4))) for n in range(40)]
        return list(await asyncio.gather(*(retrier.call(s) for s in scripts)))

    results = run_virtual(scenario())
    assert [attempts for _, attempts in results] == [n % 4 + 1 for n in range(40)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_wait": -1.0},
        {"max_wait": float("inf")},
        {"jitter": float("nan")},
        {"total_timeout": -5.0},
        {"exp_base": 0.5},
    ],
)
def test_bad_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)
