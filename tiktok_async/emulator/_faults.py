"""Faults: seeded, repeatable, off by default. They apply to API routes only.

Kinds, random (a share of requests) or injected (`FaultPlan.inject`):

- `500`, `502`, `503`, `504`, `408`: that status with API Gateway's body.
- `drop`: the connection is closed without an answer.
- `truncate`: the headers announce the full body, half of it is sent, then the
  connection is closed (a client sees a payload error).
- `slow`: the answer waits `slow_seconds` (longer than a client's timeout).

Freezes (not a share: a clock): with `freeze_every` > 0, the last `freeze_seconds` of every
`freeze_every` seconds, counted from when the faults are set, are a freeze, as a stop-the-world
pause of the server: a request that arrives then waits until the freeze ends, then is
answered as usual. `Faults(freeze_every=4, freeze_seconds=1)`: frozen 3-4 s, 7-8 s, ...

Injected only: API Gateway's own refusals, and hostile answers (what a proxy, a broken
backend or a hostile host can send instead of the API; see `_hostile`):

- `throttle`, `quota`, `forbidden`: 429 Too Many Requests, 429 Limit Exceeded, 403
  Forbidden, as if the usage plan or the key said so.
- `throttle_long`, `throttle_long_date`: 429 Too Many Requests with `Retry-After: 99999`,
  or an HTTP date a year ahead.
- `gzip_bomb`, `gzip_bomb_chunked`, `gzip_bomb_eof`: a 200 `Content-Encoding: gzip`
  whose 0.5 MB inflate to `bomb_mb` (512) MB, sent with a `Content-Length`, chunked, or
  until the connection closes.
- `deep_json`, `deep_json_404`, `deep_json_429`: JSON nested 100,000 deep: in an
  unknown field of the 200, or in a 404 / 429 error body.
- `broken_json`, `html_200`: a 200 whose body is the answer cut in half (its
  `Content-Length` matches: not a transport error), or an HTML page.
- `html_404`, `empty_404`, `json_404`: a 404 that is not the API's (a proxy's HTML
  page, an empty body, JSON without the API's message).
- `silent`: the request is read and never answered (until the client gives up).
- `bad_status_line`: an answer that is not HTTP (`HTTP/1.1 2OO OK`), as a broken proxy sends.
- `slow_body`: the answer's headers at once, its body a byte every half second.

`Faults` says what share of requests gets each random fault (drawn in arrival order from a
`random.Random(seed)`, so a run repeats) and the added latency. `FaultPlan.inject(kind, n,
after=m)` forces `n` API requests to get `kind`, before any random draw, once `m` more
have passed untouched (an aborting answer after m good ones).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

RANDOM_KINDS = ("500", "502", "503", "504", "drop", "truncate", "slow")
HOSTILE_KINDS = (
    "throttle_long", "throttle_long_date", "gzip_bomb", "gzip_bomb_chunked", "gzip_bomb_eof",
    "deep_json", "deep_json_404", "deep_json_429", "broken_json", "html_200",
    "html_404", "empty_404", "json_404", "silent", "bad_status_line", "slow_body",
)
FAULT_KINDS = (*RANDOM_KINDS[:4], "408", *RANDOM_KINDS[4:], "throttle", "quota", "forbidden",
               *HOSTILE_KINDS)
_RANDOM = {"500": "http_500", "502": "http_502", "503": "http_503", "504": "http_504",
           "drop": "drop", "truncate": "truncate", "slow": "slow"}
_SPREAD = ("http_500", "http_502", "http_503", "http_504")
_KIND_OF = {name: kind for kind, name in _RANDOM.items()}
_SHARE = "a share is the fraction of requests that get the fault, from 0 to 1 (0.05: 5%)"
_FORMS = ("a Faults, a mapping of kind or field to a number ({'500': 0.01, 'drop': 0.01}), "
          "or a string ('500=0.01,drop=0.01', or a bare share such as '0.05')")


@dataclass(frozen=True)
class Faults:
    """Shares (0 to 1) of API requests that get each fault, added latency, bomb size."""

    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    http_504: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 30.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bomb_mb: int = 512
    freeze_every: float = 0.0
    freeze_seconds: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value, name = getattr(self, f.name), _KIND_OF.get(f.name, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: a number expected, got {value!r}")
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{name}: a finite number >= 0 expected, got {value!r}")
        self._check_shares()
        if not isinstance(self.bomb_mb, int) or not 1 <= self.bomb_mb <= 4096:
            raise ValueError(f"bomb_mb: an integer from 1 to 4096 expected, got {self.bomb_mb!r}")
        if self.freeze_every and self.freeze_seconds >= self.freeze_every:
            raise ValueError(f"freeze_seconds ({self.freeze_seconds:g}) must be shorter than "
                             f"freeze_every ({self.freeze_every:g}): the server is frozen "
                             "for the last freeze_seconds of every freeze_every seconds")

    def _check_shares(self) -> None:
        """Each share is a fraction of the requests, and together they are at most all."""
        shares = {kind: getattr(self, name) for kind, name in _RANDOM.items()}
        for kind, share in shares.items():
            if share > 1:
                raise ValueError(f"{kind}={share:g}: {_SHARE}")
        total = sum(shares.values())
        if total > 1:
            given = ", ".join(f"{k}={v:g}" for k, v in shares.items() if v)
            raise ValueError(f"the fault shares add up to {total:g} ({given}): "
                             "together they must be at most 1")

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Faults from a command-line spec.

        A bare number (`0.05`) is spread evenly over 500, 502, 503 and 504. Otherwise a
        comma list of `kind=value`, kinds `500 502 503 504 drop truncate slow` (shares) and
        `slow_seconds latency_ms jitter_ms bomb_mb freeze_every freeze_seconds`:
        `500=0.02,drop=0.01,slow=0.001,slow_seconds=5`. A spec that does not fit raises
        ValueError saying what is wrong (an unknown kind, a share above 1, ...).
        """
        spec = spec.strip()
        if not spec:
            return cls()
        if "=" not in spec:
            share = _bare_share(spec)
            return cls.from_mapping(dict.fromkeys(_SPREAD, share / len(_SPREAD)))
        values: dict[str, str] = {}
        for item in spec.split(","):
            kind, _, value = item.partition("=")
            values[kind.strip()] = value
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Faults:
        """Faults from `{kind or field: value}`: `{"500": 0.01, "drop": 0.01, "latency_ms": 2}`."""
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for kind, value in values.items():
            name = _RANDOM.get(str(kind).strip(), str(kind).strip())
            if name not in names:
                raise ValueError(f"unknown fault {kind!r}; {_names()}")
            number = _number(kind, value) if isinstance(value, str) else value
            whole = name == "bomb_mb" and isinstance(number, float) and number.is_integer()
            kwargs[name] = int(number) if whole else number
        return cls(**kwargs)

    @classmethod
    def coerce(cls, value: object) -> Faults:
        """`value` as Faults: a `Faults`, a mapping or a string (`from_mapping`, `parse`).

        Anything else is a TypeError naming the accepted forms.
        """
        if isinstance(value, Faults):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            return cls.from_mapping(value)
        raise TypeError(f"faults: {_FORMS} expected, got {type(value).__name__}")

    def table(self) -> list[tuple[float, str]]:
        """Cumulative (threshold, kind) pairs for one uniform draw."""
        rows, total = [], 0.0
        for kind, name in _RANDOM.items():
            share = float(getattr(self, name))
            if share > 0:
                total += share
                rows.append((total, kind))
        return rows


