"""Client-side rate limits: RPM and TPM as schedules that keep to the server's limits.

`RateLimits` holds `RateLimiter` schedules, from flags or from `x-ratelimit-*` headers; the TPM
limiter is acquired with the pacing estimate of `_pacing.py` (not the byte bound money reserves).
They pace at 98% of the limit's steady rate, which every way of counting we know of (a 1 s bucket,
a whole-minute bucket, a 60 s sliding window, calendar minutes) takes without a refusal, and slow
down only on evidence, read the same way whatever the server's model:

- another client on the key: every one of those ways holds no more than the last 60 s of arrivals,
  so `limit - remaining` less what this client sent in the minute before is what others sent at
  least (`Others`); the schedule leaves them that share;
- a `remaining` smaller than what has left since the answered request: the schedule waits for
  the difference to drain;
- a 429: every sender pauses for its `retry-after`, and the rate drops by a tenth, then probes back
  up, slowly once it nears where it was refused (`Throttle`); a run of 429s long enough to show
  what the server takes sets the rate just under that (`Taken`).

`Others`, `Throttle` and `Taken` (with `Sent`, what the schedules booked) are in `_evidence.py`.
Time comes from the running loop (`loop.time()`), which tests can patch.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from labelmill.engine.teacher._evidence import KINDS, MIN_SCALE, Others, Sent, Taken, Throttle

# Send a little under the limit's steady rate, which every way a server counts it takes.
RATE_HEADROOM = 0.98
# Tokens need less: the pacing estimate is already a high quantile of what the server counts, and
# the server's own `remaining` corrects the schedule as it goes.
TOKEN_HEADROOM = 0.99
BOOK_AHEAD_S = 0.25  # how far ahead of its place on a schedule a request books it
MIN_SHARE = 0.05  # what is left to this client when others seem to use the whole limit
FIRST_WAVE_WAIT_S = 5.0  # the longest the first wave waits for the first answer
MARGIN = 0.01  # of the limit: room kept in the server's `remaining` for another client's next sends
# What a run of 429s shows the server takes (`_evidence.Taken`) is read once this many seconds of
# the requests sent since its first 429 have been answered: with no limit known (it sets one), or
# with one known (it only lowers the rate).
INFER_AFTER_S = 1.0
TAKEN_AFTER_S = 0.5
# Until then, the first 429 sets a provisional limit: this share of what was sent in the second
# before the refused request (a bucket that started full takes that faster than its rate), once
# that many were.
PROVISIONAL_SHARE = 0.9
PROVISIONAL_AFTER = 10
UNKNOWN_PAUSE_S = 0.1  # with no limit known, the least a 429 pauses every sender: no herd of retries


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

    def set_rate(self, per_second: float) -> None:
        """A new rate for what is booked from now on (what is booked keeps its place)."""
        self.per_second, self._interval = per_second, 1.0 / per_second

    def defer(self, until: float) -> None:
        """Never free up before `until`: when the server will have room again."""
        self._theoretical_arrival = max(self._theoretical_arrival, until)

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount, asyncio.get_running_loop().time())
        if wait > 0:
            await asyncio.sleep(wait)


def _headroom(kind: str) -> float:
    return TOKEN_HEADROOM if kind == "tokens" else RATE_HEADROOM


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


class RateLimits:
    """The RPM and TPM limits in force, where each came from, and the schedules that keep to them.

    A limit comes from a flag (`--rpm/--tpm`), else from the `x-ratelimit-limit-*` headers of the
    first answer that has them (a lower header limit also replaces a flag's), else there is none
    until 429s show one (source "inferred"): at the first 429, a provisional one from the answers
    of the second before it, else the rate the server took during a run of 429s (`Taken`). Until
    some answer has come back, a run with no limit known sends one request alone (the first small
    wave): its headers set the pace of the burst that follows, so a small 1 s window costs no 429s.

    Headers are read as what they say: `remaining` is what the server will still take now. The
    answered request was counted when it arrived; what this client booked after it is not yet in
    that count. When it is more than `remaining`, the server has no room for the difference, and
    the schedule waits until it drains at the limit's steady rate. No other header slows the
    schedule: a server that counts a minute window reports a `remaining` far below the limit while
    the client is exactly at it, and that is no reason to wait.

    Another client on the key shows as `limit - remaining` above what this client sent in the
    minute before the answered request (every way of counting we know holds at most the last 60 s of
    arrivals, so the excess is others' at least); the schedule runs at the limit less that.

    A 429 pauses every sender for its `retry-after` and scales the rates down (`Throttle`), which
    then probe back up, so the rate never sits below the limit for long without a refusal to show.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.per_minute: dict[str, float | None] = {"requests": rpm or None, "tokens": tpm or None}
        self.source = {kind: "flag" if self.per_minute[kind] else "none" for kind in KINDS}
        self.throttle = Throttle()
        self._others = {kind: Others() for kind in KINDS}
        self._limiters = {kind: RateLimiter(self._per_second(kind)) if self.per_minute[kind] else None
                          for kind in KINDS}  # fmt: skip
        self._sent = {kind: Sent() for kind in KINDS}
        self._pause_until = 0.0
        self._turns = {kind: asyncio.Lock() for kind in KINDS}  # FIFO: each schedule is taken one request at a time
        self.generation = 0  # counts limits learned and pauses begun: a request that waited since obeys them
        self._first_answer = asyncio.Event()
        self._first_sent = False
        self._taken = Taken()
        self._sends: collections.deque[float] = collections.deque()  # while nothing paces: the last second's sends
        self._provisional = False  # the request limit is the first 429's guess, not yet what 429s showed

    @property
    def rpm(self) -> float | None:
        return self.per_minute["requests"]

    @property
    def tpm(self) -> float | None:
        return self.per_minute["tokens"]

    @property
    def paces(self) -> bool:
        """Whether a schedule paces the sends (a limit from a flag, headers or 429s)."""
        return any(limiter is not None for limiter in self._limiters.values())

    @property
    def provisional(self) -> bool:
        """Whether the request limit is the first 429's guess (what 429s show has not replaced it)."""
        return self._provisional

    @property
    def paces_tokens(self) -> bool:
        return self._limiters["tokens"] is not None

    async def acquire(self, tokens: Callable[[], int]) -> None:
        """Wait until a request may be sent; `tokens()` is what it counts against a TPM limit."""
        loop = asyncio.get_running_loop()
        await self._first_wave()
        # A loop, not an Event: a 429 arriving during the sleep may push the deadline further.
        while (wait := self._pause_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        await self._take_turn("requests", lambda: 1.0)
        await self._take_turn("tokens", lambda: float(tokens()))

    async def _take_turn(self, kind: str, amount: Callable[[], float]) -> None:
        """Requests take each schedule in turn, and book their place at most `BOOK_AHEAD_S` before
        it comes, at the rate and with the estimate of then. Booked on arrival, a hundred waiting
        requests would keep the places of the moment they arrived: a second of sends at a rate a
        429 had just refused, or paced by a token estimate long before calibration caught up.
        Booking a little ahead (not at the moment itself) keeps a late timer from shifting
        everything after it."""
        if self._limiters[kind] is None:
            return
        loop = asyncio.get_running_loop()
        async with self._turns[kind]:
            # A loop, not an Event: headers may move the schedule during the sleep.
            while (limiter := self._limiters[kind]) is not None and (  # noqa: ASYNC110
                early := limiter.free_at - BOOK_AHEAD_S - loop.time()
            ) > 0:
                await asyncio.sleep(early)
            if limiter is None:
                return
            size = amount()
            wait = limiter.reserve(size, loop.time())
            self._sent[kind].add(loop.time() + wait, size)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _first_wave(self) -> None:
        """With no limit known, one request goes first and the rest wait until it has ended (at
        most `FIRST_WAVE_WAIT_S`)."""
        if self._first_answer.is_set() or self.paces:
            return
        if not self._first_sent:
            self._first_sent = True
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_answer.wait(), FIRST_WAVE_WAIT_S)

    def settled(self) -> None:
        """A request ended, however: the first wave waits no longer (an answer, when it came,
        has already told the limits)."""
        self._first_answer.set()

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (a 429's retry-after; with no limit known, at least
        `UNKNOWN_PAUSE_S`: a retry-after of a few ms would have every waiting sender go again at once)."""
        loop = asyncio.get_running_loop()
        if not self.paces or self._provisional:
            seconds = max(seconds, UNKNOWN_PAUSE_S)
        if seconds <= 0:
            return
        if loop.time() + seconds > self._pause_until:
            self._pause_until = loop.time() + seconds
            self.generation += 1

    def sending(self, at: float) -> None:
        """A request leaves now (`at`, the loop's clock). While nothing paces, the last second of
        these is what the first 429 reads the server's rate from."""
        if not self.paces:
            self._sends.append(at)
            while self._sends[0] < at - 1.0:
                self._sends.popleft()

    def throttled(self, sent_at: float) -> None:
        """A 429 to the request sent at `sent_at`: run the schedules slower (`Throttle`). Once a
        run of 429s has gone on long enough to show what the server takes (`Taken`), run just
        under that instead: with no limit known, it becomes the request limit (source "inferred";
        an inferred one is replaced as `_replaces` says); else the share of the limits it leaves
        this client. With no limit known and no run long enough yet, a provisional limit:
        `PROVISIONAL_SHARE` of what was sent in the second before the refused request. Those
        sends, not the answers of that second: a client still sending its first waves has had
        only some of them answered, and a limit from those would start far below the server's."""
        now = asyncio.get_running_loop().time()
        infers = self.source["tokens"] == "none" and self.source["requests"] in ("none", "inferred")
        # Without a header's limit, a short run of 429s overestimates: the pause that follows a 429
        # lets a bucket refill, and what it then takes at once looks like rate.
        taken = self._taken.refused(now, INFER_AFTER_S if infers else TAKEN_AFTER_S)
        if infers and not self.paces:  # no limit known yet
            if taken is not None:
                self._infer(now, taken["requests"], provisional=False)
            elif (before := self._sent_before(sent_at)) >= PROVISIONAL_AFTER:
                self._infer(now, before * 60.0 * PROVISIONAL_SHARE, provisional=True)
        elif taken is not None and infers and self._replaces(taken["requests"]):
            self._infer(now, taken["requests"], provisional=False)
        elif taken is not None and not self._provisional and (scale := self._share_taken(taken)) < self.throttle.scale:
            self.throttle.took(now, scale)
            self._retune()
        elif self.throttle.refused(now):
            self._retune()

    def _sent_before(self, moment: float) -> int:
        """How many requests left in the second before `moment` (while nothing paced)."""
        return bisect.bisect_left(self._sends, moment) - bisect.bisect_left(self._sends, moment - 1.0)

    def _replaces(self, taken: float) -> bool:
        """Whether what a run of 429s showed the server takes replaces an inferred request limit:
        when it took more, or when a provisional limit was far too high (a bucket that held a
        minute). Else a provisional limit stays: its 429s came after seconds of sending less than
        the server takes, whose rate is no measure of it, and a 429 slows it as any limit."""
        limit = self.rpm or 0.0
        return taken > limit or (self._provisional and taken < limit * MIN_SCALE)

    def _infer(self, now: float, per_minute: float, provisional: bool) -> None:
        """A request limit learned from 429s: what the server took since the first of them, or
        (`provisional`, until that shows) a share of the answers of the second before it."""
        self.per_minute["requests"], self.source["requests"] = per_minute, "inferred"
        self._provisional = provisional
        # No header bounds the limit, so answers probe past it, slowly, for as long as no 429 comes;
        # a provisional one was refused at its whole estimate, and wins back up to just under that.
        self.throttle = Throttle(now, ceiling=math.inf, refused_scale=1 / PROVISIONAL_SHARE if provisional else 1.0)
        if (limiter := self._limiters["requests"]) is not None:
            limiter.set_rate(self._per_second("requests"))  # what is booked keeps its place
        else:
            self._limiters["requests"] = RateLimiter(self._per_second("requests"))
        self.generation += 1

    def _share_taken(self, taken: Mapping[str, float]) -> float:
        """The throttle's scale at which the schedules send what the server took (others' use added
        back: the schedules leave it to them anyway)."""
        shares = [(taken[kind] + self._others[kind].per_minute) / limit
                  for kind in KINDS if self._limiters[kind] and (limit := self.per_minute[kind])]  # fmt: skip
        return min(shares, default=math.inf)

    def _per_second(self, kind: str) -> float:
        """The rate a schedule runs at: the limit, less what others use, scaled after 429s."""
        limit = self.per_minute[kind] or 0.0
        mine = max(limit * MIN_SHARE, limit * self.throttle.scale - self._others[kind].per_minute)
        return mine / 60 * _headroom(kind)

    def _retune(self) -> None:
        for kind, limiter in self._limiters.items():
            if limiter is not None:
                limiter.set_rate(self._per_second(kind))

    def observe(
        self, headers: Mapping[str, str], sent_at: float | None = None, counted: Mapping[str, int] | None = None
    ) -> None:
        """Learn from one answer's `x-ratelimit-*` headers (any status). `sent_at`: when its request
        left, by the loop's clock; `counted`: what the server counted for it per kind (None: a 429,
        which counts nothing)."""
        self._first_answer.set()
        now = asyncio.get_running_loop().time()
        if counted is not None and sent_at is not None:
            self._taken.answered(sent_at, counted)
        moved = counted is not None and self.throttle.answered(now)  # an answer, not a refusal
        for kind in KINDS:
            limit = _count(headers.get(f"x-ratelimit-limit-{kind}"))
            current = self.per_minute[kind]
            if limit and (current is None or limit < current):
                self.per_minute[kind], self.source[kind] = float(limit), "header"
                self._limiters[kind] = RateLimiter(self._per_second(kind))
                self.generation += 1
            remaining = _count(headers.get(f"x-ratelimit-remaining-{kind}"))
            if limit and remaining is not None and sent_at is not None and self._limiters[kind] is not None:
                moved = self._read_remaining(kind, limit, remaining, sent_at, now) or moved
        if moved:
            self._retune()

    def _read_remaining(self, kind: str, limit: int, remaining: int, sent_at: float, now: float) -> bool:
        """What one answer's `remaining` says; True when others' share moved."""
        sent, limiter = self._sent[kind], self._limiters[kind]
        # Booked after it, one more like it, and a margin for others on the key who send between
        # this answer and our next request: more than the server has room for?
        short = sent.since(sent_at) + sent.last + MARGIN * limit - remaining
        if short > 0 and limiter is not None:
            limiter.defer(now + short / (limit / 60))
        before = self._others[kind].per_minute
        self._others[kind].add(now, max(0.0, limit - remaining - (sent.since(sent_at - 60) - sent.since(sent_at))))
        return self._others[kind].per_minute != before

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
