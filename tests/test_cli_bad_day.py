"""`tiktok-async users` on an operator's bad day, as real subprocesses (issue 12 and the
run-stopping rows of issue 11): each test checks the exit code, the message, the time
where it matters, and what the output and errors files hold afterwards."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run, start

from tiktok_async.emulator import Emulator, Faults

Factory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def handles_file(folder: Path, count: int) -> Path:
    source = folder / "in.txt"
    source.write_text("".join(f"user{n}.bad.day\n" for n in range(count)))
    return source


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_nothing_listening_stops_fast_with_one_line_and_records_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The circuit breaker: no answer ever, connections refused -> exit 3, naming the host."""
    base_url = f"http://127.0.0.1:{closed_port()}/dev/tiktok"
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 400)), "-o",
                             str(out), "-q", base_url=base_url)
    took = time.monotonic() - started
    assert code == 3, err
    assert f"127.0.0.1:{base_url.split(':')[2].split('/')[0]}" in err
    assert "cannot reach the API" in err
    assert "--base-url" in err
    assert "ssl:default" not in err
    assert "Traceback" not in err
    assert rows(out) == []
    assert rows(tmp_path / "out.errors.jsonl") == []
    assert took < 30, f"took {took:.1f} s"


async def test_a_host_that_takes_connections_and_never_answers_stops_like_nothing_listening(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A dead load balancer or a firewall that accepts and drops: every request times out.
    Before, the run went through every input (retried 5 times each) and marked all failed,
    exit 1, and the re-run skipped them all."""
    emulator.inject("silent", count=10**9)
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 300)), "-o",
                             str(out), "-q", "--timeout", "1")
    took = time.monotonic() - started
    assert code == 3, err
    assert "nothing answers" in err
    assert "--timeout" in err
    assert "Traceback" not in err
    assert rows(out) == []
    assert rows(tmp_path / "out.errors.jsonl") == []  # nothing marked failed: a re-run asks
    assert took < 30, f"took {took:.1f} s"


async def test_wrong_stage_stops_after_the_first_answers_and_names_the_form(
    emulator: Emulator, tmp_path: Path
) -> None:
    base_url = emulator.base_url.replace("/dev/tiktok", "/prod/tiktok")
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 400)), "-o",
                             str(out), "-q", base_url=base_url)
    assert code == 3, err
    assert "base URL's path is wrong" in err
    assert "/prod/tiktok" in err
    assert "<stage>/tiktok" in err
    sent = emulator.stats().count(status=403)
    assert 1 <= sent <= 20, sent  # the adaptive start (10/s) sends a few, not all 400
    assert rows(out) == []
    assert rows(tmp_path / "out.errors.jsonl") == []


async def test_ctrl_c_while_backing_off_is_out_in_5_s_and_records_nothing_cut_short(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    emu = await tiktok_emulator_factory(upstream_latency_ms=0, faults=Faults(http_503=1.0))
    out = tmp_path / "out.jsonl"
    proc = await start(emu, "users", str(handles_file(tmp_path, 300)), "-o", str(out), "-q",
                       "--rate", "200")
    await wait_until(lambda: emu.stats().count(status=503) >= 100)
    await asyncio.sleep(0.5)  # every worker is now sleeping between retries
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    took = time.monotonic() - interrupted
    assert proc.returncode == 130, err.decode()
    assert took < 5, f"took {took:.1f} s to stop"
    assert "Traceback" not in err.decode()
    assert rows(out) == []
    assert rows(tmp_path / "out.errors.jsonl") == []  # cut short: not failed, re-run asks


async def test_second_run_after_ctrl_c_fetches_what_was_cut_short(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    emu = await tiktok_emulator_factory(upstream_latency_ms=0, faults=Faults(http_503=1.0),
                                        missing_share=0.0)
    out, source = tmp_path / "out.jsonl", handles_file(tmp_path, 50)
    proc = await start(emu, "users", str(source), "-o", str(out), "-q", "--rate", "200")
    await wait_until(lambda: emu.stats().count(status=503) >= 20)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 30)
    emu.configure(faults=Faults())
    code, _, err = await run(emu, "users", str(source), "-o", str(out), "-q")
    assert code == 0, err
    assert {row["key"] for row in rows(out)} == {f"user{n}.bad.day" for n in range(50)}


async def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(("kind", "words"), [("forbidden", "403 Forbidden"),
                                             ("quota", "429 Limit Exceeded")])
async def test_no_request_starts_after_an_aborting_answer(
    emulator: Emulator, tmp_path: Path, kind: str, words: str
) -> None:
    """Issue 11: after 20 good answers every request is refused; at --rate 5 the tasks
    already waiting for a token must not send when their turn comes."""
    emulator.inject(kind, 10**9, after=20)
    out = tmp_path / "out.jsonl"
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 200)), "-o",
                             str(out), "-q", "--rate", "5")
    assert code == 3, err
    assert words in err
    arrivals = emulator.stats().arrivals
    refused_at = min(t for t, status in arrivals if status in (403, 429))
    later = [t - refused_at for t, _ in arrivals if t > refused_at]
    assert later == [], f"{len(later)} requests arrived after the aborting answer: {later}"
    assert len(rows(out)) == 20
    assert rows(tmp_path / "out.errors.jsonl") == []


@pytest.mark.parametrize("kind", ["throttle_long", "throttle_long_date"])
async def test_retry_after_beyond_the_policy_stops_the_run_and_marks_nothing_failed(
    emulator: Emulator, tmp_path: Path, kind: str
) -> None:
    emulator.inject(kind, 10**9, after=5)
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 53)), "-o",
                             str(out), "-q")
    assert code == 3, err
    assert "asked to wait" in err
    assert " h before the next request (429 with Retry-After), until 20" in err  # hours, date
    assert rows(tmp_path / "out.errors.jsonl") == []
    assert len(rows(out)) == 5
    assert time.monotonic() - started < 20


async def test_summary_says_when_concurrency_held_the_run_back(
    tiktok_emulator_factory: Factory, tmp_path: Path
) -> None:
    """Two in flight against 300 ms answers: 6.7/s, under the adaptive rate's 10/s."""
    emu = await tiktok_emulator_factory(upstream_latency_ms=300, upstream_jitter_ms=0)
    code, _, err = await run(emu, "users", str(handles_file(tmp_path, 24)), "-o",
                             str(tmp_path / "out.jsonl"), "-q", "--concurrency", "2")
    assert code == 0, err
    assert "in flight up to 2" in err
    assert "concurrency, not the rate, held the run back" in err
    assert "raise --concurrency" in err


async def test_summary_is_quiet_about_concurrency_when_the_rate_binds(
    emulator: Emulator, tmp_path: Path
) -> None:
    code, _, err = await run(emulator, "users", str(handles_file(tmp_path, 40)), "-o",
                             str(tmp_path / "out.jsonl"), "-q", "--rate", "20")
    assert code == 0, err
    assert "held the run back" not in err


async def piped_alice(emulator: Emulator, out: Path, *args: str
                      ) -> asyncio.subprocess.Process:
    """`users -` with a pipe on stdin: one line sent, and its row written while the pipe
    stays open (the test decides what comes next)."""
    proc = await start(emulator, "users", "-", "-o", str(out), "-q", *args, stdin=b"")
    assert proc.stdin is not None
    proc.stdin.write(b"alice.pipe\n")
    await proc.stdin.drain()
    await wait_until(lambda: len(rows(out)) == 1)
    return proc


@pytest.mark.parametrize("expand", [False, True], ids=["plain", "resolve-short-links"])
async def test_a_slow_pipe_is_answered_line_by_line(
    emulator: Emulator, tmp_path: Path, expand: bool
) -> None:
    """`producer | tiktok-async users -`: a line is answered and written while the producer
    has not sent the next one (its reads wait in a thread, not in the event loop), also
    when short links are resolved first."""
    out = tmp_path / "out.jsonl"
    args = ["--resolve-short-links", "--short-link-base", emulator.short_link_base]
    proc = await piped_alice(emulator, out, *(args if expand else []))
    still_reading = proc.returncode is None  # the pipe is open
    assert still_reading
    assert proc.stdin is not None
    proc.stdin.write(b"bob.pipe\n")
    proc.stdin.close()
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert [row["key"] for row in rows(out)] == ["alice.pipe", "bob.pipe"]


async def test_ctrl_c_while_a_pipe_is_silent_stops_at_once_and_cleanly(
    emulator: Emulator, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    proc = await piped_alice(emulator, out)
    proc.send_signal(signal.SIGINT)  # the producer says nothing more, and keeps the pipe open
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    assert "Fatal Python error" not in err.decode()  # a reader thread blocked at exit
    assert "Traceback" not in err.decode()
    assert [row["key"] for row in rows(out)] == ["alice.pipe"]
