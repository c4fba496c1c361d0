"""Protocol decisions as pure functions: which answer means what, what to retry, how long to wait.

No I/O: the transport reads `(status, headers, body)` and hands them here. Headers are
any `Mapping[str, str]`; they are looked up case-insensitively (aiohttp's
`CIMultiDictProxy` directly, a plain dict by a scan), without importing aiohttp.

| status | body `message` (or `x-amzn-ErrorType`)         | raised                 | retry?        |
|--------|------------------------------------------------|------------------------|---------------|
| 2xx    | (the body is decoded)                          | `DecodeError` if unfit | no            |
| 2xx    | a body that is not well-formed JSON            | `MalformedBodyError`   | yes           |
| 400    | any                                            | `BadRequestError`      | no            |
| 403    | `Missing Authentication Token` (`Missing...`)  | `MissingRouteError`    | no            |
| 403    | anything else (`Forbidden`)                    | `ForbiddenError`       | no            |
| 404    | `User not found` / `Video not found` (JSON)    | `NotFoundError`        | no            |
| 404    | anything else (HTML, empty, other JSON)        | `APIStatusError`       | no            |
| 429    | `Limit Exceeded` (`LimitExceededException`)    | `QuotaExceededError`   | no            |
| 429    | anything else (`Too Many Requests`)            | `RateLimitedError`     | yes           |
| 408    | any                                            | `ServerError`          | yes           |
| 5xx    | any                                            | `ServerError`          | 500, 502-504  |
| other  | any                                            | `APIStatusError`       | no            |

Only the API's own JSON 404 is a definitive "does not exist". Any other 404 (a proxy's
HTML page, an empty body, JSON without the API's message) is a failure, so a bulk run
records it as failed and `--retry-failed` tries it again. It is not retried at once:
such a 404 comes from something in the way (a wrong base URL, a proxy's route) that
stays wrong for the seconds a retry waits, and would turn every input into 6 requests.

An error body that cannot be decoded (not JSON, or JSON nested too deep) gives the
status's reason phrase as the message; nothing here ever raises `RecursionError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TypeVar

from ._exceptions import (
    APIStatusError,
    BadRequestError,
    CertificateError,
    ConnectError,
    DecodeError,
    ForbiddenError,
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
from ._models import decode_json

__all__ = [
    "REQUEST_ID_HEADER",
    "decipher_response",
    "error_for_response",
    "is_retryable",
    "parse_retry_after",
    "retry_cause",
]

T = TypeVar("T")

REQUEST_ID_HEADER = "x-amzn-RequestId"
_ERROR_TYPE_HEADER = "x-amzn-ErrorType"
_RETRY_AFTER_HEADER = "Retry-After"

_MISSING_ROUTE_MESSAGE = "Missing Authentication Token"
_MISSING_ROUTE_TYPE = "MissingAuthenticationTokenException"
_QUOTA_MESSAGE = "Limit Exceeded"
_QUOTA_TYPE = "LimitExceededException"
_RETRYABLE_SERVER_STATUSES = frozenset({408, 500, 502, 503, 504})
_API_NOT_FOUND_MESSAGES = frozenset({"User not found", "Video not found"})
# An error message is for people; a proxy's 1 MB error page is not one.
_MAX_MESSAGE_CHARS = 300
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def decipher_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    decode: Callable[[bytes], T],
    *,
    now: float | None = None,
) -> T:
    """The decoded value of a 2xx answer, or raise the exception the answer means.

    `decode` is one of `_models`' decoders. A `DecodeError` it raises leaves here with
    the status and the answer's request id set (`MalformedBodyError` when the body is
    not JSON at all). `now` (epoch seconds, default the clock) is only read to turn a
    `Retry-After` HTTP date into a delay.
    """
    if 200 <= status < 300:
        try:
            return decode(body)
        except DecodeError as exc:
            exc.status = status
            exc.request_id = _header(headers, REQUEST_ID_HEADER)
            raise
        except RecursionError:  # a decoder without a depth guard of its own
            raise DecodeError(
                "the body nests JSON deeper than the decoder allows",
                status=status,
                request_id=_header(headers, REQUEST_ID_HEADER),
            ) from None
    raise error_for_response(status, headers, body, now=now)


def error_for_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> APIStatusError:
    """The exception an error answer means (see the table in this module's docstring)."""
    message = _message_from_body(body) or _reason_phrase(status)
    request_id = _header(headers, REQUEST_ID_HEADER)
    error_type = _header(headers, _ERROR_TYPE_HEADER)
    error_class = _error_class(status, message, _bare_error_type(error_type))
    if status == 404 and error_class is APIStatusError:
        message = f"{message} (a 404 that is not the API's own answer)"
    if error_class is RateLimitedError:
        clock = time.time() if now is None else now
        retry_after = parse_retry_after(_header(headers, _RETRY_AFTER_HEADER), now=clock)
        return RateLimitedError(
            message,
            status=status,
            request_id=request_id,
            error_type=error_type,
            retry_after=retry_after,
        )
    return error_class(message, status=status, request_id=request_id, error_type=error_type)


def _error_class(status: int, message: str, error_type: str | None) -> type[APIStatusError]:
    if status == 403:
        is_missing_route = message == _MISSING_ROUTE_MESSAGE or error_type == _MISSING_ROUTE_TYPE
        return MissingRouteError if is_missing_route else ForbiddenError
    if status == 429:
        is_quota = message == _QUOTA_MESSAGE or error_type == _QUOTA_TYPE
        return QuotaExceededError if is_quota else RateLimitedError
    if status == 404:
        return NotFoundError if message in _API_NOT_FOUND_MESSAGES else APIStatusError
    if status == 400:
        return BadRequestError
    if status == 408 or 500 <= status <= 599:
        return ServerError
    return APIStatusError


def _bare_error_type(error_type: str | None) -> str | None:
    # API Gateway may append ":http://internal.amazon.com/coral/..." to the type name.
    return error_type.partition(":")[0].strip() if error_type else None


def _message_from_body(body: bytes) -> str | None:
    """API Gateway's `{"message": "..."}` (AWS also spells it `Message`), if the body has one."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        document = decode_json(body)
    except DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    message = document.get("message", document.get("Message"))
    if not isinstance(message, str) or not message.strip():
        return None
    return _shortened(message.strip())


def _shortened(message: str) -> str:
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return f"{message[: _MAX_MESSAGE_CHARS - 1]}…"


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`headers[name]`, matched case-insensitively, or None."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds (never negative), or None.

    `value` is delay seconds (`"2"`, `"1.5"`) or an HTTP date, which is taken
    relative to `now` (epoch seconds): a date in the past means 0. Anything else,
    including a negative delay, is None (no usable advice).
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    return _seconds_until_http_date(text, now)


def _seconds_until_http_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
        # A date without a zone ("-0000") is naive; HTTP dates are GMT.
        epoch = when.timestamp() if when.tzinfo else when.replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, epoch - now)


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt could succeed where this one raised `exc`.

    Yes for transport failures, 429 `Too Many Requests`, 408/500/502/503/504 and a 2xx
    whose body is not well-formed JSON (`MalformedBodyError`). No for everything else,
    notably 400, 403, 404 (the API's or not), a used-up quota, a body that does not fit
    the schema, a body over the size cap, bad input, and anything not ours
    (`asyncio.CancelledError`).
    """
    return retry_cause(exc) is not None


def retry_cause(exc: BaseException) -> str | None:
    """A short label for why `exc` is worth a retry (for stats and logs), or None if not.

    One of `"throttled"`, `"server_error"`, `"timeout"`, `"connect"`, `"truncated"`,
    `"transport"`, `"malformed"`.
    """
    if not isinstance(exc, TikTokError):
        return None
    if isinstance(exc, RateLimitedError):
        return "throttled"
    if isinstance(exc, ServerError):
        return "server_error" if exc.status in _RETRYABLE_SERVER_STATUSES else None
    if isinstance(exc, CertificateError):
        return None  # the same certificate comes back: retrying cannot help
    if isinstance(exc, TransportError):
        return _transport_cause(exc)
    if isinstance(exc, MalformedBodyError):
        return "malformed"
    return None


def _transport_cause(exc: TransportError) -> str:
    if isinstance(exc, RequestTimeoutError):
        return "timeout"
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, TruncatedBodyError):
        return "truncated"
    return "transport"