def _names() -> str:
    """What a spec may name: the kinds (shares) and the other fields, as `Faults` has them."""
    others = (f.name for f in fields(Faults) if f.name not in _KIND_OF)
    return f"kinds {', '.join(_RANDOM)} (shares), fields {', '.join(others)}"


def _bare_share(spec: str) -> float:
    """A spec without `=`: one share, spread over the 5xx kinds."""
    try:
        share = float(spec)
    except ValueError:
        raise ValueError(f"{spec!r} is neither a share (0.05) nor a list of kind=value "
                         f"(500=0.01,drop=0.01); {_names()}") from None
    if share > 1:
        raise ValueError(f"{spec}: {_SHARE}")
    return share


def _number(kind: object, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{kind}={value}: a number expected after '='") from None


class _Injection:
    """`count` requests get `kind`, once `after` more have passed untouched."""

    __slots__ = ("after", "count", "kind")

    def __init__(self, kind: str, count: int, after: int) -> None:
        self.kind, self.count, self.after = kind, count, after


def _count_arg(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: an integer >= 0 expected, got {value!r}")
    return value


class FaultPlan:
    """Decides, request by request, which fault (if any) an API request gets."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self._forced: deque[_Injection] = deque()
        self.applied: dict[str, int] = {}
        self.armed = False
        self.configure(faults, seed)

    def configure(self, faults: Faults, seed: int) -> None:
        """New shares and latency, and a fresh draw from `seed`; pending injections stay."""
        self.faults = faults
        self._rng = random.Random(seed)
        self._table = faults.table()
        self._origin = time.monotonic()
        self._rearm()

    def _rearm(self) -> None:
        f = self.faults
        self.armed = bool(self._forced or self._table or f.latency_ms or f.jitter_ms
                          or f.freeze_every)

    def inject(self, kind: str, count: int = 1, after: int = 0) -> None:
        """Force `count` API requests to get `kind` (see `FAULT_KINDS`), once `after` more
        requests have passed (counted from when the injections queued before are used up)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        count, after = _count_arg("count", count), _count_arg("after", after)
        if count:
            self._forced.append(_Injection(kind, count, after))
            self._rearm()

    def clear(self) -> None:
        """Drop pending injections and the count of applied faults."""
        self._forced.clear()
        self.applied.clear()
        self._rearm()

    def pick(self) -> str | None:
        """The fault for this request, or None."""
        kind = self._forced_kind() if self._forced else None
        if kind is None and self._table:
            draw = self._rng.random()
            kind = next((k for limit, k in self._table if draw < limit), None)
        if kind is not None:
            self.applied[kind] = self.applied.get(kind, 0) + 1
        return kind

    def _forced_kind(self) -> str | None:
        head = self._forced[0]
        if head.after:
            head.after -= 1
            return None
        head.count -= 1
        if not head.count:
            self._forced.popleft()
            self._rearm()
        return head.kind

    def delay(self) -> float:
        """Seconds of added latency for this request (fixed plus uniform jitter)."""
        f = self.faults
        jitter = self._rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0
        return (f.latency_ms + jitter) / 1000

    def frozen_for(self, now: float | None = None) -> float:
        """Seconds until the freeze in force ends (0 outside one); `now`: `time.monotonic()`."""
        every, length = self.faults.freeze_every, self.faults.freeze_seconds
        if not every:
            return 0.0
        phase = ((time.monotonic() if now is None else now) - self._origin) % every
        return every - phase if phase >= every - length else 0.0
