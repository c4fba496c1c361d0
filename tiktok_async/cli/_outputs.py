"""What `users` and `videos` read and write: the input (a list or a table), the output's
format and name, its files, and the Parquet file written at the end.

A text input gives a list's output (`OutputFiles`: one row per answered key, errors
apart). A table input (CSV, JSON-lines objects) gives the table enriched (`_table`). The
column holding the inputs is `--column`, else the first header named as in
`COLUMN_GUESSES` (said on standard error). `-o out.parquet` (the `parquet` extra)
appends to `out.parquet.rows.jsonl` and writes the Parquet file when the run is through
its input (`_parquet`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._kinds import Kind
from .._models import encode_json
from .._shortlinks import ShortLinkResolver
from ._common import EXIT_SOME_FAILED, EXIT_WRITE_FAILED, UsageError
from ._files import (
    OutputFiles,
    WrittenFormat,
    default_errors_path,
    parquet_rows_path,
    written_format,
)
from ._inputfile import InputLine, Table, read_table
from ._resume import OutputFormat
from ._table import TableFiles, TableLayout, TableRows, skip_written_rows

__all__ = ["COLUMN_GUESSES", "PARQUET_HINT", "Outputs", "choose_output", "open_outputs",
           "read_source", "short_link_resolver"]

#: Header names (lower case, letters and digits only) taken as the inputs' column when
#: `--column` is not given, in order of preference.
COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "users": ("handle", "username", "tiktokhandle", "tiktokusername", "tiktok", "user",
              "profileurl", "profile", "url", "link"),
    "videos": ("url", "videourl", "link", "videolink", "tiktokurl", "tiktoklink", "video"),
}
PARQUET_HINT = "pip install 'tiktok-async[parquet]'"


@dataclass
class Outputs:
    """A run's files, what it reads, and how it records (a table or a list)."""

    files: OutputFiles
    inputs: Iterator[InputLine]
    table: TableRows | None = None
    parquet: Path | None = None  # written from the files' rows when the run is through
    columns: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """Where the run writes (a Parquet output: its rows file first)."""
        if self.parquet is None:
            return self.files.where
        rows = parquet_rows_path(self.parquet)
        return self.files.where.replace(
            f"answers to {rows}", f"answers to {self.parquet} (when the run is through; "
                                  f"until then to {rows}, which it resumes from)")

    def finish(self, name: str, code: int) -> int:
        """Write the Parquet file after a run that went through its input; the exit code."""
        if self.parquet is None or code > EXIT_SOME_FAILED:
            return code
        from ._parquet import write_parquet  # pyarrow: only for a Parquet output

        rows = parquet_rows_path(self.parquet)
        if _newer(self.parquet, rows):
            print(f"tiktok-async {name}: {self.parquet} is up to date", file=sys.stderr)
            return code
        try:
            count = write_parquet(rows, self.parquet, self.columns)
        except OSError as exc:
            print(f"tiktok-async {name}: cannot write {self.parquet}: {exc.strerror or exc}; "
                  f"the rows are whole in {rows}: run the same command again", file=sys.stderr)
            return EXIT_WRITE_FAILED
        print(f"tiktok-async {name}: wrote {self.parquet} ({count} rows, from {rows})",
              file=sys.stderr)
        return code


def _newer(path: Path, than: Path) -> bool:
    """Was `path` written after `than` last changed (nothing new to convert)?"""
    try:
        return path.stat().st_mtime_ns > than.stat().st_mtime_ns
    except OSError:
        return False


def choose_output(kind: Kind[Any, Any], args: argparse.Namespace) -> tuple[WrittenFormat, str]:
    """The format and the output name (default `<kind>.jsonl`, or the `--format`'s suffix);
    a suffix it does not write is refused; Parquet without pyarrow names the extra."""
    output: str = args.output or f"{kind.name}.{args.format or 'jsonl'}"
    fmt = written_format(output, args.format)
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError(f"Parquet output needs pyarrow: {PARQUET_HINT} (or write "
                         f"{Path(output).stem}.csv or .jsonl)")
    if args.excel and fmt != "csv":
        raise UsageError("--excel is for a CSV output (-o out.csv)")
    return fmt, output


