"""Whole-line writers and the cells of a row (stdlib only): what `_files` and `_table`
write with.

`LineWriter` appends whole lines to one file descriptor (in a running event loop, the
lines of one turn of the loop in one `write` at its end), and cuts a failed write (ENOSPC)
back to the last whole line (`OutputWriteError`); a pipe whose reader closed it (EPIPE)
is `OutputClosedError`, which the command takes as a quiet stop. CSV cells:
`csv_cell` (None empty, `true`/`false`, numbers bare, lists and dicts as JSON, text a
spreadsheet would run as a formula defused with a leading apostrophe), `csv_line`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import json
import json.encoder
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["BOM", "LineWriter", "OutputClosedError", "OutputWriteError", "StderrWriter",
           "Writer", "csv_cell", "csv_line", "flatten", "json_line_encoder", "json_string",
           "open_append", "silence_stdout", "stdout_writer"]

#: A UTF-8 byte-order mark: what tells Excel a CSV file is UTF-8.
BOM = b"\xef\xbb\xbf"


class OutputWriteError(Exception):
    """An output or errors file could not be written (a full disk); the line being
    written was cut back, so the file holds only whole lines (exit 4)."""

    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(f"cannot write to {where}: {error.strerror or error}; every line "
                         "written before is whole (the one being written was cut back): "
                         "free some space, then run the same command again to resume")
        self.where = where
        self.error = error


class OutputClosedError(OutputWriteError):
    """The reader of a pipe closed it (`-o - | head -1`): the reader's normal way to say it
    has enough, not a disk problem, and `-o -` has nothing to resume. The command stops
    quietly, as a Unix filter killed by SIGPIPE does (`silence_stdout`, exit 141)."""

    def __init__(self, where: str, error: OSError) -> None:
        Exception.__init__(self, f"{where} was closed by its reader: stopped")
        self.where = where
        self.error = error


def silence_stdout() -> None:
    """Point standard output at the null device, so that Python's flush at exit does not
    write to the closed pipe again ("Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


# -- encoding ----------------------------------------------------------------------------


def json_line_encoder(obj: object) -> bytes:
    """The default encoder: compact JSON; lone surrogates kept as `\\uXXXX` escapes."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", errors="backslashreplace")


def json_string(text: str) -> bytes:
    """`text` as a JSON string, UTF-8: the bytes msgspec writes for it (a lone surrogate
    raises `UnicodeEncodeError`, as in msgspec), in a fourth of `encode_json`'s time."""
    return json.encoder.encode_basestring(text).encode()


def flatten(record: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested dicts as one level with dotted names: `{"user": {"id": 1}}` -> `{"user.id": 1}`."""
    flat: dict[str, object] = {}
    for name, value in record.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


_FORMULA_START = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: object) -> str:
    """One CSV cell: empty for None, `true`/`false`, numbers bare, lists and dicts as
    JSON; text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _defused(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _defused(text: str) -> str:
    """OWASP's CSV injection rule: `=1+1`, `+cmd`, `-2+3`, `@SUM(...)` -> `'=1+1` ...;
    a plain number (`-12`, `+3.5`) is left as it is."""
    if text[:1] in _FORMULA_START and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_line(cells: Sequence[str]) -> bytes:
    """One CSV record, `\\n`-terminated, UTF-8 (lone surrogates escaped)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


# -- writers -----------------------------------------------------------------------------

#: Lines gathered at most before they are written, in a turn of the loop that records many.
GATHER_LINES = 256


class Writer(Protocol):
    """Where lines go: a file, standard output, standard error."""

    where: str
    at_start: bool

    def write(self, line: bytes) -> None: ...

    def close(self) -> None: ...


class LineWriter:
    """Appends whole lines to one file descriptor.

    In a running event loop, the lines written in one turn of the loop are gathered and
    written with one `write` at the end of that turn (`call_soon`): a bulk run records tens
    of answers a turn, and a system call a line was about 2 us of the command line's own
    15 us an input. Nothing waits longer than the turn: the lines are in the file before
    the loop next waits for the network, and at most `GATHER_LINES` wait at once. Outside
    a loop, one `write` a line.

    Remembers where the next line starts: a write that fails (ENOSPC) is cut back there,
    so the file never ends in half a line. A gathered write that fails at the end of a
    turn is raised by the next `write`, `flush` or `close` (the lines of that turn are not
    in the file: a re-run asks for them again).
    """

    def __init__(self, fd: int, where: str, *, owned: bool) -> None:
        self._fd = fd
        self.where = where
        self._owned = owned
        self._end = os.fstat(fd).st_size if owned else 0
        self.at_start = self._end == 0
        self._gathered: list[bytes] | None = None  # this turn's lines, not written yet
        self._failed: OutputWriteError | None = None

    def write(self, line: bytes) -> None:
        """Append `line` (whole): at the end of this turn of the running loop, else now."""
        if self._failed is not None:
            raise self._failed
        if self._gathered is not None:
            self._gathered.append(line)
            if len(self._gathered) >= GATHER_LINES:
                self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(line)
            return
        self._gathered = [line]
        loop.call_soon(self._flush_turn)

    def flush(self) -> None:
        """Write the lines gathered in this turn now."""
        if self._failed is not None:
            raise self._failed
        gathered, self._gathered = self._gathered, None
        if gathered:
            try:
                self._write(b"".join(gathered))
            except OutputWriteError as exc:
                self._failed = exc
                raise

    def _flush_turn(self) -> None:
        with contextlib.suppress(OutputWriteError):  # kept in _failed for the next call
            self.flush()

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:  # a regular file takes it at once; a pipe may not
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._cut_back()
            if exc.errno == errno.EPIPE:
                raise OutputClosedError(self.where, exc) from exc
            raise OutputWriteError(self.where, exc) from exc
        self._end += len(line)

    def _cut_back(self) -> None:
        if self._owned:
            with contextlib.suppress(OSError):  # a pipe cannot be cut; resume repairs a file
                os.ftruncate(self._fd, self._end)

    def close(self) -> None:
        """Write what is gathered; a file is synced and closed (standard output stays open)."""
        try:
            self.flush()
        finally:
            if self._owned:
                self._sync_and_close()

    def _sync_and_close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise OutputWriteError(self.where, exc) from exc
        finally:
            os.close(self._fd)


class StderrWriter:
    """Error lines to standard error, through `sys.stderr` so a live progress bar
    prints them above itself."""

    where = "standard error"
    at_start = True

    def write(self, line: bytes) -> None:
        sys.stderr.write(line.decode("utf-8", errors="backslashreplace"))
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.flush()


def open_append(path: Path) -> LineWriter:
    """`path` opened for appending whole lines (created if missing)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    return LineWriter(os.open(path, flags, 0o644), str(path), owned=True)


def stdout_writer() -> LineWriter:
    """Standard output as a line writer (never closed, never cut back)."""
    sys.stdout.flush()  # what print() buffered goes first
    return LineWriter(sys.stdout.fileno(), "standard output", owned=False)
