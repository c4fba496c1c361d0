"""The rate a key ran at lately, remembered from one run of the command line to the next.

The adaptive rate starts at 10/s and doubles every half second until the first 429: about
five seconds to reach a few thousand requests a second, longer than a short job takes
(when answers come back within 7 ms it doubles every 35 round trips instead). So
a run of `users` or `videos` with the adaptive rate writes down the rate it reached, and
the next run with the same key and base URL starts there (`TikTokClient(initial_rate=)`),
as a TCP stack keeps what it learnt of a route for its next connection. From there slow
start goes on as usual: doubling until the first 429, then the quota measured.

- What is kept: the answers a second the run reached (its busiest half second, 429s not
  counted), no more than the rate in force when it ended (0.95 of a measured quota). A
  run that got no answer keeps nothing, and so does one that saw no 429 and never went
  faster than it started: held back by its input (`slow-producer | tiktok-async users -`,
  or a job of a few hundred lines), it says nothing of the key's rate (a trickle of 4/s
  replaced a measured 6,790/s, and the next run started at 4/s). Any other run replaces
  the figure.
- Where: `$XDG_STATE_HOME/tiktok-async/rates.json` (default `~/.local/state/...`), one
  entry per key and base URL, named by a SHA-256 of both: the key itself is never
  written. At most `MAX_ENTRIES`, the oldest dropped. Read, changed and written under the
  file's lock (`rates.json.lock`, `_lock.held`), written whole to a temporary file in the
  same folder and renamed over the old one: two runs that end together both keep their
  entry, and a reader never sees a torn file.
- Kept for `MAX_AGE` (a day); an older entry is ignored.
- Not read with `--rate` (a fixed rate) or `--fresh-rate` (from 10/s; the rate it reaches
  is still written for the next run).
- A state file that cannot be read (missing, not JSON, no home) counts as empty; one that
  cannot be written (read-only, full disk) costs one warning line, never the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from .._client import TikTokClient
from ._common import duration_text
from ._lock import FileInUseError, held, state_folder

__all__ = ["MAX_AGE", "MAX_ENTRIES", "PeakRate", "RateMemory", "state_file"]

MAX_AGE = 24 * 3600.0
MAX_ENTRIES = 64
#: Seconds a run waits for another that is writing the file.
LOCK_WAIT = 2.0
#: Seconds between two looks at the client's answers (the busiest such stretch is kept).
SAMPLE_EVERY = 0.5


def state_file() -> Path:
    """`$XDG_STATE_HOME/tiktok-async/rates.json`, or under `~/.local/state`."""
    return state_folder() / "rates.json"


@dataclass(frozen=True)
class RateMemory:
    """The remembered rate of one key and base URL: `start` (None: nothing kept, or too
    old) and how many seconds ago it was written."""

    name: str
    start: float | None = None
    age: float = 0.0

    @classmethod
    def load(cls, api_key: str, base_url: str, *, now: float | None = None) -> RateMemory:
        """The entry of `api_key` at `base_url`, if there is a fresh one."""
        digest = hashlib.sha256(f"{base_url.rstrip('/')}\0{api_key}".encode()).hexdigest()
        name = digest[:32]
        entry = _read_entries().get(name)
        now = time.time() if now is None else now
        if not isinstance(entry, dict):
            return cls(name)
        rate, at = entry.get("rate"), entry.get("at")
        if not (_positive(rate) and _positive(at)) or not 0 <= now - float(at) <= MAX_AGE:
            return cls(name)
        return cls(name, float(rate), now - float(at))

    def note(self) -> str | None:
        """The line a run prints when it starts from the remembered rate."""
        if self.start is None:
            return None
        return (f"starting at {self.start:,.0f} requests/s, the rate this key reached "
                f"{duration_text(self.age)} ago (--fresh-rate starts from 10/s)")

    def save(self, rate: float, *, now: float | None = None) -> str | None:
        """Write `rate` as this entry's, under the file's lock (two runs ending together
        both keep theirs); a warning to print when the file cannot be written."""
        entry = {"rate": round(rate, 3), "at": time.time() if now is None else now}
        try:
            path = state_file()
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with held(path, LOCK_WAIT):
                entries = _read_entries()
                entries[self.name] = entry
                kept = sorted(entries.items(), key=lambda item: _at(item[1]))[-MAX_ENTRIES:]
                _write_atomically(path, json.dumps(dict(kept), indent=1) + "\n")
        except (OSError, RuntimeError, FileInUseError) as exc:  # RuntimeError: no home
            return f"warning: the rate reached was not remembered ({exc})"
        return None


class PeakRate:
    """The busiest `SAMPLE_EVERY` s of a client's answers (429s not counted), sampled by a
    task of its own while a run goes: `async with PeakRate(client) as peak: ...`."""

    def __init__(self, client: TikTokClient) -> None:
        self._client = client
        self.peak = 0.0
        self._started_at = 0.0  # the client's rate when the run began
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakRate:
        self._started_at = self._client.rate
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reached(self) -> float | None:
        """The rate to remember: the peak, no more than the client's rate now; None when
        no answer came, or when no 429 came and the peak stayed under the rate the run
        began at (the input held it back: nothing learnt of the key)."""
        if self.peak <= 0:
            return None
        throttled = self._client.stats.responses.get(429, 0)
        if not throttled and self.peak < self._started_at:
            return None
        return min(self.peak, self._client.rate)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        then, answered_then = loop.time(), self._answered()
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            now, answered = loop.time(), self._answered()
            self.peak = max(self.peak, (answered - answered_then) / (now - then))
            then, answered_then = now, answered

    def _answered(self) -> int:
        stats = self._client.stats
        return sum(stats.responses.values()) - stats.responses.get(429, 0)


def _read_entries() -> dict[str, Any]:
    try:
        data = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError):  # RuntimeError: no home folder to find
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".rates-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _positive(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _at(entry: object) -> float:
    at = entry.get("at") if isinstance(entry, dict) else None
    return float(at) if _positive(at) else 0.0


