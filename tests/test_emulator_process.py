"""`tiktok-async serve` as a real child process: prints its URL, answers, stops cleanly."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tiktok_async.emulator import Emulator, EmulatorProcess
from tiktok_async.emulator._serve import listen_problem

SERVE = [sys.executable, "-m", "tiktok_async.cli", "serve", "--port", "0"]


def get_json(url: str, key: str = "test-key") -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def serve() -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k != "TIKTOK_API_KEY"}
    with subprocess.Popen([*SERVE, "--rate", "100", "--upstream-latency-ms", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_answers_and_stops_cleanly(
    serve: subprocess.Popen[str], sig: signal.Signals
) -> None:
    assert serve.stdout is not None
    base_url = serve.stdout.readline().strip()
    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/dev/tiktok")
    status, body = get_json(f"{base_url}/user/some.handle")
    assert status == 200
    assert body["user"]["secUid"].startswith("MS4wLjABAAAA")
    assert get_json(f"{base_url}/user/some.handle", key="nope")[0] == 403
    serve.send_signal(sig)
    _, err = serve.communicate(timeout=10)
    assert serve.returncode == 0
    assert "Traceback" not in err


def test_serve_takes_its_key_from_the_environment() -> None:
    env = {**os.environ, "TIKTOK_API_KEY": "from-env"}
    with subprocess.Popen(SERVE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as proc:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        try:
            assert get_json(f"{base_url}/user/some.handle", key="from-env")[0] == 200
            assert get_json(f"{base_url}/user/some.handle", key="test-key")[0] == 403
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_serve_refuses_a_bad_option() -> None:
    done = subprocess.run([*SERVE, "--faults", "teapot=1"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert "--faults" in done.stderr


def refused(*args: str, command: Sequence[str] = SERVE) -> str:
    """The last line `serve ARGS` wrote on stderr, once it exited 2 without a traceback."""
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_serve_says_what_is_wrong_with_a_faults_spec() -> None:
    assert refused("--faults", "500=2") == (
        "tiktok-async serve: error: argument --faults: 500=2: a share is the fraction of "
        "requests that get the fault, from 0 to 1 (0.05: 5%)")


def test_serve_names_the_quota_periods_it_takes() -> None:
    assert refused("--quota-period", "fortnight") == (
        "tiktok-async serve: error: argument --quota-period: 'fortnight' is not a period: "
        "seconds (3600), or one of day, week, month")


def test_the_emulator_module_says_its_own_name_in_its_messages() -> None:
    module = [sys.executable, "-m", "tiktok_async.emulator"]
    assert refused("--port", "99999", command=module) == (
        "python -m tiktok_async.emulator: --port: must be >= 0 and <= 65535, got 99999")


def test_a_value_out_of_range_is_named_by_its_option() -> None:
    """It was named by the config's field (`quota_period: must be ...`)."""
    assert refused("--quota-period", "0") == (
        "tiktok-async serve: --quota-period: must be >= 0.001 and <= 1e+10, got 0.0")


def test_a_cpu_this_process_cannot_run_on_is_named() -> None:
    """It printed "[Errno 22] Invalid argument", exit 1."""
    assert refused("--cpu", "9999").startswith(
        "tiktok-async serve: --cpu 9999: cannot run there (Invalid argument); this process "
        "may use CPUs 0")


def test_serve_says_which_port_is_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert refused("--port", str(port)) == (
            f"tiktok-async serve: port {port} on 127.0.0.1 is in use: Address already in "
            "use; stop what listens there, or pick another --port (0 picks a free one)")


def test_serve_names_a_host_it_cannot_listen_on() -> None:
    assert refused("--host", "192.0.2.1").startswith(  # TEST-NET-1: no machine's address
        "tiktok-async serve: cannot listen on 192.0.2.1: not an address of this machine (")


def test_a_host_name_that_does_not_resolve_is_named() -> None:
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert listen_problem(error, "999.1.1.1", 8080) == (
        "cannot listen on 999.1.1.1: not an address, nor a name it can resolve (Name or "
        "service not known); --host takes 127.0.0.1, 0.0.0.0 (every interface) or an "
        "address of this machine")
    assert listen_problem(OSError(errno.EINVAL, "Invalid argument"), "::1", 80) is None


async def test_two_processes_serve_the_same_data() -> None:
    """A child process and this one: same bodies but for the save timestamps."""
    handle, video = "Same.Data", "7301234567890123456"
    cpu = min(os.sched_getaffinity(0))
    with EmulatorProcess("--key", "k", "--upstream-latency-ms", "0", cpu=cpu) as proc:
        theirs = [get_json(f"{proc.base_url}/user/{handle}", key="k")[1],
                  get_json(f"{proc.base_url}/video/{handle}/{video}", key="k")[1]]
    async with Emulator(upstream_latency_ms=0) as emu:
        user = await emu.core.store.user(handle)
        clip = await emu.core.store.video(handle, video)
    assert user is not None
    assert clip is not None
    assert strip_times(theirs) == strip_times([json.loads(user), json.loads(clip)])


def strip_times(value: Any) -> Any:
    """`value` without `createdAt` / `updatedAt` anywhere."""
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items()
                if k not in ("createdAt", "updatedAt")}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def test_emulator_process_reports_a_failed_start() -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        EmulatorProcess("--prefix", "no-slash").start()


def test_serve_reports_a_database_it_cannot_open_naming_it_and_why(tmp_path: Path) -> None:
    bad = tmp_path / "no" / "such" / "dir" / "db.sqlite3"
    assert refused("--db", str(bad)) == (
        f"tiktok-async serve: cannot open the database {bad}: the folder {bad.parent} does "
        "not exist (--db: a new file, or one an emulator made, in a folder you can write to)")
