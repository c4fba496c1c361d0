"""`tiktok-async` and its files on a bad day (issue 12, the file rows), as real subprocesses
against the emulator: two runs on one output, a full disk, the demo in a folder of the
user's, outputs that differ in their suffix, `-o -`, input files that are not text, an
empty input, an output suffix it does not write. Each test checks the exit code, the
message and what the output and errors files hold afterwards. Then the cheap write path
(issue 13) in-process: lines gathered a turn of the loop, `write_model`, `KeySet.add`."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_env, rows, run, start

from tiktok_async._kinds import KINDS
from tiktok_async._models import encode_json, to_builtins
from tiktok_async.cli._files import OutputFiles, OutputWriteError
from tiktok_async.cli._resume import KeySet, OutputFormat
from tiktok_async.emulator import Emulator, is_missing

Factory = Callable[..., Awaitable[Emulator]]
SECOND_KEY = "second-run-key"


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0,
                                         api_keys=("test-key", SECOND_KEY))


def handles_file(folder: Path, count: int, name: str = "in.txt") -> Path:
    source = folder / name
    source.write_text("".join(f"user{n}.files\n" for n in range(count)))
    return source


def handles(count: int) -> set[str]:
    return {f"user{n}.files" for n in range(count)}


def keys_once(*paths: Path) -> set[str]:
    """The keys in the given files; fails if one is there twice."""
    keys = [str(row["key"]) for path in paths for row in rows(path)]
    assert len(keys) == len(set(keys)), "a key was written twice"
    return set(keys)


async def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def remount(disk: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# -- two runs on one output ----------------------------------------------------------------


async def test_a_second_run_on_the_same_output_is_refused_at_once_naming_the_holder(
    emulator: Emulator, tmp_path: Path
) -> None:
    source, out = handles_file(tmp_path, 200), tmp_path / "out.jsonl"
    first = await start(emulator, "users", str(source), "-o", str(out), "-q", "--rate", "5")
    await wait_until(lambda: line_count(out) >= 2)
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q",
                             key=SECOND_KEY)
    assert code == 2, err
    assert f"{out} is in use by another run (PID {first.pid} on {socket.gethostname()}" in err
    assert "Traceback" not in err
    other = tmp_path / "other.jsonl"
    code, _, err = await run(emulator, "users", str(source), "-o", str(other), "--errors",
                             str(tmp_path / "out.errors.jsonl"), "-q", key=SECOND_KEY)
    assert code == 2, err
    assert f"out.errors.jsonl is in use by another run (PID {first.pid}" in err
    still_running = first.returncode is None
    assert still_running  # refused while the first still ran: nothing waited
    assert emulator.stats().count(key=SECOND_KEY) == 0  # and sent nothing
    assert not other.exists()
    first.send_signal(signal.SIGINT)
    await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 130
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err  # the lock went with the first run
    assert keys_once(out, tmp_path / "out.errors.jsonl") == handles(200)


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hard link"])
async def test_a_second_run_through_another_name_of_the_output_is_refused(
    emulator: Emulator, tmp_path: Path, link: Callable[[Path, Path], None]
) -> None:
    """A symlink `latest.jsonl -> out.jsonl`, or a hard link: the same file, the same lock."""
    source, out = handles_file(tmp_path, 200), tmp_path / "out.jsonl"
    first = await start(emulator, "users", str(source), "-o", str(out), "-q", "--rate", "5")
    await wait_until(lambda: line_count(out) >= 2)
    other_name = tmp_path / "other" / "latest.jsonl"
    other_name.parent.mkdir()
    link(out, other_name)
    code, _, err = await run(emulator, "users", str(source), "-o", str(other_name), "-q",
                             "--errors", str(tmp_path / "other.errors.jsonl"), key=SECOND_KEY)
    assert code == 2, err
    assert f"{other_name} is in use by another run (PID {first.pid} on " in err
    assert "Traceback" not in err
    assert first.returncode is None  # refused while the first still ran
    assert emulator.stats().count(key=SECOND_KEY) == 0
    first.send_signal(signal.SIGINT)
    await asyncio.wait_for(first.communicate(), 30)
    errors = tmp_path / "out.errors.jsonl"
    code, _, err = await run(emulator, "users", str(source), "-o", str(other_name), "-q",
                             "--errors", str(errors))
    assert code == 0, err  # the lock went with the first run
    assert keys_once(out, errors) == handles(200)


async def test_a_run_after_a_sigkilled_one_is_not_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    source, out = handles_file(tmp_path, 100), tmp_path / "out.jsonl"
    first = await start(emulator, "users", str(source), "-o", str(out), "-q", "--rate", "10")
    await wait_until(lambda: line_count(out) >= 2)
    first.send_signal(signal.SIGKILL)
    await asyncio.wait_for(first.communicate(), 30)
    lock = json.loads((tmp_path / "out.jsonl.lock").read_text())
    assert lock["pid"] == first.pid  # its note is left, its lock is not
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert "in use" not in err
    assert keys_once(out, tmp_path / "out.errors.jsonl") == handles(100)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
async def test_an_output_where_no_file_can_be_made_is_refused_saying_so(
    emulator: Emulator, tmp_path: Path
) -> None:
    """/proc takes no new file: the lock file fails to be made, which is not another run."""
    source = handles_file(tmp_path, 1)
    code, _, err = await run(emulator, "users", str(source), "-o", "/proc/out.jsonl", "-q")
    assert code == 2, err
    assert err.startswith("tiktok-async users: cannot create /proc/out.jsonl.lock (the lock "
                          "file of /proc/out.jsonl): "), err
    assert err.rstrip().endswith("; write to a folder where files can be created"), err
    assert "in use" not in err
    assert emulator.stats().count() == 0


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def test_a_full_disk_stops_with_one_message_whole_lines_and_the_rerun_resumes(
    emulator: Emulator, tmp_path: Path, small_disk: Path
) -> None:
    source, out = handles_file(tmp_path, 400), small_disk / "out.jsonl"
    errors = small_disk / "out.errors.jsonl"
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 4, err
    assert f"cannot write to {small_disk}/out" in err
    assert "No space left on device" in err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    written = keys_once(out, errors)  # rows() fails on a torn last line
    assert 20 < len(written) < 400
    remount(small_disk, "4m")
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert f"skipped (already done) {len(written)}" in err
    assert keys_once(out, errors) == handles(400)
    assert len(rows(errors)) == sum(is_missing(h) for h in handles(400))


# -- the demo in a folder of the user's ----------------------------------------------------


async def test_demo_in_a_folder_with_the_users_files_is_refused_and_touches_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    mine = tmp_path / "my_results.jsonl"
    mine.write_text('{"mine": true}\n')
    (tmp_path / "users.jsonl").write_text('{"also": "mine"}\n')
    code, out, err = await run(emulator, "demo", "--out", ".", "-q", cwd=tmp_path)
    assert code == 2, err
    assert "holds files the demo did not write (my_results.jsonl, users.jsonl)" in err
    assert "--out" in err
    assert "emulator at" not in out  # refused before anything started
    assert names(tmp_path) == ["my_results.jsonl", "users.jsonl"]
    assert mine.read_text() == '{"mine": true}\n'


async def test_demo_in_an_unmarked_folder_of_demo_files_is_refused_with_a_hint(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A `demo-out/` from before the marker, or the user's own `users.jsonl`: not touched."""
    (tmp_path / "demo-out").mkdir()
    (tmp_path / "demo-out" / "users.jsonl").write_text('{"old": true}\n')
    code, _, err = await run(emulator, "demo", "-q", cwd=tmp_path)
    assert code == 2, err
    assert "or remove demo-out if an older demo made it" in err
    assert (tmp_path / "demo-out" / "users.jsonl").read_text() == '{"old": true}\n'
    assert names(tmp_path / "demo-out") == ["users.jsonl"]