def read_source(kind: Kind[Any, Any], args: argparse.Namespace) -> Table:
    """The input: a list, or a table whose inputs' column is given or guessed."""
    name = kind.name
    table = read_table(args.input, column=args.column, guesses=COLUMN_GUESSES.get(name, ()),
                       warn=lambda text: print(f"tiktok-async {name}: warning: {text}",
                                               file=sys.stderr))
    if table.guessed:
        print(f"tiktok-async {name}: reading the inputs from column {table.column!r} "
              "(--column NAME to choose another)", file=sys.stderr)
    return table


def short_link_resolver(args: argparse.Namespace) -> ShortLinkResolver | None:
    """The resolver `--resolve-short-links` asks for (None without it)."""
    if not args.resolve_short_links:
        return None
    return ShortLinkResolver(rate=args.short_link_rate, short_link_base=args.short_link_base)


def open_outputs(kind: Kind[Any, Any], args: argparse.Namespace, source: Table,
                 fmt: WrittenFormat, output: str, inputs: Iterator[InputLine]) -> Outputs:
    """Lock and open the files (a table's or a list's), resumed; the inputs still to read."""
    written: OutputFormat = "jsonl" if fmt == "parquet" else fmt
    parquet = Path(output) if fmt == "parquet" else None
    where = str(parquet_rows_path(output)) if parquet is not None else output
    _refuse_writing_the_input(args, output, where, parquet)
    common: dict[str, Any] = {"errors": args.errors, "encode": encode_json,
                              "bom": args.excel, "errors_of": parquet}
    if not source.is_table:
        files = OutputFiles.open(where, fmt=written, columns=kind.columns,
                                 retry_failed=args.retry_failed, **common)
        return Outputs(files, inputs, None, parquet, ("input", "key", *kind.columns))
    if args.retry_failed:
        raise UsageError("--retry-failed is for a list of inputs: a table's output keeps a "
                         "row per input row, failed ones too (status failed)")
    layout = TableLayout.of(source.columns, kind.columns)
    table = TableFiles.open_table(where, fmt=written, layout=layout, **common)
    try:
        rest = skip_written_rows(inputs, table, layout, _name(args.input))
    except BaseException:
        table.close()
        raise
    return Outputs(table, rest, TableRows(table, layout), parquet, layout.names)


def _refuse_writing_the_input(args: argparse.Namespace, output: str, where: str,
                              parquet: Path | None) -> None:
    """A run must not append to the file it reads: `-o` or `--errors` (given, or the
    default beside the output) naming the input, by any name (a link too), is refused."""
    source = _stat_of(args.input)
    if source is None or not stat.S_ISREG(source.st_mode):  # a pipe is no file to write
        return
    errors = args.errors
    if errors is None and where != "-":
        errors = str(default_errors_path(parquet or where))
    for option, name, what in (("-o", output, "output"), ("-o", where, "output"),
                               ("--errors", errors, "errors file")):  # where: Parquet's rows
        found = None if name in (None, "-") else _stat_of(name)
        if found is not None and os.path.samestat(found, source):
            raise UsageError(f"{option} {name}: that is the input file, which the run would "
                             f"write into: name another {what}")


def _stat_of(name: str) -> os.stat_result | None:
    """The file `name` is (`-`: standard input's), or None when there is none."""
    try:
        return os.fstat(sys.stdin.fileno()) if name == "-" else os.stat(name)
    except (OSError, ValueError):  # missing, or no standard input with a descriptor
        return None


def _name(source: str | os.PathLike[str]) -> str:
    return "standard input" if str(source) == "-" else str(source)
