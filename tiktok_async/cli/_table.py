"""A table enriched in place: the input's own rows and columns, the fetched fields added.

When the input is a table (a CSV file, or JSON lines whose lines are objects), each
output row is one input row, in input order:

- the input's columns first, each with its own name and value (`_inputfile` names an
  empty header `column_N` and a repeated one `NAME_2`);
- then the fetched fields, flat, with dotted names (the kind's CSV columns: `user.id`,
  `stats.follower_count`), empty when there is no answer;
- then `status` (`ok`, `not_found`, `invalid`, `failed`) and `error` (the message, empty
  when ok).

Name clashes: the input's columns keep their names. A fetched or added column whose
name an input column already has gets the prefix `tiktok.` (an input column `status`
makes ours `tiktok.status`; a video's `id` becomes `tiktok.id` beside the input's own
`id`), again while it still clashes.

A duplicate row (the same key as an earlier row: `Luna.Vibes` after `@luna.vibes`) gets
the first row's answer (from the pool's memory of the last 10,000 distinct keys; an
older one, or one answered before a resume, is asked again).

Order and resume: the run is ordered (`run_bulk(ordered=True)`: a bounded window in
input order) and a row is written only once every row before it is, so the output is
always the input's first N rows. A re-run skips N rows of the input, checks that row
N's input cells are the ones in the output's last row (else it was written from another
input: refused), and goes on. Rows a stop cut short (Ctrl-C, a refused key, a used-up
quota) get no row, and neither does any row after the first of them: the table stays
a prefix of the input. The errors file still gets a record per row that is not ok (as
`users` writes for a text file); each record is written before its row, and a re-run
skips the records of lines the errors file already holds, so none is written twice.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._bulk import Result
from .._rows import error_message, outcome
from ._expand import unwrap
from ._files import Encoder, OutputFiles, csv_header, open_locked
from ._inputfile import InputFormatError, InputLine
from ._progress import RunCounts
from ._resume import OutputFormat, Resume, TableScan, scan_table
from ._writers import csv_cell, csv_line

__all__ = ["PREFIX", "TableFiles", "TableLayout", "TableRows", "skip_written_rows"]

#: Put before a fetched or added column's name while an input column has that name.
PREFIX = "tiktok."
_ADDED = ("status", "error")


@dataclass(frozen=True)
class TableLayout:
    """The output's columns: the input's, the fetched fields', `status` and `error`."""

    inputs: tuple[str, ...]
    fetched: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, inputs: Sequence[str], fetched: Sequence[str]) -> TableLayout:
        """The layout for an input with columns `inputs` (see the clash rule above)."""
        taken = set(inputs)
        added: list[str] = []
        for name in (*fetched, *_ADDED):
            while name in taken:
                name = PREFIX + name
            taken.add(name)
            added.append(name)
        return cls(tuple(inputs), tuple(fetched), (*inputs, *added))

    @property
    def status(self) -> str:
        """The status column's name (`status`, or `tiktok.status` on a clash)."""
        return self.names[-2]

    def row(self, cells: Sequence[object], record: Mapping[str, object] | None,
            status: str, error: str | None) -> list[object]:
        """One output row's values, in column order."""
        fetched = [None if record is None else record.get(name) for name in self.fetched]
        return [*cells, *fetched, status, error]


