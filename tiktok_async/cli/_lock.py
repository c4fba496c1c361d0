"""One run at a time per file: an OS lock (`filelock`, imported only here) on `<file>.lock`.

The lock is `flock` on Unix (`LockFileEx` on Windows): the OS drops it when the holder
exits, even by SIGKILL, so a crashed run never blocks the next. The holder writes its PID,
host and start time into the lock file once it holds the lock (filelock's `on_acquired`;
since filelock 3.30 a refused contender no longer truncates that file), and a refused
run reads them back to say who holds it. The lock files are left in place after the run
(`preserve_lock_file`): deleting one while another run waits on it would let two runs
hold "the" lock on two different files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["FileInUseError", "FileLocks", "held", "lock_path"]


class FileInUseError(Exception):
    """Another run holds the lock on an output or errors file (exit 2)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is in use by another run ({holder}): wait for that run "
                         "to end, or write to another file")
        self.path = path
        self.holder = holder


def lock_path(path: Path) -> Path:
    """The lock file of `path`: `out.jsonl` -> `out.jsonl.lock`."""
    return path.with_name(path.name + ".lock")


def _write_holder(fd: int) -> None:
    """Stamp who holds the lock into the lock file (filelock's `on_acquired` hook)."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError):  # a full disk: the lock holds, the note is missing
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder).encode())


def _holder_of(path: Path) -> str:
    try:
        holder = json.loads(path.read_bytes())
        return f"PID {int(holder['pid'])} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, TypeError, KeyError):
        return f"its PID is not written yet; see {path}"


class FileLocks:
    """The locks one run holds on its files; released together (`release`, idempotent)."""

    def __init__(self) -> None:
        self._held: list[FileLock] = []

    def take(self, path: Path) -> None:
        """Lock `path` now or raise `FileInUseError` (never waits)."""
        self._held.append(_locked(path, wait=0.0))

    def release(self) -> None:
        while self._held:
            self._held.pop().release()


@contextlib.contextmanager
def held(path: Path, seconds: float) -> Iterator[None]:
    """Hold the lock on `path` for a short read-modify-write, waiting up to `seconds` for
    another holder to finish; `FileInUseError` when it does not."""
    lock = _locked(path, wait=seconds)
    try:
        yield
    finally:
        lock.release()


def _locked(path: Path, wait: float) -> FileLock:
    """The lock on `path`, taken (waiting up to `wait` seconds; 0: one try), its holder
    stamped in; `FileInUseError` naming the other holder when it cannot be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(path), on_acquired=_write_holder, preserve_lock_file=True)
    try:
        lock.acquire(timeout=wait, blocking=wait > 0)
    except Timeout:
        raise FileInUseError(path, _holder_of(lock_path(path))) from None
    return lock
