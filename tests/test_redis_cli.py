"""`enqueue`, `worker`, `collect`, `status`: the job's bookkeeping, run in-process."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as syncredis
from redis_server import RedisServer

from tiktok_async.cli import main
from tiktok_async.cli._jobkeys import GROUP, JobKeys
from tiktok_async.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--upstream-latency-ms", "0", "--missing-share", "0") as proc:
        yield proc


def cli(*args: str) -> int:
    return main(list(args))


def job_args(server: RedisServer, job: str) -> list[str]:
    return ["--redis", server.url, "--job", job]


def test_enqueue_skips_what_the_job_has_seen_and_records_invalid_lines(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("# handles\n@Alice\nbob\nalice\nnot valid!\n\n")
    assert cli("enqueue", str(source), *job_args(redis_server, "seen")) == 0
    assert "3 new of 4 inputs" in capsys.readouterr().err
    source.write_text("bob\ncarol\n")
    assert cli("enqueue", str(source), *job_args(redis_server, "seen")) == 0
    assert "1 new of 2 inputs" in capsys.readouterr().err
    with syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        job = JobKeys("seen")
        assert r.xlen(job.queue) == 3  # alice, bob, carol
        assert r.hkeys(job.results) == ["invalid:not valid!"]
        assert r.smembers(job.seen) == {"alice", "bob", "carol", "invalid:not valid!"}


def test_a_job_keeps_its_kind(redis_server: RedisServer, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("alice\n")
    assert cli("enqueue", str(source), *job_args(redis_server, "kind")) == 0
    assert cli("enqueue", str(source), "--kind", "videos", *job_args(redis_server, "kind")) == 2


def test_unknown_job_is_a_usage_error(redis_server: RedisServer, tmp_path: Path) -> None:
    assert cli("status", *job_args(redis_server, "nope")) == 2
    assert cli("collect", *job_args(redis_server, "nope"), "-o", str(tmp_path / "o")) == 2
    assert cli("worker", *job_args(redis_server, "nope"), "--api-key", "k") == 2


def test_worker_collect_and_status_write_every_input_once(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("handle,n\nalice,1\nmissing_bob,2\n,3\ncarol,4\nALICE,5\n")
    job = job_args(redis_server, "full")
    assert cli("enqueue", str(source), "--column", "handle", *job) == 0
    assert cli("worker", *job, "--api-key", "test-key", "--base-url", emulator.base_url,
               "--rate", "100", "--burst", "10") == 0
    out = tmp_path / "out.csv"
    assert cli("collect", *job, "-o", str(out)) == 0
    assert cli("collect", *job, "-o", str(out)) == 0  # resumes: nothing twice
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["input", "key", "user.id"]
    assert sorted(row[1] for row in rows[1:]) == ["alice", "carol"]
    errors = [json.loads(x) for x in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert sorted((e["kind"], e["input"]) for e in errors) == [
        ("invalid", ""), ("not_found", "missing_bob")]
    capsys.readouterr()
    assert cli("status", *job) == 0
    status = capsys.readouterr().out
    assert "queued: 0" in status
    assert "done: 3" in status
    assert "invalid: 1" in status


def test_a_bad_key_stops_the_worker_and_leaves_its_entries_pending(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"user_{i}\n" for i in range(20)))
    job = job_args(redis_server, "badkey")
    assert cli("enqueue", str(source), *job) == 0
    assert cli("worker", *job, "--api-key", "wrong", "--base-url", emulator.base_url,
               "--rate", "100", "--burst", "10") == 3
    assert "403 Forbidden" in capsys.readouterr().err
    with syncredis.Redis.from_url(redis_server.url) as r:
        keys = JobKeys("badkey")
        assert r.xlen(keys.queue) == 20
        assert r.hlen(keys.results) == 0
        assert r.xpending(keys.queue, GROUP)["pending"] > 0
