"""Observation and control endpoints, outside the API prefix; no API key, no faults.

- `GET  /_emulator/stats`: counts (`StatsSnapshot.to_json()`), plus `db` (users, videos
  stored) and `upstream_fetches`; `?arrivals=N` keeps only the last N arrival times.
- `POST /_emulator/reset`: forget counts, injections, buckets and quotas; with body
  `{"data": true}` also delete every stored user and video.
- `GET  /_emulator/config`, `POST /_emulator/config`: read or change `rate`, `burst`,
  `quota`, `quota_period`, `retry_after`, `retry_after_date`, `missing_share`,
  `upstream_latency_ms`, `upstream_jitter_ms`, `latency_profile`, `upstream_workers`,
  `integration_timeout`, `api_keys` (keys are never shown).
- `POST /_emulator/faults`: change `Faults` fields (`http_500` ... `bomb_mb`) and/or
  `{"inject": "503", "count": 2, "after": 0}`; answers the faults now in force.

A change the config refuses (`rate: -5`, `burst: 0`, `quota_period: 0`, an unknown
field) answers 400 `{"message": ..., "field": ...}` and changes nothing. With a
`control_token` set (always, when the emulator listens beyond loopback), a request without
it in `x-emulator-token` answers 401; without one, `api_keys` cannot be changed over HTTP.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._config import CONTROL_TOKEN_HEADER, ConfigError
from ._stats import key_label
from ._store import encode

if TYPE_CHECKING:
    from ._app import EmulatorCore

_CONFIGURABLE = frozenset({
    "rate", "burst", "quota", "quota_period", "retry_after", "retry_after_date",
    "missing_share", "upstream_latency_ms", "upstream_jitter_ms", "latency_profile",
    "upstream_workers", "integration_timeout", "api_keys",
})


class _Refused(Exception):
    """A control request refused with `status` (400, 401, 403)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field


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
    """The config as JSON, keys replaced by their labels, the control token hidden."""
    data = dataclasses.asdict(core.config)
    data["api_keys"] = [key_label(k) for k in core.config.api_keys]
    data["control_token"] = None if core.config.control_token is None else "***"
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
        unknown = sorted(changes.keys() - _CONFIGURABLE)
        if unknown:
            raise ConfigError(unknown[0], "cannot be set over HTTP", changes[unknown[0]])
        if "api_keys" in changes and core.config.control_token is None:
            raise _Refused(403, "changing api_keys over HTTP needs a control token: start "
                           "the emulator with control_token (serve --control-token)",
                           "api_keys")
        core.reconfigure(**changes)
    return _json(config_json(core))


async def _faults(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    body = await _body(request)
    inject, count, after = body.pop("inject", None), body.pop("count", 1), body.pop("after", 0)
    if body:
        try:
            faults = dataclasses.replace(core.config.faults, **body)
        except TypeError:
            raise ConfigError(sorted(body)[0], "not a Faults field", body) from None
        except ValueError as exc:  # Faults' messages start with the field's name
            name = str(exc).partition(":")[0]
            field = name if name in body else (next(iter(body)) if len(body) == 1 else None)
            raise _Refused(400, str(exc), field) from None
        core.reconfigure(faults=faults)
    if inject is not None:
        core.faults.inject(str(inject), count, after)
    return _json(dataclasses.asdict(core.config.faults))


_ROUTES = {
    ("GET", "/_emulator/stats"): _stats,
    ("POST", "/_emulator/reset"): _reset,
    ("GET", "/_emulator/config"): _config,
    ("POST", "/_emulator/config"): _config,
    ("POST", "/_emulator/faults"): _faults,
}


def _check_token(core: EmulatorCore, request: web.BaseRequest) -> None:
    expected = core.config.control_token
    if expected is None:
        return
    given = request.headers.get(CONTROL_TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise _Refused(401, f"the control API needs the {CONTROL_TOKEN_HEADER} header")


async def handle_control(core: EmulatorCore, request: web.BaseRequest) -> web.Response:
    """Serve one `/_emulator/*` request."""
    endpoint = _ROUTES.get((request.method, request.raw_path.partition("?")[0]))
    if endpoint is None:
        return _json({"message": "Not found"}, 404)
    try:
        _check_token(core, request)
        return await endpoint(core, request)
    except _Refused as exc:
        return _json({"message": str(exc), "field": exc.field}, exc.status)
    except ConfigError as exc:
        return _json({"message": str(exc), "field": exc.field}, 400)
    except (ValueError, TypeError, RecursionError) as exc:
        return _json({"message": str(exc)[:300], "field": None}, 400)
