"""User input -> validated handles and video references, and the URL paths built from them.

Pure: no I/O. Every function here either returns something the API can be asked
about or raises `InvalidInputError` saying why not and what to do instead.

Accepted:

- handles: `some.handle`, `@some.handle`, spaces around, or a profile URL
  (`https://www.tiktok.com/@some.handle`, `tiktok.com/@h?lang=en`, `m.tiktok.com/@h/`);
- videos: `/@h/video/ID` and `/@h/photo/ID` URLs on tiktok.com, www.tiktok.com,
  m.tiktok.com (query and fragment ignored), or a `handle,videoId` pair.

Refused with a reason: lookalike hosts, URLs with userinfo or a port, video URL forms
without the author's handle (`/v/ID.html`, `/embed/ID`, `/embed/v2/ID`,
`tiktokv.com/share/video/ID`), and short links (`vm.`, `vt.tiktok.com`, `/t/`).
"""

from __future__ import annotations

import re
from typing import NamedTuple, NoReturn
from urllib.parse import SplitResult, unquote, urlsplit

from ._exceptions import InvalidInputError

__all__ = [
    "VideoRef",
    "handle_key",
    "make_video_ref",
    "parse_handle",
    "parse_video",
    "user_path",
    "video_path",
]

# TikTok documents handles as letters, digits, '_' and '.'; real ones start with '.'
# or '_', are all digits, or (legacy) end in '.', so only the alphabet and length count.
_HANDLE = re.compile(r"[A-Za-z0-9_.]{2,30}")
_HANDLE_CHAR = re.compile(r"[A-Za-z0-9_.]")
_HANDLE_RULE = "a handle is 2-30 letters (A-Z, a-z), digits, '_' or '.'"
# Real ids are 19 digits (a 64-bit number whose top 32 bits are the creation time). Up
# to 25 leaves room for growth past 2^64 while refusing a number no id could be.
_VIDEO_ID = re.compile(r"[0-9]{1,25}")
_VIDEO_ID_RULE = "a video id is 1-25 digits"

_MAIN_HOSTS = frozenset({"tiktok.com", "www.tiktok.com", "m.tiktok.com"})
_SHARE_HOSTS = frozenset({"tiktokv.com", "www.tiktokv.com"})
_SHORT_LINK_HOSTS = frozenset({"vm.tiktok.com", "vt.tiktok.com"})
# Pasted text often carries these around a value; str.strip() keeps the zero-width ones.
_BLANKS = " \t\r\n\f\v\u00a0\u200b\u200e\u200f\u2060\ufeff"

_EMPTY = "empty: give a TikTok handle such as 'some.handle' or a profile URL"
_SHORT_LINK = (
    "a short link: it needs a redirect to resolve, which this client does not follow; "
    "open it in a browser and use the full URL it leads to "
    "(https://www.tiktok.com/@handle/video/ID)"
)
_PAIR_FORM = "'handle,videoId' (for example 'some.handle,7301234567890123456')"


class VideoRef(NamedTuple):
    """A video the API can be asked about: its author's handle and its id.

    Make one with `parse_video` or `make_video_ref`, which validate both parts.
    """

    handle: str
    video_id: str


def parse_handle(text: str) -> str:
    """The handle in `text` (without '@', case kept), or raise `InvalidInputError`.

    `text` is a handle with or without '@' (spaces around are ignored) or a
    profile URL on tiktok.com, www.tiktok.com or m.tiktok.com.
    """
    stripped = _strip(text)
    if _looks_like_url(stripped):
        return _handle_from_url(stripped, text)
    return _checked_handle(stripped.removeprefix("@"), text)


def handle_key(handle: str) -> str:
    """The key under which handles compare (TikTok handles are case-insensitive)."""
    return handle.lower()


def parse_video(text: str) -> VideoRef:
    """The video in `text`, or raise `InvalidInputError`.

    `text` is a video URL carrying the author's handle (`/@h/video/ID`,
    `/@h/photo/ID`) or a `handle,videoId` pair.
    """
    stripped = _strip(text)
    if _looks_like_url(stripped):
        return _video_from_url(stripped, text)
    if "," in stripped:
        return _video_from_pair(stripped, text)
    raise InvalidInputError(text, f"not a video URL or a pair {_PAIR_FORM}")


def make_video_ref(handle: str, video_id: str | int) -> VideoRef:
    """A validated `VideoRef` from a handle (as `parse_handle` takes it) and an id."""
    return VideoRef(parse_handle(handle), _checked_video_id(video_id, video_id))


def user_path(handle: str) -> str:
    """`user/<handle>`, percent-encoded, relative to the base URL (no leading '/').

    `handle` must already be a bare handle (as `parse_handle` returns).
    """
    return f"user/{_encoded_handle(handle)}"


def video_path(ref: VideoRef) -> str:
    """`video/<handle>/<videoId>`, percent-encoded, relative to the base URL (no leading '/')."""
    video_id = _checked_video_id(ref.video_id, ref.video_id)
    return f"video/{_encoded_handle(ref.handle)}/{video_id}"


def _encoded_handle(handle: str) -> str:
    checked = _checked_handle(handle, handle)
    if checked.strip(".") == "":
        # '.' is unreserved, so quote() keeps it, and '..' in a path is collapsed by
        # URL libraries and servers alike: send it as %2E.
        return "%2E" * len(checked)
    # Every character the handle rule allows is unreserved (RFC 3986 2.3), so a valid
    # handle is its own percent-encoding: quote() would return it unchanged, at a cost
    # paid on every request.
    return checked


