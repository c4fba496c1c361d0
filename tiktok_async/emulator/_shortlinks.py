"""TikTok's short links as its web hosts answer them: a redirect to the full URL.

Pure: `short_link_answer(host, path)` is the (status, Location) that
`GET https://{host}{path}` gets, so the library's `ShortLinkResolver` is tested without
the internet (the emulator serves it under `/_short/{host}{path}`; point the resolver's
`short_link_base` at `Emulator.short_link_base`).

- `vm.tiktok.com/CODE`, `vt.tiktok.com/CODE`, `{www.,m.,}tiktok.com/t/CODE`: 301 to
  `https://www.tiktok.com/@HANDLE/video/ID?_r=1&_t=CODE`, HANDLE and ID drawn from the
  code (`short_link_target`; both exist in the emulator);
- `lite.tiktok.com/t/CODE`: 301 to `https://t.tiktok.com/i18n/share/video/ID/?_r=1`, a
  link without the author's handle, which answers 200 (a page, no redirect);
- codes that start with `missing` (404), `offsite` (301 to example.com), `home` (301 to
  TikTok's home page), `loop` (301 to itself), `chain` (301 to another short link,
  `vt.tiktok.com/` + the rest of the code), `relative` (a scheme-relative Location),
  `profile` (301 to the profile `https://www.tiktok.com/@HANDLE`);
- anything else: 404.
"""

from __future__ import annotations

import hashlib

from ._data import existing_handle, video_id_for

SHORT_LINK_PREFIX = "/_short"
_SHORT_HOSTS = frozenset({"vm.tiktok.com", "vt.tiktok.com"})
_T_HOSTS = frozenset({"tiktok.com", "www.tiktok.com", "m.tiktok.com", "lite.tiktok.com"})
_I18N_SHARE = ["i18n", "share", "video"]


def short_link_target(code: str) -> tuple[str, str]:
    """The (handle, video id) the short link with `code` leads to; both exist."""
    number = int.from_bytes(hashlib.blake2b(code.encode(), digest_size=4).digest(), "big")
    handle = existing_handle(number % 20)
    return handle, video_id_for(handle, number % 5)


def short_link_answer(host: str, path: str) -> tuple[int, str | None]:
    """(status, Location) for `GET https://{host}{path}` (query left out)."""
    segments = [segment for segment in path.split("/") if segment]
    if host == "t.tiktok.com" and segments[:3] == _I18N_SHARE and len(segments) == 4:
        return 200, None
    code = _code(host, segments)
    if code is None or code.startswith("missing"):
        return 404, None
    return 301, _location(host, path, code)


def _code(host: str, segments: list[str]) -> str | None:
    if host in _SHORT_HOSTS and len(segments) == 1:
        return segments[0]
    if host in _T_HOSTS and len(segments) == 2 and segments[0] == "t":
        return segments[1]
    return None


def _location(host: str, path: str, code: str) -> str:
    handle, video_id = short_link_target(code)
    special = {
        "offsite": "https://example.com/phish",
        "home": "https://www.tiktok.com/",
        "loop": f"https://{host}{path}",
        "chain": f"https://vt.tiktok.com/{code.removeprefix('chain') or 'ZS0'}/",
        "relative": f"//www.tiktok.com/@{handle}/video/{video_id}",
        "profile": f"https://www.tiktok.com/@{handle}?_t={code}&_r=1",
    }
    for prefix, location in special.items():
        if code.startswith(prefix):
            return location
    if host == "lite.tiktok.com":
        return f"https://t.tiktok.com/i18n/share/video/{video_id}/?_r=1"
    return f"https://www.tiktok.com/@{handle}/video/{video_id}?_r=1&_t={code}"
