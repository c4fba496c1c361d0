"""The command line's files: streamed inputs, append-only outputs, resume (stdlib only).

Input (`read_inputs`), streamed, never read whole:

- a text file: one handle, URL or `handle,videoId` a line. Blank lines and lines
  starting with `#` are skipped; a UTF-8 BOM, CRLF and surrounding spaces are removed.
- a CSV file with a header row (`column=` names the column; a `.csv` file with a
  single column needs none). Every data row is an input, an empty cell included.
- `-`: standard input, as a text file (or CSV when `column` is given).

Each input is an `InputLine(line_no, text, problem)`: `line_no` is the 1-based physical
line (where a CSV record starts). `problem` is set, for the validator to report the
input as invalid without looking further, when the line was not valid UTF-8 (`text`
then holds U+FFFD for the bad bytes) or longer than `max_line_bytes` (4096 by default:
`text` holds only its beginning, so a 10 MB line never sits in memory).

Output (`OutputFiles`), append-only, one writer, each line written whole by a single
unbuffered write (flushed as it comes), `fsync` on close:

- JSON lines (default): one object a line, `{"input": ..., "key": ..., <record>}`
  where the record is the answer as builtins (`to_builtins`), e.g. `user`, `stats`.
- CSV: a header row written once, then one row per answer. Columns are fixed by the
  caller for the kind (users or videos): `input`, `key`, then dotted names of the
  flattened record (`user.id`, `stats.follower_count`). Nested dicts are flattened;
  lists are JSON-encoded; `None` is an empty cell; booleans are `true`/`false`.
- `-`: standard output (JSON lines or CSV), flushed per line. No resume then: the
  errors file is appended to (a torn tail still cut) but not used to skip anything.

Errors go to a separate JSON-lines file, by default beside the output with
`.errors.jsonl` for its suffix (`users.jsonl` -> `users.errors.jsonl`), or
`errors.jsonl` in the current directory when the output is `-`. One object per input
that got no answer: `{"input", "key" (null when invalid), "kind" ("invalid",
"not_found", "failed", ...), "status" (HTTP status or null), "message", "attempts",
"line"}`.

Resume: opening existing files scans them, streamed, for keys already answered
(output, and errors of every kind but "invalid") and for raw inputs recorded as
invalid; the caller skips those (`is_done`). Resume goes by key, so a duplicate input
whose key is done is skipped too: its answer is in the output under the input that
came first. A torn tail from a crash (bytes after the
last newline, or a last line that does not parse) is cut off before anything is
appended, so no line is ever half-written twice or merged with the next. With
`retry_failed=True`, "failed" errors are dropped from the errors file (rewritten
atomically) so those inputs are tried again. Done keys are kept as sorted 64-bit
hashes (`KeySet`, about 8 bytes a key), so resuming a 10-million-line run is cheap;
a hash collision (odds about 1 in 400,000 at 10^7 keys) would skip one input.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import json
import os
import re
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

__all__ = [
    "MAX_LINE_BYTES",
    "InputFormatError",
    "InputLine",
    "KeySet",
    "OutputFiles",
    "ResumeInfo",
    "default_errors_path",
    "flatten",
    "json_line_encoder",
    "read_inputs",
]

MAX_LINE_BYTES = 4096
_BOM = b"\xef\xbb\xbf"

Encoder = Callable[[object], bytes]
OutputFormat = Literal["jsonl", "csv"]


class InputFormatError(ValueError):
    """The input cannot be read as asked (a missing CSV column, an empty CSV)."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One input: its physical line number, its text, and why it is unusable if it is."""

    line_no: int
    text: str
    problem: str | None = None


# -- reading inputs -------------------------------------------------------------------


