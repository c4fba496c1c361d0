"""`tiktok-async users/videos` on a table (issue 14): the input's rows and columns back, in
order, with the fetched fields, a status and an error; resumed after SIGKILL; CSV that
spreadsheets open safely; Parquet; short links resolved through the emulator."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run, start

from tiktok_async.cli._writers import csv_cell
from tiktok_async.emulator import (
    Emulator,
    existing_handle,
    is_missing,
    missing_handle,
    short_link_target,
    video_id_for,
)

Factory = Callable[..., Awaitable[Emulator]]
INPUT_COLUMNS = ["id", "name", "handle", "notes", "status"]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def creators(count: int) -> list[list[str]]:
    """`count` rows: handles, the same handles again in other case, junk, missing users;
    a notes column with quoted newlines and formulas; a `status` column of the user's."""
    table = []
    for n in range(count):
        if n % 10 == 3:
            handle = f"@User{n - 3}.Table"  # a duplicate of row n-3, another case
        elif n % 50 == 7:
            handle = ["bad handle!", "", "https://evil.io/@x"][n % 3]
        elif n % 50 == 9:
            handle = missing_handle(n)
        else:
            handle = f"user{n}.table"
        notes = f"line one\nline two of {n}" if n % 7 == 0 else ("=1+1" if n % 13 == 0 else "")
        table.append([str(n), f"Creator {n}, Inc.", handle, notes, f"lead-{n % 3}"])
    return table


def write_csv(path: Path, table: list[list[str]], header: list[str] = INPUT_COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *table])
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        header, *table = list(csv.reader(f))
    return header, table


def expected_status(handle: str) -> str:
    if handle in ("bad handle!", "", "https://evil.io/@x"):
        return "invalid"
    return "not_found" if is_missing(handle.lstrip("@")) else "ok"


def assert_the_table_came_back(source: list[list[str]], out: Path) -> None:
    """One row per input row, in order, input cells intact, fields and status right."""
    header, table = read_csv(out)
    assert header[:5] == INPUT_COLUMNS
    assert header[-2:] == ["tiktok.status", "error"]  # the input's own `status` keeps its name
    assert len(table) == len(source)
    at = {name: i for i, name in enumerate(header)}
    for given, row in zip(source, table, strict=True):
        assert row[:5] == [csv_cell(cell) for cell in given]
        assert row[at["tiktok.status"]] == expected_status(given[2].strip()), given
        assert bool(row[at["user.id"]]) == (row[at["tiktok.status"]] == "ok")
    first = {row[2].lstrip("'@").lower(): row[at["user.id"]] for row in table}
    for row in table:  # a duplicate is filled from the first answer
        assert row[at["user.id"]] == first[row[2].lstrip("'@").lower()]


async def test_a_3000_row_table_comes_back_whole_in_input_order(
    emulator: Emulator, tmp_path: Path
) -> None:
    source = creators(3000)
    out = tmp_path / "out.csv"
    code, _, err = await run(emulator, "users", str(write_csv(tmp_path / "in.csv", source)),
                             "-o", str(out), "-q", "--rate", "5000")
    assert code == 0, err
    assert "reading the inputs from column 'handle'" in err
    assert_the_table_came_back(source, out)
    duplicates = sum(1 for n in range(3000) if n % 10 == 3)
    assert f"duplicates {duplicates}" in err
    assert emulator.stats().total == len({r[2].lstrip("@").lower() for r in source
                                          if expected_status(r[2]) != "invalid"})
    errors = rows(tmp_path / "out.errors.jsonl")  # the errors file still has the rest
    assert {e["kind"] for e in errors} == {"invalid", "not_found"}
    assert len(errors) == sum(expected_status(r[2]) != "ok" for r in source)


async def test_sigkill_mid_table_then_a_rerun_continues_the_same_table(
    emulator: Emulator, tmp_path: Path
) -> None:
    source = creators(3000)
    path = write_csv(tmp_path / "in.csv", source)
    out = tmp_path / "out.csv"
    proc = await start(emulator, "users", str(path), "-o", str(out), "-q", "--rate", "400",
                       "--burst", "5")
    await wait_for_size(out, 60_000)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    _, partial = read_csv(out)
    assert 0 < len(partial) < 3000
    with out.open("ab") as torn:  # as if the crash had cut a row in half
        torn.write(b'9999,"Creator 9999\nhalf a no')
    code, _, err = await run(emulator, "users", str(path), "-o", str(out), "-q",
                             "--rate", "5000")
    assert code == 0, err
    assert f"skipped (already done) {len(partial)}" in err
    assert_the_table_came_back(source, out)
    errors = rows(tmp_path / "out.errors.jsonl")
    assert len({e["line"] for e in errors}) == len(errors)  # no error recorded twice


