"""`RedisLimiter`: one API Gateway token bucket shared by every process, kept in Redis.

The quota belongs to the key, not to a process: N workers that each run the local
`RateLimiter` at the plan's rate send N times too much. `RedisLimiter` keeps the bucket
in Redis, where every worker on every host takes its tokens.

**The algorithm: GCRA with reservations, in one Lua script.** The state is a hash at
`tiktok_async:rl:{sha256(api key)[:16]}` (the key itself is never sent to Redis). Its
field `tat` (theoretical arrival time) is when the bucket would be full again. Each
`acquire()` is ONE round trip (`EVALSHA`, falling back to `EVAL` when Redis lost its
script cache, e.g. after a restart: redis-py's `register_script`):

    now      = redis.call('TIME')                       -- the server's clock, not ours
    start    = max(now, hold)                            -- a 429 cool-down, if any
    new_tat  = max(tat, start) + 1/rate
    at       = max(start, new_tat - burst/rate)         -- when this request may go
    tat      = new_tat; return at - now                  -- the wait, in microseconds

That is exactly API Gateway's token bucket (rate r, burst b, starts full): any window of
T seconds holds at most `r*T + b` grants. The grant is a *reservation*: the script
books the slot and says how long to wait; the caller sleeps that long and sends. No
polling, no second round trip, no lock. Using Redis's `TIME` makes workers on hosts
with skewed clocks agree. A late timer wake-up only delays a send: it never lets two
through early, since the slot was booked on the server's clock.

**Why not the `limits` library.** Its strategies are fixed window, moving window and
sliding-window counter: none is a token bucket with a burst separate from the rate (a
fixed window lets 2x the limit through around a window edge; the moving window keeps
one entry per request and allows the whole limit at once), and `hit()` answers only
yes or no, so a waiter would poll with more round trips to learn when to retry.

**429 cool-down (fixed rate).** `on_throttled(pause)` is synchronous (the client calls
it from its retry path); the pause rides on this worker's next `acquire()` as an
argument of the same script, which raises the shared `hold` field: from then on every
worker's acquire waits it out.

**Shared adaptive rate.** `rate=None`: the rate lives in the hash too, and the script
runs a small AIMD controller on it, so every worker follows one rate. Each worker
counts the 429 `Too Many Requests` it saw and passes the count on its next acquire.
The script starts at `initial` and doubles every 0.5 s (slow start) until the first
429; then it cuts, at most once a second (429s in that second answer requests sent
before the cut): the first by half, later ones to the *measured* quota when the
measure is plausible (at least 30% of the rate), else by 30%. The
measure: while the server's bucket is empty it admits exactly its quota a second, so
(grants - 429s) / seconds since the last cut is the quota; the rate goes to 95% of
it. After a cut the rate holds 5 s, then grows by 2% a second. It grows only while
acquires queue up (`tat` ahead of now: the callers want more than the rate); a rate
nobody uses is not raised. When the rate changes, the backlog already booked is
rescaled to the new rate (in tokens), so new bookings follow the new rate at once;
waiters already sleeping keep their slots (the price: after a change, up to one
backlog of requests, at most the workers' concurrency, go at the old spacing).

Why not the local `AdaptiveRate` on each worker with the minimum published: each
worker sees only its share of the answers, so each would measure its share of the
quota as the whole and cut the shared rate to a fraction of it. One controller on the
global counts, in the same atomic script, does not have that problem.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "Redis",
    "RedisConnectionError",
    "RedisError",
    "RedisLimiter",
    "bucket_key",
    "connect",
]

Redis = aioredis.Redis

KEY_PREFIX = "tiktok_async:rl:"
# Seconds the bucket's hash outlives its last use (then it is a full bucket again anyway).
_IDLE_TTL_MS = 3_600_000
# How long a command keeps retrying through a dropped connection (a Redis restart).
_RETRIES = 30

_ACQUIRE_LUA = """
local key = KEYS[1]
local burst = tonumber(ARGV[1])
local fixed = tonumber(ARGV[2])
local pause = tonumber(ARGV[3])
local throttled = tonumber(ARGV[4])
local initial = tonumber(ARGV[5])
local max_rate = tonumber(ARGV[6])
local min_rate = tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'hold', 'rate', 'cut_at', 'grow_at', 'grants', 'thr')
local tat = tonumber(s[1]) or now
local hold = tonumber(s[2]) or 0
local rate = fixed
if fixed <= 0 then
  rate = tonumber(s[3]) or initial
  local was = rate
  local cut_at = tonumber(s[4]) or 0
  local grow_at = tonumber(s[5]) or now
  local grants = tonumber(s[6]) or 0
  local thr = (tonumber(s[7]) or 0) + throttled
  if throttled > 0 and now - cut_at >= 1.0 then
    local new = rate * 0.7
    if cut_at == 0 then
      new = rate * 0.5
    else
      local measured = (grants - thr) / (now - cut_at)
      if measured >= 0.3 * rate then new = math.min(rate, 0.95 * measured) end
    end
    rate = new
    cut_at = now
    grants = 0
    thr = 0
  elseif throttled == 0 and tat > now then
    local dt = now - grow_at
    if cut_at == 0 then
      rate = rate * math.pow(2, dt / 0.5)
    elseif now - cut_at > 5.0 then
      rate = rate * (1 + 0.02 * dt)
    end
  end
  if max_rate > 0 and rate > max_rate then rate = max_rate end
  if rate < min_rate then rate = min_rate end
  if rate ~= was and tat > now then tat = now + (tat - now) * was / rate end
  redis.call('HSET', key, 'rate', rate, 'cut_at', cut_at, 'grow_at', now,
             'grants', grants + 1, 'thr', thr)
