"""Count the package's function frames one handle passes through `tiktok-async users`.

    python scripts/handle_path.py            # per-handle calls by file, and the two stacks

Runs the command line in this process against an emulator in a child process, with a
profile hook that counts every call of a function of the package (the emulator excluded).
The count for 20 handles minus the count for 10, divided by 10, is what one more handle
costs in frames: set-up (the parser, the client, the files) cancels out. It also prints
the stack (package frames only) at the moment the request is handed to aiohttp and at the
moment the result is written: the path of ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import tiktok_async
from tiktok_async.emulator import EmulatorProcess

PACKAGE = str(Path(tiktok_async.__file__).parent)
EMULATOR = os.path.join(PACKAGE, "emulator")
SEND_AT = ("_transport.py", "get")
WRITE_AT = ("_files.py", "write_ok")


def ours(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return name.startswith(PACKAGE) and not name.startswith(EMULATOR)


def where(frame: FrameType) -> str:
    code = frame.f_code
    qualname = getattr(code, "co_qualname", code.co_name)  # 3.11+
    return f"{os.path.relpath(code.co_filename, PACKAGE)}:{qualname}"


def package_stack(frame: FrameType | None) -> list[str]:
    stack = []
    while frame is not None:
        if ours(frame):
            stack.append(where(frame))
        frame = frame.f_back
    return stack[::-1]


class Recorder:
    """A `sys.setprofile` hook: counts package calls; keeps the first stack at two points."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.stacks: dict[str, list[str]] = {}

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call" or not ours(frame):
            return
        self.calls[where(frame)] += 1
        point = (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name)
        for label, at in (("send", SEND_AT), ("write", WRITE_AT)):
            if point == at and label not in self.stacks:
                self.stacks[label] = package_stack(frame)


def run(count: int, base_url: str, folder: str) -> Recorder:
    from tiktok_async.cli import main

    source = os.path.join(folder, f"in{count}.txt")
    Path(source).write_text("".join(f"user_{count}_{n}\n" for n in range(count)))
    argv = ["users", source, "-o", os.path.join(folder, f"out{count}.jsonl"), "-q",
            "--api-key", "test-key", "--base-url", base_url, "--rate", "1000"]
    recorder = Recorder()
    sys.setprofile(recorder)
    try:
        code = main(argv)
    finally:
        sys.setprofile(None)
    assert code == 0, f"users exited {code}"
    return recorder


def main() -> None:
    with EmulatorProcess("--missing-share", "0") as emulator, \
            tempfile.TemporaryDirectory() as folder:
        run(5, emulator.base_url, folder)  # warm up: imports, first-use caches
        small = run(10, emulator.base_url, folder)
        large = run(20, emulator.base_url, folder)
    per_handle = {name: (large.calls[name] - small.calls[name]) / 10
                  for name in large.calls}
    per_handle = {name: n for name, n in per_handle.items() if n > 0}
    files: dict[str, float] = {}
    for name, n in per_handle.items():
        files[name.split(":")[0]] = files.get(name.split(":")[0], 0.0) + n
    entered = [name for name, n in per_handle.items() if n >= 0.9]
    print(f"calls per handle: {sum(per_handle.values()):.1f} (coroutine resumes count as "
          f"calls) in {len(files)} files; {len(entered)} functions entered once or more")
    for name, n in sorted(files.items(), key=lambda item: -item[1]):
        print(f"  {n:6.1f}  {name}")
    for name, n in sorted(per_handle.items(), key=lambda item: -item[1]):
        print(f"  {n:6.1f}  {name}")
    for label, stack in large.stacks.items():
        print(f"stack at {label} ({len(stack)} package frames):")
        for frame in stack:
            print(f"  {frame}")


if __name__ == "__main__":
    main()
