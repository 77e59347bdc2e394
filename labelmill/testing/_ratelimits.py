"""The mock teacher's rate limits and the token count it charges, as an OpenAI-style server does.

A request counts 1 against a requests-per-minute limit and its prompt tokens plus `max_tokens`
against a tokens-per-minute limit. Each limit is enforced twice:

- a bucket that holds `burst_s` seconds of the limit (default 1 s: "600,000 TPM over a 1-second
  window") and refills continuously, so a burst of more than a second's worth gets 429s;
- a 60 s sliding window that holds the whole per-minute limit.

Prompt tokens are counted by `count_tokens`, a word-piece tokenizer of the mock's own: no client
shares it, so a client can learn the server's count only from `usage`, never compute it.

Unless withheld, every answer (429s included) carries OpenAI's headers:
`x-ratelimit-limit-*` (per minute), `x-ratelimit-remaining-*` (the limit less what the bucket
holds) and `x-ratelimit-reset-*` (how long the bucket takes to empty: `6ms`, `1.5s`, `1m0s`).
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


class _Limit:
    """One per-minute limit: a continuously refilled bucket plus a 60 s sliding window."""

    def __init__(self, kind: str, per_minute: int, burst_s: float) -> None:
        self.kind = kind
        self.per_minute = per_minute
        self.rate = per_minute / 60  # per second
        self.capacity = max(1.0, self.rate * burst_s)
        self._held, self._held_at = 0.0, 0.0  # what the bucket held at `_held_at`
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._window_total = 0

    def held(self, now: float) -> float:
        return max(0.0, self._held - (now - self._held_at) * self.rate)

    def _windowed(self, now: float) -> int:
        while self._window and self._window[0][0] <= now - 60:
            self._window_total -= self._window.popleft()[1]
        return self._window_total

    def wait_s(self, now: float, amount: int) -> float:
        """0 when `amount` fits now, else about how long until it would."""
        # A request larger than the bucket goes once the bucket is empty (it would never fit).
        over = self.held(now) + amount - max(self.capacity, amount)
        bucket_wait = over / self.rate if over > 0 else 0.0
        window_wait = 0.0
        if self._windowed(now) + amount > self.per_minute and self._window:
            window_wait = self._window[0][0] + 60 - now
        return max(bucket_wait, window_wait)

    def add(self, now: float, amount: int) -> None:
        self._held, self._held_at = self.held(now) + amount, now
        self._window.append((now, amount))
        self._window_total += amount

    def headers(self, now: float) -> dict[str, str]:
        held = self.held(now)
        return {
            f"x-ratelimit-limit-{self.kind}": str(self.per_minute),
            f"x-ratelimit-remaining-{self.kind}": str(max(0, math.floor(self.per_minute - held))),
            f"x-ratelimit-reset-{self.kind}": format_reset(held / self.rate),
        }


class ServerLimits:
    """The RPM and TPM limits of one mock server."""

    def __init__(self, rpm: int | None, tpm: int | None, burst_s: float = 1.0, send_headers: bool = True) -> None:
        self.limits = [_Limit(kind, n, burst_s) for kind, n in (("requests", rpm), ("tokens", tpm)) if n]
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
