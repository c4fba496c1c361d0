"""`enqueue`, `worker`, `collect`, `status`: the job's bookkeeping, run in-process."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis
from redis_server import RedisServer

from tiktok_async import TikTokClient
from tiktok_async._kinds import KINDS
from tiktok_async._redis_limiter import connect
from tiktok_async.cli import main
from tiktok_async.cli._jobkeys import GROUP, JobKeys
from tiktok_async.cli._jobs import job_status
from tiktok_async.cli._worker import ScaleWorker, _Entry, _Keeper
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


def cli_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`tiktok-async ARGS` as a real process: its exit code, output and errors."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    return subprocess.run([sys.executable, "-m", "tiktok_async", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def job_args(server: RedisServer, job: str) -> list[str]:
    return ["--redis", server.url, "--job", job]


def answered_job(server: RedisServer, emulator: EmulatorProcess, tmp_path: Path, job: str,
                 *worker_options: str) -> list[str]:
    """Job `job` of two handles, enqueued and answered by one worker run to its end; its
    `--redis` and `--job` arguments."""
    source = tmp_path / "in.txt"
    source.write_text("alice\ncarol\n")
    args = job_args(server, job)
    assert cli("enqueue", str(source), *args) == 0
    assert cli("worker", *args, "--api-key", "test-key", "--base-url", emulator.base_url,
               *worker_options) == 0
    return args


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


def test_collect_into_a_folder_that_does_not_exist_is_refused_making_nothing(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    """It made the missing folders (the lock file beside the output did) and wrote there."""
    source = tmp_path / "in.txt"
    source.write_text("not valid!\n")  # an invalid input: a result without a worker
    job = job_args(redis_server, "nofolder")
    assert cli("enqueue", str(source), *job) == 0
    done = cli_process("collect", *job, "-o", str(tmp_path / "gone" / "x" / "out.jsonl"))
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"tiktok-async collect: cannot write {tmp_path}/gone/x/out.jsonl: the folder "
        f"{tmp_path}/gone/x does not exist (make it first, or write elsewhere)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_collect_into_another_jobs_output_is_refused_and_leaves_it_as_it_was(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
) -> None:
    """Job s1's rows were appended to job t1's files, exit 0; re-collecting t1 into its
    own files still appends what is new."""
    t1, s1 = job_args(redis_server, "t1"), job_args(redis_server, "s1")
    # Inputs no other test's job has: the job named is the one whose inputs cover the rows.
    (tmp_path / "t1.txt").write_text("alice_t1\nt1 not valid!\n")
    (tmp_path / "s1.txt").write_text("carol!\n")  # invalid: a result without a worker
    assert cli("enqueue", str(tmp_path / "t1.txt"), *t1) == 0
    assert cli("enqueue", str(tmp_path / "s1.txt"), *s1) == 0
    assert cli("worker", *t1, "--api-key", "test-key", "--base-url", emulator.base_url) == 0
    out = tmp_path / "t1.jsonl"
    assert cli("collect", *t1, "-o", str(out)) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.glob("t1*.jsonl")}
    done = cli_process("collect", *s1, "-o", "t1.jsonl", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("tiktok-async collect: t1.jsonl (with its errors file) holds the "
                           "results of job 't1', not of job 's1': collect job 's1' into "
                           "another file\n")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("t1*.jsonl")} == before
    (tmp_path / "t1.txt").write_text("alice_t1\nt1 also bad!\n")
    assert cli("enqueue", str(tmp_path / "t1.txt"), *t1) == 0
    assert cli("collect", *t1, "-o", str(out)) == 0  # its own: only what is new
    assert [json.loads(x)["input"] for x in out.read_text().splitlines()] == ["alice_t1"]
    errors = (tmp_path / "t1.errors.jsonl").read_text().splitlines()
    assert [json.loads(x)["input"] for x in errors] == ["t1 not valid!", "t1 also bad!"]


def test_collect_into_a_file_of_inputs_no_job_has_is_refused(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("not valid!\n")
    job = job_args(redis_server, "foreign")
    assert cli("enqueue", str(source), *job) == 0
    out = tmp_path / "users.jsonl"  # a users run's
    out.write_text('{"input":"zed","key":"zed","user":{}}\n')
    capsys.readouterr()
    assert cli("collect", *job, "-o", str(out)) == 2
    assert ("holds rows of inputs that job 'foreign' does not have (another job's, or a "
            "users run's)") in capsys.readouterr().err
    assert out.read_text() == '{"input":"zed","key":"zed","user":{}}\n'


def test_collect_to_a_closed_standard_output_stops_quietly_with_141(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
) -> None:
    """`collect -o - | head`: exit 4 and the full-disk advice before, as `users` gave."""
    job = answered_job(redis_server, emulator, tmp_path, "piped", "--rate", "100", "--burst",
                       "10")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "tiktok_async", "collect", *job, "-o", "-"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert b"free some space" not in done.stderr
    assert b"Exception ignored" not in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_worker_whose_key_is_refused_exits_3_though_it_read_the_whole_queue(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its own unanswered entries kept the queue from being empty, and the reading loop
    ended only on an empty queue: a small job (or a big one's last batch) hung for good,
    renewing its hold so that no other worker could take the entries over."""
    source = tmp_path / "in.txt"
    source.write_text("alice\nbob\ncarol\n")
    job = job_args(redis_server, "refused")
    assert cli("enqueue", str(source), *job) == 0
    started = time.monotonic()
    assert cli("worker", *job, "--api-key", "wrong-key", "--base-url", emulator.base_url) == 3
    assert time.monotonic() - started < 10
    assert "the API refused the key" in capsys.readouterr().err
    with syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        assert r.xlen(JobKeys("refused").queue) == 3  # all still queued for a worker with a key


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