end
if pause > 0 and now + pause > hold then hold = now + pause end
local start = math.max(now, hold)
local interval = 1 / rate
local new_tat = math.max(tat, start) + interval
local at = math.max(start, new_tat - burst * interval)
redis.call('HSET', key, 'tat', new_tat, 'hold', hold)
redis.call('PEXPIRE', key, ARGV[8])
return {math.ceil((at - now) * 1000000), math.floor(rate * 1000)}
"""


def bucket_key(api_key: str) -> str:
    """The Redis key of a bucket: a hash of the API key, never the key itself."""
    return KEY_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def connect(url: str, *, retry_seconds: float = 30.0) -> Redis:
    """A `redis.asyncio.Redis` for `url` whose commands ride out a dropped connection.

    A command that meets a connection error (Redis restarting, a network blip) is
    retried with exponential backoff and jitter (up to 1 s apart) for about
    `retry_seconds`, then the error propagates.
    """
    backoff = ExponentialWithJitterBackoff(cap=1.0, base=0.05)
    retries = max(1, math.ceil(retry_seconds / 0.75))
    retry = Retry(backoff, retries, (RedisConnectionError, RedisTimeoutError))
    return aioredis.Redis.from_url(url, decode_responses=True, retry=retry,
                                   retry_on_error=[RedisConnectionError, RedisTimeoutError])


class RedisLimiter:
    """API Gateway's token bucket (or a shared adaptive rate) kept in Redis.

    ```
    limiter = RedisLimiter(redis, api_key, rate=50, burst=50)   # or rate=None: adaptive
    async with TikTokClient(api_key, base_url, limiter=limiter) as client: ...
    ```

    `redis` is a `redis.asyncio.Redis` (see `connect`) or a URL; a limiter made from a
    URL owns its connection (`aclose()`). Every limiter on the same API key and Redis
    shares one bucket, whatever process or host it runs in. `rate=None` is the shared
    adaptive mode: it starts at `initial`, never goes above `max_rate` (if given).
    All limiters of one key must use the same `rate` and `burst`.
    """

    def __init__(
        self,
        redis: Redis | str,
        api_key: str,
        *,
        rate: float | None = None,
        burst: int = 1,
        initial: float = 10.0,
        max_rate: float | None = None,
        min_rate: float = 0.5,
    ) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a whole number >= 1, not {burst!r}")
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive, finite number or None, not {rate!r}")
        if rate is not None and max_rate is not None:
            raise ValueError("max_rate caps the adaptive rate: give it without a rate")
        self._owned = isinstance(redis, str)
        self._redis: Redis = connect(redis) if isinstance(redis, str) else redis
        self._key = bucket_key(api_key)
        self._fixed = rate
        self._burst = burst
        self._limits = (initial, max_rate or 0.0, min_rate)
        self._rate = rate if rate is not None else min(initial, max_rate or initial)
        self._script = self._redis.register_script(_ACQUIRE_LUA)
        self._pause = 0.0  # a 429 cool-down to publish with the next acquire
        self._throttled = 0  # 429s seen since the last acquire (adaptive mode)
        #: Always False: every acquire books its slot in Redis.
        self.free = False

    @property
    def key(self) -> str:
        """The Redis key of the shared bucket."""
        return self._key

    @property
    def rate(self) -> float | None:
        """Requests a second: the fixed rate, or the shared adaptive rate last seen."""
        return self._rate

    @property
    def burst(self) -> int:
        """The bucket's size."""
        return self._burst

    @property
    def adaptive(self) -> bool:
        """True when the shared rate is found from 429s (no fixed `rate`)."""
        return self._fixed is None

    async def acquire(self) -> None:
        """Book the next slot of the shared bucket (one round trip) and wait for it."""
        pause, throttled = self._pause, self._throttled
        self._pause, self._throttled = 0.0, 0
        try:
            reply = await self._script(keys=[self._key], args=self._args(pause, throttled))
        except BaseException:
            self._pause, self._throttled = max(self._pause, pause), self._throttled + throttled
            raise
        wait_us, rate_milli = _pair(reply)
        self._rate = rate_milli / 1000
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1e6)

    def _args(self, pause: float, throttled: int) -> list[Any]:
        initial, max_rate, min_rate = self._limits
        fixed = self._fixed or 0.0
        return [self._burst, repr(fixed), repr(pause), throttled, repr(initial),
                repr(max_rate), repr(min_rate), _IDLE_TTL_MS]

    def on_success(self) -> None:
        """An answer that was not a 429: nothing to do (growth is in the script)."""

    def on_rate_limited(self) -> None:
        """A 429 `Too Many Requests`: the shared adaptive rate comes down (next acquire)."""
        if self._fixed is None:
            self._throttled += 1

    def on_throttled(self, pause: float | None = None) -> None:
        """A 429 at a fixed rate: every worker's acquires wait `pause` s (default
        `burst / rate`), published with this worker's next acquire."""
        if self._fixed is None:
            return
        if pause is None:
            pause = self._burst / self._fixed
        self._pause = max(self._pause, pause)

    async def reset(self) -> None:
        """Forget the shared state (a full bucket, the adaptive rate from `initial`)."""
        await self._redis.delete(self._key)

    async def aclose(self) -> None:
        """Close the connection if this limiter made it from a URL."""
        if self._owned:
            await self._redis.aclose()

    def __repr__(self) -> str:
        rate = "adaptive" if self._fixed is None else repr(self._fixed)
        return f"RedisLimiter(key={self._key!r}, rate={rate}, burst={self._burst!r})"


def _pair(reply: object) -> tuple[int, int]:
    if not isinstance(reply, list) or len(reply) != 2:
        raise RedisError(f"unexpected reply from the limiter script: {reply!r}")
    return int(reply[0]), int(reply[1])
