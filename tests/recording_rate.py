"""`RecordingRate`: an adaptive controller that keeps what it is told (for tests of the
limiter and the client that check what reaches the controller)."""

from __future__ import annotations

from tiktok_async._adaptive import AdaptiveRate


class RecordingRate(AdaptiveRate):
    """From 1,000/s; keeps every call's (time, ok, throttled, sent) in `told`, and with each
    429 (time, when its request went out, requests sent after it) in `throttled_told`."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self.told: list[tuple[float, int, int, int]] = []
        self.throttled_told: list[tuple[float, float | None, int]] = []

    def on_answers(self, now: float, ok: int, throttled: int, sent: int = 0, *,
                   empty_at: float | None = None, sent_after: int = 0) -> float:
        self.told.append((now, ok, throttled, sent))
        if throttled:
            self.throttled_told.append((now, empty_at, sent_after))
        return super().on_answers(now, ok, throttled, sent, empty_at=empty_at,
                                  sent_after=sent_after)

    @property
    def ok_told(self) -> int:
        """The good answers told so far."""
        return sum(ok for _, ok, _, _ in self.told)
