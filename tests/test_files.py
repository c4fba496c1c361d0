"""CLI files: every input format, JSONL and CSV outputs, resume and torn-line repair, output
names, one run at a time, a write that fails, input files that are not text."""

from __future__ import annotations

import csv
import errno
import io
import itertools
import json
import os
import re
import sys
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tiktok_async.cli._files import (
    OutputFiles,
    OutputNameError,
    OutputWriteError,
    csv_cell,
    default_errors_path,
    flatten,
    output_format,
    parquet_rows_path,
    written_format,
)
from tiktok_async.cli._inputfile import (
    MAX_ROW_LINES,
    InputFormatError,
    InputLine,
    describe_empty,
    read_inputs,
    read_table,
    what_file_is,
)
from tiktok_async.cli._lock import FileInUseError, lock_path
from tiktok_async.cli._resume import KeySet, scan_table

RECORD = {"user": {"id": "1", "nickname": "Ann\nLee", "verified": True},
          "stats": {"follower_count": 12, "tags": ["a", "b"]}}
COLUMNS = ["user.id", "user.nickname", "user.verified", "stats.follower_count", "stats.tags"]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def texts(lines: list[InputLine]) -> list[str]:
    return [line.text for line in lines]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


# -- inputs ----------------------------------------------------------------------------


def test_text_input_skips_blanks_and_comments_and_strips_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", b"\xef\xbb\xbf@ann\r\n\r\n# a comment\r\n  bob  \r\ncat")
    got = list(read_inputs(path))
    assert got == [InputLine(1, "@ann"), InputLine(4, "bob"), InputLine(5, "cat")]


def test_invalid_utf8_is_replaced_and_flagged_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", b"ok\n\xff\xfe\x00garbage\x80\nnext\n")
    got = list(read_inputs(path))
    assert texts(got) == ["ok", "\ufffd\ufffd\x00garbage\ufffd", "next"]
    assert [line.problem for line in got] == [None, "not valid UTF-8", None]


def test_a_long_line_is_cut_and_flagged_and_the_next_line_is_intact(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", b"a\n" + b"x" * 10_000 + b"\nb\n")
    got = list(read_inputs(path, max_line_bytes=4096))
    assert texts(got) == ["a", "x" * 4096, "b"]
    assert got[1].problem == "line longer than 4096 bytes"
    assert [line.line_no for line in got] == [1, 2, 3]


def test_csv_input_reads_the_named_column(tmp_path: Path) -> None:
    data = b'id,handle,note\r\n1,@ann,"multi\nline"\r\n2,,x\r\n\r\n3,bob\r\n'
    got = list(read_inputs(write(tmp_path / "in.csv", b"\xef\xbb\xbf" + data), column="handle"))
    assert texts(got) == ["@ann", "", "bob"]
    assert [line.line_no for line in got] == [2, 4, 6]
    assert got[1].problem == "no value in column 'handle'"


def test_csv_binary_garbage_is_flagged_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"handle\nann\n\xff\xfe\x00zz\nbob\n")
    got = list(read_inputs(path))
    assert texts(got)[0] == "ann"
    assert texts(got)[-1] == "bob"
    assert got[1].problem is not None


def test_csv_missing_column_names_the_available_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", b"id,handle\n1,ann\n")
    with pytest.raises(InputFormatError, match="available: 'id', 'handle'"):
        read_inputs(path, column="user")


def test_csv_with_one_column_needs_no_name(tmp_path: Path) -> None:
    assert texts(list(read_inputs(write(tmp_path / "h.csv", b"handle\nann\nbob\n")))) == [
        "ann", "bob"]
    with pytest.raises(InputFormatError, match="choose one"):
        read_inputs(write(tmp_path / "two.csv", b"a,b\n1,2\n"))
    with pytest.raises(InputFormatError, match="empty"):
        read_inputs(write(tmp_path / "empty.csv", b""), column="a")


