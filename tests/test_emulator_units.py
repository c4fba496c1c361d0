"""The emulator's pure parts, without a server: bucket, quota, routes, data, faults, stats."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tiktok_async.emulator import (
    Faults,
    Quota,
    StatsSnapshot,
    TokenBucket,
    _data,
    existing_handle,
    is_missing,
    is_video_missing,
    key_label,
    missing_handle,
    missing_video_id,
    video_id_for,
)
from tiktok_async.emulator._db import Database, DatabaseOpenError
from tiktok_async.emulator._faults import FaultPlan
from tiktok_async.emulator._gateway import UsagePlan, match_route, parse_period
from tiktok_async.emulator._store import iso_timestamp


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- token bucket and quota ---------------------------------------------------------------


def test_bucket_starts_full_then_refuses() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=5, clock=clock)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_rate_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=5, clock=clock)
    for _ in range(5):
        bucket.try_acquire()
    clock.now += 0.1  # 2 tokens
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]
    clock.now += 60  # capped at burst
    assert sum(bucket.try_acquire() for _ in range(10)) == 5


def test_bucket_passes_at_most_burst_plus_rate_times_elapsed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=5, clock=clock)
    passed = 0
    for _ in range(10_000):  # a flood over 10 s, one request every ms
        passed += bucket.try_acquire()
        clock.now += 0.001
    assert passed <= 5 + 20 * 10
    assert passed >= 5 + 20 * 10 - 1


def test_bucket_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0)


def test_quota_counts_per_window_and_resets() -> None:
    clock = FakeClock()
    quota = Quota(limit=3, period=60, clock=clock)
    assert [quota.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 30
    assert not quota.try_acquire()
    assert quota.reset_in() == pytest.approx(30)
    clock.now += 30
    assert quota.try_acquire()


def test_usage_plan_is_per_key_and_says_which_limit() -> None:
    clock = FakeClock()
    plan = UsagePlan(rate=1, burst=2, quota=3, quota_period=3600, clock=clock)
    assert [plan.check("a") for _ in range(3)] == [None, None, "throttle"]
    assert plan.check("b") is None
    clock.now += 1
    assert plan.check("a") is None
    clock.now += 10
    assert plan.check("a") == "quota"


def test_usage_plan_burst_defaults_to_one_second_of_rate() -> None:
    assert UsagePlan(2.5, None, None, 1).burst == 3
    assert not UsagePlan(None, None, None, 1).active


def test_quota_periods_parse() -> None:
    assert parse_period("day") == 86_400
    assert parse_period("Week") == 7 * 86_400
    assert parse_period("90") == 90
    with pytest.raises(ValueError, match=re.escape(
            "'fortnight' is not a period: seconds (3600), or one of day, week, month")):
        parse_period("fortnight")


# --- routes -------------------------------------------------------------------------------

P = "/dev/tiktok"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{P}/user/some.handle", ("user", ("some.handle",))),
        (f"{P}/user/some.handle?x=1", ("user", ("some.handle",))),
        (f"{P}/user/some.handle/", ("user", ("some.handle",))),
        (f"{P}/video/h_1/7301234567890123456", ("video", ("h_1", "7301234567890123456"))),
        (f"{P}/user/a%2Fb", ("user", ("a/b",))),
        (f"{P}/user/%C3%A9t%C3%A9", ("user", ("été",))),
    ],
)
def test_routes_match_and_decode_parts_after_the_split(
    path: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    assert match_route(path, P) == expected


@pytest.mark.parametrize(
    "path",
    [f"{P}/user/", f"{P}/user", f"{P}/user/a/b", f"{P}/video/h", f"{P}/video/h/",
     f"{P}/video//1", f"{P}/users/x", f"{P}x/user/x", "/user/x", "/", f"{P}//user/x"],
)
def test_unknown_routes_do_not_match(path: str) -> None:
    assert match_route(path, P) is None


# --- data ---------------------------------------------------------------------------------


def test_same_data_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json; from tiktok_async.emulator import _data as d; "
        "print(json.dumps([d.make_user('Some.Handle'), d.make_user_stats('x.y'), "
        "d.make_video('x.y', '7301234567890123456')], ensure_ascii=False))"
    )
    mine = [_data.make_user("Some.Handle"), _data.make_user_stats("x.y"),
            _data.make_video("x.y", "7301234567890123456")]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             check=True, encoding="utf-8").stdout
        assert json.loads(out) == mine


def test_handles_compare_case_insensitively() -> None:
    assert _data.make_user("Some.Handle") == _data.make_user("some.handle")


def test_users_look_like_tiktok_users() -> None:
    users = [_data.make_user(existing_handle(i)) for i in range(400)]
    ids = [u["id"] for u in users]
    assert all(i.isdigit() for i in ids)
    assert sum(len(i) == 19 for i in ids) > 300
    assert any(len(i) < 19 for i in ids)
    assert all(u["id_dup"] == u["id"] for u in users)
    assert all(u["secUid"].startswith("MS4wLjABAAAA") for u in users)
    assert {len(u["secUid"]) for u in users} == {55, 76}
    assert any(u["isVerified"] for u in users)
    assert any(u["isPrivateAccount"] for u in users)
    assert any(u["profileBio"] is None for u in users)
    texts = "".join(u["nickname"] + (u["profileBio"] or "") for u in users)
    assert any("\u0590" <= ch <= "\u06ff" for ch in texts)  # Hebrew or Arabic
    assert any(ord(ch) > 0xFFFF for ch in texts)  # emoji outside the BMP


def test_big_counts_pass_2_31_and_heart_wraps_to_int32() -> None:
    stats = [_data.make_user_stats(existing_handle(i)) for i in range(300)]
    assert any(s["heartCount"] >= 2**31 for s in stats)
    assert any(s["heart"] < 0 for s in stats)
    for s in stats:
        assert s["heart"] == _data.wrap_int32(s["heartCount"])
        assert -(2**31) <= s["heart"] < 2**31
    assert _data.wrap_int32(11_907_467_940) == -977_433_948


def test_videos_create_time_is_id_shifted_and_photos_last_zero() -> None:
    videos = [_data.make_video("x.y", video_id_for("x.y", i)) for i in range(200)]
    for v in videos:
        assert v["createTime"] == str(int(v["id"]) >> 32)
    assert any(v["duration"] == 0 for v in videos)
    assert any(v["stats"]["playCount"] >= 2**31 for v in videos)


def test_missing_handles_are_deterministic_and_nameable() -> None:
    assert is_missing("missing_anything")
    assert is_missing("MISSING_x")
    assert not is_missing("broken_x", share=0.99)
    handle = missing_handle(3)
    assert is_missing(handle)
    assert not handle.startswith("missing_")
    assert not is_missing(existing_handle(3))
    share = sum(is_missing(f"h{i}") for i in range(20_000)) / 20_000
    assert 0.01 < share < 0.03  # the default share is 2%


def test_missing_videos_follow_the_documented_rule() -> None:
    handle = existing_handle(0)
    assert is_video_missing(handle, missing_video_id(handle))
    assert is_video_missing(handle, "123")  # before TikTok's epoch
    assert is_video_missing(handle, "9" * 40)  # 2^64 and above
    assert is_video_missing(handle, "0" * 5000 + "1")  # no int() of a huge string
    assert is_video_missing(missing_handle(0), video_id_for(handle))
    assert not is_video_missing(handle, video_id_for(handle, 5))


def test_iso_timestamps_have_milliseconds_and_z() -> None:
    assert iso_timestamp(1_709_294_400.5) == "2024-03-01T12:00:00.500Z"


async def test_a_database_that_cannot_be_opened_is_named_with_the_reason(
    tmp_path: Path
) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_bytes(b"not a database, " * 64)
    for path, reason in [(tmp_path, "it is a folder"), (not_a_db, "file is not a database"),
                         (tmp_path / "a" / "x.db", f"the folder {tmp_path / 'a'} does not")]:
        with pytest.raises(DatabaseOpenError, match=re.escape(
                f"cannot open the database {path}: {reason}")):
            await Database(str(path)).open()


# --- faults -------------------------------------------------------------------------------


def test_fault_spec_number_spreads_over_5xx() -> None:
    faults = Faults.parse("0.08")
    assert (faults.http_500, faults.http_502, faults.http_503, faults.http_504) == (
        0.02, 0.02, 0.02, 0.02)
    assert faults.drop == 0


def test_fault_spec_list_sets_kinds() -> None:
    faults = Faults.parse("500=0.1, drop=0.05,slow=0.01,slow_seconds=2")
    assert (faults.http_500, faults.drop, faults.slow, faults.slow_seconds) == (
        0.1, 0.05, 0.01, 2.0)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("418=0.1")
    with pytest.raises(ValueError, match="add up"):
        Faults(http_500=0.7, drop=0.5)


@pytest.mark.parametrize(("spec", "says"), [
    ("500=2", "500=2: a share is the fraction of requests that get the fault, from 0 to 1"),
    ("2", "2: a share is the fraction"),
    ("500=0.7,drop=0.5", "the fault shares add up to 1.2 (500=0.7, drop=0.5): together"),
    ("bogus", "'bogus' is neither a share (0.05) nor a list of kind=value"),
    ("500=abc", "500=abc: a number expected after '='"),
    ("freeze_every=4,freeze_seconds=5",
     "freeze_seconds (5) must be shorter than freeze_every (4)"),
])
def test_a_fault_spec_that_does_not_fit_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Faults.parse(spec)


def test_an_unknown_fault_kind_lists_the_kinds_there_are() -> None:
    kinds = "kinds 500, 502, 503, 504, drop, truncate, slow (shares), fields slow_seconds"
    with pytest.raises(ValueError, match=re.escape(f"unknown fault 'bogus'; {kinds}")):
        Faults.parse("bogus=0.1")


def test_fault_draws_repeat_with_the_seed() -> None:
    faults = Faults(http_500=0.2, drop=0.1, truncate=0.1)

    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(faults, seed=seed)
        return [plan.pick() for _ in range(200)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert 20 < draws(7).count("500") < 60


def test_injected_faults_come_first_then_stop() -> None:
    plan = FaultPlan(Faults(), seed=0)
    armed = [plan.armed]
    plan.inject("503", 2)
    armed.append(plan.armed)
    assert [plan.pick(), plan.pick(), plan.pick()] == ["503", "503", None]
    armed.append(plan.armed)
    assert armed == [False, True, False]
    assert plan.applied == {"503": 2}
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan.inject("teapot")


# --- stats --------------------------------------------------------------------------------


def test_stats_snapshot_counts_and_windows() -> None:
    k = key_label("secret")
    snap = StatsSnapshot(
        rows={(k, "user", 200): 3, (k, "user", 429): 2, ("-", "unknown", 403): 1},
        arrivals=((0.0, 200), (0.5, 200), (0.9, 429), (1.6, 200)),
    )
    assert snap.total == 6
    assert snap.count(status=200) == 3
    assert snap.count(key="secret", route="user") == 5
    assert snap.by("status") == {200: 3, 429: 2, 403: 1}
    assert snap.max_in_window(1.0) == 2
    assert snap.max_in_window(1.0, status=None) == 3
    assert "secret" not in json.dumps(snap.to_json())
    assert len(k) == 12


def test_busiest_window_counts_a_closed_window_over_unordered_times() -> None:
    from tiktok_async.emulator import busiest_window

    assert busiest_window([2.0, 0.0, 1.0, 0.5, 3.5]) == 3  # 0.0, 0.5, 1.0 (closed at 1.0)
    assert busiest_window([2.0, 0.0, 1.0, 0.5, 3.5], 0.5) == 2
    assert busiest_window([]) == 0
