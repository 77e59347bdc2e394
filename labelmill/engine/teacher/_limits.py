"""Client-side limits: request and token rates, adaptive concurrency, and a circuit breaker.

- `RateLimits`: RPM and TPM as `RateLimiter` schedules, from flags or from `x-ratelimit-*` headers,
  corrected by every answer's `remaining`; the TPM limiter is acquired with the pacing estimate of
  `_pacing.py` (not the byte bound money reserves). They run at 98% of the limit, so a server
  counting over a 1-second window never sees more than its limit. A 429's `retry-after` pauses
  every sender.
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
from typing import Any

from labelmill._exceptions import CircuitOpenError
from labelmill.engine.teacher._client import parse_duration

# Send a little under the limit: the servers we talk to count requests over 1 s and 60 s windows.
RATE_HEADROOM = 0.98
# Tokens need less: the pacing estimate is already a high quantile of what the server counts, and
# the server's own `remaining` corrects the schedule as it goes.
TOKEN_HEADROOM = 0.99
BOOK_AHEAD_S = 0.25  # how far ahead of its place on the token schedule a request books it


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

    @property
    def free_at(self) -> float:
        """When a request of no size could go: the earliest a booking made now would start."""
        return self._theoretical_arrival - self.burst * self._interval

    def defer(self, until: float) -> None:
        """Never free up before `until`: what the server says its own bucket needs to drain."""
        self._theoretical_arrival = max(self._theoretical_arrival, until)

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount, asyncio.get_running_loop().time())
        if wait > 0:
            await asyncio.sleep(wait)


def _limiter(per_minute: float, headroom: float = RATE_HEADROOM) -> RateLimiter:
    return RateLimiter(per_minute / 60 * headroom)


def _headroom(kind: str) -> float:
    return TOKEN_HEADROOM if kind == "tokens" else RATE_HEADROOM


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


KINDS = ("requests", "tokens")


class RateLimits:
    """The RPM and TPM limits in force, where each came from, and the schedules that keep to them.

    A limit comes from a flag (`--rpm/--tpm`), else from the `x-ratelimit-limit-*` headers of the
    first answer that has them (a lower header limit also replaces a flag's), else there is none
    and only adaptive concurrency reacts to 429s.

    Every answer's `x-ratelimit-remaining-*` corrects the client's view. The server's bucket held
    `limit - remaining` when it took the request, and drains at `limit / 60` a second. Less the
    request's own count (a `RateLimiter` charges a request before it leaves, the server after),
    that is what the schedule must still wait out: it never frees up before
    `sent_at + (held - own) / rate`. In steady state this changes nothing; it catches a burst sent
    before the limit was known, another client on the same key, and estimates that ran low. A
    `remaining` of 0 with a reset pauses every sender until the reset.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.per_minute: dict[str, float | None] = {"requests": rpm or None, "tokens": tpm or None}
        self.source = {kind: "flag" if self.per_minute[kind] else "none" for kind in KINDS}
        self._limiters = {kind: _limiter(n, _headroom(kind)) if n else None for kind, n in self.per_minute.items()}
        self._pause_until = 0.0
        self._token_turn = asyncio.Lock()  # FIFO: the token schedule is taken one request at a time
        self.generation = 0  # counts limits learned and pauses begun: a request that waited since obeys them

    @property
    def rpm(self) -> float | None:
        return self.per_minute["requests"]

    @property
    def tpm(self) -> float | None:
        return self.per_minute["tokens"]

    @property
    def paces_tokens(self) -> bool:
        return self._limiters["tokens"] is not None

    async def acquire(self, tokens: Callable[[], int]) -> None:
        """Wait until a request may be sent; `tokens()` is what it counts against a TPM limit.

        Requests take the token schedule in turn, and book their place at most `BOOK_AHEAD_S`
        before it comes, with the estimate of then: booked on arrival, a hundred waiting requests
        would all be paced by the estimate of the moment they arrived, long before calibration
        caught up. Booking a little ahead (not at the moment itself) keeps a late timer from
        shifting everything after it."""
        loop = asyncio.get_running_loop()
        # A loop, not an Event: a 429 arriving during the sleep may push the deadline further.
        while (wait := self._pause_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        if (requests := self._limiters["requests"]) is not None:
            await requests.acquire()
        if self._limiters["tokens"] is not None:
            async with self._token_turn:
                # A loop, not an Event: headers may move the schedule during the sleep.
                while (limiter := self._limiters["tokens"]) is not None and (  # noqa: ASYNC110
                    early := limiter.free_at - BOOK_AHEAD_S - loop.time()
                ) > 0:
                    await asyncio.sleep(early)
                wait = limiter.reserve(float(tokens()), loop.time()) if limiter is not None else 0.0
            if wait > 0:
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (a 429's retry-after, or a header saying 0 left)."""
        loop = asyncio.get_running_loop()
        if loop.time() + seconds > self._pause_until:
            self._pause_until = loop.time() + seconds
            self.generation += 1

    def observe(
        self, headers: Mapping[str, str], sent_at: float | None = None, counted: Mapping[str, int] | None = None
    ) -> None:
        """Learn from one answer's `x-ratelimit-*` headers (any status). `sent_at`: when its request
        left, by the loop's clock; `counted`: what the server counted for it per kind (None: a 429,
        which counts nothing)."""
        for kind in KINDS:
            limit = _count(headers.get(f"x-ratelimit-limit-{kind}"))
            current = self.per_minute[kind]
            if limit and (current is None or limit < current):
                self.per_minute[kind], self.source[kind] = float(limit), "header"
                self._limiters[kind] = _limiter(limit, _headroom(kind))
                self.generation += 1
            remaining = _count(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining == 0:
                seconds = parse_duration(headers.get(f"x-ratelimit-reset-{kind}") or "")
                if seconds:
                    self.pause(min(seconds, 60.0))
            limiter = self._limiters[kind]
            if limit and remaining is not None and limiter is not None and sent_at is not None:
                held = max(0, limit - remaining) - (counted or {}).get(kind, 0)
                if held > 0:
                    limiter.defer(sent_at + held / (limit / 60))

    def report(self, seconds: float, requests: int, tokens: int) -> dict[str, Any]:
        """Per kind: the limit in force, its source, and the rate achieved (`requests` the server
        took, `tokens` counted the server's way: prompt tokens + max_tokens)."""
        out: dict[str, Any] = {}
        for kind, used in (("requests", requests), ("tokens", tokens)):
            achieved = used / seconds * 60 if seconds > 0 else 0.0
            limit = self.per_minute[kind]
            out[kind] = {
                "limit_per_min": limit,
                "source": self.source[kind],
                "achieved_per_min": round(achieved, 1),
                "share_of_limit": round(achieved / limit, 4) if limit else None,
            }
        return out


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
