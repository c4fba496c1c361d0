"""The `tiktok-async` command line: one parser, one sub-command per job.

Each sub-command lives in its own module and registers itself with `register(subparsers)`,
which sets `func` on its parser: a callable taking the parsed namespace, returning an exit code.
A run imports only the module of the command it runs (`users` loads neither redis nor the
emulator): `_REGISTRARS` names each command's module, so that a command line starting with
a command's name builds the parser of that command alone. Any other (`--help`, a typo)
builds them all, so the listing and argparse's "invalid choice" name every command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from .._version import __version__
from ._common import EXIT_USAGE

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _enrich_commands(subparsers: Subparsers) -> None:
    from . import _enrich

    _enrich.register(subparsers)


def _serve_command(subparsers: Subparsers) -> None:
    from ..emulator import _serve

    _serve.register(subparsers)


def _demo_command(subparsers: Subparsers) -> None:
    from . import _demo

    _demo.register(subparsers)


def _bench_command(subparsers: Subparsers) -> None:
    from . import _bench

    _bench.register(subparsers)


def _job_commands(subparsers: Subparsers) -> None:
    try:
        from . import _jobs
    except ImportError as exc:  # pragma: no cover - redis is an optional extra
        _register_without_redis(subparsers, exc)
    else:
        _jobs.register(subparsers)


#: Each command -> what registers it (with the other commands of its module), in the order
#: of the help's listing. tests/test_cli.py checks it against the parser of all commands.
_REGISTRARS: dict[str, Callable[[Subparsers], None]] = {
    "users": _enrich_commands, "videos": _enrich_commands, "serve": _serve_command,
    "demo": _demo_command, "bench": _bench_command, "enqueue": _job_commands,
    "worker": _job_commands, "collect": _job_commands, "status": _job_commands,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone (importing only its module)."""
    parser = argparse.ArgumentParser(
        prog="tiktok-async",
        description="Enrich TikTok handles and video links in bulk, or serve an emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _REGISTRARS.get(command or "")
    for register in [chosen] if chosen else dict.fromkeys(_REGISTRARS.values()):
        register(subparsers)
    return parser


def _register_without_redis(subparsers: Subparsers, exc: ImportError
                            ) -> None:  # pragma: no cover - the dev extra installs redis
    """The Redis commands, saying how to install what they need."""

    def missing(args: argparse.Namespace) -> int:
        print(f"tiktok-async {args.command}: needs the redis extra ({exc}): "
              "pip install 'tiktok-async[redis]'", file=sys.stderr)
        return EXIT_USAGE

    for name in [name for name, register in _REGISTRARS.items() if register is _job_commands]:
        parser = subparsers.add_parser(name, help="(needs: pip install 'tiktok-async[redis]')")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(func=missing)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    exit_code: int = func(args)
    return exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
