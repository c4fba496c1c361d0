"""`tiktok-async bench`: load the API at a constant rate (or concurrency) and measure it.

`bench --rate 40 --duration 10` sends 40 requests a second for 10 s, each at its scheduled
time whatever the earlier ones are doing, and prints latency percentiles counted from
those scheduled times (no coordinated omission). `--concurrency N` runs a closed loop
instead. Inputs come from a file or are generated; `--fresh` (asked once each: the first
fetch) and `--cached` (a warm set, repeated) are reported apart. `--json` and `--plot`
write the report; `--compare a.json b.json` prints two side by side. The work is
`tiktok_async.loadtest.run_load`; this module reads options and inputs and prints.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._client import TikTokClient
from .._exceptions import TikTokError
from .._inputs import parse_handle, parse_video
from .._retry import RetryPolicy
from ._benchtable import comparison_table, report_table
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    UsageError,
    add_connection_arguments,
    api_key_from,
    check_base_url,
    network_options,
    positive_float,
    positive_int,
    run_async,
    usage_message,
)
from ._inputfile import read_inputs

DEFAULT_DURATION = 10.0
DEFAULT_WARM = 50


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` sub-command."""
    parser = subparsers.add_parser(
        "bench", help="measure the API: latency percentiles at a constant request rate",
        description="Load the API at a constant rate (an open loop: each request at its "
                    "scheduled time, latency counted from it) or a fixed concurrency (a "
                    "closed loop), and report sent, answered, the achieved rate, statuses "
                    "and latency percentiles, first fetches and cached answers apart. "
                    "Needs the bench extra: pip install 'tiktok-async[bench]'.")
    _add_load_arguments(parser)
    _add_input_arguments(parser)
    _add_output_arguments(parser)
    parser.set_defaults(func=run_bench)


def _add_load_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--rate", type=positive_float, help="requests per second, sent on schedule whatever "
        "the earlier ones are doing (an open loop)")
    add("--concurrency", type=positive_int, help="requests in flight, each sent when one is "
        "answered (a closed loop: throughput, not latency under load)")
    add("--duration", type=positive_float, help="seconds of sending "
        f"(default {DEFAULT_DURATION:g} unless --requests is given)")
    add("--requests", type=positive_int, help="requests to send in all")
    add("--timeout", type=positive_float, default=35.0,
        help="seconds for one request (default 35: API Gateway gives up at 29)")
    add("--max-retries", type=int, default=0, help="retries of a failed request (default 0: "
        "a 429 or a 5xx is reported, not retried away; a retry pauses the whole client)")
    add_connection_arguments(parser)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", metavar="INPUT", nargs="?", help="a file of handles (or video links with "
        "--kind videos), one a line, or - for stdin; default: generated handles")
    add("--kind", choices=("users", "videos"), default="users", help="default users")
    add("--fresh", action="store_true", help="inputs never asked before, each once: the "
        "API's first fetch")
    add("--cached", action="store_true", help="a warm set, asked once before the run, then "
                                              "repeated (default: both, alternating)")
    add("--warm", type=positive_int, default=DEFAULT_WARM, help="size of the warm set "
        f"(default {DEFAULT_WARM}); from a file with both groups: its first lines")


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--json", metavar="FILE", help="write the report as JSON")
    add("--plot", metavar="FILE", help="draw latency over time and by percentile (PNG); "
        "with --compare, the reports' percentile curves")
    add("--compare", nargs=2, metavar=("A.json", "B.json"),
        help="print two reports written by --json side by side (no run)")


