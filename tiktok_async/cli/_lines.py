"""Bytes to lines for the command line's input files (stdlib only): what a file is when it
is not UTF-8 text, physical lines of bounded length, and their decoding."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["BOM", "SAMPLE_BYTES", "Line", "decode", "physical_lines", "skip_rest_of_line",
           "what_file_is", "what_stream_is"]

BOM = b"\xef\xbb\xbf"

# -- what a file is, when it is not text -------------------------------------------------

SAMPLE_BYTES = 4096
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


def what_stream_is(stream: IO[bytes], source: str | os.PathLike[str]) -> str | None:
    """`what_file_is` for an open stream's first bytes (peeked, not consumed), with its
    name (`standard input` for `-`); None for text, or when it cannot be peeked."""
    peek = getattr(stream, "peek", None)
    if peek is None:
        return None
    sample: bytes = peek(SAMPLE_BYTES)[:SAMPLE_BYTES]
    is_stdin = str(source) == "-"
    what = what_file_is(sample, None if is_stdin else Path(source))
    if what is None:
        return None
    return f"{'standard input' if is_stdin else source} {what}"


@dataclass
class Line:
    """One physical line: its number, its bytes without the ending, and whether it was cut."""

    no: int
    data: bytes  # without the line ending
    too_long: bool


def physical_lines(stream: IO[bytes], limit: int) -> Iterator[Line]:
    """Lines as bytes, at most `limit` bytes each: the rest of a longer line is skipped."""
    no = 0
    while True:
        data = stream.readline(limit)
        if not data:
            return
        no += 1
        too_long = not data.endswith(b"\n") and len(data) >= limit
        if too_long:
            skip_rest_of_line(stream, limit)
        if no == 1 and data.startswith(BOM):
            data = data[len(BOM):]
        yield Line(no, data.rstrip(b"\n").rstrip(b"\r"), too_long)


def skip_rest_of_line(stream: IO[bytes], limit: int) -> None:
    while True:
        chunk = stream.readline(limit)
        if not chunk or chunk.endswith(b"\n"):
            return


def decode(line: Line, limit: int) -> tuple[str, str | None]:
    """The line as text (U+FFFD for bad bytes) and its problem, if any."""
    try:
        text = line.data.decode("utf-8")
        problem = None
    except UnicodeDecodeError:
        text = line.data.decode("utf-8", errors="replace")
        problem = "not valid UTF-8"
    if line.too_long:
        problem = f"line longer than {limit} bytes"
    return text, problem
