"""The one priced attempt every caller uses: the corpus run and the prompt optimizer alike.

    breaker -> limits (pacing) -> concurrency slot -> reserve the worst case -> send -> settle

Two estimates of each request are made here, for two jobs. Money reserves the byte bound
(`token_upper_bound`), which no server's count can exceed. Pacing acquires the TPM limit with
`Pacing.tokens`, a calibrated estimate of what the server will count (`_pacing.py`), which may
be exceeded now and then and is corrected by the server's headers (`_limits.py`).

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
from dataclasses import dataclass, field
from typing import Any, Protocol

from labelmill._exceptions import RequestRejected, RetryableError, TeacherStatusError
from labelmill.engine.money import Commitment, Reservation, Spending, cached_prompt_tokens, token_upper_bound
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE
from labelmill.engine.teacher._client import BeforeSend, Reply
from labelmill.engine.teacher._guards import AdaptiveConcurrency, CircuitBreaker
from labelmill.engine.teacher._limits import RateLimits
from labelmill.engine.teacher._pacing import Pacing
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries


class Completer(Protocol):
    """What sends one chat completion: `TeacherClient`, or a fake in tests."""

    async def complete(self, body: Mapping[str, Any], before_send: BeforeSend | None = None) -> Reply: ...


@dataclass(slots=True)
class TeacherCounters:
    requests: int = 0  # attempts sent, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    server_errors: int = 0
    prompt_tokens: int = 0  # paid, from `usage`
    cached_prompt_tokens: int = 0  # of prompt_tokens, what the server billed as a cached prefix
    completion_tokens: int = 0
    limit_tokens: int = 0  # answered requests as a TPM limit counts them: prompt tokens + max_tokens
    # The limits in force and the rates achieved, given the run's seconds (None: no limits to report)
    limits: Callable[[float], dict[str, Any]] | None = field(default=None, repr=False)


@dataclass(slots=True)
class _Paced:
    """One request as pacing sees it."""

    variant: str
    base: int  # our count of the prompt
    max_tokens: int
    sent_at: float = 0.0  # when the last attempt left (the loop's clock)


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
        pacing: Pacing | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.spending = spending
        self.retry = retry or RetryPolicy()
        self.limits = limits or RateLimits()
        self.concurrency = concurrency or AdaptiveConcurrency(1 << 16)
        self.breaker = breaker or CircuitBreaker()
        self.pacing = pacing or Pacing()
        self.counters = TeacherCounters(limits=self.limits_report)
        self.fatal: TeacherStatusError | None = None  # a status that ends every later attempt
        self._sleep = sleep

    def limits_report(self, seconds: float) -> dict[str, Any]:
        counters = self.counters
        admitted = counters.requests - counters.rate_limited
        return {**self.limits.report(seconds, admitted, counters.limit_tokens), "pacing": self.pacing.report()}

    async def buy(
        self, body: dict[str, Any], *, rationale: bool, commitment: Commitment | None = None
    ) -> tuple[dict[str, Any], float | None]:
        # Money: the byte bound, which the server's count can never exceed (the budget needs that).
        tokens = token_upper_bound(body)
        max_tokens = int(body["max_tokens"])
        worst_case = self.spending.worst_case(tokens - max_tokens, max_tokens, rationale)
        # Pacing: our count of the prompt, which calibration scales to the server's (`_pacing.py`).
        request = _Paced(VARIANT_RATIONALE if rationale else VARIANT_LABEL, self.pacing.base(body, tokens - max_tokens),
                         max_tokens)  # fmt: skip
        settled: list[float] = []

        async def attempt() -> dict[str, Any]:
            reply, reservation = await self._attempt(body, request, worst_case)
            usage = reply.body.get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            cached, prices = cached_prompt_tokens(usage), self.spending.prices
            # Spend settles on what the server says it billed, a cached prefix at its rate; the
            # reservation was the uncached worst case, so the budget holds either way.
            cost = prices.cost(prompt, completion, cached) if prices and usage else None
            saved = prices.cost(prompt, completion) - cost if prices and cost is not None else 0.0
            settled.append(self.spending.answered(reservation, cost, rationale, commitment, saved))
            self.counters.prompt_tokens += prompt
            self.counters.cached_prompt_tokens += cached
            self.counters.completion_tokens += completion
            counted = prompt + max_tokens if prompt else self.pacing.tokens(request.variant, request.base, max_tokens)
            self.counters.limit_tokens += counted
            self.breaker.record_success()
            self.concurrency.on_success(asyncio.get_running_loop().time() - request.sent_at)
            self.limits.observe(reply.headers, request.sent_at, {"requests": 1, "tokens": counted})
            if self.limits.paces_tokens:  # a limit from a flag, or from these very headers
                self.pacing.observe(request.variant, request.base, usage)
            return reply.body

        response = await call_with_retries(attempt, self.retry, self._on_retry, self._sleep)
        return response, (settled[-1] if self.spending.prices is not None else None)

    async def _attempt(
        self, body: dict[str, Any], request: _Paced, worst_case: float
    ) -> tuple[Reply, Reservation | None]:
        self.breaker.check()

        def paced() -> int:  # estimated when the request's turn comes, with the calibration of then
            return self.pacing.tokens(request.variant, request.base, request.max_tokens)

        await self.limits.acquire(paced)
        try:
            return await self._send(body, request, worst_case, paced)
        finally:
            self.limits.settled()

    async def _send(
        self, body: dict[str, Any], request: _Paced, worst_case: float, paced: Callable[[], int]
    ) -> tuple[Reply, Reservation | None]:
        learned = self.limits.generation

        async def before_send() -> None:
            # Limits learned while this request waited for its connection (the first answers and
            # 429s of a run come back while later connections are still opening): obey them too.
            if self.limits.generation != learned:
                await self.limits.acquire(paced)

        await self.concurrency.acquire()
        try:
            if self.fatal is not None:  # checked after the waits: it may have been set meanwhile
                raise self.fatal
            reservation = await self.spending.reserve(worst_case)
            self.counters.requests += 1
            request.sent_at = asyncio.get_running_loop().time()
            self.limits.sending(request.sent_at)
            try:
                return await self.client.complete(body, before_send), reservation
            except RetryableError as exc:
                self.spending.failed(reservation, maybe_billed=exc.status is None)
                self._count_failure(exc, request.sent_at)
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

    def _count_failure(self, exc: RetryableError, sent_at: float) -> None:
        if exc.status == 429:
            self.counters.rate_limited += 1
            # A provisional limit may be far too high (a bucket that held a minute): not yet a brake.
            self.concurrency.on_throttle(paced=self.limits.paces and not self.limits.provisional)
            self.limits.throttled(sent_at)
            self.limits.observe(exc.headers, sent_at)  # a 429 tells the limits too
            self.limits.pause(min(exc.retry_after or 0.0, self.retry.retry_after_cap_s))
        elif exc.status is not None and exc.status >= 500:
            self.counters.server_errors += 1
        self.breaker.record_failure(str(exc))