def test_stdin_is_read_as_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = SimpleNamespace(buffer=io.BufferedReader(io.BytesIO(b"ann\n#x\nbob\n")))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert texts(list(read_inputs("-"))) == ["ann", "bob"]


def test_inputs_are_streamed_not_read_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", b"".join(b"h%d\n" % i for i in range(100_000)))
    lines = read_inputs(path)
    assert next(lines) == InputLine(1, "h0")  # a generator: nothing else was read
    lines.close()  # type: ignore[attr-defined]


def test_missing_file_fails_on_open(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_inputs(tmp_path / "nope.txt")


def test_a_table_keeps_every_cell_and_names_every_column(tmp_path: Path) -> None:
    data = b'id,handle,,id\n1,@ann,"two\nlines",x\n2,bob\n3,cat,a,b,surplus\n'
    table = read_table(write(tmp_path / "in.csv", data), column="handle")
    assert table.columns == ("id", "handle", "column_3", "id_2")
    got = list(table.rows)
    assert [row.cells for row in got] == [("1", "@ann", "two\nlines", "x"),
                                          ("2", "bob", "", ""), ("3", "cat", "a", "b")]
    assert [row.problem for row in got][:2] == [None, None]
    assert got[2].problem is not None
    assert "5 cells, the header has 4" in got[2].problem


@pytest.mark.parametrize(("data", "delimiter_cell"), [
    (b"name;handle;note\nAnn;ann;\"a;b\"\n", "a;b"),
    (b"name\thandle\tnote\nAnn\tann\ta,b\n", "a,b"),
    (b"name|handle|note\nAnn|ann|x\n", "x"),
])
def test_a_table_delimiter_is_read_from_its_header(tmp_path: Path, data: bytes,
                                                   delimiter_cell: str) -> None:
    [row] = list(read_table(write(tmp_path / "in.csv", data), column="handle").rows)
    assert row.cells == ("Ann", "ann", delimiter_cell)


def test_a_tsv_file_is_tab_separated(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "in.tsv", b"a,b\thandle\n1,2\tann\n"), column="handle")
    assert table.columns == ("a,b", "handle")
    assert [row.text for row in table.rows] == ["ann"]


@pytest.mark.parametrize(("header", "kind", "expected"), [
    ("Name,TikTok Handle,URL", "users", "TikTok Handle"),
    ("name,user_name,link", "users", "user_name"),
    ("name,profile,notes", "users", "profile"),
    ("handle,Video URL", "videos", "Video URL"),
    ("handle,link", "videos", "link"),
])
def test_the_inputs_column_is_guessed_from_its_name(tmp_path: Path, header: str, kind: str,
                                                    expected: str) -> None:
    from tiktok_async.cli._outputs import COLUMN_GUESSES

    table = read_table(write(tmp_path / "in.csv", f"{header}\n1,2,3\n".encode()),
                       guesses=COLUMN_GUESSES[kind])
    assert (table.column, table.guessed) == (expected, True)
    assert len(list(table.rows)) == 1


def test_jsonl_objects_are_a_table_with_every_key(tmp_path: Path) -> None:
    data = (b'{"who": "ann", "n": 1}\n\n{"n": 2, "who": 7, "late": [1]}\n[1, 2]\n'
            b'{"who": {"x": 1}}\nnot json\n')
    table = read_table(write(tmp_path / "in.jsonl", data), column="who")
    assert table.columns == ("who", "n", "late")
    got = list(table.rows)
    assert [row.text for row in got] == ["ann", "7", "", "", ""]
    assert got[1].cells == (7, 2, [1])
    assert [row.line_no for row in got] == [1, 3, 4, 5, 6]
    assert [row.problem for row in got][2:] == [
        "not an object but a list", "field 'who' holds an object, not text",
        "not JSON: Expecting value: line 1 column 1 (char 0)"]


