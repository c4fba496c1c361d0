"""Resume: what earlier runs left in the output and errors files (stdlib only).

Resume: opening existing files scans them, streamed, for keys already answered
(output, and errors of every kind but "invalid") and for raw inputs recorded as
invalid; the caller skips those (`is_done`). Resume goes by key, so a duplicate input
whose key is done is skipped too: its answer is in the output under the input that
came first. A torn tail from a crash (bytes after the
last newline, or a last line that does not parse) is cut off before anything is
appended, so no line is ever half-written twice or merged with the next. That repair
only touches a file this tool wrote: a JSON-lines file whose first or last line does not
start as its records do (a last line cut short: as the start of one), or a CSV file whose
header is not this run's, is refused first (`refuse_foreign`). With
`retry_failed=True`, "failed" errors are dropped from the errors file (rewritten
atomically) so those inputs are tried again. Done keys are kept as sorted 64-bit
hashes (`KeySet`, about 8 bytes a key), so resuming a 10-million-line run is cheap;
a hash collision (odds about 1 in 400,000 at 10^7 keys) would skip one input.

A table's output (`scan_table`) resumes by its rows instead: it is written in input
order, so the rows it holds are the input's first rows; the run skips that many. The
scan counts them (and those whose status is `failed`), keeps the last one for the
caller to check against the input, cuts a torn tail, and finds the last input line the
errors file recorded, so no error is recorded twice.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import json
import os
import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ._inputfile import InputFormatError
from ._writers import csv_line

OutputFormat = Literal["jsonl", "csv"]
_BOM = b"\xef\xbb\xbf"

__all__ = ["KeySet", "OutputFormat", "Resume", "ResumeInfo", "TableScan", "drop_failed",
           "refuse_foreign", "refuse_other_kind", "scan_table"]

# -- done keys --------------------------------------------------------------------------


class KeySet:
    """A set of strings for membership tests, in about 8 bytes a string.

    Holds each string's 64-bit hash, not the string, in 1,024 sorted buckets (by the
    hash's low bits), bisected. `add` inserts in place (a run adds a key per answer and
    looks one up per input: a bucket sorted again after every add cost more than both),
    `add_new` too, and says whether the key is new;
    `load` appends for a bulk load (a resume scan), and a bucket so loaded is sorted when
    first searched, or by `compact`. Python's string hash is salted per process: a
    `KeySet` is only good within one.
    """

    _MASK = (1 << 10) - 1

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._buckets: list[array[int]] = [array("q") for _ in range(self._MASK + 1)]
        self._unsorted = bytearray(self._MASK + 1)
        self._added = 0
        for key in keys:
            self.load(key)

    def add(self, key: str) -> None:
        """Remember `key`."""
        h = hash(key)
        index = h & self._MASK
        if self._unsorted[index]:
            self._buckets[index].append(h)
        else:
            bisect.insort(self._buckets[index], h)
        self._added += 1

    def add_new(self, key: str) -> bool:
        """Remember `key`; False when it was there already (one search, not two)."""
        h = hash(key)
        bucket = self._sorted_bucket(h & self._MASK)
        i = bisect.bisect_left(bucket, h)
        if i < len(bucket) and bucket[i] == h:
            return False
        bucket.insert(i, h)
        self._added += 1
        return True

    def load(self, key: str) -> None:
        """Remember `key`, cheaply for many in a row: its bucket is sorted on its next search."""
        h = hash(key)
        self._buckets[h & self._MASK].append(h)
        self._unsorted[h & self._MASK] = 1
        self._added += 1

    def __contains__(self, key: object) -> bool:
        if not self._added or not isinstance(key, str):  # empty: a fresh run's
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


# -- files this tool did not write -----------------------------------------------------

#: How every line of a list's output (JSON lines) and of an errors file starts.
RECORD_HEAD = b'{"input":'
#: How every line of a table's JSON-lines output starts (its first column's name follows).
TABLE_ROW_HEAD = b'{"'


def refuse_foreign(path: Path, head: bytes, what: str) -> None:
    """Refuse (`InputFormatError`) a JSON-lines file that this tool did not write, before
    resume cuts its last line or appends to it: its first and its last line must start as
    its records do (`head`); a last line cut short (no newline) may be any start of one.
    Reads those two lines' starts only, however big the file."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        whole = f.read(1) == b"\n"  # the last line has its newline
        last_start = _line_start(f, size if whole else size + 1)
        f.seek(last_start)
        last = f.read(len(head))
        f.seek(0)
        first = f.readline(len(head))
    if not (_starts_as(first, head, cut=not whole and last_start == 0)
            and _starts_as(last, head, cut=not whole)):
        raise _foreign(path, what)


