"""`tiktok-async serve` (also `python -m tiktok_async.emulator`): run the emulator.

It prints the API's base URL on stdout (one line, flushed) once it listens, so a parent
process can start it with `--port 0` and read where it is. Ctrl-C (SIGINT) and SIGTERM
stop it cleanly with exit code 0. Runs on uvloop when installed (`--no-uvloop` to not).
Listening beyond loopback, the control API needs a token: `--control-token` (or
`$TIKTOK_EMULATOR_TOKEN`), else one is made and printed on stderr. `--tls` serves HTTPS
with a throwaway certificate; the CA to trust is written to `--ca-out PATH` (and its
path printed on stderr) before the base URL is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any

from ._config import CONTROL_TOKEN_HEADER, DEFAULT_API_KEY, DEFAULT_PREFIX, EmulatorConfig
from ._data import DEFAULT_MISSING_SHARE, QUIRKS
from ._db import DatabaseOpenError
from ._faults import FAULT_KINDS, Faults
from ._gateway import parse_period
from ._profiles import profile_names

KEY_ENV = "TIKTOK_API_KEY"
TOKEN_ENV = "TIKTOK_EMULATOR_TOKEN"


def parse_injection(text: str) -> tuple[str, int, int]:
    """`KIND[:COUNT[:AFTER]]` -> (kind, count, after): `forbidden:1000000:20`."""
    kind, *numbers = text.split(":")
    if kind not in FAULT_KINDS or len(numbers) > 2:
        raise argparse.ArgumentTypeError(
            f"KIND[:COUNT[:AFTER]] expected, KIND one of {', '.join(FAULT_KINDS)}")
    try:
        count, after = [int(n) for n in numbers] + [1, 0][len(numbers):]
    except ValueError:
        raise argparse.ArgumentTypeError("COUNT and AFTER are whole numbers") from None
    if count < 0 or after < 0:
        raise argparse.ArgumentTypeError("COUNT and AFTER must be >= 0")
    return kind, count, after


def parse_faults(text: str) -> Faults:
    """argparse type of `--faults`: what is wrong with a spec, not argparse's "invalid"."""
    try:
        return Faults.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_quota_period(text: str) -> float:
    """argparse type of `--quota-period`: seconds or a named period, else what is accepted."""
    try:
        return parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` options; `args.prog` is the name its messages start with."""
    parser.set_defaults(prog=parser.prog)
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8080, help="TCP port; 0 picks a free one (default 8080)")
    add("--prefix", default=DEFAULT_PREFIX, help=f"API path prefix (default {DEFAULT_PREFIX})")
    add("--key", action="append", dest="keys", metavar="KEY",
        help=f"accepted x-api-key, repeatable (default ${KEY_ENV}, else {DEFAULT_API_KEY!r})")
    add("--rate", type=float, help="token bucket rate per key, requests/s (default: none)")
    add("--burst", type=int, help="token bucket size (default: ceil(rate))")
    add("--quota", type=int, help="requests per key per quota period (default: none)")
    add("--quota-period", type=parse_quota_period, default="day",
        help="seconds, or day/week/month (default day)")
    add("--retry-after", type=int, help="send Retry-After: N on 429 (default: no header)")
    add("--retry-after-date", action="store_true", help="send Retry-After as an HTTP date")
    add("--faults", type=parse_faults, default=Faults(), metavar="SPEC",
        help="a share spread over 500/502/503/504 (0.05), or "
             "'500=0.01,drop=0.01,truncate=0.01,slow=0.001,slow_seconds=30'")
    add("--latency-ms", type=float, default=0.0, help="added latency per request")
    add("--jitter-ms", type=float, default=0.0, help="added uniform jitter per request")
    add("--upstream-latency-ms", type=float, default=20.0,
        help="latency of a first fetch (default 20)")
    add("--latency-profile", choices=profile_names(), default=None,
        help="a named first-fetch latency instead of --upstream-latency-ms (service: "
             "median 1.5 s, p99 10 s, as the real service fetching an unseen user)")
    add("--upstream-jitter-ms", type=float, default=10.0,
        help="added uniform jitter of a first fetch (default 10)")
    add("--upstream-workers", type=int, metavar="N",
        help="first fetches made at once; more queue, so their latency grows with the "
             "requests in flight (default: no limit)")
    add("--integration-timeout", type=float, default=29.0, metavar="SECONDS",
        help="answer 504 'Endpoint request timed out' to a request whose first fetch "
             "takes longer, as API Gateway does; the fetch goes on and saves it "
             "(default 29; 0: wait however long it takes)")
    add("--inject", action="append", type=parse_injection, default=[],
        metavar="KIND[:COUNT[:AFTER]]",
        help="force COUNT (1) requests to get fault KIND once AFTER (0) have passed; "
             "repeatable (forbidden:1000000:20: 20 answers, then 403 to every request)")
    add("--quirk", action="append", choices=QUIRKS, default=[], dest="quirks",
        help="depart from the seed's types (repeatable): nulls, unknown_fields, string_counts")
    add("--idle-timeout", type=float, default=60.0,
        help="seconds a connection may take to send its headers or stay idle (default 60)")
    add("--control-token", metavar="TOKEN",
        help=f"token the control API requires (default ${TOKEN_ENV}; made up when "
             "--host is not loopback)")
    add("--tls", action="store_true",
        help="serve HTTPS with a throwaway certificate (needs trustme)")
    add("--ca-out", metavar="PATH",
        help="with --tls: write the CA certificate to trust (PEM) to PATH")
    add("--db", default=":memory:", metavar="PATH", help="SQLite file (default in memory)")
    add("--seed", type=int, default=0, help="seed of faults and jitter (default 0)")
    add("--missing-share", type=float, default=DEFAULT_MISSING_SHARE,
        help=f"share of handles that do not exist (default {DEFAULT_MISSING_SHARE})")
    add("--cpu", type=int, action="append", metavar="N", help="pin to CPU N (repeatable)")
    add("--no-uvloop", action="store_true", help="use asyncio's own loop")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `serve` sub-command to a `tiktok-async` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve an emulator of the TikTok API",
        description="Serve an emulator of the TikTok API (prints its base URL on stdout).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The `EmulatorConfig` the options describe."""
    keys = args.keys or [os.environ.get(KEY_ENV) or DEFAULT_API_KEY]
    faults = replace(args.faults, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms)
    return EmulatorConfig(
        host=args.host, port=args.port, prefix=args.prefix, api_keys=tuple(keys),
        rate=args.rate, burst=args.burst, quota=args.quota,
        quota_period=args.quota_period, retry_after=args.retry_after,
        retry_after_date=args.retry_after_date,
        missing_share=args.missing_share, upstream_latency_ms=args.upstream_latency_ms,
        upstream_jitter_ms=args.upstream_jitter_ms, latency_profile=args.latency_profile,
        upstream_workers=args.upstream_workers,
        integration_timeout=args.integration_timeout or None,
        faults=faults, quirks=tuple(args.quirks), db_path=args.db, seed=args.seed,
        idle_timeout=args.idle_timeout,
        control_token=args.control_token or os.environ.get(TOKEN_ENV) or None,
        tls=args.tls,
    )


async def serve(config: EmulatorConfig, injections: Sequence[tuple[str, int, int]] = (),
                ca_out: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM; print the base URL once listening (with TLS, the CA
    certificate is written to `ca_out` first)."""
    from ._emulator import Emulator

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Emulator(config) as emulator:
            for kind, count, after in injections:
                emulator.inject(kind, count, after)
            if emulator.control_token and config.control_token is None:
                print(f"control token ({CONTROL_TOKEN_HEADER}): {emulator.control_token}",
                      file=sys.stderr, flush=True)
            _announce_ca(emulator.ca_pem, emulator.ca_file, ca_out)
            print(emulator.base_url, flush=True)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _announce_ca(ca_pem: bytes | None, ca_file: str | None, ca_out: str | None) -> None:
    """Write the CA certificate to `ca_out` (if any) and say on stderr where it is."""
    if ca_pem is None:
        return
    if ca_out is not None:
        with open(ca_out, "wb") as out:
            out.write(ca_pem)
    print(f"CA certificate to trust (PEM): {ca_out or ca_file}", file=sys.stderr, flush=True)


def run_loop(coro: Coroutine[Any, Any, None], use_uvloop: bool = True) -> None:
    """Run `coro` on uvloop when installed (and wanted), else on asyncio's loop."""
    factory = None
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    if factory is None:
        asyncio.run(coro)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)
    else:  # pragma: no cover - Python 3.10
        loop = factory()
        try:
            loop.run_until_complete(coro)
        finally:
            loop.close()


def pin(cpus: Sequence[int]) -> None:
    """Pin this process to `cpus` (Linux); ValueError naming them where it cannot be."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None:
        raise ValueError("--cpu needs os.sched_setaffinity (Linux)")
    try:
        setaffinity(0, set(cpus))
    except OSError as exc:
        usable = sorted(os.sched_getaffinity(0))
        raise ValueError(f"--cpu {', '.join(map(str, cpus))}: cannot run there "
                         f"({exc.strerror}); this process may use CPUs "
                         f"{', '.join(map(str, usable))}") from None


def option_problem(exc: ValueError, args: argparse.Namespace) -> str:
    """`exc`'s message, a config field named by the option that sets it (`--quota-period`,
    not `quota_period`) where there is one."""
    field = getattr(exc, "field", None)
    message = str(exc)
    if not isinstance(field, str) or not hasattr(args, field):
        return message
    return "--" + field.replace("_", "-") + message.removeprefix(field)


#: The collector's youngest generation is collected every this many allocations (Python's
#: default is 700). With thousands of answers in flight (first fetches of seconds at
#: 1,000 requests/s), each holds its request's objects for seconds, and the default made
#: every object in flight be traversed again and again: a quarter of the emulator's CPU,
#: and full collections that stopped it for up to 0.26 s (a server that stalls then
#: answers its backlog at once). At 100,000: pauses of 50 ms at most, about 0.1 s of
#: collecting in a 25 s run instead of 1.0-1.5 s.
GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """The serving process's collector: what start-up made is never scanned again
    (`gc.freeze`), and the young generation is collected far less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run(args: argparse.Namespace) -> int:
    """The `serve` command: returns the exit code."""
    prog = getattr(args, "prog", "tiktok-async serve")
    try:
        if args.ca_out and not args.tls:
            raise ValueError("--ca-out goes with --tls")
        config = config_from_args(args)
        if args.cpu:
            pin(args.cpu)
    except ValueError as exc:
        print(f"{prog}: {option_problem(exc, args)}", file=sys.stderr)
        return 2
    try:
        tune_gc()
        run_loop(serve(config, args.inject, args.ca_out), use_uvloop=not args.no_uvloop)
    except (OSError, sqlite3.Error, RuntimeError) as exc:  # RuntimeError: no trustme
        code, message = failure(exc, config)
        print(f"{prog}: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 0
    return 0


def failure(exc: BaseException, config: EmulatorConfig) -> tuple[int, str]:
    """The exit code and the line for what stopped `serve`: 2 where an option given is
    what to change (the database, the host, the port), else 1."""
    if isinstance(exc, DatabaseOpenError):
        return 2, (f"{exc} (--db: a new file, or one an emulator made, in a folder you "
                   "can write to)")
    problem = listen_problem(exc, config.host, config.port)
    return (2, problem) if problem else (1, str(exc))


def listen_problem(exc: BaseException, host: str, port: int) -> str | None:
    """What a failed listen on `host` and `port` means and what to do; None when `exc` is
    not one of those."""
    hosts = "--host takes 127.0.0.1, 0.0.0.0 (every interface) or an address of this machine"
    if isinstance(exc, socket.gaierror):
        return (f"cannot listen on {host}: not an address, nor a name it can resolve "
                f"({exc.strerror}); {hosts}")
    code = exc.errno if isinstance(exc, OSError) else None
    reason = os.strerror(code) if code else ""
    if code == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use: {reason}; stop what listens there, or "
                "pick another --port (0 picks a free one)")
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: not an address of this machine ({reason}); {hosts}"
    if code == errno.EACCES and 0 < port < 1024:
        return (f"port {port} on {host}: {reason}; ports below 1024 need privileges: pick "
                "another --port (0 picks a free one)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tiktok_async.emulator`: the `serve` options without a sub-command."""
    parser = argparse.ArgumentParser(
        prog="python -m tiktok_async.emulator",
        description="Serve an emulator of the TikTok API (prints its base URL on stdout).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
