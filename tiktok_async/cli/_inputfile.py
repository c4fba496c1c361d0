"""The command line's input files, streamed, never read whole (stdlib only).

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

A file that is not UTF-8 text at all is refused before the first input
(`InputFormatError`, saying what the file is and what to do): UTF-16 or UTF-32 (a
byte-order mark, or NULs in every other byte), an Excel workbook or another zip, an old
Office file, gzip, PDF, SQLite, or other binary (many control bytes). One stray
binary line in a text file is not that: it is an invalid input, as above.
`describe_empty` words the warning for an input that holds no inputs at all.
"""

from __future__ import annotations

import csv
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["MAX_LINE_BYTES", "InputFormatError", "InputLine", "describe_empty", "read_inputs",
           "what_file_is"]

MAX_LINE_BYTES = 4096
_BOM = b"\xef\xbb\xbf"

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

    Opening errors (`OSError`), a file that is not text and a bad CSV header
    (`InputFormatError`) are raised here, before the first input; the returned iterator
    closes the file when done.
    """
    is_stdin = str(source) == "-"
    stream: IO[bytes] = sys.stdin.buffer if is_stdin else open(source, "rb")  # noqa: SIM115
    try:
        _refuse_if_not_text(stream, source)
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


def describe_empty(source: str | os.PathLike[str]) -> str:
    """The warning for an input that yielded no input at all."""
    name = "standard input" if str(source) == "-" else str(source)
    try:
        empty = str(source) != "-" and os.path.getsize(source) == 0
    except OSError:
        empty = False
    why = "it is empty" if empty else "only blank lines, comments or a CSV header"
    return f"{name} holds no inputs ({why}): nothing to do, no file written"


# -- what a file is, when it is not text -------------------------------------------------

_SAMPLE_BYTES = 4096
_TO_UTF8 = ("save it as UTF-8 (Excel: File > Save As > CSV UTF-8; Notepad: Save As, "
            "Encoding UTF-8; or: iconv -f {enc} -t UTF-8 {file} > utf8-{file})")
_SHEET = "export the sheet as CSV (File > Save As > CSV UTF-8) and pass --column NAME"
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xfe\x00\x00", "is UTF-32 text", _TO_UTF8.replace("{enc}", "UTF-32")),
    (b"\x00\x00\xfe\xff", "is UTF-32 text", _TO_UTF8.replace("{enc}", "UTF-32")),
    (b"\xff\xfe", "is UTF-16 text", _TO_UTF8.replace("{enc}", "UTF-16")),
    (b"\xfe\xff", "is UTF-16 text", _TO_UTF8.replace("{enc}", "UTF-16")),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "is an Excel 97-2003 workbook (or another old "
     "Office file)", _SHEET),
    (b"\x1f\x8b", "is gzip-compressed", "unpack it first (gunzip -k {file}) and give the "
     "file inside, or pipe it: gunzip -c {file} | tiktok-async ... -"),
    (b"%PDF", "is a PDF document", "copy the list into a text file, one input a line"),
    (b"SQLite format 3\x00", "is an SQLite database",
     "export the table: sqlite3 -csv -header DB 'select ...' > list.csv, then --column NAME"),
)
_CONTROL = frozenset(range(32)) - {9, 10, 12, 13, 27}  # not tab, LF, FF, CR, ESC


def what_file_is(sample: bytes, path: Path | None = None) -> str | None:
    """What a file whose first bytes are `sample` is and what to do, when it is not
    UTF-8 text (`"is an Excel workbook: export ..."`); None for text."""
    file = "FILE" if path is None else path.name
    for magic, what, todo in _MAGIC:
        if sample.startswith(magic):
            return f"{what}: {todo.format(file=file)}"
    if sample.startswith(b"PK\x03\x04"):
        return _what_zip_is(path)
    utf16 = _utf16_without_bom(sample)
    if utf16 is not None:
        return ("looks like UTF-16 text without a byte-order mark (NUL in every other "
                f"byte): {_TO_UTF8.format(enc=utf16, file=file)}")
    if sum(byte in _CONTROL for byte in sample) > len(sample) // 10:
        return ("is a binary file, not text: give a text file with one input a line, or a "
                "CSV file with --column NAME")
    return None


def _utf16_without_bom(sample: bytes) -> str | None:
    """`UTF-16LE` or `UTF-16BE` when NULs fill most odd or even bytes (Latin text)."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    if sample[1::2].count(0) >= pairs * 0.4:
        return "UTF-16LE"
    if sample[0::2].count(0) >= pairs * 0.4:
        return "UTF-16BE"
    return None


def _what_zip_is(path: Path | None) -> str:
    names: list[str] = []
    if path is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            pass
    suffix = "" if path is None else path.suffix.lower()
    if suffix in (".xlsx", ".xlsm") or any(name.startswith("xl/") for name in names):
        return f"is an Excel workbook: {_SHEET}"
    if suffix == ".ods" or "content.xml" in names:
        return f"is an OpenDocument file: {_SHEET}"
    return "is a zip archive: unpack it and give the text or CSV file inside"


def _refuse_if_not_text(stream: IO[bytes], source: str | os.PathLike[str]) -> None:
    peek = getattr(stream, "peek", None)
    if peek is None:
        return
    sample: bytes = peek(_SAMPLE_BYTES)[:_SAMPLE_BYTES]
    is_stdin = str(source) == "-"
    what = what_file_is(sample, None if is_stdin else Path(source))
    if what is not None:
        raise InputFormatError(f"{'standard input' if is_stdin else source} {what}")


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

