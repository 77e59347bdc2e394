"""What a corpus will cost, without sending anything.

Prompt tokens are counted from the rendered prompts at about four characters a token (OpenAI's rule
of thumb for English; no tokenizer is downloaded at run time). Completion tokens come from the store
when it already holds answers to the same prompts, else from priors. Reservations during a run use
a different, proven upper bound (UTF-8 bytes), so an estimate is a forecast, not a cap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from labelmill.cache import ResponseStore
from labelmill.engine.money._prices import Prices, schema_prompt_bytes
from labelmill.engine.money._spending import PRIOR_LABEL_COMPLETION, PRIOR_RATIONALE_COMPLETION, Planner
from labelmill.engine.tasks._input import iter_rows
from labelmill.engine.tasks._tasks import VARIANT_LABEL, VARIANT_RATIONALE, Task

MESSAGE_OVERHEAD = 4  # tokens of framing per chat message, and 3 more to prime the reply
FEW_SHOT = "few-shot label+rationale"
STORE_SAMPLE = 5000  # stored entries read to learn completion lengths
JSON_FRAME_TOKENS = 10  # braces, keys and quotes of a structured answer, beyond its text
CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128  # OpenAI's prompt cache: prefixes of 1,024+ tokens, in steps of 128


def approx_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(approx_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages) + 3


@dataclass(slots=True)
class VariantTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: float = 0.0
    dollars: float | None = None
    cached_prompt_tokens: int = 0  # what a warm prefix cache would bill at the cached rate
    dollars_cached: float | None = None  # the dollars with that cache
    first_prompt: str | None = None  # the first request's prompt text...
    shared_chars: int = 0  # ...and how much of it every later one shares

    def per_1k(self) -> dict[str, float | None]:
        n = max(1, self.requests)
        return {
            "prompt_tokens": round(self.prompt_tokens / n * 1000, 1),
            "completion_tokens": round(self.completion_tokens / n * 1000, 1),
            "dollars": None if self.dollars is None else round(self.dollars / n * 1000, 6),
            "cached_prompt_tokens": round(self.cached_prompt_tokens / n * 1000, 1),
            "dollars_cached": None if self.dollars_cached is None else round(self.dollars_cached / n * 1000, 6),
        }

    def add_prompt(self, text: str) -> None:
        """Track the prefix every prompt of this variant shares (instruction, demonstrations)."""
        if self.first_prompt is None:
            self.first_prompt, self.shared_chars = text, len(text)
            return
        first, shared = self.first_prompt, min(self.shared_chars, len(text))
        if text[:shared] == first[:shared]:  # the usual case: one comparison in C
            self.shared_chars = shared
            return
        low, high = 0, shared  # text[:low] is shared, text[:high] is not: halve by slice comparisons
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if text[:middle] == first[:middle] else (low, middle)
        self.shared_chars = low

    def cacheable_per_request(self) -> int:
        """The shared prefix a cache would hit, in tokens, floored to the cache's steps."""
        tokens = self.shared_chars // 4
        return 0 if tokens < CACHE_MIN_TOKENS else tokens - tokens % CACHE_STEP


@dataclass(slots=True)
class Estimate:
    examples: int
    variants: dict[str, VariantTotals]
    completion_source: dict[str, str]
    prices: Prices | None
    plan: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "token_counting": "about 4 characters a token (no tokenizer downloaded)",
            "completion_tokens_from": self.completion_source,
            "prices_per_1m": None if self.prices is None else {"input": self.prices.input_per_m,
                                                               "cached_input": self.prices.cached_input_per_m,
                                                               "output": self.prices.output_per_m},
            "totals": {name: {"requests": v.requests, "prompt_tokens": v.prompt_tokens,
                              "completion_tokens": round(v.completion_tokens), "dollars": v.dollars}
                       for name, v in self.variants.items()},
            "per_1000_examples": {name: v.per_1k() for name, v in self.variants.items()},
            "plan": self.plan,
        }  # fmt: skip


