"""Single chat completions through the store and the one priced attempt.

For callers that send a handful of requests of their own (the prompt optimizer's meta-prompts):
key -> store -> `PricedTeacher.buy` (breaker, limits, budget, retries) -> store, as a corpus run
does, without a corpus.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from labelmill.cache import AsyncStoreWriter, ResponseStore, StoredResponse, request_key
from labelmill.engine.money import Spending
from labelmill.engine.teacher._attempt import PricedTeacher
from labelmill.engine.teacher._client import TeacherClient
from labelmill.engine.teacher._guards import AdaptiveConcurrency
from labelmill.engine.teacher._limits import RateLimits
from labelmill.engine.teacher._retry import RetryPolicy


class OneShot:
    """`async with OneShot(...) as client: text = await client.complete(body, tag)`."""

    def __init__(self, store: ResponseStore, base_url: str, api_key: str | None, spending: Spending,
                 limits: RateLimits | None = None, retry: RetryPolicy | None = None) -> None:  # fmt: skip
        self.store = store
        self.writer = AsyncStoreWriter(store)
        self.client = TeacherClient(base_url, api_key, connections=8, timeout_s=120)
        self.teacher = PricedTeacher(
            self.client, spending, retry=retry, limits=limits, concurrency=AdaptiveConcurrency(8)
        )

    @property
    def requests(self) -> int:
        return self.teacher.counters.requests

    async def __aenter__(self) -> OneShot:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.writer.aclose()
        await self.client.__aexit__(kind, exc, tb)

    async def complete(self, body: dict[str, Any], tag: str) -> str:
        """The reply's text; from the store when this exact request was answered before.
        Raises BudgetExhausted when its worst case no longer fits the budget."""
        key = request_key(body, tag)
        entry = self.store.get(key)
        if entry is None:
            response, dollars = await self.teacher.buy(body, rationale=True)
            entry = StoredResponse(key, body, tag, response, dollars)
            await self.writer.put(entry)
        return str(entry.response["choices"][0]["message"].get("content") or "")