async def test_ctrl_c_mid_table_writes_a_prefix_and_the_rerun_completes_it(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    """Requests cut short by the stop leave a gap: no row after it is written."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=100, upstream_jitter_ms=300)
    source = creators(300)
    path = write_csv(tmp_path / "in.csv", source)
    out = tmp_path / "out.jsonl"
    proc = await start(emu, "users", str(path), "-o", str(out), "-q", "--rate", "200")
    await wait_for_size(out, 10_000)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    first = rows(out)
    assert 0 < len(first) < 300
    assert [row["id"] for row in first] == [row[0] for row in source[:len(first)]]
    code, _, err2 = await run(emu, "users", str(path), "-o", str(out), "-q", "--rate", "5000")
    assert code == 0, err2
    assert [row["id"] for row in rows(out)] == [row[0] for row in source]


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def wait_for_size(path: Path, size: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if size_of(path) >= size:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never reached {size} bytes")


async def test_a_rerun_on_a_finished_table_sends_nothing(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", creators(40))
    out = tmp_path / "out.csv"
    assert (await run(emulator, "users", str(path), "-o", str(out), "-q"))[0] == 0
    before, sent = out.read_bytes(), emulator.stats().total
    code, _, err = await run(emulator, "users", str(path), "-o", str(out), "-q")
    assert code == 0, err
    assert out.read_bytes() == before
    assert emulator.stats().total == sent


async def test_an_output_written_from_another_input_is_refused(emulator: Emulator,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    first = write_csv(tmp_path / "a.csv", creators(20))
    assert (await run(emulator, "users", str(first), "-o", str(out), "-q"))[0] == 0
    other = write_csv(tmp_path / "b.csv", [[c + "x" for c in row] for row in creators(30)])
    code, _, err = await run(emulator, "users", str(other), "-o", str(out), "-q")
    assert code == 2
    assert "written from another input" in err
    shorter = write_csv(tmp_path / "c.csv", creators(5))
    code, _, err = await run(emulator, "users", str(shorter), "-o", str(out), "-q")
    assert code == 2
    assert "holds 20 rows, more than the 5" in err


async def test_jsonl_objects_in_jsonl_rows_out_with_the_named_field(
    emulator: Emulator, tmp_path: Path
) -> None:
    handle = existing_handle(2)
    lines = [{"who": handle, "tags": ["a", "b"], "score": 7},
             {"who": handle.upper(), "extra": {"nested": True}},
             "not an object",
             {"who": None}]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "users", str(source), "--column", "who", "-o",
                             str(out), "-q")
    assert code == 0, err
    got = rows(out)
    assert [list(row)[:4] for row in got] == [["who", "tags", "score", "extra"]] * 4
    assert got[0]["tags"] == ["a", "b"]
    assert got[0]["score"] == 7
    assert got[1]["extra"] == {"nested": True}
    assert [row["status"] for row in got] == ["ok", "ok", "invalid", "invalid"]
    assert got[0]["user.id"] == got[1]["user.id"]
    assert "not an object" in str(got[2]["error"])
    assert got[3]["error"] == "no value in field 'who'"


async def test_semicolons_a_bom_and_a_guessed_username_column(
    emulator: Emulator, tmp_path: Path
) -> None:
    handle = existing_handle(3)
    source = tmp_path / "in.csv"
    source.write_bytes(f"\ufeffName;Username;Note\nAnn;{handle};\"a;b\"\n".encode())
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert "column 'Username'" in err
    [row] = rows(out)
    assert (row["Name"], row["Note"], row["status"]) == ("Ann", "a;b", "ok")


async def test_several_columns_and_none_named_like_an_input_is_a_usage_error(
    emulator: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", [["1", "2"]], header=["a", "b"])
    code, _, err = await run(emulator, "users", str(source), "-q")
    assert code == 2
    assert "choose one with --column: 'a', 'b'" in err


async def test_a_header_only_csv_warns_and_makes_no_file(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [])
    code, _, err = await run(emulator, "users", str(source), "-o", str(tmp_path / "o.csv"))
    assert code == 0, err
    assert "holds no inputs" in err
    assert not (tmp_path / "o.csv").exists()


def stray_quote_csv(path: Path, count: int) -> Path:
    """`count` rows of handles, line 3's cell opening a quote that nothing closes (csv
    read every line after it into that one cell: 3,000 rows came back as 2)."""
    lines = ["id,handle", f"1,{existing_handle(1)}", '2,"oops',
             *(f"{n},user{n}.table" for n in range(3, count + 1))]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_stray_quote_in_a_csv_file_stops_the_run_before_any_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    path = stray_quote_csv(tmp_path / "in.csv", 3000)
    out = tmp_path / "out.csv"
    code, _, err = await run(emulator, "users", str(path), "-o", str(out), "-q")
    assert code == 2, err
    [message] = err.splitlines()
    assert message.startswith(f"tiktok-async users: line 3 of {path} opens a quoted cell ")
    assert emulator.stats().total == 0
    assert not out.exists()


async def test_a_stray_quote_in_a_table_on_standard_input_stops_the_run_there(
    emulator: Emulator, tmp_path: Path
) -> None:
    data = stray_quote_csv(tmp_path / "in.csv", 3000).read_bytes()
    out = tmp_path / "out.csv"
    code, _, err = await run(emulator, "users", "-", "--column", "handle", "-o", str(out),
                             "-q", stdin=data)
    assert code == 2, err
    assert "Traceback" not in err
    assert "tiktok-async users: line 3 of standard input opens a quoted cell " in err
    _, table = read_csv(out)
    assert [row[0] for row in table] == ["1"][:len(table)]  # the rows before it, at most


async def test_json_lines_on_standard_input_are_a_table_without_column(
    emulator: Emulator, tmp_path: Path
) -> None:
    handle = existing_handle(4)
    data = f'{{"handle": "{handle}", "n": [1, 2]}}\n{{"handle": "bad!"}}\n'.encode()
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "users", "-", "-o", str(out), "-q", stdin=data)
    assert code == 0, err
    assert "reading the inputs from column 'handle'" in err
    assert [(row["handle"], row["n"], row["status"]) for row in rows(out)] == [
        (handle, [1, 2], "ok"), ("bad!", None, "invalid")]


async def test_excel_csv_has_a_bom_bare_numbers_and_no_formulas(
    emulator: Emulator, tmp_path: Path
) -> None:
    handle = existing_handle(4)
    source = write_csv(tmp_path / "in.csv", [["1", "=HYPERLINK(\"http://x\")", handle,
                                              "-2+3", "-12"]])
    out = tmp_path / "out.csv"
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q", "--excel")
    assert code == 0, err
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfid,name,handle")
    header, [row] = read_csv(out)
    assert row[1:5] == ["'=HYPERLINK(\"http://x\")", handle, "'-2+3", "-12"]
    count = header.index("stats.follower_count")
    assert f",{row[count]}," in data.decode()  # a bare number, not quoted text
    assert row[count].isdigit()
    code, _, _ = await run(emulator, "users", str(source), "-o", str(out), "-q", "--excel")
    assert code == 0  # resumes through its own byte-order mark
    assert out.read_bytes() == data


async def test_retry_failed_with_a_table_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", creators(3))
    code, _, err = await run(emulator, "users", str(source), "--retry-failed", "-q")
    assert code == 2
    assert "--retry-failed is for a list" in err


async def test_parquet_output_is_the_table_with_typed_columns(
    emulator: Emulator, tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    source = creators(200)
    out = tmp_path / "out.parquet"
    code, _, err = await run(emulator, "users", str(write_csv(tmp_path / "in.csv", source)),
                             "-o", str(out), "-q")
    assert code == 0, err
    assert f"wrote {out} (200 rows" in err
    table = pq.read_table(out)
    assert table.column_names[:5] == INPUT_COLUMNS
    assert str(table.schema.field("stats.follower_count").type) == "int64"
    assert str(table.schema.field("user.is_verified").type) == "bool"
    assert table.column("notes").to_pylist() == [row[3] for row in source]  # no apostrophe
    assert len(rows(tmp_path / "out.parquet.rows.jsonl")) == 200  # what a re-run resumes
    code, _, err = await run(emulator, "users", str(tmp_path / "in.csv"), "-o", str(out),
                             "-q")
    assert code == 0, err
    assert "skipped (already done) 200" in err
    assert f"{out} is up to date" in err


def test_parquet_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import importlib.util

    from tiktok_async._kinds import USERS
    from tiktok_async.cli._common import UsageError
    from tiktok_async.cli._outputs import choose_output

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    args = argparse.Namespace(output="out.parquet", format=None, excel=False)
    with pytest.raises(UsageError, match=r"pip install 'tiktok-async\[parquet\]'"):
        choose_output(USERS, args)


async def test_short_links_are_resolved_and_deduplicated_with_their_full_url(
    emulator: Emulator, tmp_path: Path
) -> None:
    handle, video = short_link_target("ZMtable1")
    other = existing_handle(7)
    source = write_csv(tmp_path / "in.csv", [
        ["1", "https://vm.tiktok.com/ZMtable1/"],
        ["2", f"https://www.tiktok.com/@{handle}/video/{video}"],
        ["3", "https://vm.tiktok.com/missing1/"],
        ["4", f"{other},{video_id_for(other)}"],
    ], header=["n", "url"])
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "videos", str(source), "-o", str(out), "-q",
                             "--resolve-short-links", "--short-link-base",
                             emulator.short_link_base)
    assert code == 0, err
    got = rows(out)
    assert [row["status"] for row in got] == ["ok", "ok", "invalid", "ok"]
    assert got[0]["id"] == got[1]["id"] == video
    assert "no such short link" in str(got[2]["error"])
    stats = emulator.stats()
    assert stats.count(route="short_link") == 2  # only the short links were asked about
    assert stats.total - 2 == 2  # one API request for the short link and its full URL


async def test_short_links_are_refused_without_the_option(emulator: Emulator,
                                                          tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("https://vm.tiktok.com/ZMtable1/\n")
    code, _, err = await run(emulator, "videos", str(source), "-o", str(tmp_path / "o.jsonl"),
                             "-q")
    assert code == 0, err
    [error] = rows(tmp_path / "o.errors.jsonl")
    assert "--resolve-short-links" in str(error["message"])
    assert emulator.stats().total == 0


def test_a_fetched_column_an_input_column_has_is_prefixed_tiktok() -> None:
    from tiktok_async._kinds import VIDEOS
    from tiktok_async.cli._table import TableLayout

    layout = TableLayout.of(("id", "status", "tiktok.status", "notes"), VIDEOS.columns)
    added = layout.names[4:]
    assert added[0] == "tiktok.id"  # the video's id beside the input's own
    assert added[-2:] == ("tiktok.tiktok.status", "error")
    assert len(set(layout.names)) == len(layout.names)
    assert layout.status == "tiktok.tiktok.status"


async def test_a_short_link_the_resolver_cannot_reach_is_failed_not_invalid() -> None:
    from tiktok_async import ShortLinkResolver
    from tiktok_async._bulk import Result
    from tiktok_async._exceptions import ConnectError
    from tiktok_async._kinds import VIDEOS
    from tiktok_async.cli._expand import expand_each, unwrap
    from tiktok_async.cli._inputfile import InputLine

    lines = [InputLine(1, "https://vm.tiktok.com/ZMabc/"), InputLine(2, "ann,123")]
    async with ShortLinkResolver(rate=None, short_link_base="http://127.0.0.1:9") as resolver:
        parsed = [p async for p in expand_each(
            lines, resolver, lambda line: VIDEOS.parse(line.text).replace(raw=line), VIDEOS,
            ordered=True)]
    line, error = unwrap(Result(parsed[0].raw, None, None, error=parsed[0].invalid))
    assert line == lines[0]
    assert isinstance(error, ConnectError)  # recorded as failed: a re-run asks again
    assert parsed[1].key == "ann/123"


async def test_a_list_with_short_links_answers_each_key_once(emulator: Emulator,
                                                             tmp_path: Path) -> None:
    handle, video = short_link_target("ZMlist1")
    source = tmp_path / "in.txt"
    source.write_text(f"https://vm.tiktok.com/ZMlist1/\nhttps://www.tiktok.com/@{handle}/video/"
                      f"{video}\nCheck this out! https://vm.tiktok.com/ZMlist1/ #fyp\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "videos", str(source), "-o", str(out), "-q",
                             "--resolve-short-links", "--short-link-base",
                             emulator.short_link_base)
    assert code == 0, err
    [row] = rows(out)
    assert row["key"] == f"{handle.lower()}/{video}"
    assert row["input"] in source.read_text().splitlines()  # as given, whichever came first
    assert "duplicates 2" in err
    assert emulator.stats().count(route="short_link") == 1  # the resolver's cache
