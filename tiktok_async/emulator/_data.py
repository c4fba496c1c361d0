"""Deterministic, realistic TikTok data made from a handle and a video id.

Every value is drawn from a `random.Random` seeded with a BLAKE2b digest of the input
(never Python's salted `hash()`), so every process and every run gives the same answer.
Timestamps (`createdAt`, `updatedAt`) are not made here: the store adds them when it saves.
`make_*` return the data as drawn (optional text may be None); `apply_quirks` turns it into
what goes on the wire: by default exactly the seed's types (a missing bio or album is
`""`, never `null`), or with named quirks a test switches on (`QUIRKS`).

Rules a test can rely on:

- A handle is 2-30 characters of `A-Z a-z 0-9 _ .`; it is compared lowercased.
- `missing_*` handles do not exist, and neither does a deterministic share of the others
  (`missing_share`, 2% by default): `is_missing()` says which, `missing_handle(n)` and
  `existing_handle(n)` name some.
- `broken_*` handles exist but their `stats.followerCount` is a display string such as
  `"12.3K"` (does not fit the schema, even for a decoder that accepts digit strings).
- A video does not exist when its author does not exist, when its id is not a plausible
  TikTok id (`id >> 32` before 2016-09-01, or 2^64 and above), or for a deterministic share
  (`missing_share`) of (handle, id) pairs: `is_video_missing()`, `missing_video_id()`,
  `video_id_for()` (an id that exists).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from typing import Any

HANDLE_RE = re.compile(r"[A-Za-z0-9_.]{2,30}")
DEFAULT_MISSING_SHARE = 0.02
TIKTOK_EPOCH = 1_472_688_000  # 2016-09-01T00:00:00Z: no video id is older
LAST_PLAUSIBLE_TIME = 1_893_456_000  # 2030-01-01: ids made by video_id_for() stay before
MISSING_PREFIX = "missing_"
BROKEN_PREFIX = "broken_"
SEC_UID_PREFIX = "MS4wLjABAAAA"
_B64URL = string.ascii_letters + string.digits + "-_"

JSON = dict[str, Any]

#: Named departures from the seed's types, off by default:
#: - `nulls`: optional text as `null` (a missing `profileBio`, the `album` of most sounds);
#: - `unknown_fields`: fields the seed does not list (`region`, `language`, `logPb`);
#: - `string_counts`: the counters of `stats` / `authorStats` as digit strings.
QUIRKS = ("nulls", "unknown_fields", "string_counts")
_COUNTERS = ("stats", "authorStats")

_NAMES = ["Maya", "Leo", "Aiko", "Omar", "Zoë", "Jonas", "Priya", "Mateo", "Chloé", "Kwame"]
_RTL = ["سارة", "محمد علي", "שלום עליכם", "נועה", "مرحبا بالعالم", "یاسمن"]
_OTHER = ["小红", "김민지", "Ελένη", "Дарья", "ต้นข้าว", "Ngọc Ánh"]
_EMOJI = ["✨", "🔥", "💖", "🌸", "😂", "🎶", "🏳️‍🌈", "👩🏽‍💻", "🇧🇷", "🐈‍⬛"]
_BIO = [
    "Just vibes", "DM for collabs", "Dancer | Creator", "Cooking every day",
    "Not a bot, promise", "New video every Friday", "Travel • Food • Life",
]
_TAGS = ["#fyp", "#foryou", "#viral", "#dance", "#recipe", "#معلومات", "#コメディ", "#ootd"]


def handle_key(handle: str) -> str:
    """The database key of a handle: lowercased (handles compare case-insensitively)."""
    return handle.lower()


def is_valid_handle(handle: str) -> bool:
    """Whether `handle` fits the handle rule (2-30 of `A-Z a-z 0-9 _ .`)."""
    return HANDLE_RE.fullmatch(handle) is not None


def is_valid_video_id(video_id: str) -> bool:
    """Whether `video_id` is made of ASCII digits only (and is not empty)."""
    return video_id.isascii() and video_id.isdigit()


def _fraction(*parts: str) -> float:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _rng(*parts: str) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def is_missing(handle: str, share: float = DEFAULT_MISSING_SHARE) -> bool:
    """Whether the user `handle` does not exist (404 `User not found`)."""
    key = handle_key(handle)
    if key.startswith(MISSING_PREFIX):
        return True
    if key.startswith(BROKEN_PREFIX):
        return False
    return _fraction("missing", key) < share


def is_broken(handle: str) -> bool:
    """Whether `handle` answers a body that does not fit the schema (`broken_*`)."""
    return handle_key(handle).startswith(BROKEN_PREFIX)


def _nth_handle(n: int, share: float, missing: bool) -> str:
    found = -1
    for i in range(10_000_000):
        candidate = f"user{i}.test"
        if is_missing(candidate, share) == missing:
            found += 1
            if found == n:
                return candidate
    raise ValueError("no such handle: share too small or too large")  # pragma: no cover


def missing_handle(n: int = 0, share: float = DEFAULT_MISSING_SHARE) -> str:
    """The n-th ordinary-looking handle that does not exist at this `share` (not `missing_*`)."""
    return _nth_handle(n, share, missing=True)


def existing_handle(n: int = 0, share: float = DEFAULT_MISSING_SHARE) -> str:
    """The n-th handle of the form `user<i>.test` that exists at this `share`."""
    return _nth_handle(n, share, missing=False)


def _id_time(video_id: int) -> int:
    return video_id >> 32


def video_number(video_id: str) -> int | None:
    """The video id as a number, or None when it is 2^64 or more (no such TikTok id).

    `video_id` must be ASCII digits; any length is safe (no int() of a huge string).
    """
    digits = video_id.lstrip("0")
    if len(digits) > 20:
        return None
    number = int(digits or "0")
    return number if number < 2**64 else None


def is_video_missing(handle: str, video_id: str, share: float = DEFAULT_MISSING_SHARE) -> bool:
    """Whether the video does not exist (404 `Video not found`). `video_id` must be digits."""
    number = video_number(video_id)
    if number is None or _id_time(number) < TIKTOK_EPOCH or is_missing(handle, share):
        return True
    return _fraction("video-missing", handle_key(handle), str(number)) < share


def video_id_for(handle: str, n: int = 0, share: float = DEFAULT_MISSING_SHARE) -> str:
    """The n-th video id of `handle` that exists (the handle itself must exist)."""
    if is_missing(handle, share):
        raise ValueError(f"handle {handle!r} does not exist")
    found = -1
    for i in range(10_000_000):
        rng = _rng("video-id", handle_key(handle), str(i))
        created = rng.randrange(1_600_000_000, LAST_PLAUSIBLE_TIME)
        candidate = str((created << 32) | rng.getrandbits(32))
        if not is_video_missing(handle, candidate, share):
            found += 1
            if found == n:
                return candidate
    raise ValueError("no such video id")  # pragma: no cover


def missing_video_id(handle: str, n: int = 0) -> str:
    """A video id that never exists, for any handle: its time is before TikTok's epoch."""
    return str(((TIKTOK_EPOCH - 1 - n) << 32) | 12345)


