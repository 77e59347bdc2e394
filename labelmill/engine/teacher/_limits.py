"""Client-side limits: request and token rates, adaptive concurrency, and a circuit breaker.

- `RateLimits`: RPM and TPM as `RateLimiter` schedules; the TPM limiter is acquired with the
  request's token estimate (prompt upper bound + max_tokens). They run at 98% of the limit, so a
  server counting over a 1-second window never sees more than its limit.
  Limits tighten from `x-ratelimit-*` headers, and a 429's `retry-after` pauses every sender.
- `AdaptiveConcurrency`: AIMD on the number of requests in flight; halves on a 429 (at most once
  per cooldown), grows back by about one slot per window of successes.
- `CircuitBreaker`: opens when nothing but 429/5xx/connection errors came back for a sustained
  period, so a run against a dead or throttled endpoint ends with a clear message.

Time comes from the running loop (`loop.time()`), which tests can patch.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable, Mapping

from labelmill._exceptions import CircuitOpenError
from labelmill.engine.teacher._client import parse_duration

# Send a little under the limit: the servers we talk to count requests over 1 s and 60 s windows.
RATE_HEADROOM = 0.98


class RateLimiter:
    """A rate limit as a schedule (GCRA, the "virtual scheduling" form of a leaky bucket).

    Each acquisition reserves the earliest moment it may go and sleeps once until then, so
    concurrent callers leave in arrival order with exact spacing, and a timer that fires late
    shifts nothing after it. In any window of `L` seconds at most `burst + L * rate` units pass.

    Why not aiolimiter, which DESIGN.md names: measured here at 100 requests/s with 64 waiting
    workers it woke its waiters about 23 times per request and spent a fifth of a core doing so
    (under uvloop, whose clock ticks in milliseconds, its sub-millisecond timers spin). One sleep
    per request costs nothing by comparison.
    """

    def __init__(self, per_second: float, burst: float = 1.0) -> None:
        if per_second <= 0:
            raise ValueError("a rate limit must be positive")
        self.per_second = per_second
        self.burst = burst
        self._interval = 1.0 / per_second
        self._theoretical_arrival = 0.0  # when the bucket would be empty again

    def reserve(self, amount: float, now: float) -> float:
        """Book `amount` units; returns how many seconds to wait before going."""
        arrival = max(self._theoretical_arrival, now) + amount * self._interval
        self._theoretical_arrival = arrival
        return max(0.0, arrival - self.burst * self._interval - now)

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount, asyncio.get_running_loop().time())
        if wait > 0:
            await asyncio.sleep(wait)


def _limiter(per_minute: float) -> RateLimiter:
    return RateLimiter(per_minute / 60 * RATE_HEADROOM)


class RateLimits:
    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._requests = _limiter(rpm) if rpm else None
        self._tokens = _limiter(tpm) if tpm else None
        self._pause_until = 0.0

    async def acquire(self, tokens: int) -> None:
        """Wait until a request of `tokens` (upper bound) may be sent."""
        loop = asyncio.get_running_loop()
        # A loop, not an Event: a 429 arriving during the sleep may push the deadline further.
        while (wait := self._pause_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            await self._tokens.acquire(float(tokens))

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (a 429's retry-after, or a header saying 0 left)."""
        loop = asyncio.get_running_loop()
        self._pause_until = max(self._pause_until, loop.time() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Tighten from `x-ratelimit-*` headers: a lower advertised limit, or nothing remaining."""
        limit = headers.get("x-ratelimit-limit-requests")
        if limit and limit.isdigit() and (self.rpm is None or int(limit) < self.rpm):
            self.rpm = float(limit)
            self._requests = _limiter(self.rpm)
        limit_tokens = headers.get("x-ratelimit-limit-tokens")
        if limit_tokens and limit_tokens.isdigit() and (self.tpm is None or int(limit_tokens) < self.tpm):
            self.tpm = float(limit_tokens)
            self._tokens = _limiter(self.tpm)
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            reset = headers.get(f"x-ratelimit-reset-{kind}")
            if remaining == "0" and reset:
                seconds = parse_duration(reset)
                if seconds:
                    self.pause(min(seconds, 60.0))


class AdaptiveConcurrency:
    """At most `limit` holders at once; the limit moves by AIMD between `minimum` and `maximum`."""

    def __init__(self, maximum: int, minimum: int = 1, cooldown_s: float = 1.0) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cooldown_s = cooldown_s
        self._last_decrease = -math.inf
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        while self.in_flight >= int(self.limit):
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                self._wake()
                raise
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                free -= 1

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            self._wake()

    def on_throttle(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_decrease >= self.cooldown_s:
            self.limit = max(float(self.minimum), self.limit / 2)
            self._last_decrease = now


class CircuitBreaker:
    """Opens after `window_s` seconds in which at least `min_failures` attempts failed and none succeeded."""

    def __init__(self, window_s: float = 120.0, min_failures: int = 10, clock: Callable[[], float] | None = None):
        self.window_s = window_s
        self.min_failures = min_failures
        self._clock = clock
        self._first_failure: float | None = None
        self._failures = 0
        self.last_error = ""

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def record_success(self) -> None:
        self._first_failure = None
        self._failures = 0

    def record_failure(self, description: str) -> None:
        now = self._now()
        if self._first_failure is None:
            self._first_failure = now
        self._failures += 1
        self.last_error = description
        self.check()

    def check(self) -> None:
        if self.is_open:
            raise CircuitOpenError(
                f"the teacher answered only errors for {self.window_s:.0f}s ({self._failures} in a row, last: "
                f"{self.last_error}); stopping. Everything done so far is kept: rerun the same command later "
                "to continue."
            )

    @property
    def is_open(self) -> bool:
        return (
            self._first_failure is not None
            and self._failures >= self.min_failures
            and self._now() - self._first_failure >= self.window_s
        )
