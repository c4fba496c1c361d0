"""What the sub-commands share: exit codes, argument types, running a coroutine (uvloop if
any), the client's options and how an input's error is recorded."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

from .._client import API_KEY_ENV, BASE_URL_ENV, DEFAULT_MAX_CONCURRENCY, TikTokClient
from .._exceptions import (
    ConnectError,
    ForbiddenError,
    MissingRouteError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    TikTokError,
)
from .._limiter import Limiter
from .._retry import RetryPolicy
from ._writers import silence_stdout

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_WRITE_FAILED = 4  # an output or errors file could not be written (a full disk)
#: Standard output's reader closed it (`-o - | head`): 128 + SIGPIPE, what a shell
#: reports for a Unix filter stopped that way.
EXIT_OUTPUT_CLOSED = 141
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): `docker stop`, systemd, `timeout`


def output_closed() -> int:
    """Standard output's reader has enough (`-o - | head`): stop writing there, quietly,
    as a Unix filter stopped by SIGPIPE does; the exit code to return."""
    silence_stdout()
    return EXIT_OUTPUT_CLOSED


class UsageError(Exception):
    """A command line that cannot run as given (exit 2, one message, no traceback)."""


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number above 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop when it is installed (about a third faster), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def usage_message(exc: BaseException) -> str:
    """One line for an error that stops a command before it runs."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot open {exc.filename!r}: {exc.strerror}"
    return str(exc)


def abort_reason(exc: TikTokError, base_url: str | None = None) -> str:
    """Why a run stopped early, and what to do (`base_url`: the one the run used)."""
    if isinstance(exc, ForbiddenError):
        return ("the API refused the key (403 Forbidden): check --api-key or "
                "$TIKTOK_API_KEY; nothing more was sent")
    if isinstance(exc, QuotaExceededError):
        return ("the key's quota is used up (429 Limit Exceeded): re-run after the quota "
                "period resets; what is done is kept")
    if isinstance(exc, MissingRouteError):
        return (f"the base URL's path is wrong: {_where(base_url)} answers 403 Missing "
                "Authentication Token (no such route); the base URL must be "
                "https://<id>.execute-api.<region>.amazonaws.com/<stage>/tiktok with the "
                "stage the API is deployed to (e.g. /dev/tiktok); nothing was recorded")
    if isinstance(exc, RateLimitedError):
        return _come_back_later(exc.retry_after or 0.0)
    if isinstance(exc, ConnectError):
        return (f"cannot reach the API at {_where(base_url)} ({exc.message}) and no request "
                "has ever been answered: check --base-url or $TIKTOK_API_BASE_URL, and that "
                "this machine can reach that host; nothing was recorded")
    if isinstance(exc, RequestTimeoutError):
        return (f"nothing answers at {_where(base_url)}: it takes connections, but no request "
                f"has ever been answered ({exc.message}): check --base-url or "
                "$TIKTOK_API_BASE_URL (a proxy or a load balancer with nothing behind it?), "
                "or raise --timeout if the API is that slow; nothing was recorded")
    return f"{exc}; nothing more was sent"


def _where(base_url: str | None) -> str:
    return base_url or "the base URL"


def _come_back_later(seconds: float) -> str:
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() + seconds))
    return (f"the API asked to wait {duration_text(seconds)} before the next request "
            f"(429 with Retry-After), until {until}: re-run after that; nothing was marked "
            "failed and nothing more was sent")


def duration_text(seconds: float) -> str:
    """`seconds` for a person: "45 s", "12 min", "3.5 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the client's options, the same for `users`, `videos` and `worker` -------------------



def add_client_arguments(parser: argparse.ArgumentParser, *, rate_help: str) -> None:
    """The options that make the client: key, URL, rate, concurrency, timeout, retries."""
    add = parser.add_argument
    add("--rate", type=positive_float, default=None, help=rate_help)
    add("--max-rate", type=positive_float, default=None,
        help="a ceiling for the adaptive rate, requests per second")
    add("--burst", type=positive_int, default=1,
        help="requests allowed at once above the rate (default 1)")
    add("--concurrency", type=positive_int, default=None,
        help="a ceiling of requests in flight (default: found from latency, up to "
             f"{DEFAULT_MAX_CONCURRENCY}: rate x latency, Little's law)")
    add("--fixed-concurrency", action="store_true",
        help="keep exactly --concurrency requests in flight (no adaptive limit)")
    add("--timeout", type=positive_float, default=35.0,
        help="seconds for one attempt (default 35: API Gateway gives up at 29)")
    add("--max-retries", type=int, default=5,
        help="retries of one input after a transient failure (default 5)")
    add_connection_arguments(parser)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the API is and how to reach it: key, base URL, proxy, TLS trust."""
    add = parser.add_argument
    add("--api-key", default=None, metavar="KEY",
        help="API key (default: $TIKTOK_API_KEY). Other users of this machine can see a "
             "command line (ps): prefer the variable, --api-key-file, or '--api-key -' to "
             "read it from the first line of standard input")
    add("--api-key-file", default=None, metavar="PATH",
        help="read the API key from the first line of PATH")
    add("--proxy", default=None, metavar="URL",
        help="HTTP proxy, http://[user:password@]host:port (default: $HTTPS_PROXY, "
             "$HTTP_PROXY or $ALL_PROXY, unless $NO_PROXY names the API's host)")
    add("--ca-file", default=None, metavar="PATH",
        help="trust the CA certificates in PATH (PEM) for the API's TLS certificate "
             "(a corporate CA; the emulator's `serve --tls --ca-out`)")
    add("--verify", action=argparse.BooleanOptionalAction, default=True,
        help="check the API's TLS certificate (default); --no-verify: do not (tests only)")
    add("--base-url", default=None,
        help="API base URL, with stage and resource (default: $TIKTOK_API_BASE_URL)")


