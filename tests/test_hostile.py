"""Nothing a server sends can hurt the client (issue 11): each hostile answer comes over HTTP
from one of the emulator's fault modes, through the library, and through the command line in
a subprocess where a run is involved."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tiktok_async import (
    APIStatusError,
    DecodeError,
    ForbiddenError,
    MalformedBodyError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RetryPolicy,
    TikTokClient,
    TransportError,
)
from tiktok_async.emulator import Emulator, existing_handle

Factory = Callable[..., Awaitable[Emulator]]
HANDLE = "some.handle"
MB = 1024 * 1024


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


def client(emu: Emulator, **options: Any) -> TikTokClient:
    options.setdefault("retry", RetryPolicy.testing())
    return TikTokClient(api_key=emu.api_key, base_url=emu.base_url, **options)


# --- a gzip bomb --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip_bomb", "gzip_bomb_chunked", "gzip_bomb_eof"])
async def test_gzip_bomb_is_a_typed_error_never_retried(emulator: Emulator, kind: str) -> None:
    emulator.inject(kind)
    async with client(emulator) as c:
        with pytest.raises(ResponseTooLargeError, match="once decoded") as caught:
            await c.get_user(HANDLE)
        assert caught.value.attempts == 1
        assert (await c.get_user(HANDLE)).user.id  # the client goes on
    assert emulator.stats().faults == {kind: 1}


# Run in a child so that its peak resident memory (VmHWM) is the client's alone.
MEMORY_PROBE = """
import asyncio, json, sys
from tiktok_async import RetryPolicy, TikTokClient

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))

