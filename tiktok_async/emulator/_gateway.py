"""What API Gateway does before the backend: routes, keys, usage plans, its own answers.

Pure parts, no I/O: the token bucket and the quota take an injectable clock, so they are
tested without sleeping.

- `TokenBucket(rate, burst)`: API Gateway's throttle. The bucket holds `burst` tokens and
  starts full; it refills at `rate` tokens a second; a request takes one token or is
  answered 429 `Too Many Requests`. Over any window of `t` seconds at most
  `burst + rate * t` requests pass.
- `Quota(limit, period)`: at most `limit` requests per fixed window of `period` seconds,
  the first window starting when the quota is made; then 429 `Limit Exceeded`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from urllib.parse import unquote

Clock = Callable[[], float]

QUOTA_PERIODS = {"day": 86_400.0, "week": 7 * 86_400.0, "month": 30 * 86_400.0}


class TokenBucket:
    """API Gateway's throttle: `rate` tokens a second into a bucket of `burst`, full at first."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def try_acquire(self) -> bool:
        """Take a token if there is one; False means: answer 429 Too Many Requests."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        """Tokens in the bucket as of the last call."""
        return self._tokens


class Quota:
    """At most `limit` requests per fixed window of `period` seconds."""

    __slots__ = ("_clock", "_start", "_window", "limit", "period", "used")

    def __init__(self, limit: int, period: float, clock: Clock = time.monotonic) -> None:
        if limit < 0 or period <= 0:
            raise ValueError("limit must be >= 0 and period > 0")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._start = clock()
        self._window = 0
        self.used = 0

    def try_acquire(self) -> bool:
        """Count a request if the quota allows it; False means: 429 Limit Exceeded."""
        window = int((self._clock() - self._start) // self.period)
        if window != self._window:
            self._window = window
            self.used = 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def reset_in(self) -> float:
        """Seconds until the current window ends."""
        elapsed = self._clock() - self._start
        return self.period - (elapsed % self.period)


def parse_period(text: str | float) -> float:
    """A quota period: seconds, or `day` / `week` / `month` (30 days); ValueError naming
    what is accepted."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return QUOTA_PERIODS.get(text.strip().lower()) or float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a period: seconds (3600), or one of "
                         f"{', '.join(QUOTA_PERIODS)}") from None


def default_burst(rate: float) -> int:
    """The burst used when only a rate is given: one second's worth, at least 1."""
    return max(1, math.ceil(rate))


class UsagePlan:
    """A throttle and a quota per API key, made on a key's first request."""

    def __init__(
        self,
        rate: float | None,
        burst: int | None,
        quota: int | None,
        quota_period: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None or rate is None else default_burst(rate)
        self.quota = quota
        self.quota_period = quota_period
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._quotas: dict[str, Quota] = {}
        self.active = rate is not None or quota is not None

    def check(self, key: str) -> str | None:
        """None if the request may pass, else the fault: `throttle` or `quota`."""
        if self.rate is not None and self.burst is not None:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            if not bucket.try_acquire():
                return "throttle"
        if self.quota is not None:
            quota = self._quotas.get(key)
            if quota is None:
                quota = self._quotas[key] = Quota(self.quota, self.quota_period, self._clock)
            if not quota.try_acquire():
                return "quota"
        return None


@dataclass(frozen=True)
class GatewayError:
    """An answer API Gateway (or the backend behind it) gives instead of data."""

    status: int
    message: str
    error_type: str


ERRORS: dict[str, GatewayError] = {
    "forbidden": GatewayError(403, "Forbidden", "ForbiddenException"),
    "route": GatewayError(
        403, "Missing Authentication Token", "MissingAuthenticationTokenException"
    ),
    "throttle": GatewayError(429, "Too Many Requests", "TooManyRequestsException"),
    "quota": GatewayError(429, "Limit Exceeded", "LimitExceededException"),
    "500": GatewayError(500, "Internal server error", "InternalServerErrorException"),
    "502": GatewayError(502, "Internal server error", "InternalServerErrorException"),
    "503": GatewayError(503, "Service Unavailable", "ServiceUnavailableException"),
    "504": GatewayError(504, "Endpoint request timed out", "IntegrationTimeoutException"),
    "408": GatewayError(408, "Request Timeout", "RequestTimeoutException"),
    "user_missing": GatewayError(404, "User not found", "NotFoundException"),
    "video_missing": GatewayError(404, "Video not found", "NotFoundException"),
}


def bad_request(message: str) -> GatewayError:
    """A 400 from the backend: the path part breaks the rules."""
    return GatewayError(400, message, "BadRequestException")


class RequestIds:
    """Request ids in UUID form: a random prefix per process and a counter (cheap)."""

    def __init__(self) -> None:
        raw = os.urandom(10).hex()
        self._prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[12:15]}-a{raw[15:18]}-"
        self._counter = count(int.from_bytes(os.urandom(3), "big") << 24)  # < 2^48 for years

    def next(self) -> str:
        """A new request id."""
        return f"{self._prefix}{next(self._counter):012x}"


#: A matched API route, (name, parts): `user` with (handle,) or `video` with (handle,
#: video_id). A plain tuple of strings, not a class: the emulator keeps one per path seen
#: (its route cache, up to 100,000), and the garbage collector stops tracking such
#: tuples; as objects they made its full collections take up to 0.35 s at 1,000 new
#: handles a second.
Route = tuple[str, tuple[str, ...]]


def match_route(raw_path: str, prefix: str) -> Route | None:
    """Match a raw (still percent-encoded) path against the two routes under `prefix`.

    None means API Gateway's 403 Missing Authentication Token. Parts are percent-decoded
    after the split, so `%2F` stays inside its part.
    """
    path = raw_path.partition("?")[0]
    if not path.startswith(prefix) or path[len(prefix) : len(prefix) + 1] != "/":
        return None
    segments = path[len(prefix) + 1 :].split("/")
    if segments[-1] == "" and len(segments) > 1:
        segments.pop()  # API Gateway ignores one trailing slash
    name = segments[0]
    if not ((name == "user" and len(segments) == 2) or (name == "video" and len(segments) == 3)):
        return None
    parts = tuple(unquote(s, errors="replace") if "%" in s else s for s in segments[1:])
    if any(not p for p in parts):
        return None
    return name, parts
