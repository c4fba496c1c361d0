"""Shared by the suite's sections and the tools: the fixtures, written once.

- Pinning: `pin_client()` puts this process (and so its children) on `CLIENT_CPU`;
  `unpinned()` lifts that for a section whose processes share every core.
- The emulator: `Server`, an `EmulatorProcess` on `SERVER_CPU` with the bits of its
  control API the benchmarks use; `cpu_seconds(pid)`, `peak_rss_mb(pid)` from `/proc`.
- Redis: `redis_server()`, a throwaway `redis-server` on a free port.
- Figures: `Section` and `Figure` (one value beside its target), `median`, `interleaved`.
- `run_async(coro, use_uvloop)`, `tool_parser(doc)` (the tools' argparse preamble), `log`.

It imports the standard library and `tiktok_async` only: the memory section's and
`pool_micro`'s child processes measure their own RSS. The baselines (what a user would
write instead of the client) and the pydantic mirror of the schema, which bring aiohttp,
httpx and pydantic, are in `_baselines`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tiktok_async.emulator import EmulatorProcess

T = TypeVar("T")

SERVER_CPU, CLIENT_CPU = 0, 1
KEY = "bench-key"
WORKERS = 64  # concurrent requests, and connections in a pool
ROOT = Path(__file__).resolve().parent.parent
#: Emulator options for "a fast, well-behaved API": no upstream latency, every user exists.
FAST = ("--upstream-latency-ms", "0", "--upstream-jitter-ms", "0", "--missing-share", "0")


# --- pinning, loops, the tools' command line --------------------------------------------------


def pin_client() -> bool:
    """Pin this process to `CLIENT_CPU` (children inherit it); False where impossible."""
    try:
        os.sched_setaffinity(0, {CLIENT_CPU})
    except (AttributeError, OSError):
        return False
    return True


@contextlib.contextmanager
def unpinned() -> Iterator[None]:
    """Every core for this process and the children it starts meanwhile; then back."""
    try:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except (AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_async(coro: Coroutine[Any, Any, T], use_uvloop: bool = False) -> T:
    """Run `coro` in a new event loop (uvloop's when asked)."""
    if not use_uvloop:
        return asyncio.run(coro)
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def tool_parser(doc: str | None, module: str) -> argparse.ArgumentParser:
    """A tool's parser: `python -m MODULE`, its docstring as the help text."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the emulator ------------------------------------------------------------------------------


class Server:
    """The emulator in its own process on `SERVER_CPU` (`cpu=None`: not pinned), answering
    `KEY`: `with Server(*args) as server:`."""

    def __init__(self, *args: str, cpu: int | None = SERVER_CPU) -> None:
        self.process = EmulatorProcess("--key", KEY, *args, cpu=cpu, start_timeout=60)

    def __enter__(self) -> Server:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.close()

    @property
    def base_url(self) -> str:
        return self.process.base_url

    @property
    def pid(self) -> int:
        pid = self.process.pid
        if pid is None:
            raise RuntimeError("the emulator is not running")
        return pid

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.process.url}/_emulator/{path}", data=data)
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def reset(self) -> None:
        """Forget counts, arrival times and buckets (the cached data stays)."""
        self._call("reset", {})

    def stats(self, arrivals: int = 0) -> dict[str, Any]:
        """`GET /_emulator/stats?arrivals=N`."""
        return dict(self._call(f"stats?arrivals={arrivals}"))

    def arrivals(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, int]]:
        """(time.time() at arrival, status) of the kept requests in [since, until]."""
        kept = self.stats(arrivals=100_000)["arrivals"]
        return [(t, s) for t, s in kept if since <= t <= until]

    def by_status(self) -> dict[int, int]:
        return {int(s): n for s, n in self.stats()["by_status"].items()}

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def warm(self, handles: Sequence[str]) -> None:
        """Fetch `handles` once so later lookups are answered from the emulator's cache."""
        for handle in handles:
            request = urllib.request.Request(
                f"{self.base_url}/user/{handle}", headers={"x-api-key": KEY}
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of process `pid`, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- Redis -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway `redis-server` (a free port, a temp dir, no saving): its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--dir", directory], stdout=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


# --- figures -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Summed wall and CPU seconds of one side's batches."""

    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    batches: list[float] = field(default_factory=list)  # CPU us/request per batch

    def add(self, requests: int, wall: float, cpu: float) -> None:
        self.requests += requests
        self.wall += wall
        self.cpu += cpu
        self.batches.append(cpu / requests * 1e6)


@dataclass
class Figure:
    """One measured value beside its target; `met` is None for a figure with no target."""

    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Section:
    """What one benchmark produced: its figures, detail rows, chart, notes."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    command: str = ""
    measured_utc: str = ""

    def figure(self, name: str, value: float, unit: str, target: str = "",
               met: bool | None = None, note: str = "") -> Figure:
        fig = Figure(self.title, name, value, unit, target, met, note)
        self.figures.append(fig)
        return fig

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["figures"] = [f.as_dict() for f in self.figures]
        return data


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def interleaved(sides: Sequence[T], runs: int) -> Iterator[tuple[int, T]]:
    """(run number, side) for `runs` rounds over `sides`, every other round reversed."""
    for n in range(runs):
        for side in sides if n % 2 == 0 else list(reversed(sides)):
            yield n, side
