"""An answer already paid for is never thrown away when a bulk run stops (issue 12).

When a bad key or a used-up quota stops a run, the requests that passed API Gateway
before it are still on the wire: the emulator's upstream latency holds their answers
300 ms while the refusal comes back at once. Each spent a unit of the quota, so each
must come back and be yielded (the library) or written (the command line): the
emulator's count of 200s equals the results, and nothing that passed was cancelled.

The scene, on a fixed 8 in flight with no client-side rate: 8 requests pass and are
answered at 300 ms; their workers send the next 8 at once, of which 4 pass (12 in all)
and 4 are refused at once, stopping the run; the 4 that passed answer 300 ms later.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cli_helpers import rows, run

from tiktok_async import ForbiddenError, QuotaExceededError, TikTokClient
from tiktok_async._client import ClientHooks
from tiktok_async._exceptions import TikTokError
from tiktok_async._retry import RetryPolicy
from tiktok_async.emulator import Emulator, existing_handle

Factory = Callable[..., Awaitable[Emulator]]

LATENCY_MS = 300
IN_FLIGHT = 8
PASSED = 12  # requests API Gateway lets through before it refuses every later one
HANDLES = [existing_handle(n) for n in range(100)]  # distinct and existing: each pass is a 200


@pytest.fixture
async def emulator(tiktok_emulator_factory: Factory) -> Emulator:
    return await tiktok_emulator_factory(upstream_latency_ms=LATENCY_MS, upstream_jitter_ms=0)


def answers_after_the_first_refusal(statuses: list[int]) -> int:
    """200s the client got after the first answer that stopped the run."""
    first = next(n for n, status in enumerate(statuses) if status != 200)
    return statuses[first:].count(200)


@pytest.mark.parametrize(("kind", "error", "ordered"), [
    ("forbidden", ForbiddenError, False),
    ("quota", QuotaExceededError, True),
])
async def test_fetch_users_yields_every_answer_paid_for_then_raises(
    emulator: Emulator, kind: str, error: type[TikTokError], ordered: bool
) -> None:
    emulator.inject(kind, 10**9, after=PASSED)
    statuses: list[int] = []
    hooks = ClientHooks(on_response=lambda path, status, seconds: statuses.append(status))
    yielded: list[str | None] = []

    async def consume(client: TikTokClient) -> None:
        async for result in client.fetch_users(HANDLES, ordered=ordered):
            assert result.ok, result.error  # an input the stop cut short gets no result
            yielded.append(result.key)

    async with TikTokClient(emulator.api_key, emulator.base_url, rate=math.inf,
                            concurrency=IN_FLIGHT, adaptive_concurrency=False,
                            retry=RetryPolicy.testing(), hooks=hooks) as client:
        with pytest.raises(error):
            await consume(client)
    assert emulator.stats().count(status=200) == PASSED  # none that passed was cancelled
    assert len(set(yielded)) == len(yielded) == PASSED  # and every answer was yielded
    # The scene happened: answers were still on the wire when the run stopped.
    assert answers_after_the_first_refusal(statuses) >= PASSED - IN_FLIGHT


@pytest.mark.parametrize(("kind", "words"), [("forbidden", "403 Forbidden"),
                                             ("quota", "429 Limit Exceeded")])
async def test_the_command_line_writes_every_answer_paid_for_then_exits_3(
    emulator: Emulator, tmp_path: Path, kind: str, words: str
) -> None:
    emulator.inject(kind, 10**9, after=PASSED)
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(f"{handle}\n" for handle in HANDLES))
    code, _, err = await run(emulator, "users", str(source), "-o", str(out), "-q",
                             "--rate", "1000", "--burst", str(IN_FLIGHT),
                             "--concurrency", str(IN_FLIGHT), "--fixed-concurrency")
    assert code == 3, err
    assert words in err
    written = {row["key"] for row in rows(out)}
    assert emulator.stats().count(status=200) == PASSED
    assert len(written) == len(rows(out)) == PASSED
    assert written <= set(HANDLES)
    assert rows(tmp_path / "out.errors.jsonl") == []  # the inputs cut short are not failed
