"""Data out (issue 14): `to_dict` turns models and bulk results into the rows the CLI writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import rows, run

from tiktok_async import Result, TikTokClient, VideoRef, to_dict
from tiktok_async._exceptions import ServerError
from tiktok_async._kinds import USERS, VIDEOS
from tiktok_async.emulator import Emulator, existing_handle, missing_handle, video_id_for

Factory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=0, upstream_jitter_ms=0)


async def fetched_users(emu: Emulator, handles: list[str]) -> list[Result[Any]]:
    async with TikTokClient(emu.api_key, emu.base_url) as client:
        return [r async for r in client.fetch_users(handles, ordered=True)]


async def test_result_rows_say_how_each_input_ended(emulator: Emulator) -> None:
    found, missing = existing_handle(0), missing_handle(0)
    results = await fetched_users(emulator, [found, missing, "not a handle!"])
    ok, not_found, invalid = (to_dict(r) for r in results)
    profile = results[0].value
    assert profile is not None
    assert ok["input"] == found
    assert ok["key"] == found.lower()
    assert ok["user"]["id"] == profile.user.id
    assert ok["stats"]["follower_count"] == profile.stats.follower_count
    assert (ok["status"], ok["error"]) == ("ok", None)
    assert not_found == {"input": missing, "key": missing.lower(), "status": "not_found",
                         "error": "User not found"}
    assert invalid["key"] is None
    assert invalid["status"] == "invalid"
    assert invalid["error"].startswith("not a TikTok handle: ' ' is not allowed")


async def test_flat_result_rows_carry_the_csv_columns(emulator: Emulator) -> None:
    (result,) = await fetched_users(emulator, [existing_handle(1)])
    flat = to_dict(result, flat=True)
    assert list(flat) == ["input", "key", *USERS.columns, "status", "error"]
    assert result.value is not None
    assert flat["stats.follower_count"] == result.value.stats.follower_count


async def test_ok_rows_match_what_the_cli_writes(emulator: Emulator, tmp_path: Path) -> None:
    handles = [existing_handle(2), f"@{existing_handle(3).upper()}"]
    (tmp_path / "in.txt").write_text("\n".join(handles) + "\n")
    code, _, err = await run(emulator, "users", str(tmp_path / "in.txt"),
                             "-o", str(tmp_path / "out.jsonl"))
    assert code == 0, err
    written = {row["input"]: row for row in rows(tmp_path / "out.jsonl")}
    for result in await fetched_users(emulator, handles):
        row, cli_row = to_dict(result), written[result.input]
        assert {name: row[name] for name in cli_row} == cli_row
        assert set(row) - set(cli_row) <= {"status", "error"}


async def test_video_rows_keep_a_pair_input_as_a_list(emulator: Emulator) -> None:
    handle = existing_handle(0)
    ref = VideoRef(handle, video_id_for(handle))
    async with TikTokClient(emulator.api_key, emulator.base_url) as client:
        (result,) = [r async for r in client.fetch_videos([ref])]
    row = to_dict(result, flat=True)
    assert row["input"] == [ref.handle, ref.video_id]
    assert list(row)[2:-2] == list(VIDEOS.columns)
    assert result.value is not None
    assert row["author_stats.follower_count"] == result.value.author_stats.follower_count


def test_a_failed_result_row_names_the_failure() -> None:
    error = ServerError("Internal server error", status=500)
    row = to_dict(Result("a.b", "a.b", "a.b", error=error, attempts=6))
    assert row == {"input": "a.b", "key": "a.b", "status": "failed",
                   "error": "Internal server error"}


def test_an_input_that_is_no_plain_data_is_written_as_text() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    assert to_dict(Result(Opaque(), None, None))["input"] == "opaque"


@pytest.mark.parametrize("value", [None, {"user": {}}, "text"])
def test_to_dict_refuses_what_is_neither_a_model_nor_a_result(value: object) -> None:
    with pytest.raises(TypeError, match="a model or a Result"):
        to_dict(value)  # type: ignore[arg-type]
