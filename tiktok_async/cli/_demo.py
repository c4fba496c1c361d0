"""`tiktok-async demo`: the whole job on the embedded emulator, in under a minute.

Starts the emulator in-process on a free port, with a rate limit the client is not told
about and 1% faults, then enriches the bundled sample inputs (about 2,000 handles with
duplicates, invalid lines and missing users; about 300 video links) into `demo-out/`,
with the progress bar and the summary of each run.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .._client import TikTokClient
from .._kinds import KINDS
from .._models import encode_json
from ..emulator import Emulator, Faults
from ._common import EXIT_OK, positive_float, run_async
from ._enrich import EnrichRun
from ._files import OutputFiles
from ._inputfile import read_inputs

SAMPLES = {"users": "handles.txt", "videos": "videos.txt"}
ONE_PERCENT_FAULTS = Faults(http_500=0.002, http_502=0.002, http_503=0.002, http_504=0.002,
                            truncate=0.002)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="run the bundled sample job against the embedded emulator",
        description="Start the emulator (a quota the client is not told, 1% faults) and "
                    "enrich the bundled sample handles and video links into --out.",
    )
    parser.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    parser.add_argument("--quota", type=positive_float, default=150.0,
                        help="the emulator's requests per second, unknown to the client "
                             "(default 150)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; the exit code of the worse of its two runs."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl"):
        stale.unlink()  # a demo starts fresh; `users`/`videos` are the ones that resume
    return run_async(_demo(out, args.quota, quiet=args.quiet))


async def _demo(out: Path, quota: float, *, quiet: bool) -> int:
    burst = max(1, int(quota))
    async with Emulator(rate=quota, burst=burst, faults=ONE_PERCENT_FAULTS) as emulator:
        print(f"emulator at {emulator.base_url}: {quota:g} requests/s with burst {burst} "
              "(the client is not told), 1% faults, 20 ms first fetches")
        worst = EXIT_OK
        for name, sample in SAMPLES.items():
            with _sample_path(sample) as path:
                code = await _enrich(name, path, out, emulator, quiet=quiet)
            worst = max(worst, code)
    print(f"\noutputs in {out}/: " + ", ".join(_written(out)))
    return worst


def _written(out: Path) -> list[str]:
    return sorted(path.name for path in out.glob("*.jsonl"))


async def _enrich(name: str, path: Path, out: Path, emulator: Emulator, *, quiet: bool) -> int:
    kind = KINDS[name]
    print(f"\n{name}: {path.name} -> {out / (name + '.jsonl')}")
    files = OutputFiles.open(out / f"{name}.jsonl", columns=kind.columns, encode=encode_json)
    client = TikTokClient(emulator.api_key, emulator.base_url)
    with files:
        run = EnrichRun(kind, client, files, quiet=quiet)
        return await run.main(read_inputs(path))


@contextmanager
def _sample_path(name: str) -> Iterator[Path]:
    """A bundled sample input as a file on disk (it is one, unless installed zipped)."""
    with resources.as_file(resources.files("tiktok_async") / "demo_data" / name) as path:
        yield path