async def main(base_url, key, bombs):
    async with TikTokClient(api_key=key, base_url=base_url, retry=RetryPolicy.testing()) as c:
        await c.get_user("some.handle")  # warm: imports, session, one answer
        idle = peak_kb()
        errors = []
        for _ in range(bombs):
            try:
                await c.get_user("some.handle")
            except Exception as exc:
                errors.append(type(exc).__name__)
        print(json.dumps({"idle_kb": idle, "peak_kb": peak_kb(), "errors": errors}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def run_python(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_gzip_bomb_peak_memory_stays_under_100_mb_above_the_idle_client(
    emulator: Emulator,
) -> None:
    """One bomb of each framing, 512 MB inflated each: before the fix one took 1,072 MB."""
    emulator.inject("gzip_bomb", after=1)  # the warm-up request gets a real answer
    emulator.inject("gzip_bomb_chunked")
    emulator.inject("gzip_bomb_eof")
    code, out, err = await run_python("-c", MEMORY_PROBE, emulator.base_url, emulator.api_key, "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["errors"] == ["ResponseTooLargeError"] * 3
    grown_mb = (report["peak_kb"] - report["idle_kb"]) / 1024
    print(f"gzip bomb x3: idle {report['idle_kb'] / 1024:.1f} MB, "
          f"peak {report['peak_kb'] / 1024:.1f} MB, +{grown_mb:.1f} MB")
    assert grown_mb < 100


# --- JSON nested ~1,000 deep or more ------------------------------------------------------


async def test_deep_json_in_a_200_is_a_decode_error_not_retried(emulator: Emulator) -> None:
    emulator.inject("deep_json")
    async with client(emulator) as c:
        with pytest.raises(DecodeError) as caught:
            await c.get_user(HANDLE)
    assert type(caught.value) is DecodeError
    assert (caught.value.status, caught.value.attempts) == (200, 1)


async def test_deep_json_in_a_404_body_is_a_404_failure_named_by_its_reason_phrase(
    emulator: Emulator,
) -> None:
    emulator.inject("deep_json_404")
    async with client(emulator) as c:
        with pytest.raises(APIStatusError) as caught:
            await c.get_user(HANDLE)
    assert not isinstance(caught.value, NotFoundError)  # undecodable: not the API's 404
    assert caught.value.status == 404
    assert caught.value.message.startswith("Not Found")


async def test_deep_json_in_a_429_body_is_a_throttle_and_retried(emulator: Emulator) -> None:
    emulator.inject("deep_json_429")
    async with client(emulator) as c:
        assert (await c.get_user(HANDLE)).user.id
        assert dict(c.stats.retries_by_cause) == {"throttled": 1}


# --- a 200 that is not well-formed JSON ---------------------------------------------------


async def test_a_200_that_is_not_json_is_retried_like_a_502(emulator: Emulator) -> None:
    emulator.inject("broken_json")
    emulator.inject("html_200")
    async with client(emulator) as c:
        assert (await c.get_user(HANDLE)).user.id
        assert dict(c.stats.retries_by_cause) == {"malformed": 2}


async def test_a_200_that_stays_broken_fails_after_the_policy_s_attempts(
    emulator: Emulator,
) -> None:
    emulator.inject("broken_json", count=10)
    async with client(emulator, retry=RetryPolicy.testing(max_attempts=3)) as c:
        with pytest.raises(MalformedBodyError) as caught:
            await c.get_user(HANDLE)
    assert caught.value.attempts == 3


async def test_a_well_formed_200_that_does_not_fit_is_still_not_retried(
    emulator: Emulator,
) -> None:
    async with client(emulator) as c:
        with pytest.raises(DecodeError) as caught:
            await c.get_user("broken_user")
    assert not isinstance(caught.value, MalformedBodyError)
    assert caught.value.attempts == 1


# --- an answer that is not HTTP ------------------------------------------------------------


async def test_an_answer_that_is_not_http_is_a_transport_error_and_retried(
    emulator: Emulator,
) -> None:
    """`HTTP/1.1 2OO OK` from a broken proxy: our error (aiohttp's only as its cause), and
    another attempt may reach the API."""
    emulator.inject("bad_status_line")
    async with client(emulator, retry=RetryPolicy.never()) as c:
        with pytest.raises(TransportError, match="Bad status line") as caught:
            await c.get_user(HANDLE)
    assert caught.value.attempts == 1
    emulator.inject("bad_status_line")
    async with client(emulator) as c:
        assert (await c.get_user(HANDLE)).user.id


# --- a 404 that is not the API's ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["html_404", "empty_404", "json_404"])
async def test_a_404_that_is_not_the_api_s_is_a_failure_not_not_found(
    emulator: Emulator, kind: str
) -> None:
    emulator.inject(kind)
    async with client(emulator) as c:
        with pytest.raises(APIStatusError) as caught:
            await c.get_user(HANDLE)
        assert not isinstance(caught.value, NotFoundError)
        assert caught.value.attempts == 1  # not retried at once: see _protocol
        with pytest.raises(NotFoundError):  # the API's own 404 still is definitive
            await c.get_user("missing_user")


# --- 429 with a Retry-After far away ------------------------------------------------------


@pytest.mark.parametrize(("kind", "at_least"), [("throttle_long", 99_999.0),
                                                 ("throttle_long_date", 364 * 86_400.0)])
async def test_a_far_retry_after_fails_at_once_saying_when(
    emulator: Emulator, kind: str, at_least: float
) -> None:
    emulator.inject(kind)
    async with client(emulator) as c:
        with pytest.raises(RateLimitedError) as caught:
            await c.get_user(HANDLE)
    assert caught.value.attempts == 1  # past the policy's max_retry_after
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= at_least


# --- an aborting answer after N good ones, silence ----------------------------------------


async def test_forbidden_after_n_good_answers_and_on_every_later_request(
    emulator: Emulator,
) -> None:
    emulator.inject("forbidden", count=10**9, after=3)
    async with client(emulator) as c:
        for _ in range(3):
            assert (await c.get_user(HANDLE)).user.id
        for _ in range(2):
            with pytest.raises(ForbiddenError):
                await c.get_user(HANDLE)
    assert emulator.stats().by("status") == {200: 3, 403: 2}


async def test_a_silent_server_is_a_timeout(emulator: Emulator) -> None:
    emulator.inject("silent")
    async with client(emulator, timeout=0.3, retry=RetryPolicy.never()) as c:
        with pytest.raises(RequestTimeoutError):
            await c.get_user(HANDLE)
        assert (await c.get_user(HANDLE)).user.id  # the next one is answered


# --- through the command line -------------------------------------------------------------

# The CLI in this process, as `python -m tiktok_async` runs it, printing its peak memory
# (VmHWM) last on stderr: a child's own count (its rusage would start at this process's).
CLI_WITH_PEAK = """
import atexit, runpy, sys

def report():
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    sys.stderr.write("\\npeak " + line.split()[1] + "\\n")

atexit.register(report)
sys.argv = ["tiktok-async", *sys.argv[1:]]
runpy.run_module("tiktok_async", run_name="__main__", alter_sys=True)
"""


def cli_env(emu: Emulator) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)  # the subprocess is the product, not the test
    env.update(TIKTOK_API_KEY=emu.api_key, TIKTOK_API_BASE_URL=emu.base_url)
    return env


async def users(emu: Emulator, tmp_path: Path, handles: list[str], *args: str,
                peak: bool = False) -> tuple[int, str]:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(handles) + "\n")
    head = ["-c", CLI_WITH_PEAK] if peak else ["-m", "tiktok_async"]
    code, _, err = await run_python(
        *head, "users", str(source), "-o", str(tmp_path / "users.jsonl"), "-q", *args,
        env=cli_env(emu),
    )
    return code, err


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def peak_mb(stderr: str) -> float:
    return int(stderr.rsplit("peak ", 1)[1].split()[0]) / 1024


HANDLES = [existing_handle(n) for n in range(6)]


async def test_cli_three_bombs_at_concurrency_3_are_failed_inputs_and_memory_stays_small(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Before the fix this run took 1.1 GB."""
    (tmp_path / "calm").mkdir()
    code, err = await users(emulator, tmp_path / "calm", HANDLES, "--concurrency", "3", peak=True)
    assert code == 0, err
    calm = peak_mb(err)
    emulator.inject("gzip_bomb", count=3)
    code, err = await users(emulator, tmp_path, HANDLES, "--concurrency", "3", peak=True)
    assert code == 1, err  # some inputs failed
    failed = rows(tmp_path / "users.errors.jsonl")
    assert [r["kind"] for r in failed] == ["failed"] * 3
    assert all("too large" in r["message"] and r["attempts"] == 1 for r in failed)
    assert len(rows(tmp_path / "users.jsonl")) == 3
    print(f"CLI, 3 bombs at --concurrency 3: peak {peak_mb(err):.1f} MB, calm run {calm:.1f} MB")
    assert peak_mb(err) - calm < 100


async def test_cli_records_deep_json_against_its_input_and_goes_on(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.inject("deep_json", after=2)
    code, err = await users(emulator, tmp_path, HANDLES, "--concurrency", "1")
    assert code == 1, err
    [failed] = rows(tmp_path / "users.errors.jsonl")
    assert (failed["input"], failed["kind"], failed["status"]) == (HANDLES[2], "failed", 200)
    assert "Traceback" not in err
    assert len(rows(tmp_path / "users.jsonl")) == 5
    code, err = await users(emulator, tmp_path, HANDLES, "--retry-failed")
    assert code == 0, err  # a re-run does not die at the same input
    assert len(rows(tmp_path / "users.jsonl")) == 6


async def test_cli_retries_a_200_that_is_not_json(emulator: Emulator, tmp_path: Path) -> None:
    emulator.inject("broken_json", count=2)
    emulator.inject("html_200")
    code, err = await users(emulator, tmp_path, HANDLES)
    assert code == 0, err
    assert len(rows(tmp_path / "users.jsonl")) == 6
    assert not (tmp_path / "users.errors.jsonl").exists() or not rows(
        tmp_path / "users.errors.jsonl")
    assert "retries 3" in err


async def test_cli_records_a_foreign_404_as_failed_and_retry_failed_brings_it_back(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.inject("html_404")
    emulator.inject("empty_404")
    code, err = await users(emulator, tmp_path, HANDLES, "--concurrency", "1")
    assert code == 1, err
    failed = rows(tmp_path / "users.errors.jsonl")
    assert [(r["input"], r["kind"], r["status"]) for r in failed] == [
        (HANDLES[0], "failed", 404), (HANDLES[1], "failed", 404)]
    code, err = await users(emulator, tmp_path, HANDLES, "--retry-failed")
    assert code == 0, err
    assert {r["input"] for r in rows(tmp_path / "users.jsonl")} == set(HANDLES)
