"""Progress and the end-of-run summary of a bulk command, on stderr (rich is imported only here).

The bar is shown only when stderr is a terminal and `--quiet` is not given; the summary is
always printed, as a few plain lines a log file can keep.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

#: Seconds held back by concurrency before the summary says so.
HELD_BACK_NOTE = 1.0
#: Seconds between two updates of the bar from the counts (rich draws it 10 times a
#: second; an update an answer cost about 3 us of a bulk run's own 15).
REFRESH_EVERY = 0.1


@dataclass
class RunCounts:
    """What a bulk run did, counted per input."""

    done: int = 0
    not_found: int = 0
    failed: int = 0
    invalid: int = 0
    duplicates: int = 0
    skipped: int = 0
    retries: int = 0
    throttled: int = 0
    concurrency: int = 0  # the client's limit of requests in flight, now
    max_concurrency: int = 0
    held_back: float = 0.0  # seconds concurrency, not the rate, held the run back
    started: float = field(default_factory=time.monotonic)

    @property
    def answered(self) -> int:
        """Inputs that reached an end this run (output or errors file)."""
        return self.done + self.not_found + self.failed + self.invalid + self.duplicates

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def rate(self) -> float:
        """Inputs answered per second so far."""
        return self.answered / max(self.elapsed(), 1e-9)

    def summary_lines(self) -> list[str]:
        """The summary printed at the end of a run."""
        return [
            f"done {self.done}, not found {self.not_found}, failed {self.failed}, "
            f"invalid {self.invalid}, duplicates {self.duplicates}, "
            f"skipped (already done) {self.skipped}",
            f"retries {self.retries}, 429s {self.throttled}, "
            f"rate {self.rate():.1f}/s, elapsed {self.elapsed():.1f}s, "
            f"in flight up to {self.concurrency}",
            *self._held_back_line(),
        ]

    def _held_back_line(self) -> list[str]:
        if self.held_back < HELD_BACK_NOTE:
            return []
        return [f"concurrency, not the rate, held the run back for {self.held_back:.0f} s "
                f"(every one of {self.max_concurrency} requests in flight while the rate "
                "had room): raise --concurrency, and the open-file limit with it"]


class ProgressDisplay:
    """A live bar on stderr (done, not found, failed, live rate, ETA) when it is a terminal."""

    def __init__(self, counts: RunCounts, *, total: int | None, enabled: bool,
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counts = counts
        self._clock = clock
        self._stream = stream if stream is not None else sys.stderr
        self._bar = _live_bar(self._stream, stream is None, total) if enabled else None
        self._next = 0.0  # when `due` says yes again

    def __enter__(self) -> ProgressDisplay:
        if self._bar is not None:
            self._bar[0].start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.refresh()
        if self._bar is not None:
            self._bar[0].stop()

    def due(self) -> bool:
        """Is an update of the bar due (a bar is shown, `REFRESH_EVERY` s since the last
        yes)? Cheap enough to ask after every answer."""
        if self._bar is None:
            return False
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + REFRESH_EVERY
        return True

    def refresh(self) -> None:
        """Update the bar from the counts now (rich throttles the actual drawing)."""
        if self._bar is None:
            return
        counts = self._counts
        detail = (f"ok {counts.done} · 404 {counts.not_found} · failed {counts.failed} · "
                  f"invalid {counts.invalid} · {counts.rate():.0f}/s · "
                  f"{counts.concurrency} in flight")
        progress, task = self._bar
        progress.update(task, completed=counts.answered + counts.skipped, detail=detail)

    def print_summary(self, title: str) -> None:
        """Print the end-of-run summary, whatever the terminal."""
        print(title, file=self._stream)
        for line in self._counts.summary_lines():
            print("  " + line, file=self._stream)
        self._stream.flush()


def _live_bar(stream: TextIO, stderr: bool, total: int | None) -> tuple[Progress, TaskID] | None:
    """The bar and its task if rich takes `stream` for a terminal, else None (rich is
    imported here, on the first bar: `--quiet` runs and `--help` never load it)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, stderr=stderr)
    if not console.is_terminal:
        return None
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
    return progress, progress.add_task("enriching", total=total, detail="")
