"""Retry policy, in one place: tenacity with small composable pieces.

Only what can succeed on retry is retried (429, 408, 409, 5xx, timeouts, dropped connections);
the server's `retry-after-ms` / `retry-after` is honoured up to a cap; otherwise exponential
backoff with full jitter. 400/401/403/404 are never retried (they are not RetryableError).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

from labelmill.engine._teacher import RetryableError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # total attempts, the first included
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    retry_after_cap_s: float = 60.0


class wait_retry_after_or_backoff(wait_base):
    """The server's retry-after (capped) if it sent one, else full-jitter exponential backoff."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, self.policy.retry_after_cap_s)
        ceiling = min(self.policy.backoff_cap_s, self.policy.backoff_base_s * 2 ** (retry_state.attempt_number - 1))
        return self.rng.uniform(0, ceiling)


def retrying(
    policy: RetryPolicy,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncRetrying:
    """A tenacity controller; `on_retry(error, wait_s)` sees every retry before its sleep."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(error, RetryableError):
            on_retry(error, state.upcoming_sleep)

    kwargs = {} if sleep is None else {"sleep": sleep}
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_retry_after_or_backoff(policy),
        retry=retry_if_exception_type(RetryableError),
        before_sleep=before_sleep,
        reraise=True,
        **kwargs,  # type: ignore[arg-type]
    )


async def call_with_retries(
    func: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Run `func` until it succeeds, fails in a way that is not retried, or attempts run out."""
    async for attempt in retrying(policy, on_retry, sleep):
        with attempt:
            return await func()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover
