"""Running `tiktok-async` as a real subprocess against an emulator, and reading its files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tiktok_async.emulator import Emulator


def cli_env(emu: Emulator, key: str | None = None, base_url: str | None = None
            ) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)  # the subprocess is the product, not the test
    env.update(TIKTOK_API_KEY=key or emu.api_key, TIKTOK_API_BASE_URL=base_url or emu.base_url)
    return env


async def start(emu: Emulator, *args: str, key: str | None = None,
                stdin: bytes | None = None, cwd: Path | None = None,
                base_url: str | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiktok_async", *args, env=cli_env(emu, key, base_url), cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def run(emu: Emulator, *args: str, key: str | None = None,
              stdin: bytes | None = None, cwd: Path | None = None,
              base_url: str | None = None) -> tuple[int, str, str]:
    proc = await start(emu, *args, key=key, stdin=stdin, cwd=cwd, base_url=base_url)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rows(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends with a torn line"
    return [json.loads(line) for line in data.splitlines()]
