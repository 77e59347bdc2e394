"""The client's pacing against every way the mock can count a limit, on an injected clock (no
sleeps): it uses the allowance, gets no 429s, and shares a key with another client."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.engine.teacher import RateLimits
from labelmill.testing._ratelimits import MODELS, ServerLimits
from tests.test_pacing import FakeClock

RPM = 600  # 10 a second


async def drive(
    limits: RateLimits, server: ServerLimits, clock: FakeClock, gaps: list[float], whole_seconds: bool = False
) -> tuple[list[float], int]:
    """Send one request per gap (idle that long first) as a worker would; the times the server
    took them, and how many it refused. `whole_seconds`: a 429's retry-after is rounded up to whole
    seconds, as HTTP's `retry-after` header has it."""
    taken, refused = [], 0
    for gap in gaps:
        clock.now += gap
        await limits.acquire(lambda: 1)
        now = clock.now
        limits.sending(now)
        hit = server.admit(now, 1)
        if hit is None:
            taken.append(now)
            limits.observe(server.headers(now), now, {"requests": 1, "tokens": 1})
        else:
            refused += 1
            limits.throttled(now)
            limits.observe(server.headers(now), now)
            limits.pause(max(1.0, math.ceil(hit[1])) if whole_seconds else hit[1])
    return taken, refused


@pytest.mark.parametrize("model", MODELS)
async def test_every_server_model_gets_the_limit_without_429s(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    clock = FakeClock(monkeypatch)
    clock.now = 6000.0  # a calendar-minute boundary for the fixed window
    limits, server = RateLimits(), ServerLimits(RPM, None, model=model)  # the limit from headers only
    start = clock.now
    taken, refused = await drive(limits, server, clock, [0.0] * 1800)  # three minutes at the limit
    share = len(taken) / ((clock.now - start) / 60) / RPM
    assert refused == 0 and share >= 0.95, (model, refused, share)


@pytest.mark.parametrize("model", MODELS)
async def test_another_client_on_the_key_leaves_us_what_is_left(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    clock = FakeClock(monkeypatch)
    clock.now = 6000.0
    limits, server = RateLimits(rpm=RPM), ServerLimits(RPM, None, model=model, other_share=0.3)
    taken, refused = await drive(limits, server, clock, [0.0] * 3000)
    steady = [t for t in taken if t >= taken[0] + 60]  # after the first minute (a bucket starts full)
    share_of_left = len(steady) / ((steady[-1] - steady[0]) / 60) / (RPM * 0.7)
    assert share_of_left >= 0.9 and refused / 3000 < 0.02, (model, share_of_left, refused)


@pytest.mark.parametrize("model", MODELS)
async def test_when_the_other_client_leaves_the_limit_is_ours(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    clock = FakeClock(monkeypatch)
    clock.now = 6000.0
    limits, server = RateLimits(), ServerLimits(RPM, None, model=model, other_share=0.3)
    await drive(limits, server, clock, [0.0] * 2000)
    for limit in server.limits:
        limit.other_share = 0.0
    await drive(limits, server, clock, [0.0] * 1200)  # two minutes to notice (a window holds its use 60 s)
    start = clock.now
    taken, refused = await drive(limits, server, clock, [0.0] * 600)
    assert refused == 0 and len(taken) / ((clock.now - start) / 60) / RPM >= 0.95, model


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.5, 3.0, 20.0]), min_size=100, max_size=900))
def test_no_60_s_window_ever_holds_more_than_the_limit(gaps: list[float]) -> None:
    import asyncio

    async def run() -> list[float]:
        with pytest.MonkeyPatch.context() as monkeypatch:
            clock = FakeClock(monkeypatch)
            taken, _ = await drive(RateLimits(rpm=RPM), ServerLimits(RPM * 10, None, model="sliding"), clock, gaps)
            return taken

    taken = asyncio.run(run())  # the server allows 10x: what the client alone lets through is measured
    for i, at in enumerate(taken):
        in_window = sum(1 for t in taken[i:] if t < at + 60)
        assert in_window <= RPM


async def test_a_server_without_headers_shows_its_limit_by_what_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    clock.now = 6000.0
    limits, server = RateLimits(), ServerLimits(RPM, None, model="bucket", send_headers=False)
    taken, refused = await drive(limits, server, clock, [0.0] * 1800, whole_seconds=True)
    steady = [t for t in taken if t >= taken[0] + 10]  # after the 429s that show the limit
    share = len(steady) / ((steady[-1] - steady[0]) / 60) / RPM
    assert limits.source["requests"] == "inferred"
    assert share >= 0.9 and refused / 1800 < 0.02, (share, refused)


async def provisional_limit(monkeypatch: pytest.MonkeyPatch) -> tuple[RateLimits, FakeClock]:
    """Limits after 20 requests a second for two seconds, then a 429 to the next one."""
    clock = FakeClock(monkeypatch)
    limits = RateLimits()
    for _ in range(40):
        clock.now += 0.05
        limits.sending(clock.now)
        limits.observe({}, clock.now, {"requests": 1, "tokens": 1})
    clock.now += 0.05
    limits.sending(clock.now)
    limits.throttled(clock.now)
    return limits, clock


def refuse_while_taking(limits: RateLimits, clock: FakeClock, one_in: int) -> None:
    """Two seconds of sending 30 a second, of which the server takes one in `one_in`."""
    for i in range(62):
        clock.now += 1 / 30
        limits.sending(clock.now)
        if i % one_in == one_in - 1:
            limits.observe({}, clock.now, {"requests": 1, "tokens": 1})
        else:
            limits.throttled(clock.now)


async def test_the_first_429_of_a_server_without_headers_paces_at_a_share_of_the_second_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits, clock = await provisional_limit(monkeypatch)
    # The last second held 20 (or 21, both ends in it): the schedule runs at 0.9 of that until the
    # 429s show what the server takes, and the concurrency still brakes as if nothing paced.
    assert limits.source["requests"] == "inferred" and limits.provisional
    assert limits.rpm is not None and 0.9 * 20 * 60 <= limits.rpm <= 0.9 * 21 * 60
    refuse_while_taking(limits, clock, one_in=6)  # 300 a minute: far less, as a bucket that held a minute
    assert not limits.provisional and limits.rpm is not None and 270 <= limits.rpm <= 330, limits.rpm


async def test_the_first_429_reads_what_was_sent_before_it_not_what_was_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A first wave of 100 leaves over 0.2 s and a 429 comes back while only 10 have been answered
    # (a client slower than the server, or answers slower than 429s). The server took those 100:
    # a limit from the 10 answers would pace at a tenth of its rate, with no 429 to say so.
    clock = FakeClock(monkeypatch)
    limits = RateLimits()
    for i in range(100):
        clock.now += 0.002
        limits.sending(clock.now)
        if i % 10 == 0:
            limits.observe({}, clock.now, {"requests": 1, "tokens": 1})
    clock.now += 0.002
    limits.sending(clock.now)
    limits.throttled(clock.now)
    assert limits.provisional and limits.rpm == 0.9 * 100 * 60


async def test_a_provisional_limit_is_slowed_not_replaced_when_429s_show_a_little_less(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits, clock = await provisional_limit(monkeypatch)
    guess = limits.rpm
    # 900 a minute of 30 a second: what was sent since the first 429 (a pause, a concurrency that
    # halved) measures the client more than the server; its 429s slow the guess by a tenth instead.
    refuse_while_taking(limits, clock, one_in=2)
    assert limits.provisional and limits.rpm == guess and limits.throttle.scale < 1.0