def test_stdin_jsonl_is_told_by_its_first_byte_and_later_keys_are_warned(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b'{"h": "ann"}\n{"h": "bob", "more": 1}\n{"h": "cat", "more": 2}\n'
    stdin = SimpleNamespace(buffer=io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys, "stdin", stdin)
    warnings: list[str] = []
    table = read_table("-", column="h", warn=warnings.append)
    assert (table.kind, table.columns) == ("jsonl", ("h",))
    assert [row.text for row in table.rows] == ["ann", "bob", "cat"]
    assert len(warnings) == 1
    assert "more" in warnings[0]


def test_a_long_table_row_is_kept_whole(tmp_path: Path) -> None:
    notes = "x" * 200_000  # beyond csv's own 128 KiB field limit and the 4 KiB text lines
    path = write(tmp_path / "in.csv", f"handle,notes\nann,{notes}\n".encode())
    [row] = list(read_table(path, column="handle").rows)
    assert row.problem is None
    assert row.cells == ("ann", notes)


def stray_quote_table(rows: int) -> bytes:
    """A CSV table whose line 3 opens a quote that nothing closes."""
    lines = ["id,handle", "1,ann", '2,"oops', *(f"{n},user{n}" for n in range(3, rows + 1))]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(("data", "how"), [
    (stray_quote_table(50), "is still open at the end of the file (line 51)"),
    (stray_quote_table(3000), f"runs over more than {MAX_ROW_LINES} lines"),
    (b'id,handle\n1,ann\n2,"oops\n3,bob\n4,"cat\n5,dan\n',
     "breaks on line 5 (',' expected after '\"')"),
    (b'id,handle\n1,ann\n2,"x\n' + b"3,y\n" * MAX_ROW_LINES + b'99,z"\n100,ok\n',
     f"runs over more than {MAX_ROW_LINES} lines"),
])
def test_a_stray_quote_in_a_csv_file_refuses_it_before_any_row(tmp_path: Path, data: bytes,
                                                                 how: str) -> None:
    path = write(tmp_path / "in.csv", data)
    with pytest.raises(InputFormatError) as refused:
        read_table(path, column="handle")
    assert str(refused.value).startswith(f"line 3 of {path} opens a quoted cell that {how}: ")
    assert "fix it" in str(refused.value)
    assert "or give the inputs as a text file, one a line" in str(refused.value)


def test_a_stray_quote_on_a_pipe_stops_the_rows_where_it_opens(tmp_path: Path) -> None:
    """Standard input or a FIFO cannot be read twice: its rows stream up to the broken
    one. Quoted cells of a few lines, and `"ab"cd` on one line, are still rows."""
    good = b'id,handle,bio\n1,ann,"one\ntwo\nthree"\n2,"bob"by,x\n'
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(good + stray_quote_table(3000).split(b"\n", 1)[1])

    writer = threading.Thread(target=feed)
    writer.start()
    rows = read_table(fifo, column="handle").rows
    try:
        assert [(row.line_no, row.cells) for row in itertools.islice(rows, 3)] == [
            (2, ("1", "ann", "one\ntwo\nthree")), (5, ("2", "bobby", "x")), (6, ("1", "ann", ""))]
        with pytest.raises(InputFormatError, match=f"^line 7 of {fifo} opens a quoted cell"):
            next(rows)
    finally:
        rows.close()  # type: ignore[attr-defined]
        writer.join(10)


def test_json_lines_from_a_fifo_are_read_once(tmp_path: Path) -> None:
    """`tiktok-async users <(producer)`: a FIFO named .jsonl was read through for its keys
    first, so the rows after that read found nothing left (or it hung for a writer)."""
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    data = b"".join(b'{"handle": "user%d", "n": %d}\n' % (n, n) for n in range(50))

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        table = read_table(fifo, column="handle")
        assert [row.cells and row.cells[0] for row in table.rows] == [
            f"user{n}" for n in range(50)]
    finally:
        writer.join(10)


# -- outputs ---------------------------------------------------------------------------


def test_jsonl_round_trip_and_errors_file(tmp_path: Path) -> None:
    out = tmp_path / "users.jsonl"
    with OutputFiles.open(out) as files:
        files.write_ok("@Ann", "ann", RECORD)
        files.write_error("bad!", None, "invalid", None, "not a handle", 0, 3)
        files.write_error("@ghost", "ghost", "not_found", 404, "User not found", 1, 4)
    assert lines_of(out) == [{"input": "@Ann", "key": "ann", **RECORD}]
    assert default_errors_path(out) == tmp_path / "users.errors.jsonl"
    assert lines_of(tmp_path / "users.errors.jsonl") == [
        {"input": "bad!", "key": None, "kind": "invalid", "status": None,
         "message": "not a handle", "attempts": 0, "line": 3},
        {"input": "@ghost", "key": "ghost", "kind": "not_found", "status": 404,
         "message": "User not found", "attempts": 1, "line": 4},
    ]
    assert files.counts == {"ok": 1, "invalid": 1, "not_found": 1}


def test_csv_output_has_flat_columns_and_one_header(tmp_path: Path) -> None:
    out = tmp_path / "users.csv"
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        files.write_ok("@Ann", "ann", RECORD)
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        assert files.is_done("ANN", "ann")
        files.write_ok("bob", "bob", {"user": {"id": "2"}, "stats": None})
    rows = read_csv(out)
    assert rows == [
        ["input", "key", *COLUMNS],
        ["'@Ann", "ann", "1", "Ann\nLee", "true", "12", '["a","b"]'],  # no formula
        ["bob", "bob", "2", "", "", "", ""],
    ]


def test_csv_output_refuses_a_file_with_other_columns(tmp_path: Path) -> None:
    out = write(tmp_path / "o.csv", b"input,key,other\n")
    with pytest.raises(InputFormatError, match="other CSV columns"):
        OutputFiles.open(out, fmt="csv", columns=COLUMNS)


def test_errors_file_cannot_be_the_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be the output"):
        OutputFiles.open(tmp_path / "o.jsonl", errors=tmp_path / "o.jsonl")


def test_flatten_uses_dotted_names() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": None}, "e": [1]}) == {
        "a.b.c": 1, "a.d": None, "e": [1]}


def test_stdout_output_sends_errors_to_stderr_and_grows_no_file(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with OutputFiles.open("-") as files:
        assert files.where.startswith("answers to standard output, errors to standard error")
        files.write_ok("ann", "ann", {"n": 1})
        files.write_error("x", None, "invalid", None, "bad", 0, 1)
    captured = capfd.readouterr()
    assert json.loads(captured.out) == {"input": "ann", "key": "ann", "n": 1}
    assert json.loads(captured.err)["input"] == "x"
    assert list(tmp_path.iterdir()) == []  # no errors.jsonl, no lock file
    with OutputFiles.open("-", errors="kept.jsonl") as files:  # no resume to stdout
        assert not files.is_done("x", None)
        files.write_error("x", None, "invalid", None, "bad", 0, 1)
    assert lines_of(tmp_path / "kept.jsonl")[0]["input"] == "x"


def test_an_injected_encoder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out, encode=lambda obj: json.dumps(obj, sort_keys=True).encode()) as f:
        f.write_ok("b", "b", {"z": 1, "a": 2})
    assert out.read_text() == '{"a": 2, "input": "b", "key": "b", "z": 1}\n'


# -- resume ----------------------------------------------------------------------------


def test_resume_skips_done_keys_and_invalid_inputs(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_ok("@Ann", "ann", {"n": 1})
        files.write_error("bad!", None, "invalid", None, "not a handle", 0, 2)
        files.write_error("@gone", "gone", "not_found", 404, "User not found", 1, 3)
        files.write_error("@slow", "slow", "failed", 503, "unavailable", 5, 4)
    files = OutputFiles.open(out)
    files.close()
    assert files.is_done("ann", "ann")
    assert files.is_done("bad!", None)
    assert files.is_done("@gone", "gone")
    assert files.is_done("@slow", "slow")
    assert not files.is_done("bad?", None)
    assert not files.is_done("new", "new")
    assert (files.resumed.answered, files.resumed.errors) == (1, 3)


@pytest.mark.parametrize("text", ['quote " and back\\slash', "émoji 😀 ok", "\ufffd\x00\t"])
def test_resume_recognises_inputs_with_any_characters(tmp_path: Path, text: str) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_error(text, None, "invalid", None, "bad", 0, 1)
        files.write_ok(text, text, {"n": 1})
    with OutputFiles.open(out) as files:
        assert files.is_done(text, None)
        assert files.is_done(text, text)


def test_retry_failed_drops_failed_rows_so_they_run_again(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_error("@gone", "gone", "not_found", 404, "User not found", 1, 1)
        files.write_error("@slow", "slow", "failed", 503, "unavailable", 5, 2)
    with OutputFiles.open(out, retry_failed=True) as files:
        assert files.is_done("@gone", "gone")
        assert not files.is_done("@slow", "slow")
    assert [row["kind"] for row in lines_of(tmp_path / "o.errors.jsonl")] == ["not_found"]


@pytest.mark.parametrize("which", ["out", "errors"])
def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path, which: str) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_ok("ann", "ann", {"n": 1})
        files.write_error("x!", None, "invalid", None, "bad", 0, 2)
    torn = out if which == "out" else tmp_path / "o.errors.jsonl"
    with torn.open("ab") as f:
        f.write(b'{"input":"bob","key":"bob","n":')  # the crash came mid-write
    with OutputFiles.open(out) as files:
        assert files.resumed.repaired_bytes == 31
        assert not files.is_done("bob", "bob")
        files.write_ok("bob", "bob", {"n": 2})
        files.write_error("y!", None, "invalid", None, "bad", 0, 3)
    assert [row["input"] for row in lines_of(out)] == ["ann", "bob"]
    assert [row["input"] for row in lines_of(tmp_path / "o.errors.jsonl")] == ["x!", "y!"]


def test_a_last_line_that_does_not_parse_is_cut_but_earlier_ones_are_kept(
    tmp_path: Path,
) -> None:
    out = write(tmp_path / "o.jsonl",
                b'{"input":"a","key":"a"}\nnot json\n{"input":"b","key":"b"}\n{"input":"c"\n')
    with OutputFiles.open(out) as files:
        assert files.resumed.unreadable_lines == 1
        assert files.is_done("b", "b")
        assert not files.is_done("c", "c")
    assert out.read_bytes().endswith(b'{"input":"b","key":"b"}\n')


def test_a_torn_csv_row_is_cut(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        files.write_ok("ann", "ann", RECORD)
    with out.open("ab") as f:
        f.write(b'bob,bob,2,"half a quoted\nfield')
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        assert files.resumed.repaired_bytes > 0
        assert not files.is_done("bob", "bob")
        files.write_ok("bob", "bob", RECORD)
    rows = read_csv(out)
    assert [row[0] for row in rows] == ["input", "ann", "bob"]


def test_no_duplicates_after_a_simulated_crash(tmp_path: Path) -> None:
    """Run, crash mid-line, re-run skipping what is done: each key once, all keys there."""
    out = tmp_path / "o.jsonl"
    keys = [f"h{i}" for i in range(200)]
    files = OutputFiles.open(out)
    for key in keys[:120]:
        files.write_ok(key, key, {"n": 1})
    files.close()
    with out.open("ab") as f:
        f.write(b'{"input":"h120","ke')  # SIGKILL mid-write
    with OutputFiles.open(out) as files:
        for key in keys:
            if not files.is_done(key, key):
                files.write_ok(key, key, {"n": 1})
    written = [str(row["key"]) for row in lines_of(out)]
    assert sorted(written) == sorted(keys)


def test_keyset_holds_many_keys_compactly() -> None:
    keys = KeySet(f"user{i}" for i in range(300_000))
    assert len(keys) == 300_000
    assert "user0" in keys
    assert "user299999" in keys
    assert "user300000" not in keys
    assert 1 not in keys


# -- output names ------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "fmt", "expected"), [
    ("out.jsonl", None, "jsonl"), ("OUT.CSV", None, "csv"), ("out", None, "jsonl"),
    ("out", "csv", "csv"), ("-", "csv", "csv"), ("-", None, "jsonl"),
    ("dir.v2/out.csv", "csv", "csv"),
])
def test_output_format_from_suffix_or_format(output: str, fmt: str | None,
                                             expected: str) -> None:
    assert output_format(output, fmt) == expected


