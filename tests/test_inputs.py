"""Input parsing: every accepted form, every refused one with its reason, and a property test."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiktok_async._exceptions import InvalidInputError
from tiktok_async._inputs import (
    VideoRef,
    handle_key,
    link_kind,
    make_video_ref,
    parse_handle,
    parse_video,
    short_link_in,
    user_path,
    video_path,
)

T = TypeVar("T")
HANDLE_RULE = re.compile(r"[A-Za-z0-9_.]{2,30}")
VIDEO_ID = "7301234567890123456"
USER_ID = "6641141594707361797"
SEC_UID = "MS4wLjABAAAAdZ_NcPPgMneaGrW0hN8O_J_bwLshwNNERRF5DxOw2HKIzk0kdlLrR8RkVl1ksrMO"
NO_HANDLE = "this link carries no handle: the API needs the author's handle"
SHORT_LINK = "a short link: pass --resolve-short-links or resolve it first"
BY_NUMERIC_ID = "a profile by numeric id"


@pytest.mark.parametrize(
    ("text", "handle"),
    [
        ("some.handle", "some.handle"),
        ("@some.handle", "some.handle"),
        ("  @Some.Handle \n", "Some.Handle"),
        ("\ufeff@bom_first\u200b", "bom_first"),
        ("._leading", "._leading"),
        ("_under", "_under"),
        ("1234567890", "1234567890"),
        ("legacy.", "legacy."),
        ("..", ".."),
        ("ab", "ab"),
        ("a" * 30, "a" * 30),
        ("https://www.tiktok.com/@some.handle", "some.handle"),
        ("https://www.tiktok.com/@some.handle/", "some.handle"),
        ("http://tiktok.com/@some.handle", "some.handle"),
        ("HTTPS://WWW.TIKTOK.COM/@Some.Handle", "Some.Handle"),
        ("tiktok.com/@some.handle?lang=en", "some.handle"),
        ("www.tiktok.com/@some.handle?lang=en&is_from_webapp=1#top", "some.handle"),
        ("m.tiktok.com/@some.handle/", "some.handle"),
        ("//www.tiktok.com/@some.handle", "some.handle"),
        ("https://www.tiktok.com/%40some.handle", "some.handle"),
        (" https://www.tiktok.com/@some.handle ", "some.handle"),
    ],
)
def test_handle_forms_are_accepted(text: str, handle: str) -> None:
    assert parse_handle(text) == handle


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@", "too short"),
        ("a", "too short"),
        ("@a", "too short"),
        ("a" * 31, "31 characters is too long"),
        ("@bad handle!", "' ' is not allowed"),
        ("bad-handle", "'-' is not allowed"),
        ("@@double", "'@' is not allowed"),
        ("héllo", "'é' is not allowed"),
        ("ｆｕｌｌｗｉｄｔｈ", "is not allowed"),
        ("some,handle", "',' is not allowed"),
        ("https://www.tiktok.com/", "not a TikTok profile or video URL"),
        ("https://www.tiktok.com/some.handle", "not a TikTok profile or video URL"),
        ("https://www.tiktok.com/@some.handle/live", "not a TikTok profile or video URL"),
        ("https://www.tiktok.com/@bad-handle", "'-' is not allowed"),
        (f"https://www.tiktok.com/@h.h/video/{VIDEO_ID}", "its author's handle is 'h.h'"),
        ("ftp://www.tiktok.com/@some.handle", "expected an http(s) URL"),
        ("https://[www.tiktok.com/@x", "expected an http(s) URL"),
    ],
)
def test_bad_handles_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle(text)
    assert reason in caught.value.reason
    assert caught.value.value == text


def test_handle_error_says_what_a_handle_is() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle("@bad handle!")
    assert str(caught.value) == (
        "'@bad handle!': not a TikTok handle: ' ' is not allowed; "
        "a handle is 2-30 letters (A-Z, a-z), digits, '_' or '.'"
    )


@pytest.mark.parametrize("value", [None, 123, b"some.handle", ["some.handle"]])
def test_non_text_input_is_an_input_error(value: object) -> None:
    with pytest.raises(InvalidInputError, match="expected text"):
        parse_handle(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="expected text"):
        parse_video(value)  # type: ignore[arg-type]


LOOKALIKES = [
    "https://tiktok.com.evil.io/@some.handle",
    "https://evil-tiktok.com/@some.handle",
    "https://tiktok.co/@some.handle",
    "https://www.tiktok.co/@some.handle",
    "https://nottiktok.com/@some.handle",
    "https://www.tiktok.com.evil.io/@some.handle",
    "https://www.tiktok.com./@some.handle",
    "https://tiktok.com@evil.com/@some.handle",
    "https://www.tiktok.com:pass@evil.com/@some.handle",
    "tiktok.com@evil.com/@some.handle",
    "https://evil.com/https://www.tiktok.com/@some.handle",
    "https://xn--tktok-5va.com/@some.handle",
]


@pytest.mark.parametrize("url", LOOKALIKES)
def test_lookalike_hosts_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError, match="not a TikTok"):
        parse_handle(url)
    with pytest.raises(InvalidInputError, match="not a TikTok"):
        parse_video(url.replace("@some.handle", f"@some.handle/video/{VIDEO_ID}"))


def test_userinfo_trick_names_the_real_host() -> None:
    with pytest.raises(InvalidInputError, match=r"its host is 'evil\.com'"):
        parse_handle("https://tiktok.com@evil.com/@some.handle")


@pytest.mark.parametrize(
    "text",
    [
        f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID}",
        f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID}/",
        f"https://www.tiktok.com/@some.handle/photo/{VIDEO_ID}",
        f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID}?is_from_webapp=1&sender_device=pc",
        f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID}#comments",
        f"https://m.tiktok.com/@some.handle/video/{VIDEO_ID}?lang=en",
        f"tiktok.com/@some.handle/video/{VIDEO_ID}",
        f"  www.tiktok.com/@some.handle/video/{VIDEO_ID}  ",
        f"http://tiktok.com/@some.handle/video/{VIDEO_ID}",
        f"some.handle,{VIDEO_ID}",
        f"@some.handle,{VIDEO_ID}",
        f" some.handle , {VIDEO_ID} ",
        f'"some.handle","{VIDEO_ID}"',
        f"'@some.handle','{VIDEO_ID}'",
    ],
)
def test_video_forms_with_a_handle_are_accepted(text: str) -> None:
    assert parse_video(text) == VideoRef("some.handle", VIDEO_ID)


@pytest.mark.parametrize(
    "url",
    [
        f"https://m.tiktok.com/v/{VIDEO_ID}.html",
        f"m.tiktok.com/v/{VIDEO_ID}.html?u_code=x",
        f"https://www.tiktok.com/embed/{VIDEO_ID}",
        f"https://www.tiktok.com/embed/v2/{VIDEO_ID}",
        f"https://www.tiktok.com/embed/v2/{VIDEO_ID}?lang=en#x",
        f"https://www.tiktokv.com/share/video/{VIDEO_ID}/",
        f"https://tiktokv.com/share/video/{VIDEO_ID}.html",
    ],
)
def test_video_forms_without_a_handle_say_so_and_give_the_id(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_video(url)
    assert NO_HANDLE in caught.value.reason
    assert f"'handle,{VIDEO_ID}'" in caught.value.reason


@pytest.mark.parametrize(
    "url",
    [
        "https://vm.tiktok.com/ZMabc123/",
        "vm.tiktok.com/ZMabc123",
        "https://vt.tiktok.com/ZSxyz789/",
        "https://www.tiktok.com/t/ZTRabc123/",
        "tiktok.com/t/ZTRabc123",
    ],
)
def test_short_links_say_they_need_a_redirect(url: str) -> None:
    for parse in (parse_video, parse_handle):
        with pytest.raises(InvalidInputError) as caught:
            parse(url)
        assert caught.value.reason.startswith(SHORT_LINK)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("some.handle", "not a video URL or a pair"),
        (VIDEO_ID, "not a video URL or a pair"),
        (f"some.handle,{VIDEO_ID},extra", "expected one pair"),
        (f",{VIDEO_ID}", "the handle is missing"),
        ("some.handle,", "not a video id"),
        ("some.handle,abc", "not a video id"),
        ("some.handle,-5", "not a video id"),
        ("some.handle,1" + "0" * 25, "not a video id"),
        (f"bad handle,{VIDEO_ID}", "not a TikTok handle"),
        ("https://www.tiktok.com/@some.handle", "a profile URL, not a video URL"),
        ("https://www.tiktok.com/@some.handle/video/", "not a TikTok profile or video URL"),
        ("https://www.tiktok.com/@some.handle/video/12ab", "not a video id"),
        ("https://www.tiktok.com/@some.handle/music/123", "not a TikTok profile or video URL"),
        ("https://www.tiktok.com/v/abc.html", "not a video id"),
        ("https://www.tiktok.com/embed/v3/123", "not a TikTok profile or video URL"),
        ("https://www.tiktokv.com/share/user/abc", "not a TikTok profile or video URL"),
        ("https://www.tiktokv.com/@some.handle/live", "not a TikTok profile or video URL"),
    ],
)
def test_bad_video_inputs_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_video(text)
    assert reason in caught.value.reason


def test_video_id_accepts_one_to_twenty_five_digits() -> None:
    assert parse_video("ab,1").video_id == "1"
    assert parse_video("ab," + "9" * 25).video_id == "9" * 25


def test_make_video_ref_validates_both_parts() -> None:
    assert make_video_ref("@Some.Handle", VIDEO_ID) == VideoRef("Some.Handle", VIDEO_ID)
    assert make_video_ref("ab", 7301234567890123456) == VideoRef("ab", VIDEO_ID)
    assert make_video_ref("ab", f" {VIDEO_ID} ").video_id == VIDEO_ID
    for bad_id in (True, -1, 1.5, "", "12 34", "١٢٣"):
        with pytest.raises(InvalidInputError, match="not a video id"):
            make_video_ref("ab", bad_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a TikTok handle"):
        make_video_ref("a", VIDEO_ID)


def test_handle_key_ignores_case() -> None:
    assert handle_key("Some.Handle") == handle_key("some.HANDLE") == "some.handle"


@pytest.mark.parametrize(
    ("handle", "path"),
    [
        ("some.handle", "user/some.handle"),
        ("Some_Handle", "user/Some_Handle"),
        ("..", "user/%2E%2E"),
        ("...", "user/%2E%2E%2E"),
        (".a", "user/.a"),
    ],
)
def test_user_path_is_relative_and_encoded(handle: str, path: str) -> None:
    assert user_path(handle) == path


def test_video_path_is_relative_and_encoded() -> None:
    assert video_path(VideoRef("some.handle", VIDEO_ID)) == f"video/some.handle/{VIDEO_ID}"
    assert video_path(VideoRef("..", "1")) == "video/%2E%2E/1"


# The paths do not check what they are given: the parsers are the one gate, so whatever
# could reach a path as a handle or an id is refused there.
@pytest.mark.parametrize("handle", ["", "a/b", "..%2F", "a b", "x" * 31, "a?b", "a#b"])
def test_nothing_but_a_bare_handle_reaches_a_path(handle: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_handle(handle)
    with pytest.raises(InvalidInputError):
        make_video_ref(handle, VIDEO_ID)
    with pytest.raises(InvalidInputError):
        parse_video(f"{handle},{VIDEO_ID}")


@pytest.mark.parametrize("video_id", ["../user/x", "12a", "", "1/2"])
def test_no_bad_video_id_reaches_a_path(video_id: str) -> None:
    with pytest.raises(InvalidInputError):
        make_video_ref("ab", video_id)
    with pytest.raises(InvalidInputError):
        parse_video(f"ab,{video_id}")


def test_errors_for_huge_input_stay_short() -> None:
    huge = "https://www.tiktok.com/@" + "a" * 10_000
    with pytest.raises(InvalidInputError) as caught:
        parse_handle(huge)
    assert len(str(caught.value)) < 400


# --- real link forms (issue 14): parsed, or refused naming the real problem -------------

LINK_FORMS_WITHOUT_A_HANDLE = [
    (
        f"https://t.tiktok.com/i18n/share/video/{VIDEO_ID}/?_d=0&region=ID"
        f"&share_item_id={VIDEO_ID}&sharer_language=en",
        "a share link (/i18n/share/video/ID)",
    ),
    (f"https://www.tiktok.com/share/video/{VIDEO_ID}", "a share link (/share/video/ID)"),
    (
        f"https://www.tiktok.com/player/v1/{VIDEO_ID}?music_info=0&description=0",
        "TikTok's embed player link (/player/v1/ID)",
    ),
    (f"https://m.tiktok.com/h5/share/video/{VIDEO_ID}.html", "a share link"),
    (f"https://www.tiktok.com/@/video/{VIDEO_ID}", "the handle after '@' is empty"),
    (f"https://www.tiktok.com/@{SEC_UID}/video/{VIDEO_ID}", "the '@' holds a secUid"),
]


@pytest.mark.parametrize(("url", "what"), LINK_FORMS_WITHOUT_A_HANDLE)
def test_links_without_a_handle_say_the_api_needs_it(url: str, what: str) -> None:
    for parse in (parse_video, parse_handle):
        with pytest.raises(InvalidInputError) as caught:
            parse(url)
        reason = caught.value.reason
        assert reason.startswith(f"{what}")
        assert f"{NO_HANDLE}; pair the video id with it as 'handle,{VIDEO_ID}'" in reason
        assert "not a TikTok URL" not in reason


@pytest.mark.parametrize(
    "url",
    [
        "https://lite.tiktok.com/t/ZTRsKuLgR/",
        "https://vm.tiktok.com/ZMYeYnHwq/",
        "https://vt.tiktok.com/ZS7Jya8m/",
        "https://www.tiktok.com/t/ZTRC5xgJp/?t=1",
        "https://m.tiktok.com/t/ZTRC5xgJp",
    ],
)
def test_short_links_on_every_tiktok_host_name_the_way_out(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_video(url)
    assert caught.value.reason.startswith(SHORT_LINK)
    assert link_kind(url) == "short"
    assert short_link_in(url) == url


@pytest.mark.parametrize(
    ("url", "user_id"),
    [
        (f"https://www.tiktok.com/share/user/{USER_ID}", USER_ID),
        (f"https://www.tiktokv.com/share/user/{USER_ID}", USER_ID),
        (
            f"https://m.tiktok.com/h5/share/usr/{USER_ID}.html?_d=secCgYIASAHKAE"
            f"&language=en&sec_uid={SEC_UID}&u_code=cla7m38fk8dki5",
            USER_ID,
        ),
    ],
)
def test_profiles_by_numeric_id_say_so(url: str, user_id: str) -> None:
    for parse in (parse_handle, parse_video):
        with pytest.raises(InvalidInputError) as caught:
            parse(url)
        assert caught.value.reason == (
            f"{BY_NUMERIC_ID} ({user_id}): the API looks users up by handle; "
            "open the link and use the @handle it shows"
        )


def test_a_secuid_profile_link_says_it_is_not_a_handle() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle(f"https://www.tiktok.com/@{SEC_UID}")
    assert caught.value.reason == (
        f"the '@' holds a secUid ({SEC_UID[:16]}...), TikTok's internal account id, not a "
        "handle: the API looks users up by handle; open the link and use the @handle it shows"
    )


def test_an_empty_handle_in_a_profile_link_says_so() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle("https://www.tiktok.com/@")
    assert caught.value.reason.startswith("the handle after '@' is empty: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Check out Steele Johnson’s video! #TikTok > "
            f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID}?_r=1&_t=8gX2",
            VideoRef("some.handle", VIDEO_ID),
        ),
        (
            f"TikTok: Make Every Second CountCheck out this video https://m.tiktok.com/@some.handle/"
            f"video/{VIDEO_ID}",
            VideoRef("some.handle", VIDEO_ID),
        ),
        (
            f"https://www.tiktok.com/@some.handle/video/{VIDEO_ID} 复制此链接，打开TikTok观看",
            VideoRef("some.handle", VIDEO_ID),
        ),
        (
            f"复制此链接www.tiktok.com/@some.handle/video/{VIDEO_ID}",
            VideoRef("some.handle", VIDEO_ID),
        ),
        (
            f"(see https://www.tiktok.com/@some.handle/photo/{VIDEO_ID}).",
            VideoRef("some.handle", VIDEO_ID),
        ),
    ],
)
def test_the_link_is_taken_out_of_share_text(text: str, expected: VideoRef) -> None:
    assert parse_video(text) == expected


def test_profile_share_text_gives_the_handle_and_keeps_a_final_dot_of_a_handle() -> None:
    text = "Check out Some Name on TikTok! https://www.tiktok.com/@some.handle?_t=8gX&_r=1"
    assert parse_handle(text) == "some.handle"
    assert parse_handle("follow https://www.tiktok.com/@legacy.") == "legacy."


def test_share_text_with_a_short_link_names_the_link_and_the_way_out() -> None:
    text = "Check out Sam's video! #TikTok https://vm.tiktok.com/ZMabc123/"
    with pytest.raises(InvalidInputError) as caught:
        parse_video(text)
    assert caught.value.value == text
    assert caught.value.reason == (
        f"share text: the link in it is 'https://vm.tiktok.com/ZMabc123/': {SHORT_LINK} "
        "(tiktok_async.ShortLinkResolver follows its redirect to the full URL, "
        "https://www.tiktok.com/@handle/video/ID)"
    )
    assert short_link_in(text) == "https://vm.tiktok.com/ZMabc123/"


def test_share_text_with_two_links_is_refused() -> None:
    text = f"https://www.tiktok.com/@a.b/video/{VIDEO_ID} and https://vm.tiktok.com/ZMabc/"
    with pytest.raises(InvalidInputError, match="share text with 2 different links"):
        parse_video(text)


def test_words_without_a_link_are_still_judged_as_a_handle() -> None:
    with pytest.raises(InvalidInputError, match="' ' is not allowed"):
        parse_handle("Check out my page")


@pytest.mark.parametrize(
    "url", ["https://user@www.tiktok.com/@some.handle", "https://a:b@tiktok.com/@some.handle"]
)
def test_a_tiktok_link_with_a_user_name_is_refused_without_contradiction(url: str) -> None:
    userinfo = url.removeprefix("https://").partition("@")[0] + "@"
    with pytest.raises(InvalidInputError) as caught:
        parse_handle(url)
    assert caught.value.reason == (
        f"a TikTok link with {userinfo!r} before its host: TikTok's links never carry a "
        "user name or password; remove it"
    )


def test_a_lookalike_behind_a_user_name_names_the_real_host_and_the_user_name() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle("https://www.tiktok.com:pass@evil.com/@some.handle")
    assert caught.value.reason.startswith(
        "not a TikTok URL: its host is 'evil.com'; 'www.tiktok.com:pass@' before it is a "
        "user name, not the host"
    )


def test_a_port_is_refused_as_a_port() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_handle("https://tiktok.com:8080/@some.handle")
    assert caught.value.reason == "a TikTok link with a port (':8080'): TikTok's links have none"


def test_other_tiktok_hosts_carrying_a_handle_are_read() -> None:
    assert parse_handle("https://www.tiktokv.com/@some.handle") == "some.handle"
    assert parse_video(f"https://t.tiktok.com/@some.handle/video/{VIDEO_ID}").video_id == VIDEO_ID


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://vm.tiktok.com/ZMabc/", "short"),
        (f"https://www.tiktok.com/@a.b/video/{VIDEO_ID}", "target"),
        ("https://www.tiktok.com/@a.b", "target"),
        (f"https://t.tiktok.com/i18n/share/video/{VIDEO_ID}/", "no_handle"),
        (f"https://m.tiktok.com/v/{VIDEO_ID}.html", "no_handle"),
        ("https://www.tiktok.com/", "other"),
        ("https://evil.example/t/ZMabc", "other"),
        ("a.b", "other"),
    ],
)
def test_link_kind_sorts_links_for_the_short_link_resolver(text: str, kind: str) -> None:
    assert link_kind(text) == kind


@pytest.mark.parametrize("text", ["", "some.handle", "https://www.tiktok.com/@a.b", None])
def test_short_link_in_is_none_for_anything_else(text: str) -> None:
    assert short_link_in(text) is None


# --- property tests -------------------------------------------------------------------

handle_like = st.from_regex(r"@?[A-Za-z0-9_.]{0,32}", fullmatch=True)
digits = st.from_regex(r"[0-9]{0,27}", fullmatch=True)
noise = st.text(max_size=12)
host = st.one_of(
    st.sampled_from(["tiktok.com", "www.tiktok.com", "m.tiktok.com", "WWW.TikTok.com"]),
    st.sampled_from(
        [
            "vm.tiktok.com",
            "vt.tiktok.com",
            "tiktokv.com",
            "www.tiktokv.com",
            "tiktok.com.evil.io",
            "evil-tiktok.com",
            "tiktok.co",
            "tiktok.com@evil.com",
            "tiktok.com:443",
            "[::1]",
            "[",
            "",
        ]
    ),
    noise,
)
at_handle = handle_like.map(lambda text: text if text.startswith("@") else "@" + text)
segment = st.one_of(
    at_handle,
    st.sampled_from(["video", "photo", "v", "embed", "v2", "t", "share", "", "..", "%40ab"]),
    digits,
    noise,
)
# Mostly the shapes the parser knows (so some parse), with noise mixed in.
path = st.one_of(
    st.tuples(at_handle),
    st.tuples(at_handle, st.sampled_from(["video", "photo", "Video", "music"]), digits),
    st.tuples(st.just("v"), digits.map(lambda text: text + ".html")),
    st.tuples(st.just("embed"), digits),
    st.tuples(st.just("embed"), st.just("v2"), digits),
    st.tuples(st.just("share"), st.just("video"), digits),
    st.tuples(st.just("t"), noise),
    st.lists(segment, max_size=4).map(tuple),
).map("/".join)


def url_from(
    schemes: st.SearchStrategy[str], hosts: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    return st.builds(
        lambda scheme, hostname, path, trailing, query, fragment, pad: (
            pad + scheme + hostname + "/" + path + trailing + query + fragment + pad
        ),
        schemes,
        hosts,
        path,
        st.sampled_from(["", "/", "//"]),
        st.sampled_from(["", "?lang=en", "?a=1,2", "?"]) | noise.map(lambda text: "?" + text),
        st.sampled_from(["", "#x", "#"]) | noise.map(lambda text: "#" + text),
        st.sampled_from(["", " ", "\n", "\ufeff"]),
    )


good_scheme = st.sampled_from(["", "https://", "http://", "//", "HTTPS://"])
# URLs on the right hosts (many of them parse) and URLs on any host (few do).
main_host = st.sampled_from(["tiktok.com", "www.tiktok.com", "m.tiktok.com"])
tiktok_url = url_from(good_scheme, main_host)
url_like = url_from(
    good_scheme | st.sampled_from(["ftp://", "javascript:", "https:/", "https:///"]), host
)

pair_like = st.builds(
    lambda handle, video_id, separator: handle + separator + video_id,
    handle_like | noise,
    digits | noise,
    st.sampled_from([",", ", ", " , ", ",,"]),
)
any_input = st.one_of(st.text(), tiktok_url, url_like, pair_like, handle_like)
PROPERTY_SETTINGS = settings(max_examples=400, deadline=None)


def parsed_or_none(parse: Callable[[str], T], text: str) -> T | None:
    """`parse(text)`, or None if it raised InvalidInputError (any other error fails the test)."""
    try:
        return parse(text)
    except InvalidInputError as error:
        message = str(error)
    assert len(message) < 600
    return None


def assert_handle_rule(handle: str) -> None:
    assert HANDLE_RULE.fullmatch(handle), handle
    path = user_path(handle)
    assert path.count("/") == 1
    assert unquote(path.removeprefix("user/")) == handle
    assert path.removeprefix("user/") not in (".", "..")


@PROPERTY_SETTINGS
@given(any_input)
def test_parse_handle_raises_only_input_errors_and_returns_valid_handles(text: str) -> None:
    handle = parsed_or_none(parse_handle, text)
    if handle is None:
        return
    assert_handle_rule(handle)
    assert parse_handle(handle) == handle


@PROPERTY_SETTINGS
@given(any_input)
def test_parse_video_raises_only_input_errors_and_returns_valid_refs(text: str) -> None:
    ref = parsed_or_none(parse_video, text)
    if ref is None:
        return
    assert_handle_rule(ref.handle)
    assert re.fullmatch(r"[0-9]{1,25}", ref.video_id)
    assert parse_video(f"{ref.handle},{ref.video_id}") == ref
    assert video_path(ref) == f"video/{user_path(ref.handle).removeprefix('user/')}/{ref.video_id}"


@PROPERTY_SETTINGS
@given(
    st.from_regex(r"[A-Za-z0-9_.]{2,30}", fullmatch=True),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
)
def test_valid_handles_and_ids_round_trip_through_every_form(handle: str, video_id: str) -> None:
    assert parse_handle(handle) == handle
    assert parse_handle(f"@{handle}") == handle
    assert parse_handle(f"https://www.tiktok.com/@{handle}?lang=en") == handle
    ref = VideoRef(handle, video_id)
    assert parse_video(f"https://www.tiktok.com/@{handle}/video/{video_id}") == ref
    assert parse_video(f"m.tiktok.com/@{handle}/photo/{video_id}#x") == ref
    assert parse_video(f"{handle},{video_id}") == ref