def completion_means(
    store: ResponseStore | None, task: Task, structured: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    """Mean completion tokens per variant: from stored answers to these prompts, else priors (a
    JSON answer's frame, `{"rationale": "...", "answer": "..."}`, added when the schema is asked for)."""
    frame = JSON_FRAME_TOKENS if structured else 0
    means = {VARIANT_LABEL: float(PRIOR_LABEL_COMPLETION + frame),
             VARIANT_RATIONALE: float(PRIOR_RATIONALE_COMPLETION + frame)}  # fmt: skip
    source = {VARIANT_LABEL: "prior", VARIANT_RATIONALE: "prior"}
    if store is None:
        return means, source
    tags = {task.prompt_tag(v): v for v in means}
    seen: dict[str, list[int]] = {v: [] for v in means}
    for key in itertools.islice(store.keys(), STORE_SAMPLE):
        entry = store.get(key)
        if entry is not None and entry.prompt_version in tags:
            usage = entry.response.get("usage") or {}
            if "completion_tokens" in usage:
                seen[tags[entry.prompt_version]].append(int(usage["completion_tokens"]))
    for variant, values in seen.items():
        if values:
            means[variant] = sum(values) / len(values)
            source[variant] = f"store ({len(values)} answers)"
    return means, source


def estimate_corpus(
    source: str,
    task: Task,
    prices: Prices | None,
    store: ResponseStore | None = None,
    shots: int = 0,
    limit: int | None = None,
    budget: float | None = None,
    structured: bool = False,
) -> Estimate:
    """Price label-only, label+rationale (and, with `shots`, few-shot) prompts over the corpus;
    `structured`: the answers are JSON that follows the task's schema."""
    means, completion_source = completion_means(store, task, structured)
    names = [VARIANT_LABEL, VARIANT_RATIONALE] + ([FEW_SHOT] if shots else [])
    totals = {name: VariantTotals() for name in names}
    demos = task.demonstrations((r.data for r in itertools.islice(iter_rows(source), 10_000) if r.data), shots)
    examples = 0
    for row in itertools.islice(iter_rows(source), limit):
        if row.data is None:
            continue
        try:
            example = task.render(row.data, row.index)
        except ValueError:
            continue
        examples += 1
        for name in names:
            messages = task.few_shot_messages(example, demos) if name == FEW_SHOT else task.messages(example, name)
            totals[name].requests += 1
            totals[name].prompt_tokens += prompt_tokens(messages)
            if structured:  # the schema is prompt too
                schema = task.response_format(VARIANT_RATIONALE if name == FEW_SHOT else name, example)
                totals[name].prompt_tokens += schema_prompt_bytes(schema) // 4
            totals[name].add_prompt("\n".join(m["content"] for m in messages))
            totals[name].completion_tokens += means[VARIANT_RATIONALE if name == FEW_SHOT else name]
    for variant in totals.values():  # a warm cache: every request after the first hits the shared prefix
        variant.cached_prompt_tokens = max(0, variant.requests - 1) * variant.cacheable_per_request()
        variant.first_prompt = None
    if prices is not None:
        for variant in totals.values():
            variant.dollars = round(prices.cost(variant.prompt_tokens, variant.completion_tokens), 8)
            variant.dollars_cached = round(
                prices.cost(variant.prompt_tokens, variant.completion_tokens, variant.cached_prompt_tokens), 8
            )
    result = Estimate(examples, totals, completion_source, prices)
    if budget is not None and prices is not None and examples:
        label, rationale = totals[VARIANT_LABEL], totals[VARIANT_RATIONALE]
        planner = Planner(float(label.dollars or 0) / examples, float(rationale.dollars or 0) / examples)
        rate = planner.rate(budget, examples)
        expected = (label.dollars or 0) * (1 - rate) + (rationale.dollars or 0) * rate
        result.plan = {"budget": budget, "rationale_rate": round(rate, 4), "expected_dollars": round(expected, 6),
                       "labels_fit": budget >= (label.dollars or 0)}  # fmt: skip
    return result