def _strip(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(text, f"expected text, got {type(text).__name__}")
    stripped = text.strip(_BLANKS)
    if not stripped:
        raise InvalidInputError(text, _EMPTY)
    return stripped


def _looks_like_url(text: str) -> bool:
    # A handle never holds '/', so anything with one is a URL (or nothing valid).
    return "/" in text


def _checked_handle(candidate: str, original: object) -> str:
    if _HANDLE.fullmatch(candidate):
        return candidate
    raise InvalidInputError(original, f"not a TikTok handle: {_handle_fault(candidate)}")


def _handle_fault(candidate: str) -> str:
    bad = next((char for char in candidate if not _HANDLE_CHAR.fullmatch(char)), None)
    if bad is not None:
        return f"{bad!r} is not allowed; {_HANDLE_RULE}"
    if len(candidate) < 2:
        return f"too short; {_HANDLE_RULE}"
    return f"{len(candidate)} characters is too long; {_HANDLE_RULE}"


def _checked_video_id(candidate: object, original: object) -> str:
    if isinstance(candidate, int) and not isinstance(candidate, bool) and candidate >= 0:
        candidate = str(candidate)
    if isinstance(candidate, str):
        stripped = candidate.strip(_BLANKS)
        if _VIDEO_ID.fullmatch(stripped):
            return stripped
    raise InvalidInputError(original, f"not a video id: {_VIDEO_ID_RULE}")


def _video_from_pair(text: str, original: str) -> VideoRef:
    fields = [field.strip(_BLANKS).strip("\"'") for field in text.split(",")]
    if len(fields) != 2:
        raise InvalidInputError(original, f"expected one pair {_PAIR_FORM}")
    handle = _checked_handle(_strip_at(fields[0], original), original)
    return VideoRef(handle, _checked_video_id(fields[1], original))


def _strip_at(field: str, original: str) -> str:
    if not field:
        raise InvalidInputError(original, f"the handle is missing; expected {_PAIR_FORM}")
    return field.removeprefix("@")


# --- URLs -----------------------------------------------------------------------------


class _UrlTarget(NamedTuple):
    """What a tiktok.com URL points at: a profile (no video id) or a video."""

    handle: str
    video_id: str | None


def _handle_from_url(text: str, original: str) -> str:
    target = _parse_url(text, original)
    if target.video_id is not None:
        raise InvalidInputError(
            original,
            f"a video URL, not a profile URL; its author's handle is {target.handle!r}",
        )
    return target.handle


def _video_from_url(text: str, original: str) -> VideoRef:
    target = _parse_url(text, original)
    if target.video_id is None:
        raise InvalidInputError(
            original, f"a profile URL, not a video URL; give a video URL or {_PAIR_FORM}"
        )
    return VideoRef(target.handle, target.video_id)


def _parse_url(text: str, original: str) -> _UrlTarget:
    parts = _split_url(text, original)
    host = parts.netloc.lower()
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    if host in _SHORT_LINK_HOSTS or (host in _MAIN_HOSTS and segments[:1] == ["t"]):
        raise InvalidInputError(original, _SHORT_LINK)
    if host in _SHARE_HOSTS:
        _refuse_share_url(segments, original)
    if host not in _MAIN_HOSTS:
        raise InvalidInputError(original, _foreign_host_reason(parts.netloc))
    return _main_host_target(segments, original)


def _foreign_host_reason(netloc: str) -> str:
    expected = "expected tiktok.com, www.tiktok.com or m.tiktok.com"
    if "@" in netloc:
        # https://tiktok.com@evil.com/ goes to evil.com: what precedes '@' is userinfo.
        host = netloc.rpartition("@")[2]
        return f"not a TikTok URL: its host is {host!r}, not what precedes '@'; {expected}"
    return f"not a TikTok URL (host {netloc!r}); {expected}"


def _split_url(text: str, original: str) -> SplitResult:
    if "://" not in text:
        text = ("https:" if text.startswith("//") else "https://") + text
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced '[' in the host
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(original, "not a TikTok URL: expected an http(s) URL")
    return parts


def _main_host_target(segments: list[str], original: str) -> _UrlTarget:
    first = segments[0] if segments else ""
    if first.startswith("@"):
        return _at_handle_target(segments, original)
    if first == "v" and len(segments) == 2:
        _refuse_without_handle(segments[1].removesuffix(".html"), original)
    if first == "embed" and len(segments) == 2:
        _refuse_without_handle(segments[1], original)
    if first == "embed" and len(segments) == 3 and segments[1] == "v2":
        _refuse_without_handle(segments[2], original)
    raise InvalidInputError(original, _NOT_A_KNOWN_PATH)


_NOT_A_KNOWN_PATH = (
    "not a TikTok profile or video URL: expected https://www.tiktok.com/@handle "
    "or https://www.tiktok.com/@handle/video/ID"
)


def _at_handle_target(segments: list[str], original: str) -> _UrlTarget:
    handle = _checked_handle(segments[0][1:], original)
    if len(segments) == 1:
        return _UrlTarget(handle, None)
    if len(segments) == 3 and segments[1] in ("video", "photo"):
        return _UrlTarget(handle, _checked_video_id(segments[2], original))
    raise InvalidInputError(original, _NOT_A_KNOWN_PATH)


def _refuse_share_url(segments: list[str], original: str) -> NoReturn:
    if len(segments) == 3 and segments[:2] == ["share", "video"]:
        _refuse_without_handle(segments[2].removesuffix(".html"), original)
    raise InvalidInputError(original, _NOT_A_KNOWN_PATH)


def _refuse_without_handle(video_id: str, original: str) -> NoReturn:
    checked = _checked_video_id(video_id, original)
    raise InvalidInputError(
        original,
        f"this URL form has no author's handle, and this API needs it; "
        f"pair the video id with its author's handle as 'handle,{checked}'",
    )
