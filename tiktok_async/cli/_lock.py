"""One run at a time per file: OS locks (`filelock`, imported only here) on lock files.

A file is locked twice, so that every name it has leads to the same lock:

- by its name, resolved (`os.path.realpath`: symlinks followed): `<resolved file>.lock`,
  beside it. `out.jsonl`, `./out.jsonl` and a symlink `latest.jsonl -> out.jsonl` all lock
  `out.jsonl.lock`. This lock exists before the file does (a run that creates it), and it
  holds across hosts wherever the file system's locks do.
- by the file itself, once it exists: its device and inode, in the per-user state folder
  (`$XDG_STATE_HOME/tiktok-async/locks/<device>-<inode>.lock`, like `rates.json`). A hard
  link is another name for the same inode, in any folder, and no name-based lock can
  see it; the inode is the one thing all its names share. A run takes it before it reads
  the file, or just after it creates the file. When that folder cannot be made (no home,
  read-only), this second lock is skipped: the first still holds for every name but a
  hard link's.

Locking the output file itself instead was not chosen: on Windows a lock is mandatory and
would refuse the run's own reads and writes through its other handles, and filelock
treats the file it locks as its own (it may create, stamp or remove it).

The locks are `flock` on Unix (`LockFileEx` on Windows): the OS drops them when the holder
exits, even by SIGKILL, so a crashed run never blocks the next. The holder writes its PID,
host and start time into each lock file once it holds the lock (filelock's `on_acquired`;
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

__all__ = [
    "FileInUseError",
    "FileLocks",
    "LockFileError",
    "MissingFolderError",
    "check_folder",
    "file_lock_path",
    "held",
    "lock_path",
    "state_folder",
]


class FileInUseError(Exception):
    """Another run holds the lock on an output or errors file (exit 2)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is in use by another run ({holder}): wait for that run "
                         "to end, or write to another file")
        self.path = path
        self.holder = holder


class LockFileError(OSError):
    """The lock file of an output or errors file cannot be made, so neither can the file
    beside it (exit 2); the OS's reason in the message."""

    def __init__(self, path: Path, lock_file: Path, reason: str) -> None:
        super().__init__(f"cannot create {lock_file} (the lock file of {path}): {reason}; "
                         "write to a folder where files can be created")
        self.path = path


class MissingFolderError(FileNotFoundError):
    """The folder a run's file would go in does not exist (exit 2); it is not made."""

    def __init__(self, path: Path, folder: Path) -> None:
        super().__init__(f"cannot write {path}: the folder {folder} does not exist (make it "
                         "first, or write elsewhere)")


def check_folder(path: Path) -> None:
    """`MissingFolderError` unless the folder `path` (resolved) goes in exists. Checked
    before locking: filelock makes a lock file's missing folders, and so would have made
    the output's."""
    folder = lock_path(path).parent
    if not folder.is_dir():
        raise MissingFolderError(path, folder)


def lock_path(path: Path) -> Path:
    """The lock file of `path`'s name, resolved: `out.jsonl` -> `out.jsonl.lock`, and so
    for a symlink to `out.jsonl` (even one whose target does not exist yet)."""
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + ".lock")


def state_folder() -> Path:
    """The command line's per-user state: `$XDG_STATE_HOME/tiktok-async`, or under
    `~/.local/state` (`RuntimeError` when there is no home folder to find)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tiktok-async"


def file_lock_path(path: Path) -> Path | None:
    """The lock file of the file `path` is (its device and inode), in the per-user state
    folder, made if missing; None when `path` does not exist or the folder cannot be made."""
    try:
        found = os.stat(path)
        folder = state_folder() / "locks"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to find
        return None
    return folder / f"{found.st_dev:x}-{found.st_ino:x}.lock"


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
        self._files: set[Path] = set()  # the file locks held, by lock file

    def take(self, path: Path) -> None:
        """Lock `path` by its name and, if it exists, the file itself (`take_file`), now or
        raise `FileInUseError` (never waits)."""
        self._held.append(_locked(path, lock_path(path), wait=0.0))
        self.take_file(path)

    def take_file(self, path: Path) -> None:
        """Lock the file `path` is (a file this run just made: before, it had no inode);
        nothing when it is locked already, or missing. `FileInUseError` as `take`."""
        lock_file = file_lock_path(path)
        if lock_file is not None and lock_file not in self._files:
            self._held.append(_locked(path, lock_file, wait=0.0))
            self._files.add(lock_file)

    def release(self) -> None:
        while self._held:
            self._held.pop().release()


@contextlib.contextmanager
def held(path: Path, seconds: float) -> Iterator[None]:
    """Hold the lock on `path` for a short read-modify-write, waiting up to `seconds` for
    another holder to finish; `FileInUseError` when it does not."""
    lock = _locked(path, lock_path(path), wait=seconds)
    try:
        yield
    finally:
        lock.release()


def _locked(path: Path, lock_file: Path, wait: float) -> FileLock:
    """The lock on `path` (`lock_file`), taken (waiting up to `wait` seconds; 0: one try),
    its holder stamped in; `FileInUseError` naming the other holder when it cannot be."""
    try:
        lock = FileLock(lock_file, on_acquired=_write_holder, preserve_lock_file=True)
        lock.acquire(timeout=wait, blocking=wait > 0)
    except Timeout:
        raise _refusal(path, lock_file) from None
    except OSError as exc:
        raise LockFileError(path, lock_file, exc.strerror or str(exc)) from None
    return lock


def _refusal(path: Path, lock_file: Path) -> Exception:
    """Why the lock was not had. Another run holds it, or (no lock file: filelock takes a
    file it could not create, in a folder that exists, for one a holder just removed, and
    tries again until the time is up) its file cannot be made: creating it says why."""
    if os.path.lexists(lock_file):
        return FileInUseError(path, _holder_of(lock_file))
    try:
        os.close(os.open(lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as exc:
        return LockFileError(path, lock_file, exc.strerror or str(exc))
    return FileInUseError(path, _holder_of(lock_file))
