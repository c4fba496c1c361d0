"""Scale out with Redis: `enqueue`, `worker`, `collect` and `status` of one job.

A job is a handful of Redis keys under `tiktok_async:job:{NAME}:`:

- `queue`: a Stream of pending inputs (`item` = `{"input", "line"}` as JSON), read by
  the consumer group `workers`. An entry is deleted once its result is written.
- `seen`: a set of the normalised keys (and `invalid:<text>`) ever enqueued: a re-run of
  `enqueue`, or an input listed twice, adds nothing. An exact set, not a HyperLogLog:
  "probably seen" would drop inputs.
- `results`: a hash from the normalised key to `<kind>\\n<JSON record>` (kind `ok`,
  `not_found`, `failed`, `invalid`). `HSET`, so a redelivered item never doubles a row.
- `counts`: results by kind; `meta`: the job's kind (`users` or `videos`);
  `tick:<epoch second>`: results written in that second (for `status`'s rate).

Delivery is at least once: a worker writes an item's result, then acknowledges and
deletes the entry in the same script (results before acks, so an append-only file that
loses its tail after a crash loses the ack, never a result). A live worker renews its
hold on the entries it has read (their idle time) every third of `--claim-idle`; one
that dies or hangs stops renewing, and the others claim its entries (`XAUTOCLAIM`) once
idle for `--claim-idle`. The worker itself is in `_worker`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any

from .._kinds import KINDS, Kind, Parsed
from .._models import encode_json
from .._redis_limiter import Redis, connect
from . import _worker
from ._common import EXIT_OK, EXIT_USAGE, EXIT_WRITE_FAILED, UsageError, output_closed
from ._files import OutputFiles, OutputWriteError, output_format
from ._inputfile import InputLine, read_inputs
from ._jobkeys import (
    GROUP,
    REDIS_URL_ENV,
    JobKeys,
    ensure_group,
    existing_job_kind,
    field_input,
    invalid_field,
    job_kind,
    result_value,
    run_job_command,
)
from ._lock import FileInUseError
from ._writers import OutputClosedError

__all__ = ["register"]

_ENQUEUE_BATCH = 500
_RATE_WINDOW = 10  # seconds of results `status` averages over
#: A worker `status` counts as active read or renewed within this many seconds: a live one
#: reads every second at most while it waits for entries, and renews what it holds every
#: third of --claim-idle (30 s by default) while it holds some. A worker that exits
#: cleanly leaves the group (`_worker`); one killed stays in it, silent.
ACTIVE_WITHIN = 30.0

# ARGV: triples (what, member, payload); what "q" queues payload, "r" stores it as a result.
_ENQUEUE_LUA = """
local added = 0
for i = 1, #ARGV, 3 do
  if redis.call('SADD', KEYS[1], ARGV[i + 1]) == 1 then
    if ARGV[i] == 'q' then
      redis.call('XADD', KEYS[2], '*', 'item', ARGV[i + 2])
    else
      redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2])
      redis.call('HINCRBY', KEYS[4], 'invalid', 1)
    end
    added = added + 1
  end
end
return added
"""


# -- the command line -----------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `enqueue`, `worker`, `collect` and `status`."""
    enqueue = _job_parser(subparsers, "enqueue", "put a list of inputs on a job's queue")
    enqueue.add_argument("input", metavar="INPUT",
                         help="a text file (one input a line), a CSV file with --column, "
                              "or - for stdin")
    enqueue.add_argument("--kind", choices=tuple(KINDS), default="users",
                         help="users (handles) or videos (URLs or 'handle,videoId')")
    enqueue.add_argument("--column", default=None, help="the CSV column holding the inputs")
    enqueue.set_defaults(func=lambda args: run_job_command(args, _enqueue))

    _worker.register(_job_parser(subparsers, "worker",
                                       "fetch a job's queued inputs (run many)"))

    collect = _job_parser(subparsers, "collect", "write a job's results to files")
    collect.add_argument("-o", "--output", required=True,
                         help="output file, appended to and resumed (- for stdout)")
    collect.add_argument("--format", choices=("jsonl", "csv"), default=None,
                         help="output format (default: from the output's suffix, else jsonl)")
    collect.add_argument("--errors", default=None,
                         help="errors file (default: <output>.errors.jsonl; with -o -, "
                              "standard error)")
    collect.set_defaults(func=lambda args: run_job_command(args, _collect))

    status = _job_parser(subparsers, "status", "show a job's progress")
    status.set_defaults(func=lambda args: run_job_command(args, _status))