#: The most of a first record read to tell its kind (a profile or a video is a few KB).
_FIRST_RECORD_BYTES = 1 << 20


def refuse_other_kind(path: Path, columns: Iterable[str]) -> None:
    """Refuse (`InputFormatError`) a list's JSON-lines output whose first answer is of
    another kind (`videos` into `users.jsonl`: the run would append videos to profiles).
    Its fields are compared with this run's (`columns`' first parts, `user.id` -> `user`):
    the same kind shares most (a field added or dropped by another version of the tool
    still passes), users and videos one (`stats`) of nine. No columns: nothing to tell."""
    with open(path, "rb") as f:
        first = f.readline(_FIRST_RECORD_BYTES)
    try:
        record = json.loads(first)
    except ValueError:  # a torn first line: the resume cuts it
        return
    if not isinstance(record, dict):
        return
    ours = {name.split(".", 1)[0] for name in columns} - {"input", "key"}
    theirs = set(record) - {"input", "key"}
    if ours and theirs and len(ours & theirs) < len(ours | theirs) / 2:
        raise InputFormatError(f"{path} holds answers of another kind (its first has "
                               f"{', '.join(sorted(theirs)[:4])}): choose another file")


def _starts_as(data: bytes, head: bytes, *, cut: bool) -> bool:
    return data.startswith(head) or (cut and head.startswith(data))


def _foreign(path: Path, what: str) -> InputFormatError:
    return InputFormatError(f"{path} is not {what} of tiktok-async (its lines are not the "
                            "records it writes): choose another file")


def _refuse_foreign_csv(path: Path, scan: _Scan, columns: list[str]) -> None:
    """A CSV file with no whole line: what it holds must be the start of the header this
    run writes (a crash while writing it), or it is not this tool's (`InputFormatError`)."""
    header = csv_line(columns)
    if scan.header is not None:
        return
    with open(path, "rb") as f:
        data = f.read(len(_BOM) + len(header) + 1)
    if data and not header.startswith(data.removeprefix(_BOM)):
        raise _foreign(path, "an output")


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
    def on_record(record: list[str]) -> bool:
        if len(record) >= 2:
            on_row(_Row(record[0], record[1] or None, None))
            return True
        return False

    return _scan_csv_records(path, on_record)


def _scan_csv_records(path: Path, on_record: Callable[[list[str]], bool]) -> _Scan:
    """The header and the whole records (`on_record` says which count as rows)."""
    scan = _Scan()
    feed = _OffsetLines(path)
    reader = csv.reader(feed)
    try:
        for record in reader:
            if not feed.ended_with_newline:
                break  # the torn tail
            if scan.header is None:
                scan.header = record
            elif on_record(record):
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
        start, self.offset = self.offset, self.offset + len(data)
        self.ended_with_newline = data.endswith(b"\n")
        if start == 0 and data.startswith(_BOM):  # an Excel-friendly CSV's byte-order mark
            data = data[len(_BOM):]
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


class Resume:
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
        if fmt == "csv":
            _refuse_foreign_csv(path, result, columns)
        self.info.unreadable_lines += result.unreadable
        self.info.repaired_bytes += _repair(path, result)
        return result.rows

    def _remember(self, row: _Row) -> None:
        if row.kind == "failed":
            self.info.failed += 1
        if row.kind == "invalid" or row.key is None:
            self.invalid_inputs.load(row.input)
        else:
            self.done_keys.load(row.key)


