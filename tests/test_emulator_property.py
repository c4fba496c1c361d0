"""Property: no path part, however bad, makes the emulator answer 500.

The emulator runs in a child process (`EmulatorProcess`) so hypothesis can drive it from a
plain synchronous test, with shrinking, over `http.client` (which sends the path as given).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_async.emulator import EmulatorProcess

NASTY = ["", ".", "..", "...", "%2F", "a%2Fb", "%2e%2e", "%", "%zz", "%FF", " ", "a b",
         "é", "🙂", "שלום", "0" * 40, "1" * 40, "x" * 200, "a/b", "?", "#", "\\", "\x00",
         "%00", "ok.handle", "7301234567890123456", "0" * 5000 + "1"]

parts = st.one_of(st.sampled_from(NASTY), st.text(max_size=60),
                  st.text(alphabet="0123456789", min_size=1, max_size=45))


@pytest.fixture(scope="module")
def server() -> Iterator[http.client.HTTPConnection]:
    with EmulatorProcess("--upstream-latency-ms", "0") as proc:
        split = urlsplit(proc.base_url)
        conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=10)
        conn.prefix = split.path  # type: ignore[attr-defined]
        yield conn
        conn.close()


def ask(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, str]:
    """GET `path` (sent as is) with the key: (status, body, content type)."""
    try:
        conn.request("GET", path, headers={"x-api-key": "test-key"})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "")
    except (http.client.HTTPException, ConnectionError):
        conn.close()
        raise


def paths(prefix: str, kind: str, a: str, b: str, raw: bool) -> list[str]:
    encode = (lambda s: s) if raw else (lambda s: quote(s, safe=""))
    if kind == "user":
        return [f"{prefix}/user/{encode(a)}"]
    return [f"{prefix}/video/{encode(a)}/{encode(b)}", f"{prefix}/video/ok.handle/{encode(b)}"]


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["user", "video"]), a=parts, b=parts, raw=st.booleans())
def test_bad_path_parts_never_answer_500(
    server: http.client.HTTPConnection, kind: str, a: str, b: str, raw: bool
) -> None:
    for path in paths(server.prefix, kind, a, b, raw):  # type: ignore[attr-defined]
        if not all(33 <= ord(c) < 127 for c in path):
            path = quote(path, safe="/%?#\\")  # http.client refuses such raw characters
        status, body, content_type = ask(server, path)
        assert status in {200, 400, 403, 404}, (path, status, body[:200])
        if content_type == "application/json" and status != 200:
            assert "message" in json.loads(body)
        else:  # only aiohttp's own parser answers otherwise: a request line over 8190 bytes
            assert status == 200 or (status == 400 and len(path) > 8000), (path[:100], body)