@pytest.mark.parametrize(("output", "fmt", "words"), [
    ("out.parquet", None, "writes JSON lines (.jsonl) or CSV (.csv), not .parquet"),
    ("out.parquet", "jsonl", "name the output out.jsonl or out.csv"),
    ("out.json", None, "not .json"),
    ("out.csv", "jsonl", "out.csv ends in .csv but --format is jsonl"),
])
def test_output_format_refuses_a_suffix_it_does_not_write(output: str, fmt: str | None,
                                                          words: str) -> None:
    with pytest.raises(OutputNameError, match=re.escape(words)):
        output_format(output, fmt)


def test_users_and_videos_also_write_parquet_but_not_to_stdout() -> None:
    assert written_format("out.parquet") == "parquet"
    assert written_format("out", "parquet") == "parquet"
    assert written_format("out.csv") == "csv"
    with pytest.raises(OutputNameError, match="Parquet cannot go to standard output"):
        written_format("-", "parquet")
    with pytest.raises(OutputNameError, match=r"or Parquet \(\.parquet\), not \.xlsx"):
        written_format("out.xlsx")
    assert parquet_rows_path("d/out.parquet") == Path("d/out.parquet.rows.jsonl")


def test_outputs_differing_in_suffix_do_not_share_an_errors_file(tmp_path: Path) -> None:
    """`-o out.jsonl`, later `-o out.csv`: both would use out.errors.jsonl; refused."""
    with OutputFiles.open(tmp_path / "out.jsonl") as files:
        files.write_error("@gone", "gone", "not_found", 404, "User not found", 1, 1)
    with pytest.raises(OutputNameError, match=r"holds the errors of .*out\.jsonl.*--errors"):
        OutputFiles.open(tmp_path / "out.csv", fmt="csv", columns=COLUMNS)
    assert not (tmp_path / "out.csv").exists()
    errors = tmp_path / "out.csv.errors.jsonl"
    with OutputFiles.open(tmp_path / "out.csv", fmt="csv", columns=COLUMNS,
                          errors=errors) as files:
        assert not files.is_done("@gone", "gone")  # its own errors file: nothing skipped


