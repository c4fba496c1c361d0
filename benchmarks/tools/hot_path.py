"""The client's own CPU an input, without the network: a lab for the bulk hot path.

Real runs against the emulator move with the machine's load (2 cores, shared), so a
change of a few µs an input drowns in them. Here every side sends through a fake
transport that answers after one turn of the event loop (as a socket would, but with no
syscall and no server), with one recorded user body, so what is left is the client's own
work: the same for every run, whatever else the machine does.

Sides (each `--inputs` inputs, `--rounds` times, interleaved; median CPU µs an input, and
the difference from the bare loop):

- `bare`: 64 workers await the fake transport and decode with a reused
  `msgspec.json.Decoder(UserProfile)`, as the bare loop of `bench_bulk`;
- `get_user`: 64 workers call `client.get_user` (64 fixed, no rate limit);
- `fetch_users fixed`: `fetch_users` with `rate=math.inf, concurrency=64,
  adaptive_concurrency=False`; `... no dedupe`: the same with `dedupe=False`;
- `fetch_users adaptive rate`: the adaptive rate, 64 fixed;
- `fetch_users defaults`: `TikTokClient(key, url)` (after one run, for its concurrency).

The adaptive rate starts at 10,000,000/s (`initial_rate`), so that it never holds the
fake back: what is measured is the cost of its path, as in a cached bulk run at its
steady state, not slow start (from 10/s it would be waiting on the bucket throughout).

A real run pays several times what this lab shows for the same code (between a request
and its answer its code and data leave the CPU caches), and costs that only a real run
has are not here at all: aiohttp's timer a request, slots idle between an answer and the
next input. The spare workers of a bulk run cost here what they save there. For where
the µs go in a real run, `benchmarks.tools.real_path`.

    python -m benchmarks.tools.hot_path [--inputs 20000] [--rounds 5]
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from benchmarks._common import KEY, WORKERS, tool_parser
from benchmarks.bench_bulk import drain
from tiktok_async import TikTokClient, UserProfile
from tiktok_async._transport import RawResponse

BODY = msgspec.json.encode({
    "user": {"id": "6789", "nickname": "Bulk User", "secUid": "MS4wLjABAAAA", "id_dup": "6789",
             "profileBio": "a bio", "profilePictureUrl": "https://example.com/p.jpg",
             "isVerified": False, "isPrivateAccount": False,
             "createdAt": "2020-01-02T03:04:05Z", "updatedAt": "2024-01-02T03:04:05Z"},
    "stats": {"diggCount": 1, "followerCount": 2, "followingCount": 3, "friendCount": 4,
              "heartCount": 5, "heart": 5, "videoCount": 6},
})
HEADERS: Mapping[str, str] = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
URL = "http://127.0.0.1:9/dev/tiktok"  # never contacted


class FakeTransport:
    """Answers every GET with `BODY` after one turn of the loop."""

    async def get(self, path: str, timeout: object = None) -> RawResponse:
        await asyncio.sleep(0)
        return RawResponse(200, HEADERS, BODY)

    async def aclose(self) -> None:
        return None


_NEVER_BINDS = 10_000_000.0


async def _client(**options: object) -> TikTokClient:
    client = TikTokClient(KEY, URL, **options)  # type: ignore[arg-type]
    await client.open()
    await client._transport.aclose()
    client._transport = FakeTransport()  # type: ignore[assignment]
    return client


async def in_workers(one: Callable[[str], Awaitable[object]], names: list[str]) -> None:
    """`one(name)` for each of `names`, by `WORKERS` workers."""
    todo = iter(names)

    async def worker() -> None:
        for name in todo:
            await one(name)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def _sides(names: list[str]) -> dict[str, Callable[[], Awaitable[None]]]:
    fixed_options = {"rate": math.inf, "concurrency": WORKERS, "adaptive_concurrency": False}
    fixed = await _client(**fixed_options)
    # Started far above what the fake transport can do, as a cached bulk run is at its
    # steady state (its adaptive rate some 3x the rate it achieves): the adaptive path's
    # own cost, not slow start's waits (from 10/s the fake would be rate-limited throughout).
    adaptive_rate = await _client(concurrency=WORKERS, adaptive_concurrency=False,
                                  initial_rate=_NEVER_BINDS)
    defaults = await _client(initial_rate=_NEVER_BINDS)
    decoder, transport = msgspec.json.Decoder(UserProfile, strict=False), FakeTransport()

    async def bare(name: str) -> object:
        return decoder.decode((await transport.get(f"user/{name}")).body)

    await drain(defaults, names)  # its adaptive concurrency finds its limit
    return {
        "bare": lambda: in_workers(bare, names),
        "get_user": lambda: in_workers(fixed.get_user, names),
        "fetch_users fixed": lambda: drain(fixed, names),
        "fetch_users fixed, no dedupe": lambda: drain(fixed, names, dedupe=False),
        "fetch_users adaptive rate": lambda: drain(adaptive_rate, names),
        "fetch_users defaults": lambda: drain(defaults, names),
    }


async def measure(inputs: int, rounds: int) -> dict[str, float]:
    """Median CPU µs an input per side."""
    names = [f"bulk{i}.user" for i in range(inputs)]
    return await median_cpu(await _sides(names), inputs, rounds)


async def median_cpu(sides: dict[str, Callable[[], Awaitable[None]]], inputs: int,
                     rounds: int) -> dict[str, float]:
    """Each side's median CPU µs an input (`time.process_time()`, this process) over
    `rounds` rounds of `inputs` inputs, the sides interleaved, their order reversed every
    other round."""
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for n in range(rounds):
        for name, run in (sides.items() if n % 2 == 0 else reversed(sides.items())):
            started = time.process_time()
            await run()
            cpu[name].append((time.process_time() - started) / inputs * 1e6)
    return {name: statistics.median(values) for name, values in cpu.items()}


def main() -> None:
    parser = tool_parser(__doc__, "benchmarks.tools.hot_path")
    parser.add_argument("--inputs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.inputs, args.rounds))
    bare = figures["bare"]
    for name, value in figures.items():
        print(f"{name:30s} {value:6.2f} µs an input  ({value - bare:+5.2f} over bare)")


if __name__ == "__main__":
    main()
