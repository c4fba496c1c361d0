"""The API's answers as msgspec Structs, their decoders, and JSON encoding helpers.

The only module that imports msgspec. Attributes are snake_case and map to the wire
names (`follower_count` <- `followerCount`; `id_dup` stays `id_dup`).

Decoding is lenient where the API is known to wobble and strict where it matters:

- unknown fields are ignored (the API may add some);
- optional text that is `null` or missing becomes `None`;
- counts are Python ints: unbounded, and negative where the API wraps them
  (`heart` is `heartCount` wrapped to a signed 32-bit integer);
- the decoders run in msgspec's lax mode (`strict=False`), which is what turns
  `createTime` (epoch seconds as a string or a number, or RFC 3339) into an aware UTC
  datetime in C, at no cost; it also accepts counts sent as digit strings. Datetimes
  must carry a time zone: a naive one would compare wrongly downstream.

A body that does not fit raises `DecodeError` naming the field path. A body that is not
well-formed JSON at all (cut off, an HTML page, empty) raises its subclass
`MalformedBodyError`, which the retry layer retries. JSON nested deeper than the decoder
goes (the interpreter's guard: about 1,000 levels on Python 3.10-3.11, 1,500 on 3.12,
10,000 on 3.13; in a field we ignore or not) is a `DecodeError` too: never a
`RecursionError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, get_args

import msgspec

from ._exceptions import DecodeError, MalformedBodyError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "JsonLinesWriter",
    "Music",
    "Record",
    "User",
    "UserProfile",
    "UserStats",
    "Video",
    "VideoStats",
    "decode_json",
    "decode_user_profile",
    "decode_video",
    "encode_json",
    "flat_columns",
    "flatten_record",
    "to_builtins",
]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


# rename and gc are inherited; frozen and kw_only are repeated on each model because
# type checkers read them per class.
class Record(msgspec.Struct, frozen=True, gc=False):
    """A small immutable record the garbage collector does not track (the bulk layer's
    `Result` and `Parsed`): a bulk run keeps thousands alive (in flight, in the dedupe
    memory), and tracked ones made every collection walk them: about 15 us an input.
    Safe because nothing a record holds refers back to it (no cycle to collect)."""

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` (as `dataclasses.replace`)."""
        return msgspec.structs.replace(self, **changes)