def read_inputs(
    source: str | os.PathLike[str],
    *,
    column: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[InputLine]:
    """Open `source` (a path or `-` for stdin) and stream its inputs.

    Opening errors (`OSError`) and a bad CSV header (`InputFormatError`) are raised
    here, before the first input; the returned iterator closes the file when done.
    """
    is_stdin = str(source) == "-"
    stream: IO[bytes] = sys.stdin.buffer if is_stdin else open(source, "rb")  # noqa: SIM115
    try:
        lines = _physical_lines(stream, max_line_bytes)
        if column is None and not str(source).lower().endswith(".csv"):
            records = _text_inputs(lines, max_line_bytes)
        else:
            records = _csv_inputs(lines, column, max_line_bytes)
    except BaseException:
        if not is_stdin:
            stream.close()
        raise
    return _closing_when_done(records, None if is_stdin else stream)


def _closing_when_done(
    records: Iterator[InputLine], stream: IO[bytes] | None
) -> Iterator[InputLine]:
    try:
        yield from records
    finally:
        if stream is not None:
            stream.close()


@dataclass
class _Line:
    no: int
    data: bytes  # without the line ending
    too_long: bool


def _physical_lines(stream: IO[bytes], limit: int) -> Iterator[_Line]:
    """Lines as bytes, at most `limit` bytes each: the rest of a longer line is skipped."""
    no = 0
    while True:
        data = stream.readline(limit)
        if not data:
            return
        no += 1
        too_long = not data.endswith(b"\n") and len(data) >= limit
        if too_long:
            _skip_rest_of_line(stream, limit)
        if no == 1 and data.startswith(_BOM):
            data = data[len(_BOM):]
        yield _Line(no, data.rstrip(b"\n").rstrip(b"\r"), too_long)


def _skip_rest_of_line(stream: IO[bytes], limit: int) -> None:
    while True:
        chunk = stream.readline(limit)
        if not chunk or chunk.endswith(b"\n"):
            return


def _decode(line: _Line, limit: int) -> tuple[str, str | None]:
    try:
        text = line.data.decode("utf-8")
        problem = None
    except UnicodeDecodeError:
        text = line.data.decode("utf-8", errors="replace")
        problem = "not valid UTF-8"
    if line.too_long:
        problem = f"line longer than {limit} bytes"
    return text, problem


def _text_inputs(lines: Iterator[_Line], limit: int) -> Iterator[InputLine]:
    for line in lines:
        text, problem = _decode(line, limit)
        text = text.strip()
        if text and not text.startswith("#"):
            yield InputLine(line.no, text, problem)


def _csv_inputs(lines: Iterator[_Line], column: str | None, limit: int) -> Iterator[InputLine]:
    """Read the header now (a missing column fails here); return the rows' iterator."""
    feed = _CsvFeed(lines, limit)
    reader = csv.reader(feed)
    header = next(reader, None)
    if header is None:
        raise InputFormatError("the CSV file is empty: a header row is needed")
    index = _column_index(header, column)
    return _csv_rows(reader, feed, index, header[index].strip())


def _csv_rows(reader: Iterator[list[str]], feed: _CsvFeed, index: int,
              name: str) -> Iterator[InputLine]:
    while True:
        start = feed.line_no + 1
        feed.problem = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield InputLine(start, "", f"unreadable CSV row: {exc}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        text = row[index].strip() if index < len(row) else ""
        problem = feed.problem or (None if text else f"no value in column {name!r}")
        yield InputLine(start, text, problem)


class _CsvFeed:
    """Decoded lines for `csv.reader`, remembering the problem of the current record."""

    def __init__(self, lines: Iterator[_Line], limit: int) -> None:
        self._lines = lines
        self._limit = limit
        self.problem: str | None = None
        self.line_no = 0  # the physical line last handed to csv.reader

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.line_no = line.no
        text, problem = _decode(line, self._limit)
        self.problem = self.problem or problem
        return text + "\n"


def _column_index(header: list[str], column: str | None) -> int:
    names = [name.strip() for name in header]
    available = ", ".join(repr(name) for name in names)
    if column is None:
        if len(names) == 1:
            return 0
        raise InputFormatError(f"the CSV file has several columns; choose one: {available}")
    if column not in names:
        raise InputFormatError(f"no column {column!r} in the CSV header; available: {available}")
    return names.index(column)


# -- done keys --------------------------------------------------------------------------


class KeySet:
    """A set of strings for membership tests, in about 8 bytes a string.

    Holds each string's 64-bit hash, not the string, in 1,024 buckets (by the hash's
    low bits) that are sorted when first searched after a change, then bisected.
    Python's string hash is salted per process: a `KeySet` is only good within one.
    """

    _MASK = (1 << 10) - 1

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._buckets: list[array[int]] = [array("q") for _ in range(self._MASK + 1)]
        self._unsorted = bytearray(self._MASK + 1)
        self._added = 0
        for key in keys:
            self.add(key)

    def add(self, key: str) -> None:
        """Remember `key`."""
        h = hash(key)
        self._buckets[h & self._MASK].append(h)
        self._unsorted[h & self._MASK] = 1
        self._added += 1

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        h = hash(key)
        bucket = self._sorted_bucket(h & self._MASK)
        i = bisect.bisect_left(bucket, h)
        return i < len(bucket) and bucket[i] == h

    def __len__(self) -> int:
        """How many keys were added (a key added twice counts twice)."""
        return self._added

    def compact(self) -> None:
        """Sort every bucket now, so no later lookup pays for it."""
        for index in range(self._MASK + 1):
            self._sorted_bucket(index)

    def _sorted_bucket(self, index: int) -> array[int]:
        bucket = self._buckets[index]
        if self._unsorted[index]:
            bucket = self._buckets[index] = array("q", sorted(bucket))
            self._unsorted[index] = 0
        return bucket


# -- scanning existing files for resume -------------------------------------------------

_STR = r'"(?:[^"\\]|\\.)*"'
_HEAD = re.compile(
    rf'\{{\s*"input"\s*:\s*(?P<input>{_STR})\s*,\s*"key"\s*:\s*(?P<key>{_STR}|null)'
    rf'(?:\s*,\s*"kind"\s*:\s*(?P<kind>{_STR}))?'.encode()
)


@dataclass
class _Scan:
    """What resume learned from one existing file."""

    good_end: int = 0  # offset just after the last complete, readable line
    rows: int = 0
    unreadable: int = 0  # complete lines before the tail that could not be read
    header: list[str] | None = None  # CSV only


@dataclass(frozen=True, slots=True)
class _Row:
    input: str
    key: str | None
    kind: str | None


def _scan_jsonl(path: Path, on_row: Callable[[_Row], None]) -> _Scan:
    scan = _Scan()
    offset = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for data in f:
            end = offset + len(data)
            is_tail = end >= size  # only the last line can be torn: check it fully
            row = _parse_jsonl(data, full=is_tail) if data.endswith(b"\n") else None
            if row is not None:
                on_row(row)
                scan.rows += 1
                scan.good_end = end
            elif not is_tail:  # an unreadable line before the tail: keep it, count it
                scan.unreadable += 1
                scan.good_end = end
            offset = end
    return scan


def _parse_jsonl(data: bytes, *, full: bool) -> _Row | None:
    """The input, key and kind of one line; from its head alone unless `full`."""
    match = None if full else _HEAD.match(data)
    try:
        if match is None:
            return _row_of(json.loads(data))
        key_raw, kind_raw = match["key"], match["kind"]
        return _Row(
            _json_str(match["input"]),
            None if key_raw == b"null" else _json_str(key_raw),
            None if kind_raw is None else _json_str(kind_raw),
        )
    except ValueError:
        return None


def _json_str(token: bytes) -> str:
    """A JSON string token's value; without escapes it is just the bytes inside quotes."""
    if b"\\" in token:
        value = json.loads(token)
        assert isinstance(value, str)
        return value
    return token[1:-1].decode("utf-8")


def _row_of(obj: object) -> _Row | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("input"), str):
        return None
    key, kind = obj.get("key"), obj.get("kind")
    return _Row(obj["input"], key if isinstance(key, str) else None,
                kind if isinstance(kind, str) else None)


def _scan_csv(path: Path, on_row: Callable[[_Row], None]) -> _Scan:
    scan = _Scan()
    feed = _OffsetLines(path)
    reader = csv.reader(feed)
    try:
        for record in reader:
            if not feed.ended_with_newline:
                break  # the torn tail
            if scan.header is None:
                scan.header = record
            elif len(record) >= 2:
                on_row(_Row(record[0], record[1] or None, None))
                scan.rows += 1
            scan.good_end = feed.offset
    except csv.Error:
        pass  # an unterminated quote at the end: the torn tail
    finally:
        feed.close()
    return scan


class _OffsetLines:
    """Decoded lines of a file for `csv.reader`, tracking the byte offset consumed."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115
        self.offset = 0
        self.ended_with_newline = True

    def __iter__(self) -> _OffsetLines:
        return self

    def __next__(self) -> str:
        data = self._file.readline()
        if not data:
            raise StopIteration
        self.offset += len(data)
        self.ended_with_newline = data.endswith(b"\n")
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._file.close()


def _repair(path: Path, scan: _Scan) -> int:
    """Cut the torn tail after `scan.good_end`; return the bytes removed."""
    size = path.stat().st_size
    if size > scan.good_end:
        with open(path, "r+b") as f:
            f.truncate(scan.good_end)
            f.flush()
            os.fsync(f.fileno())
    return size - scan.good_end


# -- writing ------------------------------------------------------------------------------


def default_errors_path(out: str | os.PathLike[str]) -> Path:
    """Where errors go by default: `users.jsonl` -> `users.errors.jsonl`; `-` -> `errors.jsonl`."""
    if str(out) == "-":
        return Path("errors.jsonl")
    path = Path(out)
    return path.with_name(f"{path.stem if path.suffix else path.name}.errors.jsonl")


def json_line_encoder(obj: object) -> bytes:
    """The default encoder: compact JSON; lone surrogates kept as `\\uXXXX` escapes."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", errors="backslashreplace")


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


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _LineWriter:
    """Appends whole lines to one file descriptor: one `write` per line, no buffer."""

    def __init__(self, fd: int, *, owned: bool) -> None:
        self._fd = fd
        self._owned = owned

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:  # a regular file takes it at once; a pipe may not
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if not self._owned:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _open_append(path: Path) -> _LineWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    return _LineWriter(os.open(path, flags, 0o644), owned=True)


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


