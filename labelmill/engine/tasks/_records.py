"""A stored answer -> a shard record: parse it, check its label, carry its usage and confidence."""

from __future__ import annotations

import math
from typing import Any

from labelmill.cache import ShardRecord, StoredResponse, TeacherRef, Usage
from labelmill.engine.tasks._parse import parse_response
from labelmill.engine.tasks._rationale import agrees_with_label, word_count
from labelmill.engine.tasks._tasks import VARIANT_RATIONALE, Example, Task


def confidence_of(response: dict[str, Any]) -> float | None:
    """The smallest margin, in probability, between the top two candidates of any answer token.

    A confident teacher puts almost all mass on one token at every step; an unsure one splits it
    somewhere, and that step is where the label is decided.
    """
    try:
        logprobs = response["choices"][0].get("logprobs")  # absent in most answers: no exception then
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    margins = []
    for token in tokens or []:
        top = sorted((float(t["logprob"]) for t in token.get("top_logprobs") or []), reverse=True)
        if len(top) >= 2:
            margins.append(math.exp(top[0]) - math.exp(top[1]))
    return round(min(margins), 6) if margins else None


def build_record(
    task: Task, example: Example, variant: str, entry: StoredResponse, confidence: float | None = None
) -> ShardRecord | str:
    """The shard record for a response, or the reason it cannot be one (`refused: ...` etc.)."""
    try:
        choice = entry.response["choices"][0]
        content = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return "parse_error: the response has no choices[0].message"
    if finish == "content_filter" or not content.strip():
        return f"refused: the teacher returned no answer (finish_reason={finish})"
    options = example.choices if task.multiple_choice else list(task.labels)
    want_rationale = variant == VARIANT_RATIONALE
    parsed = parse_response(content, options or [], task.aliases, want_rationale)
    if parsed.label is None:
        return f"parse_error: no valid label in {content[:200]!r}"
    usage: Any = entry.response.get("usage") or {}
    why = parsed.rationale
    agrees = agrees_with_label(why, parsed.label, options or [], task.aliases) if why is not None else None
    return ShardRecord(
        id=example.id,
        index=example.index,
        text=example.text,
        label=parsed.label,
        rationale=parsed.rationale,
        choices=example.choices,
        gold=example.gold,
        teacher=TeacherRef(model=str(entry.request.get("model", "")), prompt=entry.prompt_version, key=entry.key),
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        cost_usd=entry.cost_usd,
        confidence=confidence_of(entry.response) if confidence is None else confidence,
        rationale_words=word_count(why) if why is not None else None,
        rationale_agrees=agrees,
    )
