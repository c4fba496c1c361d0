"""Section: `fetch_users` against a bare loop doing the same work, paired; and the ramp.

`HANDLE_COUNT` users are answered once by the emulator first (cached: the bulk case at
its cheapest, where the client's own cost shows most). Then every side is open in one
event loop and they take turns in batches of distinct handles (order reversed every
other round), as the throughput section does; per side the wall and CPU time
(`time.process_time()`, this process only) of its batches are summed:

- bare aiohttp + msgspec: 64 workers take handles from the batch, `GET`, decode with a
  reused `msgspec.json.Decoder(UserProfile)` and hand each profile to the caller (a
  list): the floor;
- `fetch_users` with the defaults (`TikTokClient(key, url)`, the adaptive rate and
  concurrency), consumed with `async for`: the judged side (>= 0.9x the bare loop's
  requests/s, <= 1.2x its CPU per request);
- `fetch_users` with `rate=math.inf, concurrency=64, adaptive_concurrency=False` (the
  bare loop's settings: the bulk path's own cost);
- `get_user` in 64 workers on the default client (the one-call path, for comparison).

The default client streams handles through `fetch_users` for `ramp_seconds` before the
rounds, from the moment it opens: answers per 0.25 s give the ramp, the time from the
start until the answers run at 90 % of the bare loop's rate (what this server serves
when nothing limits the client), and at 90 % of the client's own rate in the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from benchmarks._baselines import One, open_bare
from benchmarks._common import FAST, KEY, WORKERS, Section, Server, Tally, log, run_async
from tiktok_async import TikTokClient

BARE, FETCH, FETCH_FIXED, GET_USER = (
    "bare aiohttp+msgspec loop", "fetch_users (defaults)",
    "fetch_users (rate=inf, 64 fixed)", "get_user x 64 workers (defaults)")
HANDLE_COUNT = 20_000
RAMP_STEP = 0.25
MIN_RATE, MAX_CPU, RAMP_SHARE = 0.9, 1.2, 0.9

#: `run_batch(handles)`: one side's work on one batch.
Batch = Callable[[list[str]], Awaitable[None]]


def handles(count: int = HANDLE_COUNT) -> list[str]:
    return [f"bulk{i}.user" for i in range(count)]


def warm_handles(base_url: str, names: list[str]) -> None:
    """Have the emulator answer each of `names` once (64 at a time), so it caches them."""

    async def warm() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await _workers(await open_bare(stack, base_url, KEY), names, [])

    run_async(warm())


async def _workers(one: One, batch: list[str], into: list[object]) -> None:
    """`one(handle)` for each of `batch` by `WORKERS` workers; the answers into `into`."""
    names = iter(batch)

    async def worker() -> None:
        for name in names:
            into.append(await one(name))

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def drain(client: TikTokClient, batch: list[str], dedupe: bool = True) -> None:
    """`client.fetch_users(batch)` to the end; a failed input raises."""
    async for result in client.fetch_users(batch, dedupe=dedupe):
        if not result.ok:
            raise RuntimeError(f"{result.input}: {result.error}")


def _until(names: list[str], deadline: float) -> Iterator[str]:
    """`names` round and round until `time.perf_counter()` passes `deadline`."""
    for name in itertools.cycle(names):
        if time.perf_counter() >= deadline:
            return
        yield name


async def _ramp(client: TikTokClient, names: list[str], seconds: float) -> list[int]:
    """Answers per `RAMP_STEP` from the client's first request, for `seconds` (the input
    runs out then, and the run ends with what is in flight)."""
    counts = [0] * int(seconds / RAMP_STEP + 1)
    started = time.perf_counter()
    async for _ in client.fetch_users(_until(names, started + seconds)):
        step = int((time.perf_counter() - started) / RAMP_STEP)
        if step < len(counts):
            counts[step] += 1
    return counts


async def _sides(stack: contextlib.AsyncExitStack, base_url: str
                 ) -> tuple[dict[str, Batch], TikTokClient]:
    bare = await open_bare(stack, base_url, KEY)
    default = await stack.enter_async_context(TikTokClient(KEY, base_url))
    fixed = await stack.enter_async_context(TikTokClient(
        KEY, base_url, rate=math.inf, concurrency=WORKERS, adaptive_concurrency=False))
    sides: dict[str, Batch] = {
        BARE: lambda batch: _workers(bare, batch, []),
        FETCH: lambda batch: drain(default, batch),
        FETCH_FIXED: lambda batch: drain(fixed, batch),
        GET_USER: lambda batch: _workers(default.get_user, batch, []),
    }
    return sides, default


def _batches(names: list[str], size: int) -> Iterator[list[str]]:
    """Consecutive slices of `names` (wrapping round), each of distinct handles."""
    for start in itertools.count(0, size):
        yield [names[(start + i) % len(names)] for i in range(size)]


async def paired(base_url: str, rounds: int, batch: int, ramp_seconds: float
                 ) -> tuple[dict[str, Tally], list[int], dict[str, float]]:
    """The tallies, the default client's ramp (answers per step), and its rate and
    concurrency limit after the ramp and at the end."""
    names = handles()
    async with contextlib.AsyncExitStack() as stack:
        sides, default = await _sides(stack, base_url)
        ramp = await _ramp(default, names, ramp_seconds)
        state = {"rate_after_ramp": default.rate, "concurrency_after_ramp": default.concurrency}
        slices = _batches(names, batch)
        for name, work in sides.items():
            if name != FETCH:
                await work(next(slices))  # warm connections
        tallies = {name: Tally() for name in sides}
        for n in range(rounds):
            order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
            for name, work in order:
                todo = next(slices)
                wall, cpu = time.perf_counter(), time.process_time()
                await work(todo)
                tallies[name].add(len(todo), time.perf_counter() - wall,
                                  time.process_time() - cpu)
        return tallies, ramp, {**state, "rate_at_end": default.rate,
                               "concurrency_at_end": default.concurrency}


def ramp_time(counts: list[int], reference: float, share: float = RAMP_SHARE,
              window: int = 2) -> float | None:
    """Seconds from the start to the end of the first `window` steps whose answers ran at
    `share` x `reference` a second or more; None when never."""
    for end in range(window, len(counts) + 1):
        if sum(counts[end - window:end]) / (window * RAMP_STEP) >= share * reference:
            return end * RAMP_STEP
    return None


def _rows(tallies: dict[str, Tally], rounds: int) -> list[dict[str, Any]]:
    bare = tallies[BARE]
    bare_rate, bare_cpu = bare.requests / bare.wall, bare.cpu / bare.requests * 1e6
    rows = []
    for name, tally in tallies.items():
        rate, cpu = tally.requests / tally.wall, tally.cpu / tally.requests * 1e6
        row: dict[str, Any] = {"part": "paired", "side": name, "runs": rounds,
                               "requests": tally.requests, "rate": rate, "cpu_us": cpu,
                               "cpu_us_median_batch": sorted(tally.batches)[rounds // 2]}
        if name != BARE:
            row.update(rate_vs_bare=rate / bare_rate, cpu_vs_bare=cpu / bare_cpu)
        rows.append(row)
        log(f"  {name:34s} {rate:7,.0f} req/s {cpu:5.0f} us CPU/request")
    return rows


def _figures(section: Section, ramp: dict[str, Any]) -> None:
    by_side = {row["side"]: row for row in section.rows if row["part"] == "paired"}
    ours, fixed, bare = by_side[FETCH], by_side[FETCH_FIXED], by_side[BARE]
    section.figure("fetch_users requests/s vs the bare loop", ours["rate_vs_bare"], "x",
                   f">= {MIN_RATE}x", ours["rate_vs_bare"] >= MIN_RATE,
                   note=f"{ours['rate']:,.0f} vs {bare['rate']:,.0f} req/s")
    section.figure("fetch_users CPU per request vs the bare loop", ours["cpu_vs_bare"], "x",
                   f"<= {MAX_CPU}x", ours["cpu_vs_bare"] <= MAX_CPU,
                   note=f"{ours['cpu_us']:.0f} vs {bare['cpu_us']:.0f} us")
    section.figure("fetch_users (rate=inf, 64 fixed) vs the bare loop", fixed["rate_vs_bare"],
                   "x", "(for comparison)", None,
                   note=f"CPU {fixed['cpu_vs_bare']:.2f}x ({fixed['cpu_us']:.0f} us)")
    to_bare, to_own = ramp["to_bare_s"], ramp["to_own_s"]
    section.figure("ramp: start to 90% of the bare loop's rate",
                   ramp["seconds"] if to_bare is None else to_bare, "s", "(reported)", None,
                   note=("more than this: not reached in the ramp" if to_bare is None else
                         "") + "; to 90% of its own rate in the rounds: "
                         + ("never" if to_own is None else f"{to_own:g} s"))


def run(rounds: int, batch: int, ramp_seconds: float) -> Section:
    section = Section("bulk", "fetch_users against a bare loop doing the same work")
    log(f"bulk: {rounds} paired rounds of {batch:,} cached users a side, after a "
        f"{ramp_seconds:g} s ramp")
    names = handles()
    with Server(*FAST) as server:
        warm_handles(server.base_url, names)
        tallies, counts, state = run_async(paired(server.base_url, rounds, batch,
                                                  ramp_seconds))
    section.rows = _rows(tallies, rounds)
    by_side = {row["side"]: row for row in section.rows}
    ramp = {"part": "ramp", "side": FETCH, "seconds": ramp_seconds, "step": RAMP_STEP,
            "answers_per_step": counts,
            "bare_rate": by_side[BARE]["rate"], "own_rate": by_side[FETCH]["rate"],
            "to_bare_s": ramp_time(counts, by_side[BARE]["rate"]),
            "to_own_s": ramp_time(counts, by_side[FETCH]["rate"]), **state}
    _figures(section, ramp)
    section.rows.append(ramp)
    section.notes.append(_ramp_note(ramp))
    section.notes += [
        f"Paired: {rounds} rounds, batches of {batch:,} distinct cached handles (cycling "
        f"over {HANDLE_COUNT:,}), every side in one event loop, order reversed every other "
        "round; CPU is `time.process_time()` of this process over each batch.",
    ]
    return section


def _reached(when: float | None, seconds: float) -> str:
    return f"not reached in {seconds:g} s" if when is None else f"reached after {when:g} s"


def _ramp_note(ramp: dict[str, Any]) -> str:
    return (f"Ramp: a fresh `TikTokClient(key, url)` streaming cached handles through "
            f"`fetch_users` from its first request, for {ramp['seconds']:g} s before the "
            f"rounds; answers counted per {ramp['step']:g} s, judged on a sliding 0.5 s: "
            f"90% of the bare loop's rate ({ramp['bare_rate']:,.0f}/s) "
            + _reached(ramp["to_bare_s"], ramp["seconds"])
            + f", 90% of its own rate in the rounds ({ramp['own_rate']:,.0f}/s) "
            + _reached(ramp["to_own_s"], ramp["seconds"])
            + f". Its adaptive rate and concurrency limit after the ramp: "
            f"{ramp['rate_after_ramp']:,.0f}/s and {ramp['concurrency_after_ramp']:,}; after "
            f"the rounds: {ramp['rate_at_end']:,.0f}/s and {ramp['concurrency_at_end']:,} "
            "(the bare loop keeps 64 in flight).")
