"""The command line's client options from issue 15, run as a real subprocess against the
emulator: the key from a file or stdin, --ca-file / --no-verify over TLS, --proxy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run
from forward_proxy import ForwardProxy

from tiktok_async.emulator import Emulator, existing_handle

Factory = Callable[..., Awaitable[Emulator]]
KEY = "sk-cli-KEY-0f9e8d"
WRONG = "wrong-key-in-the-environment"  # so a run that works took the key we gave


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(api_keys=(KEY,), upstream_latency_ms=0)


@pytest.fixture
async def tls_emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(tls=True, api_keys=(KEY,), upstream_latency_ms=0)


def handles_file(folder: Path, count: int = 2) -> str:
    (folder / "in.txt").write_text("".join(f"{existing_handle(n)}\n" for n in range(count)))
    return "in.txt"


async def test_key_from_a_file(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"{KEY}\n")
    code, _, err = await run(emulator, "users", handles_file(tmp_path), "--api-key-file",
                             "key", "-q", key=WRONG, cwd=tmp_path)
    assert code == 0, err
    assert len(rows(tmp_path / "users.jsonl")) == 2


@pytest.mark.parametrize(("how", "text"), [
    ("file", f"\ufeff{KEY}\r\n"),  # Notepad: a byte-order mark and CRLF
    ("environment", f"{KEY}\r"),  # export KEY=$(cat key.txt) of a CRLF file keeps the CR
])
async def test_a_key_with_a_bom_or_a_carriage_return_is_taken_without_them(
    emulator: Emulator, tmp_path: Path, how: str, text: str,
) -> None:
    (tmp_path / "key").write_text(text, encoding="utf-8", newline="")
    options = ["--api-key-file", "key"] if how == "file" else []
    code, _, err = await run(emulator, "users", handles_file(tmp_path), *options, "-q",
                             key=WRONG if how == "file" else text, cwd=tmp_path)
    assert code == 0, err
    assert len(rows(tmp_path / "users.jsonl")) == 2


async def test_a_key_with_a_control_character_inside_is_a_usage_error(
    emulator: Emulator, tmp_path: Path,
) -> None:
    """aiohttp refused it at the first request with a traceback (exit 1)."""
    code, _, err = await run(emulator, "users", handles_file(tmp_path), "-q",
                             key=f"{KEY}\x01x", cwd=tmp_path)
    assert code == 2
    assert "control characters" in err
    assert "Traceback" not in err
    assert KEY not in err
    assert emulator.stats().total == 0


async def test_key_from_stdin_then_the_inputs(emulator: Emulator, tmp_path: Path) -> None:
    """`--api-key -` takes stdin's first line; the rest can still be the input (`-`)."""
    stdin = f"{KEY}\n{existing_handle(0)}\n{existing_handle(1)}\n".encode()
    code, _, err = await run(emulator, "users", "-", "--api-key", "-", "-q", key=WRONG,
                             stdin=stdin, cwd=tmp_path)
    assert code == 0, err
    assert {row["input"] for row in rows(tmp_path / "users.jsonl")} == {
        existing_handle(0), existing_handle(1)}


@pytest.mark.parametrize(("args", "says"), [
    (["--api-key-file", "missing"], "cannot read --api-key-file"),
    (["--api-key-file", "key", "--api-key", KEY], "not both"),
    (["--ca-file", "missing.pem"], "--ca-file"),
    (["--proxy", "socks5://127.0.0.1:1080"], "proxy"),
])
async def test_bad_client_options_are_usage_errors(
    emulator: Emulator, tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "key").write_text(KEY)
    code, _, err = await run(emulator, "users", handles_file(tmp_path), *args, cwd=tmp_path)
    assert code == 2
    assert says in err
    assert emulator.stats().total == 0


async def test_tls_with_the_ca_file_and_without_it(
    tls_emulator: Emulator, tmp_path: Path
) -> None:
    ca_file = tls_emulator.ca_file
    assert ca_file is not None
    code, _, err = await run(tls_emulator, "users", handles_file(tmp_path, 1), "--ca-file",
                             ca_file, "-q", cwd=tmp_path)
    assert code == 0, err
    code, _, err = await run(tls_emulator, "users", handles_file(tmp_path, 1), "-o",
                             "refused.jsonl", "--max-retries", "0", "-q", cwd=tmp_path)
    assert code == 3  # never answered: the run stops, saying why
    assert "TLS certificate of 127.0.0.1" in err
    assert "not trusted" in err
    code, _, err = await run(tls_emulator, "users", handles_file(tmp_path, 1), "-o",
                             "unchecked.jsonl", "--no-verify", "-q", cwd=tmp_path)
    assert code == 0, err
    assert tls_emulator.stats().count(status=200) == 2


async def test_proxy_option_sends_through_the_proxy(emulator: Emulator, tmp_path: Path) -> None:
    async with ForwardProxy() as proxy:
        code, _, err = await run(emulator, "users", handles_file(tmp_path), "--proxy",
                                 proxy.url, "-q", cwd=tmp_path)
    assert code == 0, err
    assert sorted(r.target.rpartition("/")[2] for r in proxy.requests) == [
        existing_handle(0), existing_handle(1)]


async def test_help_warns_that_a_key_on_the_command_line_shows_in_ps(
    emulator: Emulator,
) -> None:
    code, out, _ = await run(emulator, "users", "--help")
    assert code == 0
    assert "(ps)" in out
    assert "--api-key-file" in out
