"""The mock teacher's rate limits and the token count it charges, as an OpenAI-style server does.

A request counts 1 against a requests-per-minute limit and its prompt tokens plus `max_tokens`
against a tokens-per-minute limit. Real servers count these in different ways, and a client tuned to
one can sit far below the limit on another, so the mock counts in any of them (`model`):

- `bucket` (default): a bucket holding 1 s of the limit (`burst_s`), refilled continuously, plus a
  60 s sliding window of the whole limit; `remaining` is the limit less what the bucket holds, so it
  never falls below 59 s of the limit;
- `minute-bucket`: one bucket that holds the whole per-minute limit and refills continuously (OpenAI's
  documented replenishment); `remaining` is what the bucket has room for;
- `sliding`: a 60 s sliding window plus a 1 s burst bucket; `remaining` is the limit less what the
  last 60 s used and `reset` is (limit - remaining) / limit x 60 s;
- `fixed`: a count per calendar minute; `remaining` is what is left of this minute, `reset` the time
  to the next one.

Every model also refuses a burst over `burst_s` of the limit except `minute-bucket`, whose burst is
the bucket. `other_share` has another client on the same key use that share of each limit,
continuously, so `remaining` falls faster than this client's own sends.

Prompt tokens are counted by `count_tokens`, a word-piece tokenizer of the mock's own: no client
shares it, so a client can learn the server's count only from `usage`, never compute it.

Unless withheld (`send_headers=False`, a server with no headers), every answer (429s included)
carries OpenAI's headers: `x-ratelimit-limit-*` (per minute), `x-ratelimit-remaining-*` and
`x-ratelimit-reset-*` (`6ms`, `1.5s`, `1m0s`).
"""

from __future__ import annotations

import collections
import math
import re

# Letters in pieces of at most 8 (a leading space joins the piece), digits in threes, any other
# character alone, a run of whitespace as one: about a token per 4 bytes of English, and never
# the same count as a byte bound.
_PIECE = re.compile(r" ?[A-Za-z]{1,8}| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]|\s+")
MESSAGE_TOKENS = 4  # framing the server adds per message


def count_tokens(text: str) -> int:
    return len(_PIECE.findall(text))


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes one: `120ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s"


MODELS = ("bucket", "minute-bucket", "sliding", "fixed")


class _Bucket:
    """Holds `capacity` units, drains continuously at `rate` a second."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self._held, self._held_at = 0.0, 0.0

    def used(self, now: float) -> float:
        return max(0.0, self._held - (now - self._held_at) * self.rate)

    def reset_s(self, now: float) -> float:
        return self.used(now) / self.rate

    def wait_s(self, now: float, amount: float) -> float:
        # A request larger than the bucket goes once the bucket is empty (it would never fit).
        over = self.used(now) + amount - max(self.capacity, amount)
        return over / self.rate if over > 0 else 0.0

    def add(self, now: float, amount: float) -> None:
        self._held, self._held_at = self.used(now) + amount, now


class _Sliding:
    """The units of the last 60 s, against the per-minute limit."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window: collections.deque[tuple[float, float]] = collections.deque()
        self._total = 0.0

    def used(self, now: float) -> float:
        while self._window and self._window[0][0] <= now - 60:
            self._total -= self._window.popleft()[1]
        return max(0.0, self._total)

    def reset_s(self, now: float) -> float:
        return self.used(now) / self.per_minute * 60

    def wait_s(self, now: float, amount: float) -> float:
        if self.used(now) + amount <= self.per_minute or not self._window:
            return 0.0
        return self._window[0][0] + 60 - now

    def add(self, now: float, amount: float) -> None:
        self._window.append((now, amount))
        self._total += amount


class _Fixed:
    """The units of this calendar minute (minutes counted from the clock's 0)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._minute, self._count = 0, 0.0

    def used(self, now: float) -> float:
        if int(now // 60) != self._minute:
            self._minute, self._count = int(now // 60), 0.0
        return self._count

    def reset_s(self, now: float) -> float:
        return 60 - now % 60 if self.used(now) > 0 else 0.0

    def wait_s(self, now: float, amount: float) -> float:
        return 0.0 if self.used(now) + amount <= self.per_minute else 60 - now % 60

    def add(self, now: float, amount: float) -> None:
        self.used(now)
        self._count += amount


class _Limit:
    """One per-minute limit, counted the way `model` counts it."""

    def __init__(self, kind: str, per_minute: int, burst_s: float, model: str = "bucket", other_share: float = 0.0):
        if model not in MODELS:
            raise ValueError(f"unknown limit model {model!r}: use one of {', '.join(MODELS)}")
        self.kind, self.per_minute, self.model = kind, per_minute, model
        self.rate = per_minute / 60  # per second
        burst = _Bucket(self.rate, max(1.0, self.rate * burst_s))
        counters: dict[str, list[_Bucket | _Sliding | _Fixed]] = {
            "bucket": [burst, _Sliding(per_minute)],
            "minute-bucket": [_Bucket(self.rate, float(per_minute))],
            "sliding": [_Sliding(per_minute), burst],
            "fixed": [_Fixed(per_minute), burst],
        }
        self.counters = counters[model]  # the first one's count is what the headers report
        self.other_share = other_share
        self._other_at: float | None = None

    def _other_client(self, now: float) -> None:
        """Count what the other client on the key used since last asked (in lumps of >= 1 unit)."""
        if self.other_share <= 0:
            return
        if self._other_at is None:
            self._other_at = now
        used = (now - self._other_at) * self.rate * self.other_share
        if used >= 1:
            for counter in self.counters:
                counter.add(now, used)
            self._other_at = now

    def wait_s(self, now: float, amount: int) -> float:
        """0 when `amount` fits now, else about how long until it would."""
        self._other_client(now)
        return max(counter.wait_s(now, amount) for counter in self.counters)

    def add(self, now: float, amount: int) -> None:
        for counter in self.counters:
            counter.add(now, amount)

    def headers(self, now: float) -> dict[str, str]:
        self._other_client(now)
        reported = self.counters[0]
        return {
            f"x-ratelimit-limit-{self.kind}": str(self.per_minute),
            f"x-ratelimit-remaining-{self.kind}": str(max(0, math.floor(self.per_minute - reported.used(now)))),
            f"x-ratelimit-reset-{self.kind}": format_reset(reported.reset_s(now)),
        }


class ServerLimits:
    """The RPM and TPM limits of one mock server."""

    def __init__(self, rpm: int | None, tpm: int | None, burst_s: float = 1.0, send_headers: bool = True,
                 model: str = "bucket", other_share: float = 0.0) -> None:  # fmt: skip
        self.limits = [_Limit(kind, n, burst_s, model, other_share)
                       for kind, n in (("requests", rpm), ("tokens", tpm)) if n]  # fmt: skip
        self.send_headers = send_headers

    def admit(self, now: float, tokens: int) -> tuple[str, float] | None:
        """Count a request of `tokens` and return None, or return (the limit it hit, the wait)."""
        for limit in self.limits:
            wait = limit.wait_s(now, 1 if limit.kind == "requests" else tokens)
            if wait > 0:
                return limit.kind, wait
        for limit in self.limits:
            limit.add(now, 1 if limit.kind == "requests" else tokens)
        return None

    def headers(self, now: float) -> dict[str, str]:
        if not self.send_headers:
            return {}
        return {name: value for limit in self.limits for name, value in limit.headers(now).items()}