def drop_failed(path: Path) -> None:
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


# -- a table's output: resumed by its rows ---------------------------------------------


@dataclass
class TableScan:
    """What a table's output and errors file hold (see the module docstring)."""

    rows: int = 0
    failed: int = 0  # rows whose status is `failed`
    last: list[object] | None = None  # the last row's values (CSV: text)
    last_error_line: int = 0  # the input line of the errors file's last record
    repaired_bytes: int = 0


def scan_table(out: Path | None, errors: Path | None, fmt: OutputFormat,
               names: list[str], status: str) -> TableScan:
    """Scan (and repair) a table's files; `names` its columns, `status` the status column's."""
    found = TableScan()
    if errors is not None and errors.exists():
        refuse_foreign(errors, RECORD_HEAD, "an errors file")
    if out is not None and out.exists():
        if fmt == "jsonl":
            refuse_foreign(out, TABLE_ROW_HEAD, "an output")
        scan = (_scan_table_csv if fmt == "csv" else _scan_table_jsonl)(out, names, status,
                                                                         found)
        if fmt == "csv":
            _refuse_foreign_csv(out, scan, names)
        found.repaired_bytes += _repair(out, scan)
    if errors is not None and errors.exists():
        found.repaired_bytes += _repair(errors, _scan_jsonl(errors, _ignore))
        found.last_error_line = _last_line_number(errors)
    return found


def _other_columns(path: Path) -> InputFormatError:
    return InputFormatError(f"{path} has other columns than this run writes (another input "
                            "file, or another --column): choose another output file")


def _scan_table_csv(path: Path, names: list[str], status: str, found: TableScan) -> _Scan:
    at = names.index(status)

    def on_record(record: list[str]) -> bool:
        found.failed += len(record) > at and record[at] == "failed"
        found.last = list(record)
        return True

    scan = _scan_csv_records(path, on_record)
    if scan.header is not None and scan.header != names:
        raise _other_columns(path)
    found.rows = scan.rows
    return scan


def _scan_table_jsonl(path: Path, names: list[str], status: str, found: TableScan) -> _Scan:
    scan = _Scan()
    failed = json.dumps({status: "failed"}, separators=(",", ":"))[1:-1].encode()
    last = b""
    with open(path, "rb") as f:
        for data in f:
            if not data.endswith(b"\n"):
                break
            found.rows += 1
            found.failed += failed in data
            scan.good_end += len(data)
            last = data
    row = _json_row(last) if last else None
    if last and row is None:  # a whole line that does not parse: the torn tail
        found.rows -= 1
        found.failed -= failed in last
        scan.good_end -= len(last)
        return _scan_table_jsonl_before(path, scan, names, status, found)
    _check_names(path, row, names)
    found.last = None if row is None else [row.get(name) for name in names]
    return scan


def _scan_table_jsonl_before(path: Path, scan: _Scan, names: list[str], status: str,
                             found: TableScan) -> _Scan:
    """The last row when the very last line was torn: the line before it."""
    with open(path, "rb") as f:
        f.seek(_line_start(f, scan.good_end))
        data = f.read(scan.good_end - f.tell()) if scan.good_end else b""
    row = _json_row(data) if data else None
    _check_names(path, row, names)
    found.last = None if row is None else [row.get(name) for name in names]
    return scan


def _json_row(data: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _check_names(path: Path, row: dict[str, object] | None, names: list[str]) -> None:
    if row is not None and list(row) != names:
        raise _other_columns(path)


def _line_start(f: BinaryIO, end: int) -> int:
    """Where the line that ends at `end` starts (reading backwards in 64 KiB steps)."""
    pos = end - 1  # the newline that ends it
    while pos > 0:
        step = min(pos, 1 << 16)
        f.seek(pos - step)
        found = f.read(step).rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0


def _last_line_number(errors: Path) -> int:
    """The `line` of the errors file's last record (0 when none)."""
    with open(errors, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0
        f.seek(_line_start(f, end))
        row = _json_row(f.read())
    line = None if row is None else row.get("line")
    return line if isinstance(line, int) else 0
