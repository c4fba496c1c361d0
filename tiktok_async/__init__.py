"""tiktok_async: a fast, dependable asyncio client for the hosted TikTok data API."""

import logging
import typing as _typing

from ._bulk import Result
from ._client import ClientHooks, TikTokClient
from ._exceptions import (
    APIStatusError,
    BadRequestError,
    CertificateError,
    ClientStateError,
    ConnectError,
    DecodeError,
    ForbiddenError,
    InvalidInputError,
    MalformedBodyError,
    MissingRouteError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    TikTokError,
    TransportError,
    TruncatedBodyError,
)
from ._inputs import VideoRef, parse_handle, parse_video
from ._limiter import Limiter
from ._models import Music, User, UserProfile, UserStats, Video, VideoStats
from ._retry import RetryPolicy
from ._rows import to_dict
from ._shortlinks import ShortLinkResolver, resolve_short_link
from ._stats import ClientStats
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._redis_limiter import RedisLimiter

__all__ = [
    "APIStatusError",
    "BadRequestError",
    "CertificateError",
    "ClientHooks",
    "ClientStateError",
    "ClientStats",
    "ConnectError",
    "DecodeError",
    "ForbiddenError",
    "InvalidInputError",
    "Limiter",
    "MalformedBodyError",
    "MissingRouteError",
    "Music",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitedError",
    "RedisLimiter",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "Result",
    "RetryPolicy",
    "ServerError",
    "ShortLinkResolver",
    "TikTokClient",
    "TikTokError",
    "TransportError",
    "TruncatedBodyError",
    "User",
    "UserProfile",
    "UserStats",
    "Video",
    "VideoRef",
    "VideoStats",
    "__version__",
    "parse_handle",
    "parse_video",
    "resolve_short_link",
    "to_dict",
]

# A library logs, an application decides where logs go: without this, Python's last-resort
# handler would print every retry warning to stderr of programs that never asked for it.
logging.getLogger("tiktok_async").addHandler(logging.NullHandler())


def __getattr__(name: str) -> _typing.Any:
    """`RedisLimiter` is imported on first use: it needs the optional `redis` extra."""
    if name == "RedisLimiter":
        try:
            from ._redis_limiter import RedisLimiter
        except ImportError as exc:
            raise ImportError(
                f"RedisLimiter needs the redis extra: pip install 'tiktok-async[redis]' ({exc})"
            ) from exc
        return RedisLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
