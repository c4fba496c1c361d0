"""What differs between users and videos, in one `Kind` object each.

A `Kind` carries everything the bulk layer, the command line and the scale-out worker
need to treat an input: how to parse it (and its normalised key), the path to ask for,
the decoder of the answer, and the flattened columns of a CSV row. Nothing anywhere
branches on a kind's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._exceptions import InvalidInputError
from ._inputs import (
    VideoRef,
    handle_key,
    make_video_ref,
    parse_handle,
    parse_video,
    user_path,
    video_path,
)
from ._models import (
    Record,
    UserProfile,
    Video,
    decode_user_profile,
    decode_video,
    flat_columns,
)

T = TypeVar("T")
TargetT = TypeVar("TargetT")


class Parsed(Record, Generic[TargetT], frozen=True, gc=False):
    """An input with what parsing made of it: a target to fetch, or the reason it is invalid.

    `raw` is the item as given (a CLI line, a queue entry, the user's object); `key` the
    normalised form used for dedupe and resume (None when invalid).
    """

    raw: object
    key: str | None
    handle: str | None
    target: TargetT | None
    invalid: InvalidInputError | None


@dataclass(frozen=True, slots=True)
class Kind(Generic[TargetT, T]):
    """One kind of input (`users`, `videos`): parse, path, decoder and CSV columns."""

    name: str
    parse: Callable[[object], Parsed[TargetT]]
    path: Callable[[TargetT], str]
    decode: Callable[[bytes], T]
    columns: tuple[str, ...]
    input_help: str


def parse_user(raw: object) -> Parsed[str]:
    """A handle (with or without '@') or a profile URL; `key` is the lowercase handle."""
    try:
        handle = parse_handle(_as_text(raw))
    except InvalidInputError as exc:
        return Parsed(raw, None, None, None, exc)
    return Parsed(raw, handle_key(handle), handle, handle, None)


def parse_video_input(raw: object) -> Parsed[VideoRef]:
    """A video URL, a 'handle,videoId' line, a `(handle, id)` pair or a `VideoRef`;
    `key` is `<lowercase handle>/<id>`."""
    try:
        ref = _video_ref(raw)
    except InvalidInputError as exc:
        return Parsed(raw, None, None, None, exc)
    return Parsed(raw, f"{handle_key(ref.handle)}/{ref.video_id}", ref.handle, ref, None)


def _video_ref(raw: object) -> VideoRef:
    if isinstance(raw, VideoRef):
        return make_video_ref(raw.handle, raw.video_id)
    if isinstance(raw, tuple) and len(raw) == 2:
        video_id = raw[1]  # an int as get_video takes it (ids from JSON or a DataFrame)
        return make_video_ref(_as_text(raw[0]),
                              video_id if isinstance(video_id, int) else _as_text(video_id))
    return parse_video(_as_text(raw))


def _as_text(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise InvalidInputError(repr(raw)[:80], f"expected text, got {type(raw).__name__}")


USERS: Kind[str, UserProfile] = Kind(
    "users", parse_user, user_path, decode_user_profile, tuple(flat_columns(UserProfile)),
    "handles (with or without @) or profile URLs",
)
VIDEOS: Kind[VideoRef, Video] = Kind(
    "videos", parse_video_input, video_path, decode_video, tuple(flat_columns(Video)),
    "video URLs, or 'handle,videoId' lines",
)
#: Every kind by its name (the command line's `users` / `videos`, a job's `kind`).
KINDS: dict[str, Kind[Any, Any]] = {kind.name: kind for kind in (USERS, VIDEOS)}
