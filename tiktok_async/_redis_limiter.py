"""`RedisLimiter`: one API Gateway token bucket shared by every process, kept in Redis.

The quota belongs to the key, not to a process: N workers that each run the local
`RateLimiter` at the plan's rate send N times too much. `RedisLimiter` keeps the bucket
in Redis, where every worker on every host takes its tokens.

**The bucket: GCRA with reservations on a token clock, in one Lua script.** The state
is a hash at `tiktok_async:rl:{sha256(api key)[:16]}` (the key itself is never sent to
Redis). Slots are counted in tokens: token v is due at `at + (v - av) / ar`, where
(`at`, `av`, `ar`) is the anchor: a time (Redis's `TIME`, so workers on hosts with
skewed clocks agree), the token due then, and the rate since. `vtat` is the token where
the bucket would be full again. Each `acquire()` is ONE round trip (`EVALSHA`, falling
back to `EVAL` when Redis lost its script cache, e.g. after a restart):

    v_now  = av + (max(now, hold) - at) * ar              -- `hold`: a 429 cool-down
    vtat   = max(vtat, v_now) + 1
    due    = max(v_now, vtat - burst)                      -- the slot booked for us

That is exactly API Gateway's token bucket (rate r, burst b, starts full): any window of
T seconds holds at most `r*T + b` grants. A rate change moves the anchor to now and
keeps every booking's place in tokens, so the slots already booked, also by tasks that
sleep, stretch or shrink with the new rate. Each worker converts tokens to its loop's
time with the newest anchor a reply brought (and the clock offset that reply showed:
a slot is never early by Redis's clock, only late by a reply's latency) and wakes its
sleepers by it. Two rules keep that anchor fresh and the slots booked ahead few:

- a worker books a new slot only while its newest one (and one slot for each booking
  on its way) is due within 50 ms (`_slots`); the rest of its tasks wait in line at
  home, first come, first served;
- while its tasks wait and no reply came for half a slot (20-250 ms), it runs the
  script without booking, to hear the anchor (and report its answers).

**Why not the `limits` library.** Its strategies are fixed window, moving window and
sliding-window counter: none is a token bucket with a burst separate from the rate, and
`hit()` answers only yes or no, so a waiter would poll with more round trips to learn
when to retry.

**429 cool-down (fixed rate).** `on_throttled(pause)` is synchronous (the client calls
it from its retry path); the pause rides on this worker's next `acquire()` as an
argument of the same script, which raises the shared `hold` field: from then on every
worker's bookings start after it, at the rate, without a burst (slots booked before
the 429 were still sent during the pause, so the server's bucket is not full then).

**Shared adaptive rate (`rate=None`).** The algorithm is `_adaptive`'s, the one the
in-process client runs (its module docstring has the rules): the same rules in Lua
(`lua_rules()`, generated from the same `Tuning`), run inside this script on state kept
in the same hash, fed with every worker's answers. A worker counts its good answers and
429s and reports them with its next booking, or on its own after `_REPORT_AFTER`
(20 ms) when no booking carries them first, at once for a 429: the controller sees the
answers of all workers within a few tens of milliseconds, with Redis's clock. One
controller on the global counts, in one atomic script, so no worker mistakes its share
of the quota for the whole. tests/test_adaptive_scenarios.py checks the Lua takes the
Python's decisions to the last bit, and both pass the same scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError as RedisAuthError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._adaptive import STATE_FIELDS, AdaptiveState, lua_rules
from ._slots import Slots

__all__ = [
    "Redis",
    "RedisAuthError",
    "RedisConnectionError",
    "RedisError",
    "RedisLimiter",
    "bucket_key",
    "connect",
    "gives_password",
]

Redis = aioredis.Redis
_T = TypeVar("_T")

KEY_PREFIX = "tiktok_async:rl:"
# Seconds the bucket's hash outlives its last use (then it is a full bucket again anyway).
_IDLE_TTL_MS = 3_600_000
# Answers wait at most this long for a booking to carry them, then go on their own.
_REPORT_AFTER = 0.02
# While tasks wait, the anchor is fetched again when nothing was heard for half a slot
# (within these bounds, seconds): a worker whose tasks all sleep books nothing.
_REFRESH_BOUNDS = (0.02, 0.25)


# ARGV: burst, fixed rate (0: adaptive), pause, ok, throttled, initial, max rate (0: none),
# min rate, TTL ms, book (1) or report only (0), now ('': Redis's TIME; tests pass one),
# requests sent (their slots came) since the last run, the shortest round trip heard since
# (0: none).
_SCRIPT = """
local key = KEYS[1]
local burst, fixed, pause = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ok, throttled, initial = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_rate, min_rate = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = tonumber(ARGV[11])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local FIELDS = {FIELDS}
{RULES}
local function fmt(x) return string.format('%.17g', x) end
local g = redis.call('HMGET', key, 'vtat', 'at', 'av', 'ar', 'hold', unpack(FIELDS))
local hold = tonumber(g[5]) or 0
local rate, s = fixed, nil
if fixed <= 0 then
  s = {}
  local fresh = FRESH
  for i, name in ipairs(FIELDS) do s[name] = tonumber(g[5 + i]) or fresh[name] end
  if g[6] == false then s = fresh; s.rate = clamp(initial) end
  local sent, rtt = tonumber(ARGV[12]), tonumber(ARGV[13])
  if rtt > 0 then on_round_trip(s, rtt) end
  if ok + throttled + sent > 0 then on_answers(s, now, ok, throttled, sent) end
  rate = s.rate
  if s.paused_until - now > pause then pause = s.paused_until - now end
