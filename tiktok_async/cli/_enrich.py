"""`tiktok-async users INPUT` and `tiktok-async videos INPUT`: bulk enrichment into files.

Every input ends in exactly one place: a record in the output, or a line in the errors
file with its reason. A re-run resumes: inputs already answered are skipped. Ctrl-C stops
taking new inputs and sending (no retry either), gives the requests on the wire
`INTERRUPT_GRACE` seconds to settle, flushes, prints the summary and exits 130; what was
cut short is not recorded, so the re-run asks again. A second Ctrl-C abandons the
requests on the wire at once (the files stay consistent). SIGTERM (`docker stop`,
systemd, `timeout`) does the same and exits 143.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import stat
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any, TypeVar

from .._bulk import Result, run_bulk
from .._client import TikTokClient, resolve_base_url
from .._exceptions import InvalidInputError, TikTokError
from .._kinds import KINDS, Kind, Parsed
from .._rows import error_message, outcome
from .._runstop import RunInterrupted, RunStop
from .._shortlinks import DEFAULT_SHORT_LINK_RATE, ShortLinkResolver
from ._common import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
    UsageError,
    abort_reason,
    add_client_arguments,
    api_key_from,
    check_base_url,
    client_from,
    output_closed,
    positive_float,
    run_async,
    usage_message,
)
from ._expand import expand_each, line_of, unwrap
from ._files import OutputFiles, OutputWriteError
from ._inputfile import InputFormatError, InputLine, describe_empty
from ._lock import FileInUseError
from ._outputs import Outputs, choose_output, open_outputs, read_source, short_link_resolver
from ._pipe import ThreadedLines
from ._progress import ProgressDisplay, RunCounts
from ._ratememory import PeakRate, RateMemory
from ._resume import KeySet
from ._table import TableRows
from ._writers import OutputClosedError

#: Seconds the requests on the wire get to settle after a first Ctrl-C.
INTERRUPT_GRACE = 3.0
#: Input lines read, parsed and checked against earlier runs at a time. Run one line at a
#: time between two requests' worth of aiohttp, that code ran from cold CPU caches: about
#: 10 us an input in a real run, 3 in batches (8-12 us less CPU an input end to end).
FEED_BATCH = 256
#: What `EnrichRun._piped_each` yields: parsed inputs or input lines.
ItemT = TypeVar("ItemT")


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
    add = parser.add_argument
    add("input", metavar="INPUT",
        help="a text file (one input a line); a table: a CSV file, or JSON lines of objects "
             "(.jsonl), enriched row by row; or - for stdin")
    add("-o", "--output", default=None,
        help="output file, appended to and resumed (default: <kind>.jsonl; .csv, .jsonl or "
             ".parquet; - for stdout)")
    add("--format", choices=("jsonl", "csv", "parquet"), default=None,
        help="output format (default: from the output's suffix, else jsonl)")
    add("--errors", default=None,
        help="errors file (default: beside the output, .errors.jsonl for its suffix: "
             "users.jsonl -> users.errors.jsonl; with -o -, standard error)")
    add("--column", default=None,
        help="a table's column (or JSON field) holding the inputs (default: the one named "
             "handle, username, url or link)")
    add("--excel", action="store_true",
        help="CSV output: start the file with a UTF-8 byte-order mark, so Excel reads "
             "accents and emoji right")
    add("--resolve-short-links", action="store_true",
        help="follow short links (vm.tiktok.com, vt.tiktok.com, /t/) to the full URL first "
             "(requests to TikTok's web host, never with the API key)")
    add("--short-link-rate", type=positive_float, default=DEFAULT_SHORT_LINK_RATE,
        metavar="R", help="short links resolved a second, at most (default 2)")
    add("--short-link-base", default=None, help=argparse.SUPPRESS)  # tests: the emulator's
    add_client_arguments(parser, rate_help="requests per second (default: adaptive, finds "
                                           "the quota)")
    add("--fresh-rate", action="store_true",
        help="start the adaptive rate from 10/s, not from the rate this key reached in a "
             "run of the last day")
    add("--retry-failed", action="store_true",
        help="try again the inputs an earlier run recorded as failed (a list's output)")
    add("-q", "--quiet", action="store_true", help="no progress bar")


def run_command(kind: Kind[Any, Any], args: argparse.Namespace) -> int:
    """Run `users` or `videos` with parsed arguments; returns the exit code."""
    prepared = _prepare(kind, args)
    if isinstance(prepared, int):
        return prepared
    client, outputs, resolver, memory = prepared
    files = outputs.files
    print(f"tiktok-async {kind.name}: {outputs.where}", file=sys.stderr)
    _print_note(kind, None if memory is None else memory.note())
    try:
        with files:
            total = None if args.quiet or outputs.table else count_inputs(args.input)
            run = EnrichRun(kind, client, files, quiet=args.quiet, total=total,
                            resolver=resolver, table=outputs.table)
            run.piped, run.memory = is_stream(args.input), memory
            code = run_async(run.main(outputs.inputs))
    except OutputWriteError as exc:
        return _write_failed(kind, exc)
    return outputs.finish(kind.name, code)


def _write_failed(kind: Kind[Any, Any], exc: OutputWriteError) -> int:
    """The exit code of a write that failed, said on standard error unless quiet."""
    if isinstance(exc, OutputClosedError):  # `-o - | head`: the reader has enough
        return output_closed()
    # a full disk: the files hold whole lines, a re-run resumes
    print(f"tiktok-async {kind.name}: {exc}", file=sys.stderr)
    return EXIT_WRITE_FAILED


def _print_note(kind: Kind[Any, Any], note: str | None) -> None:
    if note is not None:
        print(f"tiktok-async {kind.name}: {note}", file=sys.stderr)


def _rate_memory(args: argparse.Namespace) -> RateMemory | None:
    """The rate this key reached lately (`_ratememory`), with the adaptive rate only;
    with --fresh-rate, none to start from (the rate reached is still written)."""
    if args.rate is not None:
        return None
    memory = RateMemory.load(api_key_from(args), resolve_base_url(args.base_url))
    return dataclasses.replace(memory, start=None) if args.fresh_rate else memory


def _prepare(kind: Kind[Any, Any], args: argparse.Namespace
             ) -> tuple[TikTokClient, Outputs, ShortLinkResolver | None, RateMemory | None] | int:
    """The client, the locked files and the inputs, the resolver, the remembered rate; or
    the exit code of a run that cannot start (usage, input, a file in use) or has nothing
    to do (no input)."""
    try:
        check_base_url(args)
        memory = _rate_memory(args)
        client = client_from(args, initial_rate=None if memory is None else memory.start)
        fmt, output = choose_output(kind, args)
        source = read_source(kind, args)
        first = next(source.rows, None)  # before any file is made: an empty input makes none
        if first is None:
            print(f"tiktok-async {kind.name}: warning: {describe_empty(args.input)}",
                  file=sys.stderr)
            return EXIT_OK
        inputs = itertools.chain([first], source.rows)
        outputs = open_outputs(kind, args, source, fmt, output, inputs)
    except (UsageError, TikTokError, InputFormatError, ValueError, OSError,
            FileInUseError) as exc:
        print(f"tiktok-async {kind.name}: {usage_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OutputWriteError as exc:
        return _write_failed(kind, exc)
    return client, outputs, short_link_resolver(args), memory


def is_stream(source: str) -> bool:
    """Whether `source` (a path, or `-` for stdin) is a pipe, a terminal or a socket,
    whose lines come when the writer sends them, rather than a file read at disk speed."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode if source == "-" else os.stat(source).st_mode
    except (OSError, ValueError):  # no stdin at all, or one without a descriptor
        return False
    return not stat.S_ISREG(mode)


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


