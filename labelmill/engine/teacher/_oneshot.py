"""Single chat completions through the engine's store, limits, retries and budget.

For callers that send a handful of requests of their own (the prompt optimizer's meta-prompts):
the same key -> store -> reserve -> teacher with retries -> settle -> store path as a corpus run,
without a corpus.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from labelmill.cache import AsyncStoreWriter, ResponseStore, StoredResponse, request_key
from labelmill.engine.money import Spending, token_upper_bound
from labelmill.engine.teacher._client import TeacherClient
from labelmill.engine.teacher._limits import RateLimits
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries


class OneShot:
    """`async with OneShot(...) as client: text = await client.complete(body, tag)`."""

    def __init__(self, store: ResponseStore, base_url: str, api_key: str | None, spending: Spending,
                 limits: RateLimits | None = None, retry: RetryPolicy | None = None) -> None:  # fmt: skip
        self.store = store
        self.writer = AsyncStoreWriter(store)
        self.teacher = TeacherClient(base_url, api_key, connections=8, timeout_s=120)
        self.spending = spending
        self.limits = limits or RateLimits()
        self.retry = retry or RetryPolicy()
        self.requests = 0

    async def __aenter__(self) -> OneShot:
        await self.teacher.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.writer.aclose()
        await self.teacher.__aexit__(kind, exc, tb)

    async def complete(self, body: dict[str, Any], tag: str) -> str:
        """The reply's text; from the store when this exact request was answered before.
        Raises BudgetExhausted when its worst case no longer fits the budget."""
        key = request_key(body, tag)
        entry = self.store.get(key)
        if entry is None:
            entry = await self._buy(body, tag, key)
        return str(entry.response["choices"][0]["message"].get("content") or "")

    async def _buy(self, body: dict[str, Any], tag: str, key: str) -> StoredResponse:
        tokens = token_upper_bound(body)
        worst = self.spending.worst_case(tokens - int(body["max_tokens"]), int(body["max_tokens"]), True)
        costs: list[float | None] = []

        async def attempt() -> dict[str, Any]:
            await self.limits.acquire(tokens)
            reservation = await self.spending.reserve(worst)
            self.requests += 1
            try:
                reply = await self.teacher.complete(body)
            except BaseException:
                self.spending.failed(reservation, maybe_billed=True)
                raise
            usage = reply.body.get("usage") or {}
            prices = self.spending.prices
            cost = prices.cost(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)) if prices else None
            costs.append(self.spending.answered(reservation, cost if usage else None, True, None))
            return reply.body

        response = await call_with_retries(attempt, self.retry)
        entry = StoredResponse(key, body, tag, response, costs[-1] if self.spending.prices else None)
        await self.writer.put(entry)
        return entry
