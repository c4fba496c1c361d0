"""The `tiktok-async` command line: one parser, one sub-command per job.

Each sub-command lives in its own module and registers itself with `register(subparsers)`,
which sets `func` on its parser: a callable taking the parsed namespace, returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ._common import EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiktok-async",
        description="Enrich TikTok handles and video links in bulk, or serve an emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from ..emulator import _serve
    from . import _bench, _demo, _enrich

    _enrich.register(subparsers)
    _serve.register(subparsers)
    _demo.register(subparsers)
    _bench.register(subparsers)
    try:
        from . import _jobs
    except ImportError as exc:  # pragma: no cover - redis is an optional extra
        _register_without_redis(subparsers, exc)
    else:
        _jobs.register(subparsers)
    return parser


def _register_without_redis(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], exc: ImportError
) -> None:  # pragma: no cover - the dev extra installs redis
    """The Redis commands, saying how to install what they need."""

    def missing(args: argparse.Namespace) -> int:
        print(f"tiktok-async {args.command}: needs the redis extra ({exc}): "
              "pip install 'tiktok-async[redis]'", file=sys.stderr)
        return EXIT_USAGE

    for name in ("enqueue", "worker", "collect", "status"):
        parser = subparsers.add_parser(name, help="(needs: pip install 'tiktok-async[redis]')")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(func=missing)


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
