"""The `tiktok-async` command line: one parser, one sub-command per job.

Each sub-command lives in its own module and registers itself with `register(subparsers)`,
which sets `func` on its parser: a callable taking the parsed namespace, returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._cli_common import EXIT_USAGE
from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiktok-async",
        description="Enrich TikTok handles and video links in bulk, or serve an emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import _demo, _enrich
    from .emulator import _serve

    _enrich.register(subparsers)
    _serve.register(subparsers)
    _demo.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    exit_code: int = func(args)
    return exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
