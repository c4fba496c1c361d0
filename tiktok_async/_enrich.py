"""`tiktok-async users INPUT` and `tiktok-async videos INPUT`: bulk enrichment into files.

Every input ends in exactly one place: a record in the output, or a line in the errors
file with its reason. A re-run resumes: inputs already answered are skipped. Ctrl-C stops
taking new inputs, settles the requests in flight, flushes, prints the summary and exits
130; a second Ctrl-C abandons the requests in flight (the files stay consistent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from ._bulk import Result, _parse_user, _parse_video, _Parsed, run_bulk
from ._cli_common import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    UsageError,
    positive_float,
    positive_int,
    run_async,
)
from ._client import TikTokClient
from ._exceptions import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    TikTokError,
)
from ._files import OutputFiles
from ._inputfile import InputFormatError, InputLine, read_inputs
from ._models import UserProfile, Video, encode_json, flat_columns, to_builtins
from ._progress import ProgressDisplay, RunCounts
from ._resume import KeySet
from ._retry import RetryPolicy


@dataclass(frozen=True)
class Kind:
    """What differs between `users` and `videos`."""

    name: str
    parse: Callable[[object], _Parsed[Any]]
    columns: list[str]
    input_help: str


KINDS = {
    "users": Kind("users", _parse_user, flat_columns(UserProfile),
                  "handles (with or without @) or profile URLs"),
    "videos": Kind("videos", _parse_video, flat_columns(Video),
                   "video URLs, or 'handle,videoId' lines"),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `users` and `videos` sub-commands."""
    for kind in KINDS.values():
        parser = subparsers.add_parser(
            kind.name, help=f"fetch {kind.name} for a list of {kind.input_help}",
            description=f"Fetch {kind.name} for INPUT: {kind.input_help}, one a line.",
        )
        _add_arguments(parser)
        parser.set_defaults(func=lambda args, kind=kind: run_command(kind, args))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="a text file (one input a line), a CSV file with --column, or - "
                             "for stdin")
    parser.add_argument("-o", "--output", default=None,
                        help="output file, appended to and resumed (default: <kind>.jsonl "
                             "or .csv; - for stdout)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default=None,
                        help="output format (default: from the output's suffix, else jsonl)")
    parser.add_argument("--errors", default=None,
                        help="errors file (default: <output>.errors.jsonl)")
    parser.add_argument("--column", default=None, help="the CSV column holding the inputs")
    parser.add_argument("--rate", type=positive_float, default=None,
                        help="requests per second (default: adaptive, finds the quota)")
    parser.add_argument("--max-rate", type=positive_float, default=None,
                        help="a ceiling for the adaptive rate, requests per second")
    parser.add_argument("--burst", type=positive_int, default=1,
                        help="requests allowed at once above the rate (default 1)")
    parser.add_argument("--concurrency", type=positive_int, default=64,
                        help="requests in flight at most (default 64)")
    parser.add_argument("--timeout", type=positive_float, default=35.0,
                        help="seconds for one attempt (default 35: API Gateway gives up at 29)")
    parser.add_argument("--max-retries", type=int, default=5,
                        help="retries of one input after a transient failure (default 5)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="try again the inputs an earlier run recorded as failed")
    parser.add_argument("--api-key", default=None, help="API key (default: $TIKTOK_API_KEY)")
    parser.add_argument("--base-url", default=None,
                        help="API base URL, with stage and resource (default: "
                             "$TIKTOK_API_BASE_URL)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run_command(kind: Kind, args: argparse.Namespace) -> int:
    """Run `users` or `videos` with parsed arguments; returns the exit code."""
    try:
        client = _make_client(args)
        fmt, output = _output_choice(kind, args)
        inputs = read_inputs(args.input, column=args.column)
        files = OutputFiles.open(output, fmt=fmt, columns=kind.columns, errors=args.errors,
                                 encode=encode_json, retry_failed=args.retry_failed)
    except (UsageError, TikTokError, InputFormatError, ValueError, OSError) as exc:
        print(f"tiktok-async {kind.name}: {_usage_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    with files:
        total = None if args.quiet else count_inputs(args.input)
        run = EnrichRun(kind, client, files, quiet=args.quiet, total=total)
        return run_async(run.main(inputs))


def count_inputs(source: str) -> int | None:
    """How many inputs a text file holds, for the progress bar's ETA; None when it is not
    worth a pass over the file (stdin, CSV, stderr not a terminal)."""
    if source == "-" or source.lower().endswith(".csv") or not sys.stderr.isatty():
        return None
    count = 0
    with open(source, "rb") as lines:
        for line in lines:
            stripped = line.strip()
            count += bool(stripped) and not stripped.startswith((b"#", b"\xef\xbb\xbf#"))
    return count


def _usage_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot open {exc.filename!r}: {exc.strerror}"
    return str(exc)


def _make_client(args: argparse.Namespace) -> TikTokClient:
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    retry = RetryPolicy(max_attempts=args.max_retries + 1)
    api_key = args.api_key or os.environ.get("TIKTOK_API_KEY")
    if not api_key:
        raise UsageError("no API key: pass --api-key or set TIKTOK_API_KEY")
    if not (args.base_url or os.environ.get("TIKTOK_API_BASE_URL")):
        raise UsageError("no API base URL: pass --base-url or set TIKTOK_API_BASE_URL "
                         "(e.g. https://<id>.execute-api.<region>.amazonaws.com/dev/tiktok)")
    if args.rate is not None and args.max_rate is not None:
        raise UsageError("--max-rate caps the adaptive rate: give it without --rate")
    return TikTokClient(api_key, args.base_url, rate=args.rate, burst=args.burst,
                        max_rate=args.max_rate, concurrency=args.concurrency,
                        timeout=args.timeout, retry=retry)


def _output_choice(kind: Kind, args: argparse.Namespace) -> tuple[Any, str]:
    fmt = args.format
    if fmt is None:
        fmt = "csv" if str(args.output or "").lower().endswith(".csv") else "jsonl"
    return fmt, args.output or f"{kind.name}.{fmt}"


class EnrichRun:
    """One run: input lines in, one line per input out, counts for the summary."""

    def __init__(self, kind: Kind, client: TikTokClient, files: OutputFiles, *,
                 quiet: bool, total: int | None = None) -> None:
        self.kind = kind
        self.total = total
        self.client = client
        self.files = files
        self.counts = RunCounts()
        self.quiet = quiet
        self._stopping = False
        self._interrupted = False
        self._answered_this_run = KeySet()  # to tell a duplicate from a resumed input

    async def main(self, inputs: Iterator[InputLine]) -> int:
        """Fetch every pending input and record it; the exit code."""
        main_task = asyncio.current_task()
        display = ProgressDisplay(self.counts, total=self.total, enabled=not self.quiet)
        with _sigint_handler(self._on_sigint, main_task):
            with display:
                code = await self._run_guarded(inputs, display)
            self.files.close()
            self._count_client_stats()
            display.print_summary(self._title(code))
        return code

    async def _run_guarded(self, inputs: Iterator[InputLine], display: ProgressDisplay) -> int:
        try:
            await self._run(inputs, display)
        except (ForbiddenError, QuotaExceededError) as exc:
            print(f"tiktok-async {self.kind.name}: aborted: {_abort_reason(exc)}",
                  file=sys.stderr)
            return EXIT_ABORTED
        except asyncio.CancelledError:
            self._interrupted = True
        if self._interrupted:
            return EXIT_INTERRUPTED
        failed_before = self.files.resumed.failed
        if failed_before:
            print(f"tiktok-async {self.kind.name}: {failed_before} inputs failed in an earlier "
                  "run and were not tried again: re-run with --retry-failed", file=sys.stderr)
        return EXIT_SOME_FAILED if self.counts.failed or failed_before else EXIT_OK

    async def _run(self, inputs: Iterator[InputLine], display: ProgressDisplay) -> None:
        async with self.client:
            results = run_bulk(self._pending(inputs), _identity, self._fetch,
                               concurrency=self.client.concurrency, ordered=False,
                               dedupe=True)
            async with aclosing(results):
                async for result in results:
                    self._record(result)
                    display.refresh()

    def _fetch(self, target: Any) -> Coroutine[Any, Any, tuple[Any, int]]:
        if self.kind.name == "users":
            return self.client._fetch_user(target)
        return self.client._fetch_video(target)

    def _pending(self, inputs: Iterator[InputLine]) -> Iterator[_Parsed[Any]]:
        """Parsed inputs not answered by an earlier run; stops taking input on Ctrl-C."""
        for line in inputs:
            if self._stopping:
                return
            parsed = self._parse_line(line)
            if not self.files.is_done(line.text, parsed.key):
                yield parsed
            elif _identity_of(line.text, parsed.key) in self._answered_this_run:
                self.counts.duplicates += 1
            else:
                self.counts.skipped += 1

    def _parse_line(self, line: InputLine) -> _Parsed[Any]:
        if line.problem is not None:
            error = InvalidInputError(line.text, line.problem)
            return _Parsed(line, None, None, None, error)
        return replace(self.kind.parse(line.text), raw=line)

    def _record(self, result: Result[Any]) -> None:
        line = result.input
        assert isinstance(line, InputLine)
        if self.files.is_done(line.text, result.key):
            self.counts.duplicates += 1  # its key was answered by an earlier input
            return
        if result.error is None:
            self.files.write_ok(line.text, _key(result), to_builtins(result.value))
            self.counts.done += 1
        else:
            self._record_error(line, result, result.error)
        self._remember(line, result.key)

    def _record_error(self, line: InputLine, result: Result[Any], error: TikTokError) -> None:
        kind = _error_kind(error)
        message = error.reason if isinstance(error, InvalidInputError) else error.message
        self.files.write_error(line.text, result.key, kind, error.status, message,
                               result.attempts, line.line_no)
        if kind == "invalid":
            self.counts.invalid += 1
        elif kind == "not_found":
            self.counts.not_found += 1
        else:
            self.counts.failed += 1

    def _remember(self, line: InputLine, key: str | None) -> None:
        self._answered_this_run.add(_identity_of(line.text, key))
        if key is None:
            self.files.invalid_inputs.add(line.text)
        else:
            self.files.done_keys.add(key)

    def _count_client_stats(self) -> None:
        stats = self.client.stats
        self.counts.retries = stats.retries
        self.counts.throttled = stats.responses.get(429, 0)

    def _on_sigint(self) -> bool:
        """First Ctrl-C: stop taking input. The second: cancel (return True)."""
        if self._stopping:
            return True
        self._stopping = self._interrupted = True
        print("\nstopping: finishing the requests in flight (Ctrl-C again to abandon them)",
              file=sys.stderr)
        return False

    def _title(self, code: int) -> str:
        words = {EXIT_OK: "finished", EXIT_SOME_FAILED: "finished, some inputs failed",
                 EXIT_ABORTED: "aborted", EXIT_INTERRUPTED: "interrupted (re-run to resume)"}
        return f"tiktok-async {self.kind.name}: {words.get(code, 'stopped')}"


def _identity(parsed: object) -> _Parsed[Any]:
    assert isinstance(parsed, _Parsed)
    return parsed


def _identity_of(text: str, key: str | None) -> str:
    return "key:" + key if key is not None else "text:" + text


def _key(result: Result[Any]) -> str:
    assert result.key is not None
    return result.key


def _error_kind(error: TikTokError) -> str:
    if isinstance(error, InvalidInputError):
        return "invalid"
    if isinstance(error, NotFoundError):
        return "not_found"
    return "failed"


def _abort_reason(exc: TikTokError) -> str:
    if isinstance(exc, ForbiddenError):
        return ("the API refused the key (403 Forbidden): check --api-key or "
                "$TIKTOK_API_KEY; nothing more was sent")
    return ("the key's quota is used up (429 Limit Exceeded): re-run after the quota "
            "period resets; what is done is kept")


class _sigint_handler:
    """Route SIGINT to `on_sigint`; when it returns True, cancel `task`."""

    def __init__(self, on_sigint: Callable[[], bool], task: asyncio.Task[Any] | None) -> None:
        self._on_sigint = on_sigint
        self._task = task
        self._installed = False

    def _handle(self) -> None:
        if self._on_sigint() and self._task is not None:
            self._task.cancel()

    def __enter__(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._handle)
            self._installed = True
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Windows
            pass

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