# gc=False: these Structs only hold scalars and other frozen Structs, so they cannot
# form reference cycles; leaving them out of the garbage collector makes bulk runs cheaper.
class _Model(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """Shared configuration of every model."""

    def to_dict(self, *, flat: bool = False) -> dict[str, Any]:
        """This model as plain data: a dict with snake_case keys, nested models as dicts,
        datetimes as RFC 3339 strings (what the command line writes). With `flat=True`,
        one level with dotted keys (`stats.follower_count`), as the CSV columns."""
        data: dict[str, Any] = to_builtins(self)
        if not flat:
            return data
        values = flatten_record(data)  # a model that is None leaves its columns empty
        return {column: values.get(column) for column in _FLAT_COLUMNS[type(self)]}


class User(_Model, frozen=True, kw_only=True):
    """A TikTok account (`user` in a profile, `author` in a video).

    Attributes:
        id: The account's numeric id, as text. Wire: `id`.
        nickname: The display name (any Unicode, emoji included). Wire: `nickname`.
        id_dup: An identifier the API sends beside `id` (the id again, or the handle),
            kept as sent. Wire: `id_dup`.
        sec_uid: TikTok's internal account id (`MS4wLjABAAAA...`). Wire: `secUid`.
        profile_bio: The profile's bio text. Wire: `profileBio`.
        profile_picture_url: The avatar's URL. Wire: `profilePictureUrl`.
        is_verified: Whether TikTok verified the account. Wire: `isVerified`.
        is_private_account: Whether the account is private. Wire: `isPrivateAccount`.
        created_at (datetime | None): When the API's store first saved this record
            (aware, UTC). Wire: `createdAt`.
        updated_at (datetime | None): When the API's store last refreshed it (aware, UTC).
            Wire: `updatedAt`.
    """

    id: str
    nickname: str | None = None
    id_dup: str | None = msgspec.field(default=None, name="id_dup")
    sec_uid: str | None = None
    profile_bio: str | None = None
    profile_picture_url: str | None = None
    is_verified: bool = False
    is_private_account: bool = False
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class UserStats(_Model, frozen=True, kw_only=True):
    """An account's counters. `heart` is `heart_count` wrapped to 32 bits (may be negative).

    Attributes:
        digg_count: Likes the account gave. Wire: `diggCount`.
        follower_count: Followers. Wire: `followerCount`.
        following_count: Accounts it follows. Wire: `followingCount`.
        friend_count: Mutual follows. Wire: `friendCount`.
        heart_count: Likes its videos received (the true figure). Wire: `heartCount`.
        heart: `heart_count` wrapped to a signed 32-bit integer (negative past
            2,147,483,647). Wire: `heart`.
        video_count: Videos posted. Wire: `videoCount`.
    """

    digg_count: int
    follower_count: int
    following_count: int
    friend_count: int
    heart_count: int
    heart: int
    video_count: int


class UserProfile(_Model, frozen=True, kw_only=True):
    """The answer to `GET user/{handle}`.

    Attributes:
        user: The account. Wire: `user`.
        stats: Its counters. Wire: `stats`.
    """

    user: User
    stats: UserStats


class Music(_Model, frozen=True, kw_only=True):
    """The sound of a video.

    Attributes:
        id: The sound's numeric id, as text. Wire: `id`.
        title: Its title. Wire: `title`.
        author_name: Who made it. Wire: `authorName`.
        album: The album, when it has one. Wire: `album`.
        duration: Its length in seconds. Wire: `duration`.
        original: Whether it is the video author's original sound. Wire: `original`.
        private: Whether the sound is private. Wire: `private`.
        created_at (datetime | None): When the API's store first saved this record
            (aware, UTC). Wire: `createdAt`.
        updated_at (datetime | None): When the API's store last refreshed it (aware, UTC).
            Wire: `updatedAt`.
    """

    id: str
    title: str | None = None
    author_name: str | None = None
    album: str | None = None
    duration: int = 0
    original: bool = False
    private: bool = False
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class VideoStats(_Model, frozen=True, kw_only=True):
    """A video's counters.

    Attributes:
        digg_count: Likes. Wire: `diggCount`.
        collect_count: Saves to favourites. Wire: `collectCount`.
        comment_count: Comments. Wire: `commentCount`.
        play_count: Plays. Wire: `playCount`.
        repost_count: Reposts. Wire: `repostCount`.
        share_count: Shares. Wire: `shareCount`.
    """

    digg_count: int
    collect_count: int
    comment_count: int
    play_count: int
    repost_count: int
    share_count: int


class Video(_Model, frozen=True, kw_only=True):
    """The answer to `GET video/{handle}/{videoId}`.

    `create_time` is an aware UTC datetime; `duration` is in seconds (0 for photo posts).

    Attributes:
        id: The video's numeric id, as text. Wire: `id`.
        description: The caption, hashtags included. Wire: `description`.
        create_time (datetime): When it was posted (aware, UTC; sent as epoch seconds or
            RFC 3339). Wire: `createTime`.
        duration: Its length in seconds (0 for a photo post). Wire: `duration`.
        music: Its sound (None for some photo posts). Wire: `music`.
        stats: Its counters. Wire: `stats`.
        author: The account that posted it. Wire: `author`.
        author_stats: The author's counters. Wire: `authorStats`.
    """

    id: str
    description: str | None = None
    create_time: AwareDatetime
    duration: int
    music: Music | None = None
    stats: VideoStats
    author: User
    author_stats: UserStats


_T = TypeVar("_T")

_USER_PROFILE_DECODER = msgspec.json.Decoder(UserProfile, strict=False)
_VIDEO_DECODER = msgspec.json.Decoder(Video, strict=False)
_ANY_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
# msgspec's messages end in " - at `$.stats.followerCount`".
_PATH_IN_MESSAGE = re.compile(r" - at `(\$[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")


def decode_user_profile(body: bytes) -> UserProfile:
    """Decode a `user/{handle}` body, or raise `DecodeError` naming the field path."""
    return _decode(_USER_PROFILE_DECODER, body)


def decode_video(body: bytes) -> Video:
    """Decode a `video/{handle}/{videoId}` body, or raise `DecodeError` naming the field path."""
    return _decode(_VIDEO_DECODER, body)


def decode_json(data: bytes | str) -> Any:
    """Decode any JSON document into builtins, or raise `DecodeError` (`MalformedBodyError`
    when it is not well-formed JSON)."""
    return _decode(_ANY_DECODER, data)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes | str) -> _T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _schema_error(decoder, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's depth guard: the interpreter's (1,000-10,000 deep)
        raise DecodeError("the body nests JSON deeper than the decoder allows") from None


def _schema_error(decoder: msgspec.json.Decoder[Any], detail: str) -> DecodeError:
    path_match = _PATH_IN_MESSAGE.search(detail)
    path = path_match.group(1) if path_match else "$"
    missing = _MISSING_FIELD.match(detail)
    if missing:
        path = f"{path}.{missing.group(1)}"
    name = getattr(decoder.type, "__name__", "expected")
    return DecodeError(f"the body does not fit the {name} schema: {detail}", path=path)


# --- encoding -------------------------------------------------------------------------

def _output_type(model: type[_Model]) -> type[msgspec.Struct]:
    """A twin of `model` keyed by attribute names, for snake_case output.

    `msgspec.convert(..., from_attributes=True)` fills it in C, which is about twice as
    fast as building dicts in Python. Scalars are typed `Any` so they pass through as
    they are; nested models get their own twins.
    """
    fields = []
    for field in msgspec.structs.fields(model):
        nested = _nested_model(field.type)
        field_type = Any if nested is None else _output_type(nested) | None
        fields.append((field.name, field_type))
    return msgspec.defstruct(f"{model.__name__}Output", fields, kw_only=True, gc=False)


def _nested_model(field_type: Any) -> type[_Model] | None:
    for candidate in (field_type, *get_args(field_type)):
        if isinstance(candidate, type) and issubclass(candidate, _Model):
            return candidate
    return None


_OUTPUT_TYPES: dict[type[_Model], Any] = {
    model: _output_type(model) for model in (UserProfile, Video, User, UserStats, Music, VideoStats)
}


def _snake_value(value: Any) -> Any:
    """`value` with every model turned into its snake_case-keyed twin."""
    if isinstance(value, _Model):
        return msgspec.convert(value, _OUTPUT_TYPES[type(value)], from_attributes=True)
    if isinstance(value, dict):
        return {key: _snake_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_snake_value(item) for item in value]
    return value


def flatten_record(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: `{"user": {"id": "1"}}` ->
    `{"user.id": "1"}` (the CSV columns' names, in the same order)."""
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            flat.update(flatten_record(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def flat_columns(model: type[_Model], prefix: str = "") -> list[str]:
    """The dotted snake_case column names of `model` flattened (`user.id`, `stats.heart`),
    in field order: the columns of a CSV output."""
    columns: list[str] = []
    for field in msgspec.structs.fields(model):
        nested = _nested_model(field.type)
        name = prefix + field.name
        columns.extend(flat_columns(nested, name + ".") if nested else [name])
    return columns


_FLAT_COLUMNS: dict[type[_Model], tuple[str, ...]] = {
    model: tuple(flat_columns(model)) for model in _OUTPUT_TYPES
}


def to_builtins(value: Any) -> Any:
    """`value` as JSON-ready builtins: models become dicts with snake_case keys and
    datetimes RFC 3339 strings (`2023-11-14T22:13:20Z`). Dicts, lists and tuples holding
    models are converted too."""
    return msgspec.to_builtins(_snake_value(value))


def encode_json(value: Any) -> bytes:
    """`value` as compact JSON bytes, with the same shape as `to_builtins(value)`."""
    return _ENCODER.encode(_snake_value(value))


class _BinaryWriter(Protocol):
    def write(self, data: bytes | bytearray, /) -> object: ...


class JsonLinesWriter:
    """Writes one compact JSON document plus a newline per `write` call.

    Encodes into a buffer that is reused from line to line, then hands it to
    `sink.write` in a single call (a whole line at once, never part of one). The sink
    must be done with the buffer when `write` returns: a file is; an asyncio
    transport, which may keep a reference, is not (use `encode_line` there).
    """

    def __init__(self, sink: _BinaryWriter) -> None:
        self._sink = sink
        self._buffer = bytearray(1024)

    def encode_line(self, value: Any) -> bytes:
        """The line `write` would write, as bytes."""
        return bytes(self._encode_line(value))

    def write(self, value: Any) -> int:
        """Encode `value` (shaped as `to_builtins` shapes it) and write it as one line.

        Returns the number of bytes written.
        """
        line = self._encode_line(value)
        self._sink.write(line)
        return len(line)

    def _encode_line(self, value: Any) -> bytearray:
        _ENCODER.encode_into(_snake_value(value), self._buffer)
        self._buffer.extend(b"\n")
        return self._buffer
