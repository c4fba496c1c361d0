"""`tiktok-async worker --redis URL --job NAME`: one consumer of a job's queue.

Reads entries with `XREADGROUP` (after claiming, with `XAUTOCLAIM`, entries another
consumer has left idle for `--claim-idle`: a worker that died or hangs), fetches them with
a `TikTokClient` under the shared `RedisLimiter`, and for each one writes the result,
acknowledges and deletes the entry in one script. It exits when the queue is empty (no
entry left, pending or not), or runs on with `--follow`. A bad key (403) or a used-up
quota (429 Limit Exceeded) stops it with exit 3: the entries it had not answered stay
pending for a later run. Every Redis command rides out a dropped connection (a restart)
with backoff (`_redis_limiter.connect`), and so does the read loop; a missing or refused
Redis password stops it at once (exit 2).

A live worker keeps what it holds: `_Keeper` renews its entries' idle time every third of
`--claim-idle` (`XCLAIM ... JUSTID` to itself, a script call per 1,000 entries), so an
entry waiting its turn, or a slow first fetch, is never taken over and fetched twice. A
worker whose loop stops (killed, hung) stops renewing, and its entries go to the others
after `--claim-idle`. An entry is handed to the client only while its hold is known to be
renewed less than `--claim-idle` ago, so a worker that hung and came back does not fetch
what another worker took over meanwhile (nor takes it back).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from .._bulk import Result, run_bulk
from .._client import TikTokClient
from .._exceptions import TikTokError
from .._kinds import Kind, Parsed
from .._models import decode_json, to_builtins
from .._redis_limiter import (
    Redis,
    RedisAuthError,
    RedisConnectionError,
    RedisError,
    RedisLimiter,
    connect,
)
from .._rows import error_message, outcome
from .._runstop import RunStop
from ._common import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    abort_reason,
    add_client_arguments,
    api_key_from,
    client_from,
    positive_float,
    positive_int,
)
from ._jobkeys import (
    GROUP,
    JobKeys,
    ensure_group,
    existing_job_kind,
    invalid_field,
    result_value,
    run_job_command,
)

__all__ = ["ScaleWorker", "register"]

#: The fewest entries read from the queue at once.
MIN_BATCH = 16
#: Entry ids renewed in one script call (one XCLAIM).
KEEP_BATCH = 1000

_T = TypeVar("_T")

# KEYS: results, counts, queue, tick; ARGV: group, entry id, field, value, kind.
_RECORD_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[3])
local kind = ARGV[5]
if not old then
  redis.call('HINCRBY', KEYS[2], kind, 1)
else
  local was = string.match(old, '^[^\\n]*')
  if was ~= kind then
    redis.call('HINCRBY', KEYS[2], was, -1)
    redis.call('HINCRBY', KEYS[2], kind, 1)
  end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 120)
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return 1
"""


# KEYS: queue; ARGV: group, consumer, entry ids. The ids this consumer still holds get their
# idle time reset (XCLAIM to itself, JUSTID: the delivery count stays); returns the ids
# another consumer holds now. An id no longer pending (acked meanwhile) is left alone.
_KEEP_LUA = """
local mine, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] then
    if p[1][2] == ARGV[2] then
      mine[#mine + 1] = ARGV[i]
    else
      lost[#lost + 1] = ARGV[i]
    end
  end
end
if #mine > 0 then
  mine[#mine + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine))
end
return lost
"""


def register(parser: argparse.ArgumentParser) -> None:
    """The `worker` options (the parser already has --redis and --job)."""
    add = parser.add_argument
    add_client_arguments(parser, rate_help="the key's requests per second, shared by all "
                                           "workers (default: adaptive)")
    add("--claim-idle", type=positive_float, default=30.0,
        help="seconds a worker that died or hangs keeps its entries before the others "
             "take them over (default 30; a live worker renews its hold every third of it)")
    add("--batch", type=positive_int, default=None,
        help="entries read at once (default: twice the requests in flight now)")
    add("--follow", action="store_true", help="keep waiting for new entries")
    parser.set_defaults(func=lambda args: run_job_command(args, _worker))