def _job_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text[0].upper()
                                   + help_text[1:] + " (Redis-backed, see docs/scale-out.md).")
    parser.add_argument("--redis", metavar="URL",
                        help=f"Redis URL (default: ${REDIS_URL_ENV}), e.g. "
                             "redis://localhost:6379/0; with a password "
                             "redis://:PASSWORD@host:6379/0 (on a shared machine give that "
                             f"in ${REDIS_URL_ENV}: other users can read a command line)")
    parser.add_argument("--job", required=True, metavar="NAME", help="the job's name")
    return parser


# -- enqueue --------------------------------------------------------------------------


async def _enqueue(args: argparse.Namespace) -> int:
    job, kind = JobKeys(args.job), KINDS[args.kind]
    redis = connect(args.redis)
    try:
        await _claim_kind(redis, job, kind)
        await ensure_group(redis, job)
        inputs = read_inputs(args.input, column=args.column)
        try:
            added, total = await enqueue_lines(redis, job, kind, inputs)
        finally:
            if isinstance(inputs, Generator):
                inputs.close()  # the file, now rather than in the garbage collector
    finally:
        await redis.aclose()
    print(f"tiktok-async enqueue: {added} new of {total} inputs queued for job {job.name!r}",
          file=sys.stderr)
    return EXIT_OK


async def _claim_kind(redis: Redis, job: JobKeys, kind: Kind[Any, Any]) -> None:
    await redis.hsetnx(job.meta, "kind", kind.name)
    existing = await job_kind(redis, job)
    if existing is not None and existing.name != kind.name:
        raise UsageError(f"job {job.name!r} holds {existing.name}, not {kind.name}: "
                         "use another --job")


async def enqueue_lines(redis: Redis, job: JobKeys, kind: Kind[Any, Any],
                        inputs: Iterator[InputLine]) -> tuple[int, int]:
    """Queue every input line the job has not seen; `(added, total)`."""
    script = redis.register_script(_ENQUEUE_LUA)
    keys = [job.seen, job.queue, job.results, job.counts]
    added = total = 0
    args: list[str] = []
    for line in inputs:
        total += 1
        args += _enqueue_args(kind, line)
        if len(args) >= 3 * _ENQUEUE_BATCH:
            added += int(await script(keys=keys, args=args))
            args = []
    if args:
        added += int(await script(keys=keys, args=args))
    return added, total


def _enqueue_args(kind: Kind[Any, Any], line: InputLine) -> list[str]:
    parsed: Parsed[Any] = kind.parse(line.text)
    problem = line.problem or (parsed.invalid.reason if parsed.invalid is not None else None)
    if problem is None and parsed.key is not None:
        item = encode_json({"input": line.text, "line": line.line_no}).decode()
        return ["q", parsed.key, item]
    row = {"input": line.text, "key": None, "status": None, "message": problem,
           "attempts": 0, "line": line.line_no}
    field = invalid_field(line.text)
    return ["r", field, result_value("invalid", row)]


# -- collect --------------------------------------------------------------------------


async def _collect(args: argparse.Namespace) -> int:
    job = JobKeys(args.job)
    redis = connect(args.redis)
    try:
        kind = await existing_job_kind(redis, job)
        try:
            written = await _collect_to_files(redis, job, kind, args)
        except FileInUseError as exc:  # the output rules of `users`, see _files
            return _refused(exc, EXIT_USAGE)
        except OutputClosedError:  # `collect -o - | head`: the reader has enough
            return output_closed()
        except OutputWriteError as exc:
            return _refused(exc, EXIT_WRITE_FAILED)
        left = int(await redis.xlen(job.queue))
    finally:
        await redis.aclose()
    note = f"; {left} inputs not answered yet (collect again later)" if left else ""
    print(f"tiktok-async collect: {written} new rows from job {job.name!r}{note}",
          file=sys.stderr)
    return EXIT_OK


async def _collect_to_files(redis: Redis, job: JobKeys, kind: Kind[Any, Any],
                            args: argparse.Namespace) -> int:
    fmt = output_format(args.output, args.format)  # a suffix it writes, or refused
    with OutputFiles.open(args.output, fmt=fmt, columns=kind.columns, errors=args.errors,
                          encode=encode_json) as files:
        await refuse_other_jobs_files(redis, job, files, args.output)
        return await collect_into(redis, job, files)


