"""Retry policy, rate limits, AIMD and the circuit breaker, with injected time (no real sleeps)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill._exceptions import CircuitOpenError, TeacherStatusError
from labelmill.engine.teacher import (
    AdaptiveConcurrency,
    CircuitBreaker,
    RateLimiter,
    RateLimits,
    RetryableError,
    RetryPolicy,
    call_with_retries,
    parse_duration,
    parse_retry_after,
)
from tests.test_pacing import FakeClock as SleepingClock  # a sleep advances it


class Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retries_retryable_errors_honouring_retry_after() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    func = Flaky([RetryableError("status", "429", 429, retry_after=2.5), RetryableError("timeout", "slow")])
    retries: list[float] = []
    result = await call_with_retries(func, RetryPolicy(attempts=3), lambda e, w: retries.append(w), fake_sleep)
    assert result == "ok" and func.calls == 3
    assert slept[0] == 2.5  # the server's retry-after
    assert 0 <= slept[1] <= 1.0  # full jitter under base * 2
    assert retries == slept


async def test_retry_after_is_capped() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    func = Flaky([RetryableError("status", "429", 429, retry_after=3600)])
    await call_with_retries(func, RetryPolicy(attempts=2, retry_after_cap_s=30), None, fake_sleep)
    assert slept == [30]


async def test_status_errors_that_cannot_succeed_are_not_retried() -> None:
    async def fake_sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    for status in (400, 401, 403, 404):
        func = Flaky([TeacherStatusError(status, "no")])
        with pytest.raises(TeacherStatusError):
            await call_with_retries(func, RetryPolicy(attempts=5), None, fake_sleep)
        assert func.calls == 1


async def test_attempts_run_out_and_the_last_error_is_raised() -> None:
    async def fake_sleep(seconds: float) -> None:
        pass

    func = Flaky([RetryableError("connection", f"drop {i}") for i in range(10)])
    with pytest.raises(RetryableError, match="drop 3"):
        await call_with_retries(func, RetryPolicy(attempts=4), None, fake_sleep)
    assert func.calls == 4


def test_backoff_grows_exponentially_within_the_cap() -> None:
    policy, rng = RetryPolicy(backoff_base_s=1, backoff_cap_s=8), random.Random(0)
    error = RetryableError("status", "503", 503)
    ceilings = []
    for failures in range(1, 7):
        samples = [policy.wait_s(error, failures, rng) for _ in range(200)]
        assert min(samples) >= 0
        ceilings.append(max(samples))
    assert ceilings[0] <= 1 and 2 < ceilings[2] <= 4 and all(c <= 8 for c in ceilings)


async def test_a_429_is_a_wait_that_does_not_use_up_attempts() -> None:
    # LiteLLM's proxy: a 60 s window, announced as llm_provider-retry-after. Ten 429s in a row
    # are ten waits of 60 s, within the patience; attempts=2 still allows one 5xx retry after.
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    after = parse_retry_after({"llm_provider-retry-after": "60"})
    errors: list[Exception] = [RetryableError("status", "429", 429, retry_after=after) for _ in range(10)]
    func = Flaky([*errors, RetryableError("status", "503", 503)])
    assert await call_with_retries(func, RetryPolicy(attempts=2, rate_limit_patience_s=600), None, fake_sleep) == "ok"
    assert func.calls == 12 and slept[:10] == [60.0] * 10


async def test_429s_give_up_when_the_patience_is_spent() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    func = Flaky([RetryableError("status", f"429 #{i}", 429, retry_after=30) for i in range(100)])
    with pytest.raises(RetryableError, match="429 #4"):
        await call_with_retries(func, RetryPolicy(attempts=6, rate_limit_patience_s=120), None, fake_sleep)
    assert sum(slept) == 120 and func.calls == 5


def test_retry_after_under_every_name_servers_use() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"llm_provider-retry-after": "60"}) == 60.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}, now=1445412480.0) == 5.0
    reset = {
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1.5s",
        "x-ratelimit-reset-requests": "9s",
    }
    assert parse_retry_after(reset) == 1.5  # the limit that has nothing left, not the other one
    assert parse_retry_after({"x-ratelimit-reset-tokens": "1.5s"}) is None  # something remains: no wait
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360), ("1.5s", 1.5), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("2", 2), ("abc", None), ("", None)],
)
def test_reset_durations_in_the_formats_servers_use(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_schedules_exact_spacing() -> None:
    limiter = RateLimiter(per_second=100, burst=2)
    waits = [limiter.reserve(1, now=0.0) for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0.01, 0.02, 0.03])
    # A caller that arrives after its slot goes at once, and the schedule restarts from now.
    assert limiter.reserve(1, now=5.0) == 0
    assert limiter.reserve(1, now=5.0) == 0
    assert limiter.reserve(1, now=5.0) == pytest.approx(0.01)


def test_token_amounts_wait_in_proportion() -> None:
    limiter = RateLimiter(per_second=1000, burst=1)  # 1,000 tokens a second
    assert limiter.reserve(1, now=0.0) == 0
    assert limiter.reserve(500, now=0.0) == pytest.approx(0.5)
    assert limiter.reserve(5000, now=0.0) == pytest.approx(5.5)  # bigger than a burst: waits, never fails


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(1, 500),
    burst=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 0.05), min_size=1, max_size=300),
)
def test_no_window_ever_sees_more_than_burst_plus_rate(rate: float, burst: int, gaps: list[float]) -> None:
    limiter = RateLimiter(per_second=rate, burst=burst)
    now, departures = 0.0, []
    for gap in gaps:
        now += gap
        departures.append(now + limiter.reserve(1, now))
    departures.sort()
    window = 1.0
    for i, start in enumerate(departures):
        inside = sum(1 for d in departures[i:] if d < start + window - 1e-9)
        assert inside <= burst + rate * window + 1e-6


async def test_rate_limits_run_just_under_the_account_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Time is the fake clock: a sleep advances it instead of waiting. 600 requests at 6,000 RPM
    # must take 6 s of the limit's time at 98% (never more than the server's 100 a second).
    clock = FakeClock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    departures: list[float] = []

    async def advance(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr("labelmill.engine.teacher._limits.asyncio.sleep", advance)
    limits, start = RateLimits(rpm=6000), clock.now
    for _ in range(600):
        await limits.acquire(lambda: 10)
        departures.append(clock.now - start)
    assert departures[-1] == pytest.approx(599 / 98.0)
    assert max(sum(1 for d in departures if s <= d < s + 1.0) for s in departures) <= 99


async def test_limits_tighten_from_headers_and_nothing_left_waits_for_room(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SleepingClock(monkeypatch)
    limits = RateLimits(rpm=10_000)
    limits.observe({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "20000"})
    assert limits.rpm == 500 and limits.tpm == 20000
    await limits.acquire(lambda: 1)
    # Nothing left: the schedule waits for room for the next request and a 1% margin (6 requests at
    # the steady 500 RPM: 0.72 s), not for the whole `reset` (a minute window reports up to 60 s).
    limits.observe({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "1m0s"}, sent_at=clock.now, counted={"requests": 1})  # fmt: skip
    start = clock.now
    await limits.acquire(lambda: 1)
    assert clock.now - start == pytest.approx(6 / (500 / 60), abs=0.01)


async def test_aimd_halves_on_throttle_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    gate = AdaptiveConcurrency(maximum=64, cooldown_s=1.0)
    gate.on_throttle()
    gate.on_throttle()  # within the cooldown: one decrease per burst of 429s
    assert gate.limit == 32
    clock.now += 1.5
    gate.on_throttle()
    assert gate.limit == 16
    for _ in range(200):
        gate.on_success()
    assert 16 < gate.limit <= 64


async def test_slots_freed_together_are_granted_over_half_a_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, granted = FakeClock(), []
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)

    async def advance(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr("labelmill.engine.teacher._guards.asyncio.sleep", advance)
    gate = AdaptiveConcurrency(maximum=10)
    gate.on_success(round_trip_s=0.1)  # 10 in flight answered in 0.1 s: 100 a second at most

    async def take() -> None:
        await gate.acquire()
        granted.append(clock.now)

    start = clock.now
    await asyncio.gather(*(take() for _ in range(10)))
    # A wave of 10 goes at twice the rate 10 in flight can sustain: one every 5 ms (a millisecond of
    # slack), not all at once, so a 429 to its first requests comes back while the rest still wait.
    assert granted == pytest.approx([start] + [start + i * 0.005 - 0.001 for i in range(1, 10)], abs=1e-9)
    assert gate.in_flight == 10


async def test_a_request_cancelled_while_its_slot_is_spread_gives_the_slot_back() -> None:
    gate = AdaptiveConcurrency(maximum=4)
    gate.on_success(round_trip_s=2.0)  # 4 in flight per 2 s: grants 0.25 s apart
    await gate.acquire()
    waiting = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert gate.in_flight == 2  # holds its slot while it waits for its place
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert gate.in_flight == 1


async def test_adaptive_concurrency_bounds_holders() -> None:
    gate = AdaptiveConcurrency(maximum=2)
    await gate.acquire()
    await gate.acquire()
    third = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    gate.release()
    await third
    assert gate.in_flight == 2


def test_circuit_breaker_opens_only_after_a_sustained_failure_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(window_s=60, min_failures=3, clock=clock)
    for _ in range(5):
        breaker.record_failure("HTTP 503")
    assert not breaker.is_open  # many failures, but not for long
    clock.now += 30
    breaker.record_success()
    clock.now += 45
    breaker.record_failure("HTTP 429")
    assert not breaker.is_open  # a success reset the clock
    breaker.record_failure("HTTP 429")
    clock.now += 61
    with pytest.raises(CircuitOpenError, match="HTTP 429"):
        breaker.record_failure("HTTP 429")
