"""The command line's output files: append-only, whole lines, resumable, one run at a time.

Output (`OutputFiles`), append-only, one writer, each line written whole by a single
unbuffered write (flushed as it comes), `fsync` on close:

- JSON lines (`.jsonl`, the default): one object a line, `{"input": ..., "key": ...,
  <record>}` where the record is the answer as builtins (`to_builtins`), e.g. `user`, `stats`.
- CSV (`.csv`): a header row written once, then one row per answer. Columns are fixed by
  the caller for the kind (users or videos): `input`, `key`, then dotted names of the
  flattened record (`user.id`, `stats.follower_count`). Nested dicts are flattened;
  lists are JSON-encoded; `None` is an empty cell; booleans are `true`/`false`.
- `-`: standard output (JSON lines or CSV), flushed per line. No resume then.

`output_format` refuses an output name whose suffix is neither (`out.parquet`), or that
contradicts `--format`.

Errors go to a separate JSON-lines file, by default beside the output with
`.errors.jsonl` for its suffix (`users.jsonl` -> `users.errors.jsonl`). Outputs that
differ only in their suffix (`out.jsonl`, `out.csv`) would share that file, and each
would skip the other's errors as done: that mix is refused (`--errors` names another
file). With `-o -` and no `--errors`, errors go to standard error as JSON lines (no file
grows unseen); `--errors -` asks for that too. One object per input that got no answer:
`{"input", "key" (null when invalid), "kind" ("invalid", "not_found", "failed", ...),
"status" (HTTP status or null), "message", "attempts", "line"}`.

One run at a time: each file is locked (`_lock`: an OS lock on `<file>.lock`, freed
even by SIGKILL) before it is scanned or written; a second run is refused at once
(`FileInUseError`, naming the holder's PID and host).

A write that fails (a full disk) is cut back to the last whole line and raised as
`OutputWriteError`; what was written before stays whole, so a re-run resumes.

Resume: `OutputFiles.open` scans what earlier runs left and cuts a torn tail before
appending (see `_resume`); `is_done` tells the caller what to skip. `fresh=True` (the
demo) empties the two files instead, under the lock.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ._lock import FileLocks
from ._resume import OutputFormat, Resume, drop_failed

__all__ = [
    "SUFFIXES",
    "OutputFiles",
    "OutputNameError",
    "OutputWriteError",
    "default_errors_path",
    "flatten",
    "json_line_encoder",
    "output_format",
]

Encoder = Callable[[object], bytes]

#: The output suffixes written, and the format of each.
SUFFIXES: dict[str, OutputFormat] = {".jsonl": "jsonl", ".csv": "csv"}


class OutputNameError(ValueError):
    """An output or errors file name that cannot be used as given (exit 2)."""


class OutputWriteError(Exception):
    """An output or errors file could not be written (a full disk); the line being
    written was cut back, so the file holds only whole lines (exit 4)."""

    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(f"cannot write to {where}: {error.strerror or error}; every line "
                         "written before is whole (the one being written was cut back): "
                         "free some space, then run the same command again to resume")
        self.where = where
        self.error = error


# -- names ------------------------------------------------------------------------------


def output_format(output: str, fmt: str | None = None) -> OutputFormat:
    """The format to write `output` in: `fmt` (`--format`) or its suffix; refuses a suffix
    that is neither `.jsonl` nor `.csv`, or one that contradicts `fmt`."""
    if fmt is not None and fmt not in SUFFIXES.values():
        raise OutputNameError(f"unknown format {fmt!r}: jsonl or csv")
    suffix = "" if output == "-" else Path(output).suffix.lower()
    implied = SUFFIXES.get(suffix)
    if suffix and implied is None:
        raise OutputNameError(
            f"{output}: tiktok-async writes JSON lines (.jsonl) or CSV (.csv), not {suffix}: "
            f"name the output {Path(output).stem}.jsonl or {Path(output).stem}.csv")
    if fmt is not None and implied is not None and fmt != implied:
        raise OutputNameError(f"{output} ends in {suffix} but --format is {fmt}: "
                              "drop --format, or name the file to match")
    chosen: OutputFormat = implied or ("csv" if fmt == "csv" else "jsonl")
    return chosen


def default_errors_path(out: str | os.PathLike[str]) -> Path:
    """Where errors go by default: `users.jsonl` -> `users.errors.jsonl` (not for `-`)."""
    path = Path(out)
    return path.with_name(f"{_base_name(path)}.errors.jsonl")


def _base_name(path: Path) -> str:
    return path.stem if path.suffix else path.name


def _refuse_shared_errors(out: Path, errors: Path) -> None:
    """`out.csv` after `out.jsonl` would share `out.errors.jsonl`: refuse the mix."""
    if not errors.exists():
        return
    base = _base_name(out)
    for suffix in ("", *SUFFIXES):
        other = out.with_name(base + suffix)
        if other.name != out.name and other.exists():
            raise OutputNameError(
                f"{errors} holds the errors of {other}; {out} would share it and skip those "
                f"inputs as done: pass --errors {out}.errors.jsonl (or another name), or "
                f"keep writing to {other}")


# -- encoding ----------------------------------------------------------------------------


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


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


# -- writers -----------------------------------------------------------------------------


class _Writer(Protocol):
    where: str
    at_start: bool

    def write(self, line: bytes) -> None: ...

    def close(self) -> None: ...


class _LineWriter:
    """Appends whole lines to one file descriptor: one `write` per line, no buffer.

    Remembers where the next line starts: a write that fails (ENOSPC) is cut back there,
    so the file never ends in half a line.
    """

    def __init__(self, fd: int, where: str, *, owned: bool) -> None:
        self._fd = fd
        self.where = where
        self._owned = owned
        self._end = os.fstat(fd).st_size if owned else 0
        self.at_start = self._end == 0

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:  # a regular file takes it at once; a pipe may not
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._cut_back()
            raise OutputWriteError(self.where, exc) from exc
        self._end += len(line)

    def _cut_back(self) -> None:
        if self._owned:
            with contextlib.suppress(OSError):  # a pipe cannot be cut; resume repairs a file
                os.ftruncate(self._fd, self._end)

    def close(self) -> None:
        if not self._owned:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise OutputWriteError(self.where, exc) from exc
        finally:
            os.close(self._fd)


class _StderrWriter:
    """Error lines to standard error, through `sys.stderr` so a live progress bar
    prints them above itself."""

    where = "standard error"
    at_start = True

    def write(self, line: bytes) -> None:
        sys.stderr.write(line.decode("utf-8", errors="backslashreplace"))
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.flush()


def _open_append(path: Path) -> _LineWriter:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    return _LineWriter(os.open(path, flags, 0o644), str(path), owned=True)


def _stdout_writer() -> _LineWriter:
    sys.stdout.flush()  # what print() buffered goes first
    return _LineWriter(sys.stdout.fileno(), "standard output", owned=False)


# -- the files of one run ------------------------------------------------------------------


def _paths(out: str | os.PathLike[str],
           errors: str | os.PathLike[str] | None) -> tuple[Path | None, Path | None]:
    """The output and errors paths; None for standard output / standard error."""
    out_path = None if str(out) == "-" else Path(out)
    if errors is None:
        if out_path is None:
            return None, None
        errors_path = default_errors_path(out_path)
        _refuse_shared_errors(out_path, errors_path)
        return out_path, errors_path
    given = None if str(errors) == "-" else Path(errors)
    if out_path and given and given.resolve() == out_path.resolve():
        raise OutputNameError("the errors file must not be the output file")
    return out_path, given


class OutputFiles:
    """The output and errors files of one run: lock, resume scan, whole-line appends, counts.

    Use `OutputFiles.open(...)`; `is_done` tells the caller what to skip; `write_ok` and
    `write_error` append one line each; `close()` syncs and unlocks. A context manager too.
    """

    def __init__(self, out: _Writer, errors: _Writer, *, fmt: OutputFormat,
                 columns: Sequence[str], encode: Encoder, resume: Resume,
                 locks: FileLocks | None = None) -> None:
        self._out = out
        self._errors = errors
        self._fmt = fmt
        self._columns = list(columns)
        self._encode = encode
        self._locks = locks or FileLocks()
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
        fresh: bool = False,
    ) -> OutputFiles:
        """Lock, then open (creating or resuming) `out` (`-`: stdout) and its errors file.

        `columns`: for CSV, the kind's flattened record columns (`user.id`, ...);
        `input` and `key` are put first. `encode`: object -> one line of JSON bytes
        without the newline (default: `json_line_encoder`; `_models.encode_json` fits).
        `errors`: None for the default (beside the output; stderr for `-`), `-` for
        stderr. `fresh`: empty both files instead of resuming. Raises `FileInUseError`,
        `OutputNameError`, `OutputWriteError` (the CSV header), `OSError`.
        """
        if fmt == "csv" and not columns:
            raise ValueError("CSV output needs its columns")
        all_columns = ["input", "key", *(c for c in columns if c not in ("input", "key"))]
        out_path, errors_path = _paths(out, errors)
        with contextlib.ExitStack() as undo:
            locks = FileLocks()
            undo.callback(locks.release)
            for path in (out_path, errors_path):
                if path is not None:
                    locks.take(path)
            resume = _resume(out_path, errors_path, fmt, all_columns,
                             retry_failed=retry_failed, fresh=fresh)
            out_writer = _open_append(out_path) if out_path else _stdout_writer()
            undo.callback(out_writer.close)
            errors_writer = _open_append(errors_path) if errors_path else _StderrWriter()
            undo.callback(errors_writer.close)
            files = cls(out_writer, errors_writer, fmt=fmt, columns=all_columns,
                        encode=encode or json_line_encoder, resume=resume, locks=locks)
            if fmt == "csv" and out_writer.at_start:
                out_writer.write(_csv_line(all_columns))
            undo.pop_all()
        return files

    @property
    def where(self) -> str:
        """Where this run writes: `answers to X, errors to Y`."""
        errors = self._errors.where
        if isinstance(self._errors, _StderrWriter):
            errors += " as JSON lines (--errors FILE keeps them in a file)"
        return f"answers to {self._out.where}, errors to {errors}"

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
        """Sync and close both files (stdout is left open), then unlock them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.ExitStack() as stack:
                stack.callback(self._errors.close)
                self._out.close()
        finally:
            self._locks.release()

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _resume(out: Path | None, errors: Path | None, fmt: OutputFormat, columns: list[str], *,
            retry_failed: bool, fresh: bool) -> Resume:
    """What earlier runs left in the (locked) files, torn tails cut; or empty them."""
    resume = Resume()
    for path in (out, errors) if fresh else ():
        if path is not None and path.exists():
            os.truncate(path, 0)
    if retry_failed and errors is not None and errors.exists():
        drop_failed(errors)
    if errors is not None:
        resume.info.errors = resume.scan(errors, "jsonl", columns, remember=out is not None)
    if out is not None:
        resume.info.answered = resume.scan(out, fmt, columns)
    resume.done_keys.compact()
    resume.invalid_inputs.compact()
    return resume
