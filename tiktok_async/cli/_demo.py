"""`tiktok-async demo`: the whole job on the embedded emulator, in under a minute.

Starts the emulator in-process on a free port, with a rate limit the client is not told
about and 1% faults, then enriches the bundled sample inputs (about 2,000 handles with
duplicates, invalid lines and missing users; about 300 video links) into `demo-out/`,
with the progress bar and the summary of each run.

The demo writes only into a folder of its own: `--out` must be new, empty, or a folder an
earlier demo made (it holds the marker file `.tiktok-async-demo`). A folder holding
anything else is refused, so `demo --out .` never touches the user's files. Each run
starts afresh: it empties its own four files (`users.jsonl`, `videos.jsonl` and their
`.errors.jsonl`), under their locks, and deletes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .._client import TikTokClient
from .._kinds import KINDS
from .._models import encode_json
from ..emulator import Emulator, Faults
from ..emulator._profiles import PROFILES, profile_names
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
    positive_float,
    run_async,
    usage_message,
)
from ._enrich import EnrichRun
from ._files import OutputFiles, OutputWriteError, default_errors_path
from ._inputfile import read_inputs
from ._lock import FileInUseError

#: The service fetches an unseen user from TikTok first: seconds, heavy-tailed.
DEMO_LATENCY = "service"

SAMPLES = {"users": "handles.txt", "videos": "videos.txt"}
ONE_PERCENT_FAULTS = Faults(http_500=0.002, http_502=0.002, http_503=0.002, http_504=0.002,
                            truncate=0.002)
#: The file that marks a folder as the demo's own.
MARKER = ".tiktok-async-demo"


class DemoFolderError(ValueError):
    """`--out` names a folder the demo did not make and that holds other files."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="run the bundled sample job against the embedded emulator",
        description="Start the emulator (a quota the client is not told, 1% faults) and "
                    "enrich the bundled sample handles and video links into --out.",
    )
    parser.add_argument("--out", default="demo-out",
                        help="a folder of the demo's own: new, empty, or made by an earlier "
                             "demo (default demo-out)")
    parser.add_argument("--quota", type=positive_float, default=150.0,
                        help="the emulator's requests per second, unknown to the client "
                             "(default 150)")
    parser.add_argument("--latency", choices=profile_names(), default=DEMO_LATENCY,
                        help="the emulator's first-fetch latency (default service: median "
                             "1.5 s, p99 10 s, as the real service fetching an unseen user)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; the exit code of the worse of its two runs."""
    out = Path(args.out)
    try:
        claim_folder(out)
        return run_async(_demo(out, args.quota, args.latency, quiet=args.quiet))
    except (DemoFolderError, FileInUseError, OSError) as exc:
        print(f"tiktok-async demo: {usage_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OutputWriteError as exc:
        print(f"tiktok-async demo: {exc}", file=sys.stderr)
        return EXIT_WRITE_FAILED


def claim_folder(out: Path) -> None:
    """Make `out` the demo's folder, or check it is one; refuse a folder with other files."""
    if (out / MARKER).is_file():
        return
    if out.exists() and not out.is_dir():
        raise DemoFolderError(f"{out} is a file: pass --out with a new folder's name")
    others = sorted(path.name for path in out.iterdir()) if out.exists() else []
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        older = set(others) <= _demo_names(out)
        raise DemoFolderError(
            f"{out} holds files the demo did not write ({shown}): the demo writes only into "
            "a folder of its own; pass --out with a new folder's name (default demo-out)"
            + (f", or remove {out} if an older demo made it" if older else ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "This folder holds the outputs of `tiktok-async demo`. A demo run here empties "
        "users.jsonl, videos.jsonl and their .errors.jsonl files, and touches nothing else.\n",
        encoding="utf-8")


def demo_files(out: Path) -> list[Path]:
    """The files the demo writes in `out` (besides their `.lock` files and the marker)."""
    outputs = [out / f"{name}.jsonl" for name in SAMPLES]
    return sorted(outputs + [default_errors_path(path) for path in outputs])


def _demo_names(out: Path) -> set[str]:
    names = {path.name for path in demo_files(out)}
    return names | {name + ".lock" for name in names}


async def _demo(out: Path, quota: float, latency: str, *, quiet: bool) -> int:
    burst = max(1, int(quota))
    async with Emulator(rate=quota, burst=burst, faults=ONE_PERCENT_FAULTS,
                        latency_profile=latency) as emulator:
        profile = PROFILES[latency]
        print(f"emulator at {emulator.base_url}: {quota:g} requests/s with burst {burst} "
              "(the client is not told), 1% faults, first fetches as the "
              f"{latency!r} profile (median {profile.median_ms / 1000:g} s, p99 "
              f"{profile.p99_ms / 1000:g} s; cached answers at once)")
        worst = EXIT_OK
        for name, sample in SAMPLES.items():
            with _sample_path(sample) as path:
                code = await _enrich(name, path, out, emulator, quiet=quiet)
            worst = max(worst, code)
    print(f"\noutputs in {out}/: " + ", ".join(path.name for path in demo_files(out)))
    return worst


async def _enrich(name: str, path: Path, out: Path, emulator: Emulator, *, quiet: bool) -> int:
    kind = KINDS[name]
    print(f"\n{name}: {path.name} -> {out / (name + '.jsonl')}")
    files = OutputFiles.open(out / f"{name}.jsonl", columns=kind.columns, encode=encode_json,
                             fresh=True)
    client = TikTokClient(emulator.api_key, emulator.base_url)
    with files:
        run = EnrichRun(kind, client, files, quiet=quiet)
        return await run.main(read_inputs(path))


@contextmanager
def _sample_path(name: str) -> Iterator[Path]:
    """A bundled sample input as a file on disk (it is one, unless installed zipped)."""
    with resources.as_file(resources.files("tiktok_async") / "demo_data" / name) as path:
        yield path
