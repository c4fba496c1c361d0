"""Any result as plain data: the one shape the command line writes, for your own code.

`to_dict(value)` turns a model (`UserProfile`, `Video`, ...) or a bulk `Result` into a
dict of builtins with snake_case keys and RFC 3339 datetimes, the shape of a row of
`tiktok-async users -o out.jsonl`. `flat=True` gives one level with dotted keys
(`stats.follower_count`), the columns of `-o out.csv`: what a DataFrame wants.

A `Result` becomes `{"input", "key", <the value's fields>, "status", "error"}`: `status`
is `ok`, `not_found`, `invalid` or `failed` (`outcome`), `error` the message (None when
ok). An input that is not text (a `VideoRef`, a pair) is written as a list.
"""

from __future__ import annotations

from typing import Any

from ._bulk import Result
from ._exceptions import InvalidInputError, NotFoundError, TikTokError
from ._models import (
    Music,
    User,
    UserProfile,
    UserStats,
    Video,
    VideoStats,
    _Model,
    to_builtins,
)

__all__ = ["error_message", "outcome", "to_dict"]


def to_dict(
    value: UserProfile | Video | User | UserStats | VideoStats | Music | Result[Any],
    *,
    flat: bool = False,
) -> dict[str, Any]:
    """`value` (a model or a `Result`) as plain data with snake_case keys.

    Models: `model.to_dict()`. A `Result`: `input`, `key`, the value's fields (none when
    it failed), `status` (`ok`, `not_found`, `invalid`, `failed`) and `error` (the
    message, or None). `flat=True`: dotted keys, one level (`user.id`), as the CSV columns.
    """
    if isinstance(value, _Model):
        return value.to_dict(flat=flat)
    if isinstance(value, Result):
        return _result_row(value, flat)
    raise TypeError(f"to_dict() takes a model or a Result, not {type(value).__name__}")


def outcome(error: TikTokError | None) -> str:
    """How an input ended: `ok` (no error), `invalid`, `not_found` or `failed`."""
    if error is None:
        return "ok"
    if isinstance(error, InvalidInputError):
        return "invalid"
    if isinstance(error, NotFoundError):
        return "not_found"
    return "failed"


def error_message(error: TikTokError) -> str:
    """The message recorded for an input's error (an invalid input: just the reason)."""
    return error.reason if isinstance(error, InvalidInputError) else error.message


def _result_row(result: Result[Any], flat: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"input": _plain_input(result.input), "key": result.key}
    value = result.value
    if isinstance(value, _Model):
        row.update(value.to_dict(flat=flat))
    elif value is not None:
        row["value"] = to_builtins(value)
    row["status"] = outcome(result.error)
    row["error"] = None if result.error is None else error_message(result.error)
    return row


def _plain_input(raw: object) -> Any:
    if isinstance(raw, str):
        return raw
    try:
        return to_builtins(raw)
    except TypeError:
        return str(raw)
