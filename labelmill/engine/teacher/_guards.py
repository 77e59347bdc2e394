"""Guards on sending that do not depend on the server's limits: adaptive concurrency and a circuit
breaker.

- `AdaptiveConcurrency`: AIMD on the number of requests in flight; halves on a 429 (at most once
  per cooldown, or per round trip where nothing else paces the sends), grows back by about one
  slot per window of successes.
- `CircuitBreaker`: opens when nothing but 429/5xx/connection errors came back for a sustained
  period, so a run against a dead or throttled endpoint ends with a clear message.

Time comes from the running loop (`loop.time()`), which tests can patch.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable

from labelmill._exceptions import CircuitOpenError


class AdaptiveConcurrency:
    """At most `limit` holders at once; the limit moves by AIMD between `minimum` and `maximum`."""

    def __init__(self, maximum: int, minimum: int = 1, cooldown_s: float = 1.0) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cooldown_s = cooldown_s
        self._last_decrease = -math.inf
        self._round_trip_s = math.inf  # a running mean of the successes' round trips
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

    def on_success(self, round_trip_s: float | None = None) -> None:
        if round_trip_s is not None:
            known = self._round_trip_s if self._round_trip_s < math.inf else round_trip_s
            self._round_trip_s = known + 0.1 * (round_trip_s - known)
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            self._wake()

    def on_throttle(self, paced: bool = True) -> None:
        """A 429. `paced`: a rate schedule paces the sends, and it is what slows down; the
        concurrency halves at most once per cooldown, a safety net. Unpaced, the concurrency is
        the only brake: it halves once per round trip, as TCP does (the 429s of one round trip
        answer requests sent together; a fixed second against 50 ms answers would keep sending
        twenty rounds at a concurrency the server refused)."""
        now = asyncio.get_running_loop().time()
        if now - self._last_decrease >= (self.cooldown_s if paced else min(self.cooldown_s, self._round_trip_s)):
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