def run_bench(args: argparse.Namespace) -> int:
    """Run the command; usage errors exit 2 with one line."""
    try:
        if args.compare:
            return _compare(args)
        return run_async(_bench(args, _plan(args)))
    except (UsageError, ValueError, OSError, ImportError) as exc:
        print(f"tiktok-async bench: {usage_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tiktok-async bench: interrupted, no report", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- what to run ------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    """run_load's keyword arguments from the options (inputs included)."""
    if (args.rate is None) == (args.concurrency is None):
        raise UsageError("give --rate (an open loop) or --concurrency (a closed loop)")
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION
    fresh, cached = _inputs(args)
    if args.plot:
        from .. import _loadplot  # noqa: F401  (no matplotlib: say so now, not after the run)
    return {"rate": args.rate, "concurrency": args.concurrency, "duration": duration,
            "requests": args.requests, "fresh": fresh, "cached": cached, "kind": args.kind}


def _inputs(args: argparse.Namespace) -> tuple[Iterator[str] | None, list[str] | None]:
    both = args.fresh == args.cached
    if args.input is None:
        if args.kind != "users":
            raise UsageError("generated inputs are handles: give a file of video links "
                             "for --kind videos")
        from ..loadtest import generated_handles

        fresh = generated_handles() if both or args.fresh else None
        cached = list(itertools.islice(generated_handles(), args.warm))
        return fresh, cached if both or args.cached else None
    lines = _read(args.input, args.kind)
    if not both:
        return (iter(lines), None) if args.fresh else (None, lines)
    if len(lines) <= args.warm:
        raise UsageError(f"{args.input} has {len(lines)} usable lines: with both groups the "
                         f"first {args.warm} (--warm) are the warm set and the rest are fresh")
    return iter(lines[args.warm:]), lines[:args.warm]


def _read(source: str, kind: str) -> list[str]:
    """The file's valid inputs; the invalid ones are counted on stderr and skipped."""
    check = parse_handle if kind == "users" else parse_video
    lines, skipped = [], 0
    for line in read_inputs(source):
        if line.problem is None and _valid(check, line.text):
            lines.append(line.text)
        else:
            skipped += 1
    if skipped:
        print(f"tiktok-async bench: skipped {skipped} invalid lines of {source}",
              file=sys.stderr)
    if not lines:
        raise UsageError(f"no usable {kind} input in {source}")
    return lines


def _valid(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except TikTokError:
        return False
    return True


# -- the run --------------------------------------------------------------------------


async def _bench(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    from ..loadtest import run_load

    client = _client(args)
    print(_intro(plan, client), file=sys.stderr)
    async with client:
        report = await run_load(client, **plan)
    data = report.to_dict()
    print(report_table(data))
    if args.json:
        report.write_json(args.json)
    if args.plot:
        report.plot(args.plot)
    if not data["status_counts"].get("200"):
        print("tiktok-async bench: no request was answered 200", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _client(args: argparse.Namespace) -> TikTokClient:
    """A client that never paces, retries only if asked, with room for the load."""
    concurrency = args.concurrency or _open_loop_room(args.rate, args.timeout)
    retry = RetryPolicy(max_attempts=args.max_retries + 1)
    check_base_url(args)
    return TikTokClient(api_key_from(args), args.base_url, rate=math.inf, retry=retry,
                        concurrency=concurrency, timeout=args.timeout,
                        adaptive_concurrency=False, **network_options(args))


def _open_loop_room(rate: float, timeout: float) -> int:
    """Slots for every request a `timeout` long stall piles up, as far as the open-file
    limit allows; a note when it does not."""
    from ..loadtest import open_loop_concurrency

    needed = math.ceil(rate * timeout) + 1
    room = open_loop_concurrency(rate, timeout)
    if room < needed:
        print(f"tiktok-async bench: the open-file limit allows {room} requests in flight, "
              f"not {needed} (rate x timeout): a stall longer than {room / rate:.1f} s "
              "closes the loop; the report says if it did", file=sys.stderr)
    return room


def _intro(plan: dict[str, Any], client: TikTokClient) -> str:
    load = (f"{plan['rate']:g} requests/s" if plan["rate"]
            else f"{plan['concurrency']} in flight")
    length = (f"{plan['duration']:g} s" if plan["duration"] is not None
              else f"{plan['requests']} requests")
    return f"tiktok-async bench: {load} for {length} against {client.base_url} ..."


# -- comparing two reports --------------------------------------------------------------


def _compare(args: argparse.Namespace) -> int:
    if args.rate or args.concurrency or args.input or args.json:
        raise UsageError("--compare reads two reports and runs nothing: give it alone "
                         "(with --plot for their percentile curves)")
    reports = [_load_report(path) for path in args.compare]
    labels = [Path(path).stem for path in args.compare]
    print(comparison_table(reports, labels))
    if args.plot:
        from ..loadtest import plot_comparison

        plot_comparison(reports, labels, args.plot)
    return EXIT_OK


def _load_report(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as source:
        data = json.load(source)
    if not isinstance(data, dict) or "latency_ms" not in data or "hdr" not in data:
        raise UsageError(f"{path} is not a report written by tiktok-async bench --json")
    return data
