"""The CLI section's baseline: a bare aiohttp + msgspec loop that writes JSON lines.

    python -m benchmarks._bare_jsonl INPUT OUTPUT BASE_URL KEY

What a user would write instead of `tiktok-async users INPUT -o OUTPUT`: 64 workers
(one pool of 64 connections) read the input file's lines, `GET /user/{handle}` each,
decode the body with a reused `msgspec.json.Decoder(UserProfile)` and write one line per
input (`{"input", "key", "user", "stats"}`, encoded by a reused `msgspec.json.Encoder`)
to OUTPUT through a buffered file. No input validation, no limits, no retries, no
resume, no lock: the floor. It imports aiohttp, msgspec and the schema's `UserProfile`
only. Its CPU is read by the parent from the process's resource usage.
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO

import aiohttp
import msgspec

from tiktok_async import UserProfile

WORKERS = 64


class Line(msgspec.Struct):
    """One output line: the input as given, its key, the answer."""

    input: str
    key: str
    user: object
    stats: object


async def _run(inputs: list[str], out: IO[bytes], base_url: str, key: str) -> None:
    decoder = msgspec.json.Decoder(UserProfile)
    encoder = msgspec.json.Encoder()
    lines = iter(inputs)
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": key}) as http:

        async def worker() -> None:
            for text in lines:
                handle = text.lstrip("@")
                async with http.get(f"{base_url}/user/{handle}") as resp:
                    body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{handle}: status {resp.status}")
                profile = decoder.decode(body)
                out.write(encoder.encode(Line(text, handle.lower(), profile.user,
                                              profile.stats)) + b"\n")

        await asyncio.gather(*(worker() for _ in range(WORKERS)))


def main(argv: list[str]) -> None:
    source, target, base_url, key = argv
    with open(source, encoding="utf-8") as lines:
        inputs = [line.strip() for line in lines if line.strip()]
    with open(target, "wb") as out:
        asyncio.run(_run(inputs, out, base_url, key))


if __name__ == "__main__":
    main(sys.argv[1:])
