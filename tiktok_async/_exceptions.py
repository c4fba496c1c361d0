"""Every error the client raises, in one tree under `TikTokError`.

```
TikTokError(Exception)             .message .status .request_id .attempts
├── InvalidInputError(ValueError)  bad handle / URL / id, raised before any request; .value .reason
├── ClientStateError(RuntimeError) use before open, after close, in another loop, or reopening
├── TransportError                 no complete HTTP answer (retryable)
│   ├── ConnectError               could not connect (DNS, refused, TLS, reset before an answer)
│   │   └── CertificateError       the server's TLS certificate is not trusted (not retried)
│   ├── RequestTimeoutError        one attempt took too long
│   └── TruncatedBodyError         connection dropped mid-answer, body shorter than announced
├── APIStatusError                 an HTTP answer with an error status; .error_type
│   ├── BadRequestError            400
│   ├── ForbiddenError             403 Forbidden: missing or wrong API key (abort a bulk run)
│   ├── MissingRouteError          403 Missing Authentication Token: no such route
│   ├── NotFoundError              404 User not found / Video not found (definitive)
│   ├── RateLimitedError           429 Too Many Requests (retryable); .retry_after
│   ├── QuotaExceededError         429 Limit Exceeded: usage-plan quota used up (abort a bulk run)
│   └── ServerError                408 and 5xx (retryable)
├── ResponseTooLargeError          a body over 10 MiB once decoded (gzip included); not retried
└── DecodeError                    a 200 whose body does not fit the schema; .path
    └── MalformedBodyError         a 200 whose body is not well-formed JSON (retryable)
```

No exception ever receives the API key, so none can show it. All of them pickle
(state travels in `__dict__`), so they cross process boundaries intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIStatusError",
    "BadRequestError",
    "CertificateError",
    "ClientStateError",
    "ConnectError",
    "DecodeError",
    "ForbiddenError",
    "InvalidInputError",
    "MalformedBodyError",
    "MissingRouteError",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "TikTokError",
    "TransportError",
    "TruncatedBodyError",
]

# Longest input quoted in an InvalidInputError message: a 10 KB line must not make a
# 10 KB message (or log line).
_MAX_PREVIEW_CHARS = 80


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """Pickle helper: make the instance without `__init__`; `__dict__` comes back after."""
    return cls.__new__(cls, *args)


class TikTokError(Exception):
    """Base of every error this library raises.

    `status` is the HTTP status when there was an answer, `request_id` the
    `x-amzn-RequestId` it carried, and `attempts` how many attempts were made
    before giving up (the retry layer sets it).
    """

    message: str
    status: int | None
    request_id: str | None
    attempts: int

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.attempts = 1

    def _details(self) -> list[str]:
        details = []
        if self.status is not None:
            details.append(f"status {self.status}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if self.attempts > 1:
            details.append(f"after {self.attempts} attempts")
        return details

    def __str__(self) -> str:
        details = self._details()
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        fields = [repr(self.message)]
        fields += [f"{name}={value!r}" for name, value in self._repr_fields() if value is not None]
        return f"{type(self).__name__}({', '.join(fields)})"

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [("status", self.status), ("request_id", self.request_id)]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args), self.__dict__)


class InvalidInputError(TikTokError, ValueError):
    """An input (handle, URL, video id) that cannot be asked of the API.

    Raised before any request. `value` is the input as given, `reason` says what is
    wrong with it and what to do instead.
    """

    value: object
    reason: str

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"{_preview(value)}: {reason}")
        self.value = value
        self.reason = reason


def _preview(value: object) -> str:
    """`repr` of an input, cut short so a huge input makes a short message."""
    if isinstance(value, str) and len(value) > _MAX_PREVIEW_CHARS:
        cut = value[: _MAX_PREVIEW_CHARS - 1]
        return f"{cut!r}… ({len(value)} characters)"
    text = repr(value)
    if len(text) > _MAX_PREVIEW_CHARS:
        return f"{text[: _MAX_PREVIEW_CHARS - 1]}…"
    return text


class ClientStateError(TikTokError, RuntimeError):
    """The client was used before it was opened, after it was closed, or reopened."""


class TransportError(TikTokError):
    """No complete HTTP answer came back (connection, timeout, truncated body)."""


class ConnectError(TransportError):
    """Could not connect, or the connection broke before an answer began."""


class CertificateError(ConnectError):
    """The server's TLS certificate failed the check (`verify=`): not retried, since the
    same certificate comes back; trust its CA with `verify=` (`--ca-file`)."""


class RequestTimeoutError(TransportError):
    """One attempt took longer than its timeout."""


class TruncatedBodyError(TransportError):
    """The connection dropped mid-answer: the body is shorter than announced."""


class APIStatusError(TikTokError):
    """An HTTP answer with an error status.

    `error_type` is API Gateway's `x-amzn-ErrorType` header (for example
    `ForbiddenException`), when it sent one.
    """

    status: int
    error_type: str | None

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.error_type = error_type

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("error_type", self.error_type)]


class BadRequestError(APIStatusError):
    """400: the API refused the request as malformed."""


class ForbiddenError(APIStatusError):
    """403 `Forbidden`: the API key is missing or wrong. Retrying cannot help."""


class MissingRouteError(APIStatusError):
    """403 `Missing Authentication Token`: API Gateway has no such route (a bad path)."""


class NotFoundError(APIStatusError):
    """404: the user or video does not exist. A definitive answer, not a failure."""


class RateLimitedError(APIStatusError):
    """429 `Too Many Requests`: throttled; retry later.

    `retry_after` is the wait in seconds the server asked for (`Retry-After`), or
    None when it did not say (API Gateway does not, by default).
    """

    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        request_id: str | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, error_type=error_type)
        self.retry_after = retry_after

    def _details(self) -> list[str]:
        details = super()._details()
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g} s")
        return details

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("retry_after", self.retry_after)]


class QuotaExceededError(APIStatusError):
    """429 `Limit Exceeded`: the usage plan's quota is used up until its period resets."""


class ServerError(APIStatusError):
    """408 or 5xx: the server or API Gateway failed this time. Retryable."""


class ResponseTooLargeError(TikTokError):
    """An answer whose body passed the 10 MiB cap: as announced, or once decoded.

    The cap counts the bytes after `Content-Encoding` (gzip, deflate...) is undone, so
    a small compressed answer that inflates without end stops at the cap. Not retried.
    """


class DecodeError(TikTokError):
    """A 200 answer whose body does not fit the schema.

    `path` names the offending field (`$.stats.followerCount`), or is None when the
    body is not JSON at all.
    """

    path: str | None

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.path = path

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("path", self.path)]


class MalformedBodyError(DecodeError):
    """A 2xx answer whose body is not well-formed JSON (cut off, an HTML page, empty).

    Not the API's answer (a proxy's page, a body cut short), so it is retried like a
    502; a well-formed body that does not fit the schema is a plain `DecodeError`.
    """
