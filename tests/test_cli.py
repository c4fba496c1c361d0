"""The `tiktok-async users/videos` commands as real subprocesses against the emulator (the
`demo` command: tests/test_cli_files.py)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run, start

from tiktok_async.cli import build_parser
from tiktok_async.cli._main import _REGISTRARS
from tiktok_async.cli._progress import REFRESH_EVERY, ProgressDisplay, RunCounts
from tiktok_async.emulator import Emulator, Faults, existing_handle, is_missing, video_id_for

Factory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def assert_every_input_once(inputs: list[str], out: Path) -> None:
    """Each distinct key once in output + errors, and every input accounted for."""
    done, errors = rows(out), rows(out.with_suffix(".errors.jsonl"))
    keys = [r["key"] for r in done + errors if r["key"] is not None]
    assert len(keys) == len(set(keys)), "a key was written twice"
    expected = {h.lower() for h in inputs}
    assert set(keys) == expected


HANDLES = [f"user{n}.test" for n in range(1500)]


async def test_users_answers_every_line_in_one_place(emulator: Emulator, tmp_path: Path) -> None:
    bad_lines = ["bad handle!", "x" * 10_000, "https://tiktok.com.evil.io/@x",
                 "https://www.tiktok.com/music/song-123", "https://vm.tiktok.com/ZMabc/"]
    handles = HANDLES[:200]
    source = tmp_path / "in.txt"
    body = "\ufeff# comment\r\n" + "\r\n".join(handles + handles[:20] + bad_lines) + "\r\n\r\n"
    source.write_bytes(body.encode() + b"\xff\xfe\x00garbage\n")
    out = tmp_path / "users.jsonl"
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert_every_input_once(handles, out)
    invalid = [r for r in rows(tmp_path / "users.errors.jsonl") if r["kind"] == "invalid"]
    assert len(invalid) == len(bad_lines) + 1  # and the line of binary garbage
    assert all(isinstance(r["message"], str) and len(r["message"]) < 400 for r in invalid)
    missing = [r for r in rows(tmp_path / "users.errors.jsonl") if r["kind"] == "not_found"]
    assert len(missing) == sum(is_missing(h) for h in handles)
    assert "duplicates 20" in err


async def test_a_rerun_counts_what_earlier_runs_answered_apart_from_this_runs_duplicates(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Skipped: every input whose key an earlier run answered, repeats included (more lines
    than a FEED_BATCH of them); duplicates: repeats of what this run answered (an invalid
    line by its text)."""
    source, out = tmp_path / "in.txt", tmp_path / "users.jsonl"
    source.write_text("\n".join(HANDLES[:300]) + "\n")
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    again = HANDLES[:300] + HANDLES[:3] + HANDLES[300:310] + HANDLES[300:303] + ["bad!"] * 2
    source.write_text("\n".join(again) + "\n")
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert "invalid 1, duplicates 4, skipped (already done) 303" in err
    assert_every_input_once(HANDLES[:310], out)

async def test_sigkill_mid_run_then_resume_completes_without_duplicates(
    emulator: Emulator, tmp_path: Path
) -> None:
    proc, source, out = await run_until_150_rows(emulator, tmp_path)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    with out.open("ab") as torn:  # as if the crash had cut a line in half
        torn.write(b'{"input":"user1.test","key":"user1.te')
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert "skipped (already done)" in err
    assert_every_input_once(HANDLES, out)


@pytest.mark.parametrize(("signum", "code", "says"), [
    (signal.SIGINT, 130, "interrupted"),
    # `docker stop`, systemd, `timeout`: killed at once before, no summary (exit -15)
    (signal.SIGTERM, 143, "terminated"),
])
async def test_a_stop_signal_settles_in_flight_and_the_rerun_resumes(
    emulator: Emulator, tmp_path: Path, signum: int, code: int, says: str,
) -> None:
    proc, source, out = await run_until_150_rows(emulator, tmp_path)
    proc.send_signal(signum)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == code, err.decode()
    assert f"{says} (re-run to resume)" in err.decode()
    assert "Traceback" not in err.decode()
    first = len(rows(out)) + len(rows(tmp_path / "users.errors.jsonl"))
    assert 150 <= first < len(HANDLES)
    rerun, _, err2 = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert rerun == 0, err2
    assert_every_input_once(HANDLES, out)