async def refuse_other_jobs_files(redis: Redis, job: JobKeys, files: OutputFiles,
                                  output: str) -> None:
    """A usage error when the files hold rows of inputs the job never had: another job's
    output (or a `users` run's), which this job's rows would be mixed into.

    Every row's key (an invalid row's text) must be in the job's `seen` set: the files
    are then this job's, or hold only inputs it has too (then its rows complete them)."""
    rows = len(files.done_keys) + len(files.invalid_inputs)
    if not rows or await _rows_in_job(redis, job, files) == rows:
        return
    owner = await _owner_of(redis, job, files, rows)
    where = f"{output} (with its errors file)"
    then = f"collect job {job.name!r} into another file"
    if owner is not None:
        raise UsageError(f"{where} holds the results of job {owner.name!r}, not of job "
                         f"{job.name!r}: {then}")
    raise UsageError(f"{where} holds rows of inputs that job {job.name!r} does not have "
                     f"(another job's, or a users run's): {then}")


async def _rows_in_job(redis: Redis, job: JobKeys, files: OutputFiles) -> int:
    """How many of the files' rows are of inputs `job` has (members of its `seen` set)."""
    found = 0
    async for member in redis.sscan_iter(job.seen, count=1000):
        found += files.is_done(*field_input(str(member)))
    return found


async def _owner_of(redis: Redis, job: JobKeys, files: OutputFiles, rows: int
                    ) -> JobKeys | None:
    """The other job in this Redis whose inputs every row of the files is of, if one is."""
    async for key in redis.scan_iter(match=JobKeys("*").seen, count=1000):
        other = JobKeys.of_seen(str(key))
        if other != job and await _rows_in_job(redis, other, files) == rows:
            return other
    return None


def _refused(exc: Exception, code: int) -> int:
    print(f"tiktok-async collect: {exc}", file=sys.stderr)
    return code


async def collect_into(redis: Redis, job: JobKeys, files: OutputFiles) -> int:
    """Append every result not in `files` yet; the rows written."""
    written = 0
    async for field, value in redis.hscan_iter(job.results, count=1000):
        kind, _, data = str(value).partition("\n")
        row = json.loads(data)
        key = None if kind == "invalid" else str(field)
        if files.is_done(row["input"], key):
            continue
        if kind == "ok":
            assert key is not None
            files.write_ok(row["input"], key, row["record"])
        else:
            files.write_error(row["input"], key, kind, row["status"], row["message"],
                              row["attempts"], row["line"])
        _remember(files, row["input"], key)
        written += 1
    return written


def _remember(files: OutputFiles, text: str, key: str | None) -> None:
    if key is None:
        files.invalid_inputs.add(text)
    else:
        files.done_keys.add(key)


# -- status ---------------------------------------------------------------------------


async def _status(args: argparse.Namespace) -> int:
    job = JobKeys(args.job)
    redis = connect(args.redis)
    try:
        await existing_job_kind(redis, job)
        status = await job_status(redis, job)
    finally:
        await redis.aclose()
    for name, value in status.items():
        print(f"{name:>10}: {value}")
    return EXIT_OK


async def job_status(redis: Redis, job: JobKeys, *,
                     active_within: float = ACTIVE_WITHIN) -> dict[str, Any]:
    """Queued, in flight (pending), done, failed, invalid, results a second lately, and
    the workers heard from in the last `active_within` seconds."""
    await ensure_group(redis, job)
    length = int(await redis.xlen(job.queue))
    pending = int((await redis.xpending(job.queue, GROUP))["pending"])
    counts = {k: int(v) for k, v in (await redis.hgetall(job.counts)).items()}
    now = int(time.time())
    ticks = await redis.mget([job.tick(now - i) for i in range(1, _RATE_WINDOW + 1)])
    recent = sum(int(t) for t in ticks if t is not None)
    consumers = await redis.xinfo_consumers(job.queue, GROUP)
    active = sum(1 for c in consumers if int(c["idle"]) < active_within * 1000)
    silent = f" ({len(consumers) - active} more silent: gone, or hung)" \
        if len(consumers) > active else ""
    return {
        "queued": length - pending,
        "in flight": pending,
        "done": counts.get("ok", 0) + counts.get("not_found", 0),
        "not found": counts.get("not_found", 0),
        "failed": counts.get("failed", 0),
        "invalid": counts.get("invalid", 0),
        "rate": f"{recent / _RATE_WINDOW:.1f}/s (last {_RATE_WINDOW} s)",
        "workers": f"{active} active in the last {active_within:g} s{silent}",
    }