async def test_demo_runs_the_bundled_job_and_again_in_its_own_folder_starts_afresh(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The demo runs the bundled job; run again in its folder, it starts afresh and leaves
    the other files there alone. (One test: a demo run takes 10 s.)"""
    folder = tmp_path / "demo"
    code, out, err = await run(emulator, "demo", "--out", str(folder), "--quota", "2000",
                               "--latency", "fast", "-q")
    assert code == 0, err
    assert "emulator at http://127.0.0.1:" in out
    assert len(rows(folder / "videos.jsonl")) > 200
    first = len(rows(folder / "users.jsonl"))
    notes = folder / "notes.jsonl"
    notes.write_text('{"kept": true}\n')
    code, out, err = await run(emulator, "demo", "--out", str(folder), "--quota", "2000",
                               "--latency", "fast", "-q")
    assert code == 0, err
    assert notes.read_text() == '{"kept": true}\n'
    assert len(rows(folder / "users.jsonl")) == first > 1500  # afresh: not doubled
    assert "skipped (already done) 0" in err
    assert ("users.errors.jsonl, users.jsonl, videos.errors.jsonl, videos.jsonl"
            in out.splitlines()[-1])


# -- outputs that differ in their suffix -----------------------------------------------------


async def test_csv_after_jsonl_of_the_same_name_is_refused_then_runs_with_its_own_errors(
    emulator: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("user1.files\nmissing_one\nbad handle!\nuser2.files\n")
    code, _, err = await run(emulator, "users", str(source), "-o", "out.jsonl", "-q",
                             cwd=tmp_path)
    assert code == 0, err
    errors_before = (tmp_path / "out.errors.jsonl").read_bytes()
    code, _, err = await run(emulator, "users", str(source), "-o", "out.csv", "-q",
                             cwd=tmp_path)
    assert code == 2, err
    assert ("out.errors.jsonl holds the errors of out.jsonl; out.csv would share it" in err)
    assert "--errors out.csv.errors.jsonl" in err
    assert not (tmp_path / "out.csv").exists()
    assert (tmp_path / "out.errors.jsonl").read_bytes() == errors_before
    code, _, err = await run(emulator, "users", str(source), "-o", "out.csv", "--errors",
                             "out.csv.errors.jsonl", "-q", cwd=tmp_path)
    assert code == 0, err
    assert "skipped (already done) 0" in err
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 3  # header + 2 found
    assert {row["kind"] for row in rows(tmp_path / "out.csv.errors.jsonl")} == {
        "not_found", "invalid"}


# -- -o - ------------------------------------------------------------------------------------


async def test_stdout_output_says_where_errors_go_and_grows_no_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    lines = b"user1.files\nbad handle!\n"
    for _ in range(2):
        code, out, err = await run(emulator, "users", "-", "-o", "-", "-q", stdin=lines,
                                   cwd=tmp_path)
        assert code == 0, err
        assert [json.loads(line)["key"] for line in out.splitlines()] == ["user1.files"]
        assert ("answers to standard output, errors to standard error as JSON lines "
                "(--errors FILE keeps them in a file)") in err
        [invalid] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert invalid["input"] == "bad handle!"
        assert invalid["kind"] == "invalid"
        assert names(tmp_path) == []


async def test_a_closed_standard_output_stops_the_run_quietly_with_exit_141(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`-o - | head -1`: the reader has what it wanted; not a full disk, nothing to resume."""
    source = handles_file(tmp_path, 500)
    # Popen, not asyncio's: its stdout is a file to close by hand (blocking calls: in threads)
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "tiktok_async", "users", str(source), "-o", "-", "-q",
         "--errors", str(tmp_path / "e.jsonl")],
        env=cli_env(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = await asyncio.to_thread(proc.stdout.readline)
    assert json.loads(first)["key"].endswith(".files")
    proc.stdout.close()  # as `head -1` does once it has its line
    err = (await asyncio.to_thread(proc.stderr.read)).decode()
    code = await asyncio.to_thread(proc.wait, 60)
    proc.stderr.close()
    assert code == 141, err
    assert "free some space" not in err
    assert "Exception ignored" not in err  # Python's flush at exit, into the closed pipe
    assert "BrokenPipeError" not in err
    assert "Traceback" not in err
    assert err.splitlines() == ["tiktok-async users: answers to standard output, errors to "
                                f"{tmp_path / 'e.jsonl'}"]


# -- input files -----------------------------------------------------------------------------


def xlsx(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(("name", "make", "words"), [
    ("in.txt", lambda p: p.write_bytes("user1.files\n".encode("utf-16")),
     "in.txt is UTF-16 text: save it as UTF-8"),
    ("in.xlsx", xlsx, "in.xlsx is an Excel workbook: export the sheet as CSV (File > Save As "
                      "> CSV UTF-8) and pass --column"),
    ("in.dat", lambda p: p.write_bytes(bytes(range(256)) * 4), "in.dat is a binary file"),
])
async def test_an_input_that_is_not_text_exits_2_saying_what_it_is_and_what_to_do(
    emulator: Emulator, tmp_path: Path, name: str, make: Callable[[Path], object], words: str
) -> None:
    make(tmp_path / name)
    code, _, err = await run(emulator, "users", name, "-o", "out.jsonl", "-q", cwd=tmp_path)
    assert code == 2, err
    assert words in err
    assert "Traceback" not in err
    assert names(tmp_path) == [name]  # no output, errors or lock file
    assert emulator.stats().total == 0


@pytest.mark.parametrize(("data", "why"), [(b"", "it is empty"),
                                           (b"# handles\n\n", "only blank lines")])
async def test_an_empty_input_warns_exits_0_and_makes_no_file(
    emulator: Emulator, tmp_path: Path, data: bytes, why: str
) -> None:
    (tmp_path / "in.txt").write_bytes(data)
    code, _, err = await run(emulator, "users", "in.txt", "-o", "out.jsonl", "-q",
                             cwd=tmp_path)
    assert code == 0, err
    assert f"warning: in.txt holds no inputs ({why}" in err
    assert names(tmp_path) == ["in.txt"]


async def test_an_output_suffix_it_does_not_write_is_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    handles_file(tmp_path, 3)
    code, _, err = await run(emulator, "users", "in.txt", "-o", "out.xlsx", "-q",
                             cwd=tmp_path)
    assert code == 2, err
    assert ("out.xlsx: tiktok-async writes JSON lines (.jsonl), CSV (.csv) or Parquet "
            "(.parquet), not .xlsx: name the output out.jsonl, out.csv or out.parquet") in err
    assert names(tmp_path) == ["in.txt"]
    assert emulator.stats().total == 0


@pytest.mark.parametrize("args", [["-o", "gone/out.jsonl"],
                                  ["-o", "out.jsonl", "--errors", "gone/deeper/err.jsonl"]],
                         ids=["output", "errors"])
async def test_an_output_in_a_folder_that_does_not_exist_is_refused_making_nothing(
    emulator: Emulator, tmp_path: Path, args: list[str]
) -> None:
    """The lock file beside it made the missing folders (filelock makes them)."""
    handles_file(tmp_path, 3)
    code, _, err = await run(emulator, "users", "in.txt", *args, "-q", cwd=tmp_path)
    assert code == 2, err
    folder = tmp_path / Path(args[-1]).parent
    assert f"the folder {folder} does not exist (make it first, or write elsewhere)" in err
    assert "Traceback" not in err
    assert names(tmp_path) == ["in.txt"]
    assert emulator.stats().total == 0


# -- files that are not the tool's -----------------------------------------------------------

NOTES = b"my important notes line 1\nline 2\nline 3 no newline"


@pytest.mark.parametrize(("args", "name", "data", "what"), [
    (["-o", "n.jsonl", "--errors", "notes.txt"], "notes.txt", NOTES, "an errors file"),
    (["-o", "notes.jsonl"], "notes.jsonl", NOTES, "an output"),
    (["-o", "notes.jsonl"], "notes.jsonl", b"my notes\n" + b'{"input":"a","key":"a"}\n',
     "an output"),  # its last line is a record, its first is not
    (["-o", "notes.jsonl"], "notes.jsonl", b'{"input":"a","key":"a"}\nmy notes\n',
     "an output"),  # a whole last line that is not one (today's repair cut it)
    (["-o", "notes.csv"], "notes.csv", b"some text, no newline", "an output"),
    (["-o", "notes.jsonl", "--column", "handle"], "notes.jsonl", NOTES, "an output"),
], ids=["errors", "output", "first line", "last line", "csv", "table"])
async def test_a_file_the_tool_did_not_write_is_refused_and_left_as_it_was(
    emulator: Emulator, tmp_path: Path, args: list[str], name: str, data: bytes, what: str
) -> None:
    """Resume's repair cuts a torn last line: never in a file that is not its own."""
    (tmp_path / "in.txt").write_text("handle\nuser1.files\nbad!\n")
    (tmp_path / name).write_bytes(data)
    code, _, err = await run(emulator, "users", "in.txt", *args, "-q", cwd=tmp_path)
    assert code == 2, err
    assert (f"{name} is not {what} of tiktok-async (its lines are not the records it "
            "writes): choose another file") in err
    assert "Traceback" not in err
    assert (tmp_path / name).read_bytes() == data
    assert emulator.stats().count() == 0


async def test_answers_of_the_other_kind_are_not_appended_to_an_output(
    emulator: Emulator, tmp_path: Path,
) -> None:
    """`videos` into the `users` output appended videos to profiles (CSV refused it by its
    header, JSON lines did not look)."""
    (tmp_path / "users.txt").write_text("user1.files\nuser2.files\n")
    code, _, err = await run(emulator, "users", "users.txt", "-o", "out.jsonl", "-q",
                             cwd=tmp_path)
    assert code == 0, err
    written = (tmp_path / "out.jsonl").read_bytes()
    (tmp_path / "videos.txt").write_text("user1.files,7000000000000000001\n")
    code, _, err = await run(emulator, "videos", "videos.txt", "-o", "out.jsonl", "-q",
                             cwd=tmp_path)
    assert code == 2, err
    assert "out.jsonl holds answers of another kind (its first has stats, user)" in err
    assert (tmp_path / "out.jsonl").read_bytes() == written
    code, _, err = await run(emulator, "users", "users.txt", "-o", "out.jsonl", "-q",
                             cwd=tmp_path)  # its own kind still resumes
    assert code == 0, err
    assert (tmp_path / "out.jsonl").read_bytes() == written


@pytest.mark.parametrize(("args", "option"), [
    (["-o", "w.jsonl", "--errors", "w"], "--errors w"),
    (["-o", "w.jsonl", "--errors", "hard-link-to-w"], "--errors hard-link-to-w"),
    (["-o", "w"], "-o w"),
    (["-o", "w.jsonl"], "--errors w.errors.jsonl"),  # the default errors file: a symlink
])
async def test_an_output_or_errors_file_that_is_the_input_is_refused(
    emulator: Emulator, tmp_path: Path, args: list[str], option: str
) -> None:
    """Else the run writes into what it reads (a "torn" last line of it cut, first)."""
    source = b"user1.files\nbad!\n"
    (tmp_path / "w").write_bytes(source)
    os.link(tmp_path / "w", tmp_path / "hard-link-to-w")
    os.symlink("w", tmp_path / "w.errors.jsonl")
    code, _, err = await run(emulator, "users", "w", *args, "-q", cwd=tmp_path)
    assert code == 2, err
    assert f"{option}: that is the input file, which the run would write into" in err
    assert "Traceback" not in err
    assert (tmp_path / "w").read_bytes() == source
    assert emulator.stats().count() == 0


async def test_a_record_cut_short_in_a_file_of_its_own_is_still_repaired(
    emulator: Emulator, tmp_path: Path
) -> None:
    source, out = handles_file(tmp_path, 3), tmp_path / "out.jsonl"
    errors = tmp_path / "out.errors.jsonl"
    out.write_bytes(b'{"input":"user0.files","key":"user0.files"}\n{"in')
    errors.write_bytes(b'{"inp')
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert keys_once(out, errors) == handles(3)


# -- the cheap write path (issue 13) -------------------------------------------------------

SAMPLES = Path(__file__).parent / "samples"


class Writes:
    """os.write, recorded; fails with ENOSPC (after half of the first failing call) once
    `full` is set."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.full = False
        self.real = os.write

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.full:
            self.full = False
            self.real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.calls.append(bytes(data))
        return self.real(fd, data)


async def test_lines_of_one_turn_of_the_loop_go_out_in_one_write_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, writes = tmp_path / "o.jsonl", Writes()
    with OutputFiles.open(out) as files:
        monkeypatch.setattr(os, "write", writes)  # after the lock file is written
        for key in ("ann", "bob", "cat"):
            files.write_ok(key, key, {"n": 1})
        assert writes.calls == []
        assert out.read_bytes() == b""
        await asyncio.sleep(0)
        assert len(writes.calls) == 1
        assert [row["key"] for row in rows(out)] == ["ann", "bob", "cat"]
        files.write_ok("dan", "dan", {"n": 2})
    assert [row["key"] for row in rows(out)] == ["ann", "bob", "cat", "dan"]  # close wrote it


async def test_a_gathered_write_that_fails_is_cut_back_and_raised_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, writes = tmp_path / "o.jsonl", Writes()
    files = OutputFiles.open(out)
    monkeypatch.setattr(os, "write", writes)
    files.write_ok("ann", "ann", {"n": 1})
    await asyncio.sleep(0)
    before = out.read_bytes()
    writes.full = True
    files.write_ok("bob", "bob", {"n": 2, "pad": "x" * 100})
    files.write_ok("cat", "cat", {"n": 3})
    await asyncio.sleep(0)  # the turn's write fails: nothing is raised into the loop
    assert out.read_bytes() == before
    with pytest.raises(OutputWriteError, match="No space left on device"):
        files.write_ok("dan", "dan", {"n": 4})
    with pytest.raises(OutputWriteError):
        files.close()
    assert [row["key"] for row in rows(out)] == ["ann"]


@pytest.mark.parametrize(("kind", "sample", "fmt"), [
    ("users", "user_200", "jsonl"), ("videos", "video_200", "jsonl"),
    ("users", "user_sparse_big_counts_200", "jsonl"), ("users", "user_200", "csv"),
])
def test_write_model_writes_what_write_ok_writes_of_its_builtins(
    tmp_path: Path, kind: str, sample: str, fmt: OutputFormat
) -> None:
    """The model encoded once and spliced after the input and key: the same bytes."""
    model = KINDS[kind].decode((SAMPLES / sample / "body").read_bytes())
    written = []
    for name, write in (("a", OutputFiles.write_ok), ("b", OutputFiles.write_model)):
        path = tmp_path / f"{name}.{fmt}"
        with OutputFiles.open(path, fmt=fmt, columns=KINDS[kind].columns,
                              encode=encode_json) as files:
            for text in ("@Ann", 'a"b\\c \u00e9\u2028\t'):
                write(files, text, "ann", model if name == "b" else to_builtins(model))
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert written[0].startswith(b'{"input":"@Ann","key":"ann","' if fmt == "jsonl"
                                 else b"input,key,user.id,")


def test_write_model_with_an_encoder_that_does_not_take_models_writes_its_builtins(
    tmp_path: Path
) -> None:
    model = KINDS["users"].decode((SAMPLES / "user_200" / "body").read_bytes())
    with OutputFiles.open(tmp_path / "o.jsonl") as files:  # the stdlib's json encoder
        files.write_model("@Ann", "ann", model)
    assert rows(tmp_path / "o.jsonl") == [{"input": "@Ann", "key": "ann",
                                           **to_builtins(model)}]


def test_keyset_finds_keys_added_between_lookups_and_after_a_load() -> None:
    keys = KeySet(f"loaded{i}" for i in range(5_000))
    for i in range(5_000):
        assert f"added{i}" not in keys
        keys.add(f"added{i}")
        assert f"added{i}" in keys
        assert f"loaded{i}" in keys
    keys.load("late")
    keys.add("later")
    assert all(key in keys for key in ("late", "later", "added0", "loaded4999"))
    assert "added5000" not in keys
    assert len(keys) == 10_002
    assert [keys.add_new("late"), keys.add_new("added7"), keys.add_new("new")] == [
        False, False, True]
    assert not keys.add_new("new")
    assert "new" in keys
    assert len(keys) == 10_003


def test_keyset_add_new_on_a_loaded_bucket_and_an_empty_set() -> None:
    keys = KeySet()
    assert "a" not in keys
    keys.load("a")
    assert not keys.add_new("a")  # the loaded bucket is sorted first, then searched
    assert keys.add_new("b")
    assert {"a", "b"} == {key for key in ("a", "b", "c") if key in keys}