class EnrichRun:
    """One run: input lines in, one line per input out, counts for the summary."""

    def __init__(self, kind: Kind[Any, Any], client: TikTokClient, files: OutputFiles, *,
                 quiet: bool, total: int | None = None,
                 resolver: ShortLinkResolver | None = None,
                 table: TableRows | None = None) -> None:
        self.kind = kind
        self.resolver = resolver  # --resolve-short-links
        self.table = table  # the input is a table: its rows, in order, are the output
        self.ordered = table is not None  # results in input order
        self.total = total
        self.client = client
        self.files = files
        self.counts = RunCounts()
        self.quiet = quiet
        self.piped = False  # the input comes from a pipe or a terminal (`is_stream`)
        self.memory: RateMemory | None = None  # where the rate reached is written down
        self._peak: PeakRate | None = None
        self._piped_lines: ThreadedLines[InputLine] | None = None
        self._stopping = False
        self._interrupted = False
        self._signal: int | None = None  # the signal that stopped the run, if one did
        self._stop = RunStop()
        # keys (and invalid inputs' texts) recorded this run; the files' sets hold the earlier
        # runs' (apart: an answer costs one KeySet.add_new, not a lookup and two adds)
        self._answered_this_run = (KeySet(), KeySet())
        if table is not None:
            self.counts.skipped = table.files.table.rows

    async def main(self, inputs: Iterator[InputLine]) -> int:
        """Fetch every pending input and record it; the exit code."""
        main_task = asyncio.current_task()
        display = ProgressDisplay(self.counts, total=self.total, enabled=not self.quiet)
        with _sigint_handler(self._on_sigint, main_task, grace=INTERRUPT_GRACE):
            with display:
                code = await self._run_guarded(inputs, display)
            if code == EXIT_INTERRUPTED and self._signal == signal.SIGTERM:
                code = EXIT_TERMINATED
            self.files.close()
            self._count_client_stats()
            display.print_summary(self._title(code))
            self._remember_rate()  # under the Ctrl-C handler: a second Ctrl-C is no traceback
        return code

    def _remember_rate(self) -> None:
        """Write down the rate reached, for the next run with this key (`_ratememory`)."""
        reached = None if self._peak is None else self._peak.reached()
        if self.memory is not None and reached is not None:
            _print_note(self.kind, self.memory.save(reached))

    async def _run_guarded(self, inputs: Iterator[InputLine], display: ProgressDisplay) -> int:
        try:
            await self._run(inputs, display)
        except RunInterrupted:
            self._interrupted = True
        except TikTokError as exc:  # an answer that stopped the run (run_bulk says which)
            print(f"tiktok-async {self.kind.name}: aborted: "
                  f"{abort_reason(exc, self.client.base_url)}", file=sys.stderr)
            return EXIT_ABORTED
        except InputFormatError as exc:  # a table on standard input broke off (a stray quote)
            print(f"tiktok-async {self.kind.name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except asyncio.CancelledError:
            self._interrupted = True
        if self._interrupted:
            return EXIT_INTERRUPTED
        failed_before = self.files.resumed.failed
        if failed_before:
            print(f"tiktok-async {self.kind.name}: {self._failed_before_note(failed_before)}",
                  file=sys.stderr)
        return EXIT_SOME_FAILED if self.counts.failed or failed_before else EXIT_OK

    def _failed_before_note(self, failed: int) -> str:
        if self.table is not None:
            return self.table.failed_note(failed)
        return (f"{failed} inputs failed in an earlier run and were not tried again: re-run "
                "with --retry-failed")

    async def _run(self, inputs: Iterator[InputLine], display: ProgressDisplay) -> None:
        if self.memory is not None:
            self._peak = PeakRate(self.client)
        async with self.client, self.resolver or contextlib.nullcontext(), \
                self._peak or contextlib.nullcontext():
            results = run_bulk(self.client, self.kind, self._feed(inputs), ordered=self.ordered,
                               stop=self._stop)
            async with aclosing(results):
                async for result in results:
                    self._record(result)
                    if display.due():
                        self.counts.concurrency = self.client.concurrency
                        display.refresh()

    def _feed(self, inputs: Iterator[InputLine]
              ) -> Iterator[Parsed[Any]] | AsyncIterator[Parsed[Any]]:
        """The parsed inputs to fetch: short links expanded first when asked to."""
        if self.resolver is not None:
            return self._pending_expanded(inputs, self.resolver)
        if self.piped:  # `_pending` for lines that come when their writer sends them
            return self._piped_each(inputs, self._admitted)
        return self._pending(inputs)

    async def _piped_each(self, inputs: Iterator[InputLine],
                          each: Callable[[list[InputLine]], list[ItemT]]
                          ) -> AsyncIterator[ItemT]:
        """`each(batch)` for every batch of a piped input, one item at a time, until it
        ends or Ctrl-C."""
        async with aclosing(self._piped_batches(inputs)) as batches:
            async for batch in batches:
                for item in each(batch):
                    if self._stopping:
                        return
                    yield item

    async def _piped_batches(self, inputs: Iterator[InputLine]
                             ) -> AsyncGenerator[list[InputLine], None]:
        """The lines of a pipe or a terminal, as they come: a thread waits for them, so the
        loop goes on answering, writing and hearing Ctrl-C while the writer is slow."""
        lines = self._piped_lines = ThreadedLines(inputs, ahead=4 * FEED_BATCH)
        try:
            while batch := [] if self._stopping else await lines.batch(FEED_BATCH):
                yield batch
        finally:
            lines.close()

    def _pending(self, inputs: Iterator[InputLine]) -> Iterator[Parsed[Any]]:
        """Parsed inputs not answered by an earlier run, `FEED_BATCH` lines read at a time;
        stops taking input on Ctrl-C (what was read and not taken is asked by a re-run)."""
        while lines := [] if self._stopping else list(itertools.islice(inputs, FEED_BATCH)):
            for parsed in self._admitted(lines):
                if self._stopping:
                    return
                yield parsed

    def _admitted(self, lines: list[InputLine]) -> list[Parsed[Any]]:
        admitted = []
        for line in lines:
            parsed = self._parse_line(line)
            if self._admit(line, parsed):
                admitted.append(parsed)
        return admitted

    async def _pending_expanded(self, inputs: Iterator[InputLine], resolver: ShortLinkResolver
                                ) -> AsyncIterator[Parsed[Any]]:
        lines = self._piped_each(inputs, list) if self.piped else self._lines(inputs)
        expanded = expand_each(lines, resolver, self._parse_line, self.kind, ordered=self.ordered)
        async with aclosing(expanded):
            async for parsed in expanded:
                if self._admit(line_of(parsed.raw), parsed):
                    yield parsed

    def _lines(self, inputs: Iterator[InputLine]) -> Iterator[InputLine]:
        for line in inputs:
            if self._stopping:
                return
            yield line

    def _admit(self, line: InputLine, parsed: Parsed[Any]) -> bool:
        """Is the input to be fetched (not answered by an earlier run)? Counts the rest."""
        if self.table is not None:
            return self.table.admit(line)
        if self.files.is_done(line.text, parsed.key):
            self.counts.skipped += 1
            return False
        if self._answered(line.text, parsed.key):
            self.counts.duplicates += 1  # answered for an earlier input of this run
            return False
        return True

    def _parse_line(self, line: InputLine) -> Parsed[Any]:
        if line.problem is not None:
            error = InvalidInputError(line.text, line.problem)
            return Parsed(line, None, None, None, error)
        return self.kind.parse(line.text).replace(raw=line)

    def _record(self, result: Result[Any]) -> None:
        if self.table is not None:
            self.table.record(result, self.counts)
            return
        line, error = unwrap(result)
        if not self._first_answer(line.text, result.key):
            self.counts.duplicates += 1  # its key was answered for an earlier input
            return
        if error is None:
            self.files.write_model(line.text, _key(result), result.value)
            self.counts.done += 1
        else:
            self._record_error(line, result, error)

    def _record_error(self, line: InputLine, result: Result[Any], error: TikTokError) -> None:
        kind = outcome(error)
        self.files.write_error(line.text, result.key, kind, error.status, error_message(error),
                               result.attempts, line.line_no)
        if kind == "invalid":
            self.counts.invalid += 1
        elif kind == "not_found":
            self.counts.not_found += 1
        else:
            self.counts.failed += 1

    def _answered(self, text: str, key: str | None) -> bool:
        keys, texts = self._answered_this_run
        return key in keys if key is not None else text in texts

    def _first_answer(self, text: str, key: str | None) -> bool:
        """Remember an input answered this run: False when its key (an invalid one's text)
        was already."""
        keys, texts = self._answered_this_run
        return keys.add_new(key) if key is not None else texts.add_new(text)

    def _count_client_stats(self) -> None:
        stats, counts = self.client.stats, self.counts
        counts.retries = stats.retries
        counts.throttled = stats.responses.get(429, 0)
        counts.concurrency, counts.held_back = stats.concurrency, stats.concurrency_held_back
        counts.max_concurrency = self.client.max_concurrency

    def _on_sigint(self, signum: int) -> bool:
        """First Ctrl-C (or SIGTERM): no new input, no new request; the second: cancel
        (return True)."""
        if self._stopping:
            return True
        self._stopping = self._interrupted = True
        self._signal = signum
        self._stop.set(RunInterrupted("interrupted"))
        if self._piped_lines is not None:
            self._piped_lines.close()  # a wait for the next piped line ends now
        print(f"\nstopping: nothing new is sent; waiting up to {INTERRUPT_GRACE:g} s for the "
              "requests on the wire (Ctrl-C again to abandon them)", file=sys.stderr)
        return False

    def _title(self, code: int) -> str:
        words = {EXIT_OK: "finished", EXIT_SOME_FAILED: "finished, some inputs failed",
                 EXIT_ABORTED: "aborted", EXIT_INTERRUPTED: "interrupted (re-run to resume)",
                 EXIT_TERMINATED: "terminated (re-run to resume)"}
        return f"tiktok-async {self.kind.name}: {words.get(code, 'stopped')}"


def _key(result: Result[Any]) -> str:
    assert result.key is not None
    return result.key


class _sigint_handler:
    """Route SIGINT and SIGTERM to `on_sigint(signum)`; when it returns True, or `grace`
    seconds after the first one, cancel `task` (the requests still in flight are
    abandoned, not recorded)."""

    def __init__(self, on_sigint: Callable[[int], bool], task: asyncio.Task[Any] | None, *,
                 grace: float) -> None:
        self._on_sigint = on_sigint
        self._task = task
        self._grace = grace
        self._installed = False

    def _handle(self, signum: int) -> None:
        if self._task is None:
            return
        if self._on_sigint(signum):
            self._task.cancel()
        else:
            asyncio.get_running_loop().call_later(self._grace, self._task.cancel)

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for signum in _STOP_SIGNALS:
                loop.add_signal_handler(signum, self._handle, signum)
            self._installed = True
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Windows
            pass

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            for signum in _STOP_SIGNALS:
                asyncio.get_running_loop().remove_signal_handler(signum)


#: The signals that stop a run cleanly: Ctrl-C, and what `docker stop` or systemd send.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