def test_a_worker_stopped_by_sigterm_says_so_and_exits_143(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    """It died at once, silent (the default SIGTERM), where Ctrl-C says what happened."""
    source = tmp_path / "in.txt"
    source.write_text("user_1\nuser_2\nuser_3\n")
    job, queue = job_args(redis_server, "sigterm"), JobKeys("sigterm").queue
    assert cli("enqueue", str(source), *job) == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    with (EmulatorProcess("--upstream-latency-ms", "20000") as emu,
          syncredis.Redis.from_url(redis_server.url) as r):
        worker = subprocess.Popen(
            [sys.executable, "-m", "tiktok_async", "worker", *job, "--api-key", "test-key",
             "--base-url", emu.base_url], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(500):  # until it holds the entries
            if r.xinfo_groups(queue) and r.xinfo_groups(queue)[0]["pending"] == 3:
                break
            time.sleep(0.02)
        time.sleep(0.3)  # its requests on the wire (see the report: a stop at the very
        worker.terminate()  # moment they are sent hangs, Ctrl-C as well)
        _, err = worker.communicate(timeout=10)
        assert r.xlen(queue) == 3  # left for another worker
    assert worker.returncode == 143, err
    assert err == "tiktok-async worker: terminated (what was not answered stays queued)\n"


def test_status_counts_the_workers_alive_not_every_one_that_ever_read(
    redis_server: RedisServer, emulator: EmulatorProcess, tmp_path: Path,
) -> None:
    """Workers that finished were still counted (`consumers: 2`: members of the group)."""
    job = answered_job(redis_server, emulator, tmp_path, "alive", "--claim-idle", "0.5")
    done = cli_process("status", *job)
    assert done.returncode == 0, done.stderr
    assert "   workers: 0 active in the last 30 s\n" in done.stdout


async def test_status_tells_a_silent_worker_from_an_active_one(
    redis_server: RedisServer,
) -> None:
    """A worker killed (its entries pending) stays in the group: counted apart, once it
    has been silent for the window."""
    job = JobKeys("silent")
    with syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        queue_of(r, job, 2, consumer="killed")
        redis = connect(redis_server.url)
        await asyncio.sleep(0.3)
        r.xadd(job.queue, {"item": json.dumps({"input": "user_new", "line": 3})})
        r.xreadgroup(GROUP, "alive", {job.queue: ">"}, count=1)
        status = await job_status(redis, job, active_within=0.2)
        await redis.aclose()
    assert status["workers"] == "1 active in the last 0.2 s (1 more silent: gone, or hung)"


# -- the keeper: a live worker keeps what it holds ------------------------------------


def queue_of(r: syncredis.Redis, job: JobKeys, count: int, consumer: str = "me") -> list[str]:
    """`count` entries queued for `job` and read by `consumer`: their ids."""
    r.hset(job.meta, "kind", "users")
    r.xgroup_create(job.queue, GROUP, id="0", mkstream=True)
    with r.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.xadd(job.queue, {"item": json.dumps({"input": f"user_{i}", "line": i})})
        pipe.execute()
    read: Any = r.xreadgroup(GROUP, consumer, {job.queue: ">"}, count=count)
    return [entry_id for entry_id, _ in read[0][1]]


def pending(r: syncredis.Redis, job: JobKeys) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = r.xpending_range(job.queue, GROUP, "-", "+", 10_000)
    return {row["message_id"]: row for row in rows}


def xclaim_calls(r: syncredis.Redis) -> int:
    stats: dict[str, Any] = r.info("commandstats")
    return int(stats.get("cmdstat_xclaim", {}).get("calls", 0))


async def test_the_keeper_renews_only_what_it_holds_one_xclaim_per_1000_entries(
    redis_server: RedisServer,
) -> None:
    job = JobKeys("keep")
    with syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        ids = queue_of(r, job, 2505)
        r.xclaim(job.queue, GROUP, "me", 0, ids, idle=100_000, justid=True)  # all idle 100 s
        held, acked, taken, not_held = ids[:2502], ids[0], ids[1], ids[2502:]
        r.xclaim(job.queue, GROUP, "other", 0, [taken], idle=100_000, justid=True)
        r.xack(job.queue, GROUP, acked)  # answered, not yet released: the race with the ack
        before = xclaim_calls(r)
        redis = connect(redis_server.url)
        keeper = _Keeper(redis, job, "me", 30.0)
        keeper.hold(held)
        await keeper.refresh()
        await redis.aclose()
        assert xclaim_calls(r) - before == 3  # 2,502 ids: 1,000 + 1,000 + 502
        rows = pending(r, job)
    assert acked not in rows  # not made pending again
    assert (rows[taken]["consumer"], keeper.lost) == ("other", 1)  # not taken back
    assert keeper.held == set(held) - {taken}
    renewed = [rows[i] for i in held[2:]]
    assert {(x["consumer"], x["times_delivered"]) for x in renewed} == {("me", 1)}
    assert max(x["time_since_delivered"] for x in renewed) < 100_000
    assert min(rows[i]["time_since_delivered"] for i in not_held) >= 100_000  # left to go idle


async def test_a_worker_whose_hold_lapsed_renews_it_before_fetching_and_skips_what_was_taken(
    redis_server: RedisServer,
) -> None:
    """A stalled loop (or Redis away) for --claim-idle: another worker may have taken an
    entry meanwhile; it is not fetched here too."""
    job = JobKeys("lapsed")
    now = [0.0]
    with syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        ids = queue_of(r, job, 3)
        redis = connect(redis_server.url)
        client = TikTokClient("k", "http://127.0.0.1:9")  # never opened
        worker = ScaleWorker(redis, job, KINDS["users"], client, claim_idle=1.0, consumer="me")
        worker.keeper = _Keeper(redis, job, "me", 1.0, clock=lambda: now[0])
        worker.keeper.hold(ids)
        now[0] = 1.0  # nothing renewed for --claim-idle
        r.xclaim(job.queue, GROUP, "other", 0, [ids[0]], justid=True)  # idle or not
        kept = [await worker._still_held(_Entry(i, "user", None)) for i in ids]
        await redis.aclose()
        rows = pending(r, job)
    assert kept == [False, True, True]
    assert worker.keeper.fresh()
    assert [rows[i]["consumer"] for i in ids] == ["other", "me", "me"]


async def test_a_worker_stopped_by_ctrl_c_stops_renewing_its_entries(
    redis_server: RedisServer,
) -> None:
    """Ctrl-C cancels the run: the keeper's task ends with it, the entries stay pending
    (for another worker after --claim-idle) and are renewed no more."""
    job = JobKeys("ctrlc")
    with (syncredis.Redis.from_url(redis_server.url, decode_responses=True) as r,
          EmulatorProcess("--upstream-latency-ms", "20000") as emu):
        r.hset(job.meta, "kind", "users")
        for i in range(4):
            r.xadd(job.queue, {"item": json.dumps({"input": f"user_{i}", "line": i})})
        redis = connect(redis_server.url)
        client = TikTokClient("test-key", emu.base_url, rate=100, burst=10, concurrency=2)
        worker = ScaleWorker(redis, job, KINDS["users"], client, claim_idle=0.3, consumer="me")
        before = xclaim_calls(r)
        run = asyncio.create_task(worker.run())
        for _ in range(1000):  # until it holds entries and has renewed them twice
            if xclaim_calls(r) >= before + 2:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the worker never renewed its entries")
        run.cancel()  # what Ctrl-C does to asyncio.run's task
        with contextlib.suppress(asyncio.CancelledError):
            await run
        stopped = xclaim_calls(r)
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no keeper left running
        await asyncio.sleep(5 * worker.keeper.every)
        await redis.aclose()
        assert xclaim_calls(r) == stopped
        assert {row["consumer"] for row in pending(r, job).values()} == {"me"}
        assert r.xlen(job.queue) == 4


# -- Redis that wants a password ------------------------------------------------------


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis whose default user needs the password `s3cret`."""
    with RedisServer(tmp_path_factory.mktemp("locked")) as server:
        with syncredis.Redis.from_url(server.url) as r:
            r.config_set("requirepass", "s3cret")
        yield server


def with_password(server: RedisServer, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize(("password", "said"), [
    (None, "Redis needs a password: give it in the URL (--redis or $TIKTOK_REDIS_URL), "
           "redis://:PASSWORD@host:port/db"),
    ("wrong", "Redis refused the password (or user) in the URL (--redis or $TIKTOK_REDIS_URL)"),
])
def test_a_missing_or_refused_redis_password_stops_every_job_command_at_once(
    locked_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    password: str | None, said: str,
) -> None:
    """redis-py makes a refused password a ConnectionError: it was retried ~40 s as if
    Redis were restarting, then printed Redis's own words."""
    url = locked_redis.url if password is None else with_password(locked_redis, password)
    source = tmp_path / "in.txt"
    source.write_text("alice\n")
    worker = ["worker", "--api-key", "k", "--base-url", "http://127.0.0.1:9"]
    for command in (["enqueue", str(source)], ["status"], worker,
                    ["collect", "-o", str(tmp_path / "out.jsonl")]):
        started = time.monotonic()
        assert cli(*command, "--redis", url, "--job", "auth") == 2
        assert time.monotonic() - started < 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"tiktok-async {command[0]}: {said}"), err
        assert err.count("\n") == 1, err
        assert "s3cret" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_worker_told_of_no_password_exits_2_with_one_line_no_traceback(
    locked_redis: RedisServer,
) -> None:
    done = cli_process("worker", "--redis", locked_redis.url, "--job", "auth",
                       "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("tiktok-async worker: Redis needs a password: give it in the URL "
                           "(--redis or $TIKTOK_REDIS_URL), redis://:PASSWORD@host:port/db (or "
                           "redis://USER:PASSWORD@host:port/db)\n")


def test_the_redis_url_with_its_password_can_come_from_the_environment(
    locked_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password in `--redis` is on the command line, which every user of the machine
    can read (`ps`); `$TIKTOK_REDIS_URL` keeps it out."""
    source = tmp_path / "in.txt"
    source.write_text("alice\nbob\n")
    monkeypatch.setenv("TIKTOK_REDIS_URL", with_password(locked_redis, "s3cret"))
    assert cli("enqueue", str(source), "--job", "from-env") == 0
    assert cli("status", "--job", "from-env") == 0
    out, err = capsys.readouterr()
    assert "2 new" in err, err
    assert "s3cret" not in out + err
    monkeypatch.setenv("TIKTOK_REDIS_URL", with_password(locked_redis, "wrong"))
    assert cli("status", "--job", "from-env", "--redis",
               with_password(locked_redis, "s3cret")) == 0  # --redis first


def test_no_redis_url_anywhere_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TIKTOK_REDIS_URL", raising=False)
    assert cli("status", "--job", "j") == 2
    assert capsys.readouterr().err == (
        "tiktok-async status: no Redis URL: give --redis URL or set $TIKTOK_REDIS_URL "
        "(e.g. redis://localhost:6379/0)\n")


async def test_a_worker_whose_redis_starts_refusing_its_password_stops(
    tmp_path: Path,
) -> None:
    """A password set (or changed) under a running worker: it stops with the error rather
    than retrying for ever."""
    job = JobKeys("late-auth")
    with (RedisServer(tmp_path) as server,
          syncredis.Redis.from_url(server.url, decode_responses=True) as r,
          EmulatorProcess("--upstream-latency-ms", "300") as emu):
        r.hset(job.meta, "kind", "users")
        for i in range(20):
            r.xadd(job.queue, {"item": json.dumps({"input": f"user_{i}", "line": i})})
        r.xgroup_create(job.queue, GROUP, id="0")
        redis = connect(server.url)
        client = TikTokClient("test-key", emu.base_url, rate=100, burst=10, concurrency=2)
        worker = ScaleWorker(redis, job, KINDS["users"], client, claim_idle=3, consumer="me")
        run = asyncio.create_task(worker.run())
        for _ in range(500):  # until it holds entries
            if r.xpending(job.queue, GROUP)["pending"]:
                break
            await asyncio.sleep(0.02)
        r.config_set("requirepass", "s3cret")
        r.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(syncredis.AuthenticationError):
            await asyncio.wait_for(run, 5)
        await redis.aclose()