def wrap_int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit integer (how TikTok sends `heart`)."""
    return (value + 2**31) % 2**32 - 2**31


def _digits(rng: random.Random, length: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(length - 1))


def _text(rng: random.Random, pool: list[str], words: int) -> str:
    picks = [rng.choice(pool) for _ in range(words)]
    if rng.random() < 0.6:
        picks.append(rng.choice(_EMOJI) + rng.choice(_EMOJI))
    if rng.random() < 0.25:
        picks.insert(rng.randrange(len(picks) + 1), rng.choice(_RTL))
    return " ".join(picks)


def _count(rng: random.Random, top: float) -> int:
    """A heavy-tailed count in [0, top]."""
    return int(top ** rng.random()) - 1 if rng.random() > 0.03 else 0


def _user_id(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return _digits(rng, 19, "67")
    return _digits(rng, rng.randrange(8, 19))


def _sec_uid(rng: random.Random) -> str:
    length = 76 if rng.random() < 0.3 else 55
    tail = "".join(rng.choice(_B64URL) for _ in range(length - len(SEC_UID_PREFIX)))
    return SEC_UID_PREFIX + tail


def _nickname(rng: random.Random, key: str) -> str:
    roll = rng.random()
    if roll < 0.35:
        return key
    if roll < 0.55:
        return f"{rng.choice(_NAMES)} {rng.choice(_EMOJI)}"
    if roll < 0.7:
        return rng.choice(_RTL)
    if roll < 0.8:
        return rng.choice(_OTHER)
    return rng.choice(_NAMES) + " " + rng.choice(_NAMES)[0] + "."


def _bio(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.15:
        return ""
    text = _text(rng, _BIO, rng.randrange(1, 3))
    return text + "\n" + rng.choice(_TAGS) if rng.random() < 0.3 else text


def _picture_url(rng: random.Random) -> str:
    name = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    expires = rng.randrange(1_700_000_000, 1_800_000_000)
    return (
        f"https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/{name}~c5_1080x1080.jpeg"
        f"?x-expires={expires}&x-signature=" + "".join(rng.choice(_B64URL) for _ in range(27))
    )


def make_user(handle: str) -> JSON:
    """The `user` object of `handle`, without `createdAt`/`updatedAt`."""
    key = handle_key(handle)
    rng = _rng("user", key)
    user_id = _user_id(rng)
    return {
        "id": user_id,
        "nickname": _nickname(rng, key),
        "id_dup": user_id,
        "secUid": _sec_uid(rng),
        "profileBio": _bio(rng),
        "profilePictureUrl": _picture_url(rng),
        "isVerified": rng.random() < 0.06,
        "isPrivateAccount": rng.random() < 0.08,
    }


def make_user_stats(handle: str) -> JSON:
    """The `stats` object of `handle`; some `heartCount` pass 2^31, `heart` wraps."""
    key = handle_key(handle)
    rng = _rng("user-stats", key)
    big = rng.random() < 0.08
    heart_count = rng.randrange(2**31, 40_000_000_000) if big else _count(rng, 5e8)
    follower = rng.randrange(5_000_000, 200_000_000) if big else _count(rng, 5e7)
    # broken_*: a display string, not a number, that even a lax decoder rejects
    shown: int | str = f"{follower / 1000:.1f}K" if is_broken(key) else follower
    return {
        "diggCount": _count(rng, 2e5),
        "followerCount": shown,
        "followingCount": _count(rng, 1e4),
        "friendCount": _count(rng, 5e3),
        "heartCount": heart_count,
        "heart": wrap_int32(heart_count),
        "videoCount": _count(rng, 5e3),
    }


def _description(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return ""
    words = ["pov:", "wait for it", "day 12 of", "this recipe", "rate my fit", "no way", "مرحبا"]
    tags = " ".join(rng.sample(_TAGS, rng.randrange(0, 4)))
    return f"{_text(rng, words, rng.randrange(1, 4))} {tags}".strip()


def _music(rng: random.Random, nickname: str, duration: int) -> JSON:
    original = rng.random() < 0.4
    album: str | None = None if rng.random() < 0.5 else rng.choice(["", "Singles", "Vibes ✨"])
    return {
        "id": _digits(rng, 19, "67"),
        "title": f"original sound - {nickname}" if original else _text(rng, _NAMES, 2),
        "authorName": nickname if original else rng.choice(_NAMES + _RTL + _OTHER),
        "album": None if original else album,
        "duration": max(duration, 1) if original else rng.randrange(5, 240),
        "original": original,
        "private": rng.random() < 0.05,
    }


def _video_stats(rng: random.Random) -> JSON:
    play = rng.randrange(2**31, 9_000_000_000) if rng.random() < 0.05 else _count(rng, 5e8)
    scale = max(play, 2)
    return {
        "diggCount": _count(rng, scale / 5 + 2),
        "collectCount": _count(rng, scale / 50 + 2),
        "commentCount": _count(rng, scale / 100 + 2),
        "playCount": play,
        "repostCount": _count(rng, 1e4),
        "shareCount": _count(rng, scale / 200 + 2),
    }


def make_video(handle: str, video_id: str) -> JSON:
    """The video body without `author`, `authorStats` and the music timestamps.

    `createTime` is `video_id >> 32`; photo posts (about 10%) have `duration` 0.
    """
    number = video_number(video_id)
    if number is None:
        raise ValueError(f"not a TikTok video id: {video_id!r}")
    rng = _rng("video", handle_key(handle), str(number))
    duration = 0 if rng.random() < 0.1 else rng.randrange(3, 600)
    stats = _video_stats(rng)
    return {
        "id": str(number),
        "description": _description(rng),
        "createTime": str(_id_time(number)),
        "duration": duration,
        "music": _music(rng, make_user(handle)["nickname"], duration),
        "stats": stats,
    }


def apply_quirks(doc: JSON, quirks: frozenset[str] | tuple[str, ...] = ()) -> JSON:
    """`doc` (a user profile or a video, as `make_*` drew it) as the wire carries it.

    Without quirks every field has the seed's type: None text becomes `""`. Applying it
    again changes nothing (the store applies it to a video that holds a stored author).
    """
    out = doc if "nulls" in quirks else _no_nulls(doc)
    if "unknown_fields" in quirks:
        out = {**out, "logPb": {"impr_id": "20240301120000ABCDEF"}}
        for name in ("user", "author", "music"):
            if isinstance(out.get(name), dict):
                out[name] = {**out[name], "region": "US", "language": "en"}
    if "string_counts" in quirks:
        for name in _COUNTERS:
            if isinstance(out.get(name), dict):
                out[name] = {k: _as_text(v) for k, v in out[name].items()}
    return out


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "" if v is None else _no_nulls(v) for k, v in value.items()}
    return value


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