async def run_until_150_rows(
    emulator: Emulator, tmp_path: Path
) -> tuple[asyncio.subprocess.Process, Path, Path]:
    """`users` on HANDLES at 300/s, returned once its output holds 150 rows."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(HANDLES) + "\n")
    out = tmp_path / "users.jsonl"
    proc = await start(emulator, "users", str(source), "-o", str(out), "--rate", "300",
                       "--burst", "5", "-q")
    await wait_for_rows(out, 150)
    return proc, source, out


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_rows(path: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if line_count(path) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} rows")


async def test_bad_key_exits_3_with_one_message(emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(HANDLES) + "\n")
    started = time.monotonic()
    code, _, err = await run(emulator, "users", str(source), "-o", str(tmp_path / "u.jsonl"),
                             "-q", key="wrong-key")
    assert code == 3
    assert time.monotonic() - started < 30
    assert err.count("403 Forbidden") == 1
    assert "wrong-key" not in err
    assert rows(tmp_path / "u.errors.jsonl") == []
    assert emulator.stats().total <= 64 * 2


async def test_used_up_quota_exits_3(tiktok_emulator_factory: Factory, tmp_path: Path) -> None:
    emu = await tiktok_emulator_factory(quota=50, upstream_latency_ms=0)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(HANDLES[:300]) + "\n")
    out = tmp_path / "u.jsonl"
    code, _, err = await run(emu, "users", str(source), "-o", str(out), "-q")
    assert code == 3
    assert "Limit Exceeded" in err
    assert 0 < len(rows(out)) <= 50


async def test_failures_after_retries_exit_1_and_are_recorded(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    emu = await tiktok_emulator_factory(faults=Faults(http_500=1.0), upstream_latency_ms=0)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(HANDLES[:5]) + "\n")
    code, _, _ = await run(emu, "users", str(source), "-o", str(tmp_path / "u.jsonl"), "-q",
                           "--max-retries", "1")
    assert code == 1
    failed = rows(tmp_path / "u.errors.jsonl")
    assert [(r["kind"], r["status"], r["attempts"]) for r in failed] == [("failed", 500, 2)] * 5

    emu.configure(faults=Faults())  # the backend recovers
    code, _, err = await run(emu, "users", str(source), "-o", str(tmp_path / "u.jsonl"), "-q")
    assert code == 1  # still failed: a re-run does not hide them
    assert "--retry-failed" in err
    code, _, err = await run(emu, "users", str(source), "-o", str(tmp_path / "u.jsonl"), "-q",
                             "--retry-failed")
    assert code == 0, err
    assert len(rows(tmp_path / "u.jsonl")) == 5
    assert rows(tmp_path / "u.errors.jsonl") == []


async def test_csv_input_comes_back_as_the_table_enriched(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    """A CSV in, the same table out (its columns first, in its order), then the fields,
    status and error: tests/test_cli_table.py has the rest."""
    source = tmp_path / "in.csv"
    source.write_text("name,handle\nA,user1.test\nB,@user2.test\n")
    out = tmp_path / "users.csv"
    code, _, err = await run(emulator, "users", str(source), "--column", "handle", "-o",
                             str(out), "-q")
    assert code == 0, err
    with out.open(newline="", encoding="utf-8") as f:
        header, *table = list(csv.reader(f))
    assert header[:3] == ["name", "handle", "user.id"]
    assert header[-2:] == ["status", "error"]
    assert [(row[0], row[1], row[-2]) for row in table] == [
        ("A", "user1.test", "ok"), ("B", "'@user2.test", "ok")]  # '@: no formula in Excel


async def test_missing_csv_column_is_a_usage_error(emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("name,handle\nA,user1.test\n")
    code, _, err = await run(emulator, "users", str(source), "--column", "nope", "-q")
    assert code == 2
    assert "handle" in err
    assert "Traceback" not in err


async def test_stdin_to_stdout(emulator: Emulator, tmp_path: Path) -> None:
    handle = existing_handle(1)
    video = video_id_for(handle)
    lines = f"{handle},{video}\nhttps://vm.tiktok.com/ZMabc/\n".encode()
    code, out, err = await run(emulator, "videos", "-", "-o", "-", "-q", stdin=lines,
                               cwd=tmp_path)
    assert code == 0, err
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["key"] == f"{handle.lower()}/{video}"
    assert row["id"] == video
    [invalid] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert invalid["kind"] == "invalid"  # to stderr with -o -: no errors.jsonl grows
    assert not (tmp_path / "errors.jsonl").exists()


@pytest.mark.slow
async def test_ten_thousand_inputs_with_faults_each_land_once(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    """5% faults, 2% missing: each input in exactly one place, every transient failure
    retried (no 'failed' row), no duplicate."""
    faults = Faults(http_500=0.01, http_502=0.01, http_503=0.01, http_504=0.01, truncate=0.01)
    emu = await tiktok_emulator_factory(faults=faults, seed=3, upstream_latency_ms=0,
                                        upstream_jitter_ms=0)
    handles = [f"user{n}.test" for n in range(10_000)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(handles) + "\n")
    out = tmp_path / "users.jsonl"
    # A fixed rate and concurrency: this is about where each input lands, and the
    # emulator shares the test's (debug-mode) loop, so the adaptive ramp would only wait.
    code, _, err = await run(emu, "users", str(source), "-o", str(out), "-q",
                             "--max-retries", "10", "--rate", "5000", "--concurrency", "64",
                             "--fixed-concurrency")
    assert code == 0, err
    assert_every_input_once(handles, out)
    errors = rows(tmp_path / "users.errors.jsonl")
    assert {r["kind"] for r in errors} == {"not_found"}
    assert len(errors) == sum(is_missing(h) for h in handles)
    assert emu.stats().count(status=500) > 0  # the faults did happen, and were retried


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def test_a_command_built_alone_is_the_command_of_the_full_parser() -> None:
    """`main` builds only the command it runs (only its module imported): the table of
    commands lists every one, in order, and each alone has the options and help it has
    among all the others."""
    full = command_parsers(build_parser())
    assert list(full) == list(_REGISTRARS)
    for name, parser in full.items():
        alone = command_parsers(build_parser(name))
        assert len(alone) < len(full)
        assert alone[name].format_help() == parser.format_help()
    assert list(command_parsers(build_parser("usrs"))) == list(full)


def test_progress_off_or_not_a_terminal_draws_no_bar_and_prints_the_summary() -> None:
    for enabled in (False, True):
        stream, counts = io.StringIO(), RunCounts(done=3)
        with ProgressDisplay(counts, total=5, enabled=enabled, stream=stream) as display:
            display.refresh()
        display.print_summary("users")
        assert stream.getvalue().startswith("users\n  done 3, not found 0,")


class Terminal(io.StringIO):
    """A stream rich takes for a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_is_updated_from_the_counts_at_most_every_refresh_interval() -> None:
    """`due()`, asked after every answer: yes once per REFRESH_EVERY, never without a bar."""
    now = [100.0]
    quiet = ProgressDisplay(RunCounts(), total=3, enabled=False, stream=Terminal())
    shown = ProgressDisplay(RunCounts(), total=3, enabled=True, stream=Terminal(),
                            clock=lambda: now[0])
    assert [quiet.due(), shown.due(), shown.due()] == [False, True, False]
    now[0] += REFRESH_EVERY * 0.9
    assert not shown.due()
    now[0] += REFRESH_EVERY * 0.1
    assert shown.due()
