"""tiktok_async: a fast, dependable asyncio client for the hosted TikTok data API."""

from ._version import __version__

__all__ = [
    "__version__",
]
