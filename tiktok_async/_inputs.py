"""User input -> validated handles and video references, and the URL paths built from them.

Pure: no I/O. Every function here either returns something the API can be asked
about or raises `InvalidInputError` saying why not and what to do instead.

Accepted:

- handles: `some.handle`, `@some.handle`, spaces around, or a profile URL
  (`https://www.tiktok.com/@some.handle`, `tiktok.com/@h?lang=en`, `m.tiktok.com/@h/`);
- videos: `/@h/video/ID` and `/@h/photo/ID` URLs on TikTok's hosts (query and fragment
  ignored), or a `handle,videoId` pair;
- TikTok's share text pasted whole ("Check out ...'s video! #TikTok > https://..."):
  the one link in it is taken out of the words around it.

Refused with a reason that names the real problem: hosts that are not TikTok's
(lookalikes, a user name before '@'), a port; links that carry no handle (`/v/ID.html`,
`/embed/ID`, `/embed/v2/ID`, `/player/v1/ID`, `/share/video/ID`,
`t.tiktok.com/i18n/share/video/ID`), an empty handle or a secUid where the handle goes;
profiles by numeric id (`/share/user/UID`, `m.tiktok.com/h5/share/usr/UID.html`); short
links (`vm.`, `vt.tiktok.com`, `/t/` on any TikTok host), which need a redirect
(`ShortLinkResolver` follows it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, NamedTuple, NoReturn, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from ._exceptions import InvalidInputError

__all__ = [
    "VideoRef",
    "handle_key",
    "link_kind",
    "make_video_ref",
    "parse_handle",
    "parse_video",
    "short_link_in",
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

# TikTok's own hosts: tiktok.com and tiktokv.com (its share domain) and their subdomains.
_TIKTOK_HOST = re.compile(r"(?:[a-z0-9-]+\.)*tiktokv?\.com")
_SHORT_LINK_HOSTS = frozenset({"vm.tiktok.com", "vt.tiktok.com"})
# The secUid (TikTok's internal account id) some tools put where the handle goes.
_SEC_UID_PREFIX = "MS4wLjABAAAA"
# Pasted text often carries these around a value; str.strip() keeps the zero-width ones.
_BLANKS = " \t\r\n\f\v\u00a0\u200b\u200e\u200f\u2060\ufeff"
# A link inside words: an http(s) URL, or a bare TikTok host followed by a path. A URL
# is printable ASCII; TikTok's share text puts words, '>' or CJK text around it.
_LINK_IN_TEXT = re.compile(
    r"https?://[!-~]+|(?<![!-~])(?:[a-z0-9-]+\.)*tiktokv?\.com/[!-~]*", re.IGNORECASE
)
_TRAILING_PUNCTUATION = ",;:!?)]}>\"'"

_EMPTY = "empty: give a TikTok handle such as 'some.handle' or a profile URL"
_SHORT_LINK = (
    "a short link: pass --resolve-short-links or resolve it first "
    "(tiktok_async.ShortLinkResolver follows its redirect to the full URL, "
    "https://www.tiktok.com/@handle/video/ID)"
)
_PAIR_FORM = "'handle,videoId' (for example 'some.handle,7301234567890123456')"
_BY_HANDLE = "the API looks users up by handle; open the link and use the @handle it shows"

_T = TypeVar("_T")

#: What `link_kind` says of a text: a short link (needs a redirect), a link the parsers
#: take ("target"), a TikTok video link without the author's handle, or anything else.
LinkKind = Literal["short", "target", "no_handle", "other"]


class VideoRef(NamedTuple):
    """A video the API can be asked about: its author's handle and its id.

    Make one with `parse_video` or `make_video_ref`, which validate both parts.
    """

    handle: str
    video_id: str


def parse_handle(text: str) -> str:
    """The handle in `text` (without '@', case kept), or raise `InvalidInputError`.

    `text` is a handle with or without '@' (spaces around are ignored), a profile URL
    on a TikTok host, or share text holding one.
    """
    if isinstance(text, str) and _HANDLE.fullmatch(text):
        return text  # a bare handle, the usual input: nothing to strip or look for
    stripped = _strip(text)
    link = _link_in_share_text(stripped, text)
    if link is not None:
        return _from_share_text(parse_handle, link, text)
    if _looks_like_url(stripped):
        return _handle_from_url(stripped, text)
    return _checked_handle(stripped.removeprefix("@"), text)


def handle_key(handle: str) -> str:
    """The key under which handles compare (TikTok handles are case-insensitive)."""
    return handle.lower()


def parse_video(text: str) -> VideoRef:
    """The video in `text`, or raise `InvalidInputError`.

    `text` is a video URL carrying the author's handle (`/@h/video/ID`,
    `/@h/photo/ID`), share text holding one, or a `handle,videoId` pair.
    """
    stripped = _strip(text)
    link = _link_in_share_text(stripped, text)
    if link is not None:
        return _from_share_text(parse_video, link, text)
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

    `handle` must be one `parse_handle` returned: it is not checked again (the parsers are
    the one gate, and the bulk path paid for a second regex match an input).
    """
    return f"user/{_encoded_handle(handle)}"


