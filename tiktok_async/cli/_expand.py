"""`--resolve-short-links`: short links expanded to their full URL before an input is parsed.

An input that holds no short link (`short_link_in` finds none) is parsed at once, with
no request and no wait. One that does is expanded by a `ShortLinkResolver` (its own rate
limit, 2/s by default) in a small pool of its own, `RESOLVERS` at a time, so a link
waiting for its turn never holds up the inputs behind it (in input order when the run
writes in input order: a table). The key is computed from the full URL, so a short link
and the link it leads to are one input for dedupe and resume. Inputs holding the same
short link are resolved once, even when they arrive together.

A link the resolver refuses (`InvalidInputError`: expired, leads off TikTok, too many
redirects) makes the input invalid, with the resolver's reason. Any other error (a 429
of TikTok's web host, no answer) makes it failed: the input is wrapped in `Unresolved`
(run_bulk sends nothing for it) and `unwrap` gives the error back when it is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from .._bulk import Result
from .._exceptions import InvalidInputError, TikTokError
from .._inputs import short_link_in
from .._kinds import Kind, Parsed
from .._pool import bounded_map
from .._shortlinks import ShortLinkResolver
from ._inputfile import InputLine

__all__ = ["RESOLVERS", "Unresolved", "expand_each", "line_of", "unwrap"]

#: Inputs worked on at once by the expanding stage (most wait for the resolver's rate).
RESOLVERS = 16


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An input whose short link could not be resolved, and why (recorded as failed)."""

    line: InputLine
    error: TikTokError


def unwrap(result: Result[Any]) -> tuple[InputLine, TikTokError | None]:
    """The input line of a result and its error (the resolver's, for an `Unresolved`)."""
    raw = result.input
    if isinstance(raw, InputLine):  # the one check of an answer's usual path
        return raw, result.error
    if isinstance(raw, Unresolved):
        return raw.line, raw.error
    return line_of(raw), result.error


def line_of(raw: object) -> InputLine:
    """The input line a parsed input (`Parsed.raw`) came from."""
    line = raw.line if isinstance(raw, Unresolved) else raw
    assert isinstance(line, InputLine)
    return line


def expand_each(
    lines: Iterable[InputLine] | AsyncIterable[InputLine],
    resolver: ShortLinkResolver,
    parse_line: Callable[[InputLine], Parsed[Any]],
    kind: Kind[Any, Any],
    *,
    ordered: bool,
) -> AsyncGenerator[Parsed[Any], None]:
    """`lines` parsed, short links expanded first (see the module docstring)."""

    async def work(line: InputLine) -> Parsed[Any]:
        if line.problem is not None or short_link_in(line.text) is None:
            return parse_line(line)
        return await _expanded(line, resolver, kind)

    pairs = bounded_map(lines, work, concurrency=RESOLVERS, ordered=ordered, key=_same_link)
    return _parsed(pairs)


def _same_link(line: InputLine) -> object:
    """Inputs holding the same short link are resolved once (the others share it)."""
    link = None if line.problem is not None else short_link_in(line.text)
    return ("line", id(line)) if link is None else link


async def _parsed(pairs: AsyncGenerator[tuple[InputLine, Parsed[Any]], None]
                  ) -> AsyncGenerator[Parsed[Any], None]:
    async with aclosing(pairs):
        async for line, parsed in pairs:
            yield _for_line(parsed, line)


def _for_line(parsed: Parsed[Any], line: InputLine) -> Parsed[Any]:
    """A shared resolution as the answer of `line` (its own raw input)."""
    if line_of(parsed.raw) is line:
        return parsed
    raw = Unresolved(line, parsed.raw.error) if isinstance(parsed.raw, Unresolved) else line
    return parsed.replace(raw=raw)


async def _expanded(line: InputLine, resolver: ShortLinkResolver,
                    kind: Kind[Any, Any]) -> Parsed[Any]:
    try:
        url = await resolver.expand(line.text)
    except InvalidInputError as exc:
        return Parsed(line, None, None, None, exc)
    except TikTokError as exc:
        reason = "the short link could not be resolved"
        return Parsed(Unresolved(line, exc), None, None, None, InvalidInputError(line.text,
                                                                                  reason))
    parsed = kind.parse(url)
    return Parsed(line, parsed.key, parsed.handle, parsed.target, parsed.invalid)