async def _worker(args: argparse.Namespace) -> int:
    api_key = api_key_from(args)
    job = JobKeys(args.job)
    redis = connect(args.redis)  # connects at the first command
    try:
        limiter = RedisLimiter(redis, api_key, rate=args.rate, burst=args.burst,
                               max_rate=args.max_rate)
        client = client_from(args, limiter)
        kind = await existing_job_kind(redis, job)
        worker = ScaleWorker(redis, job, kind, client, claim_idle=args.claim_idle,
                             batch=args.batch, follow=args.follow)
        return await worker.run()
    finally:
        await redis.aclose()


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stream entry: its id and the input it carries."""

    id: str
    text: str
    line: int | None


class _Keeper:
    """The entries this worker holds (read, not yet answered), kept from the others.

    `run()` renews them every `every` s (a third of `claim_idle`); `refresh()` renews
    them now. An entry another consumer took over meanwhile (this worker hung, or Redis
    was away) is dropped from `held` and counted in `lost`, never taken back.
    """

    def __init__(self, redis: Redis, job: JobKeys, consumer: str, claim_idle: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job, self.consumer, self.claim_idle = job, consumer, claim_idle
        self.every = claim_idle / 3
        self.held: set[str] = set()
        self.lost = 0
        self._clock = clock
        self._renewed_at = clock()  # when the last complete refresh started
        self._keep = redis.register_script(_KEEP_LUA)

    def hold(self, ids: Iterable[str]) -> None:
        self.held.update(ids)

    def release(self, entry_id: str) -> None:
        self.held.discard(entry_id)

    def fresh(self) -> bool:
        """Every held entry was read or renewed less than `claim_idle` ago: none can
        have been taken over."""
        return self._clock() - self._renewed_at < self.claim_idle

    async def refresh(self) -> None:
        """Renew every held entry now: one script call per `KEEP_BATCH` ids."""
        started = self._clock()
        ids = list(self.held)
        for i in range(0, len(ids), KEEP_BATCH):
            lost = await self._keep(keys=[self.job.queue],
                                    args=[GROUP, self.consumer, *ids[i:i + KEEP_BATCH]])
            self.held.difference_update(lost)
            self.lost += len(lost)
        self._renewed_at = started

    async def run(self) -> None:
        """Renew on a timer until cancelled (the worker's end, or Ctrl-C)."""
        while True:
            await asyncio.sleep(self.every)
            await _until_done(self.refresh)


class ScaleWorker:
    """One consumer of a job: read, fetch, record, acknowledge, until the queue is empty."""

    def __init__(self, redis: Redis, job: JobKeys, kind: Kind[Any, Any], client: TikTokClient, *,
                 claim_idle: float = 30.0, batch: int | None = None, follow: bool = False,
                 consumer: str | None = None) -> None:
        self.redis, self.job, self.kind, self.client = redis, job, kind, client
        self.claim_idle_ms = max(1, int(claim_idle * 1000))
        self._batch = batch
        self.follow = follow
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.answered = self.failed = 0
        self.keeper = _Keeper(redis, job, self.consumer, self.claim_idle_ms / 1000)
        self._record = redis.register_script(_RECORD_LUA)
        # Set by an answer that stops the run (a refused key, a used-up quota): the reading
        # ends then, though this worker's own entries keep the queue from being empty.
        self._stop = RunStop()

    async def run(self) -> int:
        """Work until the queue is empty; the exit code."""
        await ensure_group(self.redis, self.job)
        keeping = asyncio.create_task(self.keeper.run())
        try:
            code = await self._work()
        finally:  # no renewal once stopped (done, aborted, Ctrl-C): what is left goes idle
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping
        await self._leave_group()
        return code

    async def _leave_group(self) -> None:
        """Leave the consumer group (`status` counts its members) when this worker holds
        no entry: deleting a consumer drops the entries it holds from the group's
        pending list, where no other worker would find them."""
        with contextlib.suppress(RedisError):  # bookkeeping: the work is done and recorded
            held = await self.redis.xpending_range(self.job.queue, GROUP, "-", "+", 1,
                                                   consumername=self.consumer)
            if not held:
                await self.redis.xgroup_delconsumer(self.job.queue, GROUP, self.consumer)

    async def _work(self) -> int:
        try:
            async with self.client:
                results = run_bulk(self.client, self.kind, self._parsed_entries(),
                                   dedupe=False, stop=self._stop)
                async with aclosing(results):
                    async for result in results:
                        await self._store(result)
        except TikTokError as exc:  # an answer that stopped the run (run_bulk says which)
            print(f"tiktok-async worker: aborted: {abort_reason(exc, self.client.base_url)}",
                  file=sys.stderr)
            return EXIT_ABORTED
        lost = self.keeper.lost
        taken = f", {lost} taken over by other workers" if lost else ""
        print(f"tiktok-async worker {self.consumer}: {self.answered} answered, "
              f"{self.failed} failed{taken}", file=sys.stderr)
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    # -- reading ------------------------------------------------------------------------

    async def _entries(self) -> AsyncIterator[_Entry]:
        while self._stop.error is None:  # a batch reads for a second at most
            entries = await _until_done(self._next_batch)
            if not entries and not self.follow and await _until_done(self._drained):
                return
            self.keeper.hold(entry.id for entry in entries)
            for entry in entries:
                if await self._still_held(entry):
                    yield entry

    async def _still_held(self, entry: _Entry) -> bool:
        """Whether `entry` is still this worker's to fetch (renewed first when the hold may
        have lapsed: the loop was stalled, or Redis away, for `--claim-idle`)."""
        if not self.keeper.fresh():
            await _until_done(self.keeper.refresh)
        return entry.id in self.keeper.held

    @property
    def batch(self) -> int:
        """Entries read at once: `--batch`, or twice the client's concurrency now (it
        follows latency), so the other workers find entries to take."""
        return self._batch or max(MIN_BATCH, 2 * self.client.concurrency)

    async def _next_batch(self) -> list[_Entry]:
        claimed = await self.redis.xautoclaim(self.job.queue, GROUP, self.consumer,
                                              self.claim_idle_ms, "0-0", count=self.batch)
        entries = [e for e in _entries_of(claimed[1]) if e.id not in self.keeper.held]
        if entries:
            return entries
        block = min(1000, self.claim_idle_ms)
        read: Any = await self.redis.xreadgroup(GROUP, self.consumer, {self.job.queue: ">"},
                                                count=self.batch, block=block)
        return [e for stream in read or [] for e in _entries_of(stream[1])]

    async def _drained(self) -> bool:
        """Nothing left: every entry was answered and deleted (none queued or pending)."""
        return int(await self.redis.xlen(self.job.queue)) == 0

    # -- fetching -----------------------------------------------------------------------

    async def _parsed_entries(self) -> AsyncIterator[Parsed[Any]]:
        parse = self.kind.parse
        async for entry in self._entries():
            yield parse(entry.text).replace(raw=entry)

    # -- recording ----------------------------------------------------------------------

    async def _store(self, result: Result[Any]) -> None:
        entry = result.input
        assert isinstance(entry, _Entry)
        kind, field, row = self._row(entry, result)
        if kind == "failed":
            self.failed += 1
        else:
            self.answered += 1
        job = self.job
        keys = [job.results, job.counts, job.queue, job.tick(int(time.time()))]
        args = [GROUP, entry.id, field, result_value(kind, row), kind]
        await _until_done(lambda: self._record(keys=keys, args=args))  # an answer paid for
        self.keeper.release(entry.id)

    @staticmethod
    def _row(entry: _Entry, result: Result[Any]) -> tuple[str, str, dict[str, Any]]:
        error = result.error
        if error is None:
            assert result.key is not None
            row = {"input": entry.text, "key": result.key, "line": entry.line,
                   "record": to_builtins(result.value)}
            return "ok", result.key, row
        kind = outcome(error)
        row = {"input": entry.text, "key": result.key, "status": error.status,
               "message": error_message(error), "attempts": result.attempts, "line": entry.line}
        field = result.key if result.key is not None else invalid_field(entry.text)
        return kind, field, row


async def _until_done(call: Callable[[], Awaitable[_T]]) -> _T:
    """`call()`, again after each dropped connection, for as long as Redis takes to return
    (a refused password is raised: waiting does not mend it)."""
    backoff = 0.1
    while True:
        try:
            return await call()
        except RedisAuthError:
            raise
        except RedisConnectionError as exc:
            backoff = await _wait_for_redis(exc, backoff)


async def _wait_for_redis(exc: Exception, backoff: float) -> float:
    """Say Redis is unreachable, sleep `backoff` s; the next backoff (doubled, 5 s cap)."""
    print(f"tiktok-async worker: Redis unreachable ({exc}); retrying in {backoff:.1f} s",
          file=sys.stderr)
    await asyncio.sleep(backoff)
    return min(backoff * 2, 5.0)


def _entries_of(stream: Any) -> list[_Entry]:
    entries = []
    for entry_id, fields in stream or []:
        if not fields:
            continue  # deleted while pending
        item = decode_json(fields["item"])
        entries.append(_Entry(str(entry_id), str(item["input"]), item.get("line")))
    return entries

