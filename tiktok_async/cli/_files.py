"""The command line's output files: append-only, whole lines, resumable (stdlib only).

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

Resume: `OutputFiles.open` scans what earlier runs left and cuts a torn tail before
appending (see `_resume`); `is_done` tells the caller what to skip.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ._resume import OutputFormat, Resume, drop_failed

__all__ = ["OutputFiles", "default_errors_path", "flatten", "json_line_encoder"]

Encoder = Callable[[object], bytes]

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


class OutputFiles:
    """The output and errors files of one run: resume scan, whole-line appends, counts.

    Use `OutputFiles.open(...)`; `is_done` tells the caller what to skip; `write_ok` and
    `write_error` append one line each; `close()` syncs. A context manager too.
    """

    def __init__(self, out: _LineWriter, errors: _LineWriter, *, fmt: OutputFormat,
                 columns: Sequence[str], encode: Encoder, resume: Resume) -> None:
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
        resume = Resume()
        if retry_failed and errors_path.exists():
            drop_failed(errors_path)
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

