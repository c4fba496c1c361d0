"""Protocol decisions on recorded responses (tests/samples), without a network."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tiktok_async._exceptions import (
    APIStatusError,
    BadRequestError,
    ClientStateError,
    ConnectError,
    DecodeError,
    ForbiddenError,
    InvalidInputError,
    MalformedBodyError,
    MissingRouteError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TikTokError,
    TransportError,
    TruncatedBodyError,
)
from tiktok_async._models import UserProfile, Video, decode_user_profile, decode_video
from tiktok_async._protocol import (
    decipher_response,
    error_for_response,
    is_retryable,
    parse_retry_after,
    retry_cause,
)

SAMPLES = Path(__file__).parent / "samples"
# The `Date` of the recorded answers: "now" when they were recorded.
RECORDED_AT = parsedate_to_datetime("Thu, 26 Nov 2026 09:00:00 GMT").timestamp()
REQUEST_ID = "5c1f6f2e-7a1b-4c0e-9a55-0d6a3c2b1f"
FOREIGN_404 = "Not Found (a 404 that is not the API's own answer)"


@dataclass(frozen=True)
class Sample:
    status: int
    headers: dict[str, str]
    body: bytes


def load(case: str) -> Sample:
    folder = SAMPLES / case
    return Sample(
        status=int((folder / "status").read_text()),
        headers=json.loads((folder / "headers.json").read_text()),
        body=(folder / "body").read_bytes(),
    )


@dataclass(frozen=True)
class Expected:
    error: type[APIStatusError]
    message: str
    request_id: str | None
    retryable: bool
    retry_after: float | None = None
    error_type: str | None = None


# One row per case of DESIGN.md section 1 (and a few a proxy or an old stage adds).
ERROR_CASES: dict[str, Expected] = {
    "forbidden_403": Expected(ForbiddenError, "Forbidden", f"{REQUEST_ID}01", False),
    "missing_route_403": Expected(
        MissingRouteError, "Missing Authentication Token", f"{REQUEST_ID}02", False
    ),
    "throttled_429": Expected(RateLimitedError, "Too Many Requests", f"{REQUEST_ID}03", True),
    "throttled_429_retry_after_seconds": Expected(
        RateLimitedError, "Too Many Requests", f"{REQUEST_ID}04", True, retry_after=2.0
    ),
    "throttled_429_retry_after_date": Expected(
        RateLimitedError, "Too Many Requests", f"{REQUEST_ID}05", True, retry_after=30.0
    ),
    "quota_429": Expected(QuotaExceededError, "Limit Exceeded", f"{REQUEST_ID}06", False),
    "quota_429_error_type_only": Expected(
        QuotaExceededError, "Too Many Requests", f"{REQUEST_ID}07", False
    ),
    "server_error_500": Expected(ServerError, "Internal server error", f"{REQUEST_ID}08", True),
    "bad_gateway_502": Expected(ServerError, "Internal server error", f"{REQUEST_ID}09", True),
    "service_unavailable_503": Expected(
        ServerError, "Service Unavailable", f"{REQUEST_ID}10", True
    ),
    "gateway_timeout_504": Expected(
        ServerError, "Endpoint request timed out", f"{REQUEST_ID}11", True
    ),
    "user_not_found_404": Expected(NotFoundError, "User not found", f"{REQUEST_ID}12", False),
    "video_not_found_404": Expected(NotFoundError, "Video not found", f"{REQUEST_ID}13", False),
    "bad_request_400": Expected(BadRequestError, "Invalid request input", f"{REQUEST_ID}14", False),
    "bad_gateway_html_502": Expected(ServerError, "Bad Gateway", None, True),
    # A 404 that is not the API's own JSON answer is a failure, not "does not exist".
    "proxy_html_404": Expected(APIStatusError, FOREIGN_404, None, False),
    "proxy_empty_404": Expected(APIStatusError, FOREIGN_404, None, False),
    "proxy_json_404": Expected(APIStatusError, FOREIGN_404, None, False),
    # Error bodies nested too deep to decode: the status's own class, the reason phrase.
    "deep_json_404": Expected(APIStatusError, FOREIGN_404, f"{REQUEST_ID}30", False),
    "deep_json_429": Expected(RateLimitedError, "Too Many Requests", f"{REQUEST_ID}31", True),
}
SUCCESS_CASES = {
    "user_200",
    "video_200",
    "schema_mismatch_200",
    "user_sparse_big_counts_200",
    "deep_json_200",
    "cut_off_json_200",
    "html_page_200",
}


def test_every_recorded_case_has_an_expectation() -> None:
    recorded = {folder.name for folder in SAMPLES.iterdir() if folder.is_dir()}
    assert recorded == set(ERROR_CASES) | SUCCESS_CASES


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_answer_raises_the_right_exception(case: str) -> None:
    sample, expected = load(case), ERROR_CASES[case]
    with pytest.raises(APIStatusError) as caught:
        decipher_response(
            sample.status, sample.headers, sample.body, decode_user_profile, now=RECORDED_AT
        )
    error = caught.value
    assert type(error) is expected.error
    assert error.status == sample.status
    assert error.message == expected.message
    assert error.request_id == expected.request_id
    assert is_retryable(error) is expected.retryable
    if isinstance(error, RateLimitedError):
        assert error.retry_after == expected.retry_after


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_keeps_the_gateway_error_type_header(case: str) -> None:
    sample = load(case)
    error = error_for_response(sample.status, sample.headers, sample.body, now=RECORDED_AT)
    lowered = {name.lower(): value for name, value in sample.headers.items()}
    assert error.error_type == lowered.get("x-amzn-errortype")


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_text_names_status_and_request_id(case: str) -> None:
    sample = load(case)
    error = error_for_response(sample.status, sample.headers, sample.body, now=RECORDED_AT)
    assert str(sample.status) in str(error)
    assert error.message in str(error)
    if error.request_id:
        assert error.request_id in str(error)


def test_user_answer_decodes() -> None:
    sample = load("user_200")
    profile = decipher_response(sample.status, sample.headers, sample.body, decode_user_profile)
    assert isinstance(profile, UserProfile)
    assert profile.user.id_dup == "some.handle"
    assert profile.stats.follower_count == 1_250_000


def test_video_answer_decodes() -> None:
    sample = load("video_200")
    video = decipher_response(sample.status, sample.headers, sample.body, decode_video)
    assert isinstance(video, Video)
    assert video.id == "7301234567890123456"


def test_sparse_user_with_big_and_negative_counts_decodes() -> None:
    sample = load("user_sparse_big_counts_200")
    profile = decipher_response(sample.status, sample.headers, sample.body, decode_user_profile)
    assert profile.user.nickname is None
    assert profile.stats.heart == -977_433_948
    assert profile.stats.heart_count == 11_907_467_940


def test_schema_mismatch_raises_decode_error_with_path_and_request_id() -> None:
    sample = load("schema_mismatch_200")
    with pytest.raises(DecodeError) as caught:
        decipher_response(sample.status, sample.headers, sample.body, decode_user_profile)
    error = caught.value
    assert error.path == "$.stats.followerCount"
    assert error.request_id == f"{REQUEST_ID}22"
    assert error.status == 200
    assert "$.stats.followerCount" in str(error)
    assert f"{REQUEST_ID}22" in str(error)
    assert not is_retryable(error)


def test_json_nested_too_deep_in_an_unknown_field_is_a_decode_error() -> None:
    sample = load("deep_json_200")
    with pytest.raises(DecodeError) as caught:
        decipher_response(sample.status, sample.headers, sample.body, decode_user_profile)
    error = caught.value
    assert type(error) is DecodeError  # well-formed: not retried
    assert (error.status, error.request_id) == (200, f"{REQUEST_ID}32")
    assert "deeper" in error.message
    assert not is_retryable(error)


@pytest.mark.parametrize("case", ["cut_off_json_200", "html_page_200"])
def test_a_200_that_is_not_json_is_malformed_and_retried(case: str) -> None:
    sample = load(case)
    with pytest.raises(MalformedBodyError) as caught:
        decipher_response(sample.status, sample.headers, sample.body, decode_video)
    assert caught.value.status == 200
    assert caught.value.path is None
    assert retry_cause(caught.value) == "malformed"


def test_a_decoder_that_recurses_too_deep_gives_a_decode_error() -> None:
    def recursing(body: bytes) -> object:
        return recursing(body)

    with pytest.raises(DecodeError) as caught:
        decipher_response(200, {"x-amzn-RequestId": "r9"}, b"{}", recursing)
    assert (caught.value.status, caught.value.request_id) == (200, "r9")


@pytest.mark.parametrize(
    "body",
    [
        b'{"message":"User not found"}',
        b'{"message":"Video not found"}',
        b'{"Message": " User not found "}',
    ],
)
def test_only_the_apis_own_json_404_is_not_found(body: bytes) -> None:
    assert type(error_for_response(404, {}, body)) is NotFoundError


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>User not found</html>",
        b'{"message":"Not Found"}',
        b'{"error":"User not found"}',
        b'"User not found"',
        b'{"message":"User not found","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_any_other_404_is_a_failure_that_is_not_retried_at_once(body: bytes) -> None:
    headers = {"x-amzn-ErrorType": "NotFoundException"}  # a header alone proves nothing
    error = error_for_response(404, headers, body)
    assert type(error) is APIStatusError
    assert error.status == 404
    assert "not the API's own answer" in error.message
    assert not is_retryable(error)


def test_missing_required_field_is_named_in_the_path() -> None:
    body = b'{"user": {"nickname": "x"}, "stats": {}}'
    with pytest.raises(DecodeError) as caught:
        decipher_response(200, {"x-amzn-RequestId": "r1"}, body, decode_user_profile)
    assert caught.value.path == "$.user.id"
    assert caught.value.request_id == "r1"


def test_other_success_statuses_are_decoded_too() -> None:
    assert decipher_response(203, {}, b"[1]", lambda body: body) == b"[1]"


def test_decode_error_without_request_id_header_keeps_none() -> None:
    with pytest.raises(MalformedBodyError) as caught:
        decipher_response(200, {}, b"not json", decode_user_profile)
    assert caught.value.request_id is None
    assert caught.value.path is None


def test_aiohttp_style_case_insensitive_headers_are_read() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict({"X-AMZN-REQUESTID": "abc", "x-amzn-errortype": "ForbiddenException"})
    )
    error = error_for_response(403, headers, b'{"message":"Forbidden"}')
    assert error.request_id == "abc"
    assert error.error_type == "ForbiddenException"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, APIStatusError),
        (403, ForbiddenError),
        (404, APIStatusError),  # no body: not the API's own 404
        (408, ServerError),
        (409, APIStatusError),
        (418, APIStatusError),
        (429, RateLimitedError),
        (500, ServerError),
        (501, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
        (301, APIStatusError),
    ],
)
def test_status_without_body_maps_to_its_class(
    status: int, error_class: type[APIStatusError]
) -> None:
    error = error_for_response(status, {}, b"", now=0.0)
    assert type(error) is error_class
    assert error.status == status


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (500, True), (502, True), (503, True), (504, True), (501, False), (505, False)],
)
def test_only_transient_server_statuses_are_retryable(status: int, retryable: bool) -> None:
    assert is_retryable(error_for_response(status, {}, b"")) is retryable


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Forbidden"),
        (b"   ", "Forbidden"),
        (b"<html>nope</html>", "Forbidden"),
        (b'{"message": 5}', "Forbidden"),
        (b'{"message": "  "}', "Forbidden"),
        (b'["message"]', "Forbidden"),
        (b'{"message": "Forbid', "Forbidden"),
        (b'{"Message": "User is not authorized to access this resource"}',
         "User is not authorized to access this resource"),
        (b'  {"message": "Forbidden", "extra": [1, 2]}', "Forbidden"),
    ],
)
def test_message_falls_back_to_the_reason_phrase(body: bytes, message: str) -> None:
    error = error_for_response(403, {}, body)
    assert isinstance(error, ForbiddenError)
    assert error.message == message


def test_unknown_status_without_phrase_gets_a_generic_message() -> None:
    assert error_for_response(499, {}, b"").message == "HTTP 499"


def test_a_huge_message_is_shortened() -> None:
    body = json.dumps({"message": "x" * 100_000}).encode()
    assert len(error_for_response(500, {}, body).message) <= 300


def test_missing_route_is_recognised_by_error_type_alone() -> None:
    headers = {"x-amzn-ErrorType": "MissingAuthenticationTokenException"}
    assert isinstance(error_for_response(403, headers, b""), MissingRouteError)


def test_retry_after_date_without_now_is_measured_from_the_clock() -> None:
    headers = {"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"}
    error = error_for_response(429, headers, b'{"message":"Too Many Requests"}')
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 0.0


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("2", 2.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("120", 120.0),
        ("-1", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("", None),
        ("soon", None),
        ("2 seconds", None),
        ("Fri, 15 Jan 2027 08:00:30 GMT", 30.0),
        ("Fri, 15 Jan 2027 08:00:30 -0000", 30.0),
        ("Fri, 15 Jan 2027 09:00:30 +0100", 30.0),
        ("Fri, 15 Jan 2027 08:00:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Fri, 15 Jan 2027 99:00:00 GMT", None),
        ("Fri, 32 Jan 2027 08:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_now_constant_is_the_date_used_above() -> None:
    assert parsedate_to_datetime("Fri, 15 Jan 2027 08:00:00 GMT").timestamp() == NOW


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (RateLimitedError("Too Many Requests"), "throttled"),
        (ServerError("Internal server error", status=500), "server_error"),
        (ServerError("Request Timeout", status=408), "server_error"),
        (RequestTimeoutError("timed out"), "timeout"),
        (ConnectError("refused"), "connect"),
        (TruncatedBodyError("cut"), "truncated"),
        (TransportError("broken"), "transport"),
        (ServerError("Not Implemented", status=501), None),
        (QuotaExceededError("Limit Exceeded", status=429), None),
        (ForbiddenError("Forbidden", status=403), None),
        (MissingRouteError("Missing Authentication Token", status=403), None),
        (NotFoundError("User not found", status=404), None),
        (BadRequestError("Bad", status=400), None),
        (APIStatusError("Conflict", status=409), None),
        (DecodeError("unfit", path="$.id"), None),
        (MalformedBodyError("not JSON"), "malformed"),
        (InvalidInputError("x", "bad"), None),
        (ClientStateError("closed"), None),
        (TikTokError("base"), None),
        (asyncio.CancelledError(), None),
        (TimeoutError(), None),
        (ConnectionResetError(), None),
        (KeyboardInterrupt(), None),
        (ValueError("x"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_retry_cause_and_retryable(error: BaseException, cause: str | None) -> None:
    assert retry_cause(error) == cause
    assert is_retryable(error) is (cause is not None)
