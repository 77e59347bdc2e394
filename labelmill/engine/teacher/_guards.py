"""Guards on sending that do not depend on the server's limits: adaptive concurrency and a circuit
breaker.

- `AdaptiveConcurrency`: AIMD on the number of requests in flight; halves on a 429 (at most once
  per cooldown, or per round trip where nothing else paces the sends), grows back by about one
  slot per window of successes; slots freed together are granted over half a round trip.
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
from labelmill.engine.teacher._limits import RateLimiter

# Slots are granted at most this many times as fast as the requests in flight are answered...
SPREAD = 2.0
# ...with this much ahead of that schedule let through unslept: uvloop's clock ticks in whole
# milliseconds, and a timer for each of a few answers that came back together costs more than it saves.
SPREAD_SLACK_S = 0.001


class AdaptiveConcurrency:
    """At most `limit` holders at once; the limit moves by AIMD between `minimum` and `maximum`.

    Slots are granted no faster than `SPREAD` times `limit` per mean round trip. That never slows
    a steady run (`limit` requests in flight are answered at most that fast, on average), but the
    slots of a wave answered together leave over half a round trip instead of at once: against a
    server that gave no sign of a limit, the first 429 of a bucket run dry comes back while most of
    the wave is still to go, and the pause it sets holds the rest, instead of a whole wave refused.
    """

    def __init__(self, maximum: int, minimum: int = 1, cooldown_s: float = 1.0) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cooldown_s = cooldown_s
        self._last_decrease = -math.inf
        self._round_trip_s = math.inf  # a running mean of the successes' round trips
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._grants = RateLimiter(1.0)  # its rate set at each grant, once a round trip is known

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while self.in_flight >= int(self.limit):
            future = loop.create_future()
            self._waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                self._wake()
                raise
        self.in_flight += 1
        if self._round_trip_s < math.inf:
            per_second = SPREAD * self.limit / max(self._round_trip_s, 1e-6)
            self._grants.set_rate(per_second)
            self._grants.burst = 1.0 + per_second * SPREAD_SLACK_S
            if (wait := self._grants.reserve(1.0, loop.time())) > 0:
                try:
                    await asyncio.sleep(wait)  # the slot is held meanwhile: it is this request's
                except asyncio.CancelledError:
                    self.release()
                    raise

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