# -- one run at a time -------------------------------------------------------------------


def test_a_second_open_of_a_locked_output_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_ok("ann", "ann", {"n": 1})
        with pytest.raises(FileInUseError, match=f"PID {os.getpid()} on ") as refused:
            OutputFiles.open(out)
        assert refused.value.path == out
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    with OutputFiles.open(out) as files:  # released on close
        assert files.is_done("ann", "ann")
    assert lines_of(out) == [{"input": "ann", "key": "ann", "n": 1}]


def test_an_errors_file_shared_by_two_outputs_is_locked_too(tmp_path: Path) -> None:
    errors = tmp_path / "shared.errors.jsonl"
    with OutputFiles.open(tmp_path / "a.jsonl", errors=errors):
        with pytest.raises(FileInUseError, match=r"shared\.errors\.jsonl is in use"):
            OutputFiles.open(tmp_path / "b.jsonl", errors=errors)
        assert not (tmp_path / "b.jsonl").exists()
    OutputFiles.open(tmp_path / "b.jsonl", errors=errors).close()


def test_a_refused_open_releases_the_locks_it_took(tmp_path: Path) -> None:
    out = write(tmp_path / "o.csv", b"input,key,other\n")
    with pytest.raises(InputFormatError, match="other CSV columns"):
        OutputFiles.open(out, fmt="csv", columns=COLUMNS)
    OutputFiles.open(out, fmt="csv", columns=["other"]).close()


