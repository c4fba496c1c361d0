"""Micro-benchmark of decoding (and encoding) one user profile and one video.

Our Structs (msgspec, lax mode) against msgspec in strict mode, `json.loads`, orjson
and pydantic v2 (each only if installed), on the recorded bodies in `tests/samples`.
Prints microseconds per object, the best of several repeats.
Run: `python -m benchmarks.decode_micro` (`--number N`, `--repeat K`).
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from tiktok_async._models import (
    UserProfile,
    Video,
    decode_user_profile,
    decode_video,
    encode_json,
    to_builtins,
)

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "samples"
USER_BODY = (SAMPLES / "user_200" / "body").read_bytes()
VIDEO_BODY = (SAMPLES / "video_200" / "body").read_bytes()
# Strict mode cannot take createTime as epoch text: it gets the same body with RFC 3339.
VIDEO_BODY_RFC3339 = json.dumps(
    {**json.loads(VIDEO_BODY), "createTime": "2023-11-14T08:39:03Z"}
).encode()


def candidates() -> dict[str, tuple[Callable[[bytes], Any], Callable[[bytes], Any]]]:
    """name -> (decode a user body, decode a video body)."""
    found: dict[str, tuple[Callable[[bytes], Any], Callable[[bytes], Any]]] = {
        "tiktok_async (msgspec Structs, lax)": (decode_user_profile, decode_video),
        "msgspec Structs, strict (createTime as RFC 3339)": _msgspec_strict(),
        "json.loads (dicts, no validation)": (json.loads, json.loads),
    }
    try:
        import orjson
    except ImportError:
        pass
    else:
        found["orjson.loads (dicts, no validation)"] = (orjson.loads, orjson.loads)
    pydantic_pair = _pydantic()
    if pydantic_pair is not None:
        found["pydantic v2 models (model_validate_json)"] = pydantic_pair
    return found


def _msgspec_strict() -> tuple[Callable[[bytes], Any], Callable[[bytes], Any]]:
    user_decoder = msgspec.json.Decoder(UserProfile)
    video_decoder = msgspec.json.Decoder(Video)
    return user_decoder.decode, lambda _body: video_decoder.decode(VIDEO_BODY_RFC3339)


def _pydantic() -> tuple[Callable[[bytes], Any], Callable[[bytes], Any]] | None:
    try:
        from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
        from pydantic.alias_generators import to_camel
    except ImportError:
        return None

    class Model(BaseModel):
        model_config = ConfigDict(frozen=True, alias_generator=AliasGenerator(to_camel))

    class PUser(Model):
        id: str
        nickname: str | None = None
        id_dup: str | None = Field(default=None, alias="id_dup")
        sec_uid: str | None = None
        profile_bio: str | None = None
        profile_picture_url: str | None = None
        is_verified: bool = False
        is_private_account: bool = False
        created_at: datetime | None = None
        updated_at: datetime | None = None

    class PUserStats(Model):
        digg_count: int
        follower_count: int
        following_count: int
        friend_count: int
        heart_count: int
        heart: int
        video_count: int

    class PUserProfile(Model):
        user: PUser
        stats: PUserStats

    class PMusic(Model):
        id: str
        title: str | None = None
        author_name: str | None = None
        album: str | None = None
        duration: int = 0
        original: bool = False
        private: bool = False
        created_at: datetime | None = None
        updated_at: datetime | None = None

    class PVideoStats(Model):
        digg_count: int
        collect_count: int
        comment_count: int
        play_count: int
        repost_count: int
        share_count: int

    class PVideo(Model):
        id: str
        description: str | None = None
        create_time: datetime
        duration: int
        music: PMusic | None = None
        stats: PVideoStats
        author: PUser
        author_stats: PUserStats

    return PUserProfile.model_validate_json, PVideo.model_validate_json


def per_object_us(function: Callable[[Any], Any], value: Any, number: int, repeat: int) -> float:
    best = min(timeit.repeat(partial(function, value), number=number, repeat=repeat))
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is kept")
    args = parser.parse_args()
    print(f"user body {len(USER_BODY)} B, video body {len(VIDEO_BODY)} B; us per object")
    print(f"{'decoder':52} {'user':>8} {'video':>8}")
    for name, (decode_user, decode_vid) in candidates().items():
        user_us = per_object_us(decode_user, USER_BODY, args.number, args.repeat)
        video_us = per_object_us(decode_vid, VIDEO_BODY, args.number, args.repeat)
        print(f"{name:52} {user_us:8.2f} {video_us:8.2f}")
    profile, video = decode_user_profile(USER_BODY), decode_video(VIDEO_BODY)
    print(f"\n{'output (snake_case keys)':52} {'user':>8} {'video':>8}")
    for name, encode in (("encode_json", encode_json), ("to_builtins", to_builtins)):
        user_us = per_object_us(encode, profile, args.number, args.repeat)
        video_us = per_object_us(encode, video, args.number, args.repeat)
        print(f"{name:52} {user_us:8.2f} {video_us:8.2f}")


if __name__ == "__main__":
    main()
