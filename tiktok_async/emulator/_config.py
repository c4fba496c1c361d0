"""The emulator's configuration: one frozen dataclass, changed with `dataclasses.replace`.

Every field is checked when a config is made (so also by `replace`, and so by a change
at run time): a value that would break the emulator (`rate=-5`, `burst=0`,
`quota_period=0`, a key that cannot be a header) raises `ConfigError` naming the field,
and the config in force stays as it was.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ._data import DEFAULT_MISSING_SHARE, QUIRKS
from ._faults import Faults
from ._profiles import PROFILES

DEFAULT_API_KEY = "test-key"
DEFAULT_PREFIX = "/dev/tiktok"
#: The header that carries the control token to `/_emulator/*`.
CONTROL_TOKEN_HEADER = "x-emulator-token"
_MAX_RETRY_AFTER = 10**9  # about 31 years: an HTTP date still fits


class ConfigError(ValueError):
    """A config field with a value the emulator cannot run with; `.field` names it."""

    def __init__(self, name: str, problem: str, value: object) -> None:
        super().__init__(f"{name}: {problem}, got {value!r}"[:300])
        self.field = name


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Every default is "a well-behaved API".

    - `api_keys`: the accepted `x-api-key` values (one string is taken as one key).
    - `rate` / `burst`: the per-key token bucket (API Gateway's usage-plan throttle);
      `rate=None` means no throttle; `burst=None` with a rate means `ceil(rate)`.
    - `quota` / `quota_period`: at most `quota` requests per key per period (seconds);
      `None` means no quota.
    - `retry_after`: seconds sent in `Retry-After` on 429 `Too Many Requests`; None (API
      Gateway's behaviour) sends no header. `retry_after_date=True` sends it as an HTTP date.
    - `missing_share`: the share of ordinary handles (and of video ids) that do not exist.
    - `upstream_latency_ms` + uniform `upstream_jitter_ms`: the "fetch from TikTok" on a
      user's or video's first request; later requests come from the database.
    - `latency_profile`: a named first-fetch profile instead (`"service"`: log-normal,
      median 1.5 s, p99 about 10 s; `"slow"`, `"fast"`: see `emulator._profiles`).
    - `upstream_workers`: first fetches made at once (the service's workers fetching from
      TikTok); more wait their turn, first come first served, so their latency grows with
      the requests in flight, as a backend that queues does. None: no limit.
    - `integration_timeout`: seconds a request waits for its first fetch (a worker's turn
      included) before the answer is API Gateway's 504 "Endpoint request timed out"
      (29, API Gateway's own; None: wait however long it takes). The fetch goes on and
      saves the user or video, as the service's function behind the gateway would.
    - `faults`: random faults and added per-request latency: a `Faults`, a mapping
      (`{"500": 0.01, "drop": 0.01}`) or the command line's string (`"500=0.01,drop=0.01"`),
      drawn from `random.Random(seed)`.
    - `quirks`: named departures from the seed's types (`"nulls"`, `"unknown_fields"`,
      `"string_counts"`); none by default, so every field has the type the seed gives.
    - `db_path`: SQLite file, or `":memory:"`.
    - `shutdown_timeout`: seconds open requests get when the server stops.
    - `idle_timeout`: seconds a connection may stay without a whole request: while its
      headers come in, and idle between keep-alive requests; then it is closed.
    - `control_token`: when set, every `/_emulator/*` request must carry it in the
      `x-emulator-token` header; changing `api_keys` over HTTP needs it. An emulator that
      listens beyond loopback makes one when none is given (`Emulator.control_token`).
    - `tls`: serve HTTPS with a throwaway certificate for loopback (and `host`), signed by
      a CA made at start (`Emulator.ca_file`, `.ca_pem`: what a client trusts). Needs
      `trustme` (the `emulator-tls` extra).
    """

    host: str = "127.0.0.1"
    port: int = 0
    prefix: str = DEFAULT_PREFIX
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    rate: float | None = None
    burst: int | None = None
    quota: int | None = None
    quota_period: float = 86_400.0
    retry_after: int | None = None
    retry_after_date: bool = False
    missing_share: float = DEFAULT_MISSING_SHARE
    upstream_latency_ms: float = 20.0
    upstream_jitter_ms: float = 10.0
    latency_profile: str | None = None
    upstream_workers: int | None = None
    integration_timeout: float | None = 29.0
    faults: Faults = field(default_factory=Faults)
    quirks: tuple[str, ...] = ()
    db_path: str = ":memory:"
    seed: int = 0
    shutdown_timeout: float = 0.5
    idle_timeout: float = 60.0
    control_token: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "api_keys", _keys(self.api_keys))
        set_field(self, "quirks", _quirks(self.quirks))
        try:
            set_field(self, "faults", Faults.coerce(self.faults))
        except ValueError as exc:
            raise ConfigError("faults", str(exc), self.faults) from None
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            problem = check(value)
            if problem:
                raise ConfigError(name, problem, value)

    @property
    def loopback(self) -> bool:
        """Whether `host` is a loopback address (only this machine can connect)."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1; anything else (0.0.0.0, a name) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _keys(value: object) -> tuple[str, ...]:
    keys = (value,) if isinstance(value, str) else value
    if not isinstance(keys, (tuple, list)) or not keys:
        raise ConfigError("api_keys", "at least one key (a string) is needed", value)
    for key in keys:
        problem = _header_text(key)
        if problem:
            raise ConfigError("api_keys", problem, key)
    return tuple(keys)


def _quirks(value: object) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list, set, frozenset)):
        raise ConfigError("quirks", f"names among {', '.join(QUIRKS)} expected", value)
    unknown = [n for n in names if n not in QUIRKS]
    if unknown:
        raise ConfigError("quirks", f"unknown quirk; known: {', '.join(QUIRKS)}", unknown[0])
    return tuple(n for n in QUIRKS if n in names)


def _header_text(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "a non-empty string expected"
    if not value.isascii() or not value.isprintable() or len(value) > 4096:
        return "printable ASCII of at most 4096 characters expected (it goes in a header)"
    return None


def _is_number(value: object, integer: bool = False) -> TypeGuard[int | float]:
    """An int (not a bool), or a finite float unless `integer`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return not integer and isinstance(value, float) and math.isfinite(value)


