"""The emulator's SQLite database: a file on one worker thread so it never blocks the loop,
in memory on the loop itself.

sqlite3 objects must stay on the thread that made them: a file's connection is made,
used and closed on the executor's single thread. An in-memory database answers in
microseconds, less than the hop to a thread and back costs (a future each way, and the
loop and the thread taking the GIL from each other: at 1,000 first fetches a second the
hops were a fifth of the emulator's CPU), so it runs inline. Bodies are stored already
encoded (JSON text).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    handle TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS videos (
    handle TEXT NOT NULL,
    video_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (handle, video_id)
);
"""


class DatabaseOpenError(sqlite3.OperationalError):
    """The database file cannot be opened or made; says which file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open the database {path}: {reason}")
        self.path = path


def path_problem(path: str) -> str | None:
    """Why a database file at `path` cannot be opened or made, as far as the file system
    tells (None: nothing it can see; SQLite's own message is then the reason)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a folder"
    if not os.path.exists(folder):
        return f"the folder {folder} does not exist"
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    # SQLite makes `-wal` and `-shm` files beside the database: the folder must be writable.
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return "it is not readable and writable"
    return None


class Database:
    """Users and videos by key, on a file or in memory (`":memory:"`)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._inline = path == ":memory:"

    async def open(self) -> None:
        """Open the database: in memory on this thread, a file on a worker thread."""
        if self._inline:
            self._connect()
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tiktok-emulator-db")
        try:
            await self._run(self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the database (a file's on its thread, then stop the thread)."""
        if self._inline:
            self._disconnect()
            return
        if self._executor is None:
            return
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def _run(self, func: Callable[[], T]) -> T:
        if self._inline:
            return func()  # `_db()` says when it is not open
        if self._executor is None:
            raise RuntimeError("database is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def _connect(self) -> None:
        """Open the database; `DatabaseOpenError` naming the file and why when it cannot be."""
        try:
            conn = sqlite3.connect(self.path)
        except sqlite3.Error as exc:
            raise DatabaseOpenError(self.path, path_problem(self.path) or str(exc)) from exc
        try:
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise DatabaseOpenError(self.path, path_problem(self.path) or str(exc)) from exc
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def get_user(self, handle: str) -> bytes | None:
        """The stored body of user `handle` (lowercase), or None."""
        return await self._run(lambda: self._get("SELECT body FROM users WHERE handle=?", handle))

    async def get_video(self, handle: str, video_id: str) -> bytes | None:
        """The stored body of video (`handle`, `video_id`), or None."""
        sql = "SELECT body FROM videos WHERE handle=? AND video_id=?"
        return await self._run(lambda: self._get(sql, handle, video_id))

    async def add_user(self, handle: str, body: bytes, stamp: str) -> bytes:
        """Save the user unless present; return the stored body (the first one wins)."""
        sql = "INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?)"
        select = "SELECT body FROM users WHERE handle=?"
        return await self._run(lambda: self._add(sql, (handle, body.decode(), stamp, stamp),
                                                 select, (handle,)))

    async def add_video(self, handle: str, video_id: str, body: bytes, stamp: str) -> bytes:
        """Save the video unless present; return the stored body (the first one wins)."""
        sql = "INSERT OR IGNORE INTO videos VALUES (?, ?, ?, ?, ?)"
        select = "SELECT body FROM videos WHERE handle=? AND video_id=?"
        row = (handle, video_id, body.decode(), stamp, stamp)
        return await self._run(lambda: self._add(sql, row, select, (handle, video_id)))

    async def counts(self) -> tuple[int, int]:
        """How many (users, videos) are stored."""
        return await self._run(self._counts)

    async def clear(self) -> None:
        """Delete every user and video."""
        await self._run(self._clear)

    def _get(self, sql: str, *params: str) -> bytes | None:
        row = self._db().execute(sql, params).fetchone()
        return None if row is None else str(row[0]).encode()

    def _add(self, sql: str, row: tuple[str, ...], select: str, key: tuple[str, ...]) -> bytes:
        conn = self._db()
        with conn:
            conn.execute(sql, row)
        stored = conn.execute(select, key).fetchone()
        return str(stored[0]).encode()

    def _counts(self) -> tuple[int, int]:
        conn = self._db()
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        videos = conn.execute("SELECT count(*) FROM videos").fetchone()[0]
        return int(users), int(videos)

    def _clear(self) -> None:
        conn = self._db()
        with conn:
            conn.execute("DELETE FROM users")
            conn.execute("DELETE FROM videos")
