"""The command line's output files: append-only, whole lines, resumable, one run at a time.

Output (`OutputFiles`), append-only, one writer, each line written whole: in a running
loop, the lines recorded in one turn of the loop with one write at the end of that turn
(`_writers.LineWriter`), outside a loop one write a line; `fsync` on close:

- JSON lines (`.jsonl`, the default): one object a line, `{"input": ..., "key": ...,
  <record>}` where the record is the answer as builtins (`to_builtins`), e.g. `user`, `stats`.
- CSV (`.csv`): a header row written once, then one row per answer. Columns are fixed by
  the caller for the kind (users or videos): `input`, `key`, then dotted names of the
  flattened record (`user.id`, `stats.follower_count`). Nested dicts are flattened;
  lists are JSON-encoded; `None` is an empty cell; booleans are `true`/`false`; numbers
  are bare (a spreadsheet reads them as numbers). `bom=True` starts a new file with a
  UTF-8 byte-order mark (Excel then reads it as UTF-8). A text cell that a spreadsheet
  would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a CR: OWASP's CSV
  injection) gets a leading apostrophe, unless it is a plain number (`-12`): `csv_cell`.
- `-`: standard output (JSON lines or CSV), flushed per line. No resume then.

`output_format` refuses an output name whose suffix is neither (`out.parquet` too,
unless the caller writes Parquet: `parquet=True`), or that contradicts `--format`.

Errors go to a separate JSON-lines file, by default beside the output with
`.errors.jsonl` for its suffix (`users.jsonl` -> `users.errors.jsonl`). Outputs that
differ only in their suffix (`out.jsonl`, `out.csv`) would share that file, and each
would skip the other's errors as done: that mix is refused (`--errors` names another
file). With `-o -` and no `--errors`, errors go to standard error as JSON lines (no file
grows unseen); `--errors -` asks for that too. One object per input that got no answer:
`{"input", "key" (null when invalid), "kind" ("invalid", "not_found", "failed", ...),
"status" (HTTP status or null), "message", "attempts", "line"}`.

One run at a time: each file is locked (`_lock`: OS locks on `<file>.lock` beside the
file its name resolves to, and on the file's device and inode, freed even by SIGKILL)
before it is scanned or written, so a second run is refused at once through any name of
the file, a symlink or a hard link too (`FileInUseError`, naming the holder's PID and
host).

A write that fails (a full disk) is cut back to the last whole line and raised as
`OutputWriteError`; what was written before stays whole, so a re-run resumes.

Resume: `OutputFiles.open` scans what earlier runs left and cuts a torn tail before
appending (see `_resume`); `is_done` tells the caller what to skip. `fresh=True` (the
demo) empties the two files instead, under the lock.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from .._models import to_builtins
from ._lock import FileLocks, check_folder
from ._resume import (
    RECORD_HEAD,
    OutputFormat,
    Resume,
    drop_failed,
    refuse_foreign,
    refuse_other_kind,
)
from ._writers import (
    BOM,
    OutputWriteError,
    StderrWriter,
    Writer,
    csv_cell,
    csv_line,
    flatten,
    json_line_encoder,
    json_string,
    open_append,
    stdout_writer,
)

__all__ = [
    "BOM",
    "SUFFIXES",
    "Opened",
    "OutputFiles",
    "OutputNameError",
    "OutputWriteError",
    "WrittenFormat",
    "csv_cell",
    "csv_header",
    "default_errors_path",
    "flatten",
    "json_line_encoder",
    "open_locked",
    "output_format",
    "parquet_rows_path",
    "same_file",
    "written_format",
]

Encoder = Callable[[object], bytes]

#: The output suffixes written, and the format of each.
SUFFIXES: dict[str, OutputFormat] = {".jsonl": "jsonl", ".csv": "csv"}
#: What `output_format` may answer: Parquet is written from a JSON-lines rows file.
WrittenFormat = Literal["jsonl", "csv", "parquet"]
_PARQUET = ".parquet"


class OutputNameError(ValueError):
    """An output or errors file name that cannot be used as given (exit 2)."""


# -- names ------------------------------------------------------------------------------


def output_format(output: str, fmt: str | None = None) -> OutputFormat:
    """The format to write `output` in: `fmt` (`--format`) or its suffix; refuses a suffix
    that is neither `.jsonl` nor `.csv`, or one that contradicts `fmt`."""
    chosen = written_format(output, fmt, parquet=False)
    assert chosen != "parquet"
    return chosen


def written_format(output: str, fmt: str | None = None, *, parquet: bool = True
                   ) -> WrittenFormat:
    """`output_format`, and `parquet` for `.parquet` (or `fmt`) when `parquet` is True."""
    known: dict[str, WrittenFormat] = {**SUFFIXES, **({_PARQUET: "parquet"} if parquet else {})}
    if fmt is not None and fmt not in known.values():
        raise OutputNameError(f"unknown format {fmt!r}: {' or '.join(known.values())}")
    suffix = "" if output == "-" else Path(output).suffix.lower()
    implied = known.get(suffix)
    if suffix and implied is None:
        raise OutputNameError(_unknown_suffix(output, suffix, parquet))
    if fmt is not None and implied is not None and fmt != implied:
        raise OutputNameError(f"{output} ends in {suffix} but --format is {fmt}: "
                              "drop --format, or name the file to match")
    if output == "-" and (implied or fmt) == "parquet":
        raise OutputNameError("Parquet cannot go to standard output: name a file, "
                              "-o out.parquet")
    return implied or known.get(f".{fmt}", "jsonl")


def _unknown_suffix(output: str, suffix: str, parquet: bool) -> str:
    stem = Path(output).stem
    if parquet:
        return (f"{output}: tiktok-async writes JSON lines (.jsonl), CSV (.csv) or Parquet "
                f"(.parquet), not {suffix}: name the output {stem}.jsonl, {stem}.csv or "
                f"{stem}.parquet")
    return (f"{output}: tiktok-async writes JSON lines (.jsonl) or CSV (.csv), not {suffix}: "
            f"name the output {stem}.jsonl or {stem}.csv")


def parquet_rows_path(out: str | os.PathLike[str]) -> Path:
    """Where a Parquet output's rows go first, as JSON lines (`out.parquet.rows.jsonl`):
    the run appends and resumes there; the Parquet file is written from it at the end."""
    path = Path(out)
    return path.with_name(path.name + ".rows.jsonl")


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
    for suffix in ("", *SUFFIXES, _PARQUET):
        other = out.with_name(base + suffix)
        if other.name != out.name and other.exists():
            raise OutputNameError(
                f"{errors} holds the errors of {other}; {out} would share it and skip those "
                f"inputs as done: pass --errors {out}.errors.jsonl (or another name), or "
                f"keep writing to {other}")


# -- the files of one run ------------------------------------------------------------------


def _paths(out: str | os.PathLike[str], errors: str | os.PathLike[str] | None,
           errors_of: Path | None = None) -> tuple[Path | None, Path | None]:
    """The output and errors paths; None for standard output / standard error.
    `errors_of`: the output whose default errors file it is (a Parquet file's)."""
    out_path = None if str(out) == "-" else Path(out)
    if errors is None:
        if out_path is None:
            return None, None
        named = errors_of or out_path
        errors_path = default_errors_path(named)
        _refuse_shared_errors(named, errors_path)
        return out_path, errors_path
    given = None if str(errors) == "-" else Path(errors)
    if out_path and given and same_file(given, out_path):
        raise OutputNameError("the errors file must not be the output file")
    return out_path, given


def same_file(a: Path, b: Path) -> bool:
    """Do `a` and `b` name one file: the same path resolved, or (both existing) the same
    file through a symlink or a hard link?"""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


Scan = TypeVar("Scan")


@dataclass
class Opened(Generic[Scan]):
    """A run's two files, locked and open, and what the scan found in them."""

    out: Writer
    errors: Writer
    locks: FileLocks
    scan: Scan


def open_locked(out: str | os.PathLike[str], errors: str | os.PathLike[str] | None, *,
                scan: Callable[[Path | None, Path | None], Scan], header: bytes = b"",
                errors_of: Path | None = None) -> Opened[Scan]:
    """Lock the output and errors files, `scan` them (resume: under the lock), open both
    for appending and write `header` to an output that is empty. Undone on any error;
    `MissingFolderError` (nothing made) when a file's folder does not exist."""
    out_path, errors_path = _paths(out, errors, errors_of)
    paths = [path for path in (out_path, errors_path) if path is not None]
    for path in paths:  # both, before anything is made
        check_folder(path)
    with contextlib.ExitStack() as undo:
        locks = FileLocks()
        undo.callback(locks.release)
        for path in paths:
            locks.take(path)
        found = scan(out_path, errors_path)
        out_writer = open_append(out_path) if out_path else stdout_writer()
        undo.callback(out_writer.close)
        errors_writer = open_append(errors_path) if errors_path else StderrWriter()
        undo.callback(errors_writer.close)
        for path in paths:  # one just made: its inode is locked now
            locks.take_file(path)
        if header and out_writer.at_start:
            out_writer.write(header)
        undo.pop_all()
    return Opened(out_writer, errors_writer, locks, found)


def csv_header(columns: Sequence[str], *, bom: bool = False) -> bytes:
    """A CSV file's first line (after a byte-order mark with `bom`)."""
    return (BOM if bom else b"") + csv_line(columns)


class OutputFiles:
    """The output and errors files of one run: lock, resume scan, whole-line appends, counts.

    Use `OutputFiles.open(...)`; `is_done` tells the caller what to skip; `write_ok` and
    `write_error` append one line each; `close()` syncs and unlocks. A context manager too.
    """

    def __init__(self, out: Writer, errors: Writer, *, fmt: OutputFormat,
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
        bom: bool = False,
        errors_of: Path | None = None,
    ) -> OutputFiles:
        """Lock, then open (creating or resuming) `out` (`-`: stdout) and its errors file.

        `columns`: for CSV, the kind's flattened record columns (`user.id`, ...);
        `input` and `key` are put first. `encode`: object -> one line of JSON bytes
        without the newline (default: `json_line_encoder`; `_models.encode_json` fits).
        `errors`: None for the default (beside the output; stderr for `-`), `-` for
        stderr. `fresh`: empty both files instead of resuming. `bom`: a new CSV file
        starts with a UTF-8 byte-order mark (for Excel). `errors_of`: name the default
        errors file after this path instead of `out` (a Parquet output's rows file).
        Raises `FileInUseError`, `OutputNameError`, `OutputWriteError` (the CSV header),
        `OSError` (`MissingFolderError`: a file's folder does not exist).
        """
        if fmt == "csv" and not columns:
            raise ValueError("CSV output needs its columns")
        all_columns = ["input", "key", *(c for c in columns if c not in ("input", "key"))]

        def scan(out_path: Path | None, errors_path: Path | None) -> Resume:
            return _resume(out_path, errors_path, fmt, all_columns,
                           retry_failed=retry_failed, fresh=fresh)

        header = csv_header(all_columns, bom=bom) if fmt == "csv" else b""
        opened = open_locked(out, errors, scan=scan, header=header, errors_of=errors_of)
        return cls(opened.out, opened.errors, fmt=fmt, columns=all_columns,
                   encode=encode or json_line_encoder, resume=opened.scan, locks=opened.locks)

    @property
    def where(self) -> str:
        """Where this run writes: `answers to X, errors to Y`."""
        errors = self._errors.where
        if isinstance(self._errors, StderrWriter):
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
            line = csv_line([csv_cell(flat.get(name)) for name in self._columns])
        else:
            row: dict[str, object] = {"input": input_text, "key": key}
            row.update(record)
            row["input"], row["key"] = input_text, key  # first, and never overridden
            line = self._encode(row) + b"\n"
        self._out.write(line)
        self.counts["ok"] += 1

    def write_model(self, input_text: str, key: str, model: object) -> None:
        """`write_ok` for an answer as the library gives it (a model, whose fields are never
        named `input` or `key`): a JSON line encodes the model once and splices it after the
        input and key, with no dict made on the way (the same bytes as `write_ok` of its
        `to_builtins`); CSV flattens its `to_builtins`. The files' encoder must take models
        (`encode_json` does); one that does not is given the builtins instead."""
        body = b"" if self._fmt == "csv" else self._encode(model)
        if body[:1] != b"{":
            self.write_ok(input_text, key, to_builtins(model))
            return
        self._out.write(b'{"input":%b,"key":%b%b%b\n' % (
            json_string(input_text), json_string(key), b"," if len(body) > 2 else b"", body[1:]))
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
    if errors is not None and errors.exists():
        refuse_foreign(errors, RECORD_HEAD, "an errors file")
    if out is not None and fmt == "jsonl" and out.exists():
        refuse_foreign(out, RECORD_HEAD, "an output")
        refuse_other_kind(out, columns)
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