def api_key_from(args: argparse.Namespace) -> str:
    """The API key from --api-key (`-`: stdin's first line), --api-key-file or the
    environment; a usage error without one. A key read from stdin or a file is kept in
    `args.api_key`, so a second call reads nothing."""
    key_file = getattr(args, "api_key_file", None)
    if key_file is not None and args.api_key is not None:
        raise UsageError("give --api-key or --api-key-file, not both")
    if key_file is not None:
        args.api_key, args.api_key_file = _first_line(key_file), None
    elif args.api_key == "-":
        args.api_key = _stdin_first_line()
    # Stripped as a key file's line is: `export KEY=$(cat key.txt)` keeps a CR of CRLF.
    api_key: str | None = args.api_key or os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        raise UsageError(f"no API key: pass --api-key-file, --api-key or set {API_KEY_ENV}")
    return api_key


def _stdin_first_line() -> str:
    """Standard input's first line, read a byte at a time from descriptor 0: the rest is
    left unread there for the inputs (`-`), which are read through a descriptor of their
    own (a buffered read here would take them too)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor: a stream in memory
        return _key_text(sys.stdin.buffer.readline())
    line = bytearray()
    while (byte := os.read(fd, 1)) and byte != b"\n":
        line += byte
    return _key_text(bytes(line))


def _first_line(path: str) -> str:
    try:
        with open(path, "rb") as key_file:
            return _key_text(key_file.readline())
    except OSError as exc:
        raise UsageError(f"cannot read --api-key-file {path!r}: {exc.strerror}") from None


def _key_text(line: bytes) -> str:
    """A key file's (or standard input's) first line as text: without the byte-order mark
    Notepad writes, and without the spaces and line break around it."""
    return line.decode("utf-8-sig", "replace").strip()


def network_options(args: argparse.Namespace) -> dict[str, Any]:
    """`proxy=` and `verify=` for the client from --proxy, --ca-file and --verify."""
    ca_file = getattr(args, "ca_file", None)
    verify = getattr(args, "verify", True)
    if ca_file is not None and not verify:
        raise UsageError("--ca-file and --no-verify contradict each other")
    if ca_file is not None and not os.path.exists(ca_file):
        raise UsageError(f"--ca-file {ca_file!r}: no such file")
    return {"proxy": getattr(args, "proxy", None), "verify": ca_file or verify}


def check_base_url(args: argparse.Namespace) -> None:
    """A usage error when neither --base-url nor the environment gives the API's URL."""
    if not (args.base_url or os.environ.get(BASE_URL_ENV)):
        raise UsageError(f"no API base URL: pass --base-url or set {BASE_URL_ENV} "
                         "(e.g. https://<id>.execute-api.<region>.amazonaws.com/dev/tiktok)")


def client_from(args: argparse.Namespace, limiter: Limiter | None = None, *,
                initial_rate: float | None = None) -> TikTokClient:
    """The client the options describe (`limiter`: a shared one; then --rate is its own;
    `initial_rate`: where the adaptive rate starts, none for 10/s)."""
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    check_base_url(args)
    if args.rate is not None and args.max_rate is not None:
        raise UsageError("--max-rate caps the adaptive rate: give it without --rate")
    retry = RetryPolicy(max_attempts=args.max_retries + 1)
    if args.fixed_concurrency and args.concurrency is None:
        raise UsageError("--fixed-concurrency needs --concurrency N")
    common: dict[str, Any] = {"concurrency": args.concurrency, "timeout": args.timeout,
                              "adaptive_concurrency": not args.fixed_concurrency,
                              "retry": retry, **network_options(args)}
    if limiter is not None:
        return TikTokClient(api_key_from(args), args.base_url, limiter=limiter, **common)
    return TikTokClient(api_key_from(args), args.base_url, rate=args.rate, burst=args.burst,
                        max_rate=args.max_rate, initial_rate=initial_rate, **common)
