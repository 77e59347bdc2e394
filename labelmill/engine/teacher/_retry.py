"""Retry policy, in one place: what is retried, how long to wait, when to give up.

Only what can succeed on retry is retried (429, 408, 409, 5xx, timeouts, dropped connections);
400/401/403/404 are never retried (they are not RetryableError). Two budgets, because the two
kinds of failure mean different things:

- A 429 is the server saying "later", not "broken": it is a wait. It is retried after the
  server's retry-after (any header name servers use, capped), else after exponential backoff,
  until `rate_limit_patience_s` seconds were spent waiting on 429s for this request.
- Anything else (5xx, timeouts, connections) uses up attempts: at most `attempts` in all,
  with full-jitter exponential backoff between them.

The pieces are small objects a caller can swap: the policy (a frozen dataclass), the wait it
computes, and the sleep (tests inject one that records instead of sleeping).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from labelmill._exceptions import RetryableError

T = TypeVar("T")
_RNG = random.Random()  # jitter only


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # attempts for errors other than 429, the first included; 1: never retry
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    retry_after_cap_s: float = 60.0
    rate_limit_patience_s: float = 600.0  # waiting on 429s, per request, before giving up

    def wait_s(self, error: RetryableError, failures: int, rng: random.Random = _RNG) -> float:
        """The server's retry-after (capped) if it sent one, else full-jitter exponential backoff."""
        if error.retry_after is not None:
            return min(error.retry_after, self.retry_after_cap_s)
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failures - 1))
        return rng.uniform(0, ceiling)


@dataclass(slots=True)
class _Tally:
    """One request's failures so far."""

    failures: int = 0  # not 429: they use up attempts
    throttled: int = 0  # 429s
    waited_on_429_s: float = 0.0

    def next_wait(self, policy: RetryPolicy, error: RetryableError) -> float | None:
        """Seconds to wait before the next attempt, or None when this request gives up."""
        if policy.attempts <= 1:
            return None
        if error.status == 429:
            self.throttled += 1
            wait = policy.wait_s(error, self.throttled)
            if self.waited_on_429_s + wait > policy.rate_limit_patience_s:
                return None
            self.waited_on_429_s += wait
            return wait
        self.failures += 1
        return None if self.failures >= policy.attempts else policy.wait_s(error, self.failures)


async def call_with_retries(
    func: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Run `func` until it succeeds, fails in a way that is not retried, or the policy gives up
    (the last error is raised). `on_retry(error, wait_s)` sees every retry before its sleep."""
    tally = _Tally()
    while True:
        try:
            return await func()
        except RetryableError as error:
            wait = tally.next_wait(policy, error)
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(error, wait)
            await (sleep or asyncio.sleep)(wait)
