"""`--select uncertainty`: explain the examples the teacher was least sure of.

Pass 1 labels every example with the label-only prompt and `logprobs`; each record's confidence is
the smallest margin between the teacher's top two candidates for an answer token. Pass 2 spends what
the budget has left on rationales for the least confident examples, as many as the estimated cost of
a rationale allows; a rationale that no longer fits falls back to the stored label. The final shards
come from pass 2: every label is a store hit by then.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from labelmill.cache import ResponseStore, ShardRecord, iter_records
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.money._estimate import estimate_corpus
from labelmill.engine.run._once import SenderFactory, run_once
from labelmill.engine.run._result import RunResult, RunStatus
from labelmill.engine.tasks._tasks import VARIANT_LABEL, VARIANT_RATIONALE

_ADDED = ("requests", "retries", "rate_limited_429", "server_errors", "dollars", "cpu_seconds", "seconds")


Once = Callable[[AnnotateConfig, "asyncio.Event | None", "SenderFactory | None"], Awaitable[RunResult]]


async def annotate_by_uncertainty(
    config: AnnotateConfig, interrupt: asyncio.Event | None, sender: SenderFactory | None, once: Once = run_once
) -> RunResult:
    """The two passes, each run by `once` (`run_once`, or the batch route's pass)."""
    assert config.budget is not None and config.prices is not None
    first_dir = config.out_dir / ".uncertainty-pass1"
    labels_only = replace(config, out_dir=first_dir, explain_ids=frozenset())
    first = await once(labels_only, interrupt, sender)
    if first.status is RunStatus.INTERRUPTED:
        return first
    records = list(iter_records(first_dir))
    ranked = sorted((r.confidence if r.confidence is not None else 0.0, r.index, r.id) for r in records)
    left = config.budget - (first.money.spent or 0.0 if first.money is not None else 0.0)
    per_rationale = _rationale_cost(config, records)
    count = len(ranked) if per_rationale <= 0 else min(len(ranked), math.floor(max(0.0, left) / per_rationale))
    explain = frozenset(example_id for _, _, example_id in ranked[:count])
    second = await once(replace(config, explain_ids=explain, budget=max(0.0, left)), interrupt, sender)
    shutil.rmtree(first_dir, ignore_errors=True)
    return _combine(first, second, count)


def _rationale_cost(config: AnnotateConfig, labelled: list[ShardRecord]) -> float:
    """The expected dollars of one rationale request. The estimate counts prompts at about four
    characters a token; pass 1 measured what the server counts for the label prompts of the same
    examples, so the rationale prompts are scaled by that ratio."""
    assert config.prices is not None
    prices = config.prices if config.route == "online" else config.prices.batch()
    with ResponseStore(config.cache_dir) as store:
        estimate = estimate_corpus(
            config.source, config.task, prices, store=store, limit=500, structured=config.format_asked != "text"
        )
    label, rationale = estimate.variants[VARIANT_LABEL], estimate.variants[VARIANT_RATIONALE]
    sample = [r.usage.prompt_tokens for r in labelled if r.index < 500]
    ratio = 1.0
    if sample and label.prompt_tokens:
        ratio = (sum(sample) / len(sample)) / (label.prompt_tokens / max(1, label.requests))
    n = max(1, rationale.requests)
    return prices.cost(rationale.prompt_tokens / n * ratio, rationale.completion_tokens / n)


def _combine(first: RunResult, second: RunResult, explained: int) -> RunResult:
    summary: dict[str, Any] = dict(second.summary)
    for key in _ADDED:
        summary[key] = round(first.summary.get(key, 0) + second.summary.get(key, 0), 8)
    summary["tokens"] = {k: first.summary["tokens"][k] + second.summary["tokens"][k] for k in ("prompt", "completion")}
    summary["uncertainty"] = {"selected_for_rationales": explained}
    assert first.money is not None and second.money is not None, "finished passes have their money"
    return RunResult(second.status, summary, first.notes + second.notes).with_money(first.money.then(second.money))