@dataclass
class ResumeInfo:
    """What `OutputFiles.open` found in files left by an earlier run."""

    answered: int = 0  # rows in the output
    errors: int = 0  # rows in the errors file
    failed: int = 0  # of those, inputs that failed after their retries (not retried now)
    repaired_bytes: int = 0  # torn tails cut off (both files)
    unreadable_lines: int = 0  # complete lines that could not be read, left in place


def _ignore(row: _Row) -> None:
    del row


class _Resume:
    """Reads what earlier runs left (done keys, invalid inputs) and repairs torn tails."""

    def __init__(self) -> None:
        self.done_keys = KeySet()
        self.invalid_inputs = KeySet()
        self.info = ResumeInfo()

    def scan(self, path: Path, fmt: OutputFormat, columns: list[str], *,
             remember: bool = True) -> int:
        """Scan one file (if it exists) and repair its tail; return its rows."""
        if not path.exists():
            return 0
        on_row = self._remember if remember else _ignore
        result = (_scan_csv if fmt == "csv" else _scan_jsonl)(path, on_row)
        if fmt == "csv" and result.header is not None and result.header != columns:
            raise InputFormatError(f"{path} has other CSV columns than this run writes; "
                                   "choose another output file")
        self.info.unreadable_lines += result.unreadable
        self.info.repaired_bytes += _repair(path, result)
        return result.rows

    def _remember(self, row: _Row) -> None:
        if row.kind == "failed":
            self.info.failed += 1
        if row.kind == "invalid" or row.key is None:
            self.invalid_inputs.add(row.input)
        else:
            self.done_keys.add(row.key)


