"""The batch route's first and last word: the explanation rate a budget buys at batch prices,
decided before the first batch, and the final pass over the corpus, where every answer the batches
bought is a store hit and every one still missing becomes a failure row with its own reason.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore, StoredResponse
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.money import Commitment, Planner, estimate_corpus
from labelmill.engine.run import FAILURES, NotBought, Request, RunResult
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE
from labelmill.engine.teacher import TeacherCounters

log = logging.getLogger("labelmill")


def plan_at_batch_prices(config: AnnotateConfig) -> AnnotateConfig:
    """A budget plan on the batch route: the explanation rate that spends the budget at batch
    prices, fixed before the first batch (batches are priced and reserved whole)."""
    if not config.auto_rate or config.prices is None or config.budget is None:
        return config
    prices = config.prices.batch()
    with ResponseStore(config.cache_dir) as store:
        estimate = estimate_corpus(
            config.source,
            config.task,
            prices,
            store=store,
            limit=config.limit,
            structured=config.format_asked != "text",
        )
    label, rationale = estimate.variants[VARIANT_LABEL], estimate.variants[VARIANT_RATIONALE]
    per = [(v.dollars or 0.0) / max(1, v.requests) for v in (label, rationale)]
    rate = Planner(*per).rate(config.budget, max(1, estimate.examples))
    log.info("batch route: explanation rate %.3f spends the budget at batch prices", rate)
    return replace(config, auto_rate=False, rationale_rate=round(rate, 6))


class Leftovers:
    """The sender of the final pass on the batch route: it buys nothing, it says why an answer is
    missing (the batch's reason, or the budget that did not cover a batch), row by row: a missing
    answer stops nothing and counts as no refusal, so every row keeps its own reason."""

    def __init__(self, failures: dict[str, list[str]]) -> None:
        self.failures = failures
        self.counters = TeacherCounters()

    async def send(self, request: Request, commitment: Commitment | None) -> StoredResponse:
        reason, detail = self.failures.get(request.key, ["budget_exhausted", "no batch held this request"])
        if reason in ("refused", "budget_exhausted"):
            raise NotBought(reason, detail)
        raise NotBought("gave_up", f"{reason}: {detail}")


def refused_whole(summary: dict[str, Any], failures: dict[str, list[str]]) -> None:
    """Every example refused for one same reason (a batch that failed validation, a model the
    server does not have): a usage error that names it, as online, once the failure rows are written."""
    details = {detail for reason, detail in failures.values() if reason == "refused"}
    reasons = summary.get("failure_reasons") or {}
    if summary.get("records") == 0 and set(reasons) == {"refused"} and len(details) == 1:
        raise UsageError(f"the server refused every request ({reasons['refused']}): {details.pop()}; the "
                         f"failure rows are in {FAILURES}")  # fmt: skip


def add_batch_spend(result: RunResult, spent: float, budget: float | None, cache_saved: float) -> RunResult:
    """What the batches cost goes into the final pass's money (that pass bought only online)."""
    assert result.money is not None, "a finished pass has its money"
    return result.with_money(result.money.with_batches(spent, budget, cache_saved))
