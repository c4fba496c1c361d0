"""The command line's input files, streamed, never read whole (the standard library, and
the package's `Record` for a line).

Input (`read_table`, `read_inputs`), streamed, never read whole:

- a text file: one handle, URL or `handle,videoId` a line. Blank lines and lines
  starting with `#` are skipped; a UTF-8 BOM, CRLF and surrounding spaces are removed.
- a table: a CSV file with a header row (`.csv`, `.tsv`, or any file with `column=`),
  or JSON lines whose lines are objects (`.jsonl`, `.ndjson`, or standard input whose
  first byte is `{`). `column=` names the column (the field) holding the inputs; without
  it, a table with one column needs none, and `read_table` takes the first header that
  `guesses` names (`handle`, `username`, `url`, ...; `Table.guessed` says so). Every
  row is an input, an empty cell included; rows with no cell filled (and blank lines)
  are skipped. A CSV's delimiter is the one of `, ; TAB |` its header holds most of (a
  `.tsv` file: TAB); quoted cells may hold newlines. A quote that would swallow the rows
  after it (still open at the end, its row over `MAX_ROW_LINES` lines, or closed by a
  later stray quote) is an `InputFormatError` naming the line where it opened: from a
  file, before the first row (the file is read twice); from standard input or a pipe,
  when the reading comes to it. Header names are stripped; an empty one becomes
  `column_N`, a repeated one `NAME_2`, so every column has its own name.
  A JSON-lines table's columns are the keys of its objects in order of first appearance
  (a regular file is read twice for that; standard input, a pipe or a FIFO: the first
  object's keys, and keys of later objects outside them are dropped with one warning).
- `-`: standard input, as a text file; JSON lines when its first byte is `{`; a CSV table
  when `column` is given.

Each input is an `InputLine(line_no, text, problem, cells)`: `line_no` is the 1-based
physical line (where a CSV record starts). `problem` is set, for the validator to report
the input as invalid without looking further, when the line was not valid UTF-8 (`text`
then holds U+FFFD for the bad bytes), longer than `max_line_bytes` (4096 by default for
text, 1 MiB for tables: `text` holds only its beginning, so a 10 MB line never sits in
memory), or a table row is unusable (no value in the column, more cells than the header,
a JSON line that is not an object). `cells` (tables only) holds the row's values, one per
`Table.columns`: text for CSV, any JSON value for JSON lines (None where a key is absent).

A file that is not UTF-8 text at all is refused before the first input
(`InputFormatError`, saying what the file is and what to do): UTF-16 or UTF-32 (a
byte-order mark, or NULs in every other byte), an Excel workbook or another zip, an old
Office file, gzip, PDF, SQLite, or other binary (many control bytes). One stray
binary line in a text file is not that: it is an invalid input, as above.
`describe_empty` words the warning for an input that holds no inputs at all.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from .._models import Record
from ._lines import (
    BOM,
    SAMPLE_BYTES,
    Line,
    decode,
    physical_lines,
    skip_rest_of_line,
    what_file_is,
    what_stream_is,
)

__all__ = ["MAX_LINE_BYTES", "MAX_ROW_LINES", "MAX_TABLE_LINE_BYTES", "InputFormatError",
           "InputLine", "Table", "describe_empty", "read_inputs", "read_table", "what_file_is"]

MAX_LINE_BYTES = 4096
#: A table's rows carry the user's own columns (notes, addresses): a line may be long.
MAX_TABLE_LINE_BYTES = 1 << 20
_DELIMITERS = ",;\t|"
_CSV_SUFFIXES = (".csv", ".tsv")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: A quoted cell may hold line breaks (a bio, an address, notes: a few lines); a row that
#: runs over more lines than this is taken for a stray quote swallowing the rows after it
#: (csv would make them one cell, up to its 1 MiB field limit: thousands of rows).
MAX_ROW_LINES = 100

Shape = Literal["text", "csv", "jsonl"]
Warn = Callable[[str], None]


class InputFormatError(ValueError):
    """The input cannot be read as asked (a missing CSV column, an empty CSV)."""


class InputLine(Record, frozen=True, gc=False):
    """One input: its physical line number, its text, why it is unusable if it is, and
    (a table's row) the values of its columns. A `Record` (made in a tenth of the time of
    a frozen dataclass: one an input)."""

    line_no: int
    text: str
    problem: str | None = None
    cells: tuple[object, ...] | None = None


@dataclass
class Table:
    """What `read_table` found: the inputs, and for a table its columns and the one read."""

    rows: Iterator[InputLine]
    columns: tuple[str, ...] = ()  # empty for a text file
    column: str | None = None  # the column holding the inputs
    guessed: bool = False  # `column` was picked from its name, not given
    kind: str = field(default="text")  # "text", "csv" or "jsonl"

    @property
    def is_table(self) -> bool:
        """True for a CSV or JSON-lines table (its rows carry `cells`)."""
        return bool(self.columns)


# -- reading inputs -------------------------------------------------------------------


def read_inputs(
    source: str | os.PathLike[str],
    *,
    column: str | None = None,
    max_line_bytes: int | None = None,
) -> Iterator[InputLine]:
    """Open `source` (a path or `-` for stdin) and stream its inputs (`read_table`'s rows)."""
    return read_table(source, column=column, max_line_bytes=max_line_bytes).rows


def read_table(
    source: str | os.PathLike[str],
    *,
    column: str | None = None,
    guesses: Sequence[str] = (),
    max_line_bytes: int | None = None,
    warn: Warn | None = None,
) -> Table:
    """Open `source` (a path or `-` for stdin): a text file, or a table (CSV, JSON lines).

    `column` names the table's column holding the inputs; without it, one of `guesses`
    (normalised header names, in order of preference: `handle`, `url`) is taken.
    Opening errors (`OSError`), a file that is not text and a bad header
    (`InputFormatError`) are raised here, before the first input; the rows' iterator
    closes the file when done. `warn` hears about dropped JSON keys (stdin only).
    """
    is_stdin = str(source) == "-"
    stream: IO[bytes] = _stdin() if is_stdin else open(source, "rb")  # noqa: SIM115
    try:
        _refuse_if_not_text(stream, source)
        shape = _shape(stream, source, column)
        limit = max_line_bytes or (MAX_LINE_BYTES if shape == "text" else MAX_TABLE_LINE_BYTES)
        lines = physical_lines(stream, limit)
        if shape == "text":
            table = Table(_text_inputs(stream, limit))
        elif shape == "csv":
            table = _csv_table(lines, _Choice(column, guesses), limit,
                               _Source.of(source, stream))
        else:  # the keys of every object when it can be read twice (not a pipe or a FIFO)
            rereadable = _Source.of(source, stream).rereadable
            keys = _json_keys(Path(source), limit) if rereadable else None
            table = _jsonl_table(lines, _Choice(column, guesses), limit, keys, warn)
    except BaseException:
        if not is_stdin:
            stream.close()
        raise
    table.rows = _closing_when_done(table.rows, None if is_stdin else stream)
    return table


def _stdin() -> IO[bytes]:
    """Standard input as a reader of its own (a duplicate of descriptor 0): a pipe is read
    in a daemon thread (`_pipe`), and a thread blocked in `sys.stdin.buffer` at exit would
    hold the lock the interpreter takes to close it (a fatal error at shutdown)."""
    try:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    except (AttributeError, OSError, ValueError):  # no usable descriptor 0
        return sys.stdin.buffer


def _suffix(source: str | os.PathLike[str]) -> str:
    return "" if str(source) == "-" else Path(source).suffix.lower()


@dataclass(frozen=True)
class _Source:
    """Where a table comes from: its path (`-`: standard input), its name in messages, and
    whether it can be read twice (a regular file; not standard input, a pipe, a FIFO)."""

    path: str | os.PathLike[str]
    name: str
    rereadable: bool

    @classmethod
    def of(cls, path: str | os.PathLike[str], stream: IO[bytes]) -> _Source:
        if str(path) == "-":
            return cls(path, "standard input", False)
        return cls(path, str(path), stat.S_ISREG(os.fstat(stream.fileno()).st_mode))

    @property
    def suffix(self) -> str:
        return _suffix(self.path)


def _shape(stream: IO[bytes], source: str | os.PathLike[str], column: str | None) -> Shape:
    """text, csv or jsonl: by the suffix; else JSON lines when it starts with `{` (standard
    input, or a file with `column`); else a table with `column`, text without."""
    suffix = _suffix(source)
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if column is None and str(source) != "-":
        return "text"
    if _starts_with_brace(stream):
        return "jsonl"
    return "text" if column is None else "csv"


def _starts_with_brace(stream: IO[bytes]) -> bool:
    """Does the stream start with `{` (after a BOM and blanks)? Peeked, not consumed: a pipe
    cannot seek back."""
    peek = getattr(stream, "peek", None)
    head: bytes = peek(SAMPLE_BYTES) if peek is not None else b""
    return head.lstrip(BOM + b" \t\r\n").startswith(b"{")


def describe_empty(source: str | os.PathLike[str]) -> str:
    """The warning for an input that yielded no input at all."""
    name = "standard input" if str(source) == "-" else str(source)
    try:
        empty = str(source) != "-" and os.path.getsize(source) == 0
    except OSError:
        empty = False
    why = "it is empty" if empty else "only blank lines, comments or a CSV header"
    return f"{name} holds no inputs ({why}): nothing to do, no file written"


def _refuse_if_not_text(stream: IO[bytes], source: str | os.PathLike[str]) -> None:
    what = what_stream_is(stream, source)
    if what is not None:
        raise InputFormatError(what)


def _closing_when_done(
    records: Iterator[InputLine], stream: IO[bytes] | None
) -> Iterator[InputLine]:
    try:
        yield from records
    finally:
        if stream is not None:
            stream.close()


def _text_inputs(stream: IO[bytes], limit: int) -> Iterator[InputLine]:
    """A text file's inputs: `physical_lines`, `decode` and the skipping of blanks and
    comments in one loop (the one read of each input: half the cost of the three)."""
    readline, no = stream.readline, 0
    while data := readline(limit):
        no += 1
        too_long = len(data) >= limit and not data.endswith(b"\n")
        if too_long:
            skip_rest_of_line(stream, limit)
        if no == 1 and data.startswith(BOM):
            data = data[len(BOM):]
        try:
            text, problem = data.decode("utf-8").strip(), None
        except UnicodeDecodeError:
            text, problem = data.decode("utf-8", errors="replace").strip(), "not valid UTF-8"
        if text and text[0] != "#":
            yield InputLine(no, text, f"line longer than {limit} bytes" if too_long else problem)


# -- tables: which column ---------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    """The column asked for (`--column`), or the header names to guess it from."""

    column: str | None
    guesses: Sequence[str]

    def pick(self, names: Sequence[str], what: str) -> tuple[int, bool]:
        """The index of the inputs' column, and whether it was guessed."""
        available = ", ".join(repr(name) for name in names)
        if self.column is not None:
            if self.column not in names:
                raise InputFormatError(
                    f"no column {self.column!r} in the {what}; available: {available}")
            return names.index(self.column), False
        if len(names) == 1:
            return 0, False
        for guess in self.guesses:
            for index, name in enumerate(names):
                if _normalised(name) == guess:
                    return index, True
        raise InputFormatError(f"the {what} has several columns and none is named like "
                               f"a handle or a link; choose one with --column: {available}")


def _normalised(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _unique_names(header: Sequence[str]) -> tuple[str, ...]:
    """Header names stripped; an empty one `column_N`, a repeated one `NAME_2`."""
    names: list[str] = []
    for position, raw in enumerate(header, 1):
        base = raw.strip() or f"column_{position}"
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return tuple(names)


# -- CSV tables ----------------------------------------------------------------------------


def _csv_table(lines: Iterator[Line], choice: _Choice, limit: int, source: _Source) -> Table:
    """Read the header now (a missing column fails here); the rows stream. A file is first
    read through once for a broken quote (`_csv_records`), so that none is sent for it."""
    first = next(lines, None)
    if first is None:
        raise InputFormatError("the CSV file is empty: a header row is needed")
    delimiter = "\t" if source.suffix == ".tsv" else _delimiter(decode(first, limit)[0])
    records = _csv_records(_chain(first, lines), delimiter, limit, source.name)
    header = next(records, None)
    columns = _unique_names((header[1] if header else None) or [""])
    index, guessed = choice.pick(columns, "CSV header")
    if source.rereadable:
        _check_quotes(Path(source.path), delimiter, limit, source.name)
    rows = _csv_rows(records, index, columns)
    return Table(rows, columns, columns[index], guessed, "csv")


def _chain(first: Line, rest: Iterator[Line]) -> Iterator[Line]:
    yield first
    yield from rest


def _delimiter(header: str) -> str:
    """The one of `, ; TAB |` the header line holds most of (a comma when none)."""
    counts = [(header.count(candidate), -rank, candidate)
              for rank, candidate in enumerate(_DELIMITERS)]
    count, _, best = max(counts)
    return best if count else ","


def _allow_long_fields(limit: int) -> None:
    """A quoted cell may be as long as a line may be (csv's default cap is 128 KiB)."""
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def _check_quotes(path: Path, delimiter: str, limit: int, name: str) -> None:
    """Read the file through once: `_csv_records` raises at a broken quote."""
    with open(path, "rb") as stream:
        for _ in _csv_records(physical_lines(stream, limit), delimiter, limit, name):
            pass


#: (the line a record starts on, its cells or None when csv cannot read it, its problem)
_Record = tuple[int, list[str] | None, str | None]


def _csv_records(lines: Iterator[Line], delimiter: str, limit: int,
                 name: str) -> Iterator[_Record]:
    """The records of a CSV file; `InputFormatError` at a quote that swallows lines.

    The reader is strict, so that a quoted cell still open at the end of the file, or
    closed by a quote with text after it (the next stray quote), is an error rather than
    a cell holding every line in between; `_CsvFeed` cuts one that runs on for more than
    `MAX_ROW_LINES` lines. Such an error on a record of one line costs no row: that line
    is read again the lenient way (`"ab"cd` is `abcd`, as a spreadsheet reads it).
    """
    feed = _CsvFeed(lines, limit, name)
    _allow_long_fields(limit)
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        start = feed.begin_record()
        try:
            yield start, next(reader), feed.problem
        except StopIteration:
            return
        except csv.Error as exc:
            feed.refuse_if_swallowing(start, exc)
            row, problem = _lenient_row(feed.text, delimiter)
            yield start, row, feed.problem or problem


def _lenient_row(text: str, delimiter: str) -> tuple[list[str] | None, str | None]:
    """One line read by csv's default, lenient rules (None and why, if it cannot be)."""
    try:
        return next(csv.reader([text], delimiter=delimiter), []), None
    except csv.Error as exc:
        return None, f"unreadable CSV row: {exc}"


def _csv_rows(records: Iterator[_Record], index: int,
              columns: tuple[str, ...]) -> Iterator[InputLine]:
    for start, row, problem in records:
        if row is None:
            yield InputLine(start, "", problem, ("",) * len(columns))
        elif any(cell.strip() for cell in row):
            yield _csv_line(start, row, index, columns, problem)


def _csv_line(start: int, row: list[str], index: int, columns: tuple[str, ...],
              problem: str | None) -> InputLine:
    width = len(columns)
    cells = tuple(row[:width]) + ("",) * (width - len(row))
    text = cells[index].strip()
    if len(row) > width:
        problem = problem or (f"{len(row)} cells, the header has {width}: a cell holding "
                              "the delimiter needs quotes")
    problem = problem or (None if text else f"no value in column {columns[index]!r}")
    return InputLine(start, text, problem, cells)


class _CsvFeed:
    """Decoded lines for `csv.reader`, remembering the current record's first line, last
    line and problem; it stops a record that runs over more than `MAX_ROW_LINES` lines."""

    def __init__(self, lines: Iterator[Line], limit: int, name: str) -> None:
        self._lines = lines
        self._limit = limit
        self._name = name  # the file's, for errors
        self.problem: str | None = None
        self.line_no = 0  # the physical line last handed to csv.reader
        self.text = ""  # that line's text
        self._start = 1  # the line the current record starts on
        self._ended = False  # the lines are all read

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        if self.line_no - self._start + 1 >= MAX_ROW_LINES:
            raise self._swallowing(f"runs over more than {MAX_ROW_LINES} lines")
        try:
            line = next(self._lines)
        except StopIteration:
            self._ended = True
            raise
        self.line_no = line.no
        text, problem = decode(line, self._limit)
        self.text = text
        self.problem = self.problem or problem
        return text + "\n"

    def begin_record(self) -> int:
        """A new record starts: its first line's number."""
        self._start, self.problem = self.line_no + 1, None
        return self._start

    def refuse_if_swallowing(self, start: int, exc: csv.Error) -> None:
        """Raise when csv's error ends the file inside a quoted cell, or a record of
        several lines (a quote closed by a stray one)."""
        if self._ended and self.line_no >= start:
            raise self._swallowing(f"is still open at the end of the file (line "
                                   f"{self.line_no})")
        if self.line_no > start:
            raise self._swallowing(f"breaks on line {self.line_no} ({exc})")

    def _swallowing(self, how: str) -> InputFormatError:
        return InputFormatError(
            f"line {self._start} of {self._name} opens a quoted cell that {how}: a stray "
            "quote, which would take the rows after it for one cell; fix it (a cell holding "
            "a quote is quoted, its quote written twice: \"5\"\" tall\"), or give the "
            "inputs as a text file, one a line")


# -- JSON-lines tables --------------------------------------------------------------------


def _json_keys(path: Path, limit: int) -> tuple[str, ...]:
    """Every key of the file's objects, in order of first appearance (a first pass)."""
    keys: dict[str, None] = {}
    with open(path, "rb") as stream:
        for line in physical_lines(stream, limit):
            obj = _json_object(line, limit)
            if isinstance(obj, dict):
                keys.update(dict.fromkeys(obj))
    return tuple(keys)


def _json_object(line: Line, limit: int) -> object:
    """The line's JSON value; a problem (str) in a tuple when it has none; None if blank."""
    text, problem = decode(line, limit)
    if problem is not None:
        return (problem,)
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        return (f"not JSON: {exc}",)


def _jsonl_table(lines: Iterator[Line], choice: _Choice, limit: int,
                 keys: tuple[str, ...] | None, warn: Warn | None) -> Table:
    """Columns from `keys` (a first pass) or, on stdin, from the first object."""
    pending: list[Line] = []
    if keys is None:
        for line in lines:
            pending.append(line)
            obj = _json_object(line, limit)
            if isinstance(obj, dict):
                keys = tuple(obj)
                break
    if not keys:
        raise InputFormatError("the JSON lines hold no object: a table needs objects, one "
                               "a line, such as {\"handle\": \"@ann\", \"segment\": \"food\"}")
    index, guessed = choice.pick(keys, "JSON lines' keys")
    rows = _jsonl_rows(_chained(pending, lines), _JsonRows(keys, index, limit, warn))
    return Table(rows, keys, keys[index], guessed, "jsonl")


def _chained(first: list[Line], rest: Iterator[Line]) -> Iterator[Line]:
    yield from first
    yield from rest


@dataclass
class _JsonRows:
    columns: tuple[str, ...]
    index: int
    limit: int
    warn: Warn | None
    warned: bool = False

    def row(self, line: Line, obj: object) -> InputLine:
        width = len(self.columns)
        if not isinstance(obj, dict):
            why = obj[0] if isinstance(obj, tuple) else f"not an object but {_json_type(obj)}"
            return InputLine(line.no, "", why, (None,) * width)
        self._check_keys(obj, line.no)
        cells = tuple(obj.get(name) for name in self.columns)
        text, problem = _cell_text(cells[self.index], self.columns[self.index])
        return InputLine(line.no, text, problem, cells)

    def _check_keys(self, obj: dict[str, object], line_no: int) -> None:
        extra = [key for key in obj if key not in self.columns]
        if extra and not self.warned and self.warn is not None:
            self.warned = True
            self.warn(f"line {line_no} has keys the first object lacks ({', '.join(extra)}): "
                      "they are dropped (from a file, not standard input, every key is kept)")


def _jsonl_rows(lines: Iterator[Line], rows: _JsonRows) -> Iterator[InputLine]:
    for line in lines:
        obj = _json_object(line, rows.limit)
        if obj is not None and obj != {}:
            yield rows.row(line, obj)


def _json_type(value: object) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _cell_text(value: object, name: str) -> tuple[str, str | None]:
    """The input in a JSON row's field: text (a number as text), else a problem."""
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if value is None or value == "":
        return "", f"no value in field {name!r}"
    return "", f"field {name!r} holds {_json_type(value)}, not text"
