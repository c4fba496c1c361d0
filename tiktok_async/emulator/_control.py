"""Observation and control endpoints, outside the API prefix; no key needed, no faults.

- `GET  /_emulator/stats`: counts (`StatsSnapshot.to_json()`), plus `db` (users, videos
  stored) and `upstream_fetches`; `?arrivals=N` keeps only the last N arrival times.
- `POST /_emulator/reset`: forget counts, injections, buckets and quotas; with body
  `{"data": true}` also delete every stored user and video.
- `GET  /_emulator/config`, `POST /_emulator/config`: read or change `rate`, `burst`,
  `quota`, `quota_period`, `retry_after`, `retry_after_date`, `missing_share`,
  `upstream_latency_ms`, `upstream_jitter_ms`, `api_keys` (keys are never shown).
- `POST /_emulator/faults`: change `Faults` fields (`http_500` ... `jitter_ms`) and/or
  `{"inject": "503", "count": 2}`; answers the faults now in force.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._stats import key_label
from ._store import encode

if TYPE_CHECKING:
    from ._app import EmulatorCore

_CONFIGURABLE = frozenset({
    "rate", "burst", "quota", "quota_period", "retry_after", "retry_after_date",
    "missing_share", "upstream_latency_ms", "upstream_jitter_ms", "api_keys",
})


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(obj), status=status, content_type="application/json")


async def _body(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a JSON object expected")
    return data


def config_json(core: EmulatorCore) -> dict[str, Any]:
    """The config as JSON, keys replaced by their labels."""
    data = dataclasses.asdict(core.config)
    data["api_keys"] = [key_label(k) for k in core.config.api_keys]
    return data


async def _stats(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    data = core.snapshot().to_json()
    keep = request.rel_url.query.get("arrivals")
    if keep is not None:
        count = int(keep)
        data["arrivals"] = data["arrivals"][-count:] if count > 0 else []
    users, videos = await core.db.counts()
    data.update(db={"users": users, "videos": videos},
                upstream_fetches=core.store.upstream_fetches)
    return _json(data)


async def _reset(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    body = await _body(request)
    core.reset()
    if body.get("data"):
        await core.store.clear()
    return _json({"ok": True})


async def _config(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    if request.method == "POST":
        changes = await _body(request)
        unknown = changes.keys() - _CONFIGURABLE
        if unknown:
            raise ValueError(f"cannot set {', '.join(sorted(unknown))}")
        core.reconfigure(**changes)
    return _json(config_json(core))


async def _faults(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    body = await _body(request)
    inject, count = body.pop("inject", None), int(body.pop("count", 1))
    if body:
        core.reconfigure(faults=dataclasses.replace(core.config.faults, **body))
    if inject is not None:
        core.faults.inject(str(inject), count)
    return _json(dataclasses.asdict(core.config.faults))


_ROUTES = {
    ("GET", "/_emulator/stats"): _stats,
    ("POST", "/_emulator/reset"): _reset,
    ("GET", "/_emulator/config"): _config,
    ("POST", "/_emulator/config"): _config,
    ("POST", "/_emulator/faults"): _faults,
}


async def handle_control(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    """Serve one `/_emulator/*` request."""
    endpoint = _ROUTES.get((request.method, request.raw_path.partition("?")[0]))
    if endpoint is None:
        return _json({"message": "Not found"}, 404)
    try:
        return await endpoint(core, request)
    except (ValueError, TypeError) as exc:
        return _json({"message": str(exc)}, 400)