class OutputFiles:
    """The output and errors files of one run: resume scan, whole-line appends, counts.

    Use `OutputFiles.open(...)`; `is_done` tells the caller what to skip; `write_ok` and
    `write_error` append one line each; `close()` syncs. A context manager too.
    """

    def __init__(self, out: _LineWriter, errors: _LineWriter, *, fmt: OutputFormat,
                 columns: Sequence[str], encode: Encoder, resume: _Resume) -> None:
        self._out = out
        self._errors = errors
        self._fmt = fmt
        self._columns = list(columns)
        self._encode = encode
        self.done_keys = resume.done_keys
        self.invalid_inputs = resume.invalid_inputs
        self.resumed = resume.info
        self.counts: Counter[str] = Counter()  # "ok" and each error kind, this run only
        self._closed = False

    @classmethod
    def open(
        cls,
        out: str | os.PathLike[str],
        *,
        fmt: OutputFormat = "jsonl",
        columns: Sequence[str] = (),
        errors: str | os.PathLike[str] | None = None,
        encode: Encoder | None = None,
        retry_failed: bool = False,
    ) -> OutputFiles:
        """Open (creating or resuming) `out` (`-`: stdout) and its errors file.

        `columns`: for CSV, the kind's flattened record columns (`user.id`, ...);
        `input` and `key` are put first. `encode`: object -> one line of JSON bytes
        without the newline (default: `json_line_encoder`; `_models.encode_json` fits).
        """
        if fmt == "csv" and not columns:
            raise ValueError("CSV output needs its columns")
        all_columns = ["input", "key", *(c for c in columns if c not in ("input", "key"))]
        errors_path = Path(errors) if errors is not None else default_errors_path(out)
        if str(out) != "-" and errors_path.resolve() == Path(out).resolve():
            raise ValueError("the errors file must not be the output file")
        resume = _Resume()
        if retry_failed and errors_path.exists():
            _drop_failed(errors_path)
        to_stdout = str(out) == "-"
        resume.info.errors = resume.scan(errors_path, "jsonl", all_columns,
                                         remember=not to_stdout)
        if to_stdout:
            sys.stdout.flush()  # what print() buffered goes first
            out_writer = _LineWriter(sys.stdout.fileno(), owned=False)
            needs_header = fmt == "csv"
        else:
            resume.info.answered = resume.scan(Path(out), fmt, all_columns)
            out_writer = _open_append(Path(out))
            needs_header = fmt == "csv" and Path(out).stat().st_size == 0
        resume.done_keys.compact()
        resume.invalid_inputs.compact()
        files = cls(out_writer, _open_append(errors_path), fmt=fmt, columns=all_columns,
                    encode=encode or json_line_encoder, resume=resume)
        if needs_header:
            out_writer.write(_csv_line(all_columns))
        return files

    def is_done(self, input_text: str, key: str | None) -> bool:
        """Was this input answered by an earlier run (by its key, or its text if invalid)?"""
        if key is not None:
            return key in self.done_keys
        return input_text in self.invalid_inputs

    def write_ok(self, input_text: str, key: str, record: Mapping[str, object]) -> None:
        """Append one answer: the input as given, its normalised key, the record."""
        if self._fmt == "csv":
            flat = flatten(record)
            flat["input"], flat["key"] = input_text, key
            line = _csv_line([_csv_cell(flat.get(name)) for name in self._columns])
        else:
            row: dict[str, object] = {"input": input_text, "key": key}
            row.update(record)
            row["input"], row["key"] = input_text, key  # first, and never overridden
            line = self._encode(row) + b"\n"
        self._out.write(line)
        self.counts["ok"] += 1

    def write_error(
        self,
        input_text: str,
        key: str | None,
        kind: str,
        status: int | None,
        message: str,
        attempts: int,
        line: int | None,
    ) -> None:
        """Append one input that got no answer, with why (kind "invalid" has no key)."""
        row = {"input": input_text, "key": key, "kind": kind, "status": status,
               "message": message, "attempts": attempts, "line": line}
        self._errors.write(self._encode(row) + b"\n")
        self.counts[kind] += 1

    def close(self) -> None:
        """Sync and close both files (stdout is left open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._out.close()
        finally:
            self._errors.close()

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_failed(path: Path) -> None:
    """Rewrite the errors file without its "failed" rows (atomically, via a temp file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for data in src:
            row = _parse_jsonl(data, full=False) if data.endswith(b"\n") else None
            if row is None or row.kind != "failed":
                dst.write(data)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename durable where directories sync
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
