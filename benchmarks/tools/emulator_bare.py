"""A minimal aiohttp server, for scale: `wrk` against it shows the HTTP stack's ceiling.

    python benchmarks/tools/emulator_bare.py [--port 0] [--cpu N] [--no-uvloop] [--low-level]

Prints its base URL (same path layout as the emulator) and serves one fixed JSON body.
`emulator_wrk` starts it by its path; it imports nothing of `benchmarks`, so that the
server measured carries only aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from tiktok_async.emulator._serve import pin, run_loop

BODY = b'{"user":{"id":"7513616802201315134"},"stats":{"followerCount":24}}' * 9


async def handler(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def low_level_handler(request: web.BaseRequest) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def serve(port: int, low_level: bool) -> None:
    runner: web.BaseRunner
    if low_level:  # aiohttp's web.Server: no Application, no router (as the emulator)
        runner = web.ServerRunner(web.Server(low_level_handler, access_log=None))
    else:
        app = web.Application()
        app.router.add_get("/dev/tiktok/user/{handle}", handler)
        runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/dev/tiktok", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, action="append")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--low-level", action="store_true", help="web.Server, no router")
    args = parser.parse_args()
    if args.cpu:
        pin(args.cpu)
    run_loop(serve(args.port, args.low_level), use_uvloop=not args.no_uvloop)


if __name__ == "__main__":
    main()
