"""A bounded worker pool over a lazy input: `bounded_map`.

`bounded_map(items, worker, concurrency=C)` runs `worker` on every item with C worker
tasks and yields `(item, result)` pairs. It is what bulk enrichment stands on, so it
keeps three promises whatever the input's length:

- **Lazy.** Items are pulled from the (sync or async) iterable only when a worker is
  free to take one *and* fewer than `window` items are taken but not yet yielded. An
  infinite generator is fine; the input is never read more than `window` ahead.
- **Bounded.** `window` bounds everything held at once: items in flight, finished
  results not yet consumed (backpressure: a slow consumer stops the workers), the
  reorder buffer of `ordered=True`, and duplicates waiting for their key's answer.
  The dedupe memory of finished keys is an LRU of `dedupe_memory` entries, each what
  `remember(result)` keeps of a result (the result itself by default).
- **Clean.** An exception raised by `worker` (or `key`, or by the input iterable) is
  an abort, not a per-item error: every other task is cancelled; results that had
  already finished are still yielded (an answer paid for is never dropped), then the
  exception propagates to the consumer. Per-item failures must be returned as values.
  Closing the iterator (`aclose()`, a `break` inside `contextlib.aclosing`, cancelling
  the consuming task, or garbage collection) cancels the work and awaits it; an async
  input iterator left unfinished is closed too (`aclose()`), so its own clean-up runs
  now rather than in the garbage collector.

Deduplication (`key=`): items whose keys are equal run `worker` once (an item whose key
is None is never deduplicated: it runs `worker` on its own); every duplicate
still gets its own `(item, result)` pair, at once if the key finished recently, or
when the running call for that key finishes. A duplicate whose key fell out of the
LRU (more than `dedupe_memory` distinct keys ago) runs `worker` again; a key in flight
is always shared. `remember` and `recall` (both or neither) let the memory keep less than
a result: `recall(remember(result))` must give a result equal to it. Keeping results
alive after their consumer is done with them is what the memory costs (in a bulk run
of cached users, 3-6 us an input in freeing and allocating memory out of the cache;
a bulk run keeps each answer's body instead: docs/benchmarks.md, issue 13).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
)
from typing import Any, Generic, TypeVar

__all__ = ["DEFAULT_DEDUPE_MEMORY", "bounded_map"]

T = TypeVar("T")
R = TypeVar("R")

#: Finished keys remembered for dedupe. Each entry holds a result (or what `remember`
#: keeps of it), so this is also a memory budget: a bulk run keeps an answer's body, about
#: 0.7 KB for a profile (1 KB decoded), so 10,000 entries are ~10 MB with their inputs.
DEFAULT_DEDUPE_MEMORY = 10_000

_EXHAUSTED = object()


#: `limit(busy) -> int`: how many workers may run now, given how many are busy.
Limit = Callable[[int], int]

#: While the consumer waits with a dynamic limit, it asks the limit again this often.
LIMIT_TICK = 0.25


def bounded_map(
    items: Iterable[T] | AsyncIterable[T],
    worker: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    ordered: bool = False,
    key: Callable[[T], Hashable] | None = None,
    window: int | None = None,
    dedupe_memory: int = DEFAULT_DEDUPE_MEMORY,
    limit: Limit | None = None,
    remember: Callable[[R], Any] | None = None,
    recall: Callable[[Any], R] | None = None,
) -> AsyncGenerator[tuple[T, R], None]:
    """Run `worker` over `items` with `concurrency` tasks; yield `(item, result)` pairs.

    Pairs come in completion order, or in input order with `ordered=True`. `window`
    is the most items taken from the input and not yet yielded (default: 2 x
    `concurrency`, or 4 x when ordered); it bounds read-ahead, buffered results and the
    reorder buffer. See the module docstring for dedupe (`key`, `remember`, `recall`),
    errors and closing.

    `limit`: a dynamic number of workers, at most `concurrency`. It is asked (with the
    number of busy workers) as items are taken and every `LIMIT_TICK` s while the
    consumer waits; workers are added while all are busy and fewer than it, and a worker
    leaves after its item while there are more than it.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if window is None:
        window = concurrency * (4 if ordered else 2)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if dedupe_memory < 0:
        raise ValueError(f"dedupe_memory must be >= 0, got {dedupe_memory}")
    if (remember is None) != (recall is None):
        raise ValueError("remember and recall go together: give both or neither")
    pool = _Pool(items, worker, min(concurrency, window), window, ordered, key, dedupe_memory)
    pool.limit = limit
    pool.remember, pool.recall = remember, recall
    return pool.results()


