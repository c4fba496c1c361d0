"""Shared by the `make bench` sections: the emulator process, pinning, figures, the machine.

- `Server`: an `EmulatorProcess` pinned to `SERVER_CPU`, with the bits of its control API
  the benchmarks use (reset, stats with arrival times, CPU seconds, peak RSS).
- `pin_client()`: this process (and so its children) on `CLIENT_CPU`.
- `Figure`: one measured value beside its target, met or not.
- `run_async(coro, use_uvloop)`: one event loop per side, as a user would have.
- `machine()`: what the results were measured on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tiktok_async.emulator import EmulatorProcess

T = TypeVar("T")

SERVER_CPU, CLIENT_CPU = 0, 1
KEY = "bench-key"
ROOT = Path(__file__).resolve().parent.parent
#: Emulator options for "a fast, well-behaved API": no upstream latency, every user exists.
FAST = ("--upstream-latency-ms", "0", "--upstream-jitter-ms", "0", "--missing-share", "0")


# --- pinning and loops ---------------------------------------------------------------------


def pin_client() -> bool:
    """Pin this process to `CLIENT_CPU` (children inherit it); False where impossible."""
    try:
        os.sched_setaffinity(0, {CLIENT_CPU})
    except (AttributeError, OSError):
        return False
    return True


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


# --- the emulator ----------------------------------------------------------------------------


class Server:
    """The emulator in its own process on `SERVER_CPU`: `with Server(*args) as server:`."""

    def __init__(self, *args: str) -> None:
        self.process = EmulatorProcess("--key", KEY, *args, cpu=SERVER_CPU, start_timeout=60)

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


# --- figures -------------------------------------------------------------------------------


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


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


PACKAGES = ("tiktok-async", "aiohttp", "msgspec", "aiolimiter", "tenacity", "uvloop",
            "httpx", "pydantic", "orjson", "matplotlib")


def machine(client_uvloop: bool) -> dict[str, Any]:
    """CPU, cores, RAM, Python, package versions, event loops, date, load."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in PACKAGES},
        "client_loop": "uvloop" if client_uvloop else "asyncio",
        "emulator_loop": "uvloop" if _version("uvloop") else "asyncio",
        "pinning": f"emulator on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "git_commit": _git_commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