def video_path(ref: VideoRef) -> str:
    """`video/<handle>/<videoId>`, percent-encoded, relative to the base URL (no leading
    '/'). `ref` must be one the parsers made (`parse_video`, `make_video_ref`): it is not
    checked again."""
    return f"video/{_encoded_handle(ref.handle)}/{ref.video_id}"


def short_link_in(text: str) -> str | None:
    """The short link `text` is or holds (as share text), or None. Never raises."""
    try:
        stripped = _strip(text)
        link = _link_in_share_text(stripped, text) or stripped
    except InvalidInputError:
        return None
    return link if link_kind(link) == "short" else None


def link_kind(text: str) -> LinkKind:
    """What kind of link `text` (one URL, no words around it) is; never raises."""
    try:
        parts = _split_url(text, text)
        host = _tiktok_host(parts.netloc, text)
    except InvalidInputError:
        return "other"
    segments = _segments(parts)
    if _is_short_link(host, segments):
        return "short"
    try:
        _target(segments, text)
    except InvalidInputError:
        return "no_handle" if _handle_less_form(segments) else "other"
    return "target"


def _encoded_handle(checked: str) -> str:
    """The path segment of a handle the parsers checked."""
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


# --- share text -----------------------------------------------------------------------


def _link_in_share_text(text: str, original: str) -> str | None:
    """The one link inside `text` when words surround it; None when `text` holds no link
    or is nothing but one."""
    if " " not in text and text.isascii() and text.isprintable():
        return None  # no blank, nothing but ASCII: no words around a link (the usual case)
    links = list(dict.fromkeys(_trimmed(m.group()) for m in _LINK_IN_TEXT.finditer(text)))
    if not links or links == [text]:
        return None
    if len(links) > 1:
        raise InvalidInputError(
            original, f"share text with {len(links)} different links: give one link per input"
        )
    return links[0]


def _trimmed(link: str) -> str:
    """`link` without the punctuation a sentence puts after it (a '.' ending a handle stays)."""
    while link and (
        link[-1] in _TRAILING_PUNCTUATION
        or (link[-1] == "." and not link.rpartition("/")[2].startswith("@"))
    ):
        link = link[:-1]
    return link


def _from_share_text(parse: Callable[[str], _T], link: str, original: str) -> _T:
    try:
        return parse(link)
    except InvalidInputError as exc:
        reason = f"share text: the link in it is {link!r}: {exc.reason}"
        raise InvalidInputError(original, reason) from None


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
    host = _tiktok_host(parts.netloc, original)
    segments = _segments(parts)
    if _is_short_link(host, segments):
        raise InvalidInputError(original, _SHORT_LINK)
    return _target(segments, original)


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


def _segments(parts: SplitResult) -> list[str]:
    return [unquote(segment) for segment in parts.path.split("/") if segment]


def _tiktok_host(netloc: str, original: str) -> str:
    """The URL's host, lowercased, if it is TikTok's and the URL names nothing else
    (no user name, no port); else raise saying which."""
    userinfo, at, host_port = netloc.rpartition("@")
    host, colon, port = host_port.lower().partition(":")
    if not _TIKTOK_HOST.fullmatch(host):
        raise InvalidInputError(original, _foreign_host_reason(host_port, userinfo if at else None))
    if at:
        raise InvalidInputError(
            original,
            f"a TikTok link with {userinfo + '@'!r} before its host: TikTok's links never "
            "carry a user name or password; remove it",
        )
    if colon:
        raise InvalidInputError(
            original, f"a TikTok link with a port (':{port}'): TikTok's links have none"
        )
    return host


