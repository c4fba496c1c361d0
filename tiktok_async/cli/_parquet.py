"""Parquet output (the `parquet` extra: pyarrow), written from the run's JSON-lines rows.

A Parquet file cannot be appended to, and a half-written one is unreadable, so
`-o out.parquet` appends its rows to `out.parquet.rows.jsonl` (`parquet_rows_path`),
which resumes after a crash as any JSON-lines output does. When the run has gone
through its input (exit 0 or 1), `write_parquet` writes the Parquet file from it in two
streamed passes: the columns and their types, then row groups of `ROW_GROUP` rows, into
`out.parquet.tmp`, renamed over `out.parquet` at the end (a crash while writing leaves
the old file whole). The rows file stays: a later run resumes from it (new inputs,
`--retry-failed`) and writes the Parquet file again.

Columns: nested objects flattened to dotted names (`stats.follower_count`), in order of
first appearance after `columns` (so an empty run still has them). Types, from the
values: all booleans -> bool; all integers (in 64 bits) -> int64; integers and floats ->
float64; anything else -> string (text as it is, other values as JSON); no value at
all -> string. Datetimes stay RFC 3339 text, as in the JSON-lines output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ._writers import flatten

__all__ = ["ROW_GROUP", "write_parquet"]

#: Rows per row group (and per batch held in memory while writing).
ROW_GROUP = 65_536
_INT64 = range(-(2**63), 2**63)


def write_parquet(rows: Path, out: Path, columns: Sequence[str] = ()) -> int:
    """Write `out` from the JSON-lines `rows` (see the module docstring); the row count."""
    kinds: dict[str, set[str]] = {name: set() for name in columns}
    for row in _rows(rows):
        for name, value in row.items():
            kinds.setdefault(name, set()).add(_kind(value))
    schema = pa.schema([(name, _arrow_type(found - {"null"})) for name, found in kinds.items()])
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batches(rows):
            writer.write_table(_table(batch, schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    os.replace(tmp, out)
    return count


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                yield flatten(json.loads(line))


def _batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in _rows(path):
        batch.append(row)
        if len(batch) == ROW_GROUP:
            yield batch
            batch = []
    if batch:
        yield batch


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if value in _INT64 else "text"
    if isinstance(value, float):
        return "float"
    return "text"


def _arrow_type(kinds: set[str]) -> pa.DataType:
    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"int"}:
        return pa.int64()
    if kinds and kinds <= {"int", "float"}:
        return pa.float64()
    return pa.string()


def _table(batch: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in schema:
        values = [row.get(field.name) for row in batch]
        if field.type == pa.string():
            values = [_text(value) for value in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
