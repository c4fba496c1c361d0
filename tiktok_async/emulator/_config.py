"""The emulator's configuration: one frozen dataclass, changed with `dataclasses.replace`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._data import DEFAULT_MISSING_SHARE
from ._faults import Faults

DEFAULT_API_KEY = "test-key"
DEFAULT_PREFIX = "/dev/tiktok"


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
    - `faults`: random faults and added per-request latency (see `Faults`), drawn from
      `random.Random(seed)`.
    - `db_path`: SQLite file, or `":memory:"`.
    - `shutdown_timeout`: seconds open requests get when the server stops.
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
    faults: Faults = field(default_factory=Faults)
    db_path: str = ":memory:"
    seed: int = 0
    shutdown_timeout: float = 0.5

    def __post_init__(self) -> None:
        keys: object = self.api_keys
        keys = (keys,) if isinstance(keys, str) else tuple(self.api_keys)
        object.__setattr__(self, "api_keys", keys)
        if not self.api_keys:
            raise ValueError("at least one API key is needed")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError("prefix must be empty, or start with '/' and not end with one")
        if not 0 <= self.missing_share < 1:
            raise ValueError("missing_share must be in [0, 1)")
        if self.upstream_latency_ms < 0 or self.upstream_jitter_ms < 0:
            raise ValueError("upstream latency must be >= 0")