class _Pool(Generic[T, R]):
    """The shared state of one `bounded_map` run: workers produce, `results` consumes."""

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        worker: Callable[[T], Awaitable[R]],
        concurrency: int,
        window: int,
        ordered: bool,
        key: Callable[[T], Hashable] | None,
        dedupe_memory: int,
    ) -> None:
        self._items = items
        self._sync_it: Iterator[T] | None = None
        self._async_it: AsyncIterator[T] | None = None
        self._pull_lock: asyncio.Lock | None = None
        self._worker = worker
        self._concurrency = concurrency
        self._window = window
        self._ordered = ordered
        self._key = key
        self._memory = dedupe_memory
        self._taken = 0  # items pulled from the input; also the next sequence number
        self._pending = 0  # slots reserved or items taken, not yet yielded
        self._next_seq = 0  # ordered: the sequence number to yield next
        self._exhausted = False
        self._ready: deque[tuple[T, R]] = deque()
        self._reorder: dict[int, tuple[T, R]] = {}
        # Keys whose call runs, with the duplicates waiting for it (None: none yet, so that
        # the usual key, never duplicated, costs no list).
        self._inflight: dict[Hashable, list[tuple[int, T]] | None] = {}
        self._finished: OrderedDict[Hashable, Any] = OrderedDict()  # R, or `remember(R)`
        self.remember: Callable[[R], Any] | None = None
        self.recall: Callable[[Any], R] | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Workers that have not left: counted at once, while a finished task stays in
        # `_tasks` until its done callback runs, a turn of the loop later.
        self._alive = 0
        self._consumer: asyncio.Future[None] | None = None
        self._space: deque[asyncio.Future[None]] = deque()
        self.limit: Limit | None = None
        self._busy = 0  # workers holding an item (a dynamic limit grows only when all do)
        self._ticker: asyncio.TimerHandle | None = None  # `_tick`'s timer
        # The run's loop, kept from the start: on Python 3.11 asking for the running loop
        # (`get_running_loop`, `current_task`) is a system call, and the waits ask often.
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the consumer -------------------------------------------------------------

    async def results(self) -> AsyncGenerator[tuple[T, R], None]:
        """Start the workers; yield finished pairs until the input is done."""
        self._start()
        take = self._take_ordered if self._ordered else self._take_ready
        try:
            while True:
                pair = take()
                if pair is not None:
                    yield pair
                elif self._error is not None:
                    raise self._error
                elif self._exhausted and self._pending == 0:
                    return
                else:
                    await self._wait_for_result()
                    self._follow_limit()
        finally:
            await self._stop()

    # After an abort, results that finished before it are still handed out, then the error:
    # an answer that was paid for (a request, a quota token) is never thrown away.
    def _take_ready(self) -> tuple[T, R] | None:
        if not self._ready:
            return None
        self._release_slot()
        return self._ready.popleft()

    def _take_ordered(self) -> tuple[T, R] | None:
        pair = self._reorder.pop(self._next_seq, None)
        if pair is not None:
            self._next_seq += 1
            self._release_slot()
        return pair

    async def _wait_for_result(self) -> None:
        self._consumer = self._running_loop().create_future()
        try:
            await self._consumer
        finally:
            self._consumer = None

    def _tick(self) -> None:
        """Every `LIMIT_TICK` s while a dynamic limit runs: wake the consumer, so that it
        asks the limit again even while no result comes (one timer a run, not a wait)."""
        self._wake_consumer()
        self._ticker = self._running_loop().call_later(LIMIT_TICK, self._tick)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        return asyncio.get_running_loop() if loop is None else loop

    def _wake_consumer(self) -> None:
        fut = self._consumer
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- workers --------------------------------------------------------------------

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if isinstance(self._items, AsyncIterable):
            self._async_it = aiter(self._items)
            self._pull_lock = asyncio.Lock()
        else:
            self._sync_it = iter(self._items)
        start = self._concurrency if self.limit is None else self._limit_now()
        if self.limit is not None:
            self._ticker = self._loop.call_later(LIMIT_TICK, self._tick)
        for _ in range(start):
            self._spawn()

    def _spawn(self) -> None:
        task = self._running_loop().create_task(self._run_worker())
        self._alive += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _limit_now(self) -> int:
        """The dynamic limit, told how many workers are at work: alive and not held back
        by the window (a worker between two items counts: it is about to take one)."""
        assert self.limit is not None
        working = self._alive - len(self._space)
        return max(1, min(self._concurrency, self.limit(working)))

    def _follow_limit(self, limit: int | None = None) -> None:
        """Add a worker while every worker is busy and the limit (`limit`: one the caller
        just asked for) allows more."""
        if self.limit is None or self._exhausted or self._stopping:
            return
        if limit is None:
            limit = self._limit_now()
        if self._busy >= self._alive < limit:
            self._spawn()  # it takes an item, and adds the next worker while all are busy

    async def _run_worker(self) -> None:
        worker, emit, dynamic = self._worker, self._emit, self.limit is not None
        allowed = 0
        try:
            while True:
                if self._pending >= self._window:
                    await self._wait_for_space()
                    continue
                if dynamic:
                    allowed = self._limit_now()  # asked once an item, not twice
                    if self._alive > allowed:
                        return  # the limit went down: this worker leaves
                self._pending += 1  # reserve the slot before an async pull can yield
                item = await self._pull() if self._async_it is not None else self._pull_sync()
                if item is _EXHAUSTED:
                    self._pending -= 1
                    self._wake_consumer()
                    return
                # No suspension since the pull returned, so sequence numbers follow input order.
                seq = self._taken
                self._taken = seq + 1
                self._busy += 1
                if dynamic:
                    self._follow_limit(allowed)  # the limit asked above, not again
                try:
                    k = None if self._key is None else self._key(item)  # type: ignore[arg-type]
                    if k is None:
                        emit(seq, item, await worker(item))  # type: ignore[arg-type]
                    elif not self._shared(seq, item, k):  # type: ignore[arg-type]
                        # inline, not a coroutine of its own: this runs once an item
                        self._finish(seq, item, k, await worker(item))  # type: ignore[arg-type]
                finally:
                    self._busy -= 1
        except asyncio.CancelledError as exc:
            if not self._stopping:  # cancelled by someone else: do not leave the map hanging
                self._fail(exc)
            raise
        except BaseException as exc:  # any exception from worker, key or input aborts the map
            self._fail(exc)
        finally:
            self._alive -= 1

    def _pull_sync(self) -> object:
        assert self._sync_it is not None
        if self._exhausted:
            return _EXHAUSTED
        try:
            item = next(self._sync_it)
        except StopIteration:
            self._exhausted = True
            return _EXHAUSTED
        return item

    async def _pull(self) -> object:
        assert self._async_it is not None
        assert self._pull_lock is not None
        async with self._pull_lock:
            if self._exhausted:
                return _EXHAUSTED
            try:
                item = await anext(self._async_it)
            except StopAsyncIteration:
                self._exhausted = True
                return _EXHAUSTED
            return item

    def _shared(self, seq: int, item: T, k: Hashable) -> bool:
        """Give a duplicate the answer of its key's finished or running call (True); False
        for a new key, now marked as running."""
        finished = self._finished
        if k in finished:
            finished.move_to_end(k)
            kept = finished[k]
            self._emit(seq, item, kept if self.recall is None else self.recall(kept))
            return True
        inflight = self._inflight
        if k in inflight:
            waiting = inflight[k]
            if waiting is None:
                inflight[k] = [(seq, item)]
            else:
                waiting.append((seq, item))
            return True
        inflight[k] = None
        return False

    def _finish(self, seq: int, item: T, k: Hashable, result: R) -> None:
        """The call for key `k` returned `result`: for its item and every duplicate."""
        self._emit(seq, item, result)
        waiting = self._inflight.pop(k)
        if waiting is not None:
            for dup_seq, dup in waiting:
                self._emit(dup_seq, dup, result)
        if self._memory:  # remembered for later duplicates, the oldest forgotten first
            finished = self._finished
            finished[k] = result if self.remember is None else self.remember(result)
            if len(finished) > self._memory:
                finished.popitem(last=False)

    def _emit(self, seq: int, item: T, result: R) -> None:
        if self._ordered:
            self._reorder[seq] = (item, result)
            if seq != self._next_seq:
                return
        else:
            self._ready.append((item, result))
        self._wake_consumer()

    # -- backpressure ---------------------------------------------------------------

    async def _wait_for_space(self) -> None:
        fut: asyncio.Future[None] = self._running_loop().create_future()
        self._space.append(fut)
        await fut

    def _release_slot(self) -> None:
        self._pending -= 1
        space = self._space
        while space:
            fut = space.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- stopping -------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._cancel_workers()
        self._wake_consumer()

    def _cancel_workers(self) -> None:
        self._stopping = True
        current = asyncio.current_task(self._running_loop())
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self._cancel_workers()
        running = [task for task in list(self._tasks) if not task.done()]
        cancelled = False
        while running:
            try:
                await asyncio.wait(running)
            except asyncio.CancelledError:  # cancelled again while cleaning up: finish first
                cancelled = True
            running = [task for task in running if not task.done()]
        self._tasks = set()
        if cancelled:
            raise asyncio.CancelledError
        it = self._async_it
        if it is not None and not self._exhausted:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