end
local at, av, ar = tonumber(g[2]) or now, tonumber(g[3]) or 0, tonumber(g[4]) or rate
if ar ~= rate then av = av + (now - at) * ar; at = now; ar = rate end
local vtat = tonumber(g[1])
if pause > 0 and now + pause > hold then
  hold = now + pause
  vtat = math.max(vtat or 0, av + (hold - at) * ar + burst - 1)
end
local v_now = av + (math.max(now, hold) - at) * ar
vtat = vtat or v_now
local due = v_now
if ARGV[10] == '1' then
  vtat = math.max(vtat, v_now) + 1
  due = math.max(v_now, vtat - burst)
end
local out = {'vtat', fmt(vtat), 'at', fmt(at), 'av', fmt(av), 'ar', fmt(ar), 'hold', fmt(hold)}
if s ~= nil then
  for _, name in ipairs(FIELDS) do out[#out + 1] = name; out[#out + 1] = fmt(s[name]) end
end
redis.call('HSET', key, unpack(out))
redis.call('PEXPIRE', key, ARGV[9])
return {fmt(due), fmt(at), fmt(av), fmt(ar), fmt(now)}
"""


def _script() -> str:
    """The script: the adaptive rules and the state's fields from `_adaptive`."""
    fresh = AdaptiveState(rate=0.0)
    names = ", ".join(f"'{name}'" for name in STATE_FIELDS)
    defaults = ", ".join(f"{name} = {getattr(fresh, name)!r}" for name in STATE_FIELDS)
    return (_SCRIPT.replace("{FIELDS}", "{" + names + "}").replace("{RULES}", lua_rules())
            .replace("FRESH", "{" + defaults + "}"))


def bucket_key(api_key: str) -> str:
    """The Redis key of a bucket: a hash of the API key, never the key itself."""
    return KEY_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def connect(url: str, *, retry_seconds: float = 30.0) -> Redis:
    """A `redis.asyncio.Redis` for `url` whose commands ride out a dropped connection.

    A command that meets a connection error (Redis restarting, a network blip) is
    retried with exponential backoff and jitter (up to 1 s apart) for about
    `retry_seconds`, then the error propagates. A missing or refused password is raised
    at once (`RedisAuthError`). A cancel that comes while a command runs is never lost
    (`_keeping_cancel`).
    """
    backoff = ExponentialWithJitterBackoff(cap=1.0, base=0.05)
    retries = max(1, math.ceil(retry_seconds / 0.75))
    retry = _AuthFailsFast(backoff, retries, (RedisConnectionError, RedisTimeoutError))
    return _Redis.from_url(url, decode_responses=True, retry=retry,
                           retry_on_error=[RedisConnectionError, RedisTimeoutError])


async def _keeping_cancel(command: Awaitable[_T]) -> _T:
    """`await command`; a cancel of the task that came meanwhile is raised, even when it
    got lost inside. redis-py sends each command through `asyncio.wait_for`, which before
    Python 3.12 returns the result when the cancel comes in the turn the send ends: the
    cancel is gone (`cancelling()` says 1), the task goes on as if none had come, and
    whoever cancelled it and awaits its end (the bulk pool closing on Ctrl-C or SIGTERM)
    waits for good. (Python 3.10 does not count cancels: nothing to see there.)"""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    before = 0 if cancelling is None else cancelling()
    result = await command
    if cancelling is not None and cancelling() > before:
        raise asyncio.CancelledError
    return result


class _Redis(aioredis.Redis):
    """`redis.asyncio.Redis` whose commands never lose a cancel (`_keeping_cancel`)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _keeping_cancel(command)


def gives_password(url: str) -> bool:
    """Whether the Redis URL carries a password (`redis://:PASSWORD@host`, `?password=`)."""
    return bool(parse_url(url).get("password"))


class _AuthFailsFast(Retry):
    """redis-py's retry, but a refused or missing password (`AuthenticationError`, which
    redis-py makes a `ConnectionError`) is raised at once: waiting does not mend it.

    Through the failure handler, which redis-py awaits after each failure with the error
    first (so in 5 and 6 as in 8), not through `call_with_retry`'s later parameters."""

    async def call_with_retry(self, do: Callable[[], Awaitable[_T]], fail: Any,
                              *args: Any, **kwargs: Any) -> _T:
        async def failed(error: Exception, *more: Any) -> Any:
            handled = await fail(error, *more)
            if isinstance(error, RedisAuthError):
                raise error
            return handled

        return await super().call_with_retry(do, failed, *args, **kwargs)


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
    All limiters of one key must use the same `rate` and `burst`. `clock` (seconds) is
    for simulations: the script then keeps time by it instead of Redis's `TIME`.
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
        clock: Callable[[], float] | None = None,
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
        self._clock = clock
        self._rate = rate if rate is not None else min(initial, max_rate or initial)
        self._script = self._redis.register_script(_script())
        self._pause = 0.0  # a 429 cool-down to publish with the next acquire
        self._ok = self._throttled = self._sent = 0  # not reported yet (adaptive mode)
        self._round_trip = 0.0  # the shortest heard since the last report; 0: none
        self._slots = Slots()
        self._keeper: _Keeper | None = None
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
    def queued(self) -> bool:
        """True while tasks wait for a slot or for the turn to book one."""
        return self._slots.waiting()

    @property
    def adaptive(self) -> bool:
        """True when the shared rate is found from 429s (no fixed `rate`)."""
        return self._fixed is None

    async def acquire(self) -> None:
        """Book the next slot of the shared bucket (one round trip) and wait for it."""
        slots = self._slots
        if not slots.turn_now():
            self._keeper_now().soon(self._refresh_after())
            await slots.take_turn()
        due = None
        try:  # a Redis lent to us (not `connect`'s) loses cancels: every request waits here
            due = await _keeping_cancel(self._run(book=True))
        finally:
            slots.end_turn(due)
        if not slots.due(due):
            self._keeper_now().soon(self._refresh_after())
            await slots.wait_for(due)
        if self._fixed is None:  # a request goes out: the shared rate counts it
            self._sent += 1
            self._keeper_now().soon(_REPORT_AFTER)

    async def _run(self, *, book: bool) -> float:
        """One run of the script: publish the pause and the answers, book a slot or not;
        the slot's token (or the token due now)."""
        pause, counts = self._pause, (self._ok, self._throttled, self._sent)
        self._pause, self._ok, self._throttled, self._sent = 0.0, 0, 0, 0
        round_trip, self._round_trip = self._round_trip, 0.0
        now = None if self._clock is None else self._clock()
        args = self._args(pause, counts, book, now, round_trip)
        try:
            reply = await self._script(keys=[self._key], args=args)
        except BaseException:
            self._pause = max(self._pause, pause)
            self.on_round_trip(round_trip)
            ok, throttled, sent = counts
            self._ok, self._throttled = self._ok + ok, self._throttled + throttled
            self._sent += sent
            raise
        due, at, av, ar, server_now = _numbers(reply)
        self._rate = ar
        self._slots.follow(at, av, ar, server_now)
        return due

    def _args(self, pause: float, counts: tuple[int, int, int], book: bool,
              now: float | None, round_trip: float) -> list[Any]:
        initial, max_rate, min_rate = self._limits
        fixed = self._fixed or 0.0
        ok, throttled, sent = counts
        return [self._burst, repr(fixed), repr(pause), ok, throttled, repr(initial),
                repr(max_rate), repr(min_rate), _IDLE_TTL_MS, int(book),
                "" if now is None else repr(now), sent, repr(round_trip)]

    def on_success(self) -> None:
        """An answer that was not a 429: counted for the shared adaptive rate."""
        if self._fixed is None:
            self._ok += 1
            self._keeper_now().soon(_REPORT_AFTER)

    def on_round_trip(self, seconds: float) -> None:
        """An answer came `seconds` after its request went out: the shortest since the last
        report goes with it (the shared slow start's pace follows the first ones)."""
        if self._fixed is None and seconds > 0:
            self._round_trip = min(self._round_trip or seconds, seconds)

    def on_rate_limited(self) -> None:
        """A 429 `Too Many Requests`: the shared adaptive rate hears of it at once."""
        if self._fixed is None:
            self._throttled += 1
            self._keeper_now().soon(0.0)

    def on_throttled(self, pause: float | None = None) -> None:
        """A 429 at a fixed rate: every worker's acquires wait `pause` s (default
        `burst / rate`), published with this worker's next acquire."""
        if self._fixed is None:
            return
        if pause is None:
            pause = self._burst / self._fixed
        self._pause = max(self._pause, pause)

    def _keeper_now(self) -> _Keeper:
        if self._keeper is None:
            self._keeper = _Keeper(self)
        return self._keeper

    def _refresh_after(self) -> float:
        low, high = _REFRESH_BOUNDS
        return min(high, max(low, 0.5 / (self._rate or 1.0)))

    async def report(self) -> None:
        """Send the answers not reported yet, and fetch the anchor if tasks wait and
        nothing was heard lately (no booking). The keeper calls it."""
        stale = self._slots.stale(self._refresh_after() / 2)
        if self._ok or self._throttled or self._sent or stale:
            await self._run(book=False)
        if self._slots.waiting():
            self._keeper_now().soon(self._refresh_after())

    async def reset(self) -> None:
        """Forget the shared state (a full bucket, the adaptive rate from `initial`)."""
        await self._redis.delete(self._key)
        self._slots = Slots()

    async def aclose(self) -> None:
        """Stop reporting; close the connection if this limiter made it from a URL."""
        if self._keeper is not None:
            await self._keeper.aclose()
        if self._owned:
            await self._redis.aclose()

    def __repr__(self) -> str:
        rate = "adaptive" if self._fixed is None else repr(self._fixed)
        return f"RedisLimiter(key={self._key!r}, rate={rate}, burst={self._burst!r})"