def _number(low: float, *, above: bool = False, optional: bool = False,
            integer: bool = False, high: float = math.inf) -> Callable[[object], str | None]:
    """A check: a finite number (an int if `integer`) >= `low` (> if `above`), <= `high`."""
    kind = "an integer" if integer else "a finite number"
    bound = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")

    def check(value: object) -> str | None:
        if value is None and optional:
            return None
        if not _is_number(value, integer):
            return f"{kind} {bound} expected" + (" (or null)" if optional else "")
        if value < low or (above and value == low) or value > high:
            return f"must be {bound}"
        return None

    return check


def _prefix(value: object) -> str | None:
    if not isinstance(value, str):
        return "a string expected"
    if value and (not value.startswith("/") or value.endswith("/") or not value.isprintable()):
        return "must be empty, or start with '/' and not end with one"
    return None


def _text(optional: bool = False) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None and optional:
            return None
        return None if isinstance(value, str) else "a string expected"

    return check


def _token(value: object) -> str | None:
    return None if value is None else _header_text(value)


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "true or false expected"


def _profile(value: object) -> str | None:
    if value is None or value in PROFILES:
        return None
    return f"must be one of {', '.join(PROFILES)} (or null)"


_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "host": _text(),
    "port": _number(0, integer=True, high=65535),
    "prefix": _prefix,
    "rate": _number(0, above=True, optional=True, high=1e9),
    "burst": _number(1, optional=True, integer=True, high=10**9),
    "quota": _number(0, optional=True, integer=True),
    "quota_period": _number(0.001, high=1e10),
    "retry_after": _number(0, optional=True, integer=True, high=_MAX_RETRY_AFTER),
    "retry_after_date": _boolean,
    "missing_share": _number(0, high=0.999_999),
    "upstream_latency_ms": _number(0, high=3_600_000),
    "upstream_jitter_ms": _number(0, high=3_600_000),
    "latency_profile": _profile,
    "upstream_workers": _number(1, optional=True, integer=True, high=1_000_000),
    "integration_timeout": _number(0, above=True, optional=True, high=86_400),
    "db_path": _text(),
    "seed": _number(-(2**63), integer=True, high=2**63),
    "shutdown_timeout": _number(0, high=3600),
    "idle_timeout": _number(0, above=True, high=86_400),
    "control_token": _token,
    "tls": _boolean,
}
