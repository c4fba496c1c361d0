"""One adaptive-rate algorithm, two runners, one table of scenarios.

The algorithm is `_adaptive`'s; `AdaptiveRate` runs it in process and the Redis script
runs the same rules in Lua (`lua_rules()`), on the state every worker of a key shares.

1. The Lua takes the Python's decisions: the same answers at the same times leave the
   same state, field by field and bit for bit (random sequences, real Redis, the script's
   clock given as an argument).
2. One table of scenarios, passed by both runners against one simulated API Gateway
   bucket (the emulator's `TokenBucket`) on a virtual clock (tests/virtual_clock.py:
   no sleeping; real Redis for the shared runner, its script keeping the virtual time):
   the in-process `RateLimiter(adaptive=AdaptiveRate(...))`, and 4 `RedisLimiter`s on one
   key, one of which dies after 4 s, standing for 4 worker processes.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import pytest
from redis_server import RedisServer
from virtual_clock import CountingRedis, run_virtual

from tiktok_async._adaptive import STATE_FIELDS, TUNING, AdaptiveRate
from tiktok_async._limiter import RateLimiter
from tiktok_async._redis_limiter import RedisLimiter, bucket_key
from tiktok_async.emulator import busiest_window
from tiktok_async.emulator._gateway import TokenBucket

KEY = "scenario-key"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


# -- 1. the Lua takes the Python's decisions ----------------------------------------------


Event = tuple[float, int, int, int, float]


def answer_sequence(seed: int, count: int) -> list[Event]:
    """(time, 200s, 429s, requests sent, the 200s' round trip) in random phases: calm
    (200s only, as many as are sent), throttled (some 429s), sparse (long gaps: the rate
    is not used), slow (requests go out, few answers come back), late (429s only: of
    requests sent earlier), at uneven intervals. Round trips of 0.5-5 ms: slow start is
    quick, and its first 429 pauses it."""
    rng, trips = random.Random(seed), random.Random(-seed)
    now, events = 100.0, list[Event]()
    while len(events) < count:
        gap, share, kind = rng.choice([(0.02, 0.0, ""), (0.01, 0.3, ""), (0.1, 0.0, ""),
                                       (2.0, 0.0, ""), (0.05, 0.1, ""), (0.01, 0.0, "slow"),
                                       (0.005, 1.0, "late")])
        for _ in range(rng.randint(5, 60)):
            now += gap * 2 * rng.random()
            throttled = rng.choice([1, 1, 2]) if rng.random() < share else 0
            ok = rng.choice([1, 1, 2]) if not throttled or rng.random() < 0.5 else 0
            sent = {"slow": rng.choice([1, 2]), "late": 0}.get(kind, min(2, ok + throttled))
            ok = 0 if kind and rng.random() < 0.8 else ok
            events.append((now, ok, throttled, sent, trips.uniform(5e-4, 5e-3) if ok else 0.0))
    return events[:count]


def bucket_sequence(control: AdaptiveRate, quota: float, burst: float, seconds: float,
                    rtt: float = 0.02) -> Iterator[Event]:
    """(time, 200s, 429s, requests sent, round trip) of a client sending at `control`'s
    rate (read as it goes) to a token bucket of `quota` and `burst`, each answer a round
    trip later: the slow start, the measured episodes and the probes of a real run."""
    now, tokens, filled = 100.0, float(burst), 100.0
    answers: list[tuple[float, bool]] = []
    while now < 100.0 + seconds:
        now += 1.0 / control.rate
        while answers and answers[0][0] <= now:
            at, admitted = heapq.heappop(answers)
            yield at, int(admitted), int(not admitted), 0, rtt if admitted else 0.0
        tokens = min(burst, tokens + (now - filled) * quota)
        filled, admitted = now, tokens >= 1.0
        tokens -= admitted
        heapq.heappush(answers, (now + rtt, admitted))
        yield now, 0, 0, 1, 0.0


@dataclass(frozen=True)
class Sequence:
    """Answers to feed both runners: `events(controller)`, and the states they reach
    (and whether they move every field of the state)."""

    name: str
    events: Callable[[AdaptiveRate], Iterable[Event]]
    reaches: frozenset[str]
    max_rate: float | None = None
    moves_every_field: bool = True


RANDOM_STATES = frozenset({"fast", "measured", "provisional", "unused", "late", "quick"})
SEQUENCES = [
    *(Sequence(f"random {seed}", partial(lambda _, seed: answer_sequence(seed, 600), seed=seed),
               RANDOM_STATES) for seed in (3, 12, 14)),
    Sequence("random 5, capped", lambda _: answer_sequence(5, 600), RANDOM_STATES | {"capped"},
             max_rate=15.0),
    Sequence("Q=5, burst 20", lambda control: bucket_sequence(control, 5, 20, 60.0),
             frozenset({"fast", "provisional", "bound"}), moves_every_field=False),
]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda s: s.name)
def test_the_lua_takes_the_pythons_decisions(redis_url: str, sequence: Sequence) -> None:
    max_rate = sequence.max_rate
    local = AdaptiveRate(10.0, max_rate=max_rate)
    events = sequence.events(local)
    seed = sequence.name.replace(" ", "-")

    async def main() -> list[tuple[int, dict[str, float], dict[str, float]]]:
        loop = asyncio.get_running_loop()
        redis = CountingRedis.from_url(redis_url, decode_responses=True)
        shared = RedisLimiter(redis, f"{KEY}-{seed}", max_rate=max_rate, clock=loop.time)
        await shared.reset()
        different = []
        for i, (at, ok, throttled, sent, trip) in enumerate(events):
            # A booking waits for its slot, so the loop's clock may be past `at`; both
            # runners read the same time (no turn of the loop between the two calls).
            await asyncio.sleep(max(0.0, at - loop.time()))
            for _ in range(ok):
                shared.on_success()
            for _ in range(throttled):
                shared.on_rate_limited()
            if trip:
                shared.on_round_trip(trip)
                local.on_round_trip(trip)
            if ok + throttled:  # the next run of the script carries them
                local.on_answers(loop.time(), ok, throttled)
            if not sent:
                await shared.report()
            for _ in range(sent):  # book a slot, wait for it, then report the request
                await shared.acquire()
                local.on_answers(loop.time(), 0, 0, 1)
                await shared.report()
            stored = await redis.hgetall(bucket_key(f"{KEY}-{seed}"))
            theirs = {name: float(stored[name]) for name in STATE_FIELDS}
            ours = {name: float(value) for name, value in asdict(local.state).items()}
            if theirs != ours:
                different.append((i, ours, theirs))
        await shared.aclose()
        await redis.aclose()
        return different

    assert run_virtual(main) == []


@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda s: s.name)
def test_the_sequences_exercise_every_rule(sequence: Sequence) -> None:
    """Each sequence above moves every field and reaches every state: slow start (quick or
    not), cuts, measured, provisionally measured, bounded and guessed episodes, a rate not
    in use, 429s a round trip late (and the cap, when there is one)."""
    max_rate = sequence.max_rate
    local = AdaptiveRate(10.0, max_rate=max_rate)
    moved: set[str] = set()
    reached: set[str] = set()
    for now, ok, throttled, sent, trip in sequence.events(local):
        before = asdict(local.state)
        local.on_round_trip(trip)
        local.on_answers(now, ok, throttled, sent)
        moved |= {name for name, value in asdict(local.state).items() if before[name] != value}
        state = local.state
        late = state.began > state.cut_at + TUNING.settle  # 429s a round trip late
        reached |= {name for name, on in [("fast", state.fast),
                                          ("measured", state.measured == 1),
                                          ("provisional", state.measured == 2),
                                          ("bound", state.measured == 3),
                                          ("unused", not state.in_use),
                                          ("late", late),
                                          ("capped", state.rate == max_rate),
                                          ("quick", state.quick)] if on}
    assert moved == set(STATE_FIELDS) or not sequence.moves_every_field
    assert reached >= sequence.reaches


# -- 2. one table of scenarios, both runners -----------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A quota nobody tells the client, and what any runner must achieve against it."""

    name: str
    quota: float
    burst: int
    seconds: float
    tasks: int = 32  # requests in flight at most, over all workers
    rtt: float = 0.02
    min_share: float = 0.9  # 200s a second over the run, as a share of the quota
    max_throttled: float = 0.03  # 429s as a share of requests
    max_window: float | None = None  # most requests in any 1 s (default: quota + burst)
    shared_runs: int = 1  # the shared runner's runs, judged together (see below)


SCENARIOS = [
    Scenario("Q=50, burst 10 (the scale-out run)", 50, 10, seconds=30),
    # One request over Q + B while slow start's first 429 comes back: the bucket (two
    # seconds of quota) hides a 5x overshoot. 6 of 8 seeds did so before requests were
    # counted as sent too (5ee66f5); now every seed does, with the same 429s. A minute, as
    # `make bench` judges Q = 5: slow start's exit costs a handful of 429s, whatever the
    # length, and 4 workers paid 7 of 213 requests (3.3%) in 40 s.
    #
    # Shared, three runs judged together: which task draws which round trip follows the
    # order Redis's replies come in, so runs differ; the 429s were 6, 8, 9 or 10 of about
    # 315 (each later probe's 429 is 2% of 10 s of requests), and one run in about 30
    # crossed 3% with 10. The share over three runs is the figure (one long run's).
    Scenario("Q=5, burst 10", 5, 10, seconds=60, tasks=8, max_window=16, shared_runs=3),
    # A bucket as deep as a second of quota hides slow start's overshoot until it is 4x.
    Scenario("Q=50, burst 50", 50, 50, seconds=30, max_window=110),
    # 429s come back 150 ms late, while slow start still doubles.
    Scenario("Q=200, burst 40, slow round trips", 200, 40, seconds=20, tasks=64, rtt=0.15,
             min_share=0.85, max_window=264),
    # Round trips of 2 ms (a server next door): slow start doubles every 70 ms, and its
    # first 429 pauses every request for a quarter of a second (the bucket ran dry within
    # a second, and the requests of that second may not pass Q + B).
    Scenario("Q=50, burst 10, round trips of 2 ms", 50, 10, seconds=30, rtt=0.002),
    Scenario("Q=5, burst 10, round trips of 2 ms", 5, 10, seconds=60, tasks=8, rtt=0.002),
]
SLOW_SCENARIOS = [Scenario("Q=500, burst 100", 500, 100, seconds=30, tasks=64),
                  Scenario("Q=500, burst 100, round trips of 2 ms", 500, 100, seconds=30,
                           tasks=64, rtt=0.002)]
TABLE = [*SCENARIOS, *(pytest.param(s, marks=pytest.mark.slow) for s in SLOW_SCENARIOS)]


@dataclass
class Outcome:
    """What the simulated server saw: (time, admitted) per request."""

    arrivals: list[tuple[float, bool]]
    seconds: float

    def share(self, quota: float) -> float:
        return sum(ok for _, ok in self.arrivals) / self.seconds / quota

    def throttled(self) -> float:
        return sum(not ok for _, ok in self.arrivals) / len(self.arrivals)

    def window(self) -> int:
        return busiest_window([t for t, _ in self.arrivals])

    @classmethod
    def pooled(cls, runs: list[Outcome]) -> Outcome:
        """Several runs as one: their requests and seconds added, each run's own times
        shifted after the one before (so no 1 s window spans two runs)."""
        arrivals, offset = list[tuple[float, bool]](), 0.0
        for run in runs:
            arrivals += [(offset + t, ok) for t, ok in run.arrivals]
            offset += run.seconds + 1.0
        return cls(arrivals, sum(run.seconds for run in runs))


async def client_task(limiter: Any, bucket: TokenBucket, arrivals: list[tuple[float, bool]],
                      rng: random.Random, rtt: float) -> None:
    """What `TikTokClient` does around one request after another, forever: acquire, one
    round trip (the server decides halfway), report (with the send time, to its own
    `RateLimiter`); after a 429, back off and retry."""
    loop = asyncio.get_running_loop()
    dated = isinstance(limiter, RateLimiter)
    attempt = 0
    while True:
        await limiter.acquire()
        sent_at = loop.time()
        trip = rtt * (0.75 + 0.5 * rng.random())
        await asyncio.sleep(trip / 2)
        admitted = bucket.try_acquire()
        arrivals.append((loop.time(), admitted))
        await asyncio.sleep(trip / 2)
        told = {"sent_at": sent_at} if dated else {}
        if admitted:
            limiter.on_success(**told)
            if not dated:
                limiter.on_round_trip(loop.time() - sent_at)
            attempt = 0
            continue
        limiter.on_rate_limited(**told)
        wait = min(10.0, 0.5 * 2**attempt) + 0.5 * rng.random()
        limiter.on_throttled(wait)
        attempt += 1
        await asyncio.sleep(wait)


async def simulate(scenario: Scenario, limiters: list[Any], kill: Callable[[], Any] | None = None,
                   seed: int = 1) -> Outcome:
    """`scenario.tasks` tasks spread over `limiters` (one per worker) for its seconds;
    `kill()` after 4 s stops the first worker's tasks (as SIGKILL would)."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(scenario.quota, scenario.burst, clock=loop.time)
    arrivals: list[tuple[float, bool]] = []
    rng = random.Random(seed)
    per_worker = scenario.tasks // len(limiters)
    tasks = [[loop.create_task(client_task(limiter, bucket, arrivals, rng, scenario.rtt))
              for _ in range(per_worker)] for limiter in limiters]
    if kill is not None:
        await asyncio.sleep(4.0)
        for task in tasks[0]:
            task.cancel()
        await kill()
    await asyncio.sleep(scenario.seconds - loop.time())
    for task in (t for worker in tasks for t in worker):
        task.cancel()
    await asyncio.gather(*(t for worker in tasks for t in worker), return_exceptions=True)
    return Outcome(arrivals, scenario.seconds)


def run_local(scenario: Scenario) -> Outcome:
    async def main() -> Outcome:
        return await simulate(scenario, [RateLimiter(adaptive=AdaptiveRate(10.0))])

    return run_virtual(main)


def run_shared(scenario: Scenario, redis_url: str, workers: int = 4) -> Outcome:
    async def main() -> Outcome:
        loop = asyncio.get_running_loop()
        clients = [CountingRedis.from_url(redis_url, decode_responses=True)
                   for _ in range(workers)]
        key = f"{KEY}-{scenario.name}"
        limiters = [RedisLimiter(r, key, clock=loop.time) for r in clients]
        await limiters[0].reset()
        try:
            return await simulate(scenario, limiters, kill=limiters[0].aclose)
        finally:
            for limiter in limiters:
                await limiter.aclose()
            for client in clients:
                await client.aclose()

    return run_virtual(main)


def check(scenario: Scenario, outcome: Outcome) -> None:
    max_window = scenario.max_window or scenario.quota + scenario.burst
    figures = (f"{outcome.share(scenario.quota):.1%} of Q, {outcome.throttled():.2%} 429s, "
               f"worst 1 s {outcome.window()}")
    assert outcome.share(scenario.quota) >= scenario.min_share, figures
    assert outcome.throttled() <= scenario.max_throttled, figures
    assert outcome.window() <= max_window, figures


@pytest.mark.parametrize("scenario", TABLE, ids=lambda s: s.name)
def test_in_process(scenario: Scenario) -> None:
    check(scenario, run_local(scenario))


@pytest.mark.parametrize("scenario", TABLE, ids=lambda s: s.name)
def test_shared_by_four_workers_one_of_which_dies(scenario: Scenario, redis_url: str) -> None:
    runs = [run_shared(scenario, redis_url) for _ in range(scenario.shared_runs)]
    check(scenario, Outcome.pooled(runs))
