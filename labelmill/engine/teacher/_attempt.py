"""The one priced attempt every caller uses: the corpus run and the prompt optimizer alike.

    breaker -> limits (pacing) -> concurrency slot -> reserve the worst case -> send -> settle

with retries around it (`_retry`). Each attempt reserves again, because each may be billed. What
an outcome does to money: an answer settles to its `usage`; a 429/5xx answer releases the
reservation (not billed); a timeout, a lost connection or a cancellation after sending keeps it
as spent (the provider may have billed it).

A status that no request can get past (401, 403, 404, ...) is kept as `fatal`: once one is seen,
no attempt is sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from labelmill._exceptions import RequestRejected, RetryableError, TeacherStatusError
from labelmill.engine.money import Commitment, Reservation, Spending, token_upper_bound
from labelmill.engine.teacher._client import Reply
from labelmill.engine.teacher._limits import AdaptiveConcurrency, CircuitBreaker, RateLimits
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries


class Completer(Protocol):
    """What sends one chat completion: `TeacherClient`, or a fake in tests."""

    async def complete(self, body: Mapping[str, Any]) -> Reply: ...


@dataclass(slots=True)
class TeacherCounters:
    requests: int = 0  # attempts sent, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    server_errors: int = 0
    prompt_tokens: int = 0  # paid, from `usage`
    completion_tokens: int = 0


class PricedTeacher:
    """Buys answers: `response, dollars = await teacher.buy(body, rationale=...)`.

    `dollars` is what the answer settled to, or None when the model has no price."""

    def __init__(
        self,
        client: Completer,
        spending: Spending,
        *,
        retry: RetryPolicy | None = None,
        limits: RateLimits | None = None,
        concurrency: AdaptiveConcurrency | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.spending = spending
        self.retry = retry or RetryPolicy()
        self.limits = limits or RateLimits()
        self.concurrency = concurrency or AdaptiveConcurrency(1 << 16)
        self.breaker = breaker or CircuitBreaker()
        self.counters = TeacherCounters()
        self.fatal: TeacherStatusError | None = None  # a status that ends every later attempt
        self._sleep = sleep

    async def buy(
        self, body: dict[str, Any], *, rationale: bool, commitment: Commitment | None = None
    ) -> tuple[dict[str, Any], float | None]:
        # Pacing and money both start from the byte bound here: it can never be exceeded, which
        # the budget needs. (A calibrated estimate for pacing alone is issue 13's.)
        tokens = token_upper_bound(body)
        max_tokens = int(body["max_tokens"])
        worst_case = self.spending.worst_case(tokens - max_tokens, max_tokens, rationale)
        settled: list[float] = []

        async def attempt() -> dict[str, Any]:
            reply, reservation = await self._attempt(body, tokens, worst_case)
            usage = reply.body.get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            cost = self.spending.prices.cost(prompt, completion) if self.spending.prices and usage else None
            settled.append(self.spending.answered(reservation, cost, rationale, commitment))
            self.counters.prompt_tokens += prompt
            self.counters.completion_tokens += completion
            self.breaker.record_success()
            self.concurrency.on_success()
            self.limits.observe(reply.headers)
            return reply.body

        response = await call_with_retries(attempt, self.retry, self._on_retry, self._sleep)
        return response, (settled[-1] if self.spending.prices is not None else None)

    async def _attempt(self, body: dict[str, Any], tokens: int, worst_case: float) -> tuple[Reply, Reservation | None]:
        self.breaker.check()
        await self.limits.acquire(tokens)
        await self.concurrency.acquire()
        try:
            if self.fatal is not None:  # checked after the waits: it may have been set meanwhile
                raise self.fatal
            reservation = await self.spending.reserve(worst_case)
            self.counters.requests += 1
            try:
                return await self.client.complete(body), reservation
            except RetryableError as exc:
                self.spending.failed(reservation, maybe_billed=exc.status is None)
                self._count_failure(exc)
                raise
            except BaseException as exc:
                # A cancelled request may have reached the provider: count it, to stay on the safe side.
                self.spending.failed(reservation, maybe_billed=isinstance(exc, asyncio.CancelledError))
                if isinstance(exc, TeacherStatusError) and not isinstance(exc, RequestRejected):
                    self.fatal = self.fatal or exc  # set before the slot is released: nothing else is sent
                raise
        finally:
            self.concurrency.release()

    def _on_retry(self, error: RetryableError, wait_s: float) -> None:
        self.counters.retries += 1

    def _count_failure(self, exc: RetryableError) -> None:
        if exc.status == 429:
            self.counters.rate_limited += 1
            self.concurrency.on_throttle()
            if exc.retry_after:
                self.limits.pause(min(exc.retry_after, self.retry.retry_after_cap_s))
        elif exc.status is not None and exc.status >= 500:
            self.counters.server_errors += 1
        self.breaker.record_failure(str(exc))