def test_fresh_empties_the_two_files_instead_of_resuming(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputFiles.open(out) as files:
        files.write_ok("ann", "ann", {"n": 1})
        files.write_error("x!", None, "invalid", None, "bad", 0, 2)
    with OutputFiles.open(out, fresh=True) as files:
        assert not files.is_done("ann", "ann")
        files.write_ok("bob", "bob", {"n": 2})
    assert [row["key"] for row in lines_of(out)] == ["bob"]
    assert (tmp_path / "o.errors.jsonl").read_bytes() == b""


# -- a write that fails ------------------------------------------------------------------


def test_a_failed_write_is_cut_back_to_the_last_whole_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills mid-line: the half written is cut off, the error says so."""
    out = tmp_path / "o.jsonl"
    real_write = os.write
    calls: list[int] = []

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with OutputFiles.open(out) as files:
        files.write_ok("ann", "ann", {"n": 1})
        before = out.read_bytes()
        with monkeypatch.context() as patch:
            patch.setattr(os, "write", half_then_full)
            with pytest.raises(OutputWriteError, match="No space left on device") as failed:
                files.write_ok("bob", "bob", {"n": 2, "pad": "x" * 100})
        assert out.read_bytes() == before
        assert str(out) in str(failed.value)
        assert "run the same command again to resume" in str(failed.value)
        files.write_ok("cat", "cat", {"n": 3})
    assert [row["key"] for row in lines_of(out)] == ["ann", "cat"]


# -- resume must not trust a last line ---------------------------------------------------


@pytest.mark.parametrize("which", ["out", "errors"])
def test_a_whole_last_line_without_its_newline_is_cut(tmp_path: Path, which: str) -> None:
    """It parses, but the next write would run on in the same line: cut, key not done."""
    out = tmp_path / "o.jsonl"
    path = out if which == "out" else tmp_path / "o.errors.jsonl"
    tail = (b'{"input":"bob","key":"bob","n":2}' if which == "out" else
            b'{"input":"bob","key":"bob","kind":"not_found","status":404}')
    write(path, b'{"input":"ann","key":"ann","n":1}\n' + tail)
    with OutputFiles.open(out) as files:
        assert files.resumed.repaired_bytes == len(tail)
        assert not files.is_done("bob", "bob")
        assert files.is_done("ann", "ann")
        files.write_ok("cat", "cat", {"n": 3})
        files.write_error("dan", "dan", "not_found", 404, "User not found", 1, 4)
    rows = lines_of(path)  # every line parses: nothing merged
    assert [row["key"] for row in rows] == ["ann", "cat" if which == "out" else "dan"]


def test_a_whole_last_csv_row_without_its_newline_is_cut(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        files.write_ok("ann", "ann", RECORD)
    with out.open("ab") as f:
        f.write(b"bob,bob,2,Bob,false,3,[]")
    with OutputFiles.open(out, fmt="csv", columns=COLUMNS) as files:
        assert not files.is_done("bob", "bob")
        files.write_ok("cat", "cat", RECORD)
    assert [row[1] for row in read_csv(out)] == ["key", "ann", "cat"]


def test_a_last_line_that_breaks_after_its_key_is_cut_and_its_key_not_done(
    tmp_path: Path,
) -> None:
    """Its start parses (input, key), its end does not: the whole line is checked."""
    out = write(tmp_path / "o.jsonl", b'{"input":"ann","key":"ann","n":1}\n'
                                      b'{"input":"bob","key":"bob","user":{"id":"1"\n')
    with OutputFiles.open(out) as files:
        assert not files.is_done("bob", "bob")
        assert files.resumed.repaired_bytes == 44
    assert out.read_bytes() == b'{"input":"ann","key":"ann","n":1}\n'


# -- input files that are not text -------------------------------------------------------


def xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "data", "words"), [
    ("in.txt", "user1\nuser2\n".encode("utf-16"), "is UTF-16 text: save it as UTF-8"),
    ("in.txt", "user1\nuser2\n".encode("utf-16-le"), "looks like UTF-16 text without"),
    ("in.txt", "user1\n".encode("utf-32"), "is UTF-32 text"),
    ("in.xlsx", xlsx_bytes(), "is an Excel workbook: export the sheet as CSV (File > Save "
                              "As > CSV UTF-8) and pass --column"),
    ("book.bin", xlsx_bytes(), "is an Excel workbook"),
    ("in.zip", b"PK\x03\x04" + b"\x00" * 40, "is a zip archive"),
    ("in.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40, "is an Excel 97-2003"),
    ("in.txt.gz", b"\x1f\x8b\x08\x00" + bytes(range(40)), "is gzip-compressed"),
    ("in.png", b"\x89PNG\r\n\x1a\n" + bytes(range(64)), "is a binary file, not text"),
])
def test_a_file_that_is_not_text_is_refused_saying_what_it_is(
    tmp_path: Path, name: str, data: bytes, words: str
) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(InputFormatError, match=re.escape(f"{path} {words}")):
        read_inputs(path)


def test_stdin_that_is_not_text_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "user1\n".encode("utf-16")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BufferedReader(io.BytesIO(data))))
    with pytest.raises(InputFormatError, match="standard input is UTF-16 text"):
        read_inputs("-")


def test_one_binary_line_in_a_text_file_is_not_a_binary_file() -> None:
    assert what_file_is(b"ok\n\xff\xfe\x00garbage\x80\nnext\n") is None
    assert what_file_is("émoji 😀\nann\n".encode()) is None
    assert what_file_is(b"") is None


def test_an_empty_input_is_worded_by_why(tmp_path: Path) -> None:
    assert describe_empty(write(tmp_path / "e.txt", b"")).endswith(
        "e.txt holds no inputs (it is empty): nothing to do, no file written")
    assert "only blank lines, comments or a CSV header" in describe_empty(
        write(tmp_path / "c.txt", b"# just a comment\n\n"))


# -- cells a spreadsheet opens safely; a table's resume ---------------------------------


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("@ann", "'@ann"),
    ("-12", "-12"), ("+3.5", "+3.5"), ("-1e5", "-1e5"), ("a=b", "a=b"), ("", ""),
    (12, "12"), (-3, "-3"), (True, "true"), (None, ""), (["=x"], '["=x"]'),
])
def test_csv_cells_defuse_formulas_and_keep_numbers(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_a_table_scan_counts_rows_and_failures_and_cuts_a_torn_row(tmp_path: Path) -> None:
    names = ["h", "n", "status", "error"]
    out = write(tmp_path / "t.csv", b"\xef\xbb\xbfh,n,status,error\nann,1,ok,\nbob,\"2\nx\","
                                    b"failed,boom\ncat,3,o")
    errors = write(tmp_path / "t.errors.jsonl", b'{"input":"bob","line":3}\n{"input":"c')
    found = scan_table(out, errors, "csv", names, "status")
    assert (found.rows, found.failed, found.last_error_line) == (2, 1, 3)
    assert found.last == ["bob", "2\nx", "failed", "boom"]
    assert out.read_bytes().endswith(b"boom\n")
    assert errors.read_bytes() == b'{"input":"bob","line":3}\n'


def test_a_jsonl_table_scan_keeps_the_last_whole_row(tmp_path: Path) -> None:
    names = ["h", "tiktok.status", "error"]
    rows = [{"h": "ann", "tiktok.status": "failed", "error": "x"},
            {"h": "bob", "tiktok.status": "ok", "error": None}]
    body = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)
    out = write(tmp_path / "t.jsonl", body + b'{"h":"cat","tiktok.st\n')
    found = scan_table(out, None, "jsonl", names, "tiktok.status")
    assert (found.rows, found.failed, found.last) == (2, 1, ["bob", "ok", None])
    assert out.read_bytes() == body
    with pytest.raises(InputFormatError, match="other columns"):
        scan_table(out, None, "jsonl", ["h", "status", "error"], "status")
