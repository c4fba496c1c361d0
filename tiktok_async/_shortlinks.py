"""TikTok's short links (`vm.tiktok.com/...`, `vt.tiktok.com/...`, `tiktok.com/t/...`) to
the full URL they redirect to. Opt-in: the client itself never follows a redirect.

`ShortLinkResolver` asks TikTok's web host for each short link and reads the `Location`
of its redirect, without fetching the page it leads to:

- It stops at the first Location the parsers take (`https://www.tiktok.com/@h/video/ID`
  or a profile) and returns it. A Location that is another short link, or a TikTok video
  link without the author's handle (`t.tiktok.com/i18n/share/video/ID`, TikTok Lite's
  target), is followed, at most `max_redirects` times in all.
- Only TikTok's hosts are asked: a start URL that is not a TikTok short link is refused,
  and a redirect to any other host is never followed (`InvalidInputError` naming it).
- It never sends the API key: it has its own `aiohttp.ClientSession` with no default
  header but its User-Agent, and no cookie jar. (The client's session carries the key as
  a default header, so it is not borrowed.)
- Its own rate limit (`rate` requests a second, 2 by default; not the API's limiter):
  TikTok's web hosts are not the API and throttle on their own. A 429 pauses it for the
  `Retry-After` or the refill time.
- Bounded: the body of an answer is never read (the status and the headers are enough);
  one request has `timeout` seconds in all; at most `max_redirects` hops.

Errors, all `TikTokError`s: `InvalidInputError` (not a short link, a host that is not
TikTok's, no such link (404/410), a redirect that leads nowhere the API can use, too many
redirects), `RateLimitedError` (429), `APIStatusError` (any other status), and the
`TransportError` family (no answer). Nothing is retried here.

aiohttp is imported here as well as in `_transport`: the transport is built around the
API's base URL and its key header, which is just what these requests must not carry.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._exceptions import (
    APIStatusError,
    ClientStateError,
    InvalidInputError,
    RateLimitedError,
)
from ._inputs import link_kind, parse_video, short_link_in
from ._limiter import RateLimiter
from ._protocol import parse_retry_after
from ._transport import _mapped, _without_secrets
from ._version import __version__

__all__ = ["DEFAULT_SHORT_LINK_RATE", "ShortLinkResolver", "resolve_short_link"]

#: Short-link requests a second, by default (TikTok's web hosts, not the API).
DEFAULT_SHORT_LINK_RATE = 2.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GONE = frozenset({404, 410})
_CACHE_SIZE = 10_000
_ONLY = "only TikTok's short links (vm.tiktok.com, vt.tiktok.com, a TikTok host's /t/) are"


class ShortLinkResolver:
    """Follows TikTok short links to the full URL; use it as `async with`.

    Args:
        rate: Requests a second to TikTok's web hosts (None: no limit). Its own limit,
            apart from any client's.
        max_redirects: Redirects followed for one link, at most.
        timeout: Seconds for one request, connection included.
        user_agent: The User-Agent header (default `tiktok-async/<version>`).
        short_link_base: A test hook: send each request to
            `{short_link_base}/{host}{path}` instead of `https://{host}{path}`
            (`Emulator.short_link_base` serves TikTok's redirects there). The links
            themselves, and the rule that only TikTok's hosts are followed, stay as they are.
    """

    def __init__(
        self,
        *,
        rate: float | None = DEFAULT_SHORT_LINK_RATE,
        max_redirects: int = 5,
        timeout: float = 15.0,
        user_agent: str | None = None,
        short_link_base: str | None = None,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be > 0 (or None for no limit)")
        if max_redirects < 1 or not timeout > 0:
            raise ValueError("max_redirects must be >= 1 and timeout > 0")
        self._rate = rate
        self._max_redirects = max_redirects
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"User-Agent": user_agent or f"tiktok-async/{__version__}"}
        self._base = None if short_link_base is None else short_link_base.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._limiter: RateLimiter | None = None
        self._closed = False
        self._cache: dict[str, str] = {}

    async def __aenter__(self) -> ShortLinkResolver:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session; the resolver cannot be used again. Idempotent."""
        session, self._session, self._closed = self._session, None, True
        if session is not None:
            await session.close()

    async def resolve(self, url: str) -> str:
        """The full URL the short link `url` (or share text holding one) leads to.

        Raises `InvalidInputError` when `url` is not a TikTok short link.
        """
        link = short_link_in(url)
        if link is None:
            raise InvalidInputError(url, _not_a_short_link(url))
        return await self._resolved(link, url)

    async def expand(self, text: str) -> str:
        """`text` with its short link resolved: the full URL when `text` is a short link
        or share text holding one; anything else unchanged, without a request."""
        link = short_link_in(text)
        return text if link is None else await self._resolved(link, text)

    def _open(self) -> None:
        if self._closed:
            raise ClientStateError("a closed ShortLinkResolver cannot be reopened")
        if self._session is None:
            self._limiter = RateLimiter(self._rate)  # inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def _resolved(self, link: str, original: str) -> str:
        cached = self._cache.get(link)
        if cached is None:
            cached = await self._follow(_absolute(link), original)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[link] = cached
        return cached

    async def _follow(self, link: str, original: str) -> str:
        current = link
        for _ in range(self._max_redirects):
            location = await self._location(current, original)
            if location is None:  # answered without a redirect: the chain ends here
                raise InvalidInputError(original, _dead_end(link, current))
            current = urljoin(current, location)
            kind = link_kind(current)
            if kind == "target":
                return current
            if kind == "other":
                raise InvalidInputError(original, _not_followed(current))
        raise InvalidInputError(
            original, f"more than {self._max_redirects} redirects (the last to {current!r})"
        )

    async def _location(self, link: str, original: str) -> str | None:
        """The Location TikTok's host answers for `link`; None for a 200."""
        session, limiter = self._session, self._limiter
        if session is None or limiter is None:
            raise ClientStateError("use the ShortLinkResolver inside 'async with'")
        if not limiter.free:
            await limiter.acquire()
        answered = False
        try:
            async with session.get(
                self._request_url(link), headers=self._headers, allow_redirects=False
            ) as resp:
                answered = True
                return self._redirect_of(resp, link, original)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, answered=answered) from _without_secrets(exc)

    def _redirect_of(
        self, resp: aiohttp.ClientResponse, link: str, original: str
    ) -> str | None:
        status, host = resp.status, urlsplit(link).hostname
        location = resp.headers.get("Location")
        if status in _REDIRECTS and location:
            return location
        if status == 200:
            return None
        if status in _GONE:
            raise InvalidInputError(original, f"no such short link: {host} answered {status}")
        if status == 429:
            raise self._throttled(resp, host)
        what = "a redirect without a Location" if status in _REDIRECTS else str(status)
        raise APIStatusError(f"{host} answered {what} to a short link", status=status)

    def _throttled(self, resp: aiohttp.ClientResponse, host: str | None) -> RateLimitedError:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
        if self._limiter is not None:
            self._limiter.on_throttled(retry_after)
        return RateLimitedError(
            f"{host} answered 429 Too Many Requests to a short link", retry_after=retry_after
        )

    def _request_url(self, link: str) -> str:
        if self._base is None:
            return link
        parts = urlsplit(link)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._base}/{parts.hostname}{parts.path or '/'}{query}"


async def resolve_short_link(
    url: str, *, rate: float | None = DEFAULT_SHORT_LINK_RATE, short_link_base: str | None = None
) -> str:
    """The full URL one TikTok short link leads to (a `ShortLinkResolver` for one call)."""
    async with ShortLinkResolver(rate=rate, short_link_base=short_link_base) as resolver:
        return await resolver.resolve(url)


def _absolute(link: str) -> str:
    if "://" in link:
        return link
    return ("https:" if link.startswith("//") else "https://") + link


def _not_a_short_link(text: str) -> str:
    if link_kind(text.strip()) == "target":
        return "not a short link: it is a full TikTok link already, nothing to resolve"
    return f"not a TikTok short link: {_ONLY} followed"


def _dead_end(start: str, current: str) -> str:
    if current == start:
        return "the short link did not redirect (its host answered 200): it may have expired"
    return f"the short link leads to {current!r}: {_parser_reason(current)}"


def _not_followed(location: str) -> str:
    reason = _parser_reason(location)
    return f"the short link leads to {location!r}, which is not followed: {reason}"


def _parser_reason(url: str) -> str:
    try:
        parse_video(url)
    except InvalidInputError as exc:
        return exc.reason
    return "not a video link"