class _Keeper:
    """Keeps a limiter in touch when no booking does: sends its answers (within
    `_REPORT_AFTER`, a 429 at once) and, while its tasks wait, fetches the anchor. One
    run of the script at a time, in a task of its own."""

    def __init__(self, limiter: RedisLimiter) -> None:
        self._limiter = limiter
        # Not TimerHandle.when(): uvloop hands out a plain Handle for a time already due.
        self._timer: asyncio.Handle | None = None
        self._when = math.inf
        self._task: asyncio.Task[None] | None = None

    def soon(self, delay: float) -> None:
        """Report within `delay` seconds (sooner than a report already planned)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._timer is not None and self._when <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._when = loop.call_at(when, self._start), when

    def _start(self) -> None:
        self._timer, self._when = None, math.inf
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())
        else:
            self.soon(_REPORT_AFTER)  # one is on its way: the next goes after it

    async def _send(self) -> None:
        with contextlib.suppress(RedisError):  # the answers stay counted for the next run
            await self._limiter.report()

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _numbers(reply: object) -> tuple[float, float, float, float, float]:
    if not isinstance(reply, list) or len(reply) != 5:
        raise RedisError(f"unexpected reply from the limiter script: {reply!r}")
    due, at, av, ar, now = (float(x) for x in reply)
    return due, at, av, ar, now