def _foreign_host_reason(host: str, userinfo: str | None) -> str:
    expected = "expected tiktok.com, www.tiktok.com or m.tiktok.com"
    if userinfo is not None:
        # https://tiktok.com@evil.com/ goes to evil.com: what precedes '@' is userinfo.
        return (
            f"not a TikTok URL: its host is {host!r}; {userinfo + '@'!r} before it is a "
            f"user name, not the host; {expected}"
        )
    return f"not a TikTok URL (host {host!r}); {expected}"


def _is_short_link(host: str, segments: list[str]) -> bool:
    return host in _SHORT_LINK_HOSTS or segments[:1] == ["t"]


# Link forms without the author's handle (None marks the video id) and what they are.
_HANDLE_LESS_FORMS: tuple[tuple[tuple[str | None, ...], str], ...] = (
    (("v", None), "a mobile video link (/v/ID.html)"),
    (("embed", None), "an embed link"),
    (("embed", "v2", None), "an embed link"),
    (("player", "v1", None), "TikTok's embed player link (/player/v1/ID)"),
    (("share", "video", None), "a share link (/share/video/ID)"),
    (("i18n", "share", "video", None), "a share link (/i18n/share/video/ID)"),
    (("h5", "share", "video", None), "a share link (/h5/share/video/ID)"),
)
_NUMERIC_PROFILE_FORMS: tuple[tuple[str | None, ...], ...] = (
    ("share", "user", None),
    ("h5", "share", "usr", None),
)


def _form_id(segments: list[str], form: tuple[str | None, ...]) -> str | None:
    """The id in `segments` if they have the shape of `form`, else None."""
    if len(segments) != len(form):
        return None
    pairs = zip(form, segments, strict=True)
    if any(part is not None and part != segment for part, segment in pairs):
        return None
    return segments[form.index(None)].removesuffix(".html")


def _handle_less_form(segments: list[str]) -> tuple[str, str] | None:
    """(what the link is, its video id) for a video link without the author's handle."""
    for form, what in _HANDLE_LESS_FORMS:
        video_id = _form_id(segments, form)
        if video_id is not None:
            return what, video_id
    return None


def _target(segments: list[str], original: str) -> _UrlTarget:
    if segments and segments[0].startswith("@"):
        return _at_handle_target(segments, original)
    handle_less = _handle_less_form(segments)
    if handle_less is not None:
        _refuse_without_handle(*handle_less, original)
    for form in _NUMERIC_PROFILE_FORMS:
        user_id = _form_id(segments, form)
        if user_id is not None and _VIDEO_ID.fullmatch(user_id):
            raise InvalidInputError(original, f"a profile by numeric id ({user_id}): {_BY_HANDLE}")
    raise InvalidInputError(original, _NOT_A_KNOWN_PATH)


_NOT_A_KNOWN_PATH = (
    "not a TikTok profile or video URL: expected https://www.tiktok.com/@handle "
    "or https://www.tiktok.com/@handle/video/ID"
)


def _at_handle_target(segments: list[str], original: str) -> _UrlTarget:
    if len(segments) == 1:
        video_id = None
    elif len(segments) == 3 and segments[1] in ("video", "photo"):
        video_id = _checked_video_id(segments[2], original)
    else:
        raise InvalidInputError(original, _NOT_A_KNOWN_PATH)
    return _UrlTarget(_url_handle(segments[0][1:], video_id, original), video_id)


def _url_handle(candidate: str, video_id: str | None, original: str) -> str:
    """The handle after '@' in a link; an empty one or a secUid is refused as no handle."""
    if candidate and not candidate.startswith(_SEC_UID_PREFIX):
        return _checked_handle(candidate, original)
    what = (
        f"the '@' holds a secUid ({candidate[:16]}...), TikTok's internal account id, "
        "not a handle" if candidate else "the handle after '@' is empty"
    )
    if video_id is None:
        raise InvalidInputError(original, f"{what}: {_BY_HANDLE}")
    _refuse_without_handle(what, video_id, original)


def _refuse_without_handle(what: str, video_id: str, original: str) -> NoReturn:
    checked = _checked_video_id(video_id, original)
    raise InvalidInputError(
        original,
        f"{what}: this link carries no handle: the API needs the author's handle; "
        f"pair the video id with it as 'handle,{checked}'",
    )
