"""An emulator of the hosted TikTok API: a real aiohttp server, for tests, demos and benchmarks.

```python
from tiktok_async.emulator import Emulator

async with Emulator() as emu:                 # 127.0.0.1, a free port
    emu.base_url                              # http://127.0.0.1:PORT/dev/tiktok
    emu.api_key                               # "test-key"
```

Routes `GET {prefix}/user/{handle}` and `GET {prefix}/video/{handle}/{videoId}` answer
deterministic data (same in every process), stored in SQLite on first fetch; the gateway
answers as API Gateway does (403, 429, 5xx, 504). Magic handles: `missing_*` (404),
`broken_*` (a body that does not fit the schema). Observation at `/_emulator/stats`.
TikTok's short links redirect at `/_short/{host}{path}` (`emu.short_link_base`).
Command line: `tiktok-async serve` or `python -m tiktok_async.emulator`. pytest fixture:
`tiktok_emulator`.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._config import DEFAULT_API_KEY, EmulatorConfig
    from ._data import (
        existing_handle,
        is_missing,
        is_video_missing,
        missing_handle,
        missing_video_id,
        video_id_for,
    )
    from ._emulator import Emulator
    from ._faults import Faults
    from ._gateway import Quota, TokenBucket
    from ._process import EmulatorProcess
    from ._shortlinks import short_link_target
    from ._stats import StatsSnapshot, busiest_window, key_label

# Public name -> private module. Imported on first use, so that loading the pytest plugin
# (which runs in every pytest session) does not import aiohttp.
_EXPORTS = {
    "DEFAULT_API_KEY": "_config",
    "Emulator": "_emulator",
    "EmulatorConfig": "_config",
    "EmulatorProcess": "_process",
    "Faults": "_faults",
    "Quota": "_gateway",
    "StatsSnapshot": "_stats",
    "TokenBucket": "_gateway",
    "busiest_window": "_stats",
    "create_app": "_app",
    "existing_handle": "_data",
    "is_missing": "_data",
    "is_video_missing": "_data",
    "key_label": "_stats",
    "missing_handle": "_data",
    "missing_video_id": "_data",
    "short_link_target": "_shortlinks",
    "video_id_for": "_data",
}

__all__ = [
    "DEFAULT_API_KEY",
    "Emulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "Faults",
    "Quota",
    "StatsSnapshot",
    "TokenBucket",
    "busiest_window",
    "create_app",
    "existing_handle",
    "is_missing",
    "is_video_missing",
    "key_label",
    "missing_handle",
    "missing_video_id",
    "short_link_target",
    "video_id_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