class TableFiles(OutputFiles):
    """A table's output (rows in input order, resumed by count) and its errors file."""

    table: TableScan

    @classmethod
    def open_table(cls, out: str | os.PathLike[str], *, fmt: OutputFormat,
                   layout: TableLayout, encode: Encoder,
                   errors: str | os.PathLike[str] | None = None, bom: bool = False,
                   errors_of: Path | None = None) -> TableFiles:
        """Lock, scan (resume) and open a table's output and errors file (`OutputFiles.open`
        says what each argument does)."""
        names = list(layout.names)

        def scan(out_path: Path | None, errors_path: Path | None) -> TableScan:
            return scan_table(out_path, errors_path, fmt, names, layout.status)

        header = csv_header(names, bom=bom) if fmt == "csv" else b""
        opened = open_locked(out, errors, scan=scan, header=header, errors_of=errors_of)
        files = cls(opened.out, opened.errors, fmt=fmt, columns=names, encode=encode,
                    resume=Resume(), locks=opened.locks)
        files.table = opened.scan
        files.resumed.answered = opened.scan.rows
        files.resumed.failed = opened.scan.failed
        files.resumed.repaired_bytes = opened.scan.repaired_bytes
        return files

    def write_row(self, values: Sequence[object]) -> None:
        """Append one row (values in column order)."""
        self._out.write(self._row_line(values))

    def _row_line(self, values: Sequence[object]) -> bytes:
        if self._fmt == "csv":
            return csv_line([csv_cell(value) for value in values])
        return self._encode(dict(zip(self._columns, values, strict=True))) + b"\n"

    def as_written(self, values: Sequence[object]) -> list[object]:
        """`values` as reading the output back gives them (CSV: text)."""
        if self._fmt == "csv":
            return [csv_cell(value) for value in values]
        read: list[object] = json.loads(self._encode(list(values)))
        return read

    @property
    def output_name(self) -> str:
        """The output's name, or `standard output`."""
        return self._out.where

    def has_error_record(self, line_no: int) -> bool:
        """Did an earlier run record this input line in the errors file?"""
        return line_no <= self.table.last_error_line


def skip_written_rows(rows: Iterator[InputLine], files: TableFiles, layout: TableLayout,
                      source: str) -> Iterator[InputLine]:
    """`rows` after those the output already holds, once the last of them is checked."""
    written = files.table.rows
    if written == 0:
        return rows
    consumed, last = 0, None
    for consumed, last in enumerate(itertools.islice(rows, written), 1):  # noqa: B007
        pass
    where = files.output_name
    if consumed < written or last is None:
        raise InputFormatError(
            f"{where} holds {written} rows, more than the {consumed} of {source}: it was "
            "written from another input; choose another output file")
    expected = files.as_written(layout.row(last.cells or (), None, "", None))
    if files.table.last is None or files.table.last[:len(layout.inputs)] != \
            expected[:len(layout.inputs)]:
        raise InputFormatError(
            f"the last row of {where} (row {written}) is not row {written} of {source} "
            f"(line {last.line_no}): it was written from another input, or the input "
            "changed; choose another output file")
    return rows


class TableRows:
    """How a run records a table: every row, in input order, with its status.

    `EnrichRun` hands it each input it feeds (`admit`) and each result (`record`); it
    writes the row when it is the next one fed, and stops writing at the first row that
    got no result (a stop).
    """

    def __init__(self, files: TableFiles, layout: TableLayout) -> None:
        self.files = files
        self.layout = layout
        self._fed: deque[int] = deque()  # input lines handed to run_bulk, not yet written
        self._gap = False  # a row got no result (a stop): write nothing after it

    def admit(self, line: InputLine) -> bool:
        """Every row is fetched (a duplicate's answer comes from the pool's dedupe)."""
        self._fed.append(line.line_no)
        return True

    def failed_note(self, failed: int) -> str:
        """What to say about rows an earlier run recorded as failed."""
        return (f"{failed} rows of the output failed in an earlier run (status failed) and "
                "were not asked again: a table keeps its rows; to ask again, run those rows "
                "into another output")

    def record(self, result: Result[Any], counts: RunCounts) -> None:
        """Write the result's row (and its error record), count it."""
        line, error = unwrap(result)
        if self._gap or not self._next_in_order(line.line_no):
            return
        message = None if error is None else error_message(error)
        status = outcome(error)
        if error is not None and not self.files.has_error_record(line.line_no):
            self.files.write_error(line.text, result.key, status, error.status, message or "",
                                   result.attempts, line.line_no)
        record = None if result.value is None else result.value.to_dict(flat=True)
        self.files.write_row(self.layout.row(line.cells or (), record, status, message))
        _count(counts, status, result.duplicate)

    def _next_in_order(self, line_no: int) -> bool:
        """Is this the next row fed? Else a row before it got no result: stop writing."""
        if self._fed and self._fed.popleft() == line_no:
            return True
        self._gap = True
        return False


def _count(counts: RunCounts, status: str, duplicate: bool) -> None:
    if duplicate:
        counts.duplicates += 1
    elif status == "ok":
        counts.done += 1
    elif status == "not_found":
        counts.not_found += 1
    elif status == "invalid":
        counts.invalid += 1
    else:
        counts.failed += 1
