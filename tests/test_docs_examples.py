"""Every Python example in `README.md` and `docs/*.md` runs against a real emulator.

One test per fenced block, named `<file>:<n>` (n counts that file's ```python blocks from
1), so a broken example names itself. The conventions (also in `docs/CONTRIBUTING.md`):

- ```python : a complete program, run as a script (`__name__ == "__main__"`), so write
  `asyncio.run(main())`, not a top-level `await`. It reads the emulator's address from
  `TIKTOK_API_KEY` and `TIKTOK_API_BASE_URL`, as a user's program reads the real API's,
  and runs in an empty temporary directory.
- ```python pytest : a test module for users' own code; it is written to a file and run
  with pytest in a subprocess (one for all such blocks; the `tiktok_emulator` fixture
  comes from our plugin), and every test in it must pass.
- ```python pending : describes code that has not landed yet. While a name it imports
  from `tiktok_async` (or the pytest plugin a `pytest` block needs) is missing, the test
  is skipped and says what it waits for; once everything exists it runs like any other.
- ```python no-run : a fragment (a signature, an excerpt); never run. Keep it rare.
- ```console / ```sh : shell sessions; not run.

Also: every `$ tiktok-async SUBCOMMAND --option` line of a console block, and every
`--option` in backticks under a sub-command's heading of `docs/cli.md`, names a
sub-command and options that exist (skipped while the sub-command is still landing), and
the site builds with `mkdocs build --strict`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from xml.etree import ElementTree

import pytest

from tiktok_async.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS = frozenset({"no-run", "pending", "pytest"})
PLUGIN = "tiktok_async.emulator.pytest_plugin"
EXAMPLE_TIMEOUT = 20  # seconds; a hanging example fails instead of hanging the suite

# A fence opening: backticks or tildes, then the info string (language and flags).
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    """One ```python block of a Markdown file."""

    path: Path
    number: int  # 1-based among the file's python blocks
    line: int  # 1-based line of the opening fence
    flags: frozenset[str]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.number}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        words = opening["info"].strip().lstrip(".").split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
        ):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        if words and words[0] == "python":
            flags = frozenset(words[1:])
            unknown = flags - FLAGS
            if unknown:
                raise ValueError(f"{path}:{i + 1}: unknown flag(s) {sorted(unknown)}")
            number = len(blocks) + 1
            blocks.append(Block(path, number, i + 1, flags, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if "no-run" not in block.flags]


def missing_names(block: Block) -> list[str]:
    """What a block imports from `tiktok_async` that does not exist (yet)."""
    missing: list[str] = []
    if "pytest" in block.flags and not _importable(PLUGIN):
        missing.append(PLUGIN)
    for node in ast.walk(ast.parse(block.code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tiktok_async"):
            module = node.module or ""
            if not _importable(module):
                missing.append(module)
                continue
            loaded = importlib.import_module(module)
            missing += [f"{module}.{a.name}" for a in node.names if not hasattr(loaded, a.name)]
        elif isinstance(node, ast.Import):
            missing += [
                a.name
                for a in node.names
                if a.name.startswith("tiktok_async") and not _importable(a.name)
            ]
    return missing


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# --- the emulator the examples talk to --------------------------------------------------


class BackgroundEmulator:
    """An `Emulator` served from its own thread and event loop.

    The examples call `asyncio.run()` themselves, so the emulator cannot share their loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator = Emulator()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundEmulator:
        self._thread.start()
        self._call(self.emulator.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._call(self.emulator.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def reset(self) -> None:
        """Forget counts, injected faults and buckets between examples."""

        async def reset() -> None:
            self.emulator.reset()

        self._call(reset())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


@pytest.fixture(scope="module")
def background_emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator() as served:
        yield served


class ExampleTimeout(Exception):
    """An example ran longer than `EXAMPLE_TIMEOUT`."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise ExampleTimeout(f"example still running after {EXAMPLE_TIMEOUT} s")


# --- the tests ----------------------------------------------------------------------------


def test_every_doc_file_is_scanned() -> None:
    """The docs pages exist and hold examples (an empty scan would pass vacuously)."""
    assert (ROOT / "docs" / "index.md").exists()
    assert len(RUN_BLOCKS) >= 5


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda block: block.id)
def test_doc_example_runs(
    block: Block,
    background_emulator: BackgroundEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if "pending" in block.flags:
        missing = missing_names(block)
        if missing:
            pytest.skip(f"pending: waits for {', '.join(missing)}")
    emulator = background_emulator.emulator
    background_emulator.reset()
    monkeypatch.setenv("TIKTOK_API_KEY", emulator.api_key)
    monkeypatch.setenv("TIKTOK_API_BASE_URL", emulator.base_url)
    monkeypatch.chdir(tmp_path)
    where = f"{block.path.relative_to(ROOT)}:{block.line}"
    if "pytest" in block.flags:
        run_as_pytest(block, request.getfixturevalue("pytest_blocks"), where)
    else:
        run_as_script(block, where)


def run_as_script(block: Block, where: str) -> None:
    """Run the block as `__main__`, with a deadline."""
    code = compile(block.code, f"<{where}>", "exec")
    namespace = {"__name__": "__main__", "__file__": where}
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(EXAMPLE_TIMEOUT)
    try:
        exec(code, namespace)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class PytestBlocks:
    """Every runnable `pytest` block, run by one pytest subprocess (it costs seconds to start).

    Each block becomes `test_block_<i>.py`; `outcome(block)` is what its tests did.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[Block, str] = {}
        self.outcomes: dict[str, list[str]] | None = None
        self.output = ""

    def outcome(self, block: Block) -> list[str]:
        """One line per test of the block: `passed name`, or `failed name: details`."""
        if self.outcomes is None:
            self._run()
        assert self.outcomes is not None
        return self.outcomes.get(self.files[block], [])

    def _run(self) -> None:
        blocks = [b for b in RUN_BLOCKS if "pytest" in b.flags and not missing_names(b)]
        for i, block in enumerate(blocks):
            name = f"test_block_{i}"
            (self.folder / f"{name}.py").write_text(block.code, encoding="utf-8")
            self.files[block] = name
        report = self.folder / "report.xml"
        env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider",
             "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
             "--rootdir", str(self.folder), f"--junitxml={report}", str(self.folder)],
            cwd=self.folder, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        self.output = result.stdout + result.stderr
        self.outcomes = {}
        if not report.exists():
            return
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            module = case.get("classname", "").rpartition(".")[2] or case.get("classname", "")
            problems = [c for c in case if c.tag in ("failure", "error", "skipped")]
            line = f"passed {case.get('name')}"
            if problems:
                details = "\n".join(f"{p.get('message') or ''}\n{p.text or ''}" for p in problems)
                line = f"{problems[0].tag} {case.get('name')}: {details}"
            self.outcomes.setdefault(module, []).append(line)


@pytest.fixture(scope="module")
def pytest_blocks(tmp_path_factory: pytest.TempPathFactory) -> PytestBlocks:
    return PytestBlocks(tmp_path_factory.mktemp("pytest_blocks"))


def run_as_pytest(block: Block, runs: PytestBlocks, where: str) -> None:
    """The block's tests, run by pytest (with our plugin) in a subprocess, all passed."""
    outcome = runs.outcome(block)
    assert outcome, f"{where}: pytest ran no test of this block\n{runs.output}"
    failed = [line for line in outcome if not line.startswith("passed ")]
    assert not failed, f"{where}: " + "\n".join(failed)


# --- command lines in console blocks -----------------------------------------------------


def documented_commands() -> dict[str, set[str]]:
    """`{sub-command: {--options}}` from every `$ tiktok-async ...` line of the docs."""
    commands: dict[str, set[str]] = {}
    for path in DOC_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.strip().split()
            if len(words) >= 3 and words[:2] == ["$", "tiktok-async"]:
                options = {w.split("=")[0].strip("[]") for w in words[3:]}
                commands.setdefault(words[2], set()).update(
                    o for o in options if o.startswith("--")
                )
    return commands


def cli_page_options() -> dict[str, set[str]]:
    """`{sub-command: {--options}}` named in backticks under each sub-command heading of cli.md."""
    found: dict[str, set[str]] = {}
    commands: list[str] = []
    for line in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            commands = re.findall(r"`([a-z]+)`", line)
        for command in commands:
            found.setdefault(command, set()).update(re.findall(r"`(--[a-z][a-z-]*)", line))
    return found


DOCUMENTED_COMMANDS = documented_commands()
for _command, _options in cli_page_options().items():
    DOCUMENTED_COMMANDS.setdefault(_command, set()).update(_options)


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    from tiktok_async.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize("command", sorted(DOCUMENTED_COMMANDS))
def test_documented_command_line_exists(command: str) -> None:
    """A documented `tiktok-async` sub-command and its options are real."""
    parsers = _subcommand_parsers()
    if command not in parsers:
        pytest.skip(f"pending: waits for the `tiktok-async {command}` sub-command")
    known = {o for action in parsers[command]._actions for o in action.option_strings}
    unknown = DOCUMENTED_COMMANDS[command] - known
    assert not unknown, f"documented options of `tiktok-async {command}` it lacks: {unknown}"


def test_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes: no broken link, no bad docstring, no missing page."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").exists()
