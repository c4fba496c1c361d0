"""AdaptiveRate: slow start, one cut per overshoot, measuring the quota, and a simulation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tiktok_async._adaptive import TUNING, AdaptiveRate


def load_simulation() -> ModuleType:
    """benchmarks/tools/adaptive_sim.py holds the simulator; import it by path."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "tools" / "adaptive_sim.py"
    spec = importlib.util.spec_from_file_location("adaptive_sim", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sim = load_simulation()


@pytest.mark.parametrize("rtt", [0.01, 0.05])
@pytest.mark.parametrize("quota", [5, 50, 500])
def test_finds_an_untold_quota_in_a_minute(quota: int, rtt: float) -> None:
    """>= 90% of Q in 200s and <= 3% 429s over 60 simulated seconds, from 10/s."""
    result = sim.simulate(quota, seconds=60, initial=10, rtt=rtt)
    assert result.ok_rate_share >= 0.90
    assert result.throttled_share <= 0.03


@pytest.mark.parametrize("quota", [50, 500])
def test_slower_round_trips_still_meet_the_target(quota: int) -> None:
    result = sim.simulate(quota, seconds=60, initial=10, rtt=0.2, seed=3)
    assert result.ok_rate_share >= 0.90
    assert result.throttled_share <= 0.03


def test_holds_just_below_the_quota_for_long_runs() -> None:
    result = sim.simulate(200, seconds=600, initial=10, rtt=0.05)
    assert result.ok_rate_share >= 0.95
    assert result.throttled_share <= 0.01


def test_never_exceeds_max_rate() -> None:
    result = sim.simulate(500, seconds=30, initial=10, max_rate=120)
    assert result.final_rate <= 120
    assert result.throttled == 0
    assert result.ok == pytest.approx(120 * 30, rel=0.05)  # less the climb from 10/s


def answer_steadily(control: AdaptiveRate, start: float, end: float, per_s: int,
                    answered: bool = True) -> float:
    """Requests at `per_s` a second from `start` to `end`, each answered 200 at once
    (unless not `answered`: slow first fetches, nothing back yet); the last rate."""
    for i in range(1, round((end - start) * per_s) + 1):
        control.on_sent(start + i / per_s)
        if answered:
            control.on_success(start + i / per_s)
    return control.rate


def test_slow_start_doubles_every_half_second_on_the_requests_clock() -> None:
    """With answers seconds away (first fetches), the requests sent drive slow start."""
    control = AdaptiveRate(10)
    control.on_sent(0.0)
    assert answer_steadily(control, 0.0, 0.5, 100, answered=False) == pytest.approx(20)
    assert answer_steadily(control, 0.5, 1.5, 100, answered=False) == pytest.approx(80)
    assert control.slow_start


def test_slow_start_doubles_every_35_round_trips_when_they_are_short() -> None:
    """Answers 2 ms away (a server next door): slow start doubles every 70 ms, not every
    half second; the shortest of the first eight round trips sets the pace."""
    control = AdaptiveRate(10)
    control.on_sent(0.0)
    for seconds in (0.004, 0.002, 0.003, 0.002, 0.005, 0.003, 0.004, 0.006):
        control.on_round_trip(seconds)
    control.on_round_trip(0.0001)  # a ninth: too late to count
    assert control.state.base_rtt == 0.002
    assert answer_steadily(control, 0.0, 0.07, 1000) == pytest.approx(20)
    assert answer_steadily(control, 0.07, 0.21, 1000) == pytest.approx(80)


@pytest.mark.parametrize(("rtt", "doubling"), [(0.0002, TUNING.fastest_doubling),
                                               (0.005, 0.175), (0.01, TUNING.double_every),
                                               (1.5, TUNING.double_every)])
def test_the_pace_is_35_round_trips_within_20_ms_and_a_quarter_second(
        rtt: float, doubling: float) -> None:
    """Round trips longer than 7 ms (35 of them pass a quarter second) keep the half
    second: a 429 that takes long to come back finds the rate far past the quota."""
    control = AdaptiveRate(10)
    control.on_sent(0.0)
    control.on_round_trip(rtt)
    assert answer_steadily(control, 0.0, doubling, 2000) == pytest.approx(20, rel=0.01)


def test_a_quick_start_never_runs_far_ahead_of_the_requests_sent() -> None:
    """Doubling every 20 ms, the rate would pass millions a second in half a second; it
    is judged against the requests sent every 3 doublings (60 ms), not every half second,
    and stays within 4x of them (a caller, or a server, that sends 1,000 a second)."""
    control = AdaptiveRate(10)
    control.on_sent(0.0)
    control.on_round_trip(0.0002)
    assert answer_steadily(control, 0.0, 2.0, 1000) <= 4.1 * 1000  # one send more a tally


def quick_start_dry_at(at: float) -> AdaptiveRate:
    """A quick slow start (2 ms round trips) whose bucket runs dry at `at`: the first 429."""
    control = AdaptiveRate(10)
    control.on_sent(0.0)
    control.on_round_trip(0.002)
    answer_steadily(control, 0.0, at, 1000)
    control.on_throttled(at)
    return control


def test_a_quick_start_s_first_429_pauses_every_request_for_a_quarter_second() -> None:
    """The bucket ran dry within a second of the first request: the requests of that
    second may not pass Q + B, so none goes out for `quick_pause` s. Then slow start again,
    at the half-second pace, from a quarter of the requests let through a second."""
    control = quick_start_dry_at(0.3)  # 300 requests let through in 0.3 s (a second at least)
    assert control.state.paused_until == pytest.approx(0.3 + TUNING.quick_pause)
    assert control.rate == pytest.approx(TUNING.exit_cut * 300)
    assert control.slow_start
    for i in range(20):  # the overshoot's 429s and 200s come back during the pause
        control.on_answers(0.31 + i * 0.01, 1, 1)
    assert control.rate == pytest.approx(75)
    assert control.slow_start
    assert answer_steadily(control, 0.55, 1.05, 75) == pytest.approx(150, rel=0.02)
    control.on_throttled(1.1)  # the next first 429: the usual exit, a cut to a quarter
    assert control.state.emptied
    assert control.rate == pytest.approx(TUNING.exit_cut * 150, rel=0.03)


def test_a_quick_start_dry_at_once_starts_again_from_a_quarter_of_its_first_rate() -> None:
    """Dry after 5 requests (a small bucket): the first rate, not the 5, sets the floor."""
    control = quick_start_dry_at(0.005)
    assert control.rate == pytest.approx(TUNING.exit_cut * 10)


def test_after_a_quick_start_answers_to_requests_sent_before_the_pause_are_not_told() -> None:
    control = quick_start_dry_at(0.3)
    assert control.sent_before_measuring(0.299)
    assert not control.sent_before_measuring(0.3 + TUNING.quick_pause)


def test_does_not_raise_a_rate_the_caller_does_not_use() -> None:
    control = AdaptiveRate(100)
    control.on_success(0.0)
    answer_steadily(control, 0.0, 3.0, 10)  # answers at 10/s: the caller sends less
    assert control.rate < 100 * 2**3


def test_a_burst_of_429s_from_one_overshoot_cuts_once() -> None:
    control = AdaptiveRate(100)
    rates = [control.on_throttled(1.0 + i * 0.001) for i in range(50)]
    assert rates == [25.0] * 50
    assert not control.slow_start


def test_measures_the_quota_while_still_throttled() -> None:
    """Above the quota the 200s come at the quota's rate: the rate is set from it."""
    control = AdaptiveRate(400)
    control.on_throttled(0.0)  # cut to 100/s, still above a quota of 40/s
    t = 0.0
    for _ in range(80):  # 80 requests a second: 200s at exactly 40/s, 429s in between
        t += 0.025
        control.on_answers(t, 1, 0, 2)
        control.on_throttled(t + 0.01)
    assert control.estimate == pytest.approx(40, rel=0.05)
    assert control.rate == pytest.approx(0.95 * 40, rel=0.05)


def test_measures_the_quota_while_first_fetches_take_seconds() -> None:
    """200s seconds away, 429s at once: the quota is the requests sent less the 429s."""
    control = AdaptiveRate(400)
    control.on_throttled(0.0)  # cut to 100/s, still above a quota of 40/s
    t = 0.0
    for _ in range(40):  # 80 requests a second, 40 of them 429 at once, no 200 back yet
        t += 0.025
        control.on_answers(t, 0, 1, 2)
    assert control.estimate == pytest.approx(40, rel=0.05)


def test_429s_a_round_trip_late_do_not_count_against_the_quota() -> None:
    """The 429s of the requests sent before the cut (at 400/s) come back after `settle`:
    the measurement starts again once the requests sent outnumber them."""
    control = AdaptiveRate(400)
    control.on_throttled(0.0)
    t = 0.2
    for _ in range(30):  # 0.2-0.35 s: 429s of the old requests, 200 a second
        t += 0.005
        control.on_answers(t, 0, 1, 0)
    for _ in range(40):  # then 80 requests a second: 40 pass, 40 get 429 at once
        t += 0.025
        control.on_answers(t, 1, 1, 2)
    assert control.estimate == pytest.approx(40, rel=0.1)


def guessed(initial: float) -> tuple[AdaptiveRate, float]:
    """A controller whose first cut (x0.25) was followed by a clean batch: a guess."""
    control = AdaptiveRate(initial)
    control.on_throttled(0.0)
    t = 0.3
    for _ in range(8):
        t += 0.01
        control.on_success(t)
    assert control.rate == initial / 4
    return control, t


def test_after_a_guess_the_rate_climbs_back_to_half_the_rate_it_was_cut_from() -> None:
    control, t = guessed(400)
    assert 200 <= answer_steadily(control, t, t + 2.0, 200) < 210  # back at slow start's pace
    assert 210 < answer_steadily(control, t + 2.0, t + 5.0, 200) < 1.3 * 200  # then probes


def measure_then_clean(control: AdaptiveRate, seconds: float) -> float:
    """Cut from 400/s to 100/s, still above a quota of 40/s: for `seconds`, 80 requests a
    second, 200s at exactly 40/s and 429s in between; then a clean batch. The time then."""
    control.on_throttled(0.0)
    t = 0.0
    for _ in range(round(seconds / 0.025)):
        t += 0.025
        control.on_answers(t, 1, 0, 2)
        control.on_throttled(t + 0.01)
    for _ in range(8):  # a clean batch ends the episode
        t += 0.025
        control.on_success(t)
    return t


def test_after_a_measured_episode_the_rate_holds_ten_seconds_then_probes() -> None:
    control = AdaptiveRate(400)
    t = measure_then_clean(control, 1.5)
    held = control.rate
    assert held == pytest.approx(TUNING.hold_at * 40, rel=0.05)
    assert answer_steadily(control, t, t + 9.5, 38) == held
    assert held < answer_steadily(control, t + 9.5, t + 14.0, 38) < 1.1 * held


def test_a_quota_measured_over_less_than_a_second_is_probed_again_after_one() -> None:
    """Measured in the half second after a cut (the server and the client still busy with
    the overshoot, traced at 0.74-0.89 Q at 3 s), the quota is held one second, not ten,
    then probed with the step doubling every two seconds."""
    control = AdaptiveRate(400)
    t = measure_then_clean(control, 0.8)
    held = control.rate
    assert held <= TUNING.hold_at * 40 * 1.05
    assert answer_steadily(control, t, t + TUNING.fast_after, 38) == held
    assert held < answer_steadily(control, t + TUNING.fast_after, t + 5.0, 38) < 1.2 * held
    assert (control.state.fast, control.state.measured) == (1, 2)


def bound_then_clean(admitted: int) -> tuple[AdaptiveRate, float]:
    """Probing after a guess, at 52/s (quota last seen at 40/s): a 429 5 s after the
    measuring began, `admitted` requests sent since (the 429's among them), then a clean batch. The
    controller and the time the episode ended."""
    control = AdaptiveRate(10.0)
    s = control.state
    s.started = s.emptied = s.fast = 1
    s.rate, s.estimate, s.began, s.cut_at, s.admitted = 52.0, 40.0, 10.0, 9.8, admitted
    s.last = s.held_since = s.tally_since = 10.0
    control.on_answers(15.0, 0, 1)
    t = 15.0 + TUNING.settle
    for _ in range(8):
        t += 0.01
        control.on_success(t)
    assert control.state.episode == 0
    return control, t


@pytest.mark.parametrize(("admitted", "waits"), [
    (203, TUNING.bound_spacing / (0.95 * 40.4)),  # 40.4/s again: probed after 100 requests
    (221, TUNING.fast_after),  # 44/s, 10% more than the last: probed again after 1 s
])
def test_a_lower_bound_that_did_not_move_is_probed_after_a_hundred_requests(
        admitted: int, waits: float) -> None:
    """At Q = 5 the probe after a guess climbs 30% past Q before the bucket runs dry, so
    every later q (within 1% of Q) counted as a lower bound, and the client probed
    every 10 s: a 429 each, 2% of its requests. A bound that comes out where the last
    one did (within `agree`) is probed no sooner than `bound_spacing` requests later;
    one that rose is probed again after `fast_after` s, as before."""
    control, t = bound_then_clean(admitted)
    held = control.rate
    assert held == pytest.approx(0.95 * (admitted - 1) / 5.0)  # the 429 let none through
    assert answer_steadily(control, t, t + waits - 0.1, 38) == held
    assert answer_steadily(control, t + waits - 0.1, t + waits + 1.0, 38) > held


def test_the_quota_is_measured_up_to_the_last_429_not_up_to_the_review() -> None:
    """The bucket is known to be empty only when a 429 comes back. 429s at the start of
    the measuring, then none while the client sends under Q (its slots still held by the
    overshoot), say nothing of the time after them: counted up to the review they gave
    0.74 Q at 0.05 s, held for seconds."""
    control = AdaptiveRate(4000)
    control.on_throttled(0.0)  # cut to 1,000/s, measuring from `settle` on
    t = TUNING.settle
    for _ in range(5):  # 50 ms at 1,200 sent a second, 200 of them 429s: the bucket empty
        t += 0.01
        control.on_answers(t, 10, 2, 12)
    for _ in range(50):  # then 500 ms at 600 a second, all let through
        t += 0.01
        control.on_answers(t, 6, 0, 6)
    assert control.state.episode == 0  # ended as clean once the 429s stayed away
    assert control.rate == 1000.0  # not cut to ~650 x 0.95
    assert control.state.measured == 0


def test_stays_within_min_and_max() -> None:
    control = AdaptiveRate(10, min_rate=4, max_rate=12)
    control.on_success(0.0)
    assert answer_steadily(control, 0.0, 2.0, 50) == 12
    assert control.on_throttled(5.1) == 4


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_rate": 0}, "min_rate"),
    ({"min_rate": 5, "max_rate": 1}, "max_rate"),
])
def test_rejects_bad_limits(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveRate(10, **kwargs)


def test_rate_moves_in_steps_not_on_every_answer() -> None:
    """At 10,000 answers a second the limiter is retuned a few hundred times, not 10,000."""
    control = AdaptiveRate(10_000)
    rates = {control.on_answers(i / 10_000, 1, 0, 1) for i in range(10_000)}
    assert control.rate == pytest.approx(40_000, rel=0.01)
    assert len(rates) < 300


def test_rate_never_runs_far_ahead_of_the_answers_it_gets() -> None:
    """A client capped elsewhere (its concurrency) at 100 answers a second: without 429s
    the rate stops growing near 4x what is used, instead of doubling without end."""
    controller = AdaptiveRate(initial=10.0)
    now = 0.0
    for _ in range(100 * 60):  # a minute of requests and answers, 100 a second
        now += 0.01
        controller.on_answers(now, 1, 0, 1)
    assert controller.rate <= 4 * 100 * 1.05


@pytest.mark.parametrize(("after_began", "admitted", "expected"),
                         [(0.063, 60, 950.0), (0.5, 480, 0.95 * 479 / 0.5)])
def test_a_later_episode_cuts_on_a_quota_counted_over_2_settles_at_least(
        after_began: float, admitted: int, expected: float) -> None:
    """At a rate already measured, a 429 that comes 63 ms after the last measuring began
    does not cut to the quota counted over those 63 ms (0.94 Q here, held 10 s): the
    episode it opens measures. Half a second is long enough to count over."""
    rate = AdaptiveRate(10.0)
    s = rate.state
    s.started = s.emptied = 1
    s.rate, s.estimate, s.began, s.cut_at = 950.0, 1000.0, 10.0, 9.8
    s.admitted = admitted
    s.last = s.held_since = s.tally_since = 10.0
    rate.on_answers(10.0 + after_began, 0, 1)
    assert rate.state.episode == 1
    assert rate.rate == pytest.approx(expected)


def _stalled_episode(with_send_times: bool) -> float:
    """An episode at 1,250/s against Q = 1,000 (the bucket empty from `began` = 10 s):
    480 ms of sends, every fifth request 429'd, then the client stalls 0.32 s (a full
    collection) and reads the 429s of the last 80 ms only then. The measured quota."""
    rate = AdaptiveRate(10.0)
    s = rate.state
    s.started = s.emptied = s.episode = 1
    s.rate, s.cut_at, s.began = 1250.0, 9.8, 10.0
    s.settled = s.last = s.tally_since = 10.0
    sent_at = [10.0 + i / 1250 for i in range(600)]
    late = []
    for i, when in enumerate(sent_at):
        rate.on_answers(when, 0, 0, 1)
        if i % 5 == 4:  # a 429, read at once until the stall
            if when < 10.4:
                rate.on_answers(when + 0.001, 0, 1, 0, empty_at=when, sent_after=0)
            else:
                late.append(i)
    for i in late:  # read at 10.8, when the loop runs again; nothing sent since
        if with_send_times:
            rate.on_answers(10.8, 0, 1, 0, empty_at=sent_at[i], sent_after=599 - i)
        else:
            rate.on_answers(10.8, 0, 1, 0)
    assert rate.estimate is not None
    return rate.estimate


def test_a_429_read_late_ends_the_measuring_when_its_request_went_out() -> None:
    """Counted to when a stalled client read its last 429, the window takes in the stall
    (sent nothing, let nothing through) and the quota comes out low (0.6 Q here); in
    process the window ends when that request went out: Q within a percent."""
    assert _stalled_episode(with_send_times=True) == pytest.approx(1000, rel=0.01)
    assert _stalled_episode(with_send_times=False) < 0.8 * 1000
