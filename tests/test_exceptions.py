"""The error tree: shape, text, pickling, and short messages for huge inputs."""

from __future__ import annotations

import pickle

import pytest

import tiktok_async
from tiktok_async import _exceptions
from tiktok_async._exceptions import (
    APIStatusError,
    BadRequestError,
    ClientStateError,
    ConnectError,
    DecodeError,
    ForbiddenError,
    InvalidInputError,
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

ALL_ERRORS = [getattr(_exceptions, name) for name in _exceptions.__all__]


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (InvalidInputError, TikTokError),
        (InvalidInputError, ValueError),
        (ClientStateError, TikTokError),
        (ClientStateError, RuntimeError),
        (TransportError, TikTokError),
        (ConnectError, TransportError),
        (RequestTimeoutError, TransportError),
        (TruncatedBodyError, TransportError),
        (APIStatusError, TikTokError),
        (BadRequestError, APIStatusError),
        (ForbiddenError, APIStatusError),
        (MissingRouteError, APIStatusError),
        (NotFoundError, APIStatusError),
        (RateLimitedError, APIStatusError),
        (QuotaExceededError, APIStatusError),
        (ServerError, APIStatusError),
        (DecodeError, TikTokError),
    ],
)
def test_tree_shape(error: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(error, parent)


def test_status_errors_and_transport_errors_are_apart() -> None:
    status_errors = [e for e in ALL_ERRORS if issubclass(e, APIStatusError)]
    assert status_errors
    assert not any(issubclass(e, TransportError) for e in status_errors)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda error: error.__name__)
def test_every_error_is_drawn_in_the_module_docstring_and_exported(
    error: type[Exception],
) -> None:
    assert _exceptions.__doc__ is not None
    assert error.__name__ in _exceptions.__doc__
    assert getattr(tiktok_async, error.__name__) is error


def test_text_holds_message_status_request_id_and_attempts() -> None:
    error = ServerError("Internal server error", status=502, request_id="req-1")
    assert str(error) == "Internal server error (status 502, request id req-1)"
    error.attempts = 4
    assert str(error) == "Internal server error (status 502, request id req-1, after 4 attempts)"


def test_text_is_just_the_message_when_there_is_nothing_else() -> None:
    error = ConnectError("connection refused")
    assert error.attempts == 1
    assert str(error) == "connection refused"
    assert error.message == "connection refused"


def test_rate_limited_text_holds_the_wait() -> None:
    error = RateLimitedError("Too Many Requests", request_id="r", retry_after=2.5)
    assert error.status == 429
    assert str(error) == "Too Many Requests (status 429, request id r, retry after 2.5 s)"


def test_repr_shows_class_and_fields() -> None:
    error = ForbiddenError(
        "Forbidden", status=403, request_id="r", error_type="ForbiddenException"
    )
    assert repr(error) == (
        "ForbiddenError('Forbidden', status=403, request_id='r', error_type='ForbiddenException')"
    )
    assert repr(DecodeError("unfit", path="$.id")) == "DecodeError('unfit', path='$.id')"
    assert repr(TikTokError("x")) == "TikTokError('x')"


def test_invalid_input_message_names_value_and_reason() -> None:
    error = InvalidInputError("@bad handle!", "not a TikTok handle")
    assert str(error) == "'@bad handle!': not a TikTok handle"
    assert error.value == "@bad handle!"
    assert error.reason == "not a TikTok handle"
    assert error.status is None


@pytest.mark.parametrize("value", ["x" * 10_000, ["y"] * 10_000, b"z" * 10_000])
def test_invalid_input_message_stays_short_for_a_huge_input(value: object) -> None:
    error = InvalidInputError(value, "not a TikTok handle")
    assert len(str(error)) < 200
    assert len(repr(error)) < 250
    assert error.value is value


def test_long_text_input_says_how_long_it_was() -> None:
    assert "(10000 characters)" in str(InvalidInputError("x" * 10_000, "bad"))


def instances() -> list[TikTokError]:
    rate_limited = RateLimitedError("Too Many Requests", request_id="r1", retry_after=3.0)
    rate_limited.attempts = 5
    return [
        TikTokError("base", status=None, request_id="r0"),
        InvalidInputError("@bad handle!", "not a TikTok handle"),
        ClientStateError("closed"),
        TransportError("broken"),
        ConnectError("refused"),
        RequestTimeoutError("too slow"),
        TruncatedBodyError("cut short"),
        APIStatusError("Conflict", status=409, request_id="r2", error_type="ConflictException"),
        BadRequestError("Bad", status=400),
        ForbiddenError("Forbidden", status=403, error_type="ForbiddenException"),
        MissingRouteError("Missing Authentication Token", status=403),
        NotFoundError("User not found", status=404, request_id="r3"),
        rate_limited,
        QuotaExceededError("Limit Exceeded", status=429),
        ServerError("Endpoint request timed out", status=504),
        DecodeError("unfit", path="$.stats.heart", status=200, request_id="r4"),
    ]


@pytest.mark.parametrize("error", instances(), ids=lambda error: type(error).__name__)
def test_every_error_survives_pickling(error: TikTokError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)
    assert repr(copy) == repr(error)
    assert copy.args == error.args


def test_errors_can_be_raised_and_caught_by_the_base() -> None:
    with pytest.raises(TikTokError, match="Limit Exceeded"):
        raise QuotaExceededError("Limit Exceeded", status=429)
