"""The rate a key reached, remembered by the command line for its next run
(cli/_ratememory.py): real subprocesses against the emulator, and the state file's rules."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run, start

from tiktok_async.cli._ratememory import MAX_AGE, MAX_ENTRIES, RateMemory, state_file
from tiktok_async.emulator import Emulator, existing_handle

Factory = Callable[..., Awaitable[Emulator]]
KEY = "sk-remember-KEY-5e4d3c"
STARTING = re.compile(r"starting at ([\d,]+) requests/s")


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(api_keys=(KEY,), upstream_latency_ms=0)


def handles_file(folder: Path, count: int, name: str = "in.txt") -> str:
    (folder / name).write_text("".join(f"{existing_handle(n)}\n" for n in range(count)))
    return name


def remembered(emulator: Emulator) -> float | None:
    return RateMemory.load(KEY, emulator.base_url).start


async def test_a_second_run_starts_at_the_rate_the_first_reached(emulator: Emulator,
                                                                  tmp_path: Path) -> None:
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 120), "-q",
                             key=KEY, cwd=tmp_path)
    assert code == 0, err
    assert STARTING.search(err) is None  # nothing remembered yet: from 10/s
    reached = remembered(emulator)
    assert reached is not None
    assert reached > 10  # slow start doubled past its 10/s
    assert KEY not in state_file().read_text()  # a hash names the entry, never the key

    code, _, err = await run(emulator, "users", handles_file(tmp_path, 40, "more.txt"), "-q",
                             "-o", "more.jsonl", key=KEY, cwd=tmp_path)
    assert code == 0, err
    started = STARTING.search(err)
    assert started is not None, err
    assert float(started.group(1).replace(",", "")) == pytest.approx(reached, abs=0.5)
    assert len(rows(tmp_path / "more.jsonl")) == 40


async def test_a_run_held_back_by_its_input_does_not_lower_the_figure(
    emulator: Emulator, tmp_path: Path,
) -> None:
    """`slow-producer | tiktok-async users -`: three lines 0.7 s apart, no 429, slower than
    it started. It replaced the figure with 4/s, and the next run started there."""
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 120), "-q",
                             key=KEY, cwd=tmp_path)
    assert code == 0, err
    reached = remembered(emulator)
    assert reached is not None
    assert reached > 10
    proc = await start(emulator, "users", "-", "-o", "trickle.jsonl", "-q", key=KEY,
                       stdin=b"", cwd=tmp_path)
    assert proc.stdin is not None
    for n in range(3):
        proc.stdin.write(f"{existing_handle(500 + n)}\n".encode())
        await proc.stdin.drain()
        await asyncio.sleep(0.7)
    proc.stdin.close()
    _, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err_bytes.decode()
    assert len(rows(tmp_path / "trickle.jsonl")) == 3
    assert remembered(emulator) == pytest.approx(reached, abs=0.001)


async def test_a_fixed_rate_neither_reads_nor_writes_it(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    RateMemory.load(KEY, emulator.base_url).save(500.0)
    before = state_file().read_text()
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 20), "-q",
                             "--rate", "20", key=KEY, cwd=tmp_path)
    assert code == 0, err
    assert STARTING.search(err) is None
    assert state_file().read_text() == before


async def test_fresh_rate_starts_from_10_and_writes_what_it_reached(emulator: Emulator,
                                                                   tmp_path: Path) -> None:
    RateMemory.load(KEY, emulator.base_url).save(50_000.0)
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 20), "-q",
                             "--fresh-rate", key=KEY, cwd=tmp_path)
    assert code == 0, err
    assert STARTING.search(err) is None
    reached = remembered(emulator)
    assert reached is not None
    assert reached < 1_000  # 20 inputs from 10/s, not 50,000


async def test_a_state_file_that_is_not_json_is_replaced(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    state_file().parent.mkdir(parents=True)
    state_file().write_text("{torn")
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 20), "-q",
                             key=KEY, cwd=tmp_path)
    assert code == 0, err
    assert remembered(emulator) is not None
    assert json.loads(state_file().read_text())  # whole JSON again


async def test_a_state_folder_that_cannot_be_written_costs_a_warning_not_the_run(
        emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder would be")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    code, _, err = await run(emulator, "users", handles_file(tmp_path, 20), "-q",
                             key=KEY, cwd=tmp_path)
    assert code == 0, err
    assert "warning: the rate reached was not remembered" in err
    assert "Traceback" not in err
    assert len(rows(tmp_path / "users.jsonl")) == 20


async def test_a_run_stopped_by_ctrl_c_leaves_its_rate_for_the_next(emulator: Emulator,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "users.jsonl"
    proc = await start(emulator, "users", handles_file(tmp_path, 2_000), "-q", key=KEY,
                       cwd=tmp_path)
    for _ in range(600):  # a second of answers at least: the busiest half second is known
        if len(rows(out)) >= 30:
            break
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    reached = remembered(emulator)
    assert reached is not None
    code, _, err_next = await run(emulator, "users", "in.txt", "-q", key=KEY, cwd=tmp_path)
    assert code == 0, err_next
    started = STARTING.search(err_next)
    assert started is not None, err_next
    assert float(started.group(1).replace(",", "")) == pytest.approx(reached, abs=0.5)
    assert len(rows(out)) == 2_000  # resumed: nothing lost, nothing twice
    assert len({row["input"] for row in rows(out)}) == 2_000


# -- the state file's rules, in process ------------------------------------------------------


def test_an_entry_older_than_a_day_or_of_another_key_or_url_is_not_used() -> None:
    memory = RateMemory.load(KEY, "http://api.example/dev/tiktok")
    memory.save(400.0, now=1_000_000.0)
    assert RateMemory.load(KEY, "http://api.example/dev/tiktok/", now=1_000_060.0).start == 400
    assert RateMemory.load(KEY, "http://api.example/dev/tiktok",
                           now=1_000_000.0 + MAX_AGE + 1).start is None
    assert RateMemory.load("another-key", "http://api.example/dev/tiktok",
                           now=1_000_060.0).start is None
    assert RateMemory.load(KEY, "http://other.example/dev/tiktok", now=1_000_060.0).start is None


def test_the_file_keeps_the_newest_entries_only() -> None:
    for n in range(MAX_ENTRIES + 5):
        RateMemory.load(f"key-{n}", "http://api.example").save(10.0 + n, now=1_000.0 + n)
    entries = json.loads(state_file().read_text())
    assert len(entries) == MAX_ENTRIES
    assert RateMemory.load("key-0", "http://api.example", now=1_100.0).start is None
    newest = MAX_ENTRIES + 4
    assert RateMemory.load(f"key-{newest}", "http://api.example", now=1_100.0).start == (
        10.0 + newest)
    assert not [name for name in os.listdir(state_file().parent) if name.endswith(".tmp")]


SAVE_MANY = """
import sys
from tiktok_async.cli._ratememory import RateMemory
for n in range(8):
    RateMemory.load(f"key-{sys.argv[1]}-{n}", "http://api.example").save(100.0 + n)
"""


def test_runs_that_end_together_all_keep_their_entries() -> None:
    """Eight processes write 8 entries each at once (64: as many as the file keeps): none
    is lost to another's rewrite of the file."""
    writers = [subprocess.Popen([sys.executable, "-c", SAVE_MANY, str(p)], env=os.environ)
               for p in range(8)]
    assert [writer.wait(60) for writer in writers] == [0] * 8
    assert MAX_ENTRIES == 8 * 8
    assert len(json.loads(state_file().read_text())) == MAX_ENTRIES
    starts = {(p, n): RateMemory.load(f"key-{p}-{n}", "http://api.example").start
              for p in range(8) for n in range(8)}
    assert starts == {(p, n): 100.0 + n for p in range(8) for n in range(8)}
