"""What the server's answers say about room on the key, for `_limits.RateLimits` to pace by.

- `Sent`: what a schedule let go, as running totals, to compare with an answer's `remaining`;
- `Throttle`: the share of the limits the schedules run at after 429s, and its probing back up;
- `Others`: the least other clients on the key used of a limit in the last minute;
- `Taken`: what the server took of what this client sent during a run of 429s.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Mapping

KINDS = ("requests", "tokens")
PROBE_PER_S = 0.01  # after a 429, the share of the limit the rate wins back each second...
NEAR_CEILING = 0.97  # ...up to this share of the rate a 429 refused; above it, a tenth as fast at first
MIN_SCALE = 0.5  # 429s never slow the schedules below half the limit (concurrency still halves)
FORGET_S = 120.0  # how long bookings are kept to compare with an answer's `remaining`
TAKEN_OVER_S = 10.0  # what a run of 429s shows is measured on at most the last this many seconds of sends
EPISODE_GAP_S = 10.0  # a 429 after this long without one begins a new run of them


class Sent:
    """What one schedule let go, in booking order, as running totals: how much left after a moment."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._totals: list[float] = []
        self._base = 0.0  # the running total before the first booking kept
        self.total = 0.0
        self.last = 0.0  # the amount of the latest booking: what the next one will likely be

    def add(self, at: float, amount: float) -> None:
        self.total, self.last = self.total + amount, amount
        self._times.append(at)
        self._totals.append(self.total)
        if len(self._times) > 4096 and self._times[2048] < at - FORGET_S:  # forget in halves, not one by one
            self._base = self._totals[2047]
            del self._times[:2048], self._totals[:2048]

    def since(self, moment: float) -> float:
        """The amount booked to leave after `moment`."""
        i = bisect.bisect_right(self._times, moment)
        return self.total - (self._totals[i - 1] if i > 0 else self._base)


class Throttle:
    """The share of each limit the schedules run at: 1 until a 429. A 429 lowers it by a tenth (at
    most once a second, never below `MIN_SCALE`) and remembers the share it was refused at; answers
    win it back, quickly up to just under that share, then slowly and faster the longer no 429
    comes. So a limit that did not move costs one 429 a climb, and one that grew is found again."""

    def __init__(self, now: float = -math.inf, ceiling: float = 1.0, refused_scale: float = 1.0) -> None:
        self.scale, self.refused_scale, self.ceiling = 1.0, refused_scale, ceiling
        self._refused_at = self._moved_at = now

    def refused(self, now: float) -> bool:
        """A 429; True when the scale moved."""
        if now - self._refused_at < 1.0:
            return False
        self.refused_scale, self.scale = self.scale, max(MIN_SCALE, self.scale * 0.9)
        self._refused_at = self._moved_at = now
        return True

    def took(self, now: float, scale: float) -> None:
        """A 429 while the server took `scale` of the limit: run just under it, probing slowly past."""
        self.scale = max(MIN_SCALE, min(self.scale, scale))
        self.refused_scale = self.scale / NEAR_CEILING
        self._refused_at = self._moved_at = now

    def answered(self, now: float) -> bool:
        """An answer; True when the scale moved."""
        if self.scale >= self.ceiling:
            return False
        elapsed, self._moved_at = now - self._moved_at, now
        near = self.refused_scale * NEAR_CEILING
        if self.scale < near:
            self.scale = min(near, self.scale + PROBE_PER_S * elapsed)
        else:  # past where it was refused once it has gone 10 s without a 429, and faster after
            self.scale += PROBE_PER_S / 10 * (1 + (now - self._refused_at) / 10) * elapsed
        self.scale = min(self.ceiling, self.scale)
        return True


class Others:
    """What other clients on the key used of one limit in the last minute, at least: the largest
    lower bound seen in the last 60 s (a calendar minute's count starts again at 0 each minute)."""

    def __init__(self) -> None:
        self._bounds: collections.deque[tuple[float, float]] = collections.deque()  # decreasing

    def add(self, now: float, bound: float) -> None:
        while self._bounds and self._bounds[-1][1] <= bound:
            self._bounds.pop()
        self._bounds.append((now, bound))
        while self._bounds[0][0] < now - 60:
            self._bounds.popleft()

    @property
    def per_minute(self) -> float:
        return self._bounds[0][1] if self._bounds else 0.0


class Taken:
    """What the server took of what this client sent since a run of 429s began (a 429 after
    `EPISODE_GAP_S` without one begins a new run). While it refuses, the client sends more than it
    takes, so what it takes comes at the rate it has room for: the limit less what others on the key
    use or, where no header said, the limit itself. (Answers to requests sent before the first 429
    do not count: they may have come faster, from a bucket that started full.)"""

    def __init__(self) -> None:
        self._answers: collections.deque[tuple[float, float, float]] = collections.deque()  # sent, requests, tokens
        self._totals = [0.0, 0.0]  # of what `_answers` holds, per kind
        self._began: float | None = None
        self._refused_at = -math.inf

    def answered(self, sent_at: float, counted: Mapping[str, int]) -> None:
        # By when it was sent: answers to requests sent before the first 429 may still come after it.
        if self._began is not None and sent_at >= self._began:
            answer = (sent_at, float(counted["requests"]), float(counted["tokens"]))
            self._answers.append(answer)
            self._totals = [self._totals[0] + answer[1], self._totals[1] + answer[2]]
            while self._answers[0][0] < sent_at - TAKEN_OVER_S:
                _, requests, tokens = self._answers.popleft()
                self._totals = [self._totals[0] - requests, self._totals[1] - tokens]

    def refused(self, now: float, after_s: float) -> dict[str, float] | None:
        """Per kind, what the server took per minute of what was sent since this run of 429s
        began, once `after_s` of sends have been answered (else None)."""
        if now - self._refused_at > EPISODE_GAP_S:
            self._began, self._answers, self._totals = now, collections.deque(), [0.0, 0.0]
        self._refused_at = now
        if len(self._answers) < 10 or self._began is None:
            return None
        start = max(self._began, self._answers[-1][0] - TAKEN_OVER_S)
        seconds = self._answers[-1][0] - start
        if seconds < after_s:
            return None
        return {kind: total / seconds * 60 for kind, total in zip(KINDS, self._totals, strict=True)}
