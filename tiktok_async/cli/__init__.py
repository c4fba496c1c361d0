"""The `tiktok-async` command line: the application built on the library.

Bulk enrichment into files (`users`, `videos`), the demo, the emulator's `serve`, and the
Redis scale-out jobs (`enqueue`, `worker`, `collect`, `status`). It imports the library;
the library never imports it (`import tiktok_async` loads neither argparse nor rich).
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
