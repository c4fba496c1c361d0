"""A Redis job's keys and what every job command shares (`_jobs` has the commands,
`_worker` the consumer; both import this, never each other's privates)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from .._kinds import KINDS, Kind
from .._models import encode_json
from .._redis_limiter import Redis, RedisAuthError, RedisError, gives_password
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    run_async,
    usage_message,
)
from ._inputfile import InputFormatError

GROUP = "workers"
#: Where the job commands read the Redis URL when `--redis` is not given.
REDIS_URL_ENV = "TIKTOK_REDIS_URL"
_PREFIX = "tiktok_async:job:"
_INVALID = "invalid:"


@dataclass(frozen=True)
class JobKeys:
    """The Redis keys of one job."""

    name: str

    def key(self, part: str) -> str:
        """`tiktok_async:job:{NAME}:{part}`."""
        return f"{_PREFIX}{self.name}:{part}"

    @classmethod
    def of_seen(cls, key: str) -> JobKeys:
        """The job whose `seen` set `key` is."""
        return cls(key.removeprefix(_PREFIX).removesuffix(":seen"))

    @property
    def queue(self) -> str:
        """The Stream of pending inputs."""
        return self.key("queue")

    @property
    def seen(self) -> str:
        """The set of normalised keys ever enqueued."""
        return self.key("seen")

    @property
    def results(self) -> str:
        """The hash of results by normalised key."""
        return self.key("results")

    @property
    def counts(self) -> str:
        """The hash of result counts by kind."""
        return self.key("counts")

    @property
    def meta(self) -> str:
        """The hash of the job's settings (`kind`)."""
        return self.key("meta")

    def tick(self, second: int) -> str:
        """The counter of results written in one epoch second."""
        return self.key(f"tick:{second}")


def result_value(kind: str, row: dict[str, Any]) -> str:
    """How a result is stored: its kind, a newline, its JSON row."""
    return kind + "\n" + encode_json(row).decode()


def invalid_field(text: str) -> str:
    """The results field of an invalid input (it has no normalised key)."""
    return _INVALID + text


def field_input(field: str) -> tuple[str, str | None]:
    """A results field (or `seen` member) as `(text, key)`: an invalid input's text and
    None, or an empty text and the key."""
    if field.startswith(_INVALID):
        return field[len(_INVALID):], None
    return "", field


async def ensure_group(redis: Redis, job: JobKeys) -> None:
    """Create the stream and its consumer group if they do not exist yet."""
    try:
        await redis.xgroup_create(job.queue, GROUP, id="0", mkstream=True)
    except RedisError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def job_kind(redis: Redis, job: JobKeys) -> Kind[Any, Any] | None:
    """The kind (`users`/`videos`) the job was enqueued with, None for an unknown job."""
    name = await redis.hget(job.meta, "kind")
    return KINDS.get(name) if isinstance(name, str) else None


async def existing_job_kind(redis: Redis, job: JobKeys) -> Kind[Any, Any]:
    """The job's kind; a usage error naming the job when nothing was enqueued for it."""
    kind = await job_kind(redis, job)
    if kind is None:
        raise UsageError(f"no job {job.name!r} in this Redis (enqueue first)")
    return kind


class _Terminated(Exception):
    """SIGTERM stopped a job command (`docker stop`, systemd, `timeout`)."""


def run_job_command(args: argparse.Namespace, command: Any) -> int:
    """Run one job command's coroutine; usage, input and Redis errors exit 2 with one line;
    Ctrl-C and SIGTERM stop it with one line too (130, 143)."""
    try:
        args.redis = redis_url(args.redis)
        code: int = run_async(_stopped_by_sigterm(command(args)))
    except (UsageError, InputFormatError, ValueError, OSError) as exc:
        print(f"tiktok-async {args.command}: {usage_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except RedisAuthError as exc:
        print(f"tiktok-async {args.command}: {auth_problem(args.redis, exc)}", file=sys.stderr)
        return EXIT_USAGE
    except RedisError as exc:
        print(f"tiktok-async {args.command}: Redis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _stopped(args, "interrupted", EXIT_INTERRUPTED)
    except _Terminated:
        return _stopped(args, "terminated", EXIT_TERMINATED)
    return code


def _stopped(args: argparse.Namespace, how: str, code: int) -> int:
    print(f"tiktok-async {args.command}: {how} (what was not answered stays queued)",
          file=sys.stderr)
    return code


async def _stopped_by_sigterm(command: Coroutine[Any, Any, int]) -> int:
    """`command`, cancelled by SIGTERM as asyncio.run cancels it on Ctrl-C (its `finally`
    blocks run: the worker's entries stay pending, its connections close); `_Terminated`
    then."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Windows
        return await command
    try:
        return await command
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def redis_url(given: str | None) -> str:
    """The Redis URL: `--redis`, else `$TIKTOK_REDIS_URL` (which keeps a password out of
    the command line, where other users of the machine can read it)."""
    url = given or os.environ.get(REDIS_URL_ENV, "").strip()
    if not url:
        raise UsageError(f"no Redis URL: give --redis URL or set ${REDIS_URL_ENV} "
                         "(e.g. redis://localhost:6379/0)")
    return url


def auth_problem(url: str, exc: RedisAuthError) -> str:
    """What to do when Redis refuses us: give a password, or check the one given."""
    where = f"--redis or ${REDIS_URL_ENV}"
    if not gives_password(url):
        return (f"Redis needs a password: give it in the URL ({where}), "
                "redis://:PASSWORD@host:port/db (or redis://USER:PASSWORD@host:port/db)")
    return f"Redis refused the password (or user) in the URL ({where}): {exc}"
