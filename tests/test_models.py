"""Models: wire names, lenient-where-needed decoding, errors with paths, JSON output."""

from __future__ import annotations

import inspect
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tiktok_async._exceptions import DecodeError, MalformedBodyError
from tiktok_async._models import (
    JsonLinesWriter,
    Music,
    User,
    UserProfile,
    UserStats,
    Video,
    VideoStats,
    decode_json,
    decode_user_profile,
    decode_video,
    encode_json,
    flat_columns,
    flatten_record,
    to_builtins,
)

SAMPLES = Path(__file__).parent / "samples"
UTC = timezone.utc
VIDEO_ID = 7301234567890123456
CREATED = datetime.fromtimestamp(VIDEO_ID >> 32, UTC)


def sample_body(case: str) -> bytes:
    return (SAMPLES / case / "body").read_bytes()


def sample_json(case: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(sample_body(case))
    return document


def video_with(**changes: Any) -> bytes:
    document = sample_json("video_200")
    document.update(changes)
    return json.dumps(document).encode()


def profile_with(user: dict[str, Any] | None = None, **stats: Any) -> bytes:
    document = sample_json("user_200")
    document["user"].update(user or {})
    document["stats"].update(stats)
    return json.dumps(document).encode()


def test_user_profile_decodes_every_field_by_its_snake_case_name() -> None:
    profile = decode_user_profile(sample_body("user_200"))
    user, stats = profile.user, profile.stats
    assert user.id == "6812345678901234567"
    assert user.nickname == "Some Handle ✨"
    assert user.id_dup == "some.handle"
    assert user.sec_uid is not None
    assert user.sec_uid.startswith("MS4wLjABAAAA")
    assert user.profile_bio is not None
    assert user.profile_bio.startswith("Cooking")
    assert user.profile_picture_url is not None
    assert user.is_verified is True
    assert user.is_private_account is False
    assert user.created_at == datetime(2026, 11, 20, 10, 15, 30, 123000, UTC)
    assert user.updated_at == datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
    assert stats == UserStats(
        digg_count=15234,
        follower_count=1_250_000,
        following_count=321,
        friend_count=87,
        heart_count=98_765_432,
        heart=98_765_432,
        video_count=412,
    )


def test_video_decodes_with_music_stats_author_and_author_stats() -> None:
    video = decode_video(sample_body("video_200"))
    assert video.id == str(VIDEO_ID)
    assert video.create_time == CREATED
    assert video.duration == 47
    assert video.music is not None
    assert video.music.author_name == "Some Handle"
    assert video.music.album is None
    assert video.music.original is True
    assert video.stats == VideoStats(
        digg_count=120_400,
        collect_count=8_800,
        comment_count=1_543,
        play_count=2_400_000,
        repost_count=0,
        share_count=3_200,
    )
    assert video.author.id_dup == "some.handle"
    assert video.author_stats.follower_count == 1_250_000


def test_unknown_fields_are_ignored() -> None:
    assert "someFutureField" in sample_json("video_200")
    assert decode_video(sample_body("video_200")).id == str(VIDEO_ID)


@pytest.mark.parametrize(
    "create_time",
    [
        str(VIDEO_ID >> 32),
        VIDEO_ID >> 32,
        float(VIDEO_ID >> 32),
        CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"),
        CREATED.astimezone(timezone(timedelta(hours=8))).isoformat(),
    ],
    ids=["epoch-string", "epoch-int", "epoch-float", "rfc3339-z", "rfc3339-offset"],
)
def test_create_time_accepts_epoch_text_numbers_and_rfc3339(create_time: object) -> None:
    created = decode_video(video_with(createTime=create_time)).create_time
    assert created == CREATED
    assert created.utcoffset() is not None


def test_epoch_create_time_is_utc() -> None:
    assert decode_video(video_with(createTime="0")).create_time.tzinfo == UTC


@pytest.mark.parametrize("create_time", ["yesterday", "2023-11-14T22:13:20", None, True])
def test_bad_create_time_names_its_path(create_time: object) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_video(video_with(createTime=create_time))
    assert caught.value.path == "$.createTime"


def test_naive_created_at_is_refused() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_user_profile(profile_with({"createdAt": "2026-11-20T10:15:30"}))
    assert caught.value.path == "$.user.createdAt"


def test_photo_post_has_zero_duration_and_may_lack_music() -> None:
    video = decode_video(video_with(duration=0, music=None))
    assert video.duration == 0
    assert video.music is None


def test_null_and_missing_optional_text_become_none() -> None:
    profile = decode_user_profile(sample_body("user_sparse_big_counts_200"))
    user = profile.user
    assert user.nickname is None  # null on the wire
    assert user.profile_bio is None  # null on the wire
    assert user.profile_picture_url is None  # missing on the wire
    assert user.id_dup == "x."


def test_counts_are_unbounded_and_may_be_negative() -> None:
    stats = decode_user_profile(sample_body("user_sparse_big_counts_200")).stats
    assert stats.follower_count == 3_000_000_000
    assert stats.video_count == 2**31
    assert stats.heart_count == 11_907_467_940
    assert stats.heart == -977_433_948
    huge = decode_user_profile(profile_with(heartCount=2**70, heart=-(2**70))).stats
    assert (huge.heart_count, huge.heart) == (2**70, -(2**70))


def test_counts_sent_as_digit_strings_are_accepted() -> None:
    assert decode_user_profile(profile_with(followerCount="1250000")).stats.follower_count == (
        1_250_000
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (profile_with(followerCount="1.2M"), "$.stats.followerCount"),
        (profile_with(followerCount=None), "$.stats.followerCount"),
        (profile_with(heart=1.5), "$.stats.heart"),
        (profile_with({"id": 6812345678901234567}), "$.user.id"),
        (profile_with({"isVerified": "maybe"}), "$.user.isVerified"),
        (profile_with({"nickname": 5}), "$.user.nickname"),
        (b'{"user": {"nickname": "x"}, "stats": {}}', "$.user.id"),
        (b'{"user": {"id": "1"}}', "$.stats"),
        (b"[]", "$"),
        (b"null", "$"),
    ],
)
def test_schema_mismatch_raises_decode_error_naming_the_path(body: bytes, path: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_user_profile(body)
    assert caught.value.path == path
    assert "UserProfile" in str(caught.value)


def test_video_schema_mismatch_names_nested_paths() -> None:
    author = sample_json("video_200")["author"]
    with pytest.raises(DecodeError) as caught:
        decode_video(video_with(author={**author, "isPrivateAccount": "perhaps"}))
    assert caught.value.path == "$.author.isPrivateAccount"


@pytest.mark.parametrize("body", [b"", b"{", b"<html>502</html>", b'{"user": {"id": "1"', b"\xff"])
def test_a_body_that_is_not_json_raises_decode_error_without_path(body: bytes) -> None:
    with pytest.raises(MalformedBodyError) as caught:  # a DecodeError the retry layer retries
        decode_user_profile(body)
    assert caught.value.path is None
    assert "not valid JSON" in str(caught.value)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Past the recursion guard of every Python we support: msgspec's limit is the interpreter's,
# about 1,000 levels on 3.10-3.11, 1,500 on 3.12, 10,000 on 3.13.
@pytest.mark.parametrize("depth", [100_000, 1_000_000])
@pytest.mark.parametrize(
    ("decode", "real"),
    [(decode_user_profile, profile_with), (decode_video, video_with), (decode_json, video_with)],
)
def test_json_nested_too_deep_is_a_decode_error_not_a_recursion_error(
    depth: int, decode: Any, real: Any
) -> None:
    body = real()[:-1] + b',"unknown":' + nested(depth) + b"}"  # a deep unknown field
    with pytest.raises(DecodeError) as caught:
        decode(body)
    assert type(caught.value) is DecodeError  # well-formed JSON: not the retried kind
    assert "deeper" in str(caught.value)


def test_json_nested_a_little_in_an_unknown_field_is_ignored() -> None:
    body = video_with()[:-1] + b',"unknown":' + nested(200) + b"}"
    assert decode_video(body).id == str(VIDEO_ID)


def test_models_are_frozen_and_keyword_only() -> None:
    user = User(id="1")
    with pytest.raises(AttributeError):
        user.id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        User("1")  # type: ignore[call-arg]


def test_models_compare_and_hash_by_value() -> None:
    assert User(id="1", nickname="a") == User(id="1", nickname="a")
    assert hash(User(id="1")) == hash(User(id="1"))


def built_video() -> Video:
    stats = UserStats(
        digg_count=1,
        follower_count=2,
        following_count=3,
        friend_count=4,
        heart_count=5,
        heart=5,
        video_count=6,
    )
    return Video(
        id="1",
        create_time=datetime(2026, 11, 20, 10, 15, 30, 123000, UTC),
        duration=0,
        music=Music(id="9", created_at=datetime(2026, 1, 1, tzinfo=UTC)),
        stats=VideoStats(
            digg_count=1,
            collect_count=2,
            comment_count=3,
            play_count=4,
            repost_count=5,
            share_count=6,
        ),
        author=User(id="7", id_dup="h", is_private_account=True),
        author_stats=stats,
    )


def test_to_builtins_uses_snake_case_keys_and_rfc3339_datetimes() -> None:
    plain = to_builtins(built_video())
    assert plain["create_time"] == "2026-11-20T10:15:30.123000Z"
    assert plain["music"]["created_at"] == "2026-01-01T00:00:00Z"
    assert plain["author"]["id_dup"] == "h"
    assert plain["author"]["is_private_account"] is True
    assert plain["author_stats"]["follower_count"] == 2
    assert plain["description"] is None
    assert set(plain) == set(Video.__struct_fields__)


def test_to_builtins_converts_models_inside_containers() -> None:
    profile = decode_user_profile(sample_body("user_200"))
    plain = to_builtins({"input": "@some.handle", "value": profile, "more": [profile.stats]})
    assert plain["value"]["user"]["profile_picture_url"].startswith("https://")
    assert plain["more"][0]["heart_count"] == 98_765_432
    assert plain["input"] == "@some.handle"


def test_encode_json_matches_to_builtins() -> None:
    video = decode_video(sample_body("video_200"))
    assert json.loads(encode_json(video)) == to_builtins(video)


def test_encode_json_keeps_big_and_negative_counts_exact() -> None:
    profile = decode_user_profile(sample_body("user_sparse_big_counts_200"))
    assert json.loads(encode_json(profile))["stats"]["heart_count"] == 11_907_467_940


def test_jsonl_writer_writes_whole_lines_and_reuses_its_buffer() -> None:
    sink = io.BytesIO()
    writer = JsonLinesWriter(sink)
    video = decode_video(sample_body("video_200"))
    written = writer.write({"value": video})
    writer.write({"value": None})
    lines = sink.getvalue().splitlines(keepends=True)
    assert len(lines) == 2
    assert written == len(lines[0])
    assert json.loads(lines[0])["value"]["author"]["id_dup"] == "some.handle"
    assert lines[1] == b'{"value":null}\n'
    assert writer.encode_line([1]) == b"[1]\n"


def test_decode_json_returns_builtins_or_raises_decode_error() -> None:
    assert decode_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert decode_json('"text"') == "text"
    with pytest.raises(MalformedBodyError):
        decode_json(b'{"a": ')



# --- data out (issue 14): to_dict, flat rows, the documented fields ---------------------

ALL_MODELS = (UserProfile, User, UserStats, Video, VideoStats, Music)


def test_model_to_dict_is_the_snake_case_shape_the_cli_writes() -> None:
    video = decode_video(sample_body("video_200"))
    assert video.to_dict() == to_builtins(video) == json.loads(encode_json(video))
    assert video.to_dict()["author_stats"]["follower_count"] == video.author_stats.follower_count
    assert "followerCount" not in json.dumps(video.to_dict())


def test_flat_to_dict_has_the_csv_columns_in_order() -> None:
    profile = decode_user_profile(sample_body("user_200"))
    flat = profile.to_dict(flat=True)
    assert list(flat) == flat_columns(UserProfile)
    assert flat["stats.follower_count"] == 1_250_000
    assert flat["user.created_at"] == "2026-11-20T10:15:30.123000Z"
    video = decode_video(sample_body("video_200"))
    assert list(video.to_dict(flat=True)) == flat_columns(Video)


def test_flat_to_dict_of_a_video_without_music_has_its_columns_empty() -> None:
    assert built_video().to_dict(flat=True)["author.id_dup"] == "h"
    bare = decode_video(video_with(music=None)).to_dict(flat=True)
    assert list(bare) == flat_columns(Video)  # the CSV's columns, "music.*" empty
    assert bare["music.id"] is None
    assert bare["music.title"] is None


def test_flatten_record_dots_nested_dicts_only() -> None:
    assert flatten_record({"a": {"b": {"c": 1}, "d": [1]}, "e": None}) == {
        "a.b.c": 1, "a.d": [1], "e": None}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_every_model_documents_every_field_with_its_wire_name(model: type[Any]) -> None:
    """The API reference (mkdocstrings) renders the Attributes section of each model."""
    doc = inspect.cleandoc(model.__doc__ or "")  # as 3.13 compiles it, on 3.10-3.12 too
    section = doc.partition("Attributes:\n")[2]
    entries = re.split(r"^    (?=[a-z_]+(?: \([^)]*\))?: )", section, flags=re.MULTILINE)[1:]
    fields = msgspec.structs.fields(model)
    assert [entry.split(":")[0].split(" ")[0] for entry in entries] == [f.name for f in fields]
    for field, entry in zip(fields, entries, strict=True):
        assert f"Wire: `{field.encode_name}`." in " ".join(entry.split()), field.name
